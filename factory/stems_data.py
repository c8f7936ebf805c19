"""Songs as stems for training and evaluation, from any folder in the layout

    <root>/<split>/<song>/{mixture,vocals,drums,bass,other}.{flac,wav}

which is both the livedemix corpus's layout (splits train/valid/test) and MUSDB18-HQ's
(splits train/test). Songs are kept in memory as int16 (a 2-hour training set is ~2.5 GB),
and training examples are made on the fly with the augmentations of Open-Unmix and Demucs:
random excerpts, stems remixed across songs, random gains per stem, channel swaps.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from livedemix import STEMS


@dataclass
class Song:
    name: str
    stems: np.ndarray  # int16 (J, 2, n), scaled by 1/32768 when used
    sample_rate: int

    @property
    def frames(self) -> int:
        return self.stems.shape[-1]


def _read_stem(path: Path) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.T
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    return audio[:2], sr


def find_songs(root: Path, split: str) -> list[Path]:
    d = Path(root) / split
    if not d.is_dir():
        raise FileNotFoundError(f"no '{split}' split under {root}: expected {root}/{split}/<song>/<stem>.flac|wav")
    return sorted(p for p in d.iterdir() if p.is_dir())


def load_song(song_dir: Path, stems=STEMS) -> Song:
    arrays, rate = [], None
    for s in stems:
        files = [song_dir / f"{s}{ext}" for ext in (".flac", ".wav")]
        path = next((f for f in files if f.exists()), None)
        if path is None:
            raise FileNotFoundError(f"{song_dir} has no {s}.flac or {s}.wav")
        a, sr = _read_stem(path)
        if rate not in (None, sr):
            raise ValueError(f"{path} is at {sr} Hz but the other stems are at {rate} Hz")
        rate = sr
        arrays.append(a)
    n = min(a.shape[1] for a in arrays)
    stacked = np.stack([a[:, :n] for a in arrays])
    return Song(song_dir.name, np.round(np.clip(stacked, -1, 1 - 1 / 32768) * 32768).astype(np.int16), rate)


def load_split(root: Path, split: str, limit: int | None = None, cache: Path | None = None) -> list[Song]:
    """Songs of a split. With ``cache``, each song is decoded once to ``<cache>/<split>/<song>.npy``
    and memory-mapped: runs side by side on one machine then share one copy in the page cache."""
    dirs = find_songs(root, split)
    if limit:
        dirs = dirs[:limit]
    if cache is None:
        return [load_song(d) for d in dirs]
    songs = []
    for d in dirs:
        path = Path(cache) / split / f"{d.name}.npy"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            song = load_song(d)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, song.stems)
            os.replace(tmp, path)
        rate = sf.info(str(next(d.glob("vocals.*")))).samplerate
        songs.append(Song(d.name, np.load(path, mmap_mode="r"), rate))
    return songs


def load_splits(roots: list[Path], split: str, limit: int | None = None, cache: Path | None = None) -> list[Song]:
    """A split of several stems folders, in the order given (``limit`` counts over all of them).
    Songs are named ``<folder>/<song>`` when there is more than one folder, so names and cache
    files from different corpora cannot collide."""
    roots = list(roots)
    if len(roots) == 1:
        return load_split(roots[0], split, limit, cache)
    songs: list[Song] = []
    for root in roots:
        left = None if not limit else limit - len(songs)
        if left == 0:
            break
        sub = load_split(root, split, left, None if cache is None else Path(cache) / Path(root).name)
        songs += [Song(f"{Path(root).name}/{s.name}", s.stems, s.sample_rate) for s in sub]
    return songs


class ExampleSampler:
    """Draws training examples (J, 2, length) float32 stems; the mixture is their sum."""

    def __init__(
        self,
        songs: list[Song],
        length: int,
        *,
        remix_prob=0.5,
        gain_range=(0.25, 1.25),
        swap_prob=0.5,
        silent_ok_prob=0.1,
    ):
        self.songs = [s for s in songs if s.frames > length]
        if not self.songs:
            raise ValueError(f"no song is longer than {length} samples")
        self.length = length
        self.remix_prob = remix_prob
        self.gain_range = gain_range
        self.swap_prob = swap_prob
        self.silent_ok_prob = silent_ok_prob

    def _excerpt(self, rng, song: Song, j: int) -> np.ndarray:
        # Prefer excerpts where the stem is audible: a few tries, then accept what we have.
        for _ in range(4):
            start = int(rng.integers(0, song.frames - self.length))
            x = song.stems[j, :, start : start + self.length]
            if np.abs(x).max() > 100 or rng.random() < self.silent_ok_prob:
                break
        return x.astype(np.float32) / 32768.0

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        J = self.songs[0].stems.shape[0]
        out = np.empty((J, 2, self.length), np.float32)
        base = self.songs[int(rng.integers(len(self.songs)))]
        remix = rng.random() < self.remix_prob
        for j in range(J):
            song = self.songs[int(rng.integers(len(self.songs)))] if remix else base
            x = self._excerpt(rng, song, j)
            x = x * rng.uniform(*self.gain_range)
            if rng.random() < self.swap_prob:
                x = x[::-1]
            out[j] = x
        # keep the mixture in range, as a mastering limiter would
        peak = np.abs(out.sum(axis=0)).max()
        if peak > 1.0:
            out /= peak
        return out

    def batch(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.stack([self.sample(rng) for _ in range(size)])


class BatchPrefetcher:
    """Draws step s + 1's batch in a background thread while step s trains.

    With more songs than the page cache holds, reading an excerpt from the memory-mapped cache
    waits on the disk (~40 ms per cold 3-second excerpt of the four stems here, 12 of them per
    step, read as 48 per-stem pieces); the copy out of the map (numpy's cast) releases the
    GIL, so the wait overlaps the step's compute.
    Each step's batch comes from its own generator, ``default_rng([seed, step])``, which is
    returned with the batch for the step's further draws: the batches are those of drawing in
    line, whatever the timing."""

    def __init__(self, sampler: ExampleSampler, size: int, seed: int):
        self.sampler, self.size, self.seed = sampler, size, seed
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self.next_step, self.next = None, None  # the step being drawn ahead, and its future

    def _draw(self, step: int):
        rng = np.random.default_rng([self.seed, step])
        return self.sampler.batch(rng, self.size), rng

    def get(self, step: int):
        """(batch, rng) of this step; starts drawing the next step's."""
        got = self.next.result() if self.next_step == step else self._draw(step)
        self.next_step, self.next = step + 1, self.pool.submit(self._draw, step + 1)
        return got

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
