"""Corpus throughput: hours of audio rendered per hour of wall time, and disk per hour.

    python benchmarks/corpus_throughput.py [--hours 0.1] [--workers 1 2] [--seed 0]

Builds a small corpus into a temporary folder per worker count (the music21 cache is
warmed first, so that parsing, done once per piece, does not count), then prints one
JSON line per run. Run it niced on a shared machine; the numbers are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory.corpus import build as B  # noqa: E402


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and ".cache" not in f.parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=0.1)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ldx-bench-") as td:
        cache = Path(td) / "cache"
        planner = B.make_planner(args.seed, cache)  # warm the music21 cache
        for i in B.plan_indices(args.seed, args.hours):
            planner.plan(i)
        for w in args.workers:
            out = Path(td) / f"w{w}"
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            me0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            r = B.build(out, args.hours, args.seed, workers=w, progress=False, cache_dir=cache)
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            me1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = sum(
                getattr(b, k) - getattr(a, k) for a, b in ((cpu0, cpu1), (me0, me1)) for k in ("ru_utime", "ru_stime")
            )
            audio_h = r["hours"]
            size = du(out)
            flac = sum(f.stat().st_size for f in out.rglob("*.flac"))
            print(
                json.dumps(
                    {
                        "workers": w,
                        "songs": r["songs"],
                        "audio_hours": round(audio_h, 4),
                        "wall_s": round(wall, 1),
                        "realtime_factor": round(audio_h * 3600 / wall, 2),
                        "audio_hours_per_cpu_hour": round(audio_h * 3600 / max(cpu, 1e-9), 2),
                        "disk_gb_per_audio_hour": round(size / 1e9 / audio_h, 3),
                        "flac_gb_per_audio_hour": round(flac / 1e9 / audio_h, 3),
                        "load_avg_1min": round(os.getloadavg()[0], 2),
                        "cpus": os.cpu_count(),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
