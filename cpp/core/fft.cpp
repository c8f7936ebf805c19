#include "fft.hpp"

#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>

#ifdef LIVEDEMIX_HAVE_FFTW
#include <fftw3.h>
#endif

namespace livedemix {

#ifdef LIVEDEMIX_HAVE_FFTW
// FFTW's planner is not thread-safe: plans are made (in constructors only) under this lock.
static std::mutex& fftw_planner_mutex() {
  static std::mutex m;
  return m;
}

struct RealFft::FftwState {
  float* time = nullptr;          // n, aligned
  fftwf_complex* freq = nullptr;  // n/2+1, aligned
  fftwf_plan forward = nullptr, inverse = nullptr;
};

RealFft::~RealFft() {
  if (!fftw_) return;
  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  fftwf_destroy_plan(fftw_->forward);
  fftwf_destroy_plan(fftw_->inverse);
  fftwf_free(fftw_->time);
  fftwf_free(fftw_->freq);
  delete fftw_;
}
#endif

RealFft::RealFft(int n) : n_(n), half_(n / 2) {
  if (n < 4 || (n & (n - 1)) != 0) throw std::invalid_argument("FFT length must be a power of two >= 4");
  int bits = 0;
  while ((1 << bits) < half_) ++bits;
  bitrev_.resize(half_);
  for (int i = 0; i < half_; ++i) {
    int r = 0;
    for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
    bitrev_[i] = r;
  }
  // Stage with half-size h uses twiddles exp(-2πi j / (2h)), j < h; stored back to back.
  for (int h = 1; h < half_; h *= 2) {
    for (int j = 0; j < h; ++j) {
      double a = -M_PI * j / h;
      tw_re_.push_back(static_cast<float>(std::cos(a)));
      tw_im_.push_back(static_cast<float>(std::sin(a)));
    }
  }
  post_re_.resize(half_ + 1);
  post_im_.resize(half_ + 1);
  for (int k = 0; k <= half_; ++k) {
    double a = -2.0 * M_PI * k / n_;
    post_re_[k] = static_cast<float>(std::cos(a));
    post_im_[k] = static_cast<float>(std::sin(a));
  }
  re_.resize(half_);
  im_.resize(half_);
#ifndef LIVEDEMIX_HAVE_FFTW
  time_storage_.assign(n_, 0.0f);
  time_ = time_storage_.data();
#else
  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  fftw_ = new FftwState;
  fftw_->time = fftwf_alloc_real(n_);
  fftw_->freq = fftwf_alloc_complex(half_ + 1);
  fftw_->forward = fftwf_plan_dft_r2c_1d(n_, fftw_->time, fftw_->freq, FFTW_ESTIMATE);
  fftw_->inverse = fftwf_plan_dft_c2r_1d(n_, fftw_->freq, fftw_->time, FFTW_ESTIMATE);
  if (!fftw_->forward || !fftw_->inverse)
    throw std::runtime_error("FFTW could not plan a transform of length " + std::to_string(n_));
  time_ = fftw_->time;
#endif
}

void RealFft::complex_fft(float* re, float* im, bool inverse) const {
  const int n = half_;
  for (int i = 0; i < n; ++i) {
    int r = bitrev_[i];
    if (r > i) {
      std::swap(re[i], re[r]);
      std::swap(im[i], im[r]);
    }
  }
  const float sign = inverse ? -1.0f : 1.0f;
  const float* twr = tw_re_.data();
  const float* twi = tw_im_.data();
  for (int h = 1; h < n; h *= 2) {
    for (int start = 0; start < n; start += 2 * h) {
      float* ar = re + start;
      float* ai = im + start;
      float* br = ar + h;
      float* bi = ai + h;
      for (int j = 0; j < h; ++j) {
        const float wr = twr[j], wi = sign * twi[j];
        const float tr = br[j] * wr - bi[j] * wi;
        const float ti = br[j] * wi + bi[j] * wr;
        br[j] = ar[j] - tr;
        bi[j] = ai[j] - ti;
        ar[j] += tr;
        ai[j] += ti;
      }
    }
    twr += h;
    twi += h;
  }
}

void RealFft::forward(const float* in, cfloat* out) {
  std::memcpy(time_, in, sizeof(float) * n_);
  forward_from_buffer(out);
}

void RealFft::forward_from_buffer(cfloat* out) {
#ifdef LIVEDEMIX_HAVE_FFTW
  fftwf_execute(fftw_->forward);
  std::memcpy(static_cast<void*>(out), fftw_->freq, sizeof(fftwf_complex) * (half_ + 1));
#else
  forward_builtin(time_, out);
#endif
}

void RealFft::inverse(const cfloat* in, float* out) {
  inverse_to_buffer(in);
  const float scale = 1.0f / n_;
  for (int i = 0; i < n_; ++i) out[i] = time_[i] * scale;
}

void RealFft::inverse_to_buffer(const cfloat* in) {
#ifdef LIVEDEMIX_HAVE_FFTW
  std::memcpy(fftw_->freq, static_cast<const void*>(in), sizeof(fftwf_complex) * (half_ + 1));
  fftw_->freq[0][1] = 0.0f;  // imaginary parts of DC and Nyquist carry nothing
  fftw_->freq[half_][1] = 0.0f;
  fftwf_execute(fftw_->inverse);  // c2r destroys its input: that's our scratch copy
#else
  inverse_builtin(in, time_, 1.0f);
#endif
}

void RealFft::forward_builtin(const float* in, cfloat* out) {
  float* re = re_.data();
  float* im = im_.data();
  for (int i = 0; i < half_; ++i) {
    re[i] = in[2 * i];
    im[i] = in[2 * i + 1];
  }
  complex_fft(re, im, false);
  // X[k] = E[k] + W^k O[k], with E = (Z[k] + conj Z[h-k]) / 2, O = (Z[k] - conj Z[h-k]) / 2i.
  for (int k = 0; k <= half_; ++k) {
    const int a = k % half_, b = (half_ - k) % half_;
    const float zr = re[a], zi = im[a], cr = re[b], ci = -im[b];
    const float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
    // (z - conj z') / 2i = (dr + i di) / 2i = (di - i dr) / 2
    const float dr = zr - cr, di = zi - ci;
    const float orr = 0.5f * di, oi = -0.5f * dr;
    const float wr = post_re_[k], wi = post_im_[k];
    out[k] = cfloat(er + wr * orr - wi * oi, ei + wr * oi + wi * orr);
  }
}

void RealFft::inverse_builtin(const cfloat* in, float* out, float scale) {
  float* re = re_.data();
  float* im = im_.data();
  // Z[k] = E[k] + i O[k], E = (X[k] + conj X[h-k]) / 2, O = (X[k] - conj X[h-k]) / (2 W^k).
  for (int k = 0; k < half_; ++k) {
    const float xr = in[k].real(), xi = (k == 0) ? 0.0f : in[k].imag();
    const float yr = in[half_ - k].real(), yi = (k == 0) ? 0.0f : -in[half_ - k].imag();
    const float er = 0.5f * (xr + yr), ei = 0.5f * (xi + yi);
    const float dr = 0.5f * (xr - yr), di = 0.5f * (xi - yi);
    // divide by W^k = multiply by conj(W^k)
    const float wr = post_re_[k], wi = -post_im_[k];
    const float orr = dr * wr - di * wi, oi = dr * wi + di * wr;
    re[k] = er - oi;
    im[k] = ei + orr;
  }
  complex_fft(re, im, true);
  scale *= 2.0f;  // the half-length complex transform already carries a factor n/2
  for (int i = 0; i < half_; ++i) {
    out[2 * i] = re[i] * scale;
    out[2 * i + 1] = im[i] * scale;
  }
}

}  // namespace livedemix
