"""Reading and writing audio files without surprises.

- Reading: WAV/FLAC/OGG/MP3 and the rest of libsndfile's formats, streamed in blocks; a
  missing, unreadable, corrupt or empty file raises :class:`AudioFileError` with one sentence
  that names the file and what to do.
- Writing: :class:`AtomicOutputs` writes every output to a hidden temporary name in the target
  folder and renames them all only when the job succeeded, all or nothing (a rename that fails
  puts the old files back); on failure or an interrupt the temporaries, and a song folder it
  created, are deleted, so a crash never leaves half-written stems that look complete.
- Stems never clip silently: WAV is written as 32-bit float (a stem may exceed full scale and
  survives intact); FLAC, an integer format, gets one peak-safe gain for every output of the
  song (so the stems still add up to the mix), and :attr:`AtomicOutputs.gain_db` reports it.
- Inputs are checked before anything is read: regular files only (a FIFO would hang, a device
  never ends), at most :data:`MAX_CHANNELS` channels (a 6 KB header can claim 1,000).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import LivedemixError

FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}
MAX_CHANNELS = 64  # as livedemix.separate(): more is a mistaken layout or a hostile header
FULL_SCALE = 0.999  # the peak an integer file gets after the peak-safe gain (24-bit: no clipping)


class AudioFileError(LivedemixError):
    """A file that can't be read or written; the message names the file and the fix."""


def open_input(path: str | Path) -> sf.SoundFile:
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file: check the path")
    if path.is_dir():
        raise AudioFileError(f"{path} is a folder, not an audio file: pass the files inside it")
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would hang the open, /dev/zero never ends
        raise AudioFileError(f"{path} is not a regular file (a FIFO or a device): pass an audio file")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioFileError(
            f"{path} could not be read as audio ({str(e).splitlines()[0]}): "
            f"use WAV, FLAC, OGG or MP3, or convert it with ffmpeg"
        ) from None
    if f.channels > MAX_CHANNELS:
        f.close()
        raise AudioFileError(
            f"{path} claims {f.channels} channels, more than the {MAX_CHANNELS} livedemix separates: "
            "check the file (a damaged header?) or split its channels with sox or ffmpeg"
        )
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


