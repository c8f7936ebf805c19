// Shared conventions of the native core.
//
// Memory layouts (all row-major, contiguous):
//   time-domain audio block : float[channels][n]                 (channels, samples)
//   one STFT frame          : std::complex<float>[channels][bins] bins = n_fft/2 + 1
//   J stems of one frame    : std::complex<float>[J][channels][bins]
//   stem magnitudes         : float[J][channels][bins]
//   bus frames              : std::complex<float>[B][channels][bins]
// Frame t of a stream covers input samples [(t+1)*hop - n_fft, (t+1)*hop) and is emitted as
// soon as its last sample has arrived. Its spectrum is rfft(window * samples) with no
// circular shift, the same as numpy.fft.rfft(window * x[start:start+n_fft]).
//
// Real-time contract: constructors and `prepare()` allocate; every `process`-like method is
// allocation-free, lock-free and does no I/O (tests/cpp/test_*.cpp prove it by counting).
#pragma once
#include <complex>
#include <cstddef>

namespace livedemix {
using cfloat = std::complex<float>;
}  // namespace livedemix
