"""Rendering songs to files, and the resumable corpus build.

Layout of a build:
    DIR/corpus.json                 build settings (seed, version, sample rate, ...)
    DIR/splits.json                 music21 file -> split (no source in two splits)
    DIR/manifest.jsonl              one JSON line per finished song (sorted when complete)
    DIR/<split>/<song>/{mixture,vocals,drums,bass,other}.flac, song.json, midi/<stem>.mid
A song directory appears only when complete (rendered under DIR/.tmp, then renamed);
the manifest line is appended after the rename, so an interrupted build resumes where
it stopped and never reads a half-written song.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
from livedemix import STEMS

from . import arrange as A
from . import hydrogen as H
from . import loudness as L
from . import material as M
from . import production as P
from . import render as R
from . import timbres as T
from . import voice as V

VERSION = 1
SR = A.SR
FORMATS = {"flac": ("FLAC", ".flac"), "wav": ("WAV", ".wav")}


def make_planner(seed: int, cache_dir, song_seconds: float | None = None) -> A.Planner:
    files = M.list_files()
    splits = M.assign_splits(files, seed)
    pools = {k: [] for k in ("train", "valid", "test")}
    for src in M.list_sources(files):
        pools[splits[src.path]].append(src)
    return A.Planner(seed, pools, M.MaterialCache(cache_dir), song_seconds)


def render_stems(song: A.Song, soundfont: str, workdir: Path, timbres: T.Timbres | None = None) -> tuple[dict, dict]:
    """Raw (unproduced) stems as float64 (2, n), and what the vocal synths did (and, with a
    timbre pool, which library played each stem)."""
    n = song.n_samples
    stems = {s: np.zeros((2, n)) for s in STEMS}
    info: dict = {}
    (workdir / "midi").mkdir(parents=True, exist_ok=True)
    for k, stem in enumerate(STEMS):
        parts = [p for p in song.parts if p.stem == stem]
        fluid = [p for p in parts if p.synth == "fluid"]
        if fluid:
            mid = workdir / "midi" / f"{stem}.mid"
            sf2 = soundfont
            if timbres is not None and timbres.pool != "single":
                choice = timbres.pick(song.seed, song.index, k, stem == "drums")
                sf2 = choice.soundfont
                if choice.kit:  # the kit soundfont has one bank-0 preset: play the drums there
                    fluid = [T.as_kit_part(p) if p.channel == 9 else p for p in fluid]
                info.setdefault("soundfonts", {})[stem] = Path(sf2).name
                if choice.hydrogen:
                    # A Hydrogen kit plays the percussion notes it has; the GM bank plays the rest
                    # (shakers, congas, …). The stem's MIDI file stays the score of all of it.
                    has = H.playable(choice.hydrogen)
                    kit = [replace(p, notes=[x for x in p.notes if x[2] in has]) for p in fluid if p.channel == 9]
                    seed = np.random.SeedSequence([song.seed, song.index, 0x4B17])
                    stems[stem] += H.render(kit, n, choice.hydrogen, seed)
                    info["soundfonts"][stem] = f"hydrogen:{Path(choice.hydrogen).name}"
                    R.write_midi(fluid, mid)
                    rest = [
                        replace(p, notes=[x for x in p.notes if x[2] not in has]) if p.channel == 9 else p
                        for p in fluid
                    ]
                    fluid = [p for p in rest if p.notes]
                    mid = workdir / "midi" / f".{stem}.rest.mid"
            if fluid:
                R.write_midi(fluid, mid)
                stems[stem] += R.render_midi(mid, n, sf2, SR)
                if mid.name.startswith("."):
                    mid.unlink()
        for p in parts:
            if p.synth == "formant":
                female = p.info["singer"] in ("alto", "mezzo", "soprano")
                y, lyrics = V.Singer(p.info["voice_seed"], female, p.info.get("backing", False)).sing(p.notes, n)
                y = y / (np.abs(y).max() + 1e-9) * (0.35 if p.info.get("backing") else 0.7)
                stems[stem] += np.stack([y, y])
                info.setdefault("lyrics", " ".join(lyrics[:16]))
            elif p.synth == "speech":
                y, sinfo = V.speak_lines(p.notes, n, p.info["voice_seed"], p.info["singer"])
                stems[stem] += np.stack([y, y]) * 0.7
                info.update(sinfo)
        if any(p.synth != "fluid" for p in parts):
            # Sung/spoken parts carry their notes too (as a MIDI score of what was sung).
            voc = [
                A.Part(p.stem, p.role, 52, 0 if p.role != "backing" else 1, p.notes)
                for p in parts
                if p.synth != "fluid"
            ]
            R.write_midi(voc + fluid, workdir / "midi" / f"{stem}.mid")
    return stems, info


def mix_levels(stems: dict, rng: np.random.Generator) -> tuple[dict, dict]:
    """Per-stem loudness balance, then the master bus (production.master), whose gain is
    shared by all stems, so the sum stays exact. Returns the stems and the choices."""
    offsets = {
        "vocals": rng.uniform(-2, 5),
        "drums": rng.uniform(-4, 3),
        "bass": rng.uniform(-5, 2),
        "other": rng.uniform(-5, 2),
    }
    if rng.random() < 0.15:  # one stem sits far back in the mix
        offsets[str(rng.choice(STEMS))] -= rng.uniform(4, 10)
    out, choice = {}, {}
    for s in STEMS:
        x = stems[s]
        lufs = L.integrated_lufs(x) if np.any(x) else float("-inf")
        if np.isfinite(lufs):
            g = 10 ** ((-26.0 + offsets[s] - lufs) / 20)
            out[s] = x * g
            choice[s] = round(float(offsets[s]), 2)
    for s in STEMS:
        out.setdefault(s, np.zeros_like(stems[s]))
    live = {s: out[s] for s in STEMS if s in choice}
    mastered, minfo = P.master(live, rng, L.integrated_lufs)
    out.update(mastered)
    return out, {"relative_db": choice, "master": minfo}


def quantize(stems: dict) -> dict:
    """16-bit stems, and the mixture as the exact integer sum of the *stored* stems."""
    q = {s: np.round(np.clip(stems[s], -1, 1 - 2**-15) * 32768).astype(np.int32) for s in STEMS}
    mix = sum(q.values())
    if np.abs(mix).max() > 32767:
        raise AssertionError("mixture would clip; headroom logic is wrong")
    q["mixture"] = mix
    return {k: v.astype(np.int16) for k, v in q.items()}


def render_song(
    song: A.Song, soundfont: str, out_dir: Path, fmt: str = "flac", timbres: T.Timbres | None = None
) -> dict:
    """Render, produce, level, quantize and write one song into out_dir (created)."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    raw, vinfo = render_stems(song, soundfont, out_dir, timbres)
    soundfonts = vinfo.pop("soundfonts", None)
    rng = np.random.default_rng(np.random.SeedSequence([song.seed, song.index, 0x9D]))
    produced, prod = P.produce(raw, rng, song.tempo)
    leveled, levels = mix_levels(produced, rng)
    fade = int(0.3 * SR)  # identical fade on every stem: sum unchanged
    w = np.ones(song.n_samples)
    w[-fade:] = np.linspace(1, 0, fade)
    q = quantize({s: leveled[s] * w for s in STEMS})
    subtype_fmt, ext = FORMATS[fmt]
    stem_stats = {}
    for name in ("mixture",) + STEMS:
        x = q[name].T
        sf.write(out_dir / f"{name}{ext}", x, SR, subtype="PCM_16", format=subtype_fmt)
        xf = q[name].astype(np.float64) / 32768
        silent = not np.any(q[name])
        stem_stats[name] = {
            "lufs": None if silent else round(L.integrated_lufs(xf), 2),
            "peak_dbfs": None if silent else round(L.peak_db(xf), 2),
            "active_fraction": round(L.active_fraction(xf), 3),
            "silent": silent,
        }
    entry = song_entry(song, vinfo, prod, levels, stem_stats, ext)
    if soundfonts:
        entry["soundfonts"] = soundfonts
    (out_dir / "song.json").write_text(json.dumps(entry, indent=1, sort_keys=True))
    return entry | {"_render_s": time.perf_counter() - t0}


