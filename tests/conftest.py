"""Shared fixtures: real audio material rendered with fluidsynth and the FluidR3 GM soundfont."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def write_midi(
    path: Path, program: int, notes: list[tuple[float, float, int, int]], channel: int = 0, bpm: float = 120.0
) -> None:
    """A one-track standard MIDI file: notes are (start_beats, length_beats, pitch, velocity)."""
    tpq = 480
    events = []
    for start, length, pitch, vel in notes:
        events.append((int(start * tpq), 0x90 | channel, pitch, vel))
        events.append((int((start + length) * tpq), 0x80 | channel, pitch, 0))
    events.sort(key=lambda e: (e[0], e[1] & 0xF0))
    tempo = int(60e6 / bpm)
    body = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
    body += b"\x00" + bytes([0xC0 | channel, program])
    now = 0
    for tick, status, d1, d2 in events:
        body += _varlen(tick - now) + bytes([status, d1, d2])
        now = tick
    body += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq)
    path.write_bytes(header + b"MTrk" + struct.pack(">I", len(body)) + body)


def render_midi(midi: Path, out_wav: Path, seconds: float, sample_rate: int = 44100) -> np.ndarray:
    """Render with fluidsynth (reverb and chorus off); returns float32 (2, n) trimmed to seconds."""
    if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        pytest.fail("fluidsynth and the FluidR3 GM soundfont are needed: apt-get install fluidsynth fluid-soundfont-gm")
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
            "0.8",
            "-r",
            str(sample_rate),
            "-O",
            "float",
            "-T",
            "wav",
            "-F",
            str(out_wav),
            str(SOUNDFONT),
            str(midi),
        ],
        check=True,
        capture_output=True,
    )
    audio, sr = sf.read(out_wav, dtype="float32", always_2d=True)
    assert sr == sample_rate
    n = int(seconds * sample_rate)
    audio = audio[:n].T
    if audio.shape[1] < n:
        audio = np.pad(audio, ((0, 0), (0, n - audio.shape[1])))
    return np.ascontiguousarray(audio, dtype=np.float32)


@pytest.fixture(scope="session")
def piano_recording(tmp_path_factory) -> np.ndarray:
    """About 4 s of a rendered acoustic grand piano playing a phrase with chords (stereo, 44.1 kHz)."""
    d = tmp_path_factory.mktemp("piano")
    melody = [60, 64, 67, 72, 71, 67, 64, 62, 60, 65, 69, 72]
    notes = [(i * 0.5, 0.45, p, 70 + (i * 7) % 40) for i, p in enumerate(melody)]
    notes += [(0, 2, 48, 60), (2, 2, 53, 60), (4, 2, 55, 60)]
    write_midi(d / "piano.mid", program=0, notes=notes)
    return render_midi(d / "piano.mid", d / "piano.wav", seconds=4.0)
