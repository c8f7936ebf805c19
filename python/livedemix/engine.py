"""The block pipeline: mixture in, one stereo signal per bus out, with the stems remixed live.

    input block → STFT → separator step → phase recovery → STFT-domain mixer → ISTFT per bus

One :class:`Engine` instance is one stream. ``process(block)`` accepts any block size up to
``max_block`` and returns each bus's block of the same size, delayed by exactly
``latency_samples``. All arrays are allocated in :meth:`Engine.prepare`; the steady path only
calls the native core (which releases the GIL and allocates nothing) and onnxruntime with
pre-bound buffers.

Controls (`set_gain`, `mute`, `solo`, `set_master`, `apply_preset`) may be called from any
thread. They only record what the user wants; the audio thread reads it at the next block
boundary and hands it to the mixer, whose gains ramp linearly over ≥ 10 ms.

Resilience: if the separator raises, returns non-finite magnitudes, or (with a ``deadline``)
takes too long, the mixer crossfades every bus to the unprocessed mixture (an extra "stem"
slot that carries the mixture frame), the event is counted, and after ``retry_seconds`` the
separator is reset and faded back in. Audio never stops.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import dsp
from .errors import EngineError
from .phase import PhaseRecovery, card_mask_power, default_n_iter
from .presets import BusSettings, Preset, PresetError, console_gains, load_preset
from .separator import Separator

RAMP_SECONDS = 0.010
MAX_BLOCK = 1 << 16  # samples per process() call; the live path uses ≤ 8192, offline 4096
GAIN_DB_MIN, GAIN_DB_MAX = -120.0, 24.0  # a finite gain outside this is a mistake; -inf is "off"


def check_gain_db(db, what: str = "gain") -> float:
    """``db`` as a float if it is a usable gain in dB: -inf (silent) or -120..24; anything else
    (NaN, +inf, 1e308, a string) is one EngineError sentence, raised here on the control
    thread rather than later inside ``process()``."""
    try:
        value = float(db)
    except (TypeError, ValueError):
        raise EngineError(f"{what} {db!r} is not a number: give dB from {GAIN_DB_MIN} to {GAIN_DB_MAX}") from None
    if isinstance(db, bool) or not (value == -math.inf or GAIN_DB_MIN <= value <= GAIN_DB_MAX):
        raise EngineError(
            f"{what} {db!r} dB is out of range: give dB from {GAIN_DB_MIN} to {GAIN_DB_MAX}, or -inf for silence"
        )
    return value


@dataclass
class EngineStats:
    frames: int = 0
    separator_errors: int = 0  # raised
    nonfinite_outputs: int = 0  # returned NaN/Inf
    late_hops: int = 0  # took longer than the deadline
    bypass_frames: int = 0  # frames during which the mixture was passed through
    nonfinite_input_blocks: int = 0


class _BusControl:
    """What the user asked for on one bus (written by control threads, read by the audio thread)."""

    def __init__(self, stems: tuple[str, ...], settings: BusSettings | None = None):
        self.gain_db = {s: 0.0 for s in stems}
        self.mute = {s: False for s in stems}
        self.solo = {s: False for s in stems}
        self.master_db = 0.0
        self.outputs = [1, 2]
        if settings is not None:
            self.load(settings)

    def load(self, b: BusSettings) -> None:
        self.master_db = b.gain_db
        self.outputs = list(b.outputs)
        for name, s in b.stems.items():
            self.gain_db[name], self.mute[name], self.solo[name] = s.gain_db, s.mute, s.solo

    def linear_gains(self, stems) -> list[float]:
        gains = console_gains(self.gain_db, self.mute, self.solo, self.master_db)
        return [gains[s] for s in stems]


class Engine:
    """Real-time stem remixer.

    ``Engine(model=None, preset=None, sample_rate=44100, block_size=256, phase=None, buses=None)``

    - ``model``: a model name or card path (default: the shipped default model, or the preset's).
    - ``preset``: a :class:`~livedemix.presets.Preset`, a shipped preset name or a TOML path.
    - ``phase``: reconstruction mode (``wiener``, ``pu-iter``, ``anisotropic``); default: the
      preset's, else the model card's ``default_phase``.
    - ``mask_power``: exponent of the stems' mask weights ``V_j**p / Σ V**p`` (2 = Wiener);
      default: the preset's, else the power the model card calibrated for the mode.
    - ``buses``: bus names (default: the preset's buses, else ``["main"]``). Each bus has its
      own stem gains, mutes, solos and master gain.
    - ``deadline``: seconds one hop may take before it counts as late and the engine passes the
      mixture through for a while (live use); ``None`` (offline) never gives up on lateness.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        preset: Preset | str | Path | None = None,
        sample_rate: int = 44100,
        block_size: int = 256,
        *,
        phase: str | None = None,
        buses: list[str] | None = None,
        deadline: float | None = None,
        retry_seconds: float = 1.0,
        stft: str | None = None,
        mask_power: float | None = None,
    ):
        if preset is not None and not isinstance(preset, Preset):
            preset = load_preset(preset)
        self.preset = preset
        opts = preset.engine if preset else None
        self.stft_config = dsp.config(stft or (opts.latency if opts else "quality"))
        self.separator = Separator(
            model if model is not None else (opts.model if opts else None),
            stft=self.stft_config,
            sample_rate=sample_rate,
            shipped_only=model is None and opts is not None and opts.model is not None,  # a preset's: untrusted
        )
        self.stems: tuple[str, ...] = self.separator.stems
        if buses is None:
            buses = list(preset.buses) if preset else ["main"]
        if not buses:
            raise ValueError("an engine needs at least one bus: pass buses=['main']")
        self.buses: tuple[str, ...] = tuple(buses)
        self._controls = {b: _BusControl(self.stems, preset.buses.get(b) if preset else None) for b in self.buses}
        self.deadline = deadline
        self.retry_seconds = retry_seconds

        card = self.separator.card
        mode = phase or (opts.phase if opts and opts.phase else None) or card.get("default_phase", "pu-iter")
        n_iter = (opts.n_iter if opts and opts.n_iter else None) or default_n_iter(self.stft_config.hop)
        kappa = opts.kappa if opts else 2.0
        if mask_power is None:
            mask_power = opts.mask_power if opts and opts.mask_power is not None else card_mask_power(card, mode)
        C, F = self.separator.channels, self.stft_config.bins
        self.channels = C
        self.phase = PhaseRecovery(
            len(self.stems),
            C,
            self.stft_config.n_fft,
            self.stft_config.hop,
            mode=mode,
            n_iter=n_iter,
            kappa=kappa,
            mask_power=mask_power,
        )
        self.ramp_frames = max(1, math.ceil(RAMP_SECONDS * sample_rate / self.stft_config.hop))
        # Slot J of the mixer carries the mixture frame itself: the pass-through path.
        self._mixer = dsp.StemMixer(len(self.stems) + 1, len(self.buses), C, F, self.ramp_frames)
        self.sample_rate = sample_rate
        self.stats = EngineStats()
        self._dirty = True
        # Effect inserts (LV2, livedemix.plugins): per stem and per bus, from the preset.
        self._stem_insert_specs = dict(preset.stem_inserts) if preset else {}
        self._bus_insert_specs = {b: preset.buses[b].inserts for b in self.buses if preset and b in preset.buses}
        self._inserts = None
        self.prepare(sample_rate, block_size)

    # ---- set-up --------------------------------------------------------------------------
    def prepare(self, sample_rate: int, max_block: int) -> None:
        """Allocate every buffer for blocks of up to ``max_block`` samples and clear all state."""
        if sample_rate != self.separator.card["sample_rate"]:
            raise ValueError(
                f"the engine runs at the model's {self.separator.card['sample_rate']} Hz, not "
                f"{sample_rate} Hz: resample the audio (livedemix.separate does) or pick a model for that rate"
            )
        if (
            isinstance(max_block, bool)
            or not isinstance(max_block, (int, np.integer))
            or not 1 <= max_block <= MAX_BLOCK
        ):
            raise EngineError(
                f"the block size must be a whole number of samples from 1 to {MAX_BLOCK}; got {max_block!r}: "
                "pass e.g. block_size=4096 (offline) or 256 (live)"
            )
        cfg, C, J, B = self.stft_config, self.channels, len(self.stems), len(self.buses)
        F = cfg.bins
        self.max_block = int(max_block)
        self._analyzer = dsp.StftAnalyzer(cfg, C, self.max_block)
        self._synths = [dsp.StftSynthesizer(cfg, C, self.max_block) for _ in self.buses]
        K = self._analyzer.max_frames_per_block
        L = self.separator.lookahead
        self._frames = np.zeros((K, C, F), np.complex64)
        self._history = np.zeros((L + 1, C, F), np.complex64)  # mixture frames awaiting the lookahead
        self._held = np.zeros((J, C, F), np.float32)  # last good separator output
        self._stems = np.zeros((J + 1, C, F), np.complex64)
        self._mix = np.zeros((B, C, F), np.complex64)
        self._bus_frames = np.zeros((B, K, C, F), np.complex64)
        # Views made once: the steady path then creates no array objects at all.
        self._frame_views = [self._frames[i] for i in range(K)]
        self._bus_frame_views = [[self._bus_frames[b, i] for i in range(K)] for b in range(B)]
        self._bus_pushes = [[self._bus_frames[b, :k] for k in range(K + 1)] for b in range(B)]
        self._mix_views = [self._mix[b] for b in range(B)]
        self._stem_slots = self._stems[:J]
        self._retry_frames = max(1, int(self.retry_seconds * sample_rate / cfg.hop))
        self._build_inserts()
        self.reset()

    def _build_inserts(self) -> None:
        """The insert paths (None without inserts: the STFT-domain mixer is then the whole path)."""
        self._inserts = None
        if any(self._stem_insert_specs.values()) or any(self._bus_insert_specs.values()):
            from .plugins.routing import InsertRouting

            self._inserts = InsertRouting(
                self.stems,
                self.buses,
                self._stem_insert_specs,
                self._bus_insert_specs,
                self.stft_config,
                self.channels,
                self.sample_rate,
                self.max_block,
                self._analyzer.max_frames_per_block,
                self.ramp_frames * self.stft_config.hop,
                live=self.deadline is not None,
            )
        self._dirty = True

    def reset(self) -> None:
        """Clear every state: STFT buffers, separator, phase, pending output, counters; the
        gains jump to their targets (no ramp from the previous song)."""
        self._analyzer.reset()
        for s in self._synths:
            s.reset()
        self.separator.reset()
        self.phase.reset()
        self._history.fill(0)
        self._held.fill(0)
        self._frame_index = 0
        self._bypass_left = 0  # frames left before the separator is tried again
        self._bypassing = False
        self.stats = EngineStats()
        if self._inserts is not None:
            self._inserts.reset()
        self._apply_gains()
        self._mixer.snap_to_targets()
        if self._inserts is not None:
            self._inserts.snap()

    def adopt_separator(self, separator) -> None:
        """Replace the separator with an offline drop-in (livedemix.offline_graph) whose lookahead
        may differ from the model's: the mixture history is resized to it. Before processing."""
        self.separator = separator
        self._history = np.zeros((separator.lookahead + 1, self.channels, self.stft_config.bins), np.complex64)
        self._frame_index = 0

    @property
    def latency_samples(self) -> int:
        """Input-to-output delay of every bus, exact: the STFT round trip plus the model's
        lookahead, plus the longest stem insert chain's and the longest bus insert chain's."""
        extra = self._inserts.latency if self._inserts is not None else 0
        return self.stft_config.latency_samples + self.separator.lookahead * self.stft_config.hop + extra

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    # ---- controls (any thread) ------------------------------------------------------------
    def _bus(self, bus: str) -> _BusControl:
        try:
            return self._controls[bus]
        except (KeyError, TypeError):
            raise EngineError(f"no bus {bus!r}: this engine has {', '.join(self.buses)}") from None

    def _check_stem(self, stem: str) -> str:
        if stem not in self.stems:
            raise EngineError(f"no stem {stem!r}: the model separates {', '.join(self.stems)}")
        return stem

    def set_gain(self, stem: str, db: float, bus: str = "main") -> None:
        """Set a stem's gain on a bus in dB: -120..24, or -inf for silent."""
        self._bus(bus).gain_db[self._check_stem(stem)] = check_gain_db(db, f"the gain of {stem}")
        self._dirty = True

    def mute(self, stem: str, on: bool = True, bus: str = "main") -> None:
        self._bus(bus).mute[self._check_stem(stem)] = bool(on)
        self._dirty = True

    def solo(self, stem: str, on: bool = True, bus: str = "main") -> None:
        self._bus(bus).solo[self._check_stem(stem)] = bool(on)
        self._dirty = True

    def set_master(self, db: float, bus: str = "main") -> None:
        self._bus(bus).master_db = check_gain_db(db, f"the master gain of bus {bus}")
        self._dirty = True

    def state(self, bus: str = "main") -> dict:
        """The bus's controls: {stem: {gain_db, mute, solo}}, plus master_db."""
        c = self._bus(bus)
        d = {s: {"gain_db": c.gain_db[s], "mute": c.mute[s], "solo": c.solo[s]} for s in self.stems}
        d["master_db"] = c.master_db
        return d

    def bus_outputs(self, bus: str) -> list[int]:
        """Output channels (1-based) the preset routes this bus to."""
        return list(self._bus(bus).outputs)

    def apply_preset(self, preset: Preset | str | Path) -> None:
        """Recall a preset's gains, mutes and solos for the buses both have (engine options such
        as the model or the latency point need a new Engine)."""
        if not isinstance(preset, Preset):
            preset = load_preset(preset)
        for name, settings in preset.buses.items():
            if name in self._controls:
                self._controls[name].load(settings)
        if self._inserts is not None:  # the same plugins: their parameters and bypass states
            self._inserts.recall(preset)
        self.preset = preset
        self._dirty = True

    def gain_matrix(self) -> np.ndarray:
        """Linear (buses, stems) gains the user asked for."""
        return np.array([self._controls[b].linear_gains(self.stems) for b in self.buses], np.float32)

    def _apply_gains(self) -> None:
        self._dirty = False
        J = len(self.stems)
        for b, name in enumerate(self.buses):
            gains = self._controls[name].linear_gains(self.stems)
            for j in range(J):
                self._mixer.set_gain(b, j, 0.0 if self._bypassing else gains[j])
            self._mixer.set_gain(b, J, 1.0 if self._bypassing else 0.0)
            if self._inserts is not None:
                self._inserts.apply_gains(b, gains, self._bypassing, self._mixer)

    # ---- audio path -----------------------------------------------------------------------
    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Process one block, float32 (channels, n) with n ≤ max_block, and return the buses'
        output, (buses, channels, n), delayed by ``latency_samples``.

        Returns a new array, unless ``out`` is given: then the output is written there (a
        C-contiguous float32 array of shape (buses, channels, n)), ``out`` is returned, and the
        call allocates nothing (the audio path passes ``out``)."""
        if not isinstance(block, np.ndarray) or block.ndim != 2 or block.dtype.kind not in "fiu":
            raise EngineError(
                f"block must be a real float32 array shaped ({self.channels}, n ≤ {self.max_block}); got "
                + (f"{block.dtype} {block.shape}" if isinstance(block, np.ndarray) else type(block).__name__)
                + ": pass numpy audio (channels, samples)"
            )
        if block.dtype != np.float32 or not block.flags.c_contiguous:
            block = np.ascontiguousarray(block, dtype=np.float32)
        n = block.shape[-1]
        if block.shape[0] != self.channels or n > self.max_block:
            raise EngineError(
                f"block must be float32 shaped ({self.channels}, n ≤ {self.max_block}); "
                f"got shape {block.shape}: split it or call prepare() with a larger max_block"
            )
        B, C = len(self.buses), self.channels
        if out is None:
            out = np.empty((B, C, n), np.float32)
        elif (
            not isinstance(out, np.ndarray)
            or out.dtype != np.float32
            or out.shape != (B, C, n)
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise EngineError(
                f"out must be a writeable C-contiguous float32 array shaped ({B}, {C}, {n}): "
                "allocate it once with numpy.empty and pass it to every call"
            )
        if self._dirty:
            self._apply_gains()
        k = self._analyzer.process_into(block, self._frames)
        for i in range(k):
            self._process_frame(self._frame_views[i], i)
        for b in range(B):
            if k:
                self._synths[b].push(self._bus_pushes[b][k])
            self._synths[b].pull_into(out[b])
        if self._inserts is not None:
            self._inserts.render(k, out)
        self.stats.nonfinite_input_blocks = self._analyzer.nonfinite_blocks
        return out

    def _process_frame(self, X: np.ndarray, i: int) -> None:
        st = self.stats
        st.frames += 1
        L = self.separator.lookahead
        # The separator answers for the frame L hops back: keep mixture frames that long.
        slot = self._frame_index % (L + 1)
        self._history[slot] = X
        Xd = self._history[(self._frame_index - L) % (L + 1)]
        self._frame_index += 1

        J = len(self.stems)
        if self._bypass_left > 0:
            self._bypass_left -= 1
            st.bypass_frames += 1
            if self._bypass_left == 0:  # try again from a clean state
                self.separator.reset()
                self.phase.reset()
                self._bypassing = False
                self._apply_gains()
            V = self._held
        else:
            t0 = time.perf_counter()
            try:
                V = self.separator.step_spectrum(X)
                ok = math.isfinite(float(V.sum()))
                if ok:
                    if V.shape != self._held.shape:  # broadcasting would hide a wrong shape
                        raise EngineError("the separator's output has the wrong shape")
                    self._held[...] = V  # inside the try: a copy that fails is a failure too
                    V = self._held
                else:
                    st.nonfinite_outputs += 1
            except Exception:  # noqa: BLE001 — any failure of the model means: pass the mix through
                st.separator_errors += 1
                ok = False
            if not ok:
                V = self._held
                self._start_bypass()
            if self.deadline is not None and time.perf_counter() - t0 > self.deadline and ok:
                st.late_hops += 1
                self._start_bypass()
        self.phase.process(Xd, V, out=self._stem_slots)
        self._stems[J] = Xd
        if self._inserts is not None:
            self._inserts.capture(self._stems, i)
        self._mixer.process_into(self._stems, self._mix)
        for b in range(len(self.buses)):
            self._bus_frame_views[b][i][...] = self._mix_views[b]

    def _start_bypass(self) -> None:
        self._bypass_left = self._retry_frames
        self._bypassing = True
        self._apply_gains()

    # ---- effect inserts (docs/PLUGINS.md) --------------------------------------------------
    def set_stem_inserts(self, stem: str, specs: list) -> None:
        """Replace a stem's insert chain ([plugins.InsertSpec]; [] removes it). Rebuilds the
        insert paths and resets the engine: call it between songs, not while audio runs."""
        self._replace_inserts(self._stem_insert_specs, self._check_stem(stem), specs)

    def set_bus_inserts(self, bus: str, specs: list) -> None:
        """Replace a bus's insert chain (after its mix); as :meth:`set_stem_inserts`."""
        self._bus(bus)
        self._replace_inserts(self._bus_insert_specs, bus, specs)

    def _replace_inserts(self, table: dict, key: str, specs: list) -> None:
        old = table.get(key)
        table[key] = list(specs)
        try:
            self._build_inserts()
        except Exception:  # a plugin that can't run: keep the chains as they were
            table[key] = old if old is not None else []
            self._build_inserts()
            raise
        finally:
            self.reset()

    def insert_chain(self, *, stem: str | None = None, bus: str = "main"):
        """The :class:`~livedemix.plugins.Chain` of a stem (``stem=``) or else of a bus, or None."""
        if self._inserts is None:
            return None
        if stem is not None:
            return self._inserts.chain(stem=self._check_stem(stem))
        self._bus(bus)
        return self._inserts.chain(bus=bus)

    def _chain_or_fail(self, stem, bus):
        chain = self.insert_chain(stem=stem, bus=bus)
        if chain is None:
            where = f"stem {stem}" if stem is not None else f"bus {bus}"
            raise EngineError(f"the {where} has no inserts: add them in the preset ([[stems.NAME.inserts]])")
        return chain

    def set_insert_param(self, insert: int, param: str, value: float, *, stem: str | None = None, bus: str = "main"):
        """Any thread: set parameter ``param`` of insert ``insert`` (1-based) of a stem's chain
        (``stem=``) or a bus's; clamped to the port's range, applied at the next block."""
        chain = self._chain_or_fail(stem, bus)
        if not 1 <= int(insert) <= len(chain):
            raise EngineError(f"no insert {insert}: that chain has {len(chain)} (numbered from 1)")
        chain.set_param(int(insert) - 1, param, value)

    def set_insert_bypass(self, insert: int, on: bool = True, *, stem: str | None = None, bus: str = "main"):
        """Any thread: bypass (or re-enable) insert ``insert`` (1-based); crossfades over one block."""
        chain = self._chain_or_fail(stem, bus)
        if not 1 <= int(insert) <= len(chain):
            raise EngineError(f"no insert {insert}: that chain has {len(chain)} (numbered from 1)")
        chain.set_bypass(int(insert) - 1, on)

    def insert_stats(self) -> dict:
        """Per chain and slot: blocks run, NaN/Inf and too-slow events, faulted/bypassed state."""
        return self._inserts.stats() if self._inserts is not None else {"stems": {}, "buses": {}}

    # ---- meters (audio thread) -----------------------------------------------------------
    def stem_power_into(self, out: np.ndarray) -> None:
        """Mean |S_j|² over channels and bins of the latest frame's stems, before the mixer
        (so a muted stem still shows), into ``out``: float32 (stems,). Allocates nothing after
        the first call."""
        scratch = getattr(self, "_meter_scratch", None)
        J = len(self.stems)
        if scratch is None or scratch.shape != (J,) + self._stems.shape[1:]:
            scratch = self._meter_scratch = np.zeros((J,) + self._stems.shape[1:], np.float32)
        np.abs(self._stems[:J], out=scratch)
        np.square(scratch, out=scratch)
        scratch.mean(axis=(1, 2), out=out)

    # ---- conveniences ---------------------------------------------------------------------
    def describe(self) -> dict:
        card = self.separator.card
        return {
            "model": self.separator.card_path.stem,
            "stems": list(self.stems),
            "buses": list(self.buses),
            "sample_rate": self.sample_rate,
            "stft": dict(n_fft=self.stft_config.n_fft, hop=self.stft_config.hop, window=self.stft_config.window),
            "phase": self.phase.mode,
            "n_iter": self.phase.n_iter,
            "mask_power": self.phase.mask_power,
            "latency_samples": self.latency_samples,
            "latency_ms": round(self.latency_ms, 2),
            "ramp_ms": round(1000 * self.ramp_frames * self.stft_config.hop / self.sample_rate, 2),
            "model_parameters": card.get("parameters"),
            "inserts": self._inserts.describe() if self._inserts is not None else None,
        }


__all__ = ["Engine", "EngineStats", "PresetError"]
