"""Separation scores used by the CLI, the demo and the tests.

``sdr`` is the plain signal-to-distortion ratio 10·log10(Σs² / Σ(s−ŝ)²) over the whole
signal (the score the project's quality targets use); ``si_sdr`` is the scale-invariant SDR
(Le Roux et al. 2019). BSS Eval v4 (SDR/SIR/SAR with museval) lives in :func:`bss_eval`.
"""

from __future__ import annotations

import numpy as np


def sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-10) -> float:
    reference = np.asarray(reference, np.float64)
    err = reference - np.asarray(estimate, np.float64)
    return float(10 * np.log10((np.sum(reference**2) + eps) / (np.sum(err**2) + eps)))


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-10) -> float:
    """Scale-invariant SDR over all channels (each channel centred, one scale for all)."""
    s = np.asarray(reference, np.float64).ravel()
    e = np.asarray(estimate, np.float64).ravel()
    alpha = np.dot(e, s) / (np.dot(s, s) + eps)
    target = alpha * s
    return float(10 * np.log10((np.sum(target**2) + eps) / (np.sum((e - target) ** 2) + eps)))


def rms_dbfs(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20))


def bss_eval(references: np.ndarray, estimates: np.ndarray, sample_rate: int = 44100) -> dict[str, np.ndarray]:
    """BSS Eval v4 (museval): references/estimates (J, channels, n) → median over 1-s windows
    of SDR, SIR, ISR, SAR per source (NaN where a source is silent throughout)."""
    import museval

    ref = np.transpose(np.asarray(references, np.float64), (0, 2, 1))
    est = np.transpose(np.asarray(estimates, np.float64), (0, 2, 1))
    sdr_, isr, sir, sar = museval.evaluate(ref, est, win=sample_rate, hop=sample_rate)
    return {k: np.nanmedian(v, axis=1) for k, v in (("SDR", sdr_), ("SIR", sir), ("ISR", isr), ("SAR", sar))}
