// Mixes J stem frames into B bus frames in the STFT domain: bus_b = Σ_j g[b][j]·stem_j.
//
// Gains are targets written from any thread (one atomic float each, so a control thread
// never blocks the audio thread); the audio thread moves each applied gain linearly to its
// target over `ramp_frames` frames. Because the synthesis window overlaps consecutive frames,
// a per-frame gain step is further smoothed by overlap-add, so a gain jump never clicks.
#pragma once
#include <atomic>
#include <memory>
#include <vector>

#include "types.hpp"

namespace livedemix {

class StemMixer {
 public:
  StemMixer(int stems, int buses, int channels, int bins, int ramp_frames);

  // Control side (any thread): linear gain target of stem j on bus b.
  void set_gain(int bus, int stem, float linear_gain);
  float target_gain(int bus, int stem) const;
  // Gain applied to the most recent frame.
  float current_gain(int bus, int stem) const { return current_[bus * stems_ + stem]; }
  // Jump every applied gain to its target (e.g. before the first frame).
  void snap_to_targets();

  // stems [J][C][F] → buses [B][C][F]. No allocation.
  void process(const cfloat* stems, cfloat* buses);

  int stems() const { return stems_; }
  int buses() const { return buses_; }
  int channels() const { return channels_; }
  int bins() const { return bins_; }
  int ramp_frames() const { return ramp_frames_; }

 private:
  int stems_, buses_, channels_, bins_, ramp_frames_;
  std::unique_ptr<std::atomic<float>[]> target_;
  std::vector<float> current_;  // applied gain
  std::vector<float> heading_;  // target the current ramp heads to
  std::vector<float> step_;
  std::vector<int> remaining_;
};

}  // namespace livedemix
