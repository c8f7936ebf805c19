"""What muting a stem takes out of the mix, measured exactly.

In the Wiener mode the engine's bus is, bin by bin, ``G · X``: ``X`` the mixture's STFT frame and
``G = Σ_j g_j λ_j`` a real gain, ``λ_j = V_j^p / Σ_k V_k^p`` the weights of the model's stem
magnitudes ``V`` and ``g_j`` the bus's stem gains (0 for a muted stem). Since ``X = Σ_j S_j``,
stem ``j``'s part of the output is ``ISTFT(G · S_j)`` and the parts add up to the output exactly
(``tests/test_shipped_model.py`` checks that against the engine's own karaoke output). A stem's
change is the energy of its part against its own energy.

The checks the issue asks of the karaoke preset, on the demo song: the muted vocals drop by at
least the separator's vocals SIR (BSS Eval v4, median over 1-s windows), and every other stem
changes by less than 1 dB. Run with the true stems' magnitudes in place of ``V`` (the ideal
ratio mask, "oracle"), the same measure gives the ceiling of any magnitude model reconstructed
this way: a model can only approach it.

    python -m factory.karaoke --demo
    python -m factory.karaoke --data data/corpus --split valid --songs 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from livedemix import dsp
from livedemix.phase import card_mask_power

from .evaluate import DEFAULT_OFFSET, DEFAULT_SECONDS, BssEvalV4, CardRunner, active_stems, read_excerpt
from .stems_data import find_songs

DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo"
BAND_TOLERANCE_DB = 1.0
ORACLE_POWERS = (1.0, 2.0, 4.0)


def mask_weights(V: np.ndarray, power: float) -> np.ndarray:
    """λ_j = V_j^p / Σ_k V_k^p for V (T, J, C, F), in float64; bins where every V is 0 get
    equal shares, as the core does."""
    w = np.asarray(V, np.float64) ** power
    total = w.sum(axis=1, keepdims=True)
    J = w.shape[1]
    return np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / J)


def stem_spectra(stems: np.ndarray, cfg) -> np.ndarray:
    """STFT of each stem (J, C, n) → (J, T, C, F), as the engine analyses its input."""
    return np.stack([dsp.stft(np.ascontiguousarray(s, np.float32), cfg) for s in stems])


def stem_parts(gain: np.ndarray, spectra: np.ndarray, cfg, n: int) -> np.ndarray:
    """Each true stem's part of the bus ``ISTFT(gain · S_j)``: (J, C, n).

    ``gain``: real (T, C, F); ``spectra``: the stems' STFTs (J, T, C, F) from :func:`stem_spectra`."""
    T = spectra.shape[1]
    return np.stack([dsp.istft((gain[:T] * S).astype(np.complex64), cfg, n) for S in spectra])


def change_db(parts: np.ndarray, stems: np.ndarray) -> np.ndarray:
    """Each stem's change (dB) from the mix to the bus: energy of its part over its own."""
    num = (parts.astype(np.float64) ** 2).sum(axis=(1, 2))
    den = (stems.astype(np.float64) ** 2).sum(axis=(1, 2))
    return 10 * np.log10(np.maximum(num, 1e-30) / np.maximum(den, 1e-30))


def mute_check(
    stems: np.ndarray,
    X: np.ndarray,
    weights: np.ndarray,
    cfg,
    muted: int = 0,
    bss: BssEvalV4 | None = None,
    spectra: np.ndarray | None = None,
) -> dict:
    """The karaoke checks for one excerpt: the bus with stem ``muted`` muted (others at unity).

    ``stems`` (J, C, n), ``X`` their mixture's STFT (T, C, F), ``weights`` λ (T, J, C, F).
    Returns {"change_db": (J,), "drop_db": the muted stem's drop, "sir_db": its estimate's SIR
    (BSS Eval v4; NaN without ``bss``), "band_db": the largest |change| of the others}.
    ``spectra``: the stems' STFTs, when the caller has them already.
    """
    n = stems.shape[-1]
    if spectra is None:
        spectra = stem_spectra(stems, cfg)
    gain = 1.0 - weights[:, muted]
    change = change_db(stem_parts(gain, spectra, cfg, n), stems)
    sir = float("nan")
    if bss is not None:
        est = np.stack([dsp.istft((weights[:, j] * X).astype(np.complex64), cfg, n) for j in range(len(stems))])
        sir = float(np.nanmedian(bss(est)["SIR"][muted]))
    others = [j for j in range(len(stems)) if j != muted]
    return {
        "change_db": change,
        "drop_db": float(-change[muted]),
        "sir_db": sir,
        "band_db": float(np.max(np.abs(change[others]))),
    }


