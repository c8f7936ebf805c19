"""Loudness (ITU-R BS.1770-4 integrated, LUFS) and activity measures for stems."""

from __future__ import annotations

import numpy as np
from scipy import signal


def _k_weighting(sr: int) -> np.ndarray:
    """The two K-weighting biquads (pre-filter shelf + RLB high-pass) for any sample rate,
    from their analogue prototypes (the spec tabulates 48 kHz coefficients only)."""
    # High-shelf, +4 dB above ~1.7 kHz.
    f0, g, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sr)
    vh = 10 ** (g / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2 * (k * k - 1) / a0,
        (1 - k / q + k * k) / a0,
    ]
    # High-pass at ~38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sr)
    a0 = 1 + k / q + k * k
    hp = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    return np.array([shelf, hp])


def integrated_lufs(x: np.ndarray, sr: int = 44100) -> float:
    """Gated integrated loudness of (channels, samples); -inf for silence."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    y = signal.sosfilt(_k_weighting(sr), x, axis=-1)
    # 400 ms gating blocks with 75 % overlap = sums of four consecutive 100 ms sub-blocks.
    hop = int(0.1 * sr)
    n_sub = max(4, y.shape[1] // hop)
    if y.shape[1] < n_sub * hop:
        y = np.pad(y, ((0, 0), (0, n_sub * hop - y.shape[1])))
    sub = (y[:, : n_sub * hop] ** 2).reshape(y.shape[0], n_sub, hop).sum(axis=(0, 2))
    ms = np.convolve(sub, np.ones(4), mode="valid") / (4 * hop)  # channel weights 1 (L, R)
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(ms)
    keep = lk > -70
    if not keep.any():
        return float("-inf")
    rel = -0.691 + 10 * np.log10(ms[keep].mean()) - 10
    keep &= lk > rel
    return float(-0.691 + 10 * np.log10(ms[keep].mean()))


def window_rms_db(x: np.ndarray, sr: int = 44100, win_s: float = 1.0) -> np.ndarray:
    """RMS in dBFS of consecutive non-overlapping windows (all channels together)."""
    x = np.atleast_2d(x)
    n = int(win_s * sr)
    k = x.shape[1] // n
    if k == 0:
        return np.array([])
    w = x[:, : k * n].reshape(x.shape[0], k, n).astype(np.float64)
    with np.errstate(divide="ignore"):
        return 10 * np.log10((w * w).mean(axis=(0, 2)) + 1e-20)


def active_fraction(x: np.ndarray, sr: int = 44100, threshold_db: float = -50.0) -> float:
    r = window_rms_db(x, sr)
    return float((r > threshold_db).mean()) if r.size else 0.0


def peak_db(x: np.ndarray) -> float:
    p = float(np.max(np.abs(x))) if x.size else 0.0
    return 20 * np.log10(p) if p > 0 else float("-inf")
