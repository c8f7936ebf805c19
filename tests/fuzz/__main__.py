"""``python -m tests.fuzz [--seconds 120] [--seed 0]``: run the fuzz suite for a bounded time and
print one summary line (inputs tried, clean errors, tracebacks, escapes, damaged files); exit 1
if any traceback, escape, damaged file or non-finite output was found (each is then listed)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    p.add_argument("--seconds", type=float, default=120.0, help="time budget, split among the targets")
    p.add_argument("--seed", type=int, default=0, help="seed of the generators (a failure names it)")
    p.add_argument("--only", default=None, help="comma-separated targets: presets,cards,audio,engine")
    args = p.parse_args(argv)
    if not args.seconds > 0:
        p.error("--seconds must be above 0")
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    warnings.simplefilter("ignore")
    from .core import Fuzzer

    shares = None
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        shares = {n: 1.0 / len(names) for n in names}
    fz = Fuzzer(seed=args.seed)
    t0 = time.monotonic()
    try:
        counts = fz.run(args.seconds, shares)
    finally:
        fz.close()
    for target, i, what, detail in counts.failures:
        print(f"--- {what} in {target} #{i} (seed {args.seed}):\n{detail}", file=sys.stderr)
    for (target, what, last), n in sorted(counts.kinds.items(), key=lambda kv: -kv[1]):
        print(f"{n:6d} {what} in {target}: {last}", file=sys.stderr)
    print(counts.summary(time.monotonic() - t0, args.seed), flush=True)
    return 0 if counts.ok else 1


if __name__ == "__main__":
    sys.exit(main())
