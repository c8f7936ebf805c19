// Real FFT of a power-of-two length: one small transform per frame per channel.
//
// Backend choice (measured on this project's 2-core x86-64 build machine, one 1024-point
// forward + inverse pair, C++ loop of 200k calls):
//   FFTW 3.3.10 single precision (Debian libfftw3-dev), FFTW_ESTIMATE plan   1.5 µs
//   FFTW, FFTW_MEASURE plan                                                 1.3 µs
//   the built-in radix-2 below (split re/im, autovectorised)                8.2 µs
// FFTW is used when CMake finds it (LIVEDEMIX_FFT=fftw, the default when available): it is
// the fastest FFT that Debian ships, and it runs with pre-made plans on aligned scratch so
// `forward`/`inverse` never allocate. Plans use FFTW_ESTIMATE, not MEASURE, so every process
// picks the same algorithm and an offline render equals a live render bit for bit. FFTW is
// GPL: builds that must stay under the project's MIT licence (an embedder's proprietary
// program) configure with -DLIVEDEMIX_FFT=builtin and get the self-contained radix-2 FFT.
// pocketfft is neither packaged in Debian bookworm nor shipped as headers on PyPI, and
// KissFFT is slower than FFTW for real input.
#pragma once
#include <vector>

#include "types.hpp"

namespace livedemix {

class RealFft {
 public:
  // n: transform length, a power of two >= 4. Allocates its tables and scratch.
  explicit RealFft(int n);

  int size() const { return n_; }
  int bins() const { return n_ / 2 + 1; }

  // out[k] = sum_t in[t] exp(-2πi k t / n), k = 0..n/2 (numpy.fft.rfft). No allocation.
  void forward(const float* in, cfloat* out);
  // Inverse of forward, including the 1/n factor (numpy.fft.irfft). Imaginary parts of bins
  // 0 and n/2 are ignored. No allocation.
  void inverse(const cfloat* in, float* out);

  // Zero-copy variants for the STFT's hot path: write n samples into time_buffer(), then
  // forward_from_buffer(); or inverse_to_buffer(), then read n samples *without* the 1/n
  // factor from time_buffer() (the STFT folds 1/n into its synthesis window).
  float* time_buffer() { return time_; }
  void forward_from_buffer(cfloat* out);
  void inverse_to_buffer(const cfloat* in);

 private:
  void complex_fft(float* re, float* im, bool inverse) const;
  void forward_builtin(const float* in, cfloat* out);
  void inverse_builtin(const cfloat* in, float* out, float scale);
  float* time_ = nullptr;  // n samples: FFTW's aligned buffer or time_storage_
  std::vector<float> time_storage_;

  int n_;
  int half_;
#ifdef LIVEDEMIX_HAVE_FFTW
  struct FftwState;
  FftwState* fftw_ = nullptr;

 public:
  ~RealFft();
  RealFft(const RealFft&) = delete;
  RealFft& operator=(const RealFft&) = delete;
  static const char* backend() { return "fftw3f (FFTW_ESTIMATE plans)"; }

 private:
#else
 public:
  static const char* backend() { return "builtin radix-2"; }

 private:
#endif
  std::vector<int> bitrev_;               // bit-reversal permutation of half_ points
  std::vector<float> tw_re_, tw_im_;      // twiddles per stage, concatenated
  std::vector<float> post_re_, post_im_;  // exp(-2πi k / n), k = 0..half_
  std::vector<float> re_, im_;            // scratch
};

}  // namespace livedemix
