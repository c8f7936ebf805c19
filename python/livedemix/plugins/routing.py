"""The engine's insert paths: stems that leave the STFT-domain mixer for their own ISTFT and
LV2 chain, and chains after a bus's mix. :class:`~livedemix.engine.Engine` owns one
:class:`InsertRouting` when its preset (or ``set_stem_inserts``/``set_bus_inserts``) names
inserts, and none otherwise: with no inserts the engine's fast path is untouched.

Per block, after the engine has synthesised each bus from the STFT mixer (in which the stems
with inserts have gain 0):

    stem s:  frames → its own ISTFT → chain → delay to the longest stem chain
    bus b:   ISTFT output → delay by the longest stem chain
             + Σ_s g[b][s] · stem s          (TimeMixer: the same gains, ramped per sample)
             → bus chain → delay to the longest bus chain

so every path is delayed by the same amount, ``latency`` = longest stem chain + longest bus
chain, which the engine adds to ``latency_samples``. Every buffer is allocated here, in the
constructor; ``capture``/``render`` only call the native core.
"""

from __future__ import annotations

import numpy as np

from .. import _core, dsp
from . import Chain, InsertSpec, PluginError


class InsertRouting:
    def __init__(
        self,
        stems: tuple[str, ...],
        buses: tuple[str, ...],
        stem_specs: dict[str, list[InsertSpec]],
        bus_specs: dict[str, list[InsertSpec]],
        cfg,
        channels: int,
        sample_rate: int,
        max_block: int,
        max_frames: int,
        ramp_samples: int,
        live: bool,
    ):
        self.stems, self.buses = stems, buses
        C, F, K = channels, cfg.bins, max_frames
        for name in stem_specs:
            if name not in stems:
                raise PluginError(
                    f"inserts for stem {name!r}, which the model doesn't separate: use one of {', '.join(stems)}"
                )
        self.stem_index = [j for j, s in enumerate(stems) if stem_specs.get(s)]
        self.stem_chains = [Chain(stem_specs[stems[j]], sample_rate, max_block, C) for j in self.stem_index]
        self.bus_chains = [Chain(bus_specs[b], sample_rate, max_block, C) if bus_specs.get(b) else None for b in buses]
        budget = 0.5 if live else 0.0  # live: a plugin over half a block, 3 blocks running, is bypassed
        for ch in self.stem_chains + [c for c in self.bus_chains if c is not None]:
            ch.budget_fraction = budget
        S, B = len(self.stem_index), len(buses)
        self._synths = [dsp.StftSynthesizer(cfg, C, max_block) for _ in range(S)]
        self._frames = np.zeros((max(S, 1), K, C, F), np.complex64)
        self._frame_views = [[self._frames[s, i] for i in range(K)] for s in range(S)]
        self._pushes = [[self._frames[s, :k] for k in range(K + 1)] for s in range(S)]
        self._bufs = np.zeros((max(S, 1), C, max_block), np.float32)
        stem_lat = [c.latency for c in self.stem_chains]
        bus_lat = [c.latency if c is not None else 0 for c in self.bus_chains]
        self.stem_latency = max(stem_lat, default=0)
        self.bus_latency = max(bus_lat, default=0)
        self.latency = self.stem_latency + self.bus_latency
        self._stem_pads = [
            _core.DelayLine(C, self.stem_latency - x) if self.stem_latency - x else None for x in stem_lat
        ]
        self._direct = [_core.DelayLine(C, self.stem_latency) if self.stem_latency else None for _ in buses]
        self._bus_pads = [_core.DelayLine(C, self.bus_latency - x) if self.bus_latency - x else None for x in bus_lat]
        self._mixer = _core.TimeMixer(max(S, 1), B, max(1, int(ramp_samples)))

    # ---- control side --------------------------------------------------------------------
    def apply_gains(self, b: int, gains: list[float], bypassing: bool, stft_mixer) -> None:
        """Stems with inserts leave the STFT mixer (gain 0 there) for the time-domain mixer."""
        for s, j in enumerate(self.stem_index):
            stft_mixer.set_gain(b, j, 0.0)
            self._mixer.set_gain(b, s, 0.0 if bypassing else gains[j])

    def snap(self) -> None:
        self._mixer.snap_to_targets()

    def reset(self) -> None:
        """A new song: ISTFTs and delays cleared, every plugin restarted from its initial state."""
        for syn in self._synths:
            syn.reset()
        for d in self._stem_pads + self._direct + self._bus_pads:
            if d is not None:
                d.reset()
        for ch in self.stem_chains + self.bus_chains:
            if ch is not None:
                ch.activate()

    def recall(self, preset) -> int:
        """A preset recall (Engine.apply_preset): every chain whose plugins are the preset's, in
        order, takes the preset's parameter values (unlisted ones: the plugin's defaults) and
        bypass states. Changing which plugins run needs a new engine (their instances are made
        off the audio path); returns how many chains differed and were left as they are."""
        from . import control_inputs

        differed = 0
        pairs = [(c, preset.stem_inserts.get(self.stems[j], [])) for j, c in zip(self.stem_index, self.stem_chains)]
        pairs += [
            (c, preset.buses[b].inserts if b in preset.buses else [])
            for b, c in zip(self.buses, self.bus_chains)
            if c is not None
        ]
        for chain, specs in pairs:
            if [s.plugin for s in specs] != [s.plugin for s in chain.specs]:
                differed += 1
                continue
            for i, spec in enumerate(specs):
                for sym, port in control_inputs(chain.infos[i]).items():
                    chain.set_param(i, sym, spec.params.get(sym, port["default"]))
                chain.set_bypass(i, spec.bypass)
        return differed

    def chain(self, stem: str | None = None, bus: str | None = None) -> Chain | None:
        if stem is not None:
            j = self.stems.index(stem)
            return self.stem_chains[self.stem_index.index(j)] if j in self.stem_index else None
        return self.bus_chains[self.buses.index(bus)]

    # ---- audio path ----------------------------------------------------------------------
    def capture(self, stem_frames: np.ndarray, i: int) -> None:
        """Frame i of this block: keep the inserted stems' frames (before the mixer)."""
        for s, j in enumerate(self.stem_index):
            self._frame_views[s][i][...] = stem_frames[j]

    def render(self, k: int, out: np.ndarray) -> None:
        """``out`` (B, C, n) holds each bus's ISTFT of the STFT mixer; add the insert paths."""
        n = out.shape[-1]
        for s, chain in enumerate(self.stem_chains):
            buf = self._bufs[s, :, :n]
            syn = self._synths[s]
            if k:
                syn.push(self._pushes[s][k])
            syn.pull_into(buf)
            chain.process(buf)
            pad = self._stem_pads[s]
            if pad is not None:
                pad.process(buf)
        for b in range(len(self.buses)):
            y = out[b]
            d = self._direct[b]
            if d is not None:
                d.process(y)
            for s in range(len(self.stem_chains)):
                self._mixer.mix_add(b, s, self._bufs[s, :, :n], y)
            ch = self.bus_chains[b]
            if ch is not None:
                ch.process(y)
            pad = self._bus_pads[b]
            if pad is not None:
                pad.process(y)

    # ---- reports -------------------------------------------------------------------------
    def describe(self) -> dict:
        return {
            "stems": {self.stems[j]: c.describe() for j, c in zip(self.stem_index, self.stem_chains)},
            "buses": {b: c.describe() for b, c in zip(self.buses, self.bus_chains) if c is not None},
            "latency_samples": self.latency,
        }

    def stats(self) -> dict:
        return {
            "stems": {self.stems[j]: c.stats() for j, c in zip(self.stem_index, self.stem_chains)},
            "buses": {b: c.stats() for b, c in zip(self.buses, self.bus_chains) if c is not None},
        }
