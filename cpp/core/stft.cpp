#include "stft.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace livedemix {

StftAnalyzer::StftAnalyzer(const StftConfig& cfg, int channels) : cfg_(cfg), channels_(channels), fft_(cfg.n_fft) {
  if (channels < 1) throw std::invalid_argument("channels must be >= 1");
  analysis_ = make_windows(cfg).analysis;
  history_.assign(static_cast<size_t>(channels) * cfg.n_fft, 0.0f);
  prepare(cfg.hop);
}

void StftAnalyzer::prepare(int max_block) {
  if (max_block < 1) throw std::invalid_argument("max_block must be >= 1");
  max_block_ = max_block;
}

void StftAnalyzer::reset() {
  std::fill(history_.begin(), history_.end(), 0.0f);
  pending_ = 0;
  nonfinite_blocks_ = 0;
  frames_emitted_ = 0;
}

int StftAnalyzer::process(const float* x, std::ptrdiff_t channel_stride, int n, cfloat* out_frames) {
  const int nfft = cfg_.n_fft, hop = cfg_.hop, bins = cfg_.bins();
  bool bad = false;
  int frames = 0;
  int done = 0;
  while (done < n) {
    const int take = std::min(hop - pending_, n - done);
    for (int c = 0; c < channels_; ++c) {
      const float* src = x + c * channel_stride + done;
      float* dst = history_.data() + static_cast<size_t>(c) * nfft + (nfft - hop) + pending_;
      for (int i = 0; i < take; ++i) {
        const float v = src[i];
        const bool ok = std::isfinite(v);
        bad |= !ok;
        dst[i] = ok ? v : 0.0f;
      }
    }
    pending_ += take;
    done += take;
    if (pending_ == hop) {
      for (int c = 0; c < channels_; ++c) {
        float* h = history_.data() + static_cast<size_t>(c) * nfft;
        float* t = fft_.time_buffer();
        for (int i = 0; i < nfft; ++i) t[i] = h[i] * analysis_[i];
        fft_.forward_from_buffer(out_frames + (static_cast<size_t>(frames) * channels_ + c) * bins);
        std::memmove(h, h + hop, sizeof(float) * (nfft - hop));
      }
      ++frames;
      pending_ = 0;
    }
  }
  if (bad) ++nonfinite_blocks_;
  frames_emitted_ += frames;
  return frames;
}

StftSynthesizer::StftSynthesizer(const StftConfig& cfg, int channels)
    : cfg_(cfg), channels_(channels), span_(cfg.synthesis_length()), fft_(cfg.n_fft) {
  if (channels < 1) throw std::invalid_argument("channels must be >= 1");
  synthesis_ = make_windows(cfg).synthesis;
  synthesis_scaled_ = synthesis_;
  for (auto& w : synthesis_scaled_) w /= static_cast<float>(cfg.n_fft);
  accum_.assign(static_cast<size_t>(channels) * span_, 0.0f);
  prepare(cfg.hop);
}

void StftSynthesizer::prepare(int max_block) {
  if (max_block < 1) throw std::invalid_argument("max_block must be >= 1");
  max_block_ = max_block;
  // Occupancy peaks at: hop of priming + the frames of one block (<= max_block + hop - 1).
  fifo_cap_ = max_block + 3 * cfg_.hop;
  fifo_.assign(static_cast<size_t>(channels_) * fifo_cap_, 0.0f);
  reset();
}

void StftSynthesizer::reset() {
  std::fill(accum_.begin(), accum_.end(), 0.0f);
  std::fill(fifo_.begin(), fifo_.end(), 0.0f);
  // One hop of silence primes the FIFO so that any block size can be served at a constant
  // delay: total delay = (span - hop) from overlap-add + hop of priming = span.
  fifo_read_ = 0;
  fifo_count_ = cfg_.hop;
  nonfinite_frames_ = 0;
  underflows_ = 0;
  overflows_ = 0;
}

bool StftSynthesizer::push_frame(const cfloat* frame) {
  const int nfft = cfg_.n_fft, hop = cfg_.hop, bins = cfg_.bins();
  if (fifo_count_ + hop > fifo_cap_) {
    ++overflows_;
    return false;
  }
  // Compact the FIFO to the front when the write position would run past the end.
  if (fifo_read_ + fifo_count_ + hop > fifo_cap_) {
    for (int c = 0; c < channels_; ++c) {
      float* f = fifo_.data() + static_cast<size_t>(c) * fifo_cap_;
      std::memmove(f, f + fifo_read_, sizeof(float) * fifo_count_);
    }
    fifo_read_ = 0;
  }
  bool bad = false;
  for (int c = 0; c < channels_; ++c) {
    const cfloat* spec = frame + static_cast<size_t>(c) * bins;
    for (int k = 0; k < bins; ++k) bad |= !(std::isfinite(spec[k].real()) && std::isfinite(spec[k].imag()));
  }
  if (bad) ++nonfinite_frames_;
  const float* win = synthesis_scaled_.data() + (nfft - span_);
  for (int c = 0; c < channels_; ++c) {
    float* acc = accum_.data() + static_cast<size_t>(c) * span_;
    if (!bad) {
      fft_.inverse_to_buffer(frame + static_cast<size_t>(c) * bins);
      const float* tail = fft_.time_buffer() + (nfft - span_);  // unscaled: 1/n is in win
      for (int i = 0; i < span_; ++i) acc[i] += tail[i] * win[i];
    }
    float* out = fifo_.data() + static_cast<size_t>(c) * fifo_cap_ + fifo_read_ + fifo_count_;
    std::memcpy(out, acc, sizeof(float) * hop);
    std::memmove(acc, acc + hop, sizeof(float) * (span_ - hop));
    std::fill(acc + (span_ - hop), acc + span_, 0.0f);
  }
  fifo_count_ += hop;
  return true;
}

void StftSynthesizer::pull(float* y, std::ptrdiff_t channel_stride, int n) {
  const int have = std::min(n, fifo_count_);
  for (int c = 0; c < channels_; ++c) {
    const float* f = fifo_.data() + static_cast<size_t>(c) * fifo_cap_ + fifo_read_;
    float* dst = y + c * channel_stride;
    std::memcpy(dst, f, sizeof(float) * have);
    std::fill(dst + have, dst + n, 0.0f);
  }
  if (have < n) ++underflows_;
  fifo_read_ += have;
  fifo_count_ -= have;
  if (fifo_count_ == 0) fifo_read_ = 0;
}

}  // namespace livedemix