def song_entry(song, vinfo, prod, levels, stem_stats, ext) -> dict:
    parts = [
        {
            "stem": p.stem,
            "role": p.role,
            "name": p.name,
            "synth": p.synth,
            "program": int(p.program) if p.synth == "fluid" else None,
            "is_drum_kit": p.channel == 9,
            "notes": len(p.notes),
            **({"info": {k: v for k, v in p.info.items() if k != "voice_seed"}} if p.info else {}),
        }
        for p in song.parts
    ]
    voc = [p for p in song.parts if p.stem == "vocals"]
    vocal = {"source": "none"}
    if voc:
        v = voc[0]
        vocal = {
            "source": {"fluid": "gm_patch", "formant": "formant_singer", "speech": "espeak_speech"}[v.synth],
            "singer": v.info.get("singer"),
            "parts": len(voc),
        }
        if v.synth == "fluid":
            vocal["patch"] = v.name
        vocal.update(vinfo)
    return {
        "id": song.id,
        "index": song.index,
        "split": song.split,
        "seed": song.seed,
        "source": song.source,
        "collection": song.source.split("/")[0],
        "duration_s": round(song.duration, 3),
        "sample_rate": SR,
        "tempo_qpm": song.tempo,
        "key": song.meta["key"],
        "tonic": song.tonic,
        "mode": song.mode,
        "meter": f"{song.meter[0]}/{song.meter[1]}",
        "drum_style": song.style,
        "bars": song.n_bars,
        "structure": song.meta,
        "parts": parts,
        "vocal": vocal,
        "production": prod,
        "levels": levels,
        "stems": stem_stats,
        "files": {n: f"{song.split}/{song.id}/{n}{ext}" for n in ("mixture",) + STEMS},
        "midi": {s: f"{song.split}/{song.id}/midi/{s}.mid" for s in STEMS if any(p.stem == s for p in song.parts)},
    }


