"""Throughput of a library job for 1 and 2 workers on this machine, and the scaling it implies.

    python -m benchmarks.library_throughput                  # local worker processes
    python -m benchmarks.library_throughput --ray            # also a local Ray cluster
    python -m benchmarks.library_throughput --songs 12 --seconds 30 --model tests/data/models/tiny.json

A small library is generated from the bundled demo song (``--songs`` songs of ``--seconds``
each, different excerpts), then separated by `livedemix.apps.library.run_job` into a fresh
folder for each setting, in turns (1 worker, 2 workers, 1, 2, ...) so that a busy neighbour
hits both alike. Reported per setting: the best round's throughput as a multiple of real time
(audio seconds per wall second, including starting the workers and loading the model), and
the scaling of 2 workers over 1. Speeds are ratios measured in the same run; on a shared
machine they move with the load, which is printed with them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from livedemix.apps import library

DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo" / "mixture.flac"


def make_library(folder: Path, songs: int, seconds: float) -> float:
    x, sr = sf.read(DEMO, dtype="float32")
    loop = np.concatenate([x] * int(np.ceil(seconds * sr * 2 / len(x)) + 1))
    n = int(seconds * sr)
    for i in range(songs):
        start = (i * sr * 3) % (len(loop) - n)
        sub = folder / f"disc{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(sub / f"song{i:02d}.flac", loop[start : start + n], sr)
    return songs * seconds


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the local workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(settings: list[tuple[str, dict]], music: Path, rounds: int, model, audio: float) -> dict:
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for name, kw in settings:
            out = Path(tempfile.mkdtemp(prefix="ldx-bench-out-"))
            cpu0 = _cpu_seconds()
            try:
                s = library.run_job([music], out, model=model, recursive=True, progress=False, **kw)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            cpu = _cpu_seconds() - cpu0
            assert not s["failed"], s["failed"]
            if name not in best or s["x_realtime"] > best[name]["x_realtime"]:
                best[name] = {
                    "x_realtime": s["x_realtime"],
                    "wall_seconds": s["wall_seconds"],
                    "audio_per_cpu_second": audio / cpu if cpu > 0 else float("nan"),
                }
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--songs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default=None)
    p.add_argument("--ray", action="store_true", help="also run on a local Ray cluster of 1 and 2 CPUs")
    args = p.parse_args(argv)
    music = Path(tempfile.mkdtemp(prefix="ldx-bench-music-"))
    try:
        audio = make_library(music, args.songs, args.seconds)
        settings = [("1 worker", {"jobs": 1}), ("2 workers", {"jobs": 2})]
        if args.ray:
            settings += [("ray, 1 CPU", {"use_ray": True, "jobs": 1}), ("ray, 2 CPUs", {"use_ray": True, "jobs": 2})]
        load = os.getloadavg()[0]
        best = run(settings, music, args.rounds, args.model, audio)
    finally:
        shutil.rmtree(music, ignore_errors=True)
    print(
        f"library of {args.songs} songs, {audio / 60:.1f} min of audio, model {args.model or 'default'}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the start; best of {args.rounds} rounds"
    )
    for name, b in best.items():
        cpu = f"{b['audio_per_cpu_second']:6.1f} audio s per CPU s" if "ray" not in name else ""
        print(f"  {name:<12} {b['x_realtime']:7.1f}x real time  ({b['wall_seconds']:.1f} s)  {cpu}")
    one, two = best["1 worker"]["x_realtime"], best["2 workers"]["x_realtime"]
    print(f"  scaling, 2 local workers over 1: {two / one:.2f}x (ideal 2.00x on 2 free cores)")
    # What 2 workers would give on 2 free cores: each at its measured work per CPU second.
    eff = best["2 workers"]["audio_per_cpu_second"] / best["1 worker"]["audio_per_cpu_second"]
    print(
        f"  CPU efficiency of 2 workers against 1: {eff:.2f} -> on 2 free cores 2 workers would give "
        f"{2 * eff:.2f}x the throughput of 1 (workers share nothing but the file system)"
    )
    if args.ray:
        r1, r2 = best["ray, 1 CPU"]["x_realtime"], best["ray, 2 CPUs"]["x_realtime"]
        print(f"  scaling, Ray 2 CPUs over 1: {r2 / r1:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
