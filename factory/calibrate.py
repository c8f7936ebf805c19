"""Calibrate a model card's mask power on held-out songs (the valid split, never the test split).

Every reconstruction mode shares the mixture among the stems by the weights
``V_j**p / sum_k V_k**p`` of the model's magnitudes ``V``. With true magnitudes ``p = 2`` is the
Wiener filter, but an estimated ``V`` errs, and a softer mask (smaller ``p``) trades a little
interference for fewer artefacts. Which ``p`` is best depends on the model, so it is measured:
this runs the model once per excerpt and reconstructs it with each power and mode, scores the
plain SDR (per stem and song, averaged over songs, then over the stems: factory.evaluate's
measure), prints the table, and with ``--write`` stores the best power of each mode in the card
(``"mask_power": {mode: p}``, plus the table under ``"mask_power_calibration"``). The engine and
factory.evaluate then use it.

    python -m factory.calibrate --data data/corpus --model python/livedemix/models/default.json --write
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import numpy as np
from livedemix import metrics
from livedemix.phase import MODES

from .evaluate import (
    DEFAULT_OFFSET,
    DEFAULT_SECONDS,
    CardRunner,
    SongContext,
    active_stems,
    atomic_write_text,
    read_excerpt,
    reconstruct,
)
from .stems_data import find_songs

DEFAULT_POWERS = (0.75, 1.0, 1.25, 1.5, 2.0)


def calibrate(
    card: Path,
    data: Path,
    split: str = "valid",
    songs: int = 60,
    powers=DEFAULT_POWERS,
    modes=MODES,
    seconds: float = DEFAULT_SECONDS,
    offset: float = DEFAULT_OFFSET,
    progress=None,
) -> dict:
    """Mean plain SDR (dB) per mode and power, and per stem: ``{"table": {mode: {p: mean}},
    "stems": {mode: {p: {stem: mean}}}, "best": {mode: p}, ...}``."""
    dirs = find_songs(data, split)[:songs]
    if not dirs:
        raise ValueError(
            f"the '{split}' split under {data} has no songs: build it first "
            f"(python -m factory.corpus build --out {data} --hours 6 --splits {split})"
        )
    runner = CardRunner("model", card, list(modes), live=True)  # the card's powers are the live model's
    names = runner.sep.stems
    sums = {(m, p): [[] for _ in names] for m in modes for p in powers}
    t0 = time.perf_counter()
    for i, d in enumerate(dirs):
        stems, sr, _, _ = read_excerpt(d, seconds, offset, names)
        ctx = SongContext(stems, sr)
        X = ctx.mix_stft(runner.cfg, runner.lookahead)
        V = runner.magnitudes(X)
        active = active_stems(stems)
        for m in modes:
            for p in powers:
                est = reconstruct(X, V, runner.cfg, m, ctx.n, runner.lookahead, p)
                for j in active:
                    sums[(m, p)][j].append(metrics.sdr(stems[j], est[j]))
        if progress:
            progress(i + 1, len(dirs))
    per_stem = {
        m: {p: {s: float(np.mean(v)) if v else float("nan") for s, v in zip(names, sums[(m, p)])} for p in powers}
        for m in modes
    }
    table = {m: {p: float(np.nanmean(list(per_stem[m][p].values()))) for p in powers} for m in modes}
    best = {m: max(powers, key=lambda p: table[m][p]) for m in modes}
    return {
        "split": split,
        "songs": len(dirs),
        "seconds": seconds,
        "offset_seconds": offset,
        "data": str(data),
        "powers": list(powers),
        "table": table,
        "stems": per_stem,
        "best": best,
        "wall_s": time.perf_counter() - t0,
    }


def write_card(card_path: Path, result: dict) -> None:
    """The best power per mode into the card (atomically); every other field stays as it was."""
    card = json.loads(Path(card_path).read_text())
    card["mask_power"] = {m: float(p) for m, p in result["best"].items()}
    card["mask_power_calibration"] = {
        "measure": "plain SDR (dB), per stem and song, averaged over songs, then stems",
        "date": _dt.date.today().isoformat(),
        **{k: result[k] for k in ("data", "split", "songs", "seconds", "offset_seconds", "powers")},
        "sdr": {m: {f"{p:g}": round(v, 4) for p, v in row.items()} for m, row in result["table"].items()},
    }
    atomic_write_text(Path(card_path), json.dumps(card, indent=2) + "\n")


def format_table(result: dict) -> str:
    powers = result["powers"]
    lines = [
        f"mean SDR (dB) on {result['songs']} '{result['split']}' songs, by mask power p "
        f"(weights V^p / sum V^p; p = 2 is Wiener)",
        "| mode | " + " | ".join(f"p = {p:g}" for p in powers) + " | best |",
        "| --- |" + " --- |" * (len(powers) + 1),
    ]
    for m, row in result["table"].items():
        best = result["best"][m]
        cells = [f"**{row[p]:.2f}**" if p == best else f"{row[p]:.2f}" for p in powers]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {best:g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m factory.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="stems folder (<root>/<split>/<song>/<stem>.flac)")
    ap.add_argument("--model", type=Path, required=True, help="the model card (JSON) to calibrate")
    ap.add_argument("--split", default="valid", help="held-out songs to calibrate on (default %(default)s; not test)")
    ap.add_argument("--songs", type=int, default=60, help="the first N songs of the split (default %(default)s)")
    ap.add_argument("--powers", default=",".join(f"{p:g}" for p in DEFAULT_POWERS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--write", action="store_true", help="store the best power per mode in the card")
    args = ap.parse_args(argv)
    try:
        powers = tuple(float(p) for p in args.powers.split(","))
        if not all(0.25 <= p <= 8 for p in powers):
            raise ValueError
    except ValueError:
        print(
            f"error: --powers {args.powers!r} must be numbers in [0.25, 8] separated by commas, e.g. 1,1.5,2",
            file=sys.stderr,
        )
        return 2
    modes = tuple(m for m in args.modes.split(",") if m)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        print(f"error: unknown mode {', '.join(bad) or '(none)'}; use some of {', '.join(MODES)}", file=sys.stderr)
        return 2
    if args.split == "test":
        print("warning: calibrating on the test split makes its scores optimistic; use valid", file=sys.stderr)
    try:
        result = calibrate(
            args.model,
            args.data,
            args.split,
            args.songs,
            powers,
            modes,
            progress=lambda i, n: print(f"\r{i}/{n} songs", end="", file=sys.stderr, flush=True),
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(format_table(result))
    if args.write:
        write_card(args.model, result)
        print(f"{args.model}: mask_power = {json.dumps(result['best'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
