"""Peer networks trained and timed side by side with ours: Open-Unmix and HT Demucs (PyPI).

Only the networks come from the peers' packages; data, loss, STFT and reconstruction are
ours, so a comparison measures the network and nothing else.

Both packages import torchaudio at module level, whose binary wheels are pinned to one torch
release each; the network classes never call it. When torchaudio cannot be imported (no
wheel for this torch), an empty placeholder module stands in so the network classes load.
"""

from __future__ import annotations

import sys
import types

import torch
from livedemix import STEMS
from torch import nn


def _allow_without_torchaudio() -> None:
    try:
        import torchaudio  # noqa: F401
    except Exception:  # missing, or built for another torch
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")


def open_unmix_class():
    _allow_without_torchaudio()
    try:
        from openunmix.model import OpenUnmix
    except ImportError as e:
        raise SystemExit(f"Open-Unmix is not installed ({e}): run `pip install --no-deps openunmix==1.3.0`.")
    return OpenUnmix


def ht_demucs_class():
    _allow_without_torchaudio()
    try:
        from demucs.htdemucs import HTDemucs
    except ImportError as e:
        raise SystemExit(f"Demucs is not installed ({e}): run `pip install --no-deps demucs==4.1.0 einops julius`.")
    return HTDemucs


def max_bin_for(bandwidth_hz: float, sample_rate: int, n_fft: int) -> int:
    """Open-Unmix's recipe models bins up to 16 kHz and copies the mixture's bins above."""
    return int(bandwidth_hz / (sample_rate / 2) * (n_fft // 2)) + 1


class UmxPeer(nn.Module):
    """Open-Unmix as its authors train it: one network per stem, magnitudes in, magnitudes out.

    forward: mixture magnitudes (B, C, F, T) → stem magnitudes (B, J, C, F, T), like ours.
    `unidirectional=True` is the causal variant (LSTM forward in time only; BatchNorm uses
    running statistics at inference, so it stays causal).
    """

    def __init__(
        self,
        bins: int = 513,
        channels: int = 2,
        hidden: int = 512,
        unidirectional: bool = True,
        max_bin: int | None = None,
    ):
        super().__init__()
        OpenUnmix = open_unmix_class()
        self.config = {
            "arch": "umx",
            "bins": bins,
            "channels": channels,
            "hidden": hidden,
            "unidirectional": unidirectional,
            "max_bin": max_bin,
        }
        self.nets = nn.ModuleList(
            OpenUnmix(
                nb_bins=bins, nb_channels=channels, hidden_size=hidden, max_bin=max_bin, unidirectional=unidirectional
            )
            for _ in STEMS
        )

    @torch.no_grad()
    def init_input_stats(self, mag: torch.Tensor) -> None:
        """mag: (B, C, F, T) mixture magnitudes; Open-Unmix's scaler (mean/std per bin)."""
        m = mag.transpose(1, 2).reshape(mag.shape[2], -1)
        mean, std = m.mean(1), m.std(1).clamp_min(1e-4)
        for net in self.nets:
            k = net.input_mean.shape[0]
            net.input_mean.copy_(-mean[:k])
            net.input_scale.copy_(1.0 / std[:k])

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(mag) for net in self.nets], dim=1)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
