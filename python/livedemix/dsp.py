"""Python surface of the native DSP core.

Arrays at this boundary are float32 shaped ``(channels, samples)`` for audio and complex64
shaped ``(frames, channels, bins)`` for spectra. Every class has a ``*_into`` method that
writes into an array you allocated once (use it on the audio thread: it allocates nothing
and releases the GIL) and a convenience method that returns a new array.

Frame ``t`` of a stream covers input samples ``[(t+1)*hop - n_fft, (t+1)*hop)``, starting from
silence, and equals ``numpy.fft.rfft(analysis_window * x[start:start + n_fft])``. An
analysis→synthesis round trip delays the signal by exactly ``config.latency_samples``
samples, for any block size.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._core import RealFft, StftConfig, build_info
from .phase import PhaseRecovery

__all__ = [
    "StftConfig",
    "RealFft",
    "StftAnalyzer",
    "StftSynthesizer",
    "AudioRingBuffer",
    "StemMixer",
    "PhaseRecovery",
    "SHIPPED_CONFIGS",
    "config",
    "stft",
    "istft",
    "build_info",
]

#: STFT operating points the product ships. ``quality`` and ``low-latency`` use the
#: Mauler & Martin asymmetric window pair so the round trip costs 2*hop, not n_fft.
SHIPPED_CONFIGS = {
    "quality": dict(n_fft=1024, hop=256, window="asymmetric"),
    "low-latency": dict(n_fft=1024, hop=128, window="asymmetric"),
    "reference": dict(n_fft=1024, hop=256, window="hann"),
}


def config(name: str) -> StftConfig:
    """The shipped STFT configuration called ``name`` (see ``SHIPPED_CONFIGS``)."""
    try:
        return StftConfig(**SHIPPED_CONFIGS[name])
    except KeyError:
        raise ValueError(f"unknown STFT configuration {name!r}: use one of {', '.join(SHIPPED_CONFIGS)}") from None


class StftAnalyzer(_core.StftAnalyzer):
    """Streaming STFT: push blocks of any size, get each frame once its last sample arrived.

    ``StftAnalyzer(config, channels=2, max_block=4096)``. ``process_into(block, out)`` writes
    up to ``max_frames_per_block`` frames into ``out`` (complex64, shaped
    ``(max_frames_per_block, channels, bins)``) and returns how many. Non-finite samples
    are replaced by zeros and counted in ``nonfinite_blocks``.
    """

    def process(self, block: np.ndarray) -> np.ndarray:
        """Analyse ``block`` (float32, (channels, n)); returns the new frames (k, channels, bins)."""
        out = np.empty((self.max_frames_per_block, self.channels, self.bins), np.complex64)
        k = self.process_into(block, out)
        return out[:k].copy()


class StftSynthesizer(_core.StftSynthesizer):
    """Streaming inverse STFT by weighted overlap-add.

    ``push(frames)`` overlap-adds frames (complex64, (k, channels, bins)); ``pull_into(out)``
    fills a float32 (channels, n) block. Pull the same number of samples as were analysed and
    the output is the input delayed by ``latency_samples``.
    """

    def pull(self, n: int) -> np.ndarray:
        """Return the next ``n`` samples per channel as a new float32 (channels, n) array."""
        out = np.empty((self.channels, n), np.float32)
        self.pull_into(out)
        return out

    def synthesize(self, frames: np.ndarray, n: int) -> np.ndarray:
        """``push(frames)`` then ``pull(n)``: the output block of one analysed block of n samples."""
        self.push(frames)
        return self.pull(n)


class AudioRingBuffer(_core.AudioRingBuffer):
    """Lock-free single-producer/single-consumer ring of multichannel float audio.

    ``AudioRingBuffer(channels, capacity)``. ``push(block)`` returns the samples written (fewer
    when full); ``pop_into(out)`` returns the samples read (fewer when empty). One thread may
    push while another pops; neither blocks nor allocates.
    """

    def pop(self, n: int) -> np.ndarray:
        """Pop up to ``n`` samples per channel into a new array (channels, k)."""
        out = np.zeros((self.channels, n), np.float32)
        k = self.pop_into(out)
        return out[:, :k].copy()


class StemMixer(_core.StemMixer):
    """Mixes stem frames into bus frames in the STFT domain with per-frame gain ramps.

    ``StemMixer(stems, buses, channels, bins, ramp_frames=4)``; ``set_gain(bus, stem, linear)``
    may be called from any thread; ``process_into(stems, out)`` maps (J, C, F) → (B, C, F).
    """

    def set_gains(self, matrix) -> None:
        """Set every target gain from a (buses, stems) array of linear gains."""
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.shape != (self.buses, self.stems):
            raise ValueError(f"gain matrix must be shaped ({self.buses}, {self.stems}); got {matrix.shape}")
        for b in range(self.buses):
            for j in range(self.stems):
                self.set_gain(b, j, float(matrix[b, j]))

    def process(self, stems: np.ndarray) -> np.ndarray:
        """Mix one frame of stems (J, C, F) into a new (B, C, F) array."""
        out = np.empty((self.buses, self.channels, self.bins), np.complex64)
        self.process_into(stems, out)
        return out


def stft(x: np.ndarray, cfg: StftConfig, *, flush: bool = True) -> np.ndarray:
    """Offline STFT of a whole signal (float32, (channels, n)) with the streaming analyser.

    With ``flush`` the signal is followed by ``cfg.latency_samples`` zeros so that
    ``istft(stft(x), cfg, n)`` returns all of ``x``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"audio must be shaped (channels, samples); got shape {x.shape}")
    if flush:
        x = np.concatenate([x, np.zeros((x.shape[0], cfg.latency_samples), np.float32)], axis=1)
    ana = StftAnalyzer(cfg, x.shape[0], max(1, x.shape[1]))
    return ana.process(x)


def istft(frames: np.ndarray, cfg: StftConfig, length: int) -> np.ndarray:
    """Inverse of :func:`stft` (with ``flush``): returns ``length`` samples aligned with the input."""
    frames = np.ascontiguousarray(frames, dtype=np.complex64)
    # The synthesizer holds one hop of priming, so k frames yield (k + 1) * hop samples.
    n_total = (frames.shape[0] + 1) * cfg.hop
    syn = StftSynthesizer(cfg, frames.shape[1], max(1, n_total))
    syn.push(frames)
    y = syn.pull(n_total)
    return np.ascontiguousarray(y[:, cfg.latency_samples : cfg.latency_samples + length])
