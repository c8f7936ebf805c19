"""Shared helpers for the phase-recovery tests: test material and a NumPy STFT.

Material: a short 4-stem song rendered with fluidsynth (factory/phase_render.py) when fluidsynth
and a GM soundfont are installed; otherwise a synthetic 4-stem song (harmonic tones with
vibrato, a bass line, noise-burst drums) so that the tests never skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from livedemix import STEMS  # noqa: E402,F401

from factory.phase_eval import istft, stft  # noqa: E402,F401
from factory.phase_render import SR, have_fluidsynth, instrument_clip, render_song  # noqa: E402,F401


def synthetic_song(seconds: float = 4.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR

    def notes(f0s, dur, harmonics, vib=0.0, decay=3.0):
        y = np.zeros(n)
        step = int(dur * SR)
        for i, f0 in enumerate(f0s):
            s0 = i * step
            if s0 >= n:
                break
            tt = t[: min(step, n - s0)]
            env = np.exp(-decay * tt) * np.minimum(1, tt * 200)
            ph = 2 * np.pi * f0 * tt + vib * np.sin(2 * np.pi * 5 * tt)
            y[s0 : s0 + tt.size] += env * sum(np.sin(h * ph) / h for h in range(1, harmonics + 1))
        return y

    vocals = notes(rng.choice([440, 494, 523, 587, 659], 16), 0.25 * seconds, 6, vib=0.02 * 2 * np.pi, decay=0.5)
    bass = notes(rng.choice([55, 62, 73, 82], 16), 0.25 * seconds, 4, decay=1.0)
    other = notes(rng.choice([262, 330, 392], 16), 0.5 * seconds, 8, decay=1.5)
    drums = np.zeros(n)
    for s0 in range(0, n, SR // 4):
        k = min(2000, n - s0)
        drums[s0 : s0 + k] += rng.standard_normal(k) * np.exp(-np.arange(k) / 300)
    out = {}
    for name, y, pan in (("vocals", vocals, 0.5), ("drums", drums, 0.5), ("bass", bass, 0.5), ("other", other, 0.3)):
        y = 0.1 * y / np.abs(y).max()
        out[name] = np.stack([y * (1 - pan) * 2, y * pan * 2]).astype(np.float32)
    return out


def song(seconds: float = 4.0, seed: int = 0) -> dict:
    if have_fluidsynth():
        return render_song(seed, seconds)
    return synthetic_song(seconds, seed)


def oracle_inputs(stems: dict, n_fft: int = 1024, hop: int = 256, window: str = "hann"):
    """(refs (J, C, N) float64, X (T, C, F) complex64, V (T, J, C, F) float32)."""
    refs = np.stack([stems[k] for k in STEMS]).astype(np.float64)
    X = stft(refs.sum(0), n_fft, hop, window)
    V = np.abs(np.stack([stft(s, n_fft, hop, window) for s in refs], axis=1))
    return refs, X.astype(np.complex64), V.astype(np.float32)


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Plain signal-to-distortion ratio (dB) of one signal."""
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - est) ** 2), 1e-30)))
