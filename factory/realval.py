"""A real 2-stem validation set with exact targets, held out by song: the teacher's vocals from
real sung songs (only where it is confident) laid over real instrumentals, so the mixture is
the exact sum of its two targets. Only ``valid``-split songs (factory.realmusic) go in.

    python -m factory.realval build --out DIR        # deterministic; needs the teacher's cache
    python -m factory.realval eval --data DIR        # the shipped model and the teacher, one table

What "confident" means (per teacher STFT frame, 4096/1024 at 44.1 kHz, bins below 11 kHz,
computed from the cached stems: V, A their power spectra, m = V / (V + A) the teacher's vocal
share per bin): a frame's *purity* is the fraction of its vocal energy that lies in bins where
m ≥ ``SURE_MASK`` (0.7). Bleed of the band into the teacher's vocals sits in bins the teacher
splits, so it lowers purity. A frame is confident when its purity is ≥ ``PURITY`` or its vocals
are absent (more than 30 dB below the song's loud vocal frames); a ``CLIP_S`` window is kept when
≥ ``MIN_CONFIDENT`` of its frames are confident and vocals are present in ≥ ``MIN_PRESENT`` of
them; the up to ``CLIPS_PER_SONG`` best such windows per song, not overlapping.

The instrumental of each clip is drawn deterministically (seeded by the clip's name) from the
valid instrumentals: the songs' own instrumental files, Debian game music, Frets on Fire bands
(backing + guitar + rhythm). An excerpt is used only where the teacher hears no singing in it
(its vocal share below ``MAX_INSTR_SHARE`` on average) and it is not silent. It replaces the
song's own accompaniment at the same level (the RMS of the teacher's accompaniment in that
window), so the vocal-to-accompaniment ratio is the song's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from factory import realmusic as rm
from factory import teacher as tch

SR = 44100
CLIP_S = 10.0
HOP_CLIP_S = 2.5
SURE_MASK = 0.7
PURITY = 0.8
MIN_CONFIDENT = 0.85
MIN_PRESENT = 0.6
CLIPS_PER_SONG = 4
MAX_INSTR_SHARE = 0.08
INSTR_TRIES = 64
VERSION = 1


class RealValError(RuntimeError):
    """The validation set cannot be built or read; the message says what to do."""


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"))


def vocal_confidence(vocals: np.ndarray, accompaniment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per teacher frame: (confident, present) booleans from the teacher's two stems (module
    docstring)."""
    import torch

    w = torch.hann_window(tch.N_FFT)

    def power(x):
        X = torch.stft(torch.from_numpy(np.ascontiguousarray(x)), tch.N_FFT, tch.HOP, window=w, return_complex=True)
        return (X[:, : tch.BINS].abs() ** 2).sum(0).T.numpy().astype(np.float64)  # (T, F)

    V, A = power(vocals), power(accompaniment)
    m = V / (V + A + 1e-20)
    ev = V.sum(1)
    purity = (V * (m >= SURE_MASK)).sum(1) / (ev + 1e-20)
    present = ev > 1e-3 * (np.percentile(ev, 95) if len(ev) else 0.0)
    return (purity >= PURITY) | ~present, present


def confident_windows(
    confident: np.ndarray, present: np.ndarray, n_frames_clip: int, hop_frames: int, k: int = CLIPS_PER_SONG
) -> list[tuple[int, float]]:
    """The up to ``k`` best non-overlapping windows (start frame, confident fraction) where the
    teacher is confident and vocals are present (module docstring)."""
    cands = []
    for s in range(0, len(confident) - n_frames_clip + 1, hop_frames):
        c = float(confident[s : s + n_frames_clip].mean())
        p = float(present[s : s + n_frames_clip].mean())
        if c >= MIN_CONFIDENT and p >= MIN_PRESENT:
            cands.append((c * p, s, c))
    chosen: list[tuple[int, float]] = []
    for _, s, c in sorted(cands, key=lambda t: (-t[0], t[1])):
        if all(abs(s - s2) >= n_frames_clip for s2, _ in chosen):
            chosen.append((s, c))
        if len(chosen) == k:
            break
    return sorted(chosen)


def _instrumental_pool(songs: list[rm.Song], split: str = "valid") -> list[tuple[rm.Song, list[Path], Path]]:
    """(song, files to sum, the file the teacher checks for singing) for the split's instrumentals."""
    pool = []
    for s in songs:
        if s.split != split:
            continue
        if "instrumental" in s.files:
            for f in s.files["instrumental"]:
                pool.append((s, [f], f))
        elif "backing" in s.files:  # a Frets on Fire band: its parts add up to the song
            parts = [f for r in ("backing", "guitar", "rhythm") for f in s.files.get(r, [])]
            pool.append((s, parts, s.files["backing"][0]))
    return pool


