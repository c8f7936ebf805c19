"""Checks of a build: the mixture is the sum of the stems, featured stems are active,
splits are disjoint by source, and every manifest entry has its files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from livedemix import STEMS

from . import loudness as L

ACTIVE_DB = -50.0


def check_song(root: Path, entry: dict) -> dict:
    x = {n: sf.read(root / p, dtype="float32", always_2d=True)[0].T for n, p in entry["files"].items()}
    err = float(np.abs(x["mixture"] - sum(x[s] for s in STEMS)).max())
    act = {s: L.active_fraction(x[s], threshold_db=ACTIVE_DB) for s in STEMS if np.any(x[s])}
    return {
        "id": entry["id"],
        "max_abs_err": err,
        "active": act,
        "shape_ok": all(v.shape == x["mixture"].shape and v.shape[0] == 2 for v in x.values()),
    }


def splits_disjoint(entries) -> tuple[bool, dict]:
    """No music21 source file (an ABC opus counts as one) in two splits."""
    seen: dict[str, set] = {}
    for e in entries:
        seen.setdefault(e["source"].split("#")[0], set()).add(e["split"])
    shared = {k: sorted(v) for k, v in seen.items() if len(v) > 1}
    return not shared, shared


def verify(root, max_songs=None) -> bool:
    root = Path(root)
    entries = [json.loads(l) for l in (root / "manifest.jsonl").read_text().splitlines() if l.strip()]
    if max_songs:
        entries = entries[:max_songs]
    worst, low = 0.0, []
    fracs = {s: [] for s in STEMS}
    for e in entries:
        r = check_song(root, e)
        worst = max(worst, r["max_abs_err"])
        for s, f in r["active"].items():
            fracs[s].append(f)
            if f <= 0.5:
                low.append((e["id"], s, round(f, 2)))
    ok_split, shared = splits_disjoint(entries)
    print(f"{len(entries)} songs; max |mixture - sum(stems)| = {worst:.2e}")
    for s in STEMS:
        if fracs[s]:
            f = np.array(fracs[s])
            print(
                f"  {s:7s} featured in {f.size} songs; active 1-s windows (> {ACTIVE_DB:.0f} dBFS): "
                f"median {np.median(f):.2f}, min {f.min():.2f}, songs with <= 50 %: {(f <= 0.5).sum()}"
            )
    print(f"splits disjoint by source: {ok_split}" + ("" if ok_split else f" shared: {list(shared)[:5]}"))
    if low:
        print("  featured stems active in at most half of the song:", low[:10])
    return worst <= 1e-6 and ok_split and not low
