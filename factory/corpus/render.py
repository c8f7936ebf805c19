"""MIDI writing (mido) and stem rendering with fluidsynth and the FluidR3 GM soundfont."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOUNDFONT_CANDIDATES = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf3/FluidR3_GM.sf3")
TICKS_PER_S = 1000  # tempo 1 s per beat and 1000 ticks per beat: one tick = 1 ms


class MissingTool(RuntimeError):
    """A Debian package the corpus needs is not installed (the CLI exits with code 2)."""


def find_soundfont(path: str | None = None) -> str:
    if path and not Path(path).is_file():
        raise MissingTool(
            f"the soundfont {path} does not exist: pass an existing .sf2 file, or install the "
            "Debian packages `fluidsynth` and `fluid-soundfont-gm` and leave out --soundfont."
        )
    for cand in ([path] if path else []) + list(SOUNDFONT_CANDIDATES):
        if cand and Path(cand).is_file():
            return cand
    raise MissingTool(
        "the General MIDI soundfont FluidR3_GM.sf2 was not found: install the Debian "
        "packages `fluidsynth` and `fluid-soundfont-gm` (or pass --soundfont FILE)."
    )


def check_tools(soundfont: str | None = None, need_espeak: bool = True) -> str:
    """Fail early, before anything is written, when a renderer is missing."""
    if shutil.which("fluidsynth") is None:
        raise MissingTool(
            "fluidsynth was not found: install the Debian packages `fluidsynth` and `fluid-soundfont-gm`."
        )
    sf = find_soundfont(soundfont)
    if need_espeak and shutil.which("espeak-ng") is None:
        raise MissingTool(
            "espeak-ng was not found (it speaks the spoken vocal lines): install the Debian package `espeak-ng`."
        )
    return sf


def write_midi(parts, path) -> None:
    """One MIDI file for the parts of one stem; seconds map to ticks 1:1000."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=TICKS_PER_S)
    for part in parts:
        tr = mido.MidiTrack()
        mid.tracks.append(tr)
        tr.append(mido.MetaMessage("set_tempo", tempo=1_000_000, time=0))
        tr.append(mido.MetaMessage("track_name", name=f"{part.stem}:{part.role}:{part.name}", time=0))
        ch = part.channel
        if ch != 9:
            tr.append(mido.Message("control_change", channel=ch, control=0, value=0, time=0))
        tr.append(mido.Message("program_change", channel=ch, program=part.program, time=0))
        # Reverb/chorus sends to zero: production adds its own, per stem.
        tr.append(mido.Message("control_change", channel=ch, control=91, value=0, time=0))
        tr.append(mido.Message("control_change", channel=ch, control=93, value=0, time=0))
        events = []
        for on, dur, pitch, vel in part.notes:
            a = int(round(on * TICKS_PER_S))
            b = max(a + 1, int(round((on + dur) * TICKS_PER_S)))
            # A re-struck pitch must not be cut by the previous note's late note-off.
            events.append((a, 1, pitch, vel))
            events.append((b, 0, pitch, 0))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        active: dict[int, int] = {}
        now = 0
        for t, kind, pitch, vel in events:
            if kind == 1:
                if active.get(pitch, 0) > 0:
                    tr.append(mido.Message("note_off", channel=ch, note=pitch, velocity=0, time=t - now))
                    now = t
                    active[pitch] -= 1
                tr.append(mido.Message("note_on", channel=ch, note=pitch, velocity=int(vel), time=t - now))
                active[pitch] = active.get(pitch, 0) + 1
            else:
                if active.get(pitch, 0) <= 0:
                    continue
                tr.append(mido.Message("note_off", channel=ch, note=pitch, velocity=0, time=t - now))
                active[pitch] -= 1
            now = t
    tmp = f"{path}.tmp"
    mid.save(tmp)
    os.replace(tmp, path)


def render_midi(midi_path, n_samples: int, soundfont: str, sr: int = 44100) -> np.ndarray:
    """Render a MIDI file to float32 (2, n_samples), reverb and chorus off, trimmed/padded."""
    with tempfile.TemporaryDirectory(prefix="ldx-fs-") as td:
        raw = os.path.join(td, "out.raw")
        cmd = [
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
            str(sr),
            "-o",
            "synth.dynamic-sample-loading=1",
            "-o",
            "synth.cpu-cores=1",
            "-O",
            "float",
            "-T",
            "raw",
            "-E",
            "little",
            "-F",
            raw,
            soundfont,
            str(midi_path),
        ]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if res.returncode != 0 or not os.path.exists(raw):
            raise RuntimeError(f"fluidsynth failed on {midi_path}: {res.stderr.decode(errors='replace')[-300:]}")
        x = np.fromfile(raw, dtype="<f4")
    x = x[: (x.size // 2) * 2].reshape(-1, 2).T
    out = np.zeros((2, n_samples), np.float32)
    n = min(n_samples, x.shape[1])
    out[:, :n] = x[:, :n]
    # Notes cut by the trim would click: fade the last 20 ms (the plan leaves a tail).
    fade = min(n_samples, int(0.02 * sr))
    out[:, n_samples - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    return out
