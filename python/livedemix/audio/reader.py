"""Reads an audio file ahead of the stream into a lock-free ring, at the model's rate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from .. import dsp

READ_AHEAD = 1 << 16  # samples the file reader keeps ahead (1.5 s at 44.1 kHz)


class FileReader(threading.Thread):
    """Reads a file ahead into a ring at the model's rate (resampling with soxr when the file's
    rate differs), as stereo (mono is doubled, channels past two are dropped)."""

    def __init__(self, path: str | Path, model_rate: int, capacity: int = READ_AHEAD):
        super().__init__(name="livedemix-reader", daemon=True)
        from .files import open_input

        self.file = open_input(path)
        self.path = Path(path)
        self.file_rate = self.file.samplerate
        self.file_channels = self.file.channels
        self.model_rate = model_rate
        self.ring = dsp.AudioRingBuffer(2, capacity)
        self.pushed = 0  # model-rate samples in the ring so far
        self.eof = False
        self.error: Exception | None = None
        self._halt = threading.Event()
        self.seconds = self.file.frames / self.file_rate
        self._rs = None
        if self.file_rate != model_rate:
            import soxr

            self._rs = soxr.ResampleStream(self.file_rate, model_rate, 2, dtype="float32", quality="VHQ")

    def stop(self) -> None:
        self._halt.set()

    def _push_all(self, x: np.ndarray) -> bool:
        x = np.ascontiguousarray(x, np.float32)
        done = 0
        while done < x.shape[1]:
            if self._halt.is_set():
                return False
            k = self.ring.push(x[:, done:])
            done += k
            if done < x.shape[1]:
                time.sleep(0.005)
        self.pushed += x.shape[1]
        return True

    def run(self) -> None:
        from .files import read_blocks

        try:
            for blk in read_blocks(self.file, 4096):
                if blk.shape[0] == 1:
                    blk = np.repeat(blk, 2, axis=0)
                elif blk.shape[0] > 2:
                    blk = blk[:2]
                if self._rs is not None:
                    blk = self._rs.resample_chunk(np.ascontiguousarray(blk.T)).T
                if not self._push_all(blk):
                    return
            if self._rs is not None:
                if not self._push_all(self._rs.resample_chunk(np.zeros((0, 2), np.float32), last=True).T):
                    return
        except Exception as e:  # noqa: BLE001 — reported by the main thread
            self.error = e
        finally:
            self.file.close()
            self.eof = True

    def wait_ready(self, samples: int, timeout: float = 10.0) -> None:
        t_end = time.monotonic() + timeout
        while self.ring.available_read < samples and not self.eof and time.monotonic() < t_end:
            time.sleep(0.002)
