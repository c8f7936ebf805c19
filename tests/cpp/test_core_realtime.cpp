// Real-time contract of the foundation: after construction/prepare, thousands of calls to
// the STFT analyser, synthesiser, stem mixer and ring buffer allocate nothing, and the round
// trip still reconstructs its input delayed by the declared latency.
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "alloc_counter.hpp"
#include "ring_buffer.hpp"
#include "stem_mixer.hpp"
#include "stft.hpp"

using namespace livedemix;

static void roundtrip_does_not_allocate(WindowType w, int n_fft, int hop) {
  StftConfig cfg;
  cfg.n_fft = n_fft;
  cfg.hop = hop;
  cfg.window = w;
  const int C = 2, max_block = 1024, F = cfg.bins();
  StftAnalyzer ana(cfg, C);
  StftSynthesizer syn(cfg, C);
  ana.prepare(max_block);
  syn.prepare(max_block);
  StemMixer mixer(4, 2, C, F, 3);
  std::vector<cfloat> frames(static_cast<size_t>(ana.max_frames_per_block()) * C * F);
  std::vector<cfloat> stems(4 * static_cast<size_t>(C) * F), buses(2 * static_cast<size_t>(C) * F);
  std::mt19937 rng(1);
  std::normal_distribution<float> noise;
  std::uniform_int_distribution<int> block_len(1, max_block);
  const int total = 200000;
  std::vector<float> in(static_cast<size_t>(C) * total), out(static_cast<size_t>(C) * total);
  for (auto& v : in) v = noise(rng);
  std::vector<int> blocks;
  for (int pos = 0; pos < total;) {
    int n = std::min(block_len(rng), total - pos);
    blocks.push_back(n);
    pos += n;
  }
  long allocations;
  {
    alloc_counter::Region region;
    int pos = 0;
    for (size_t b = 0; b < blocks.size(); ++b) {
      const int n = blocks[b];
      const int k = ana.process(in.data() + pos, total, n, frames.data());
      for (int i = 0; i < k; ++i) {
        // pass every frame through the mixer at unity on bus 0, then synthesise bus 0
        for (int j = 0; j < 4; ++j)
          for (int q = 0; q < C * F; ++q)
            stems[static_cast<size_t>(j) * C * F + q] = frames[static_cast<size_t>(i) * C * F + q] * 0.25f;
        if (b == blocks.size() / 2) mixer.set_gain(1, 2, 0.5f);  // a control change mid-stream
        mixer.process(stems.data(), buses.data());
        syn.push_frame(buses.data());
      }
      syn.pull(out.data() + pos, total, n);
      pos += n;
    }
    allocations = region.count();
  }
  std::printf("%s %d/%d: %zu blocks, %ld allocations\n", window_type_name(w).c_str(), n_fft, hop, blocks.size(),
              allocations);
  LD_CHECK(allocations == 0);
  LD_CHECK(syn.underflows() == 0 && syn.overflows() == 0);
  // Output == input delayed by the declared latency.
  const int L = syn.latency_samples();
  double err = 0, ref = 0;
  for (int c = 0; c < C; ++c)
    for (int t = L; t < total; ++t) {
      const double d = out[static_cast<size_t>(c) * total + t] - in[static_cast<size_t>(c) * total + t - L];
      err += d * d;
      ref += double(in[static_cast<size_t>(c) * total + t - L]) * in[static_cast<size_t>(c) * total + t - L];
    }
  const double db = 10 * std::log10(err / ref);
  std::printf("  reconstruction error %.1f dB\n", db);
  LD_CHECK(db < -100);
}

static void ring_is_lock_free_and_ordered() {
  AudioRingBuffer ring(2, 1000);
  LD_CHECK(std::atomic<uint64_t>{}.is_lock_free());
  const int total = 2000000;
  std::vector<float> got(static_cast<size_t>(2) * total, -1.0f);
  long allocations;
  {
    alloc_counter::Region region;
    std::thread consumer([&] {  // thread creation allocates before the region starts counting pops
      int pos = 0;
      float buf[2 * 97];
      while (pos < total) {
        const int k = ring.pop(buf, 97, std::min(97, total - pos));
        for (int i = 0; i < k; ++i) {
          got[pos + i] = buf[i];
          got[static_cast<size_t>(total) + pos + i] = buf[97 + i];
        }
        pos += k;
      }
    });
    float blk[2 * 61];
    int pos = 0;
    long allocs_before = alloc_counter::g_allocations.load();
    while (pos < total) {
      const int n = std::min(61, total - pos);
      for (int i = 0; i < n; ++i) {
        blk[i] = static_cast<float>(pos + i);
        blk[61 + i] = -static_cast<float>(pos + i);
      }
      pos += ring.push(blk, 61, n);
    }
    consumer.join();
    allocations = alloc_counter::g_allocations.load() - allocs_before;
  }
  for (int i = 0; i < total; ++i) {
    LD_CHECK(got[i] == static_cast<float>(i));
    LD_CHECK(got[static_cast<size_t>(total) + i] == -static_cast<float>(i));
  }
  std::printf("ring: %d samples through two threads in order, %ld allocations in push/pop\n", total, allocations);
  LD_CHECK(allocations == 0);
}

int main() {
  {  // the counter itself must see an allocation, or a zero below would prove nothing
    alloc_counter::Region region;
    std::vector<float>* v = new std::vector<float>(10);
    delete v;
    LD_CHECK(region.count() >= 2);
  }
  roundtrip_does_not_allocate(WindowType::Hann, 1024, 256);
  roundtrip_does_not_allocate(WindowType::SqrtHann, 512, 256);
  roundtrip_does_not_allocate(WindowType::Asymmetric, 1024, 256);
  roundtrip_does_not_allocate(WindowType::Asymmetric, 1024, 128);
  ring_is_lock_free_and_ordered();
  std::printf("all core real-time checks passed\n");
  return 0;
}
