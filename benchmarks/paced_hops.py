"""Why a hop paced at real time costs more than one in a loop: run the engine one hop at a time
with different gaps between hops (none, sleeping, spinning in place) and print the median CPU
time per hop. If spinning keeps the cost near the back-to-back figure, the caches are lost
while the core idles; if spinning is expensive too, something else on the machine (another
process, or the host of a VM) evicts them.

    python benchmarks/paced_hops.py [--hops 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from livedemix.apps.bench_pipeline import _audio
from livedemix.engine import Engine


def cpu_per_hop(eng: Engine, x: np.ndarray, hops: int, mode: str, gap_s: float) -> float:
    hop = 256
    cpu = np.empty(hops)
    for i in range(hops):
        c0 = time.thread_time()
        eng.process(x[:, hop * i : hop * (i + 1)])
        cpu[i] = time.thread_time() - c0
        if mode == "sleep":
            time.sleep(gap_s)
        elif mode == "spin":
            t_end = time.perf_counter() + gap_s
            while time.perf_counter() < t_end:
                pass
    return float(np.median(cpu) * 1e6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hops", type=int, default=1000)
    args = ap.parse_args()
    eng = Engine(block_size=256)
    x = _audio(256 * args.hops, eng.sample_rate)  # the demo song looped, as the bench uses
    cpu_per_hop(eng, x, min(args.hops, 200), "none", 0.0)  # warm-up
    print(f"{'gap between hops':<28}{'median CPU per hop':>20}")
    for mode, gap in (("none", 0.0), ("sleep", 0.0058), ("spin", 0.0058), ("sleep", 0.0005), ("spin", 0.0005)):
        label = "none (back to back)" if mode == "none" else f"{mode} {gap * 1e3:.1f} ms"
        print(f"{label:<28}{cpu_per_hop(eng, x, args.hops, mode, gap):>17.0f} µs")


if __name__ == "__main__":
    main()
