"""Reading and writing audio files without surprises.

- Reading: WAV/FLAC/OGG/MP3 and the rest of libsndfile's formats, streamed in blocks; a
  missing, unreadable, corrupt or empty file raises :class:`AudioFileError` with one sentence
  that names the file and what to do.
- Writing: :class:`AtomicOutputs` writes every output to a hidden temporary name in the target
  folder and renames them all only when the job succeeded; on failure the temporaries are
  deleted, so a crash never leaves half-written stems that look complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import LivedemixError

FORMATS = {"wav": ("WAV", "PCM_24"), "flac": ("FLAC", "PCM_24")}


class AudioFileError(LivedemixError):
    """A file that can't be read or written; the message names the file and the fix."""


def open_input(path: str | Path) -> sf.SoundFile:
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file: check the path")
    if path.is_dir():
        raise AudioFileError(f"{path} is a folder, not an audio file: pass the files inside it")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(
            f"{path} could not be read as audio ({str(e).splitlines()[0]}): "
            f"use WAV, FLAC, OGG or MP3, or convert it with ffmpeg"
        ) from None
    if f.frames == 0:
        f.close()
        raise AudioFileError(f"{path} contains no audio (0 samples): pass a file with sound in it")
    if f.samplerate < 8000 or f.samplerate > 384000:
        f.close()
        raise AudioFileError(
            f"{path} has an unsupported sample rate of {f.samplerate} Hz: "
            f"resample it to between 8 and 384 kHz (e.g. 44100 Hz)"
        )
    return f


def read_blocks(f: sf.SoundFile, block: int = 65536):
    """Yield float32 (channels, n) blocks; a read error mid-file becomes an AudioFileError."""
    while True:
        try:
            data = f.read(block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioFileError(
                f"{f.name} is corrupt after {f.tell()} samples ({e}): re-encode or re-download it"
            ) from None
        if data.shape[0] == 0:
            return
        yield np.ascontiguousarray(data.T)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Whole file as float32 (channels, n) and its rate."""
    with open_input(path) as f:
        parts = list(read_blocks(f))
        return np.concatenate(parts, axis=1), f.samplerate


class AtomicOutputs:
    """Files written under temporary names, renamed into place by :meth:`commit`.

    Use as a context manager: leaving the block with an exception removes the temporaries.
    """

    def __init__(self, folder: Path, names: list[str], fmt: str, sample_rate: int, channels: int):
        if fmt not in FORMATS:
            raise AudioFileError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        major, subtype = FORMATS[fmt]
        self.final = {n: self.folder / f"{n}.{fmt}" for n in names}
        self.temp = {n: self.folder / f".{n}.{fmt}.part-{os.getpid()}" for n in names}
        self.files = {
            n: sf.SoundFile(str(self.temp[n]), "w", sample_rate, channels, subtype=subtype, format=major) for n in names
        }

    def write(self, blocks: dict[str, np.ndarray]) -> None:
        for n, y in blocks.items():
            if y.shape[1]:
                self.files[n].write(y.T)

    def commit(self) -> list[Path]:
        for n, f in self.files.items():
            f.close()
            fd = os.open(self.temp[n], os.O_RDONLY)
            try:
                os.fsync(fd)  # the data is on disk before the name says it is complete
            finally:
                os.close(fd)
        for n in self.files:
            os.replace(self.temp[n], self.final[n])
        self.files = {}
        return list(self.final.values())

    def abort(self) -> None:
        for n, f in self.files.items():
            try:
                f.close()
            finally:
                self.temp[n].unlink(missing_ok=True)
        self.files = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or self.files:
            self.abort()
        return False
