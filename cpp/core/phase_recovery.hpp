// Causal phase recovery for magnitude-only separators (one STFT frame at a time).
//
// A separator gives each stem j a magnitude V_j(f,t); this stage gives each stem a phase and
// makes the stems add up to the mixture X(f,t), using only the current and past frames.
// Per channel and per stem:
//   1. peaks of V_j(·,t) above -40 dB of the frame maximum, refined by quadratic interpolation
//      on the log magnitude (QIFFT); regions of influence split at the magnitude-weighted point
//      between neighbouring peaks (Laroche & Dolson 1999); each bin takes its region's peak
//      frequency ν (cycles per sample); without peaks a bin keeps its own centre frequency;
//   2. phase unwrapping (PU, Magron et al. 2015/2018): φ_j(f,t) = ∠Ŝ_j(f,t-1) + 2π·hop·ν;
//   3. a causal onset detector (normalised spectral flux of V_j against an adaptive threshold
//      built from past frames only); at an onset, and at the first frame, the mixture's phase;
//   4. one of three ways to combine the stems with the mixture (selectable at run time):
//        wiener       Y_j = λ_j X,  λ_j = V_j^p/Σ_k V_k^p  (the mixture's phase, soft mask;
//                     p = mask_power, 2 by default: the classical Wiener weights);
//        pu-iter      S_j = V_j e^{iφ_j}; n_iter times: E = X - Σ S_k, Y_j = S_j + λ_j E,
//                     S_j = V_j Y_j/|Y_j|; the Y_j of the last iteration are the output;
//        anisotropic  the posterior mean of S_j under a von Mises prior on its phase centred on
//                     φ_j with concentration κ (Magron et al., ICASSP 2017).
// In every mode Σ_j out_j = X (to float rounding): wiener because Σ λ_j = 1, pu-iter because
// Σ_j Y_j = Σ_j S_j + E Σ_j λ_j = X, anisotropic by construction of the posterior mean plus a
// final residual shared by the Wiener weights (see phase_recovery.cpp).
//
// Layouts follow types.hpp: X is cfloat[C][F], V is float[J][C][F], out is cfloat[J][C][F].
//
// Real-time contract: the constructor and `prepare()` allocate. `process()` and
// `process_frames()` never allocate, lock, log or throw; `reset()` does not allocate either.
// Non-finite inputs are replaced by 0 (negative magnitudes too) and counted; outputs stay
// finite. The setters (`set_mode`, `set_n_iter`, `set_kappa`, `set_mask_power`) are allocation-free plain stores:
// call them from the thread that calls `process()` or between calls. Not thread-safe otherwise.
// `process()` sets FTZ/DAZ for its duration and restores the caller's MXCSR. The PU-Iter
// iterations run on AVX2+FMA when the CPU has them (chosen in `prepare()`), else on SSE2; the
// two differ by float rounding (each is deterministic). The phase carried to the next frame is
// that of the stem handed out (Y_j), so switching modes between frames is seamless.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "types.hpp"

namespace livedemix {

enum class PhaseMode { Wiener, PUIter, Anisotropic };

// "wiener", "pu-iter", "anisotropic" (throws std::invalid_argument naming the choices).
PhaseMode parse_phase_mode(const std::string& name);
std::string phase_mode_name(PhaseMode m);

struct PhaseRecoveryOptions {
  PhaseMode mode = PhaseMode::PUIter;
  int n_iter = 16;     // PU-Iter iterations per frame (>= 1); see docs/EVALUATION.md
  float kappa = 2.0f;  // von Mises concentration for the anisotropic mode (>= 0)
  // Exponent p of the weights λ_j = V_j^p / Σ_k V_k^p that every mode shares the mixture by
  // (the wiener mask, PU-Iter's residual, the anisotropic prior's variances). 2 treats V² as
  // each stem's power (Wiener); an estimated V is often better served by a softer mask (1 = a
  // magnitude ratio mask). In [0.25, 8]; 1 and 2 are exact fast paths, others use powf.
  float mask_power = 2.0f;
  float peak_db = -40.0f;  // peaks must exceed this level relative to the frame maximum
  // Onset detector: normalised flux d(t) = Σ_f max(0, V(t)-V(t-1)) / Σ_f V(t), in [0, 1].
  // Onset when d(t) > onset_floor and d(t) > onset_ratio · mean of d over the past frames
  // (exponential average with coefficient onset_smoothing per frame).
  float onset_floor = 0.2f;
  float onset_ratio = 2.0f;
  float onset_smoothing = 0.1f;
};

struct PhaseRecoveryStats {
  std::uint64_t frames = 0;
  std::uint64_t nonfinite_mixture = 0;    // bins of X that were NaN/Inf (replaced by 0)
  std::uint64_t nonfinite_magnitude = 0;  // values of V that were NaN/Inf (replaced by 0)
  std::uint64_t negative_magnitude = 0;   // values of V that were < 0 (replaced by 0)
  std::uint64_t onsets = 0;               // (stem, channel, frame) triples that took X's phase
};

class PhaseRecovery {
 public:
  PhaseRecovery() = default;
  PhaseRecovery(int n_stems, int channels, int n_fft, int hop,
                const PhaseRecoveryOptions& opts = PhaseRecoveryOptions());

