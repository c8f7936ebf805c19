#include "window.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace livedemix {

namespace {

double periodic_hann(int n, int length) { return 0.5 - 0.5 * std::cos(2.0 * M_PI * n / length); }

// Σ_q a[r + q·hop]·s[r + q·hop] for each residue r: must be 1 everywhere for perfect
// reconstruction by weighted overlap-add.
std::vector<double> overlap_sum(const std::vector<double>& a, const std::vector<double>& s, int hop) {
  std::vector<double> sum(hop, 0.0);
  for (size_t n = 0; n < a.size(); ++n) sum[n % hop] += a[n] * s[n];
  return sum;
}

}  // namespace

WindowType parse_window_type(const std::string& name) {
  if (name == "hann") return WindowType::Hann;
  if (name == "sqrt-hann") return WindowType::SqrtHann;
  if (name == "asymmetric") return WindowType::Asymmetric;
  throw std::invalid_argument("unknown window '" + name + "': use 'hann', 'sqrt-hann' or 'asymmetric'");
}

std::string window_type_name(WindowType w) {
  switch (w) {
    case WindowType::Hann:
      return "hann";
    case WindowType::SqrtHann:
      return "sqrt-hann";
    case WindowType::Asymmetric:
      return "asymmetric";
  }
  return "?";
}

void validate(const StftConfig& cfg) {
  const int n = cfg.n_fft, hop = cfg.hop;
  if (n < 16 || n > 65536 || (n & (n - 1)) != 0)
    throw std::invalid_argument("n_fft=" + std::to_string(n) +
                                " is not supported: use a power of two from 16 to 65536");
  if (hop < 1 || hop > n)
    throw std::invalid_argument("hop=" + std::to_string(hop) + " is out of range: use 1 <= hop <= n_fft (" +
                                std::to_string(n) + ")");
  if (cfg.window == WindowType::Asymmetric) {
    if (2 * hop > n)
      throw std::invalid_argument("the asymmetric window needs n_fft >= 2*hop (got n_fft=" + std::to_string(n) +
                                  ", hop=" + std::to_string(hop) + "): lower the hop or raise n_fft");
    return;
  }
  // Symmetric windows: the dual synthesis window exists when every output sample is covered
  // by analysis energy; demand the weakest residue to carry at least 1% of the strongest.
  const double exponent = cfg.window == WindowType::SqrtHann ? 0.5 : 1.0;
  std::vector<double> sq(hop, 0.0);
  for (int i = 0; i < n; ++i) sq[i % hop] += std::pow(periodic_hann(i, n), 2.0 * exponent);
  const auto [lo, hi] = std::minmax_element(sq.begin(), sq.end());
  if (*lo < 1e-2 * *hi)
    throw std::invalid_argument(
        "hop=" + std::to_string(hop) + " is too large for a " + window_type_name(cfg.window) + " window of " +
        std::to_string(n) +
        " samples (frames don't overlap enough to reconstruct): use hop <= " + std::to_string(n / 2));
}

WindowPair make_windows(const StftConfig& cfg) {
  validate(cfg);
  const int n = cfg.n_fft, hop = cfg.hop;
  std::vector<double> a(n, 0.0), s(n, 0.0);
  if (cfg.window == WindowType::Asymmetric) {
    const int m2 = 2 * hop;    // short window length
    const int rise = n - hop;  // samples of the long rising half
    for (int i = 0; i < n; ++i) {
      if (i < rise) {
        a[i] = std::sqrt(periodic_hann(i, 2 * rise));
      } else {
        a[i] = std::sqrt(periodic_hann(i - (n - m2), m2));
      }
    }
    for (int i = n - m2; i < n; ++i) {
      const double target = periodic_hann(i - (n - m2), m2);  // analysis·synthesis
      s[i] = a[i] > 1e-12 ? target / a[i] : 0.0;
    }
  } else {
    const double exponent = cfg.window == WindowType::SqrtHann ? 0.5 : 1.0;
    for (int i = 0; i < n; ++i) a[i] = std::pow(periodic_hann(i, n), exponent);
    std::vector<double> sq(hop, 0.0);
    for (int i = 0; i < n; ++i) sq[i % hop] += a[i] * a[i];
    for (int i = 0; i < n; ++i) s[i] = a[i] / sq[i % hop];
  }
  const auto sum = overlap_sum(a, s, hop);
  for (double v : sum)
    if (std::abs(v - 1.0) > 1e-9)
      throw std::logic_error("internal: window pair does not reconstruct (overlap sum " + std::to_string(v) + ")");
  WindowPair w;
  w.analysis.assign(a.begin(), a.end());
  w.synthesis.assign(s.begin(), s.end());
  return w;
}

}  // namespace livedemix
