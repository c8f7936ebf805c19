"""Batched offline separation: the model's sequence graph runs many frames per onnxruntime call.

Live, the separator runs its streaming step graph one STFT frame per call. Offline the whole
input is known in advance, so the same weights run as the sequence graph that the model card
names (``card["sequence"]``, exported by ``factory/export.py`` with its own sha256): frames in
chunks of ``chunk_frames``, the causal context (the step's states) carried from one chunk to
the next. Phase recovery and mixing stay the native core's, frame by frame, in the same
:class:`~livedemix.engine.Engine`, so presets and effect inserts apply as they do live.

:class:`SequenceSeparator` stands in for the engine's :class:`~livedemix.separator.Separator`.
Before each ``engine.process(block)`` the feeder calls ``queue_block(block)`` with the same
block: its own STFT analyser (the same native one, so the same frames) turns it into input
planes, and the engine's per-frame ``step_spectrum`` then takes the stems' magnitudes from a
chunk computed in one call. A ``reset`` (the engine's fall-back after a model failure) restarts
the state at the frame where it happens, exactly as the streaming step would. The stems equal
the streaming engine's to float rounding (the matrix products sum in another order; tested
below -100 dB); ``offline.separate(..., exact=True)`` keeps the bit-exact streaming render.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from . import dsp
from .separator import ModelError, Separator, onnx_path_of, read_model_bytes

# Phase modes in which the batched render is the default (offline.separate(exact=None)): their
# stems are a smooth function of the magnitudes, so the graphs' float rounding stays below
# -100 dB. pu-iter and anisotropic pick spectral peaks per frame: a 1e-7 difference can flip a
# pick, and the stems then differ by about -40 dB (pu-iter) or -90 dB (anisotropic), as much as
# the streaming render itself moves when the input is scaled by 1 + 2**-22.
BATCHED_MODES = frozenset({"wiener"})
DEFAULT_CHUNK_FRAMES = 64  # per call; measured fastest on one core (64-128; 256+ leave the cache)

_SESSIONS: dict[tuple, object] = {}  # (path, size, mtime_ns, sha256) -> InferenceSession
_SESSIONS_LOCK = threading.Lock()


def has_sequence(card: dict) -> bool:
    """Whether a model card names a sequence graph (models exported before it existed don't)."""
    return isinstance(card.get("sequence"), dict)


# The graphs a card may name besides its step graph: card key → what messages call it.
GRAPH_KINDS = {"sequence": "sequence graph", "offline": "offline graph"}


def _graph_path(card_path: Path, card: dict, key: str) -> Path:
    kind = GRAPH_KINDS[key]
    entry = card.get(key)
    name = entry.get("onnx_file") if isinstance(entry, dict) else None
    # A card is untrusted data: the graph's file is a plain name beside the card, nothing else.
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ModelError(
            f"model card {card_path.name} names the {kind} {name!r}, which is not a file name beside "
            "the card: re-export the model with `python -m factory.export`"
        )
    if not isinstance(entry.get("onnx_sha256"), str):
        raise ModelError(
            f"model card {card_path.name} gives no sha256 for its {kind}: re-export the model "
            "with `python -m factory.export`"
        )
    return onnx_path_of(card_path, card, name)  # confined to the card's folder, symlinks resolved


def load_sequence_session(card_path: Path, card: dict, key: str = "sequence"):
    """The onnxruntime session of the card's sequence graph (or, with key="offline", its
    offline graph), checked against the card's sha256; one per process and file (a library
    worker loads it once, not per song)."""
    import onnxruntime as ort

    kind = GRAPH_KINDS[key]
    path = _graph_path(Path(card_path), card, key)
    try:
        st = path.stat()
    except OSError:
        raise ModelError(
            f"{kind} {path} named by card {Path(card_path).name} is missing: re-export the model, "
            "or pass --exact to render with the streaming step graph"
        ) from None
    want = card[key]["onnx_sha256"]
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, want)
    with _SESSIONS_LOCK:
        sess = _SESSIONS.get(cache_key)
        if sess is not None:
            return sess
        model_bytes = read_model_bytes(path)  # hashed and loaded from the same bytes (docs/SECURITY.md)
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != want:
            raise ModelError(
                f"{kind} {path.name} does not match its card (sha256 {digest[:12]}… instead of "
                f"{want[:12]}…): the file was changed or truncated; re-export or reinstall the model"
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1  # one core per worker: scale out with --jobs, not threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # EXTENDED, not ALL: ALL's NCHWc layout makes the refiner's small Convs reorder their input and
        # output on every call (measured 7 % slower over 64-frame chunks; -141 dB apart).
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 — InvalidProtobuf, Fail, ... (onnxruntime's own types)
            raise ModelError(
                f"{kind} {path.name} is not an ONNX model onnxruntime can load ({type(e).__name__}): "
                "re-export or reinstall the model, or pass --exact"
            ) from None
        names_in = {i.name for i in sess.get_inputs()}
        names_out = {o.name for o in sess.get_outputs()}
        pairs = card[key].get("state_pairs") or {}
        if not isinstance(pairs, dict):
            pairs = {}
        missing = sorted(({"mag"} | set(pairs)) - names_in) + sorted(({"stems"} | set(pairs.values())) - names_out)
        if missing:
            raise ModelError(
                f"{kind} {path.name} has no tensor(s) {', '.join(map(str, missing))[:200]} that its card "
                "names: re-export the model with `python -m factory.export`"
            )
        _SESSIONS[cache_key] = sess
        return sess


def chunk_frames_for(chunk_frames, entry: dict, default: int, model: str) -> int:
    """Frames per call: the caller's, else the card entry's, else ``default``; checked."""
    if chunk_frames is None:
        chunk_frames = entry.get("chunk_frames", default)
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or not 1 <= chunk_frames <= 1 << 16:
        raise ModelError(
            f"chunk_frames {chunk_frames!r} for model {model} is not an integer from 1 to 65536: "
            f"use {default} (the default)"
        )
    return chunk_frames


class SequenceRunner:
    """The sequence graph over many frames, with the step's states carried between calls.

    ``run(planes)``: input planes (T, planes, bins) float32 → stem magnitudes
    (T, stems, channels, bins), continuing from the previous call's state; ``reset()`` forgets
    the past. ``run_all(planes)`` does a whole song in chunks from a zero state.
    """

    def __init__(self, separator: Separator, chunk_frames: int | None = None):
        card = separator.card
        if not has_sequence(card):
            raise ModelError(
                f"model {separator.card_path.stem} has no sequence graph for batched offline separation: "
                "re-export it with `python -m factory.export --add-sequence CARD`, or pass --exact"
            )
        self.session = load_sequence_session(separator.card_path, card)
        seq = card["sequence"]
        pairs = seq.get("state_pairs")
        ins = seq.get("inputs", {})
        if not isinstance(pairs, dict) or set(pairs) != set(card["state_pairs"]):
            raise ModelError(
                f"model card {separator.card_path.name}: the sequence graph's states differ from the step's: "
                "re-export the model with `python -m factory.export`"
            )
        self.pairs = dict(pairs)
        self.shapes = {name: tuple(card["inputs"][name]) for name in pairs}
        for name, shape in self.shapes.items():
            if tuple(ins.get(name, ())) != shape:
                raise ModelError(
                    f"model card {separator.card_path.name}: the sequence graph's {name} is shaped "
                    f"{ins.get(name)}, the step's {list(shape)}: re-export the model"
                )
        graph = {t.name: t.shape for t in self.session.get_inputs()}
        for name, shape in self.shapes.items():
            dims = graph.get(name, ())
            if len(dims) != len(shape) or any(isinstance(d, int) and d != c for d, c in zip(dims, shape)):
                raise ModelError(
                    f"model card {separator.card_path.name}: the sequence graph's {name} is shaped "
                    f"{[d if isinstance(d, int) else '?' for d in dims]} in the file, {list(shape)} in the card: "
                    "re-export the model with `python -m factory.export`"
                )
        self.chunk = chunk_frames_for(chunk_frames, seq, DEFAULT_CHUNK_FRAMES, separator.card_path.stem)
        self.reset()

    def reset(self) -> None:
        self.states = {name: np.zeros(shape, np.float32) for name, shape in self.shapes.items()}

    def run(self, planes: np.ndarray) -> np.ndarray:
        feeds = {"mag": np.ascontiguousarray(planes, dtype=np.float32), **self.states}
        outs = self.session.run(None, feeds)
        names = [o.name for o in self.session.get_outputs()]
        got = dict(zip(names, outs))
        self.states = {name: got[out] for name, out in self.pairs.items()}
        return got["stems"]

    def run_all(self, planes: np.ndarray) -> np.ndarray:
        self.reset()
        parts = [self.run(planes[s : s + self.chunk]) for s in range(0, planes.shape[0], self.chunk)]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


class SequenceSeparator:
    """Drop-in for the engine's separator in offline renders (see the module docstring).

    ``SequenceSeparator(engine, chunk_frames=None)`` takes the engine's own separator (its card,
    stems and STFT) and replaces it: ``engine.separator`` is this object afterwards. Call
    ``queue_block(block)`` with each block just before ``engine.process(block)``. Frames the engine
    does not ask for (while it passes the mixture through after a model failure) are skipped by
    the engine's frame count, and its reset restarts the state at the next frame it asks for.
    """

    def __init__(self, engine, chunk_frames: int | None = None):
        separator, stft, max_block = engine.separator, engine.stft_config, engine.max_block
        self.engine = engine
        self.base = separator
        self.runner = self._make_runner(separator, chunk_frames)
        self.card, self.card_path = separator.card, separator.card_path
        self.stems, self.lookahead = separator.stems, separator.lookahead
        self.channels, self.bins = separator.channels, separator.bins
        self.extra_planes = tuple(getattr(separator, "extra_planes", ()))
        self._analyzer = dsp.StftAnalyzer(stft, separator.channels, max_block)
        self._frames = np.zeros((self._analyzer.max_frames_per_block, separator.channels, stft.bins), np.complex64)
        self._diff = np.zeros((self._analyzer.max_frames_per_block, stft.bins), np.complex64)
        # Queued input planes: frames [_done, _tail) of _queue are not yet returned to the engine;
        # those before _done are never needed again (a reset restarts at _done).
        self._queue = np.zeros((4 * self.runner.chunk, separator.input_planes, stft.bins), np.float32)
        self._done = self._tail = 0
        self._dropped = 0  # frames removed from the queue's front since the song began
        self._out = np.zeros((0, len(self.stems), self.channels, self.bins), np.float32)
        self._cursor = 0  # next row of _out that step_spectrum returns
        self.calls = 0  # sequence-graph calls (for tests and the bench)
        self._song_frames = 0  # frames of this song (since restart) returned or skipped
        engine.separator = self

    def _make_runner(self, separator: Separator, chunk_frames: int | None):
        return SequenceRunner(separator, chunk_frames)

    @property
    def output(self) -> np.ndarray:
        return self._out[max(self._cursor - 1, 0)]

    def restart(self) -> None:
        """A new song: forget the state, the queue and the analyser's past."""
        self._analyzer.reset()
        self._done = self._tail = self._song_frames = self._dropped = 0
        self.reset()

    def reset(self) -> None:
        """The engine's reset: the network starts from zero state at the next frame, as the
        streaming step would; the frames already queued are recomputed from there."""
        self._out = self._out[:0]
        self._cursor = 0
        self.runner.reset()

    def queue_block(self, block: np.ndarray) -> int:
        """Analyse the block the engine is about to process; returns the frames it yields."""
        k = self._analyzer.process_into(np.ascontiguousarray(block, dtype=np.float32), self._frames)
        if not k:
            return 0
        if self._tail + k > len(self._queue):  # drop the frames already returned, grow if need be
            live = self._tail - self._done
            if live + k > len(self._queue):
                bigger = np.zeros((2 * (live + k),) + self._queue.shape[1:], np.float32)
                bigger[:live] = self._queue[self._done : self._tail]
                self._queue = bigger
            else:
                self._queue[:live] = self._queue[self._done : self._tail]
            self._dropped += self._done
            self._done, self._tail = 0, live
        planes = self._queue[self._tail : self._tail + k]
        X = self._frames[:k]
        C = self.channels
        np.abs(X, out=planes[:, :C])
        for i, name in enumerate(self.extra_planes):
            if name == "side":  # as Separator.step_spectrum computes it (EXTRA_PLANES)
                np.subtract(X[:, 0], X[:, 1], out=self._diff[:k])
                np.abs(self._diff[:k], out=planes[:, C + i])
                planes[:, C + i] *= 0.5
        self._tail += k
        return k

    def step_spectrum(self, X: np.ndarray) -> np.ndarray:
        """The stems' magnitudes for the next queued frame (X is that frame; the queue already
        holds its planes): a chunk of frames is computed in one call when the last is used up."""
        behind = self.engine.stats.frames - 1 - self._song_frames  # the engine's index of this frame
        if behind > 0:  # frames passed through without the model (it is reset before it asks again)
            self._done += behind
            self._song_frames += behind
            self._out = self._out[:0]
            self._cursor = 0
        if self._cursor >= len(self._out):
            n = min(self.runner.chunk, self._tail - self._done)
            if n <= 0:
                raise RuntimeError("the engine asked for a frame that was not queued: call queue_block(block) first")
            self._out = self.runner.run(self._queue[self._done : self._done + n])
            self._cursor = 0
            self.calls += 1
        v = self._out[self._cursor]
        self._cursor += 1
        self._done += 1
        self._song_frames += 1
        return v

    def step(self, mag: np.ndarray) -> np.ndarray:  # pragma: no cover - the engine calls step_spectrum
        raise RuntimeError("SequenceSeparator runs queued frames only: use step_spectrum after queue_block")
