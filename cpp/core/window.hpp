// STFT window configurations and the reconstruction condition.
//
// Three window families:
//   hann        periodic Hann analysis window of n_fft samples; synthesis window = the
//               least-squares dual (analysis / Σ_q analysis²(n + q·hop)).
//   sqrt-hann   sqrt of the periodic Hann for analysis; synthesis = its dual (for hop = n/2
//               this is sqrt-Hann again).
//   asymmetric  Mauler & Martin (2007) low-delay pair: a long analysis window of n_fft samples
//               whose right part is a short sqrt-Hann of 2·hop, and a synthesis window that is
//               zero except over the frame's last 2·hop samples, chosen so that
//               analysis·synthesis = Hann(2·hop) there. The output of a frame then depends on
//               its last 2·hop samples only, so the round-trip latency is 2·hop, not n_fft.
// The synthesis support length L (n_fft, or 2·hop for the asymmetric pair) is the latency of
// an analysis+synthesis round trip in this core: a frame completes hop samples of output
// L - hop samples behind its newest input, and one hop of output buffering lets blocks of any
// size (not only multiples of hop) stream with one constant delay.
#pragma once
#include <string>
#include <vector>

namespace livedemix {

enum class WindowType { Hann, SqrtHann, Asymmetric };

struct StftConfig {
  int n_fft = 1024;
  int hop = 256;
  WindowType window = WindowType::Hann;

  int bins() const { return n_fft / 2 + 1; }
  // Length of the synthesis window's support, ending at the frame's last sample.
  int synthesis_length() const { return window == WindowType::Asymmetric ? 2 * hop : n_fft; }
  // Exact analysis→synthesis round-trip delay in samples (see the header comment).
  int latency_samples() const { return synthesis_length(); }
};

WindowType parse_window_type(const std::string& name);
std::string window_type_name(WindowType w);

// Throws std::invalid_argument with a sentence saying what is wrong and what would work.
void validate(const StftConfig& cfg);

// analysis and synthesis windows, each n_fft long. Validates first.
struct WindowPair {
  std::vector<float> analysis;
  std::vector<float> synthesis;
};
WindowPair make_windows(const StftConfig& cfg);

}  // namespace livedemix
