"""Loaders: one in-memory interface for the synthetic corpus, MUSDB18-HQ, MUSDB18
(.stem.mp4) and any folder of per-stem files.

A dataset is a list of `Track`s; `track.load()` returns {"mixture", "vocals", "drums",
"bass", "other"} as float32 arrays shaped (2, samples) at 44.1 kHz. A stem a track does
not have is zeros; a track without a mixture file gets the sum of its stems.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from livedemix import STEMS

SR = 44100
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3")
# File-name stems (lower case, without extension) that a stems folder may use.
ALIASES = {
    "mixture": ("mixture", "mix", "master", "full"),
    "vocals": ("vocals", "vocal", "vox", "voice", "voices", "lead_vocals", "backing_vocals", "singing", "choir"),
    "drums": ("drums", "drum", "kit", "percussion", "perc", "kick", "snare", "overheads", "hats", "cymbals"),
    "bass": ("bass", "bass_guitar", "synth_bass", "bassline", "sub"),
    "other": (
        "other",
        "accompaniment",
        "rest",
        "guitar",
        "guitars",
        "piano",
        "keys",
        "synth",
        "synths",
        "strings",
        "pad",
        "pads",
        "organ",
        "brass",
        "horns",
        "winds",
        "lead",
    ),
}
# NI stems order in MUSDB18 .stem.mp4 streams.
STEM_MP4_ORDER = ("mixture", "drums", "bass", "other", "vocals")


class DatasetError(RuntimeError):
    """A dataset cannot be read; the message says what to do."""


def _to_stereo(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x)
    if x.shape[0] == 1:
        return np.repeat(x, 2, axis=0)
    return x[:2]


def read_audio(path, start_s: float = 0.0, duration_s: float | None = None, sr: int = SR) -> np.ndarray:
    """(2, n) float32 at `sr` from any libsndfile format; resampled with soxr if needed."""
    info = sf.info(str(path))
    start = int(round(start_s * info.samplerate))
    frames = -1 if duration_s is None else int(round(duration_s * info.samplerate))
    x, file_sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    x = _to_stereo(x.T)
    if file_sr != sr:
        import soxr

        x = soxr.resample(x.T, file_sr, sr).T.astype(np.float32)
    return np.ascontiguousarray(x)


@dataclass
class Track:
    name: str
    split: str
    files: dict = field(default_factory=dict)  # role -> list of paths (summed), roles in ALIASES
    meta: dict = field(default_factory=dict)
    decoder: object = None  # for containers (.stem.mp4): f(start, dur) -> dict

    def duration(self) -> float:
        if self.decoder is not None:
            return float(self.meta.get("duration_s", 0.0))
        p = next(iter(self.files.get("mixture") or [f for fs in self.files.values() for f in fs]))
        return sf.info(str(p)).duration

    def load(self, start_s: float = 0.0, duration_s: float | None = None) -> dict:
        if self.decoder is not None:
            out = self.decoder(start_s, duration_s)
        else:
            out = {}
            for role, paths in self.files.items():
                xs = [read_audio(p, start_s, duration_s) for p in paths]
                n = max(x.shape[1] for x in xs)
                out[role] = sum(np.pad(x, ((0, 0), (0, n - x.shape[1]))) for x in xs)
        n = max(x.shape[1] for x in out.values())
        out = {k: np.pad(v, ((0, 0), (0, n - v.shape[1]))) for k, v in out.items()}
        if not self.meta.get("complete", True):
            # Real recordings with partial stems: the parts it has, and their sum.
            out.setdefault("mixture", sum(out.values()))
            return {k: v.astype(np.float32, copy=False) for k, v in out.items()}
        for role in STEMS:
            out.setdefault(role, np.zeros((2, n), np.float32))
        if "mixture" not in out:
            out["mixture"] = sum(out[s] for s in STEMS).astype(np.float32)
        return {k: out[k].astype(np.float32, copy=False) for k in ("mixture",) + STEMS}


class StemDataset(list):
    """A list of Tracks with a name; `split(name)` filters."""

    def __init__(self, tracks, kind: str, root):
        super().__init__(tracks)
        self.kind, self.root = kind, Path(root)

    def split(self, name: str) -> StemDataset:
        return StemDataset([t for t in self if t.split == name], self.kind, self.root)

    def __repr__(self):
        return f"StemDataset({self.kind}, {self.root}, {len(self)} tracks)"


# ----------------------------------------------------------------------------- layouts


def open_corpus(root, split: str | None = None, hours: float | None = None) -> StemDataset:
    """The synthetic corpus (reads manifest.jsonl; songs with missing files are skipped, so
    a build still running can be read). `hours` keeps the first songs in index order up to
    that much audio per split: a deterministic subset, e.g. to fit a training set in RAM."""
    root = Path(root)
    man = root / "manifest.jsonl"
    if not man.exists():
        raise DatasetError(
            f"{root} has no manifest.jsonl: build one with `python -m factory.corpus build --out {root} --hours H`."
        )
    tracks = []
    for line in man.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        files = {k: [root / v] for k, v in e["files"].items()}
        if split and e["split"] != split or not all(p[0].exists() for p in files.values()):
            continue
        tracks.append(Track(e["id"], e["split"], files, e))
    tracks.sort(key=lambda t: t.meta["index"])
    if hours is not None:
        kept, total = [], {}
        for t in tracks:
            if total.get(t.split, 0.0) < hours * 3600:
                kept.append(t)
                total[t.split] = total.get(t.split, 0.0) + t.meta.get("duration_s", 0.0)
        tracks = kept
    return StemDataset(tracks, "synthetic", root)


def open_musdb_hq(root, split: str | None = None) -> StemDataset:
    """MUSDB18-HQ: <root>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav"""
    root = Path(root)
    tracks = []
    for sp in ("train", "test"):
        if split and sp != split or not (root / sp).is_dir():
            continue
        for d in sorted(p for p in (root / sp).iterdir() if p.is_dir()):
            files = {r: [d / f"{r}.wav"] for r in ("mixture",) + STEMS if (d / f"{r}.wav").exists()}
            if files:
                tracks.append(Track(d.name, sp, files))
    if not tracks:
        raise DatasetError(f"no MUSDB18-HQ tracks under {root} (expected {root}/train/<track>/mixture.wav).")
    return StemDataset(tracks, "musdb18hq", root)


def _stem_mp4_decoder(path: Path):
    """A decoder for NI .stem.mp4 files: stempeg if installed, else the ffmpeg program."""
    try:
        import stempeg  # noqa: F401

        have_stempeg = True
    except ImportError:
        have_stempeg = False
    if not have_stempeg and shutil.which("ffmpeg") is None:
        raise DatasetError(
            "reading MUSDB18 .stem.mp4 files needs ffmpeg: install the Debian package "
            "`ffmpeg` (or `pip install stempeg`), or use the WAV release MUSDB18-HQ."
        )

    def decode(start_s=0.0, duration_s=None):
        if have_stempeg:
            import stempeg

            audio, rate = stempeg.read_stems(
                str(path), start=start_s or None, duration=duration_s, sample_rate=SR, dtype=np.float32
            )
            return {r: _to_stereo(audio[i].T) for i, r in enumerate(STEM_MP4_ORDER) if i < audio.shape[0]}
        out = {}
        for i, role in enumerate(STEM_MP4_ORDER):
            cmd = ["ffmpeg", "-v", "error", "-nostdin", "-ss", str(start_s), "-i", str(path)]
            if duration_s is not None:
                cmd += ["-t", str(duration_s)]
            cmd += ["-map", f"0:a:{i}", "-f", "f32le", "-ac", "2", "-ar", str(SR), "-"]
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if res.returncode != 0:
                if i > 0 and b"matches no streams" in res.stderr:
                    break
                raise DatasetError(
                    f"ffmpeg could not read {path}: {res.stderr.decode(errors='replace').strip()[-200:]}"
                )
            out[role] = np.frombuffer(res.stdout, np.float32).reshape(-1, 2).T.copy()
        return out

    return decode


def open_musdb_stems(root, split: str | None = None) -> StemDataset:
    """MUSDB18: <root>/{train,test}/<track>.stem.mp4 (5 streams: mix, drums, bass, other, vocals)."""
    root = Path(root)
    tracks = []
    for sp in ("train", "test"):
        if split and sp != split or not (root / sp).is_dir():
            continue
        for f in sorted((root / sp).glob("*.stem.mp4")):
            tracks.append(Track(f.name[: -len(".stem.mp4")], sp, {"container": [f]}, decoder=_stem_mp4_decoder(f)))
    if not tracks:
        raise DatasetError(f"no MUSDB18 .stem.mp4 files under {root}/train or {root}/test.")
    return StemDataset(tracks, "musdb18", root)


def role_of(filename: str) -> str | None:
    """Which role a file plays, from its name: 'Lead Vocals.wav' -> vocals, '03_bass_DI.flac' -> bass."""
    base = Path(filename).name.lower()
    for ext in AUDIO_EXTS:
        if base.endswith(ext):
            base = base[: -len(ext)]
    tokens = [t for t in base.replace("-", "_").replace(" ", "_").replace(".", "_").split("_") if t]
    if base in sum(ALIASES.values(), ()):
        return next(r for r, names in ALIASES.items() if base in names)
    for role in ("mixture",) + STEMS:  # first match wins
        if any(t in ALIASES[role] for t in tokens):
            return role
    return None


def open_stem_folder(root, split: str = "train", unknown: str = "other") -> StemDataset:
    """Any folder of per-stem files: each sub-folder is a track (or the folder itself is one);
    files are assigned to roles by name (see ALIASES); several files of one role are summed;
    files with unrecognised names go to `unknown` ("other", or "skip")."""
    root = Path(root)
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) or [root]
    tracks = []
    for d in dirs:
        files: dict = {}
        for f in sorted(d.iterdir()):
            if not f.is_file() or not f.name.lower().endswith(AUDIO_EXTS):
                continue
            role = role_of(f.name) or (None if unknown == "skip" else unknown)
            if role:
                files.setdefault(role, []).append(f)
        if any(r in files for r in STEMS):
            tracks.append(Track(d.name, split, files))
    if not tracks:
        raise DatasetError(f"no stem files found under {root} (expected e.g. <track>/vocals.wav, drums.wav, ...).")
    return StemDataset(tracks, "folder", root)


FRETSONFIRE_ROOT = "/usr/share/games/fretsonfire/data/songs"


def open_fretsonfire(root=FRETSONFIRE_ROOT) -> StemDataset:
    """Real band recordings from Debian's Frets on Fire song packages
    (`fretsonfire-songs-muldjord`, `fretsonfire-songs-sectoid`): per song the isolated
    lead guitar (guitar.ogg, plus rhythm.ogg where present) and the rest of the band
    (song.ogg: drums, bass, vocals, rhythm parts). `load()` returns "guitar", "backing"
    (and "rhythm") and their sum as "mixture"; only the guitar is a clean part of a
    MUSDB stem ("other"), so these are for checks on real music (a separator must keep
    mixture consistency and not damage what it cannot separate), not for training."""
    root = Path(root)
    tracks = []
    for ini in sorted(root.glob("**/song.ini")):
        d = ini.parent
        files = {
            role: [d / f"{name}.ogg"]
            for role, name in (("guitar", "guitar"), ("backing", "song"), ("rhythm", "rhythm"))
            if (d / f"{name}.ogg").exists()
        }
        if "guitar" in files and "backing" in files:
            tracks.append(
                Track(f"{d.parent.name}/{d.name}", "test", files, {"complete": False, "stem_of_guitar": "other"})
            )
    if not tracks:
        raise DatasetError(
            f"no Frets on Fire songs under {root}: install the Debian package "
            "`fretsonfire-songs-muldjord` or `fretsonfire-songs-sectoid`."
        )
    return StemDataset(tracks, "fretsonfire", root)


def detect(root) -> str:
    root = Path(root)
    if any(root.glob("*/song.ini")) or any(root.glob("*/*/song.ini")):
        return "fretsonfire"
    if (root / "manifest.jsonl").exists():
        return "synthetic"
    for sp in ("train", "test"):
        if (root / sp).is_dir():
            if any((root / sp).glob("*.stem.mp4")):
                return "musdb18"
            if any((root / sp).glob("*/mixture.wav")):
                return "musdb18hq"
    return "folder"


def open_dataset(root, kind: str = "auto", split: str | None = None) -> StemDataset:
    """The one flag: `--data PATH` opens whichever layout PATH holds."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root} does not exist.")
    kind = detect(root) if kind == "auto" else kind
    if kind == "fretsonfire":
        return open_fretsonfire(root)
    opener = {"synthetic": open_corpus, "musdb18hq": open_musdb_hq, "musdb18": open_musdb_stems}.get(kind)
    if opener is not None:
        return opener(root, split)
    if kind == "folder":
        ds = open_stem_folder(root)
        return ds.split(split) if split else ds
    raise DatasetError(f"unknown dataset kind {kind!r}: use synthetic, musdb18hq, musdb18, folder or fretsonfire.")
