"""Cost of livedemix phase recovery: microseconds per STFT frame (J=4 stems, C=2 channels,
F=513 bins: n_fft 1024, hop 256 at 44.1 kHz, where one frame lasts 5805 µs).

Two inputs:
  music   oracle magnitudes and mixture of a rendered 4-stem song (fluidsynth; a synthetic song
          if fluidsynth is missing): the realistic case, a few dozen peaks per stem;
  random  |N(0,1)| magnitudes: the worst case for peak picking (a peak every ~3 bins).
Timing: frames are processed by ``process_stft`` (the loop is in C++, so this is the native
cost), best and median of ``--repeats`` passes over ``--frames`` frames, measured as the CPU
time of the calling thread (``time.thread_time``: robust on a shared machine, where wall time
also counts the time other processes hold the core); "per call" times one Python
``process()`` call per frame (adds the binding overhead). ``--clock wall`` uses wall time.

    python benchmarks/phase_recovery_bench.py [--frames 400] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from livedemix.phase import DEFAULT_KAPPA, PhaseRecovery, default_n_iter  # noqa: E402

HOP_N_ITER = default_n_iter(256)  # the product default at this benchmark's hop

FRAME_US = 256 / 44100 * 1e6
BUDGET_US = 0.02 * FRAME_US  # 2 % of one core


def inputs(kind: str, frames: int):
    if kind == "music":
        from phase_support import oracle_inputs, song

        _, X, V = oracle_inputs(song(seconds=12.0, seed=0))
        reps = -(-frames // X.shape[0])
        return np.ascontiguousarray(np.concatenate([X] * reps)[:frames]), np.ascontiguousarray(
            np.concatenate([V] * reps)[:frames]
        )
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((frames, 2, 513)) + 1j * rng.standard_normal((frames, 2, 513))).astype(np.complex64)
    V = np.abs(rng.standard_normal((frames, 4, 2, 513))).astype(np.float32)
    return X, V


CLOCK = time.thread_time


def time_stft(pr, X, V, repeats):
    out = np.empty((X.shape[0],) + V.shape[1:], np.complex64)
    pr.process_stft(X, V, out)  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = CLOCK()
        pr.process_stft(X, V, out)
        ts.append((CLOCK() - t0) / X.shape[0] * 1e6)
    return min(ts), float(np.median(ts))


def time_calls(pr, X, V, repeats):
    out = np.empty(V.shape[1:], np.complex64)
    ts = []
    for _ in range(repeats):
        pr.reset()
        t0 = CLOCK()
        for t in range(X.shape[0]):
            pr.process(X[t], V[t], out)
        ts.append((CLOCK() - t0) / X.shape[0] * 1e6)
    return min(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None)
    ap.add_argument("--clock", choices=["thread", "wall"], default="thread")
    a = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if a.clock == "thread" else time.perf_counter
    configs = [
        ("wiener", {}),
        ("pu-iter", {"n_iter": 1}),
        ("pu-iter", {"n_iter": 4}),
        ("pu-iter", {"n_iter": 16}),
        ("pu-iter", {"n_iter": 32}),
    ]
    if HOP_N_ITER not in (1, 4, 16, 32):
        configs.append(("pu-iter", {"n_iter": HOP_N_ITER}))
    configs.append(("anisotropic", {"kappa": DEFAULT_KAPPA}))
    data = {k: inputs(k, a.frames) for k in ("music", "random")}
    probe = PhaseRecovery(4, 2, 1024, 256)
    simd = "AVX2+FMA" if probe._impl._uses_avx2 else "SSE2"
    print(
        f"J=4 C=2 F=513 hop=256 @44.1 kHz (frame = {FRAME_US:.0f} µs, 2 % budget = {BUDGET_US:.0f} µs); "
        f"PU-Iter kernel: {simd}; clock: {a.clock}; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"default: mode=pu-iter n_iter={HOP_N_ITER}\n")
    print(
        "| mode | music µs/frame (best / median) | random µs/frame (best / median) | music, one process() call per frame | music, SSE2 kernel forced | % of one core (music, best) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    rows = []
    for mode, kw in configs:
        label = mode + "".join(f" {k}={v:g}" for k, v in kw.items())
        if mode == "pu-iter" and kw["n_iter"] == HOP_N_ITER:
            label += " (default)"
        pr = PhaseRecovery(4, 2, 1024, 256, mode=mode, **kw)
        mb, mm = time_stft(pr, *data["music"], a.repeats)
        rb, rm = time_stft(pr, *data["random"], a.repeats)
        call = time_calls(pr, *data["music"], max(2, a.repeats // 2))
        sse = PhaseRecovery(4, 2, 1024, 256, mode=mode, **kw)
        sse._impl._set_allow_avx2(False)
        sb, _ = time_stft(sse, *data["music"], max(2, a.repeats // 2))
        rows.append(
            dict(
                mode=mode,
                **kw,
                music_best=mb,
                music_median=mm,
                random_best=rb,
                random_median=rm,
                per_call=call,
                sse2_music_best=sb,
                simd=simd,
            )
        )
        print(
            f"| {label} | {mb:.1f} / {mm:.1f} | {rb:.1f} / {rm:.1f} | {call:.1f} | {sb:.1f} | {100 * mb / FRAME_US:.2f} % |"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
