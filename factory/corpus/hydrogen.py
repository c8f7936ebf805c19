"""Hydrogen drum kits as a sampler for the corpus's drum parts.

Debian's ``hydrogen-drumkits`` and ``hydrogen-data`` install recorded (and a few electronic) kits
as folders of samples with a ``drumkit.xml``: each instrument has a name, velocity layers (one
sample per velocity range), a gain, a pan and a mute group (an open hi-hat is cut by the closed
one). Nothing maps them to General MIDI notes, so :func:`gm_map` does it by instrument name
(kick, snare, hi-hat closed/pedal/open, toms, crash, ride, …); a kit without a kick, a snare and a
closed hi-hat is not a drum kit for these grooves and is not offered.

Kits that repeat samples already in a training pool (The Black Pearl and GMRockKit are avldrums'
Black Pearl) are left out.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 44100
KIT_ROOT = Path("/usr/share/hydrogen/data/drumkits")
PACKAGES = "hydrogen-drumkits hydrogen-data"
# Same recordings as a kit another pool already draws (avldrums' Black Pearl).
DUPLICATES = ("The Black Pearl 1.0", "GMRockKit")

# GM drum note -> name patterns, most specific first. A pattern is a tuple of words each of which
# must begin a word of the instrument's name (letters and digits split: "crash16inch" is
# crash/16/inch); a word starting with '-' must begin none.
_KICK = [("kick",), ("bass", "drum"), ("bassdrum",)]
_SNARE = [("snare", "-roll", "-rim"), ("snare", "-roll"), ("snare",)]
_TOM = [("tom",)]
_CRASH = [("crash", "-ride"), ("crash",), ("china",), ("splash",), ("cymbal",)]
_RIDE = [("ride", "-bell", "-crash", "-cup"), ("ride",)]
PATTERNS: dict[int, list[tuple[str, ...]]] = {
    35: _KICK,
    36: _KICK,
    37: [("stick",), ("rim", "click"), ("rim",)],
    38: _SNARE,
    39: [("clap",)],
    40: [("snare", "rimshot"), ("snare", "2"), *_SNARE],
    42: [("hat", "cl"), ("hh", "cl"), ("closed",), ("hat", "-op", "-pe", "-pd", "-semi"), ("hh", "-op", "-pe", "-pd")],
    44: [("hat", "pe"), ("hh", "pe"), ("hat", "pd"), ("pedal", "-tamb")],
    46: [("hat", "op"), ("hh", "op"), ("open",), ("hat", "semi")],
    41: [("floor",), ("tom", "low"), ("low", "tom"), ("tom", "3"), *_TOM],
    43: [("floor",), ("tom", "low"), ("low", "tom"), ("tom", "3"), *_TOM],
    45: [("tom", "mid"), ("mid", "tom"), ("tom", "2"), *_TOM],
    47: [("tom", "mid"), ("mid", "tom"), ("tom", "2"), *_TOM],
    48: [("tom", "hi"), ("high", "tom"), ("tom", "1"), *_TOM],
    50: [("tom", "hi"), ("high", "tom"), ("tom", "1"), *_TOM],
    49: _CRASH,
    57: _CRASH,
    55: [("splash",), *_CRASH],
    52: [("china",), *_CRASH],
    51: [*_RIDE, ("cymbal",)],
    59: [*_RIDE, ("cymbal",)],
    53: [("ride", "bell"), ("bell", "-cow"), ("cup",), *_RIDE],
    54: [("tambourine",), ("tamb",)],
    56: [("cowbell",)],
    70: [("shaker",), ("maraca",)],
    75: [("clave",)],
    60: [("bongo", "hi"), ("bongo",)],
    61: [("bongo", "lo"), ("bongo",)],
    62: [("conga", "hi"), ("conga",)],
    63: [("conga",)],
    64: [("conga", "lo"), ("conga",)],
}
ESSENTIAL = (36, 38, 42)
# A note the kit has nothing for plays what it has for the first close relative it has (else it
# is left out): cymbals fall back to each other, then to the hi-hat (electronic kits have no ride).
_CYMBALS = [49, 51, 46, 42]
FALLBACK = {
    35: [36],
    40: [38],
    37: [38],
    44: [42],
    46: [42],
    49: _CYMBALS,
    57: _CYMBALS,
    55: _CYMBALS,
    52: _CYMBALS,
    51: [49, 42, 46],
    59: [51, 49, 42, 46],
    53: [51, 49, 42, 46],
}


@dataclass(frozen=True)
class Layer:
    path: Path
    low: float  # velocity range (0-1) this sample plays
    high: float
    gain: float


@dataclass(frozen=True)
class Instrument:
    name: str
    gain: float  # volume x gain
    pan: tuple[float, float]  # left, right gains
    mute_group: int
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Kit:
    name: str
    folder: Path
    licence: str
    instruments: tuple[Instrument, ...]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el, name: str, default=None):
    for c in el:
        if _local(c.tag) == name:
            return c.text if c.text is not None else default
    return default


def _float(text, default: float) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


@functools.lru_cache(maxsize=64)
def parse_kit(folder) -> Kit:
    """A kit's instruments with their sample layers (only samples that exist); read once per
    process, as every drum stem a kit plays asks for it twice (playable, render)."""
    folder = Path(folder)
    root = ET.parse(folder / "drumkit.xml").getroot()
    instruments = []
    for el in root.iter():
        if _local(el.tag) != "instrument":
            continue
        layers = []
        for ly in el.iter():
            if _local(ly.tag) != "layer":
                continue
            f = folder / (_child(ly, "filename") or "")
            if f.is_file():
                layers.append(
                    Layer(
                        f,
                        _float(_child(ly, "min"), 0.0),
                        _float(_child(ly, "max"), 1.0),
                        _float(_child(ly, "gain"), 1.0),
                    )
                )
        if not layers:  # the oldest format: one sample, named on the instrument itself
            f = folder / (_child(el, "filename") or "")
            if f.is_file():
                layers.append(Layer(f, 0.0, 1.0, 1.0))
        if not layers:
            continue
        if _child(el, "pan_L") is not None:
            pan = (_float(_child(el, "pan_L"), 1.0), _float(_child(el, "pan_R"), 1.0))
        else:  # newer kits: one pan value in [-1, 1]
            p = float(np.clip(_float(_child(el, "pan"), 0.0), -1, 1))
            pan = (min(1.0, 1 - p), min(1.0, 1 + p))
        gain = _float(_child(el, "volume"), 1.0) * _float(_child(el, "gain"), 1.0)
        instruments.append(
            Instrument(
                (_child(el, "name") or "").strip(), gain, pan, int(_float(_child(el, "muteGroup"), -1)), tuple(layers)
            )
        )
    licence = (_child(root, "license") or "").strip() or "see the Debian package's copyright file"
    return Kit((_child(root, "name") or folder.name).strip(), folder, licence, tuple(instruments))


def _words(name: str) -> list[str]:
    return re.findall(r"[a-z]+|[0-9]+", name.lower())


def _matches(words: list[str], pattern: tuple[str, ...]) -> bool:
    def begins(w: str) -> bool:
        return any(x.startswith(w) for x in words)

    return all(not begins(w[1:]) if w.startswith("-") else begins(w) for w in pattern)


def gm_map(kit: Kit) -> dict[int, list[int]]:
    """GM note -> indices of the kit's instruments that can play it (those of the first pattern
    that matches any; else the FALLBACK note's; else the note is left out)."""
    names = [_words(i.name) for i in kit.instruments]
    out = {}
    for note, patterns in PATTERNS.items():
        for pat in patterns:
            hits = [k for k, n in enumerate(names) if _matches(n, pat)]
            if hits:
                out[note] = hits
                break
    for note, others in FALLBACK.items():
        if note not in out:
            for other in others:
                if other in out:
                    out[note] = out[other]
                    break
    return out


