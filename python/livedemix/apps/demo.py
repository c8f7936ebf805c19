"""`livedemix demo`: separate the bundled demo song and show how well it went.

Writes the four stems and a karaoke mix (vocals muted) to ``./livedemix-demo/`` and prints,
per stem, its level, the SDR against the bundled true stems (and what the unprocessed mixture
would score, for scale), then the latency and the real-time factor.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import STEMS
from ..audio.files import AtomicOutputs, read_audio
from ..metrics import rms_dbfs, sdr, si_sdr
from ..offline import StreamingSeparation

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"


def demo_song() -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    mix, sr = read_audio(DEMO_DIR / "mixture.flac")
    stems = {s: read_audio(DEMO_DIR / f"{s}.flac")[0] for s in STEMS}
    return mix, stems, sr


def run(outdir: str | Path = "livedemix-demo", *, model=None, phase=None, fmt="wav", block_size=256) -> dict:
    mix, truth, sr = demo_song()
    t0 = time.perf_counter()
    sep = StreamingSeparation(sr, mix.shape[0], model=model, preset="karaoke", phase=phase, block_size=block_size)
    # Feed in real-time-sized blocks so the timing is that of the live path.
    parts = {o: [] for o in sep.outputs}
    for s in range(0, mix.shape[1], 65536):
        for o, y in sep.feed(mix[:, s : s + 65536]).items():
            parts[o].append(y)
    for o, y in sep.finish().items():
        parts[o].append(y)
    wall = time.perf_counter() - t0
    est = {o: np.concatenate(p, axis=1) for o, p in parts.items()}
    names = {**{s: s for s in sep.stems}, "mix": "karaoke"}
    with AtomicOutputs(Path(outdir), list(names.values()), fmt, sr, mix.shape[0]) as out:
        out.write({names[o]: y for o, y in est.items()})
        files = out.commit()
    rows = []
    for s in sep.stems:
        rows.append(
            {
                "stem": s,
                "level_dbfs": round(rms_dbfs(est[s]), 1),
                "sdr_db": round(sdr(truth[s], est[s]), 2),
                "si_sdr_db": round(si_sdr(truth[s], est[s]), 2),
                "mixture_sdr_db": round(sdr(truth[s], mix), 2),
            }
        )
    karaoke_truth = sum(truth[s] for s in truth if s != "vocals")
    d = sep.describe()
    return {
        "song": json.loads((DEMO_DIR / "demo.json").read_text()).get("title", "demo"),
        "seconds": round(mix.shape[1] / sr, 2),
        "stems": rows,
        "mean_sdr_db": round(float(np.mean([r["sdr_db"] for r in rows])), 2),
        "mean_mixture_sdr_db": round(float(np.mean([r["mixture_sdr_db"] for r in rows])), 2),
        "karaoke_sdr_db": round(sdr(karaoke_truth, est["mix"]), 2),
        "latency_samples": d["live_latency_samples"],  # what the same model adds live
        "latency_ms": d["live_latency_ms"],
        "render": d["render"],
        "render_latency_samples": d["latency_samples"],
        "real_time_factor": round(wall / (mix.shape[1] / sr), 4),
        "phase": d["phase"],
        "mask_power": d["mask_power"],
        "model": d["model"],
        "outputs": [str(f) for f in files],
        "outdir": str(outdir),
    }


def format_report(r: dict) -> str:
    lines = [
        f"livedemix demo: {r['seconds']} s song, model {r['model']}, phase {r['phase']} "
        f"(mask power {r['mask_power']:g})",
        "",
        f"  {'stem':<8} {'level':>9} {'SDR':>8} {'SI-SDR':>8} {'mixture SDR':>12}",
    ]
    for row in r["stems"]:
        lines.append(
            f"  {row['stem']:<8} {row['level_dbfs']:>6.1f} dBFS {row['sdr_db']:>5.2f} dB {row['si_sdr_db']:>5.2f} dB"
            f" {row['mixture_sdr_db']:>9.2f} dB"
        )
    lines.append(f"  {'mean':<8} {'':>9} {r['mean_sdr_db']:>5.2f} dB {'':>8} {r['mean_mixture_sdr_db']:>9.2f} dB")
    lines += [
        "",
        f"  karaoke mix (vocals muted): SDR {r['karaoke_sdr_db']:.2f} dB against drums+bass+other",
        f"  latency live: {r['latency_samples']} samples = {r['latency_ms']:.2f} ms at 44.1 kHz"
        + (
            f" (this file render used the offline graph, which hears {(r['render_latency_samples'] - r['latency_samples']) / 44100:.2f} s ahead)"
            if r["render"] == "offline graph"
            else ""
        ),
        f"  real-time factor: {r['real_time_factor']:.3f} (time to process / duration, one core)",
        f"  wrote {len(r['outputs'])} files to {r['outdir']}/",
    ]
    return "\n".join(lines)
