// Causal phase recovery: see phase_recovery.hpp for the algorithm and the contract.
//
// Implementation notes
// - Everything per channel works on structure-of-arrays scratch (separate real and imaginary
//   float arrays, one row of F bins per stem) so that the inner loops over bins vectorise.
// - Phases are carried as unit phasors, never as angles: the PU step ∠Ŝ(t-1) + 2π·hop·ν is a
//   complex multiplication of the previous output's phasor by e^{i2π·hop·ν}. The advance of a
//   bin's own centre frequency is a table; a peak's advance is the table entry of its bin times
//   e^{i2π·hop·δ/n_fft} for its QIFFT offset δ, i.e. one sin/cos per peak and none per bin.
// - Sanitising: non-finite X bins become 0, non-finite or negative V values become 0 (counted);
//   finite values are clamped to ±1e15 so that V² and sums of J of them stay finite in float.
#include "phase_recovery.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "bessel.hpp"

#if defined(__SSE2__) || defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#include <immintrin.h>
#include <xmmintrin.h>
#define LD_HAVE_MXCSR 1
#define LD_HAVE_SSE2 1
#if defined(__GNUC__)
#define LD_HAVE_AVX2_DISPATCH 1
#endif
#endif

namespace livedemix {

namespace {

constexpr float kMaxAbs = 1e15f;
constexpr float kTiny2 = 1e-36f;  // squared magnitudes at or below this count as zero
constexpr double kTwoPi = 6.283185307179586476925286766559;

// Flush denormals to zero (FTZ + DAZ) for the duration of a process call, restoring the
// caller's floating-point state afterwards.
struct DenormalGuard {
#ifdef LD_HAVE_MXCSR
  unsigned int saved;
  DenormalGuard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~DenormalGuard() { _mm_setcsr(saved); }
#endif
};

inline float clamp_abs(float x) { return std::min(std::max(x, -kMaxAbs), kMaxAbs); }

// QIFFT and phase-advance math for a batch of peaks, in float, identical in the scalar and
// the SSE versions (same operations in the same order, no FMA), so that the result does not
// depend on how many peaks a frame has.
//   log: exponent plus the atanh series of the mantissa reduced to [sqrt(1/2), sqrt(2)):
//        log m = 2s(1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9), s = (m-1)/(m+1), |s| <= 0.172
//        (truncation < 1e-9; float rounding dominates);
//   sin/cos of |a| <= 0.8: Taylor to order 9/10 (truncation < 3e-9).
constexpr float kSqrt2 = 1.41421356237f;
constexpr float kLn2 = 0.693147180560f;
constexpr float kRatioFloor = 1e-30f;

inline float log_f(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  float e = static_cast<float>(static_cast<int>((bits >> 23) & 0xffu) - 127);
  bits = (bits & 0x7fffffu) | 0x3f800000u;
  float m;
  std::memcpy(&m, &bits, sizeof m);
  if (m > kSqrt2) {
    m = m * 0.5f;
    e = e + 1.f;
  }
  const float s = (m - 1.f) / (m + 1.f), s2 = s * s;
  const float poly = 1.f + s2 * (1.f / 3 + s2 * (1.f / 5 + s2 * (1.f / 7 + s2 * (1.f / 9))));
  return e * kLn2 + 2.f * s * poly;
}

inline void sincos_small_f(float a, float& c, float& s) {
  const float a2 = a * a;
  c = 1.f - a2 * (1.f / 2) *
                (1.f - a2 * (1.f / 12) * (1.f - a2 * (1.f / 30) * (1.f - a2 * (1.f / 56) * (1.f - a2 * (1.f / 90)))));
  s = a * (1.f - a2 * (1.f / 6) * (1.f - a2 * (1.f / 20) * (1.f - a2 * (1.f / 42) * (1.f - a2 * (1.f / 72)))));
}

// QIFFT offset of a peak b with neighbours a, c (a < b >= c), from the log ratios
// ra = ln(a/b), rc = ln(c/b): δ = ½(α-γ)/(α-2β+γ) = ½(ra-rc)/(ra+rc), clamped to ±½.
inline float qifft_offset_f(float a, float b, float c) {
  const float ra = log_f(std::max(a / b, kRatioFloor)), rc = log_f(std::max(c / b, kRatioFloor));
  const float den = ra + rc;
  const float d = den < -1e-12f ? 0.5f * (ra - rc) / den : 0.f;
  return std::min(std::max(d, -0.5f), 0.5f);
}

#ifdef LD_HAVE_SSE2
inline __m128 log_ps(__m128 x) {
  const __m128i xi = _mm_castps_si128(x);
  __m128 e =
      _mm_cvtepi32_ps(_mm_sub_epi32(_mm_and_si128(_mm_srli_epi32(xi, 23), _mm_set1_epi32(0xff)), _mm_set1_epi32(127)));
  __m128 m = _mm_castsi128_ps(_mm_or_si128(_mm_and_si128(xi, _mm_set1_epi32(0x7fffff)), _mm_set1_epi32(0x3f800000)));
  const __m128 big = _mm_cmpgt_ps(m, _mm_set1_ps(kSqrt2));
  m = _mm_or_ps(_mm_and_ps(big, _mm_mul_ps(m, _mm_set1_ps(0.5f))), _mm_andnot_ps(big, m));
  e = _mm_or_ps(_mm_and_ps(big, _mm_add_ps(e, _mm_set1_ps(1.f))), _mm_andnot_ps(big, e));
  const __m128 one = _mm_set1_ps(1.f);
  const __m128 s = _mm_div_ps(_mm_sub_ps(m, one), _mm_add_ps(m, one)), s2 = _mm_mul_ps(s, s);
  __m128 poly = _mm_add_ps(_mm_set1_ps(1.f / 7), _mm_mul_ps(s2, _mm_set1_ps(1.f / 9)));
  poly = _mm_add_ps(_mm_set1_ps(1.f / 5), _mm_mul_ps(s2, poly));
  poly = _mm_add_ps(_mm_set1_ps(1.f / 3), _mm_mul_ps(s2, poly));
  poly = _mm_add_ps(one, _mm_mul_ps(s2, poly));
  return _mm_add_ps(_mm_mul_ps(e, _mm_set1_ps(kLn2)), _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(2.f), s), poly));
}

