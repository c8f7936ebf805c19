"""The offline graph: a separator that hears the future, for file renders only.

A model card may name, besides its streaming step graph (live) and its sequence graph (the same
causal network, many frames per call), an *offline graph* (``card["offline"]``, exported by
``factory/export.py --add-offline``): a network trained separately whose masks for frame t look
``context_frames`` frames back *and ahead* (a causal stack and a reverse-time stack, see
``factory/model.py``). Live, the future is not there; offline it is, and it buys better stems
(docs/EVALUATION.md, "The offline graph").

The graph has no state: input planes (T, planes, bins) → stem magnitudes (T, stems, channels,
bins), row t computed from rows t - R … t + R of its input (R = ``context_frames``), with zeros
beyond the input's ends. A song runs in chunks of ``chunk_frames`` estimates, each call given
its chunk plus R frames on either side (fewer at the song's start), so the result equals one
pass over the whole song (tested to float rounding).

:class:`OfflineGraphSeparator` is the engine's drop-in, like the sequence graph's: it answers
for the frame R hops back (a lookahead of R frames, which the engine delays the mixture by and
the offline render compensates), so phase recovery, presets and effect inserts work as they do
with the live model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .batched import SequenceSeparator, chunk_frames_for, load_sequence_session
from .separator import ModelError, Separator

DEFAULT_OFFLINE_CHUNK = 512  # estimates per call: the 2R context frames around them cost ~1.5x


def has_offline_graph(card: dict) -> bool:
    """Whether a model card names an offline graph."""
    return isinstance(card.get("offline"), dict)


class OfflineGraphRunner:
    """The card's offline graph over a song's input planes, in chunks with context.

    ``run_window(planes)``: one call over a window (T, planes, bins) → (T, stems, channels, bins).
    ``run_all(planes)``: a whole song, chunk by chunk, equal to one call over all of it.
    """

    def __init__(self, card_path: Path, card: dict, chunk_frames: int | None = None):
        if not has_offline_graph(card):
            raise ModelError(
                f"model {Path(card_path).stem} has no offline graph: pass --exact, or use a model exported "
                "with `python -m factory.export --add-offline`"
            )
        self.session = load_sequence_session(card_path, card, "offline")
        entry = card["offline"]
        self.context = int(entry["context_frames"])  # checked by separator.check_card
        self.chunk = chunk_frames_for(chunk_frames, entry, DEFAULT_OFFLINE_CHUNK, Path(card_path).stem)
        self.calls = 0

    def reset(self) -> None:
        """Nothing to forget: the graph has no state (each window carries its own context)."""

    def run_window(self, planes: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.session.run(["stems"], {"mag": np.ascontiguousarray(planes, dtype=np.float32)})[0]

    def run_all(self, planes: np.ndarray) -> np.ndarray:
        T, R = planes.shape[0], self.context
        parts = []
        for a in range(0, T, self.chunk):
            b = min(a + self.chunk, T)
            w0, w1 = max(0, a - R), min(T, b + R)
            parts.append(self.run_window(planes[w0:w1])[a - w0 : b - w0])
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


class OfflineGraphSeparator(SequenceSeparator):
    """Drop-in for the engine's separator that runs the card's offline graph.

    Used as :class:`~livedemix.batched.SequenceSeparator` is (``queue_block(block)`` before each
    ``engine.process(block)``); its lookahead is the graph's context R, and the engine's mixture
    history grows to match. The estimate for frame e needs the input up to frame e + R, which
    the engine has just given when it asks for e's (it asks R frames late). The frames of the
    first R answers lie before the song and come back as zeros, as do those before a reset (the
    engine's fall-back restarts the context where it tries the model again).
    """

    def __init__(self, engine, chunk_frames: int | None = None):
        super().__init__(engine, chunk_frames)
        self.lookahead = self.runner.context
        self._zeros = np.zeros((len(self.stems), self.channels, self.bins), np.float32)
        self._start = 0  # the first frame of the current context (the song's start or the last reset)
        self._first = 0  # the frame of self._out[0]
        engine.adopt_separator(self)

    def _make_runner(self, separator: Separator, chunk_frames: int | None):
        return OfflineGraphRunner(separator.card_path, separator.card, chunk_frames)

    def reset(self) -> None:
        """The engine's reset: the context restarts at the next frame the engine asks about."""
        super().reset()
        self._start = None

    def step_spectrum(self, X: np.ndarray) -> np.ndarray:
        """The stems' magnitudes for the frame R hops before the one just given (X)."""
        R = self.lookahead
        t = self.engine.stats.frames - 1  # the engine's index of this frame, from the song's start
        if self._start is None:
            self._start = t
        self._song_frames = t + 1
        e = t - R  # the frame answered for
        # Keep the queue from the oldest frame a later window can need.
        self._done = max(self._start, e - R + 1) - self._dropped
        if e < self._start:
            return self._zeros
        if not self._first <= e < self._first + len(self._out):
            tail = self._dropped + self._tail  # frames queued so far
            n = min(self.runner.chunk, tail - R - e)
            if n <= 0:
                raise RuntimeError("the engine asked for a frame that was not queued: call queue_block(block) first")
            w0 = max(self._start, e - R)
            window = self._queue[w0 - self._dropped : e + n + R - self._dropped]
            self._out = self.runner.run_window(window)[e - w0 : e - w0 + n]
            self._first = e
            self.calls += 1
        return self._out[e - self._first]