# ----------------------------------------------------------------------------- corpus build

_WORKER = {}


def _init_worker(seed, cache_dir, soundfont, out, fmt, song_seconds=None, timbres="single"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER.update(
        planner=make_planner(seed, cache_dir, song_seconds),
        soundfont=soundfont,
        timbres=T.Timbres(timbres, soundfont),
        out=Path(out),
        fmt=fmt,
    )


def _build_one(index: int) -> dict:
    try:
        return _build_one_unsafe(index)
    except Exception as e:  # one bad song must not stop a long build
        import traceback

        return {"index": index, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def _build_one_unsafe(index: int) -> dict:
    w = _WORKER
    song = w["planner"].plan(index)
    final = w["out"] / song.split / song.id
    if (final / "song.json").exists():  # renamed but not yet in the manifest
        return json.loads((final / "song.json").read_text())
    tmp = w["out"] / ".tmp" / f"{song.id}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    entry = render_song(song, w["soundfont"], tmp, w["fmt"], w["timbres"])
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return entry


def plan_indices(seed: int, hours: float, song_seconds: float | None = None) -> list[int]:
    total, idx = 0.0, []
    while total < hours * 3600:
        total += (song_seconds or A.planned_duration(seed, len(idx))) + A.TAIL_S
        idx.append(len(idx))
    return idx


def read_manifest(path: Path) -> dict[int, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a torn last line from a kill
            done[e["index"]] = e
    return done


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build(
    out,
    hours: float,
    seed: int,
    workers: int = 1,
    soundfont: str | None = None,
    fmt: str = "flac",
    force: bool = False,
    progress: bool = True,
    cache_dir=None,
    song_seconds: float | None = None,
    splits=None,
    timbres: str = "single",
) -> dict:
    """Render the songs of the plan for ``hours`` that are not done yet; with ``splits`` (e.g.
    ``("test",)``) only those splits' songs, which are the same songs a full build makes, so a
    later build without ``splits`` completes it."""
    if splits is not None:
        known = {name for name, _ in A.SPLIT_FRACTIONS} | {"train"}
        bad = sorted(set(splits) - known)
        if bad:
            raise ValueError(f"unknown split {', '.join(bad)}; use some of {', '.join(sorted(known))}.")
    sf2 = R.check_tools(soundfont)  # before anything is written
    pool = T.Timbres(timbres, sf2)
    out = Path(out)
    config = {
        "generator": "livedemix.engine.corpus",
        "version": VERSION,
        "seed": seed,
        "sample_rate": SR,
        "stems": list(STEMS),
        "format": fmt,
        "bit_depth": 16,
        "soundfont": Path(sf2).name,
    } | pool.describe()
    if song_seconds:
        config["song_seconds"] = song_seconds
    cfg_path = out / "corpus.json"
    if cfg_path.exists() and not force:
        old = json.loads(cfg_path.read_text())
        old_cmp = {k: v for k, v in old.items() if k != "hours"}
        if old_cmp != config:
            raise ValueError(
                f"{out} holds a corpus built with other settings ({old_cmp}); "
                "use another --out, or pass --force to overwrite it."
            )
    if force and out.exists():
        for sub in ("train", "valid", "test", ".tmp", "manifest.jsonl"):
            p = out / sub
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    hours = max(hours, json.loads(cfg_path.read_text()).get("hours", 0) if cfg_path.exists() and not force else 0)
    _write_atomic(cfg_path, json.dumps(config | {"hours": hours}, indent=1, sort_keys=True) + "\n")
    files = M.list_files()
    _write_atomic(out / "splits.json", json.dumps(M.assign_splits(files, seed), indent=0, sort_keys=True) + "\n")
    cache_dir = Path(cache_dir) if cache_dir else out / ".cache" / "material"
    man_path = out / "manifest.jsonl"
    done = read_manifest(man_path)
    todo = [
        i
        for i in plan_indices(seed, hours, song_seconds)
        if i not in done and (splits is None or A.split_of(seed, i) in splits)
    ]
    t0 = time.perf_counter()
    audio_s = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(todo) + len(done), initial=len(done), unit="song", dynamic_ncols=True, desc=f"corpus {out.name}"
        )
    with open(man_path, "a") as man:

        def record(e):
            nonlocal audio_s
            if "error" in e:  # logged, retried on the next resume
                with open(out / "errors.jsonl", "a") as err:
                    err.write(json.dumps(e) + "\n")
                if bar is not None:
                    bar.update(1)
                return
            e.pop("_render_s", None)
            man.write(json.dumps(e, sort_keys=True) + "\n")
            man.flush()
            os.fsync(man.fileno())
            done[e["index"]] = e
            audio_s += e["duration_s"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    audio_h=f"{sum(d['duration_s'] for d in done.values()) / 3600:.2f}",
                    speed=f"{audio_s / max(1e-9, time.perf_counter() - t0):.1f}x",
                )

        if workers <= 1:
            _init_worker(seed, cache_dir, sf2, out, fmt, song_seconds, timbres)
            for i in todo:
                record(_build_one(i))
        else:
            from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

            with ProcessPoolExecutor(
                workers, initializer=_init_worker, initargs=(seed, cache_dir, sf2, str(out), fmt, song_seconds, timbres)
            ) as ex:
                pending, it = set(), iter(todo)
                for i in it:  # keep a short queue: resumable, low memory
                    pending.add(ex.submit(_build_one, i))
                    if len(pending) >= 2 * workers:
                        fin, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in fin:
                            record(f.result())
                for f in pending:
                    record(f.result())
    if bar is not None:
        bar.close()
    # Complete: rewrite the manifest in song order so that the build is byte-identical.
    lines = [json.dumps(done[i], sort_keys=True) for i in sorted(done)]
    _write_atomic(man_path, "\n".join(lines) + "\n")
    shutil.rmtree(out / ".tmp", ignore_errors=True)
    wall = time.perf_counter() - t0
    return {
        "songs": len(done),
        "hours": sum(e["duration_s"] for e in done.values()) / 3600,
        "rendered_s": audio_s,
        "wall_s": wall,
    }