def passes(result: dict) -> tuple[bool, bool]:
    """(the muted stem drops by at least its SIR, every other stem within the tolerance)."""
    return result["drop_db"] >= result["sir_db"], result["band_db"] < BAND_TOLERANCE_DB


def model_magnitudes(runner: CardRunner, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The STFT (T, C, F) of ``mix`` (C, n) and the model's magnitudes V (T, J, C, F) on it,
    aligned as the engine pairs them (a model with lookahead L answers frame t in row t + L; an
    offline graph hears L frames of the silence after ``mix``, as the render's flush gives it)."""
    L = runner.lookahead
    x = np.ascontiguousarray(mix, np.float32)
    if L:
        x = np.concatenate([x, np.zeros((x.shape[0], L * runner.cfg.hop), np.float32)], axis=1)
    Xp = dsp.stft(x, runner.cfg)
    V = runner.magnitudes(Xp)
    T = len(Xp) - L
    s = L if runner.streaming else 0  # an offline graph's rows are aligned with its input
    return Xp[:T], V[s : s + T]


def model_weights(runner: CardRunner, mix: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
    """The STFT of ``mix`` and the weights λ of the model's magnitudes at ``power``."""
    X, V = model_magnitudes(runner, mix)
    return X, mask_weights(V, power)


def oracle_weights(spectra: np.ndarray, power: float) -> np.ndarray:
    """The ideal ratio mask's weights from the true stems' STFTs (J, T, C, F): (T, J, C, F)."""
    return mask_weights(np.moveaxis(np.abs(spectra), 0, 1), power)


def split_songs(data: Path, split: str, songs: int) -> list[Path]:
    dirs = find_songs(data, split)[:songs]
    if not dirs:
        raise ValueError(
            f"the '{split}' split under {data} has no songs: build it first "
            f"(python -m factory.corpus build --out {data} --hours 6 --splits {split})"
        )
    return dirs


def run(
    card: Path | None,
    dirs: list[Path],
    seconds: float = DEFAULT_SECONDS,
    offset: float = DEFAULT_OFFSET,
    oracle_powers=ORACLE_POWERS,
    muted: str = "vocals",
    model_powers=None,
    progress=None,
) -> dict:
    """The checks per song (folders of <stem>.flac) for the model at each of ``model_powers``
    (default: its card's Wiener power) and the oracle at each of ``oracle_powers``:
    {"rows": {method: [result per song]}, "songs": [names], ...}."""
    runner = CardRunner("model", card, ["wiener"])
    names = list(runner.sep.stems)
    if muted not in names:
        raise ValueError(f"the model has no stem {muted!r}; it separates {', '.join(names)}")
    m = names.index(muted)
    model_powers = tuple(model_powers or (card_mask_power(runner.card, "wiener"),))
    methods = [f"model (p = {p:g})" for p in model_powers] + [f"oracle (p = {p:g})" for p in oracle_powers]
    rows = {k: [] for k in methods}
    used = []
    t0 = time.perf_counter()
    for i, d in enumerate(dirs):
        if progress:
            progress(i + 1, len(dirs))
        stems, sr, _, _ = read_excerpt(d, seconds, offset, names)
        if len(active_stems(stems)) < len(names):
            continue  # the check needs every stem present
        bss = BssEvalV4(stems, sr, sr)
        X, V = model_magnitudes(runner, stems.sum(axis=0))
        spectra = stem_spectra(stems, runner.cfg)
        for k, p in zip(methods, model_powers):
            rows[k].append(mute_check(stems, X, mask_weights(V, p), runner.cfg, m, bss, spectra))
        for k, p in zip(methods[len(model_powers) :], oracle_powers):
            rows[k].append(mute_check(stems, X, oracle_weights(spectra, p)[: len(X)], runner.cfg, m, bss, spectra))
        used.append(d.name)
    return {
        "songs": used,
        "seconds": seconds,
        "offset_seconds": offset,
        "muted": muted,
        "stems": names,
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
    }


def format_table(result: dict) -> str:
    names, m = result["stems"], result["stems"].index(result["muted"])
    others = [s for s in names if s != result["muted"]]
    lines = [
        f"muting {result['muted']} in {result.get('where', 'the given songs')}, {len(result['songs'])} song(s): "
        "medians, and how many songs pass each check",
        f"| masks | {result['muted']} drop | its SIR | drop ≥ SIR | "
        + " | ".join(f"{s} change" for s in others)
        + f" | band within {BAND_TOLERANCE_DB:g} dB | both |",
        "| --- |" + " --- |" * (3 + len(others) + 2),
    ]
    for method, rs in result["rows"].items():
        if not rs:
            continue
        ok = np.array([passes(r) for r in rs])
        change = np.array([r["change_db"] for r in rs])
        cells = [
            f"{np.median([r['drop_db'] for r in rs]):.2f} dB",
            f"{np.nanmedian([r['sir_db'] for r in rs]):.2f} dB",
            f"{ok[:, 0].sum()}/{len(rs)}",
        ]
        cells += [f"{np.median(change[:, j]):+.2f} dB" for j in range(len(names)) if j != m]
        cells += [f"{ok[:, 1].sum()}/{len(rs)}", f"{ok.all(axis=1).sum()}/{len(rs)}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m factory.karaoke", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="stems folder (<root>/<split>/<song>/<stem>.flac)")
    ap.add_argument("--demo", action="store_true", help="the bundled demo song, whole, instead of --data")
    ap.add_argument("--model", type=Path, default=None, help="model card (default: the shipped model)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--songs", type=int, default=30, help="the first N songs of the split (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    ap.add_argument("--muted", default="vocals", help="the stem to mute (default %(default)s)")
    ap.add_argument("--powers", default=None, help="mask powers to run the model at, e.g. 1,2,4 (default: the card's)")
    ap.add_argument("--oracle-powers", default=",".join(f"{p:g}" for p in ORACLE_POWERS))
    args = ap.parse_args(argv)
    try:
        powers = tuple(float(p) for p in args.powers.split(",")) if args.powers else None
        oracle_powers = tuple(float(p) for p in args.oracle_powers.split(",") if p)
        if not all(0.25 <= p <= 8 for p in (powers or ()) + oracle_powers):
            raise ValueError
    except ValueError:
        print(
            "error: --powers and --oracle-powers take numbers in [0.25, 8] separated by commas, e.g. 1,2,4",
            file=sys.stderr,
        )
        return 2
    if args.demo == (args.data is not None):
        print("error: give either --data DIR (corpus songs) or --demo (the bundled demo song)", file=sys.stderr)
        return 2
    try:
        if args.demo:
            dirs, seconds, offset, where = [DEMO], 3600.0, 0.0, "the bundled demo song (whole)"
        else:
            dirs, seconds, offset = split_songs(args.data, args.split, args.songs), args.seconds, DEFAULT_OFFSET
            where = f"the '{args.split}' split of {args.data} ({seconds:g}-s excerpts)"
        result = run(
            args.model,
            dirs,
            seconds,
            offset,
            oracle_powers,
            args.muted,
            powers,
            progress=lambda i, n: print(f"\r{i}/{n} songs", end="\n" if i == n else "", file=sys.stderr, flush=True),
        )
        result["where"] = where
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