inline void sincos_small_ps(__m128 a, __m128& c, __m128& s) {
  const __m128 a2 = _mm_mul_ps(a, a), one = _mm_set1_ps(1.f);
  auto step = [&](__m128 inner, float k) { return _mm_sub_ps(one, _mm_mul_ps(_mm_mul_ps(a2, _mm_set1_ps(k)), inner)); };
  c = step(step(step(step(step(one, 1.f / 90), 1.f / 56), 1.f / 30), 1.f / 12), 1.f / 2);
  s = _mm_mul_ps(a, step(step(step(step(one, 1.f / 72), 1.f / 42), 1.f / 20), 1.f / 6));
}

inline __m128 qifft_offset_ps(__m128 a, __m128 b, __m128 c) {
  const __m128 fl = _mm_set1_ps(kRatioFloor);
  const __m128 ra = log_ps(_mm_max_ps(_mm_div_ps(a, b), fl)), rc = log_ps(_mm_max_ps(_mm_div_ps(c, b), fl));
  const __m128 den = _mm_add_ps(ra, rc);
  const __m128 ok = _mm_cmplt_ps(den, _mm_set1_ps(-1e-12f));
  const __m128 safe = _mm_or_ps(_mm_and_ps(ok, den), _mm_andnot_ps(ok, _mm_set1_ps(-1.f)));
  const __m128 d = _mm_and_ps(ok, _mm_div_ps(_mm_mul_ps(_mm_set1_ps(0.5f), _mm_sub_ps(ra, rc)), safe));
  return _mm_min_ps(_mm_max_ps(d, _mm_set1_ps(-0.5f)), _mm_set1_ps(0.5f));
}
#endif

// The PU-Iter inner loop over a block of bins: all n_iter iterations of a block run back to
// back while it is in registers / L1 (the bins are independent within a frame).
struct PuIterArgs {
  int F, J, n_iter;
  const float *xr, *xi, *v, *lam, *pr, *pi;  // [F], [F], [J][F] x4
  float *sr, *si;                            // [J][F] scratch (S_j)
  float* out;                                // stem j's interleaved row at out + j*out_stride
  size_t out_stride;
  float *ur, *ui;  // stem j's phase state at ur + j*state_stride
  size_t state_stride;
};

#ifdef LD_HAVE_AVX2_DISPATCH
// AVX2 + FMA, 8 bins per vector; compiled for those extensions only and called only when the
// CPU has them (checked at run time). Returns the first bin it did not process.
__attribute__((target("avx2,fma"))) int pu_iter_avx2(const PuIterArgs& a) {
  const int F = a.F, J = a.J;
  const __m256 tiny = _mm256_set1_ps(kTiny2), half = _mm256_set1_ps(0.5f), three_halves = _mm256_set1_ps(1.5f);
  int f0 = 0;
  for (; f0 + 8 <= F; f0 += 8) {
    for (int j = 0; j < J; ++j) {
      const size_t o = static_cast<size_t>(j) * F + f0;
      const __m256 v = _mm256_loadu_ps(a.v + o);
      _mm256_storeu_ps(a.sr + o, _mm256_mul_ps(v, _mm256_loadu_ps(a.pr + o)));
      _mm256_storeu_ps(a.si + o, _mm256_mul_ps(v, _mm256_loadu_ps(a.pi + o)));
    }
    const __m256 xr = _mm256_loadu_ps(a.xr + f0), xi = _mm256_loadu_ps(a.xi + f0);
    for (int it = 0; it < a.n_iter; ++it) {
      __m256 er = xr, ei = xi;
      for (int j = 0; j < J; ++j) {
        const size_t o = static_cast<size_t>(j) * F + f0;
        er = _mm256_sub_ps(er, _mm256_loadu_ps(a.sr + o));
        ei = _mm256_sub_ps(ei, _mm256_loadu_ps(a.si + o));
      }
      const bool last = it + 1 == a.n_iter;
      for (int j = 0; j < J; ++j) {
        const size_t o = static_cast<size_t>(j) * F + f0;
        const __m256 lam = _mm256_loadu_ps(a.lam + o);
        const __m256 yr = _mm256_fmadd_ps(lam, er, _mm256_loadu_ps(a.sr + o));
        const __m256 yi = _mm256_fmadd_ps(lam, ei, _mm256_loadu_ps(a.si + o));
        const __m256 m2 = _mm256_fmadd_ps(yr, yr, _mm256_mul_ps(yi, yi));
        const __m256 nz = _mm256_cmp_ps(m2, tiny, _CMP_GT_OQ);
        __m256 r = _mm256_rsqrt_ps(_mm256_max_ps(m2, tiny));
        r = _mm256_mul_ps(r, _mm256_fnmadd_ps(_mm256_mul_ps(half, m2), _mm256_mul_ps(r, r), three_halves));
        r = _mm256_and_ps(nz, r);  // 1/|Y|, 0 where Y = 0
        if (!last) {
          const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(a.v + o), r);  // S_j = V_j Y_j/|Y_j|
          _mm256_storeu_ps(a.sr + o, _mm256_mul_ps(g, yr));
          _mm256_storeu_ps(a.si + o, _mm256_mul_ps(g, yi));
        } else {
          float* out_f = a.out + j * a.out_stride + 2 * f0;
          const __m256 lo = _mm256_unpacklo_ps(yr, yi), hi = _mm256_unpackhi_ps(yr, yi);
          _mm256_storeu_ps(out_f, _mm256_permute2f128_ps(lo, hi, 0x20));
          _mm256_storeu_ps(out_f + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
          const size_t so = j * a.state_stride + f0;
          _mm256_storeu_ps(a.ur + so, _mm256_blendv_ps(_mm256_loadu_ps(a.pr + o), _mm256_mul_ps(yr, r), nz));
          _mm256_storeu_ps(a.ui + so, _mm256_blendv_ps(_mm256_loadu_ps(a.pi + o), _mm256_mul_ps(yi, r), nz));
        }
      }
    }
  }
  return f0;
}

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