  // Allocates every buffer for (J, C, n_fft, hop) and resets the state. Throws
  // std::invalid_argument on a bad configuration.
  void prepare(int n_stems, int channels, int n_fft, int hop);
  // Forgets the past (next frame is a "first frame" for every stem). Allocation-free.
  void reset();

  // One frame. X: cfloat[C][F], V: float[J][C][F], out: cfloat[J][C][F]. Allocation-free.
  // `out` must not alias X or V.
  void process(const cfloat* X, const float* V, cfloat* out);
  // `n_frames` consecutive frames: X cfloat[T][C][F], V float[T][J][C][F], out cfloat[T][J][C][F].
  void process_frames(const cfloat* X, const float* V, cfloat* out, int n_frames);
  // Phase unwrapping alone, for phase retrieval and analysis (NOT mixture-consistent, whatever
  // the mode): out_j = V_j e^{iφ_j}, where X only supplies the phase at onsets and at the first
  // frame. Same state as process(); allocation-free.
  void unwrap(const cfloat* X, const float* V, cfloat* out);
  void unwrap_frames(const cfloat* X, const float* V, cfloat* out, int n_frames);

  void set_mode(PhaseMode m) { opts_.mode = m; }
  void set_n_iter(int n);        // clamps to [1, 1000]
  void set_kappa(float kappa);   // clamps to [0, 1e6]; computes the Bessel ratios (no allocation)
  void set_mask_power(float p);  // clamps to [0.25, 8] (a non-finite p keeps the current one)
  PhaseMode mode() const { return opts_.mode; }
  int n_iter() const { return opts_.n_iter; }
  float kappa() const { return opts_.kappa; }
  float mask_power() const { return opts_.mask_power; }
  const PhaseRecoveryOptions& options() const { return opts_; }
  void set_options(const PhaseRecoveryOptions& opts);

  int n_stems() const { return J_; }
  int channels() const { return C_; }
  int n_fft() const { return n_fft_; }
  int hop() const { return hop_; }
  int bins() const { return F_; }
  const PhaseRecoveryStats& stats() const { return stats_; }
  // The PU-Iter kernel uses AVX2+FMA when the CPU has them (checked in prepare()); tests
  // switch it off to compare with the SSE2 path. Call before prepare() to take effect.
  void set_allow_avx2(bool allow) { allow_avx2_ = allow; }
  bool uses_avx2() const { return use_avx2_; }

 private:
  void process_channel(const cfloat* X, const float* V, cfloat* out, int c, bool unwrap_only);
  // Fills pr_/pi_ (stem j) with the PU phasor estimate for channel c, or X's phase at an onset.
  void estimate_phase(int j, int c, bool onset);
  bool detect_onset(int j, int c, const float* v);

  PhaseRecoveryOptions opts_;
  int J_ = 0, C_ = 0, F_ = 0, n_fft_ = 0, hop_ = 0;
  float aw_lambda_ = 0.f, aw_rho_ = 0.f;
  float peak_lin_ = 0.01f;                     // 10^(peak_db/20)
  bool allow_avx2_ = true, use_avx2_ = false;  // I1/I0 and (I2 I0 - I1²)/I0² at κ
  PhaseRecoveryStats stats_;

  // State, per (stem, channel): unit phasor of the previous output, previous magnitude,
  // mean past onset function, "has seen a frame".
  std::vector<float> prev_ur_, prev_ui_;  // [J][C][F]
  std::vector<float> prev_v_;             // [J][C][F]
  std::vector<float> flux_mean_;          // [J][C]
  std::vector<std::uint8_t> started_;     // [J][C]

  // Per-bin constants: e^{i 2π hop f / n_fft}.
  std::vector<float> bin_adv_r_, bin_adv_i_;  // [F]

  // Scratch for one channel.
  std::vector<float> xr_, xi_, xinv_;           // [F] sanitised X, 1/|X| (0 where X = 0)
  std::vector<float> v_;                        // [J][F] sanitised magnitudes
  std::vector<float> lam_;                      // [J][F] Wiener weights
  std::vector<float> pr_, pi_;                  // [J][F] phase estimate (unit phasor)
  std::vector<float> sr_, si_;                  // [J][F] current stem estimates
  std::vector<float> er_, ei_;                  // [F] residual / sums
  std::vector<float> ar_, ai_, br_, bi_, g_;    // [F] anisotropic sums
  std::vector<int> peak_bin_;                   // [F]
  std::vector<float> peak_amp_;                 // [F]
  std::vector<float> peak_adv_r_, peak_adv_i_;  // [F]
};

}  // namespace livedemix
