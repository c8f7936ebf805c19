"""A formant-preserving pitch shift, to make more voices out of the few sung songs
(``factory.train --real-vocal-shift S --real-vocal-formants``).

Resampling a voice by a ratio r (a tape played r times as fast) moves its pitch and its
formants together: vowels turn into a chipmunk's or a giant's, voices no record has. Moving the
formants back keeps a human voice at a new pitch. A voice is a source (the glottal pulses: the
pitch, the fine structure of the spectrum) through a filter (the vocal tract: the formants, the
spectral envelope). Per STFT frame the envelope E is estimated after the resampling; before
it, the envelope at f was E(f·r), so each bin gets the gain E(f·r) − E(f) (log magnitudes),
the phases kept. Both channels get the same gain, so the stereo image stays.

The envelope is the "true envelope" (Röbel & Rodet 2005): cepstral smoothing repeated, each time
on the maximum of the log spectrum and the last smooth curve, so it rides on the harmonic peaks
instead of averaging peaks and the valleys between them (plain cepstral smoothing flattens the
formants of a high voice, whose harmonics are far apart).
"""

from __future__ import annotations

import numpy as np

N_FFT = 2048
HOP = N_FFT // 4
# Cepstral coefficients kept: quefrencies below 40 samples (0.9 ms at 44.1 kHz), under the
# pitch period of voices up to about 1.1 kHz.
KEEP = 40
ITERATIONS = 6
MAX_GAIN_DB = 18.0
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def cepstral_smooth(log_mag: np.ndarray, keep: int = KEEP) -> np.ndarray:
    """``log_mag`` (..., bins) with bins = n_fft/2 + 1, its cepstrum cut to the first ``keep``
    quefrencies (and their mirror images)."""
    c = np.fft.irfft(log_mag, axis=-1)
    n = c.shape[-1]
    c[..., keep : n - keep + 1] = 0.0
    return np.fft.rfft(c, axis=-1).real


def true_envelope(log_mag: np.ndarray, keep: int = KEEP, iterations: int = ITERATIONS) -> np.ndarray:
    """The spectral envelope through the peaks of ``log_mag`` (..., bins)."""
    a = log_mag
    env = cepstral_smooth(a, keep)
    for _ in range(iterations - 1):
        a = np.maximum(a, env)
        env = cepstral_smooth(a, keep)
    return env


def _frames(x: np.ndarray) -> np.ndarray:
    """(channels, n) → spectra (channels, frames, bins); the signal is reflected at both ends so
    that every sample of it lies under four frames."""
    pad = np.pad(x, ((0, 0), (N_FFT, N_FFT)), mode="reflect")
    count = 1 + (pad.shape[1] - N_FFT) // HOP
    idx = np.arange(count)[:, None] * HOP + np.arange(N_FFT)[None]
    return np.fft.rfft(pad[:, idx] * _WINDOW, axis=-1)


def _overlap_add(spec: np.ndarray, n: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=N_FFT, axis=-1) * _WINDOW
    count = frames.shape[1]
    out = np.zeros((spec.shape[0], (count - 1) * HOP + N_FFT), np.float64)
    per = N_FFT // HOP  # frames i, i + per, … lie end to end: add each such set at once
    for i in range(per):
        sel = frames[:, i::per]
        k = sel.shape[1]
        out[:, i * HOP : i * HOP + k * N_FFT] += sel.reshape(spec.shape[0], -1)
    # Hann² at a quarter hop sums to 1.5 everywhere
    return out[:, N_FFT : N_FFT + n] / 1.5


def preserve_formants(y: np.ndarray, ratio: float) -> np.ndarray:
    """``y`` (channels, samples): a voice resampled to play ``ratio`` times as fast. Returns it
    with its spectral envelope moved back to where it was before the resampling (same shape
    and dtype)."""
    if abs(ratio - 1.0) < 1e-6:
        return y
    n = y.shape[-1]
    spec = _frames(np.asarray(y, np.float64))
    log_mag = np.log(np.mean(np.abs(spec), axis=0) + 1e-7)  # (frames, bins): one for both channels
    env = true_envelope(log_mag)
    bins = np.arange(env.shape[-1], dtype=np.float64)
    src = np.minimum(bins * ratio, bins[-1])  # E(f·r), held at Nyquist's value beyond it
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(bins) - 1)
    w = src - i0
    warped = env[:, i0] * (1 - w) + env[:, i1] * w
    limit = MAX_GAIN_DB / 20 * np.log(10)
    gain = np.exp(np.clip(warped - env, -limit, limit))
    return np.ascontiguousarray(_overlap_add(spec * gain[None], n), dtype=y.dtype)