def instrumental_files(songs: list[rm.Song]) -> list[Path]:
    """The files the teacher must have seen before ``build`` (``teacher run`` covers them)."""
    return [check for _, _, check in _instrumental_pool(songs)]


def build(out, sung=rm.DEFAULT_SUNG, debian=rm.DEFAULT_DEBIAN, cache=None, progress=print, split="valid") -> dict:
    """Write ``out/<clip>/{mixture,vocals,accompaniment}.flac`` + ``clip.json`` and
    ``out/manifest.json``; the same inputs give the same set. Runs the teacher (cached) on
    whatever song or instrumental of the split it has not seen yet.

    ``split="train"`` builds the same kind of set from the training songs: not a validation,
    a diagnostic. A model that gains much more over the mixture there than on the valid set has
    learned its training songs rather than singing."""
    import soundfile as sf

    out = Path(out).resolve()
    if rm.ROOT in (out, *out.parents):
        raise RealValError(f"{out} is inside the repository; build the validation set in a folder outside it.")
    cache = cache or tch.TeacherCache()
    songs = rm.scan(sung, debian)
    vocal_songs = [s for s in songs if s.split == split and s.has_vocals]
    pool = _instrumental_pool(songs, split)
    if not vocal_songs or not pool:
        raise RealValError(
            f"need {split} sung songs and {split} instrumentals (found {len(vocal_songs)} and {len(pool)}): "
            "check --sung, and fetch the Debian music with `python -m factory.realmusic fetch-debian DIR`."
        )
    tch.run_files([f for s in vocal_songs for f in s.files["mixture"]] + [c for _, _, c in pool], cache)

    # instrumental candidates: (song, parts, audio, per-frame teacher share) loaded once
    instr = []
    for s, parts, check in pool:
        xs = [rm.decode(p) for p in parts]
        x = sum(_pad_to(v, max(v.shape[1] for v in xs)) for v in xs)
        _, conf, _ = cache.get(check)
        instr.append((s, parts, np.ascontiguousarray(x, np.float32), conf["share"]))

    n_clip = int(round(CLIP_S * SR / tch.HOP))
    hop = int(round(HOP_CLIP_S * SR / tch.HOP))
    n = int(CLIP_S * SR)
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for s in vocal_songs:
        stems, _, _ = cache.get(s.files["mixture"][0])
        confident, present = vocal_confidence(stems["vocals"], stems["accompaniment"])
        for start_f, conf_frac in confident_windows(confident, present, n_clip, hop):
            a = start_f * tch.HOP
            voc = stems["vocals"][:, a : a + n]
            acc_orig = stems["accompaniment"][:, a : a + n]
            if voc.shape[1] < n:
                continue
            name = f"{_slug(s.key)}-{a / SR:06.1f}s"
            rng = _rng(name)
            pick = _pick_instrumental(instr, rng, n, n_clip)
            if pick is None:
                progress(f"{name}: no instrumental excerpt without singing; skipped")
                continue
            isong, parts, ioff, ix = pick
            gain = _rms(acc_orig) / max(_rms(ix), 1e-9)
            acc = (ix * gain).astype(np.float32)
            mix = voc + acc
            peak = float(np.abs(mix).max())
            if peak > 0.98:  # one gain for all three: the sum stays exact
                voc, acc, mix = (v * (0.98 / peak) for v in (voc, acc, mix))
            meta = {
                "clip": name,
                "vocals": {"song": s.key, "file": str(s.files["mixture"][0]), "start_s": a / SR, "licence": s.licence},
                "accompaniment": {
                    "song": isong.key,
                    "files": [str(p) for p in parts],
                    "start_s": ioff / SR,
                    "licence": isong.licence,
                    "gain": gain,
                },
                "confident_fraction": conf_frac,
                "teacher": tch.TEACHER_ID,
            }
            _write_clip(out / name, {"mixture": mix, "vocals": voc, "accompaniment": acc}, meta, sf)
            clips.append(meta)
            progress(f"{name}: vocals of {s.key} over {isong.key} at {ioff / SR:.1f} s")
    man = {
        "version": VERSION,
        "clip_s": CLIP_S,
        "split": split,
        "thresholds": {
            "sure_mask": SURE_MASK,
            "purity": PURITY,
            "min_confident": MIN_CONFIDENT,
            "min_present": MIN_PRESENT,
            "max_instr_share": MAX_INSTR_SHARE,
        },
        "clips": clips,
    }
    _atomic_text(out / "manifest.json", json.dumps(man, indent=1) + "\n")
    return man


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key).strip("_")[:60]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def _pad_to(x: np.ndarray, n: int | None) -> np.ndarray:
    return x if n is None or x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