// SSE2, 4 bins per vector, from bin f0. Returns the first bin it did not process.
int pu_iter_sse2(const PuIterArgs& a, int f0) {
#ifdef LD_HAVE_SSE2
  const int F = a.F, J = a.J;
  const __m128 tiny = _mm_set1_ps(kTiny2), half = _mm_set1_ps(0.5f), three_halves = _mm_set1_ps(1.5f);
  for (; f0 + 4 <= F; f0 += 4) {
    for (int j = 0; j < J; ++j) {
      const size_t o = static_cast<size_t>(j) * F + f0;
      const __m128 v = _mm_loadu_ps(a.v + o);
      _mm_storeu_ps(a.sr + o, _mm_mul_ps(v, _mm_loadu_ps(a.pr + o)));
      _mm_storeu_ps(a.si + o, _mm_mul_ps(v, _mm_loadu_ps(a.pi + o)));
    }
    const __m128 xr = _mm_loadu_ps(a.xr + f0), xi = _mm_loadu_ps(a.xi + f0);
    for (int it = 0; it < a.n_iter; ++it) {
      __m128 er = xr, ei = xi;  // E = X - Σ_k S_k
      for (int j = 0; j < J; ++j) {
        const size_t o = static_cast<size_t>(j) * F + f0;
        er = _mm_sub_ps(er, _mm_loadu_ps(a.sr + o));
        ei = _mm_sub_ps(ei, _mm_loadu_ps(a.si + o));
      }
      const bool last = it + 1 == a.n_iter;
      for (int j = 0; j < J; ++j) {
        const size_t o = static_cast<size_t>(j) * F + f0;
        const __m128 lam = _mm_loadu_ps(a.lam + o);
        const __m128 yr = _mm_add_ps(_mm_loadu_ps(a.sr + o), _mm_mul_ps(lam, er));
        const __m128 yi = _mm_add_ps(_mm_loadu_ps(a.si + o), _mm_mul_ps(lam, ei));
        const __m128 m2 = _mm_add_ps(_mm_mul_ps(yr, yr), _mm_mul_ps(yi, yi));
        const __m128 nz = _mm_cmpgt_ps(m2, tiny);
        // 1/|Y| by rsqrt and one Newton step (relative error ~1e-7); 0 where Y = 0.
        __m128 r = _mm_rsqrt_ps(_mm_max_ps(m2, tiny));
        r = _mm_mul_ps(r, _mm_sub_ps(three_halves, _mm_mul_ps(_mm_mul_ps(half, m2), _mm_mul_ps(r, r))));
        r = _mm_and_ps(nz, r);
        if (!last) {
          const __m128 g = _mm_mul_ps(_mm_loadu_ps(a.v + o), r);  // S_j = V_j Y_j/|Y_j|
          _mm_storeu_ps(a.sr + o, _mm_mul_ps(g, yr));
          _mm_storeu_ps(a.si + o, _mm_mul_ps(g, yi));
        } else {
          // Hand out Y_j (not S_j): Σ_j Y_j = Σ_j S_j + E Σ_j λ_j = X.
          float* out_f = a.out + j * a.out_stride + 2 * f0;
          _mm_storeu_ps(out_f, _mm_unpacklo_ps(yr, yi));
          _mm_storeu_ps(out_f + 4, _mm_unpackhi_ps(yr, yi));
          // phase state: unit phasor of Y, or the estimate where Y = 0
          const size_t so = j * a.state_stride + f0;
          const __m128 pr = _mm_loadu_ps(a.pr + o), pi = _mm_loadu_ps(a.pi + o);
          _mm_storeu_ps(a.ur + so, _mm_or_ps(_mm_and_ps(nz, _mm_mul_ps(yr, r)), _mm_andnot_ps(nz, pr)));
          _mm_storeu_ps(a.ui + so, _mm_or_ps(_mm_and_ps(nz, _mm_mul_ps(yi, r)), _mm_andnot_ps(nz, pi)));
        }
      }
    }
  }
#endif
  return f0;
}

// Plain C++ for the remaining bins (all bins without SSE2).
void pu_iter_scalar(const PuIterArgs& a, int f0) {
  const int F = a.F, J = a.J;
  for (int f = f0; f < F; ++f) {
    for (int j = 0; j < J; ++j) {
      const size_t o = static_cast<size_t>(j) * F + f;
      a.sr[o] = a.v[o] * a.pr[o];
      a.si[o] = a.v[o] * a.pi[o];
    }
    for (int it = 0; it < a.n_iter; ++it) {
      float er = a.xr[f], ei = a.xi[f];
      for (int j = 0; j < J; ++j) {
        er -= a.sr[static_cast<size_t>(j) * F + f];
        ei -= a.si[static_cast<size_t>(j) * F + f];
      }
      const bool last = it + 1 == a.n_iter;
      for (int j = 0; j < J; ++j) {
        const size_t o = static_cast<size_t>(j) * F + f;
        const float lam = a.lam[o];
        const float yr = a.sr[o] + lam * er, yi = a.si[o] + lam * ei;
        const float m2 = yr * yr + yi * yi;
        const bool nz = m2 > kTiny2;
        const float r = nz ? 1.f / std::sqrt(m2) : 0.f;
        if (!last) {
          a.sr[o] = a.v[o] * r * yr;
          a.si[o] = a.v[o] * r * yi;
        } else {
          float* out_f = a.out + j * a.out_stride;
          out_f[2 * f] = yr;
          out_f[2 * f + 1] = yi;
          a.ur[j * a.state_stride + f] = nz ? yr * r : a.pr[o];
          a.ui[j * a.state_stride + f] = nz ? yi * r : a.pi[o];
        }
      }
    }
  }
}

}  // namespace

