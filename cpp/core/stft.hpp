// Streaming STFT analysis and weighted overlap-add synthesis.
//
// StftAnalyzer: push blocks of any size; every frame whose last sample has arrived is emitted
// (frame t covers input [(t+1)·hop - n_fft, (t+1)·hop), the stream starting from silence).
// StftSynthesizer: push frames, pull blocks; output equals the analysed input delayed by
// exactly `latency_samples()` = the synthesis window's support (see window.hpp), for any
// block size, provided each pull follows the frames of the same block.
// Non-finite input samples (or frame bins) are replaced by zeros and the block is counted, so
// one bad block never poisons the stream.
// Allocation happens in the constructors and `prepare()`; `process`/`push`/`pull` never
// allocate, lock, or do I/O.
#pragma once
#include <cstddef>
#include <vector>

#include "fft.hpp"
#include "types.hpp"
#include "window.hpp"

namespace livedemix {

class StftAnalyzer {
 public:
  StftAnalyzer(const StftConfig& cfg, int channels);

  // Sizes the frame output for blocks of up to max_block samples.
  void prepare(int max_block);
  int max_block() const { return max_block_; }
  // Upper bound on frames one process() call of max_block samples can emit.
  int max_frames_per_block() const { return (max_block_ + cfg_.hop - 1) / cfg_.hop; }

  // x: channels rows of n samples, row i at x + i*channel_stride. Writes up to
  // max_frames_per_block() frames [C][F] to out_frames; returns the number written.
  // n must be <= max_block (checked by the bindings).
  int process(const float* x, std::ptrdiff_t channel_stride, int n, cfloat* out_frames);

  void reset();

  const StftConfig& config() const { return cfg_; }
  int channels() const { return channels_; }
  int bins() const { return cfg_.bins(); }
  // A frame is emitted in the call that delivers its last sample; the analysis side adds no
  // delay of its own (the round-trip delay is declared by the synthesizer).
  int latency_samples() const { return 0; }
  const std::vector<float>& window() const { return analysis_; }
  long nonfinite_blocks() const { return nonfinite_blocks_; }
  long frames_emitted() const { return frames_emitted_; }

 private:
  StftConfig cfg_;
  int channels_;
  int max_block_ = 0;
  RealFft fft_;
  std::vector<float> analysis_;
  std::vector<float> history_;  // [C][n_fft]: the newest n_fft samples, oldest first
  int pending_ = 0;             // samples received toward the next hop
  long nonfinite_blocks_ = 0;
  long frames_emitted_ = 0;
};

class StftSynthesizer {
 public:
  StftSynthesizer(const StftConfig& cfg, int channels);

  // Sizes the output FIFO for blocks of up to max_block samples.
  void prepare(int max_block);
  int max_block() const { return max_block_; }

  // Overlap-adds one frame [C][F]; hop samples become ready. Returns false (and counts an
  // overflow) if the caller pushed more frames than it pulled for.
  bool push_frame(const cfloat* frame);
  // Writes n samples per channel; missing samples (underflow) are zeros and counted.
  void pull(float* y, std::ptrdiff_t channel_stride, int n);
  int available() const { return fifo_count_; }

  void reset();

  const StftConfig& config() const { return cfg_; }
  int channels() const { return channels_; }
  int latency_samples() const { return cfg_.latency_samples(); }
  const std::vector<float>& window() const { return synthesis_; }
  long nonfinite_frames() const { return nonfinite_frames_; }
  long underflows() const { return underflows_; }
  long overflows() const { return overflows_; }

 private:
  StftConfig cfg_;
  int channels_;
  int max_block_ = 0;
  int span_;  // synthesis support length L
  RealFft fft_;
  std::vector<float> synthesis_;
  std::vector<float> synthesis_scaled_;  // synthesis window / n_fft (the inverse FFT's factor)
  std::vector<float> accum_;             // [C][L] overlap-add accumulator
  std::vector<float> fifo_;              // [C][fifo_cap] completed output, linear with read offset
  int fifo_cap_ = 0;
  int fifo_read_ = 0;
  int fifo_count_ = 0;
  long nonfinite_frames_ = 0;
  long underflows_ = 0;
  long overflows_ = 0;
};

}  // namespace livedemix
