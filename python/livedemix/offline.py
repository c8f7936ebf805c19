"""Offline separation with the real-time engine: whole arrays or files of any length.

The same :class:`~livedemix.engine.Engine` that runs live does the work, so presets, phase
modes and effect inserts apply as they do live. By default the stems' magnitudes come from the
model's offline graph where its card has one (a network that also hears the future, which live
cannot: livedemix.offline_graph); ``exact=True`` renders exactly the live output. Outputs are latency-compensated (sample ``i`` of a
stem lines up with sample ``i`` of the input) and as long as the input. Any sample rate is
accepted: the audio is resampled to the model's rate with soxr (VHQ) on the way in and back on
the way out. Mono input is separated as a centred stereo signal and folded back to mono;
inputs with more than two channels are separated as pairs (1-2, 3-4, ...; an odd last channel
as mono).

:class:`StreamingSeparation` works chunk by chunk in constant memory (the CLI streams files
through it); :func:`separate` is the one-call form for arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .batched import BATCHED_MODES, SequenceSeparator, has_sequence
from .engine import Engine
from .offline_graph import OfflineGraphSeparator, has_offline_graph
from .presets import Preset, load_preset
from .separator import load_card, resolve_model

MIX = "mix"


def _stem_bus(stem: str) -> str:
    return f"stem:{stem}"


class StreamingSeparation:
    """Feed chunks of a (channels, n) signal, get aligned chunks of every output back.

    Outputs: one per requested stem and, with a preset, ``"mix"`` (the preset's main bus).
    ``feed(chunk)`` → {name: (channels, m)}; ``finish()`` → the rest. Concatenated, each output
    has exactly as many samples as were fed.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        *,
        model=None,
        preset: Preset | str | Path | None = None,
        stems: list[str] | None = None,
        phase: str | None = None,
        block_size: int = 4096,
        exact: bool | None = None,
        chunk_frames: int | None = None,
        engine_cache: dict | None = None,
    ):
        if channels < 1:
            raise ValueError(f"audio needs at least one channel; got {channels}")
        if sample_rate < 8000 or sample_rate > 384000:
            raise ValueError(f"unsupported sample rate {sample_rate} Hz: use audio between 8 kHz and 384 kHz")
        if preset is not None and not isinstance(preset, Preset):
            preset = load_preset(preset)
        self.preset = preset
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.block_size = int(block_size)
        self._pairs = [(c, min(c + 2, channels)) for c in range(0, channels, 2)]
        if stems is None:
            model_ref = model if model is not None else (preset.engine.model if preset else None)
            stems = list(load_card(resolve_model(model_ref))["stems"])
        # exact=None: the card's offline graph where it has one (livedemix.offline_graph), else
        # batched (the sequence graph, many frames per call) where that equals the live render
        # within -100 dB, the wiener mode (livedemix.batched.BATCHED_MODES). exact=False: the
        # sequence graph in every mode; exact=True: the streaming step, bit for bit the live output.
        self._want_batched = None if exact is None else not exact
        self._chunk_frames = chunk_frames
        self._engines = [
            self._cached_engine(engine_cache, k, model, preset, phase, stems) for k in range(len(self._pairs))
        ]
        self.batched = isinstance(self._engines[0].separator, SequenceSeparator)
        sep0 = self._engines[0].separator
        self._live_lookahead = sep0.base.lookahead if self.batched else sep0.lookahead
        self.render = (
            "offline graph"
            if isinstance(self._engines[0].separator, OfflineGraphSeparator)
            else ("batched" if self.batched else "streaming")
        )
        first = self._engines[0]
        self.stems = list(stems)
        self.outputs = self.stems + ([MIX] if preset is not None else [])
        self.model_rate = first.sample_rate
        self.latency = first.latency_samples  # at the model's rate; compensated below
        self._to_skip = self.latency
        self._in_rs = self._out_rs = None
        if self.sample_rate != self.model_rate:
            import soxr

            self._in_rs = soxr.ResampleStream(
                self.sample_rate, self.model_rate, channels, dtype="float32", quality="VHQ"
            )
            self._out_rs = {
                o: soxr.ResampleStream(self.model_rate, self.sample_rate, channels, dtype="float32", quality="VHQ")
                for o in self.outputs
            }
        self._fed = 0  # input samples fed (at the input rate)
        self._emitted = 0  # output samples returned per output (at the input rate)
        self._buf = np.zeros((2, self.block_size), np.float32)
        self._ybuf = np.zeros(len(self.outputs) * 2 * self.block_size, np.float32)

    def _cached_engine(self, cache, k, model, preset, phase, names):
        """An engine for channel pair k; with a cache (a library worker's), one built for an
        earlier song with the same settings is reset and reused: the model loads once."""
        if cache is None:
            return self._make_engine(model, preset, phase, names)
        which_preset = None if preset is None else (str(getattr(preset, "path", "") or "") or id(preset))
        key = (
            k,
            str(model),
            which_preset,
            phase,
            tuple(names),
            self.block_size,
            self._want_batched,
            self._chunk_frames,
        )
        eng = cache.get(key)
        if eng is None:
            if len(cache) >= 16:  # settings changed along the way: don't hoard engines
                cache.clear()
            eng = cache[key] = self._make_engine(model, preset, phase, names)
        else:
            if isinstance(eng.separator, SequenceSeparator):
                eng.separator.restart()
            eng.reset()
        return eng

    def _make_engine(self, model, preset, phase, names):
        buses = [_stem_bus(s) for s in names] + ([MIX] if preset is not None else [])
        eng = Engine(model=model, preset=preset, buses=buses, phase=phase, block_size=self.block_size)
        for s in names:
            if s not in eng.stems:
                raise ValueError(f"no stem {s!r}: the model separates {', '.join(eng.stems)}")
            eng.solo(s, True, bus=_stem_bus(s))
        if preset is not None:
            eng._controls[MIX].load(preset.buses["main"])
            eng._dirty = True
            if preset.buses["main"].inserts:  # the main bus's inserts render on the mix output
                eng.set_bus_inserts(MIX, preset.buses["main"].inserts)
        if self._want_batched is None and has_offline_graph(eng.separator.card):
            OfflineGraphSeparator(eng, self._chunk_frames)  # becomes eng.separator: it hears the future
        else:
            batched = eng.phase.mode in BATCHED_MODES if self._want_batched is None else self._want_batched
            if batched and has_sequence(eng.separator.card):
                SequenceSeparator(eng, self._chunk_frames)  # becomes eng.separator
        eng.reset()  # apply the gains without a ramp
        return eng

    def describe(self) -> dict:
        eng = self._engines[0]
        d = eng.describe()
        # What the live engine would delay by: the offline graph's lookahead is not the live model's.
        live = d["latency_samples"] - (eng.separator.lookahead - self._live_lookahead) * eng.stft_config.hop
        d.update(
            live_latency_samples=live,
            live_latency_ms=1000.0 * live / eng.sample_rate,
            input_rate=self.sample_rate,
            input_channels=self.channels,
            outputs=self.outputs,
            resampled=self._in_rs is not None,
            render=self.render,
        )
        return d

    # ---- processing ---------------------------------------------------------------------
    def _run_engines(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """x at the model's rate (channels, n) → {output: (channels, n)}, delayed by the latency."""
        n = x.shape[1]
        out = {o: np.empty((self.channels, n), np.float32) for o in self.outputs}
        for (c0, c1), eng in zip(self._pairs, self._engines):
            mono = c1 - c0 == 1
            if self.batched:  # the sequence graph sees the whole chunk's frames first
                pair = x[[c0, c0 if mono else c0 + 1]]
                for s in range(0, n, self.block_size):
                    eng.separator.queue_block(pair[:, s : s + self.block_size])
            for s in range(0, n, self.block_size):
                m = min(self.block_size, n - s)
                blk = self._buf[:, :m]
                blk[0] = x[c0, s : s + m]
                blk[1] = x[c0 if mono else c0 + 1, s : s + m]
                y = eng.process(blk, out=self._ybuf[: len(self.outputs) * 2 * m].reshape(len(self.outputs), 2, m))
                for b, o in enumerate(self.outputs):
                    if mono:
                        out[o][c0, s : s + m] = 0.5 * (y[b, 0] + y[b, 1])
                    else:
                        out[o][c0:c1, s : s + m] = y[b]
        return out

    def _align(self, outs: dict[str, np.ndarray], last: bool) -> dict[str, np.ndarray]:
        skip = min(self._to_skip, next(iter(outs.values())).shape[1])
        self._to_skip -= skip
        outs = {o: y[:, skip:] for o, y in outs.items()}
        if self._out_rs is not None:
            outs = {
                o: np.ascontiguousarray(self._out_rs[o].resample_chunk(np.ascontiguousarray(y.T), last=last).T)
                for o, y in outs.items()
            }
        # Never return more than was fed (the flush's tail is zero-padding).
        m = next(iter(outs.values())).shape[1]
        m = min(m, self._fed - self._emitted)
        self._emitted += m
        return {o: y[:, :m] for o, y in outs.items()}

    def feed(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        chunk = np.asarray(chunk, np.float32)
        if chunk.ndim != 2 or chunk.shape[0] != self.channels:
            raise ValueError(f"chunk must be shaped ({self.channels}, n); got {chunk.shape}")
        self._fed += chunk.shape[1]
        if self._in_rs is not None:
            chunk = np.ascontiguousarray(self._in_rs.resample_chunk(np.ascontiguousarray(chunk.T)).T)
        return self._align(self._run_engines(chunk), last=False)

    def finish(self) -> dict[str, np.ndarray]:
        """Flush: push the latency's worth of silence through and return what is left."""
        tail = np.zeros((self.channels, 0), np.float32)
        if self._in_rs is not None:
            tail = np.ascontiguousarray(
                self._in_rs.resample_chunk(np.zeros((0, self.channels), np.float32), last=True).T
            )
        flush = np.concatenate([tail, np.zeros((self.channels, self.latency + self.block_size), np.float32)], axis=1)
        outs = self._align(self._run_engines(flush), last=True)
        missing = self._fed - self._emitted
        if missing > 0:  # resampler rounding: pad the last few samples
            outs = {
                o: np.concatenate([y, np.zeros((self.channels, missing), np.float32)], axis=1) for o, y in outs.items()
            }
            self._emitted += missing
        return outs

    @property
    def stats(self) -> dict:
        st = [e.stats for e in self._engines]
        keys = st[0].__dataclass_fields__
        return {k: sum(getattr(s, k) for s in st) for k in keys}


def separate(
    audio: np.ndarray,
    sample_rate: int,
    *,
    model=None,
    preset=None,
    stems=None,
    phase=None,
    block_size: int = 4096,
    exact: bool | None = None,
    chunk_frames: int | None = None,
) -> dict[str, np.ndarray]:
    """Separate a whole signal. ``audio``: float (channels, samples), or (samples,) for mono.

    Returns {stem: array shaped like ``audio``} (plus ``"mix"`` with a preset), aligned with
    the input and of the same length. ``None`` (default): the model's offline graph where its
    card has one (a network that also hears the next ~0.7 s: better stems, not the live sound;
    livedemix.offline_graph), otherwise as the live model renders with ``False`` in the phase
    modes where that keeps the stems within -100 dB of the live render (``wiener``, the shipped
    model's) and ``True`` in the others, whose peak tracking turns a rounding difference into a
    -40 dB one (docs/LIBRARY.md). ``exact=False``: the live model's sequence graph computes the
    stems' magnitudes many frames per call (equal to the live engine's to float rounding);
    ``exact=True``: frame by frame with the streaming step, bit for bit the live output.
    """
    a = np.asarray(audio, np.float32)
    mono_1d = a.ndim == 1
    if mono_1d:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(
            f"audio must be shaped (channels, samples) or (samples,) and not empty; got shape {np.shape(audio)}"
        )
    if a.shape[0] > 64:
        raise ValueError(
            f"audio has {a.shape[0]} channels: pass it as (channels, samples), e.g. audio.T for soundfile's layout"
        )
    sep = StreamingSeparation(
        sample_rate,
        a.shape[0],
        model=model,
        preset=preset,
        stems=stems,
        phase=phase,
        block_size=block_size,
        exact=exact,
        chunk_frames=chunk_frames,
    )
    parts = {o: [] for o in sep.outputs}
    step = max(block_size, 65536)
    for s in range(0, a.shape[1], step):
        for o, y in sep.feed(a[:, s : s + step]).items():
            parts[o].append(y)
    for o, y in sep.finish().items():
        parts[o].append(y)
    out = {o: np.concatenate(p, axis=1) for o, p in parts.items()}
    return {o: (y[0] if mono_1d else y) for o, y in out.items()}