PhaseMode parse_phase_mode(const std::string& name) {
  if (name == "wiener") return PhaseMode::Wiener;
  if (name == "pu-iter") return PhaseMode::PUIter;
  if (name == "anisotropic") return PhaseMode::Anisotropic;
  throw std::invalid_argument("unknown phase recovery mode '" + name +
                              "'; use one of 'wiener', 'pu-iter', 'anisotropic'");
}

std::string phase_mode_name(PhaseMode m) {
  switch (m) {
    case PhaseMode::Wiener:
      return "wiener";
    case PhaseMode::PUIter:
      return "pu-iter";
    case PhaseMode::Anisotropic:
      return "anisotropic";
  }
  return "pu-iter";
}

PhaseRecovery::PhaseRecovery(int n_stems, int channels, int n_fft, int hop, const PhaseRecoveryOptions& opts) {
  set_options(opts);
  prepare(n_stems, channels, n_fft, hop);
}

void PhaseRecovery::set_options(const PhaseRecoveryOptions& opts) {
  if (!(opts.onset_smoothing >= 0.f && opts.onset_smoothing <= 1.f))
    throw std::invalid_argument("onset_smoothing must lie in [0, 1]");
  if (!std::isfinite(opts.peak_db) || !std::isfinite(opts.onset_floor) || !std::isfinite(opts.onset_ratio))
    throw std::invalid_argument("peak_db, onset_floor and onset_ratio must be finite numbers");
  opts_ = opts;
  peak_lin_ = std::pow(10.f, opts.peak_db / 20.f);
  set_n_iter(opts.n_iter);
  set_kappa(opts.kappa);
  opts_.mask_power = 2.f;
  set_mask_power(opts.mask_power);
}

void PhaseRecovery::set_mask_power(float p) {
  if (!std::isfinite(p)) return;
  opts_.mask_power = std::min(std::max(p, 0.25f), 8.f);
}

void PhaseRecovery::set_n_iter(int n) { opts_.n_iter = std::min(std::max(n, 1), 1000); }

void PhaseRecovery::set_kappa(float kappa) {
  if (!std::isfinite(kappa) || kappa < 0.f) kappa = 0.f;
  kappa = std::min(kappa, 1e6f);
  opts_.kappa = kappa;
  const BesselRatios r = bessel_ratios(kappa);
  aw_lambda_ = static_cast<float>(r.r1);
  aw_rho_ = static_cast<float>(r.r2 - r.r1 * r.r1);
}

void PhaseRecovery::prepare(int n_stems, int channels, int n_fft, int hop) {
  if (n_stems < 1) throw std::invalid_argument("n_stems must be at least 1");
  if (channels < 1) throw std::invalid_argument("channels must be at least 1");
  if (n_fft < 4 || n_fft % 2 != 0) throw std::invalid_argument("n_fft must be an even number >= 4");
  if (hop < 1 || hop > n_fft) throw std::invalid_argument("hop must lie in [1, n_fft]");
  J_ = n_stems;
  C_ = channels;
#ifdef LD_HAVE_AVX2_DISPATCH
  use_avx2_ = allow_avx2_ && cpu_has_avx2_fma();
#endif
  n_fft_ = n_fft;
  hop_ = hop;
  F_ = n_fft / 2 + 1;
  const size_t F = static_cast<size_t>(F_), JC = static_cast<size_t>(J_) * C_, JF = F * J_;
  prev_ur_.assign(JC * F, 1.f);
  prev_ui_.assign(JC * F, 0.f);
  prev_v_.assign(JC * F, 0.f);
  flux_mean_.assign(JC, 0.f);
  started_.assign(JC, 0);
  bin_adv_r_.resize(F);
  bin_adv_i_.resize(F);
  for (size_t f = 0; f < F; ++f) {
    // 2π·hop·f/n_fft reduced modulo 2π exactly in integers first.
    const long long num = (static_cast<long long>(hop) * static_cast<long long>(f)) % n_fft;
    const double a = kTwoPi * static_cast<double>(num) / n_fft;
    bin_adv_r_[f] = static_cast<float>(std::cos(a));
    bin_adv_i_[f] = static_cast<float>(std::sin(a));
  }
  for (auto* v : {&xr_, &xi_, &xinv_, &er_, &ei_, &ar_, &ai_, &br_, &bi_, &g_, &peak_amp_, &peak_adv_r_, &peak_adv_i_})
    v->assign(F, 0.f);
  for (auto* v : {&v_, &lam_, &pr_, &pi_, &sr_, &si_}) v->assign(JF, 0.f);
  peak_bin_.assign(F, 0);
  reset();
}

void PhaseRecovery::reset() {
  std::fill(prev_ur_.begin(), prev_ur_.end(), 1.f);
  std::fill(prev_ui_.begin(), prev_ui_.end(), 0.f);
  std::fill(prev_v_.begin(), prev_v_.end(), 0.f);
  std::fill(flux_mean_.begin(), flux_mean_.end(), 0.f);
  std::fill(started_.begin(), started_.end(), 0);
  stats_ = PhaseRecoveryStats();
}

void PhaseRecovery::process_frames(const cfloat* X, const float* V, cfloat* out, int n_frames) {
  const size_t xs = static_cast<size_t>(C_) * F_, vs = xs * J_;
  for (int t = 0; t < n_frames; ++t) process(X + t * xs, V + t * vs, out + t * vs);
}

void PhaseRecovery::process(const cfloat* X, const float* V, cfloat* out) {
  if (J_ == 0) return;  // not prepared
  DenormalGuard guard;
  for (int c = 0; c < C_; ++c) process_channel(X, V, out, c, false);
  ++stats_.frames;
}

void PhaseRecovery::unwrap(const cfloat* X, const float* V, cfloat* out) {
  if (J_ == 0) return;
  DenormalGuard guard;
  for (int c = 0; c < C_; ++c) process_channel(X, V, out, c, true);
  ++stats_.frames;
}