def playable(folder) -> set[int]:
    """The GM drum notes a kit can play (the others are for another instrument to play)."""
    return set(gm_map(parse_kit(folder)))


@functools.lru_cache(maxsize=1)
def available_kits(root: str = str(KIT_ROOT)) -> tuple[Path, ...]:
    """The kit folders that can play the grooves (kick, snare and closed hi-hat mapped), sorted."""
    base = Path(root)
    if not base.is_dir():
        return ()
    kits = []
    for d in sorted(p for p in base.iterdir() if (p / "drumkit.xml").is_file()):
        if d.name in DUPLICATES:
            continue
        try:
            m = gm_map(parse_kit(d))
        except ET.ParseError:
            continue
        if all(n in m for n in ESSENTIAL):
            kits.append(d)
    return tuple(kits)


@functools.lru_cache(maxsize=256)
def _sample(path: Path) -> np.ndarray:
    """A sample as float32 (2, n) at 44.1 kHz."""
    import soundfile as sf
    import soxr

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x[:, :2] if x.shape[1] >= 2 else np.repeat(x, 2, axis=1)
    if rate != SR:
        x = soxr.resample(x, rate, SR).astype(np.float32)
    return np.ascontiguousarray(x.T)


def _layer(inst: Instrument, velocity: float) -> Layer:
    for ly in inst.layers:
        if ly.low <= velocity <= ly.high:
            return ly
    return min(inst.layers, key=lambda ly: min(abs(velocity - ly.low), abs(velocity - ly.high)))


def render(parts, n: int, folder, seed: int) -> np.ndarray:
    """The drum parts' notes played on one kit: float64 (2, n). Each GM note plays one of the kit's
    instruments that match it (chosen once per song from ``seed``); a note in a mute group cuts
    the group's sounding note with a 5 ms fade, as Hydrogen does."""
    kit = parse_kit(folder)
    mapping = gm_map(kit)
    rng = np.random.default_rng(seed)
    choice = {note: int(rng.choice(ks)) for note, ks in sorted(mapping.items())}
    hits = sorted((on, pitch, vel) for p in parts for on, _dur, pitch, vel in p.notes if pitch in choice and vel > 0)
    out = np.zeros((2, n))
    sounding: dict[int, tuple[int, np.ndarray]] = {}  # mute group -> (start, what its last note added)
    fade = int(0.005 * SR)
    for on, pitch, vel in hits:
        a = int(round(on * SR))
        if a >= n:
            continue
        inst = kit.instruments[choice[pitch]]
        v = float(np.clip(vel / 127.0, 0, 1))
        layer = _layer(inst, v)
        x = _sample(layer.path)
        group = inst.mute_group
        if group >= 0 and group in sounding:
            a0, y0 = sounding[group]
            rest = y0[:, a - a0 :]
            if rest.shape[1]:  # cut the group's sounding note: a short fade, then silence
                keep = np.zeros(rest.shape[1])
                k = min(fade, rest.shape[1])
                keep[:k] = np.linspace(1, 0, k)
                out[:, a : a + rest.shape[1]] -= rest * (1 - keep)
        b = min(n, a + x.shape[1])
        y = (inst.gain * layer.gain * v) * np.asarray(inst.pan)[:, None] * x[:, : b - a]
        out[:, a:b] += y
        if group >= 0:
            sounding[group] = (a, y)
    return out
