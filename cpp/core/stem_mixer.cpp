#include "stem_mixer.hpp"

#include <stdexcept>

namespace livedemix {

StemMixer::StemMixer(int stems, int buses, int channels, int bins, int ramp_frames)
    : stems_(stems), buses_(buses), channels_(channels), bins_(bins), ramp_frames_(ramp_frames) {
  if (stems < 1 || buses < 1 || channels < 1 || bins < 1)
    throw std::invalid_argument("stems, buses, channels and bins must all be >= 1");
  if (ramp_frames < 1) throw std::invalid_argument("ramp_frames must be >= 1");
  const int n = stems * buses;
  target_.reset(new std::atomic<float>[n]);
  for (int i = 0; i < n; ++i) target_[i].store(1.0f);
  current_.assign(n, 1.0f);
  heading_.assign(n, 1.0f);
  step_.assign(n, 0.0f);
  remaining_.assign(n, 0);
}

void StemMixer::set_gain(int bus, int stem, float g) {
  if (bus < 0 || bus >= buses_ || stem < 0 || stem >= stems_) throw std::out_of_range("bus or stem index out of range");
  target_[bus * stems_ + stem].store(g, std::memory_order_relaxed);
}

float StemMixer::target_gain(int bus, int stem) const {
  if (bus < 0 || bus >= buses_ || stem < 0 || stem >= stems_) throw std::out_of_range("bus or stem index out of range");
  return target_[bus * stems_ + stem].load(std::memory_order_relaxed);
}

void StemMixer::snap_to_targets() {
  for (int i = 0; i < stems_ * buses_; ++i) {
    current_[i] = heading_[i] = target_[i].load(std::memory_order_relaxed);
    remaining_[i] = 0;
  }
}

void StemMixer::process(const cfloat* stems, cfloat* buses) {
  const int n = channels_ * bins_ * 2;  // floats per stem frame
  const float* s = reinterpret_cast<const float*>(stems);
  float* out = reinterpret_cast<float*>(buses);
  for (int b = 0; b < buses_; ++b) {
    float* o = out + static_cast<size_t>(b) * n;
    for (int i = 0; i < n; ++i) o[i] = 0.0f;
    for (int j = 0; j < stems_; ++j) {
      const int k = b * stems_ + j;
      const float t = target_[k].load(std::memory_order_relaxed);
      if (t != heading_[k]) {  // new target: start a linear ramp from where we are
        heading_[k] = t;
        step_[k] = (t - current_[k]) / ramp_frames_;
        remaining_[k] = ramp_frames_;
      }
      if (remaining_[k] > 0) {
        current_[k] = (--remaining_[k] == 0) ? heading_[k] : current_[k] + step_[k];
      }
      const float g = current_[k];
      if (g == 0.0f) continue;
      const float* x = s + static_cast<size_t>(j) * n;
      for (int i = 0; i < n; ++i) o[i] += g * x[i];
    }
  }
}

}  // namespace livedemix