void PhaseRecovery::unwrap_frames(const cfloat* X, const float* V, cfloat* out, int n_frames) {
  const size_t xs = static_cast<size_t>(C_) * F_, vs = xs * J_;
  for (int t = 0; t < n_frames; ++t) unwrap(X + t * xs, V + t * vs, out + t * vs);
}

bool PhaseRecovery::detect_onset(int j, int c, const float* v) {
  const size_t jc = static_cast<size_t>(j) * C_ + c;
  float* pv = prev_v_.data() + jc * F_;
  const int F = F_;
  int f = 0;
  float sum = 0.f, flux = 0.f;
#ifdef LD_HAVE_SSE2
  __m128 vs = _mm_setzero_ps(), vf = _mm_setzero_ps();
  const __m128 zero = _mm_setzero_ps();
  for (; f + 4 <= F; f += 4) {
    const __m128 x = _mm_loadu_ps(v + f);
    vs = _mm_add_ps(vs, x);
    vf = _mm_add_ps(vf, _mm_max_ps(_mm_sub_ps(x, _mm_loadu_ps(pv + f)), zero));
    _mm_storeu_ps(pv + f, x);
  }
  alignas(16) float a[4], b[4];
  _mm_store_ps(a, vs);
  _mm_store_ps(b, vf);
  sum = (a[0] + a[1]) + (a[2] + a[3]);
  flux = (b[0] + b[1]) + (b[2] + b[3]);
#endif
  for (; f < F; ++f) {
    sum += v[f];
    const float d = v[f] - pv[f];
    flux += d > 0.f ? d : 0.f;
    pv[f] = v[f];
  }
  if (!started_[jc]) {
    started_[jc] = 1;
    flux_mean_[jc] = 0.f;
    return true;
  }
  const float d = sum > 0.f ? std::min(flux / sum, 1.f) : 0.f;  // in [0, 1]
  const bool onset = d > opts_.onset_floor && d > opts_.onset_ratio * flux_mean_[jc];
  flux_mean_[jc] += opts_.onset_smoothing * (d - flux_mean_[jc]);
  return onset;
}

void PhaseRecovery::estimate_phase(int j, int c, bool onset) {
  const int F = F_;
  float* pr = pr_.data() + static_cast<size_t>(j) * F;
  float* pi = pi_.data() + static_cast<size_t>(j) * F;
  if (onset) {  // the mixture's phase (or 0 where X = 0)
    for (int f = 0; f < F; ++f) {
      const bool z = xinv_[f] == 0.f;
      pr[f] = z ? 1.f : xr_[f] * xinv_[f];
      pi[f] = z ? 0.f : xi_[f] * xinv_[f];
    }
    return;
  }
  const float* v = v_.data() + static_cast<size_t>(j) * F;
  const size_t off = (static_cast<size_t>(j) * C_ + c) * F;
  const float* ur = prev_ur_.data() + off;
  const float* ui = prev_ui_.data() + off;

  // 1. Peaks: local maxima v[k-1] < v[k] >= v[k+1] above peak_db of the frame maximum,
  //    k in [1, F-2], refined by QIFFT on the log magnitude.
  float vmax = 0.f;
  int f = 0;
#ifdef LD_HAVE_SSE2
  {
    __m128 m = _mm_setzero_ps();
    for (; f + 4 <= F; f += 4) m = _mm_max_ps(m, _mm_loadu_ps(v + f));
    alignas(16) float a[4];
    _mm_store_ps(a, m);
    vmax = std::max(std::max(a[0], a[1]), std::max(a[2], a[3]));
  }
#endif
  for (; f < F; ++f) vmax = std::max(vmax, v[f]);
  const float thr = vmax * peak_lin_;
  int P = 0;
  if (vmax > 0.f) {
    int k = 1;
#ifdef LD_HAVE_SSE2
    const __m128 t4 = _mm_set1_ps(thr);
    for (; k + 4 <= F - 1; k += 4) {  // candidates k..k+3 <= F-2, reads up to v[k+4] <= v[F-1]
      const __m128 b = _mm_loadu_ps(v + k);
      const __m128 is_peak = _mm_and_ps(_mm_and_ps(_mm_cmpgt_ps(b, t4), _mm_cmpgt_ps(b, _mm_loadu_ps(v + k - 1))),
                                        _mm_cmpge_ps(b, _mm_loadu_ps(v + k + 1)));
      int mask = _mm_movemask_ps(is_peak);
      while (mask) {
        peak_bin_[P++] = k + __builtin_ctz(static_cast<unsigned>(mask));
        mask &= mask - 1;
      }
    }
#endif
    for (; k + 1 < F; ++k) {
      const float b = v[k];
      if (b > thr && b > v[k - 1] && b >= v[k + 1]) peak_bin_[P++] = k;
    }
    // QIFFT offset δ of each peak and its phase advance e^{i2π·hop·(k+δ)/n_fft}
    // = table[k] · e^{i2π·hop·δ/n_fft}; |2π·hop·δ/n_fft| <= 0.8 when hop <= n_fft/4.
    const float w = static_cast<float>(kTwoPi * hop_ / n_fft_);
    const bool small = 4 * hop_ <= n_fft_;
    int p = 0;
#ifdef LD_HAVE_SSE2
    if (small) {
      for (; p + 4 <= P; p += 4) {
        alignas(16) float a4[4], b4[4], c4[4], tr[4], ti[4];
        for (int q = 0; q < 4; ++q) {
          const int kk = peak_bin_[p + q];
          a4[q] = v[kk - 1];
          b4[q] = v[kk];
          c4[q] = v[kk + 1];
          tr[q] = bin_adv_r_[kk];
          ti[q] = bin_adv_i_[kk];
        }
        const __m128 b = _mm_load_ps(b4);
        const __m128 d = qifft_offset_ps(_mm_load_ps(a4), b, _mm_load_ps(c4));
        __m128 cr, ci;
        sincos_small_ps(_mm_mul_ps(_mm_set1_ps(w), d), cr, ci);
        const __m128 r = _mm_load_ps(tr), i = _mm_load_ps(ti);
        _mm_storeu_ps(&peak_amp_[p], b);
        _mm_storeu_ps(&peak_adv_r_[p], _mm_sub_ps(_mm_mul_ps(r, cr), _mm_mul_ps(i, ci)));
        _mm_storeu_ps(&peak_adv_i_[p], _mm_add_ps(_mm_mul_ps(r, ci), _mm_mul_ps(i, cr)));
      }
    }
#endif
    for (; p < P; ++p) {
      const int kk = peak_bin_[p];
      const float d = qifft_offset_f(v[kk - 1], v[kk], v[kk + 1]);
      float cr, ci;
      if (small) {
        sincos_small_f(w * d, cr, ci);
      } else {
        cr = std::cos(w * d);
        ci = std::sin(w * d);
      }
      peak_amp_[p] = v[kk];
      peak_adv_r_[p] = bin_adv_r_[kk] * cr - bin_adv_i_[kk] * ci;
      peak_adv_i_[p] = bin_adv_r_[kk] * ci + bin_adv_i_[kk] * cr;
    }
  }
  // 2. PU: previous phasor times the advance of the bin's region (or of its own centre).
  if (P == 0) {
    for (int f2 = 0; f2 < F; ++f2) {
      pr[f2] = ur[f2] * bin_adv_r_[f2] - ui[f2] * bin_adv_i_[f2];
      pi[f2] = ur[f2] * bin_adv_i_[f2] + ui[f2] * bin_adv_r_[f2];
    }
    return;
  }
  int start = 0;
  for (int p = 0; p < P; ++p) {
    // Region of peak p: up to the boundary b = (A_{p+1} k_p + A_p k_{p+1}) / (A_p + A_{p+1})
    // with the next peak (bins f <= b stay with p), to the last bin for the last peak.
    int end = F - 1;
    if (p + 1 < P) {
      const float a0 = peak_amp_[p], a1 = peak_amp_[p + 1];
      const float b = (a1 * static_cast<float>(peak_bin_[p]) + a0 * static_cast<float>(peak_bin_[p + 1])) / (a0 + a1);
      end = std::min(static_cast<int>(std::floor(b)), F - 1);
    }
    const float ar = peak_adv_r_[p], ai = peak_adv_i_[p];
    for (int f2 = start; f2 <= end; ++f2) {
      pr[f2] = ur[f2] * ar - ui[f2] * ai;
      pi[f2] = ur[f2] * ai + ui[f2] * ar;
    }
    start = std::max(start, end + 1);
  }
}

