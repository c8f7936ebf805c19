"""Benchmarks that compare a livedemix path with a baseline run in the same process.

Figures are ratios, not absolute claims: both sides run on the same machine, in the same
process, on the same audio, interleaved in rounds so that frequency scaling and a noisy
neighbour hit both alike.
"""

from __future__ import annotations

import time

import numpy as np

from .. import dsp


class NumpyStreamingStft:
    """Frame-at-a-time STFT→ISTFT round trip in plain numpy: the baseline of `bench stft`."""

    def __init__(self, cfg: dsp.StftConfig, channels: int):
        self.n, self.hop, self.span = cfg.n_fft, cfg.hop, cfg.synthesis_length
        self.analysis, synthesis = cfg.windows()
        self.synthesis_tail = synthesis[self.n - self.span :]
        self.history = np.zeros((channels, self.n), np.float32)
        self.accum = np.zeros((channels, self.span), np.float32)

    def hop_block(self, block: np.ndarray) -> np.ndarray:
        """One hop in, one hop out (block shaped (channels, hop))."""
        h = self.hop
        self.history[:, :-h] = self.history[:, h:]
        self.history[:, -h:] = block
        frame = np.fft.rfft(self.history * self.analysis, axis=-1)
        # (the separator and mixer would act on `frame` here)
        time_frame = np.fft.irfft(frame, n=self.n, axis=-1)
        self.accum += time_frame[:, self.n - self.span :] * self.synthesis_tail
        out = self.accum[:, :h].copy()
        self.accum[:, :-h] = self.accum[:, h:]
        self.accum[:, -h:] = 0.0
        return out


def bench_stft(config_name: str = "reference", channels: int = 2, seconds: float = 2.0, rounds: int = 5) -> dict:
    """Frames per second of the streaming STFT→ISTFT round trip, one hop per call."""
    cfg = dsp.config(config_name)
    hop = cfg.hop
    n_frames = int(seconds * 44100 / hop)
    audio = (0.1 * np.random.default_rng(0).standard_normal((channels, n_frames * hop))).astype(np.float32)
    blocks = [np.ascontiguousarray(audio[:, i * hop : (i + 1) * hop]) for i in range(n_frames)]

    ana = dsp.StftAnalyzer(cfg, channels, hop)
    syn = dsp.StftSynthesizer(cfg, channels, hop)
    frames = np.empty((ana.max_frames_per_block, channels, cfg.bins), np.complex64)
    out = np.empty((channels, hop), np.float32)

    def native():
        for b in blocks:
            k = ana.process_into(b, frames)
            if k:
                syn.push(frames)
            syn.pull_into(out)

    ref = NumpyStreamingStft(cfg, channels)

    def numpy_path():
        for b in blocks:
            ref.hop_block(b)

    fft = dsp.RealFft(cfg.n_fft)
    x = audio[0, : cfg.n_fft].copy()

    def fft_native():
        for _ in range(n_frames):
            fft.inverse(fft.forward(x))

    def fft_numpy():
        for _ in range(n_frames):
            np.fft.irfft(np.fft.rfft(x), n=cfg.n_fft)

    timings = {"native": [], "numpy": [], "fft_native": [], "fft_numpy": []}
    for fn in (native, numpy_path):  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in (
            ("native", native),
            ("numpy", numpy_path),
            ("fft_native", fft_native),
            ("fft_numpy", fft_numpy),
        ):
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in timings.items()}
    fps_native = n_frames / best["native"]
    fps_numpy = n_frames / best["numpy"]
    hop_budget_us = 1e6 * hop / 44100
    return {
        "config": repr(cfg),
        "channels": channels,
        "frames_per_round": n_frames,
        "native_frames_per_s": fps_native,
        "numpy_frames_per_s": fps_numpy,
        "speedup_vs_numpy": fps_native / fps_numpy,
        "native_us_per_frame": 1e6 / fps_native,
        "numpy_us_per_frame": 1e6 / fps_numpy,
        "hop_budget_us": hop_budget_us,
        "native_share_of_realtime": (1e6 / fps_native) / hop_budget_us,
        "fft_roundtrip_native_us": 1e6 * best["fft_native"] / n_frames,
        "fft_roundtrip_numpy_us": 1e6 * best["fft_numpy"] / n_frames,
    }


def format_stft(result: dict) -> str:
    r = result
    return "\n".join(
        [
            f"streaming STFT→ISTFT round trip, one hop per call, {r['config']}, {r['channels']} channels",
            f"  {'path':<28}{'frames/s':>12}{'µs/frame':>12}",
            f"  {'livedemix (C++ core)':<28}{r['native_frames_per_s']:>12.0f}{r['native_us_per_frame']:>12.1f}",
            f"  {'numpy (same process)':<28}{r['numpy_frames_per_s']:>12.0f}{r['numpy_us_per_frame']:>12.1f}",
            f"  speed-up vs numpy: {r['speedup_vs_numpy']:.1f}x   share of real time (hop budget "
            f"{r['hop_budget_us']:.0f} µs): {100 * r['native_share_of_realtime']:.2f}%",
            f"  one {r['config'].split(',')[0].split('=')[1]}-point rfft+irfft from Python: livedemix {r['fft_roundtrip_native_us']:.1f} µs,"
            f" numpy {r['fft_roundtrip_numpy_us']:.1f} µs",
        ]
    )
