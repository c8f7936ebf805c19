// Modified Bessel function ratios for the von Mises phase prior (anisotropic Wiener filter).
//
// For a von Mises distribution of concentration kappa, E[e^{iθ}] = I1(κ)/I0(κ) and
// E[e^{2iθ}] = I2(κ)/I0(κ). We only ever need these ratios, never I0 itself (which overflows
// a double near κ ≈ 700), so we compute them directly.
//
// Method: the recurrence I_{n-1}(x) - I_{n+1}(x) = (2n/x) I_n(x) gives, for R_n = I_n/I_{n-1},
//   R_n = 1 / (2n/x + R_{n+1}),
// a continued fraction (Perron/Gauss) that converges for every x > 0 when evaluated backwards
// from a deep enough start (R_{N+1} = 0). Depth N = 40 + 2x is far more than enough for double
// precision for the κ range we accept; above κ = 2000 we use the large-argument expansion.
// Called at configuration time only (not in the audio path).
#pragma once
#include <cmath>

namespace livedemix {

struct BesselRatios {
  double r1;  // I1(κ)/I0(κ)
  double r2;  // I2(κ)/I0(κ)
};

inline BesselRatios bessel_ratios(double kappa) {
  if (!(kappa > 0.0)) return {0.0, 0.0};  // κ = 0 (or invalid): uniform phase
  if (kappa > 2000.0) {
    // I_n(x)/I_0(x) ~ 1 - n²/(2x) + n²(n²-4)... ; use the standard expansion of I_n(x) e^{-x} sqrt(2πx)
    // = 1 - (4n²-1)/(8x) + (4n²-1)(4n²-9)/(2!(8x)²) - ...
    auto scaled = [kappa](double n) {
      const double mu = 4.0 * n * n;
      const double z = 8.0 * kappa;
      double term = 1.0, sum = 1.0;
      for (int k = 1; k <= 6; ++k) {
        const double odd = 2.0 * k - 1.0;
        term *= -(mu - odd * odd) / (k * z);
        sum += term;
      }
      return sum;
    };
    const double s0 = scaled(0.0);
    return {scaled(1.0) / s0, scaled(2.0) / s0};
  }
  const int depth = 40 + static_cast<int>(2.0 * kappa);
  double r = 0.0;  // R_{N+1}
  double r2 = 0.0;
  for (int n = depth; n >= 1; --n) {
    r = 1.0 / (2.0 * n / kappa + r);
    if (n == 2) r2 = r;  // R_2 = I2/I1
  }
  const double r1 = r;  // R_1 = I1/I0
  return {r1, r1 * r2};
}

}  // namespace livedemix
