"""`livedemix eval`: score the separator against true stems (BSS Eval v4 and plain SDR).

Songs in the MUSDB18-HQ layout: ``<song>/mixture.wav`` (or .flac) next to one file per stem.
``STEMS_DIR`` is one such song folder or a folder of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import STEMS
from ..audio.files import AudioFileError, read_audio
from ..metrics import bss_eval, sdr, si_sdr
from ..offline import separate

EXTS = (".wav", ".flac")


def _find(folder: Path, name: str) -> Path | None:
    return next((folder / f"{name}{e}" for e in EXTS if (folder / f"{name}{e}").exists()), None)


def song_folders(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise AudioFileError(f"{root} is not a folder: pass a song folder (mixture.wav + stems) or a folder of them")
    if _find(root, "mixture"):
        return [root]
    songs = sorted(p for p in root.iterdir() if p.is_dir() and _find(p, "mixture"))
    if not songs:
        raise AudioFileError(
            f"no song folders under {root}: each needs mixture.wav (or .flac) and the stems next to it"
        )
    return songs


def _finite(v) -> float | None:
    """A score, or None where BSS Eval has none (a source silent in every window: NaN/inf)."""
    v = float(v)
    return v if np.isfinite(v) else None


def _nanmean(values) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def run(stems_dir, *, model=None, phase=None, seconds=None) -> dict:
    rows = []
    for folder in song_folders(Path(stems_dir)):
        mix, sr = read_audio(_find(folder, "mixture"))
        n = mix.shape[1] if seconds is None else min(mix.shape[1], int(seconds * sr))
        mix = mix[:, :n]
        est = separate(mix, sr, model=model, phase=phase)
        song_rows, refs, ests = [], [], []
        for stem, y in est.items():
            path = _find(folder, stem)
            if path is None:
                continue
            ref = read_audio(path)[0][:, :n]
            if ref.shape != y.shape:
                raise AudioFileError(
                    f"{path} has shape {ref.shape} but the mixture {mix.shape}: the stems must match the mixture"
                )
            row = {"song": folder.name, "stem": stem, "SDR": sdr(ref, y), "SI-SDR": si_sdr(ref, y)}
            song_rows.append(row)
            if np.sum(ref.astype(np.float64) ** 2) > 1e-8:
                refs.append(ref)
                ests.append(y)
                row["_bss"] = len(refs) - 1
        if len(refs) >= 2:  # BSS Eval's SIR needs the other sources: evaluate the song's stems together
            b = bss_eval(np.stack(refs), np.stack(ests), sr)
            for row in song_rows:
                if "_bss" in row:
                    j = row.pop("_bss")
                    row.update({("BSS-SDR" if k == "SDR" else k): _finite(v[j]) for k, v in b.items()})
        for row in song_rows:
            row.pop("_bss", None)
        rows.extend(song_rows)
    stems = sorted(
        {r["stem"] for r in rows},
        key=lambda s: STEMS.index(s) if s in STEMS else len(STEMS),
    )
    keys = ("SDR", "SI-SDR", "BSS-SDR", "SIR", "SAR")
    summary = {s: {k: _nanmean([r.get(k) for r in rows if r["stem"] == s]) for k in keys} for s in stems}
    return {"songs": len({r["song"] for r in rows}), "rows": rows, "mean": summary}


def format_table(t: dict) -> str:
    lines = [
        f"{t['songs']} song(s); SDR = 10·log10(Σs²/Σ(s−ŝ)²) over the song, SIR/SAR: BSS Eval v4 medians",
        "",
        f"  {'stem':<8} {'SDR':>7} {'SI-SDR':>7} {'BSS-SDR':>8} {'SIR':>7} {'SAR':>7}   (dB)",
    ]

    def cell(v, width):
        return f"{v:>{width}.2f}" if v is not None else f"{'n/a':>{width}}"

    for s, m in t["mean"].items():
        lines.append(
            f"  {s:<8} {cell(m['SDR'], 7)} {cell(m['SI-SDR'], 7)} {cell(m['BSS-SDR'], 8)} "
            f"{cell(m['SIR'], 7)} {cell(m['SAR'], 7)}"
        )
    return "\n".join(lines)