def _new_file(path: Path) -> int:
    """A descriptor of a *new* file at ``path``: O_EXCL and O_NOFOLLOW, so a symlink or file
    planted at the (predictable) temporary name in a shared output folder is never written
    through. A stale temporary of an earlier run with the same process id is removed first."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o666)


class AtomicOutputs:
    """Files written under temporary names, renamed into place by :meth:`commit`.

    Use as a context manager: leaving the block with an exception (a KeyboardInterrupt or the
    SystemExit of a SIGTERM included) removes the temporaries and the folder if this object
    created it. :meth:`commit` is all or nothing: if any rename fails, the outputs already
    renamed are taken back and the files they replaced restored. ``peak``: the largest
    absolute sample written; ``gain_db``: the gain applied to integer formats so that nothing
    clips (0.0 when none was needed; WAV is float and never needs one).
    """

    def __init__(self, folder: Path, names: list[str], fmt: str, sample_rate: int, channels: int):
        if fmt not in FORMATS:
            raise AudioFileError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
        self.folder = Path(folder)
        if self.folder.name == "..":  # a song named "...wav" has the stem "..": OUT/.. is outside OUT
            raise AudioFileError(
                f"the output folder {self.folder} leads out of its parent (the song's name is '..'): rename the file"
            )
        self.fmt = fmt
        self.peak = 0.0
        self.gain_db = 0.0
        self.files = {}
        self._created = []  # folders this object made (removed again on failure, if empty)
        missing = []
        p = self.folder
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AudioFileError(
                f"can't create the output folder {self.folder} ({e.strerror or e}): check the path and its permissions"
            ) from None
        self._created = missing  # deepest first
        self.final = {n: self.folder / f"{n}.{fmt}" for n in names}
        self.temp = {n: self.folder / f".{n}.{fmt}.part-{os.getpid()}" for n in names}
        # Integer formats are written as float first; commit() converts with a peak-safe gain.
        self._float_first = FORMATS[fmt][1] != "FLOAT"
        try:
            for n in names:
                self.files[n] = sf.SoundFile(
                    _new_file(self.temp[n]),
                    "w",
                    sample_rate,
                    channels,
                    subtype="FLOAT",
                    format="WAV" if self._float_first else FORMATS[fmt][0],
                )
        except BaseException as e:
            self.abort()
            if isinstance(e, (sf.LibsndfileError, RuntimeError, OSError)):
                raise AudioFileError(
                    f"can't write in {self.folder} ({str(e).splitlines()[0] if str(e) else e!r}): check its permissions and the free disk space"
                ) from None
            raise

    def write(self, blocks: dict[str, np.ndarray]) -> None:
        for n, y in blocks.items():
            if y.shape[1]:
                if y.size:
                    self.peak = max(self.peak, float(np.max(np.abs(y))))
                try:
                    self.files[n].write(y.T)
                except (sf.LibsndfileError, RuntimeError, OSError) as e:
                    raise AudioFileError(
                        f"writing {self.final[n]} failed ({str(e).splitlines()[0] if str(e) else e!r}): "
                        "free some disk space or choose another -o folder"
                    ) from None

    def _finish_temp(self, n: str) -> None:
        """Close the temporary (converting float → the integer format with the peak-safe gain)
        and fsync it: the data is on disk before the name says it is complete."""
        try:
            self.files[n].close()
            if self._float_first:
                major, subtype = FORMATS[self.fmt]
                gain = 10 ** (self.gain_db / 20)
                src = self.temp[n]
                dst = src.with_name(src.name + ".enc")
                with (
                    sf.SoundFile(str(src)) as fin,
                    sf.SoundFile(
                        _new_file(dst), "w", fin.samplerate, fin.channels, subtype=subtype, format=major, closefd=True
                    ) as fout,
                ):
                    for block in fin.blocks(65536, dtype="float32", always_2d=True):
                        fout.write(block * gain if gain != 1.0 else block)
                os.replace(dst, src)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioFileError(
                f"writing {self.final[n]} failed ({str(e).splitlines()[0] if str(e) else e!r}): "
                "free some disk space or choose another -o folder"
            ) from None
        fd = os.open(self.temp[n], os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self) -> list[Path]:
        if self._float_first and self.peak > FULL_SCALE:
            import math

            self.gain_db = 20 * math.log10(FULL_SCALE / self.peak)
        for n in self.files:
            self._finish_temp(n)
        for n, final in self.final.items():  # a blocked target fails before anything moves
            if final.is_dir() and not final.is_symlink():
                raise AudioFileError(f"{final} is a folder: remove or rename it, or choose another -o folder")
        pid = os.getpid()
        backups: dict[str, Path] = {}
        moved: list[str] = []
        try:
            for n, final in self.final.items():
                if os.path.lexists(final):
                    backups[n] = final.with_name(f".{final.name}.old-{pid}")
                    os.replace(final, backups[n])
                os.replace(self.temp[n], final)
                moved.append(n)
        except BaseException:
            for n in reversed(moved):  # take back what was renamed, put the old files back
                try:
                    os.replace(self.final[n], self.temp[n])
                except OSError:
                    pass
            for n, bak in backups.items():
                try:
                    os.replace(bak, self.final[n])
                except OSError:
                    pass
            raise
        for bak in backups.values():
            bak.unlink(missing_ok=True)
        try:
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
        self.files = {}
        self._created = []
        return list(self.final.values())

    def abort(self) -> None:
        for n, f in self.files.items():
            try:
                f.close()
            except Exception:  # noqa: BLE001 — a full disk may fail the close; the file goes anyway
                pass
        for n in self.temp:
            self.temp[n].unlink(missing_ok=True)
            self.temp[n].with_name(self.temp[n].name + ".enc").unlink(missing_ok=True)
        self.files = {}
        for d in self._created:  # deepest first; only if still empty
            try:
                d.rmdir()
            except OSError:
                break
        self._created = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or self.files:
            self.abort()
        return False
