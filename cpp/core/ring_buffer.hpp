// Lock-free single-producer / single-consumer ring buffer of multichannel float audio.
//
// One thread pushes, one thread pops; neither ever blocks, allocates or takes a lock. The
// write and read counters are monotonically increasing 64-bit atomics (they never wrap in
// practice); the producer publishes samples with a release store of the write counter and
// the consumer acquires it, and symmetrically for the read counter, so each side sees the
// other's data complete. Capacity (samples per channel) is fixed at construction.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace livedemix {

class AudioRingBuffer {
 public:
  AudioRingBuffer(int channels, int capacity) : channels_(channels), capacity_(capacity) {
    if (channels < 1) throw std::invalid_argument("channels must be >= 1");
    if (capacity < 1) throw std::invalid_argument("capacity must be >= 1");
    data_.assign(static_cast<size_t>(channels) * capacity, 0.0f);
  }

  int channels() const { return channels_; }
  int capacity() const { return capacity_; }
  // Samples per channel that the consumer can pop now (a lower bound seen from the producer).
  int available_read() const {
    return static_cast<int>(write_.load(std::memory_order_acquire) - read_.load(std::memory_order_acquire));
  }
  int available_write() const { return capacity_ - available_read(); }

  // Producer side. Copies up to n samples per channel from rows x + c*stride; returns how
  // many were written (fewer than n when the ring is full: the caller counts the overflow).
  int push(const float* x, std::ptrdiff_t stride, int n) {
    const uint64_t w = write_.load(std::memory_order_relaxed);
    const uint64_t r = read_.load(std::memory_order_acquire);
    const int room = capacity_ - static_cast<int>(w - r);
    const int count = std::min(n, room);
    if (count <= 0) return 0;
    const int start = static_cast<int>(w % capacity_);
    const int first = std::min(count, capacity_ - start);
    for (int c = 0; c < channels_; ++c) {
      float* row = data_.data() + static_cast<size_t>(c) * capacity_;
      std::memcpy(row + start, x + c * stride, sizeof(float) * first);
      std::memcpy(row, x + c * stride + first, sizeof(float) * (count - first));
    }
    write_.store(w + count, std::memory_order_release);
    return count;
  }

  // Consumer side. Copies up to n samples per channel into rows y + c*stride; returns how
  // many were read (fewer than n when the ring runs dry; the rest of y is left untouched).
  int pop(float* y, std::ptrdiff_t stride, int n) {
    const uint64_t r = read_.load(std::memory_order_relaxed);
    const uint64_t w = write_.load(std::memory_order_acquire);
    const int count = std::min(n, static_cast<int>(w - r));
    if (count <= 0) return 0;
    const int start = static_cast<int>(r % capacity_);
    const int first = std::min(count, capacity_ - start);
    for (int c = 0; c < channels_; ++c) {
      const float* row = data_.data() + static_cast<size_t>(c) * capacity_;
      std::memcpy(y + c * stride, row + start, sizeof(float) * first);
      std::memcpy(y + c * stride + first, row, sizeof(float) * (count - first));
    }
    read_.store(r + count, std::memory_order_release);
    return count;
  }

  // Only when neither side is running.
  void reset() {
    write_.store(0);
    read_.store(0);
  }

 private:
  int channels_;
  int capacity_;
  std::vector<float> data_;
  // Separate cache lines so producer and consumer don't false-share.
  alignas(64) std::atomic<uint64_t> write_{0};
  alignas(64) std::atomic<uint64_t> read_{0};
};

}  // namespace livedemix
