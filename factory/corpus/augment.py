"""Training-time augmentation on stems (the recipes of Open-Unmix and Demucs).

Stems are dicts {name: (2, n) float32} or stacked arrays (..., S, 2, n). Every function
takes a numpy Generator, so a data pipeline is reproducible, and never touches the
mixture: call `mix()` afterwards, which keeps mixture == sum(stems).
"""

from __future__ import annotations

import numpy as np
from livedemix import STEMS


def mix(stems: dict) -> dict:
    """Return a copy with "mixture" = sum of the stems."""
    out = {k: v for k, v in stems.items() if k != "mixture"}
    out["mixture"] = np.sum([out[s] for s in out], axis=0).astype(np.float32)
    return out


def random_gains(stems: dict, rng: np.random.Generator, low_db: float = -6.0, high_db: float = 3.0) -> dict:
    """Scale each stem by an independent gain, uniform in dB (Open-Unmix uses 0.25-1.25 linear)."""
    return {
        k: (v if k == "mixture" else v * np.float32(10 ** (rng.uniform(low_db, high_db) / 20)))
        for k, v in stems.items()
    }


def channel_swap(stems: dict, rng: np.random.Generator, p: float = 0.5) -> dict:
    """Swap left and right of each stem independently with probability p."""
    return {k: (v[::-1].copy() if k != "mixture" and rng.random() < p else v) for k, v in stems.items()}


def sign_flip(stems: dict, rng: np.random.Generator, p: float = 0.5) -> dict:
    """Invert the polarity of each stem independently (Demucs)."""
    return {k: (-v if k != "mixture" and rng.random() < p else v) for k, v in stems.items()}


def random_chunk(track, rng: np.random.Generator, seconds: float) -> dict:
    """A random excerpt of a Track (from factory.corpus.datasets); shorter tracks are padded."""
    dur = track.duration()
    start = float(rng.uniform(0, max(0.0, dur - seconds)))
    x = track.load(start, seconds)
    n = int(round(seconds * 44100))
    return {k: np.pad(v[:, :n], ((0, 0), (0, max(0, n - v.shape[1])))) for k, v in x.items()}


def remix(
    tracks, rng: np.random.Generator, seconds: float, stems=STEMS, min_active_db: float = -60.0, tries: int = 10
) -> dict:
    """Open-Unmix "random track mix": each stem from an independently chosen track and offset,
    so the model cannot lean on the musical coherence of real mixes. A stem is redrawn
    (up to `tries` times) when its excerpt is silent, since the mix would lose it anyway."""
    out = {}
    for s in stems:
        for _ in range(tries):
            x = random_chunk(tracks[int(rng.integers(len(tracks)))], rng, seconds)[s]
            if 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20) > min_active_db:
                break
        out[s] = x
    return mix(out)


def shuffle_sources(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Demucs "remix within a batch": batch (B, S, C, T) of stems; permute each source
    independently across the batch. Sum over S to get the new mixtures."""
    out = np.empty_like(batch)
    for s in range(batch.shape[1]):
        out[:, s] = batch[rng.permutation(batch.shape[0]), s]
    return out


def augment(stems: dict, rng: np.random.Generator, gains=(-6.0, 3.0), p_swap: float = 0.5, p_flip: float = 0.0) -> dict:
    """The usual chain: gains, channel swap, optional polarity flip, then a fresh mixture."""
    x = random_gains(stems, rng, *gains)
    x = channel_swap(x, rng, p_swap)
    if p_flip:
        x = sign_flip(x, rng, p_flip)
    return mix(x)
