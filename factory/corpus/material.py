"""Musical material from the music21 corpus: melody, inner voices, bass and chords.

Every piece is parsed once and reduced to plain lists of notes and chords, which are
cached as JSON (parsing costs ~0.1-1 s per score, the cached reduction ~1 ms).
Time is in "quarters" after rescaling the notation so that the beat unit is a quarter
(4/2 becomes 4/4, 3/2 becomes 3/4): the arranger then only meets duple, triple and
compound (6/8-like) bars.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Collections that carry melody and/or harmony; .rntxt files are analyses, not music.
COLLECTIONS = (
    "bach",
    "palestrina",
    "ryansMammoth",
    "oneills1850",
    "essenFolksong",
    "monteverdi",
    "trecento",
    "josquin",
    "miscFolk",
    "airdsAirs",
    "nottingham-dataset",
    "beethoven",
    "haydn",
    "mozart",
    "schumann_robert",
    "schumann_clara",
    "handel",
    "corelli",
    "joplin",
    "leadSheet",
    "demos",
)
EXTS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")
MAX_TUNES_PER_FILE = 40  # big folk-song opus files: use their first tunes only

MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
CHORD_QUALITIES = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "7": (0, 4, 7, 10),
    "m7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11),
}
PC_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


@dataclass(frozen=True)
class Source:
    """One MIDI source: a corpus file, and a tune number inside ABC opus files."""

    path: str  # relative to the music21 corpus root, e.g. "bach/bwv66.6.mxl"
    number: int | None

    @property
    def key(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"

    @property
    def collection(self) -> str:
        return self.path.split("/")[0]


def corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def list_files() -> list[str]:
    """Corpus files we can use, relative paths, sorted (stable across machines)."""
    root = corpus_root()
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
            if rel.split("/")[0] in COLLECTIONS and rel.endswith(EXTS):
                out.append(rel)
    return sorted(out)


def list_sources(files: list[str]) -> list[Source]:
    """Expand ABC opus files into their tunes (by reading the X: numbers, not parsing)."""
    root = corpus_root()
    out = []
    for rel in files:
        if rel.endswith(".abc"):
            text = (root / rel).read_text(encoding="latin-1")
            nums = [int(m) for m in re.findall(r"^X:\s*(\d+)", text, flags=re.M)]
            if len(nums) <= 1:
                out.append(Source(rel, None))
            else:
                out.extend(Source(rel, n) for n in sorted(set(nums))[:MAX_TUNES_PER_FILE])
        else:
            out.append(Source(rel, None))
    return out


def assign_splits(files: list[str], seed: int, valid: float = 0.1, test: float = 0.1) -> dict[str, str]:
    """File -> split. Splitting by *file* keeps every tune of an opus in one split, so no
    MIDI source is shared across splits. A keyed hash (not Python's salted hash()) makes
    it depend only on the seed and the file name, so the test split is stable when the
    corpus grows or --hours changes."""
    out = {}
    for rel in files:
        h = hashlib.sha256(f"{seed}:{rel}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2.0**64
        out[rel] = "test" if u < test else ("valid" if u < test + valid else "train")
    return out


# ----------------------------------------------------------------------------- reduction


def _meter_scale(num: int, den: int) -> tuple[float, str] | None:
    """How to rescale notated time so the beat unit is a quarter, and the bar family."""
    if den == 8 and num in (3, 6, 9, 12):
        return 1.0, "compound"
    scale = {1: 0.25, 2: 0.5, 4: 1.0}.get(den)
    if scale is None:
        return None
    if num in (2, 4):
        return scale, "duple"
    if num == 3:
        return scale, "triple"
    return None


def _line(part, scale: float) -> list[list[float]]:
    """Notes of one part as [onset, duration, midi], ties merged, chords kept."""
    notes: list[list[float]] = []
    open_ties: dict[int, list[float]] = {}
    for n in part.flatten().notes:
        ql = float(n.duration.quarterLength)
        if ql <= 0:  # grace notes
            continue
        on = float(n.offset) * scale
        dur = ql * scale
        tie = getattr(n, "tie", None)
        for p in n.pitches:
            m = int(p.midi)
            if tie is not None and tie.type in ("continue", "stop") and m in open_ties:
                open_ties[m][1] = on + dur - open_ties[m][0]
                if tie.type == "stop":
                    open_ties.pop(m)
                continue
            ev = [round(on, 4), round(dur, 4), m]
            notes.append(ev)
            if tie is not None and tie.type == "start":
                open_ties[m] = ev
    notes.sort(key=lambda e: (e[0], -e[2]))
    return notes


def _top_line(notes):
    """Monophonic melody: the highest note at each onset, cut where the next begins."""
    by_on: dict[float, list] = {}
    for on, dur, m in notes:
        if on not in by_on or m > by_on[on][2]:
            by_on[on] = [on, dur, m]
    mel = [by_on[k] for k in sorted(by_on)]
    for a, b in zip(mel, mel[1:]):
        a[1] = round(min(a[1], b[0] - a[0]), 4)
    return [e for e in mel if e[1] > 0]


def estimate_key(notes) -> tuple[int, str]:
    """Krumhansl-Schmuckler key from duration-weighted pitch classes."""
    h = np.zeros(12)
    for _on, dur, m in notes:
        h[int(m) % 12] += dur
    best = (-2.0, 0, "major")
    for tonic in range(12):
        for mode, prof in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
            r = np.corrcoef(h, np.roll(prof, tonic))[0, 1] if h.std() > 0 else 0.0
            if r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2]


def estimate_chords(lines, bass_line, length: float, window: float, tonic: int, mode: str):
    mono = len(lines) == 1  # a tune alone: harmonize plainly (triads, V7)
    """Chord per window by template matching on duration-weighted pitch classes, with a
    prior for diatonic chords and extra weight on the lowest note (what a harmonizer or
    a bass player hears first). Consecutive equal chords are merged."""
    scale = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10, 11)
    diatonic = {(tonic + s) % 12 for s in scale}
    n_win = max(1, int(np.ceil(length / window - 1e-6)))
    weights = np.zeros((n_win, 12))
    lowest = np.full(n_win, -1)
    lowest_m = np.full(n_win, 999)
    for line in lines:
        for on, dur, m in line:
            a, b = on, on + dur
            for w in range(int(a // window), min(n_win, int(np.ceil(b / window)))):
                ov = min(b, (w + 1) * window) - max(a, w * window)
                if ov > 0:
                    beat_w = 1.5 if abs(on - w * window) < 1e-6 else 1.0
                    weights[w, int(m) % 12] += ov * beat_w
                    if m < lowest_m[w]:
                        lowest_m[w], lowest[w] = m, int(m) % 12
    for on, dur, m in bass_line or []:
        w = int(on // window)
        if 0 <= w < n_win:
            weights[w, int(m) % 12] += 0.5 * dur
    chords = []
    prev = None
    for w in range(n_win):
        if weights[w].sum() == 0:
            chord = prev if prev is not None else (tonic, "maj" if mode == "major" else "min")
        else:
            best, chord = -1e9, None
            for root in range(12):
                for q, ivs in CHORD_QUALITIES.items():
                    if mono and (q in ("m7", "maj7", "dim") or (q == "7" and root != (tonic + 7) % 12)):
                        continue
                    tones = {(root + i) % 12 for i in ivs}
                    s = sum(weights[w, t] for t in tones) - 0.6 * sum(
                        weights[w, t] for t in range(12) if t not in tones
                    )
                    s -= 0.15 * (len(ivs) - 3) * weights[w].sum()  # prefer triads
                    s += (0.6 if mono else 0.25) * weights[w].sum() * (all(t in diatonic for t in tones))
                    s += (0.2 if mono else 0.0) * weights[w].sum() * (root in ((tonic + i) % 12 for i in (0, 5, 7)))
                    s += 0.2 * weights[w].sum() * (lowest[w] == root)
                    s += 0.1 * weights[w].sum() * (prev is not None and (root, q) == prev)
                    if s > best:
                        best, chord = s, (root, q)
        if chords and (chords[-1][2], chords[-1][3]) == chord:
            chords[-1][1] = round(chords[-1][1] + window, 4)
        else:
            chords.append([round(w * window, 4), window, chord[0], chord[1]])
        prev = chord
    return chords


def reduce_score(score) -> dict:
    """Reduce a parsed music21 score to the plain material the arranger needs."""
    from music21 import stream

    if isinstance(score, stream.Opus):
        score = score.scores[0]
    ts = next(iter(score.recurse().getElementsByClass("TimeSignature")), None)
    num, den = (ts.numerator, ts.denominator) if ts is not None else (4, 4)
    ms = _meter_scale(num, den)
    if ms is None:
        return {"ok": False, "why": f"meter {num}/{den}"}
    scale, family = ms
    bar = num * 4.0 / den * scale
    parts = list(score.parts) if score.parts else [score]
    lines = [_line(p, scale) for p in parts]
    lines = [ln for ln in lines if ln]
    if not lines:
        return {"ok": False, "why": "no notes"}
    # A pickup bar: shift so that t=0 is a downbeat.
    shift = 0.0
    measures = list(parts[0].getElementsByClass("Measure"))
    if measures:
        first = float(measures[0].duration.quarterLength) * scale
        if 0 < first < bar - 1e-6:
            shift = bar - first
    if shift:
        lines = [[[round(on + shift, 4), d, m] for on, d, m in ln] for ln in lines]
    # The melody is the part with the highest mean pitch among the first two (ABC and
    # chorales: part 0); the bass is the lowest part when there are several.
    mel = _top_line(lines[0])
    voices = [_top_line(ln) for ln in lines[1:]]
    bass = voices[-1] if len(voices) >= 2 else None
    length = max(on + d for ln in lines for on, d, _m in ln)
    length = float(np.ceil(length / bar - 1e-6) * bar)
    tonic, mode = estimate_key([e for ln in lines for e in ln])
    window = bar if (len(lines) == 1 or family == "compound") else bar / 2
    chords = estimate_chords(lines, bass, length, window, tonic, mode)
    if len(mel) < 8:
        return {"ok": False, "why": "melody too short"}
    return {
        "ok": True,
        "meter": [num, den],
        "family": family,
        "bar": bar,
        "length": length,
        "tonic": tonic,
        "mode": mode,
        "melody": mel,
        "voices": voices,
        "bass": bass,
        "chords": chords,
        "n_parts": len(lines),
    }


class MaterialCache:
    """Parse-once cache of reduced pieces, one JSON file per source."""

    VERSION = 2

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _file(self, src: Source) -> Path:
        h = hashlib.sha1(f"v{self.VERSION}:{src.key}".encode()).hexdigest()[:16]
        return self.dir / f"{h}.json"

    def get(self, src: Source) -> dict:
        f = self._file(src)
        if f.exists():
            try:
                return json.loads(f.read_text())
            except ValueError:
                pass  # torn write from an interrupted run: redo
        from music21 import corpus

        try:
            score = corpus.parse(src.path, number=src.number) if src.number is not None else corpus.parse(src.path)
            mat = reduce_score(score)
        except Exception as e:  # a handful of corpus files do not parse
            mat = {"ok": False, "why": f"parse: {type(e).__name__}"}
        mat["source"] = src.key
        text = json.dumps(mat, separators=(",", ":"))
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, f)
        return json.loads(text)  # the same objects as a cache hit would give