void PhaseRecovery::process_channel(const cfloat* X, const float* V, cfloat* out, int c, bool unwrap_only) {
  const int F = F_, J = J_;
  // Sanitised mixture and 1/|X|.
  const float* xc = reinterpret_cast<const float*>(X + static_cast<size_t>(c) * F);
  int f = 0;
#ifdef LD_HAVE_SSE2
  const __m128 maxabs = _mm_set1_ps(kMaxAbs), minabs = _mm_set1_ps(-kMaxAbs), fltmax = _mm_set1_ps(3.4028235e38f);
  const __m128 sign = _mm_set1_ps(-0.f), tiny = _mm_set1_ps(kTiny2), one = _mm_set1_ps(1.f);
  for (; f + 4 <= F; f += 4) {
    const __m128 a = _mm_loadu_ps(xc + 2 * f), b = _mm_loadu_ps(xc + 2 * f + 4);
    __m128 re = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    __m128 im = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    // finite <=> |x| <= FLT_MAX (false for NaN and ±Inf); a bin is bad if either part is
    const __m128 ok =
        _mm_and_ps(_mm_cmple_ps(_mm_andnot_ps(sign, re), fltmax), _mm_cmple_ps(_mm_andnot_ps(sign, im), fltmax));
    const int bad = 0xf & ~_mm_movemask_ps(ok);
    if (bad) stats_.nonfinite_mixture += static_cast<std::uint64_t>(__builtin_popcount(static_cast<unsigned>(bad)));
    re = _mm_max_ps(_mm_min_ps(_mm_and_ps(ok, re), maxabs), minabs);
    im = _mm_max_ps(_mm_min_ps(_mm_and_ps(ok, im), maxabs), minabs);
    _mm_storeu_ps(&xr_[f], re);
    _mm_storeu_ps(&xi_[f], im);
    const __m128 m2 = _mm_add_ps(_mm_mul_ps(re, re), _mm_mul_ps(im, im));
    const __m128 nz = _mm_cmpgt_ps(m2, tiny);
    const __m128 inv = _mm_div_ps(one, _mm_sqrt_ps(_mm_max_ps(m2, tiny)));
    _mm_storeu_ps(&xinv_[f], _mm_and_ps(nz, inv));
  }
#endif
  for (; f < F; ++f) {
    float re = xc[2 * f], im = xc[2 * f + 1];
    if (!std::isfinite(re) || !std::isfinite(im)) {
      re = im = 0.f;
      ++stats_.nonfinite_mixture;
    }
    re = clamp_abs(re);
    im = clamp_abs(im);
    xr_[f] = re;
    xi_[f] = im;
    const float m2 = re * re + im * im;
    xinv_[f] = m2 > kTiny2 ? 1.f / std::sqrt(m2) : 0.f;
  }
  // Sanitised magnitudes and the sum of squares (into er_).
  std::fill(er_.begin(), er_.end(), 0.f);
  for (int j = 0; j < J; ++j) {
    const float* vin = V + (static_cast<size_t>(j) * C_ + c) * F;
    float* v = v_.data() + static_cast<size_t>(j) * F;
    f = 0;
#ifdef LD_HAVE_SSE2
    const __m128 zero = _mm_setzero_ps();
    for (; f + 4 <= F; f += 4) {
      __m128 x = _mm_loadu_ps(vin + f);
      const __m128 ok = _mm_cmple_ps(_mm_andnot_ps(sign, x), fltmax);
      const int bad = 0xf & ~_mm_movemask_ps(ok);
      if (bad) stats_.nonfinite_magnitude += static_cast<std::uint64_t>(__builtin_popcount(static_cast<unsigned>(bad)));
      x = _mm_and_ps(ok, x);
      const int neg = _mm_movemask_ps(_mm_cmplt_ps(x, zero));
      if (neg) stats_.negative_magnitude += static_cast<std::uint64_t>(__builtin_popcount(static_cast<unsigned>(neg)));
      x = _mm_min_ps(_mm_max_ps(x, zero), maxabs);
      _mm_storeu_ps(v + f, x);
      _mm_storeu_ps(&er_[f], _mm_add_ps(_mm_loadu_ps(&er_[f]), _mm_mul_ps(x, x)));
    }
#endif
    for (; f < F; ++f) {
      float x = vin[f];
      if (!std::isfinite(x)) {
        x = 0.f;
        ++stats_.nonfinite_magnitude;
      } else if (x < 0.f) {
        x = 0.f;
        ++stats_.negative_magnitude;
      }
      x = std::min(x, kMaxAbs);
      v[f] = x;
      er_[f] += x * x;
    }
  }
  // Wiener weights λ_j = V_j^p / Σ V^p; an all-zero bin is shared equally (1/J) so Σ λ = 1.
  // (A true division, not a product with 1/Σ: a lone active stem then gets exactly λ = 1.)
  // For p ≠ 2, er_ is refilled with Σ V^p: later readers only ask whether it is > 0, which
  // Σ V^p and Σ V² answer alike.
  const float equal = 1.f / static_cast<float>(J);
  const float p = opts_.mask_power;
  if (p == 2.f) {
    for (int j = 0; j < J; ++j) {
      const float* v = v_.data() + static_cast<size_t>(j) * F;
      float* lam = lam_.data() + static_cast<size_t>(j) * F;
      for (int f2 = 0; f2 < F; ++f2) {
        const bool nz = er_[f2] > 0.f;
        lam[f2] = nz ? (v[f2] * v[f2]) / (nz ? er_[f2] : 1.f) : equal;
      }
    }
  } else {
    std::fill(er_.begin(), er_.end(), 0.f);
    for (int j = 0; j < J; ++j) {
      const float* v = v_.data() + static_cast<size_t>(j) * F;
      float* lam = lam_.data() + static_cast<size_t>(j) * F;
      if (p == 1.f) {
        for (int f2 = 0; f2 < F; ++f2) lam[f2] = v[f2];
      } else {
        for (int f2 = 0; f2 < F; ++f2) lam[f2] = v[f2] > 0.f ? std::pow(v[f2], p) : 0.f;
      }
      for (int f2 = 0; f2 < F; ++f2) er_[f2] += lam[f2];
    }
    for (int j = 0; j < J; ++j) {
      float* lam = lam_.data() + static_cast<size_t>(j) * F;
      for (int f2 = 0; f2 < F; ++f2) {
        const bool nz = er_[f2] > 0.f;
        lam[f2] = nz ? lam[f2] / (nz ? er_[f2] : 1.f) : equal;
      }
    }
  }
  // Onsets (always tracked, so that the mode can change between frames) and phase estimates.
  const PhaseMode mode = opts_.mode;
  for (int j = 0; j < J; ++j) {
    const bool onset = detect_onset(j, c, v_.data() + static_cast<size_t>(j) * F);
    if (onset) ++stats_.onsets;
    if (mode != PhaseMode::Wiener || unwrap_only) estimate_phase(j, c, onset);
  }

  auto out_row = [&](int j) { return reinterpret_cast<float*>(out + (static_cast<size_t>(j) * C_ + c) * F); };
  auto state_off = [&](int j) { return (static_cast<size_t>(j) * C_ + c) * F; };

  if (unwrap_only) {  // S_j = V_j e^{iφ_j}, no mixture consistency (phase retrieval)
    for (int j = 0; j < J; ++j) {
      const size_t oj = static_cast<size_t>(j) * F;
      float* o = out_row(j);
      float* ur = prev_ur_.data() + state_off(j);
      float* ui = prev_ui_.data() + state_off(j);
      for (int f = 0; f < F; ++f) {
        o[2 * f] = v_[oj + f] * pr_[oj + f];
        o[2 * f + 1] = v_[oj + f] * pi_[oj + f];
        ur[f] = pr_[oj + f];
        ui[f] = pi_[oj + f];
      }
    }
    return;
  }

  if (mode == PhaseMode::Wiener) {
    // Y_j = λ_j X: consistent by construction since Σ_j λ_j = 1.
    for (int j = 0; j < J; ++j) {
      const float* lam = lam_.data() + static_cast<size_t>(j) * F;
      float* o = out_row(j);
      float* ur = prev_ur_.data() + state_off(j);
      float* ui = prev_ui_.data() + state_off(j);
      for (int f = 0; f < F; ++f) {
        o[2 * f] = lam[f] * xr_[f];
        o[2 * f + 1] = lam[f] * xi_[f];
        const bool z = xinv_[f] == 0.f;
        ur[f] = z ? ur[f] : xr_[f] * xinv_[f];
        ui[f] = z ? ui[f] : xi_[f] * xinv_[f];
      }
    }
    return;
  }

  if (mode == PhaseMode::PUIter) {
    PuIterArgs a;
    a.F = F;
    a.J = J;
    a.n_iter = opts_.n_iter;
    a.xr = xr_.data();
    a.xi = xi_.data();
    a.v = v_.data();
    a.lam = lam_.data();
    a.pr = pr_.data();
    a.pi = pi_.data();
    a.sr = sr_.data();
    a.si = si_.data();
    a.out = reinterpret_cast<float*>(out + static_cast<size_t>(c) * F);
    a.out_stride = 2 * static_cast<size_t>(C_) * F;
    a.ur = prev_ur_.data() + static_cast<size_t>(c) * F;
    a.ui = prev_ui_.data() + static_cast<size_t>(c) * F;
    a.state_stride = static_cast<size_t>(C_) * F;
    int f0 = 0;
#ifdef LD_HAVE_AVX2_DISPATCH
    if (use_avx2_) f0 = pu_iter_avx2(a);
#endif
    f0 = pu_iter_sse2(a, f0);
    pu_iter_scalar(a, f0);
    return;
  }

  // Anisotropic Wiener. With v_j = V_j², the prior of stem j is m_j = λκ V_j e^{iμ_j},
  // γ_j = (1-λκ²) v_j, c_j = ρ v_j e^{2iμ_j}. The posterior mean
  //   Ŝ_j = m_j + [(γ_j γ_X - c_j c̄_X)(X - m_X) + (c_j γ_X - γ_j c_X) conj(X - m_X)] / (γ_X² - |c_X|²)
  // is invariant to scaling all v_j by one factor, so we divide them by Σ_k v_k, i.e. use the
  // Wiener weights λ_j in place of v_j: γ_X becomes g = 1 - λκ² and nothing overflows.
  // Σ_j Ŝ_j = m_X + (X - m_X) = X holds by construction; float rounding (and the guarded
  // fallback) can leave a tiny residual, which is added back by the Wiener weights at the end.
  const float lk = aw_lambda_, rho = aw_rho_;
  const float g = 1.f - lk * lk;
  // m_X into (ar_, ai_), c_X/ρ into (br_, bi_)
  std::fill(ar_.begin(), ar_.end(), 0.f);
  std::fill(ai_.begin(), ai_.end(), 0.f);
  std::fill(br_.begin(), br_.end(), 0.f);
  std::fill(bi_.begin(), bi_.end(), 0.f);
  for (int j = 0; j < J; ++j) {
    const size_t oj = static_cast<size_t>(j) * F;
    for (int f = 0; f < F; ++f) {
      const float p_r = pr_[oj + f], p_i = pi_[oj + f], l = lam_[oj + f];
      ar_[f] += lk * v_[oj + f] * p_r;
      ai_[f] += lk * v_[oj + f] * p_i;
      br_[f] += l * (p_r * p_r - p_i * p_i);
      bi_[f] += l * (2.f * p_r * p_i);
    }
  }
  // Z = X - m_X into (er_, ei_); 1/D into g_, 0 where the system is degenerate or where every
  // V_j is 0 (er_ still holds Σ V² or Σ V^p here): there the prior says nothing, and Z = X is shared
  // equally (λ_j = 1/J), as in the other modes.
  const float g2 = g * g;
  for (int f = 0; f < F; ++f) {
    const bool active = er_[f] > 0.f;
    er_[f] = xr_[f] - ar_[f];
    ei_[f] = xi_[f] - ai_[f];
    br_[f] *= rho;
    bi_[f] *= rho;
    const float D = g2 - (br_[f] * br_[f] + bi_[f] * bi_[f]);
    g_[f] = (active && g > 1e-6f && D > 1e-6f * g2) ? 1.f / D : 0.f;
  }
  for (int j = 0; j < J; ++j) {
    const size_t oj = static_cast<size_t>(j) * F;
    float* sr = sr_.data() + oj;
    float* si = si_.data() + oj;
    for (int f = 0; f < F; ++f) {
      const float l = lam_[oj + f], p_r = pr_[oj + f], p_i = pi_[oj + f];
      const float mr = lk * v_[oj + f] * p_r, mi = lk * v_[oj + f] * p_i;
      const float zr = er_[f], zi = ei_[f];
      float ur, ui;
      if (g_[f] != 0.f) {
        // c_j / λ_j = ρ e^{2iμ_j}
        const float qr = rho * (p_r * p_r - p_i * p_i), qi = rho * (2.f * p_r * p_i);
        // a = γ_j γ_X - c_j c̄_X  →  λ_j (g² - q c̄_X)
        const float ar = g2 - (qr * br_[f] + qi * bi_[f]);
        const float ai = -(qi * br_[f] - qr * bi_[f]);
        // b = c_j γ_X - γ_j c_X  →  λ_j (q g - g c_X)
        const float brr = g * (qr - br_[f]), bii = g * (qi - bi_[f]);
        // a Z + b conj(Z)
        const float nr = (ar * zr - ai * zi) + (brr * zr + bii * zi);
        const float ni = (ar * zi + ai * zr) + (bii * zr - brr * zi);
        const float s = l * g_[f];
        ur = nr * s;
        ui = ni * s;
      } else {
        ur = l * zr;  // degenerate: share X - m_X by the Wiener weights
        ui = l * zi;
      }
      sr[f] = mr + ur;
      si[f] = mi + ui;
    }
  }
  // Residual X - Σ Ŝ (rounding only) shared by the Wiener weights; output; phase state.
  std::copy(xr_.begin(), xr_.end(), er_.begin());
  std::copy(xi_.begin(), xi_.end(), ei_.begin());
  for (int j = 0; j < J; ++j) {
    const size_t oj = static_cast<size_t>(j) * F;
    for (int f = 0; f < F; ++f) {
      er_[f] -= sr_[oj + f];
      ei_[f] -= si_[oj + f];
    }
  }
  for (int j = 0; j < J; ++j) {
    const size_t oj = static_cast<size_t>(j) * F;
    float* o = out_row(j);
    float* ur = prev_ur_.data() + state_off(j);
    float* ui = prev_ui_.data() + state_off(j);
    for (int f = 0; f < F; ++f) {
      const float yr = sr_[oj + f] + lam_[oj + f] * er_[f];
      const float yi = si_[oj + f] + lam_[oj + f] * ei_[f];
      const float m2 = yr * yr + yi * yi;
      const bool nz = m2 > kTiny2;
      const float inv = nz ? 1.f / std::sqrt(m2) : 0.f;
      o[2 * f] = yr;
      o[2 * f + 1] = yi;
      ur[f] = nz ? yr * inv : pr_[oj + f];
      ui[f] = nz ? yi * inv : pi_[oj + f];
    }
  }
}

}  // namespace livedemix
