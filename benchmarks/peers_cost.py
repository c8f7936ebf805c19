"""The peers' price against livedemix's, on one core, same audio, same process.

Times the forward pass of Open-Unmix's network (bidirectional, causal, and causal streamed frame
by frame as it would run live) and of HT Demucs's network (PyPI `openunmix`, `demucs`; random
weights, which cost the same as trained ones), and livedemix's whole engine, and prints each
peer's core-seconds per audio second as a ratio to livedemix's. Needs the factory extras:

    python -m benchmarks.peers_cost [--seconds 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from livedemix.apps.bench_pipeline import _audio, bench_engine

from factory.peers import ht_demucs_class, open_unmix_class


def _umx_stream_step(net, frame, state):
    """One frame (1, C, F) through a unidirectional Open-Unmix network, its layers called one
    by one as its forward() does for a whole sequence; returns (magnitudes, LSTM state)."""
    x = (frame[..., : net.nb_bins] + net.input_mean) * net.input_scale
    x = torch.tanh(net.bn1(net.fc1(x.reshape(1, -1))))
    y, state = net.lstm(x[None], state)
    x = torch.cat([x, y[0]], -1)
    x = torch.relu(net.bn2(net.fc2(x)))
    x = net.bn3(net.fc3(x)).reshape(1, frame.shape[1], net.nb_output_bins)
    return torch.relu(x * net.output_scale + net.output_mean) * frame, state


def bench_peers(seconds: float = 10.0) -> dict:
    """Seconds of one core per second of audio for the peers' networks (forward pass only)."""
    torch.set_num_threads(1)
    out = {}
    sr = 44100
    n = int(seconds * sr)
    x = torch.from_numpy(_audio(n, sr))[None]
    try:
        OpenUnmix = open_unmix_class()
        # Open-Unmix as published (umxhq): 4096/1024 STFT, 16 kHz bandwidth, one bidirectional
        # network per target; and its causal (unidirectional) variant.
        n_fft, hop = 4096, 1024
        spec = torch.stft(x[0], n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()[None]
        max_bin = int(16000 / (sr / 2) * (n_fft // 2)) + 1
        for name, uni in (("open-unmix", False), ("open-unmix-causal", True)):
            nets = [
                OpenUnmix(
                    nb_bins=n_fft // 2 + 1, nb_channels=2, hidden_size=512, max_bin=max_bin, unidirectional=uni
                ).eval()
                for _ in range(4)
            ]
            with torch.no_grad():
                for net in nets:
                    net(spec)
                t0 = time.perf_counter()
                for net in nets:
                    net(spec)
                dt = time.perf_counter() - t0
            out[name] = {
                "core_seconds_per_audio_second": dt / seconds,
                "parameters": sum(p.numel() for nt in nets for p in nt.parameters()),
            }
        # Live use needs the causal network one frame at a time (as livedemix runs): time that
        # too, at Open-Unmix's own hop, carrying the LSTM state from frame to frame.
        frames = spec.shape[-1]
        with torch.no_grad():
            states = [None] * 4
            for t in range(min(frames, 8)):  # warm-up
                for k, net in enumerate(nets):
                    _, states[k] = _umx_stream_step(net, spec[..., t], states[k])
            states = [None] * 4
            t0 = time.perf_counter()
            for t in range(frames):
                for k, net in enumerate(nets):
                    _, states[k] = _umx_stream_step(net, spec[..., t], states[k])
            dt = time.perf_counter() - t0
        out["open-unmix-causal-streaming"] = {
            "core_seconds_per_audio_second": dt / (frames * hop / sr),
            "parameters": sum(p.numel() for nt in nets for p in nt.parameters()),
            "note": f"frame by frame at hop {hop}, LSTM state carried (how it would run live)",
        }
    except SystemExit as e:
        out["open-unmix"] = {"skipped": str(e)}
    try:
        HTDemucs = ht_demucs_class()
        net = HTDemucs(sources=["drums", "bass", "other", "vocals"]).eval()
        seg = int(net.segment * sr)
        chunk = x[..., :seg] if x.shape[-1] >= seg else torch.nn.functional.pad(x, (0, seg - x.shape[-1]))
        with torch.no_grad():
            net(chunk)
            t0 = time.perf_counter()
            net(chunk)
            dt = time.perf_counter() - t0
        out["ht-demucs"] = {
            "core_seconds_per_audio_second": dt / (seg / sr),
            "parameters": sum(p.numel() for p in net.parameters()),
        }
    except SystemExit as e:
        out["ht-demucs"] = {"skipped": str(e)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per timing (default 10)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    ours = bench_engine(a.seconds, None, paced_seconds=min(5.0, a.seconds))
    peers = bench_peers(a.seconds)
    for p in peers.values():
        if "core_seconds_per_audio_second" in p:
            p["times_livedemix"] = p["core_seconds_per_audio_second"] / ours["real_time_factor"]
    if a.json:
        print(json.dumps({"livedemix": ours, "peers": peers}, indent=2))
        return 0
    print(f"{'network':<30}{'parameters':>12}{'core s / audio s':>18}{'x livedemix':>13}")
    print(
        f"{'livedemix (whole engine)':<30}{ours['model_parameters'] or 0:>12}{ours['real_time_factor']:>18.4f}{1:>13.1f}"
    )
    for name, p in peers.items():
        if "skipped" in p:
            print(f"{name:<30} skipped: {p['skipped']}")
        else:
            print(
                f"{name:<30}{p['parameters']:>12}{p['core_seconds_per_audio_second']:>18.4f}{p['times_livedemix']:>13.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
