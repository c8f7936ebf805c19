"""Small deterministic test material for the phase-recovery evaluation, rendered with fluidsynth.

- ``instrument_clip(name)``: a single-instrument phrase (melody with a few dyads) on a General
  MIDI patch: piano, guitar, strings, voice (FluidR3 GM).
- ``render_song(seed)``: a 4-stem song (vocals on a voice patch, drums, bass, other) where each
  stem is rendered alone, so the mixture is exactly the sum of the stems.

Rendering needs the ``fluidsynth`` program and a GM soundfont (Debian: ``apt-get install
fluidsynth fluid-soundfont-gm``). Renders are cached under ``cache_dir`` (default
``$LIVEDEMIX_CACHE`` or ``~/.cache/livedemix/phase``).

    python -m factory.phase_render --out /tmp/songs   # writes the songs as WAV stems
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100
SF2_CANDIDATES = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")

# name -> GM program (0-based)
INSTRUMENTS = {"piano": 0, "guitar": 24, "strings": 48, "voice": 53}


def soundfont() -> str:
    for p in SF2_CANDIDATES:
        if os.path.exists(p):
            return p
    raise FileNotFoundError(
        "no General MIDI soundfont found (looked for FluidR3_GM.sf2): install the Debian package fluid-soundfont-gm"
    )


def have_fluidsynth() -> bool:
    try:
        soundfont()
    except FileNotFoundError:
        return False
    return shutil.which("fluidsynth") is not None


def _cache_dir(cache_dir=None) -> Path:
    d = Path(cache_dir or os.environ.get("LIVEDEMIX_CACHE", Path.home() / ".cache" / "livedemix")) / "phase"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _render(
    notes, program: int, seconds: float, channel: int = 0, tempo_bpm: float = 120.0, cache_dir=None, pan: int = 64
) -> np.ndarray:
    """notes: list of (start_beat, length_beats, pitch, velocity). Returns float32 (2, N)."""
    import mido

    key = hashlib.sha1(repr((notes, program, seconds, channel, tempo_bpm, pan, SR)).encode()).hexdigest()[:16]
    path = _cache_dir(cache_dir) / f"{key}.wav"
    if not path.exists():
        tpb = 480
        mid = mido.MidiFile(ticks_per_beat=tpb)
        tr = mido.MidiTrack()
        mid.tracks.append(tr)
        tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
        if channel != 9:
            tr.append(mido.Message("program_change", program=program, channel=channel, time=0))
        tr.append(mido.Message("control_change", control=10, value=pan, channel=channel, time=0))
        events = []
        for start, length, pitch, vel in notes:
            events.append((int(round(start * tpb)), 1, pitch, vel))
            events.append((int(round((start + length) * tpb)), 0, pitch, 0))
        events.sort(key=lambda e: (e[0], e[1]))
        now = 0
        for tick, on, pitch, vel in events:
            msg = "note_on" if on else "note_off"
            tr.append(mido.Message(msg, note=pitch, velocity=vel, channel=channel, time=tick - now))
            now = tick
        with tempfile.TemporaryDirectory() as td:
            midp = Path(td) / "x.mid"
            mid.save(midp)
            tmp = Path(td) / "x.wav"
            subprocess.run(
                [
                    "fluidsynth",
                    "-ni",
                    "-q",
                    "-R",
                    "0",
                    "-C",
                    "0",
                    "-g",
                    "0.5",
                    "-r",
                    str(SR),
                    "-F",
                    str(tmp),
                    soundfont(),
                    str(midp),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            part = path.with_suffix(".part.wav")
            shutil.copyfile(tmp, part)
            os.replace(part, path)
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SR
    n = int(seconds * SR)
    x = x.T
    if x.shape[1] < n:
        x = np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return np.ascontiguousarray(x[:, :n])


MAJOR = (0, 2, 4, 5, 7, 9, 11)


def instrument_clip(name: str, seconds: float = 8.0, seed: int = 0, cache_dir=None) -> np.ndarray:
    """A mono single-instrument phrase (float32, (N,)): a melody with occasional dyads."""
    rng = np.random.default_rng(1000 + seed + 17 * list(INSTRUMENTS).index(name))
    base = {"piano": 60, "guitar": 55, "strings": 60, "voice": 60}[name]
    beats = seconds * 2.0 - 1.0  # 120 bpm, leave a release tail
    notes, t, deg = [], 0.0, 7
    while t < beats - 0.5:
        length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        deg = int(np.clip(deg + rng.integers(-2, 3), 0, 13))
        pitch = base + 12 * (deg // 7) + MAJOR[deg % 7]
        vel = int(rng.integers(70, 110))
        notes.append((t, min(length, beats - t), pitch, vel))
        if rng.random() < 0.3:
            notes.append(
                (
                    t,
                    min(length, beats - t),
                    pitch
                    - 12
                    + MAJOR[(deg + 2) % 7]
                    - MAJOR[deg % 7]
                    + (12 if MAJOR[(deg + 2) % 7] < MAJOR[deg % 7] else 0),
                    vel - 15,
                )
            )
        t += length
    x = _render(notes, INSTRUMENTS[name], seconds, cache_dir=cache_dir)
    return x.mean(axis=0).astype(np.float32)


PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 4), (1, 4, 0, 0))
OTHER_PROGRAMS = (0, 4, 24, 25, 48, 19)  # piano, e-piano, nylon/steel guitar, strings, organ
VOICE_PROGRAMS = (53, 52, 54)  # voice oohs, choir aahs, synth voice
BASS_PROGRAMS = (33, 34, 32)  # fingered, picked, acoustic bass


def render_song(seed: int, seconds: float = 12.0, cache_dir=None) -> dict:
    """A 4-stem song; returns {stem: float32 (2, N)} for vocals, drums, bass, other."""
    rng = np.random.default_rng(seed)
    tempo = float(rng.integers(90, 131))
    key = int(rng.integers(-5, 6))
    prog = PROGRESSIONS[seed % len(PROGRESSIONS)]
    beats_total = int(seconds * tempo / 60.0) - 2
    bars = beats_total // 4

    def chord(bar):
        deg = prog[bar % 4]
        return [MAJOR[(deg + k) % 7] + 12 * ((deg + k) // 7) for k in (0, 2, 4)]

    vocals, drums, bass, other = [], [], [], []
    arpeggio = rng.random() < 0.5
    for bar in range(bars):
        b0 = 4.0 * bar
        ch = chord(bar)
        # other: block chords or arpeggios, octave 4
        if arpeggio:
            for i in range(8):
                other.append((b0 + 0.5 * i, 0.5, 60 + key + ch[i % 3] + (12 if i % 6 == 5 else 0), 70))
        else:
            for p in ch:
                other.append((b0, 3.9, 60 + key + p, 65))
        # bass: root on eighths / quarters, octave 2
        pattern = (0, 1, 2, 2.5, 3) if bar % 2 else (0, 1.5, 2, 3)
        for k, s in enumerate(pattern):
            nxt = pattern[k + 1] if k + 1 < len(pattern) else 4
            p = 36 + key + ch[0] + (7 if s == 2.5 else 0)
            bass.append((b0 + s, (nxt - s) * 0.9, p, 95))
        # drums: kick 1 & 3, snare 2 & 4, closed hats on eighths, crash every 4 bars
        for s in (0, 2):
            drums.append((b0 + s, 0.25, 36, 110))
        if bar % 2:
            drums.append((b0 + 2.5, 0.25, 36, 90))
        for s in (1, 3):
            drums.append((b0 + s, 0.25, 38, 100))
        for i in range(8):
            drums.append((b0 + 0.5 * i, 0.2, 42, 60 + 15 * (i % 2 == 0)))
        if bar % 4 == 0:
            drums.append((b0, 1.0, 49, 90))
        # vocals: a phrase on chord/scale tones, with rests, octave 5
        t = b0
        while t < b0 + 4.0:
            length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
            length = min(length, b0 + 4.0 - t)
            if rng.random() < 0.2:
                t += length
                continue
            if rng.random() < 0.6:
                p = ch[int(rng.integers(0, 3))]
            else:
                p = MAJOR[int(rng.integers(0, 7))]
            vocals.append((t, length * 0.95, 72 + key + p, int(rng.integers(80, 110))))
            t += length
    kw = dict(seconds=seconds, tempo_bpm=tempo, cache_dir=cache_dir)
    return {
        "vocals": _render(vocals, VOICE_PROGRAMS[seed % 3], channel=0, pan=64, **kw),
        "drums": _render(drums, 0, channel=9, pan=64, **kw),
        "bass": _render(bass, BASS_PROGRAMS[seed % 3], channel=1, pan=64, **kw),
        "other": _render(
            other, OTHER_PROGRAMS[seed % len(OTHER_PROGRAMS)], channel=2, pan=int(rng.choice([40, 88])), **kw
        ),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write <song>/<stem>.wav into")
    ap.add_argument("--songs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=12.0)
    a = ap.parse_args(argv)
    for s in range(a.songs):
        stems = render_song(s, a.seconds)
        d = Path(a.out) / f"song{s:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for k, v in stems.items():
            sf.write(d / f"{k}.wav", v.T, SR)
        sf.write(d / "mixture.wav", sum(stems.values()).T, SR)
        print(d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