def _pick_instrumental(instr, rng, n: int, n_frames: int):
    """A random excerpt of a random instrumental where the teacher hears no singing and which
    is not silent: (song, parts, offset in samples, audio), or None."""
    order = rng.permutation(len(instr))
    for t in range(INSTR_TRIES):
        s, parts, x, share = instr[order[t % len(order)]]
        if x.shape[1] <= n:
            continue
        off_f = int(rng.integers(0, max(1, (x.shape[1] - n) // tch.HOP)))
        seg_share = share[off_f : off_f + n_frames]
        ex = x[:, off_f * tch.HOP : off_f * tch.HOP + n]
        if ex.shape[1] < n or len(seg_share) == 0:
            continue
        if float(seg_share.mean()) <= MAX_INSTR_SHARE and 20 * np.log10(_rms(ex) + 1e-12) > -35:
            return s, parts, off_f * tch.HOP, ex
    return None


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_clip(final: Path, arrays: dict, meta: dict, sf) -> None:
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
    try:
        for k, v in arrays.items():
            sf.write(tmp / f"{k}.flac", np.asarray(v, np.float32).T, SR, subtype="PCM_24")
        (tmp / "clip.json").write_text(json.dumps(meta, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# ----------------------------------------------------------------------------- evaluation


def load_clips(data) -> list[tuple[str, dict]]:
    """[(clip name, {'mixture', 'vocals', 'accompaniment'}: (2, n) float32)] of a built set."""
    import soundfile as sf

    data = Path(data)
    if not (data / "manifest.json").exists():
        raise RealValError(
            f"{data} holds no real 2-stem validation set: build it with `python -m factory.realval build --out {data}`."
        )
    man = json.loads((data / "manifest.json").read_text())
    out = []
    for c in man["clips"]:
        d = data / c["clip"]
        out.append(
            (
                c["clip"],
                {
                    k: sf.read(d / f"{k}.flac", dtype="float32", always_2d=True)[0].T
                    for k in ("mixture", "vocals", "accompaniment")
                },
            )
        )
    return out


def model_estimates(mix: np.ndarray, model=None) -> dict[str, np.ndarray]:
    """A 4-stem runtime model through livedemix.separate: vocals, accompaniment (the sum of
    the other stems) and the karaoke preset's mix (vocals muted)."""
    from livedemix.offline import separate

    est = separate(mix, SR, model=model)
    acc = sum(v for k, v in est.items() if k != "vocals")
    kar = separate(mix, SR, model=model, preset="karaoke")["mix"]
    return {"vocals": est["vocals"], "accompaniment": acc, "karaoke": kar}


def teacher_estimates(mix: np.ndarray, teacher) -> dict[str, np.ndarray]:
    stems, _ = teacher.separate(mix)
    return {"vocals": stems["vocals"], "accompaniment": stems["accompaniment"], "karaoke": stems["accompaniment"]}


def evaluate(data, model=None, with_teacher: bool = True, progress=True, items=None) -> dict:
    """Plain SDR per clip: {method: {'vocals': [...], 'accompaniment': [...], 'karaoke': [...]}},
    plus 'mixture' (the mixture itself as the accompaniment and as the vocals). ``model``: a card,
    a list of cards (None = the shipped model); ``items``: (name, stems) instead of ``data``'s
    clips (e.g. :func:`corpus_items`)."""
    from livedemix.metrics import sdr
    from tqdm import tqdm

    clips = items if items is not None else load_clips(data)
    teacher = tch.Teacher() if with_teacher else None
    models = model if isinstance(model, (list, tuple)) else [model]
    methods = {("shipped model" if m is None else Path(m).stem): (lambda x, m=m: model_estimates(x, m)) for m in models}
    if teacher is not None:
        methods["teacher (Spleeter 2-stem)"] = lambda m: teacher_estimates(m, teacher)
    res = {k: {"vocals": [], "accompaniment": [], "karaoke": []} for k in methods}
    res["mixture"] = {"vocals": [], "accompaniment": [], "karaoke": []}
    t_used = {k: 0.0 for k in methods}
    for name, c in tqdm(clips, desc="clips", disable=not progress, file=sys.stderr):
        mix = c["mixture"]
        for k, f in methods.items():
            t0 = time.perf_counter()
            e = f(mix)
            t_used[k] += time.perf_counter() - t0
            res[k]["vocals"].append(sdr(c["vocals"], e["vocals"]))
            res[k]["accompaniment"].append(sdr(c["accompaniment"], e["accompaniment"]))
            res[k]["karaoke"].append(sdr(c["accompaniment"], e["karaoke"]))
        res["mixture"]["vocals"].append(sdr(c["vocals"], mix))
        res["mixture"]["accompaniment"].append(sdr(c["accompaniment"], mix))
        res["mixture"]["karaoke"].append(sdr(c["accompaniment"], mix))
    return {"clips": [n for n, _ in clips], "scores": res, "seconds": t_used}


def karaoke_residual(mix: np.ndarray, vocals: np.ndarray, accompaniment: np.ndarray, runner=None, power=None) -> dict:
    """What the karaoke preset (vocals muted, the rest at unity) leaves of the vocals, measured
    exactly as factory.karaoke does (Wiener mode: the bus is G·X bin by bin, G = 1 − λ_vocals,
    so the vocals' part of it is ISTFT(G·S_vocals)), for the model and for the ideal ratio mask
    of the two true stems at the same mask power: {'model_vocals_db', 'oracle_vocals_db'} (the
    vocals' energy in the karaoke mix against their own, dB), and the accompaniment's change
    {'model_acc_db', 'oracle_acc_db'}, and the oracle's karaoke SDR against the accompaniment."""
    from livedemix.engine import Engine
    from livedemix.metrics import sdr

    from factory import karaoke as K
    from factory.evaluate import CardRunner

    if power is None:
        power = float(Engine(preset="karaoke").describe()["mask_power"])
    runner = runner or CardRunner("model", None, ["wiener"])
    stems = np.stack([vocals, accompaniment]).astype(np.float32)
    v = list(runner.sep.stems).index("vocals")
    X, w = K.model_weights(runner, np.ascontiguousarray(mix, np.float32), power)
    spectra = K.stem_spectra(stems, runner.cfg)
    n = mix.shape[1]
    model = K.change_db(K.stem_parts(1.0 - w[:, v], spectra, runner.cfg, n), stems)
    wo = K.oracle_weights(spectra, power)[: len(X)]
    oparts = K.stem_parts(1.0 - wo[:, 0], spectra, runner.cfg, n)
    oracle = K.change_db(oparts, stems)
    return {
        "model_vocals_db": float(model[0]),
        "oracle_vocals_db": float(oracle[0]),
        "model_acc_db": float(model[1]),
        "oracle_acc_db": float(oracle[1]),
        "oracle_karaoke_sdr": sdr(accompaniment, oparts.sum(axis=0)),
        "power": power,
    }


def table(res: dict) -> str:
    mix_acc = np.array(res["scores"]["mixture"]["accompaniment"])
    lines = [
        "| method | vocals SDR | accompaniment SDR | karaoke mix vs true accompaniment | clips where karaoke beats the mixture |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, v in res["scores"].items():
        kar = np.array(v["karaoke"])
        beats = f"{int(np.sum(kar > mix_acc))} / {len(kar)}" if k != "mixture" else ""
        lines.append(
            f"| {k} | {np.mean(v['vocals']):.2f} | {np.mean(v['accompaniment']):.2f} | {np.mean(kar):.2f} | {beats} |"
        )
    return "\n".join(lines)


def corpus_items(data, split: str = "valid", songs: int = 30, seconds: float = 30.0) -> list[tuple[str, dict]]:
    """The first ``songs`` songs with vocals of a corpus split, first ``seconds`` of each, as
    2-stem items like :func:`load_clips` (accompaniment = drums + bass + other)."""
    import soundfile as sf

    from factory.stems_data import find_songs

    n = int(seconds * SR)
    out = []
    for d in find_songs(Path(data), split):
        rd = lambda name: sf.read(d / f"{name}.flac", dtype="float32", always_2d=True, frames=n)[0].T  # noqa: E731
        voc = rd("vocals")
        if _rms(voc) < 1e-3:
            continue
        acc = rd("drums") + rd("bass") + rd("other")
        out.append((d.name, {"mixture": voc + acc, "vocals": voc, "accompaniment": acc}))
        if len(out) == songs:
            break
    return out


def karaoke_report(items, model=None, progress=True) -> dict:
    """Per item: the karaoke mix's SDR against the true accompaniment (through livedemix.separate
    with the karaoke preset), the mixture's own, the ideal ratio mask's, and the vocal energy left
    by the model and by the ideal ratio mask (:func:`karaoke_residual`)."""
    from livedemix.metrics import sdr
    from livedemix.offline import separate
    from tqdm import tqdm

    from factory.evaluate import CardRunner

    runner = CardRunner("model", model, ["wiener"])
    rows = []
    for name, c in tqdm(items, desc="karaoke", disable=not progress, file=sys.stderr):
        kar = separate(c["mixture"], SR, model=model, preset="karaoke")["mix"]
        r = karaoke_residual(c["mixture"], c["vocals"], c["accompaniment"], runner)
        r.update(name=name, karaoke_sdr=sdr(c["accompaniment"], kar), mixture_sdr=sdr(c["accompaniment"], c["mixture"]))
        rows.append(r)
    return {"rows": rows}


def karaoke_table(rep: dict, where: str) -> str:
    r = rep["rows"]
    col = lambda k: np.array([x[k] for x in r])  # noqa: E731
    beats = int(np.sum(col("karaoke_sdr") > col("mixture_sdr")))
    return "\n".join(
        [
            "| material | items | karaoke mix SDR (vs true accompaniment) | mixture's own | ideal ratio mask's | "
            "karaoke beats the mixture | vocals left by the model | vocals left by the ideal ratio mask |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {where} | {len(r)} | {col('karaoke_sdr').mean():.2f} dB | {col('mixture_sdr').mean():.2f} dB | "
            f"{col('oracle_karaoke_sdr').mean():.2f} dB | {beats} / {len(r)} | {np.median(col('model_vocals_db')):.1f} dB | "
            f"{np.median(col('oracle_vocals_db')):.1f} dB |",
        ]
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m factory.realval", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the set (deterministic; runs the teacher where needed, cached)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--sung", type=Path, default=rm.DEFAULT_SUNG)
    b.add_argument("--debian", type=Path, default=rm.DEFAULT_DEBIAN)
    b.add_argument("--cache", type=Path, default=tch.DEFAULT_CACHE)
    b.add_argument(
        "--from-split",
        choices=("valid", "train"),
        default="valid",
        help="train: the same kind of set from the training songs, to tell learning songs from learning singing",
    )
    e = sub.add_parser("eval", help="score a runtime model (default: the shipped one) and the teacher on it")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument(
        "--model", type=Path, action="append", help="a model card (.json), repeatable; default: the shipped model"
    )
    e.add_argument("--no-teacher", action="store_true")
    e.add_argument("--corpus", action="store_true", help="--data is a synthesized corpus: its --split songs")
    e.add_argument("--split", default="valid")
    e.add_argument("--songs", type=int, default=30)
    e.add_argument("--json", type=Path, default=None, help="also write the per-clip scores here")
    k = sub.add_parser("karaoke", help="the karaoke mix against the true accompaniment, and the vocals it leaves")
    k.add_argument("--data", type=Path, required=True, help="a set built by `build`, or a corpus (with --corpus)")
    k.add_argument("--corpus", action="store_true", help="--data is a synthesized corpus: its --split songs")
    k.add_argument("--split", default="valid")
    k.add_argument("--songs", type=int, default=30)
    k.add_argument("--model", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "karaoke":
            items = corpus_items(args.data, args.split, args.songs) if args.corpus else load_clips(args.data)
            where = f"corpus {args.split} (first 30 s)" if args.corpus else "real 2-stem validation"
            print(karaoke_table(karaoke_report(items, args.model), where))
        elif args.cmd == "build":
            man = build(
                args.out, args.sung, args.debian, tch.TeacherCache(args.cache / "teacher"), split=args.from_split
            )
            songs = sorted({c["vocals"]["song"] for c in man["clips"]})
            instr = sorted({c["accompaniment"]["song"] for c in man["clips"]})
            print(
                f"{len(man['clips'])} clips of {CLIP_S:g} s in {args.out}: vocals of {len(songs)} songs, {len(instr)} instrumentals"
            )
        else:
            items = corpus_items(args.data, args.split, args.songs) if args.corpus else None
            res = evaluate(args.data, args.model or [None], not args.no_teacher, items=items)
            what = f"'{args.split}' songs with vocals (first 30 s)" if args.corpus else "clips"
            print(f"{len(res['clips'])} {what} of {args.data} (plain SDR, dB, mean)\n")
            print(table(res))
            if args.json:
                _atomic_text(args.json, json.dumps(res, indent=1) + "\n")
    except (RealValError, rm.RealMusicError, tch.TeacherError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
