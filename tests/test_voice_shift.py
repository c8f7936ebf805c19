"""The formant-preserving pitch shift (factory.voice_shift): a synthetic vowel resampled up or
down keeps its new pitch but gets its formants back; the STFT round trip is exact; the sampler
uses it only when asked."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from scipy import signal

from factory import voice_shift as vs

pytestmark = pytest.mark.factory
SR = 44100


def _vowel(f0: float, seconds: float = 2.0) -> np.ndarray:
    """A pulse train at f0 through three formant resonances (700, 1200, 2600 Hz), stereo."""
    n = int(seconds * SR)
    src = np.zeros(n)
    src[:: int(round(SR / f0))] = 1.0
    out = np.zeros(n)
    for f, bw, g in ((700, 80, 1.0), (1200, 100, 0.5), (2600, 150, 0.3)):
        r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * f / SR
        out += g * signal.lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], src)
    return (np.stack([out, out]) / np.abs(out).max() * 0.5).astype(np.float32)


def _envelope_db(x: np.ndarray) -> np.ndarray:
    """The long-term spectral envelope in dB between 200 Hz and 4 kHz, mean removed."""
    f, p = signal.welch(x[0], SR, nperseg=4096)
    e = vs.cepstral_smooth(10 * np.log10(p + 1e-12), keep=30)
    band = (f > 200) & (f < 4000)
    return e[band] - e[band].mean()


def _pitch(x: np.ndarray) -> float:
    """The fundamental in Hz: the autocorrelation's highest peak between 2 and 12 ms of lag."""
    y = x[0, SR // 4 : SR // 4 + SR // 2].astype(np.float64)
    ac = signal.correlate(y, y, mode="full", method="fft")[len(y) - 1 :]
    lo, hi = SR // 500, SR // 80
    return SR / (lo + int(np.argmax(ac[lo:hi])))


def test_stft_round_trip_is_exact_when_no_gain_is_applied():
    x = np.random.default_rng(0).standard_normal((2, SR)).astype(np.float64)
    back = vs._overlap_add(vs._frames(x), x.shape[1])
    assert np.abs(back - x).max() < 1e-6
    y = x.astype(np.float32)
    assert vs.preserve_formants(y, 1.0) is y


@pytest.mark.parametrize("f0", [110.0, 220.0])
@pytest.mark.parametrize("semitones", [-4, 4])
def test_formants_come_back_and_the_pitch_stays_shifted(f0, semitones):
    v = _vowel(f0)
    ratio = 2 ** (semitones / 12)
    tape = soxr.resample(v.T, SR * ratio, SR, quality="HQ").T.copy()
    kept = vs.preserve_formants(tape, ratio)
    assert kept.shape == tape.shape and kept.dtype == np.float32 and np.isfinite(kept).all()
    moved = np.mean(np.abs(_envelope_db(tape) - _envelope_db(v)))
    back = np.mean(np.abs(_envelope_db(kept) - _envelope_db(v)))
    assert back < 0.5 * moved, (moved, back)
    # the harmonics stay where the resampling put them
    assert abs(_pitch(kept) / _pitch(tape) - 1) < 0.02
    assert abs(_pitch(kept) / _pitch(v) / ratio - 1) < 0.02


def test_true_envelope_rides_on_the_harmonic_peaks():
    """On a sparse harmonic spectrum the true envelope lies above plain cepstral smoothing at the
    harmonics (it does not average peaks with the valleys between them)."""
    spec = np.abs(np.fft.rfft(_vowel(330.0, 0.1)[0] * np.hanning(int(0.1 * SR)), n=vs.N_FFT))
    log_mag = np.log(spec + 1e-7)
    plain, true = vs.cepstral_smooth(log_mag), vs.true_envelope(log_mag)
    peaks = signal.find_peaks(log_mag, distance=20)[0]
    under_true, under_plain = np.mean(log_mag[peaks] - true[peaks]), np.mean(log_mag[peaks] - plain[peaks])
    assert under_true < under_plain - 0.2 and under_true < 0.5, (under_true, under_plain)  # nats
