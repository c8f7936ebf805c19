"""The separator runtime: runs a streaming ONNX step model with onnxruntime, one frame a call.

A model is an ONNX file plus its card (JSON, see factory/export.py). `Separator` refuses a model
whose card is missing, whose ONNX file's sha256 differs from the card, or whose STFT or sample
rate differs from the engine's, with one sentence that says which. It runs onnxruntime the way
a per-block audio call needs: one intra-op thread, sequential execution, no spinning threads,
inputs/outputs/states bound once to pre-allocated arrays (two bindings that swap the state
arrays each step, so the new state is never copied), and a warm-up at load.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .errors import LivedemixError
from .phase import MODES
from .validate import (
    MAX_CARD_BYTES,
    MAX_DEPTH,
    check_identifier,
    confined,
    depth_of,
    read_bounded,
    read_text_bounded,
    safe_relative_name,
    short_repr,
)

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "default"


class ModelError(LivedemixError):
    """A model that can't be used; the message says why and what to do."""


def resolve_model(model: str | Path | None, *, shipped_only: bool = False) -> Path:
    """Path of a model card from None (the shipped default), a shipped name, a card path or a
    directory holding one card. ``shipped_only``: the name came from untrusted data (a preset's
    ``[engine] model``), so only a shipped model's name is accepted (docs/SECURITY.md)."""
    if model is None:
        model = DEFAULT_MODEL
    if shipped_only:
        check_identifier(model, "the preset's model", ModelError)
        shipped = MODELS_DIR / f"{model}.json"
        if not shipped.exists():
            available = ", ".join(sorted(c.stem for c in MODELS_DIR.glob("*.json"))) or "none"
            raise ModelError(
                f"the preset's model {model!r} is not a shipped model ({available}): "
                "a preset may only name shipped models; pass another model card with --model"
            )
        return shipped
    p = Path(model)
    if p.suffix == ".json" and p.exists():
        return p
    if p.is_dir():
        cards = sorted(p.glob("*.json"))
        if len(cards) != 1:
            raise ModelError(f"model directory {p} holds {len(cards)} model cards (*.json): point to one card file")
        return cards[0]
    shipped = MODELS_DIR / f"{model}.json"
    if shipped.exists():
        return shipped
    if p.suffix == ".onnx":
        raise ModelError(
            f"model card {p.with_suffix('.json')} is missing: export the model with `python -m factory.export`, which writes the card next to the ONNX file"
        )
    available = ", ".join(sorted(c.stem for c in MODELS_DIR.glob("*.json"))) or "none"
    raise ModelError(
        f"model {model!r} not found: give a model card (.json) path, or a shipped model name ({available})"
    )


MAX_STEMS = 16
MAX_TENSOR_ELEMENTS = 1 << 24  # 64 MB of float32 per state tensor; the shipped model's are < 100 KB
MAX_LOOKAHEAD = 64
MAX_CONTEXT_FRAMES = 4096  # an offline graph's frames of past and future (about 24 s at hop 256)


def load_card(card_path: Path) -> dict:
    """The model card, read bounded (regular file, UTF-8, ≤ 1 MB) and with every field the
    runtime uses type-checked (:func:`check_card`): one ModelError sentence for any problem."""
    text = read_text_bounded(card_path, MAX_CARD_BYTES, "model card", ModelError)
    try:
        card = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise ModelError(
            f"model card {card_path} can't be read ({str(e)[:80]}): re-export the model with `python -m factory.export`"
        ) from None
    return check_card(card, card_path)


def check_card(card, card_path: Path | str) -> dict:
    """Type- and range-check a parsed card; returns it. Unknown keys are left alone (newer
    exporters add their own); the ones the runtime reads must be right."""
    where = f"model card {card_path}"
    fix = "re-export the model with `python -m factory.export`"

    def bad(key: str, problem: str):
        raise ModelError(f"{where}: '{key}' {problem}: {fix}")

    if not isinstance(card, dict):
        raise ModelError(f"{where} is a JSON {type(card).__name__}, not an object: {fix}")
    if depth_of(card) > MAX_DEPTH:
        raise ModelError(f"{where} nests more than {MAX_DEPTH} levels deep: {fix}")
    for key in (
        "onnx_file",
        "onnx_sha256",
        "sample_rate",
        "stft",
        "stems",
        "inputs",
        "outputs",
        "state_pairs",
        "lookahead_frames",
    ):
        if key not in card:
            raise ModelError(f"{where} has no '{key}': {fix}")

    def integer(key, value, lo, hi):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            bad(key, f"is {short_repr(value)}, not an integer from {lo} to {hi}")
        return value

    safe_relative_name(card["onnx_file"], f"{where}: 'onnx_file'", ModelError)
    sha = card["onnx_sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        bad("onnx_sha256", f"is {short_repr(sha)}, not 64 lowercase hex digits")
    integer("sample_rate", card["sample_rate"], 8000, 384000)
    stft = card["stft"]
    if not isinstance(stft, dict):
        bad("stft", f"is {short_repr(stft)}, not an object with n_fft, hop and window")
    for k in ("n_fft", "hop"):
        integer(f"stft.{k}", stft.get(k), 16, 1 << 16)
    if not isinstance(stft.get("window"), str):
        bad("stft.window", f"is {short_repr(stft.get('window'))}, not a window name")
    stems = card["stems"]
    if not isinstance(stems, list) or not 1 <= len(stems) <= MAX_STEMS:
        bad("stems", f"is {short_repr(stems)}, not a list of 1 to {MAX_STEMS} stem names")
    for i, name in enumerate(stems):
        check_identifier(name, f"{where}: stem {i + 1}", ModelError)
    if len(set(stems)) != len(stems):
        bad("stems", f"names a stem twice ({', '.join(stems)})")
    integer("lookahead_frames", card["lookahead_frames"], 0, MAX_LOOKAHEAD)

    def shapes(key):
        table = card[key]
        if not isinstance(table, dict):
            bad(key, f"is {short_repr(table)}, not an object of tensor shapes")
        for name, shape in table.items():
            if not isinstance(shape, list) or not 1 <= len(shape) <= 8:
                bad(f"{key}.{name[:40]}", f"is {short_repr(shape)}, not a tensor shape (a list of sizes)")
            n = 1
            for d in shape:
                n *= integer(f"{key}.{name[:40]}", d, 1, MAX_TENSOR_ELEMENTS)
            if n > MAX_TENSOR_ELEMENTS:
                bad(f"{key}.{name[:40]}", f"has {n} elements (at most {MAX_TENSOR_ELEMENTS})")
        return table

    inputs, outputs = shapes("inputs"), shapes("outputs")
    total = sum(math.prod(shape) for table in (inputs, outputs) for shape in table.values())
    if total > 2 * MAX_TENSOR_ELEMENTS:  # the engine allocates these (states twice): bound the sum too
        bad("inputs", f"and outputs hold {total} elements together (at most {2 * MAX_TENSOR_ELEMENTS})")
    mag, out = inputs.get("mag"), outputs.get("stems")
    if mag is None or len(mag) != 3 or mag[0] != 1:
        bad("inputs.mag", f"is {short_repr(mag)}, not [1, planes, bins]")
    if out is None or len(out) != 4 or out[0] != 1 or out[1] != len(stems) or out[3] != mag[2]:
        bad("outputs.stems", f"is {short_repr(out)}, not [1, {len(stems)} stems, channels, {mag[2]} bins]")
    if out[2] > mag[1]:
        bad("outputs.stems", f"gives {out[2]} channels from {mag[1]} input planes")
    pairs = card["state_pairs"]
    if not isinstance(pairs, dict):
        bad("state_pairs", f"is {short_repr(pairs)}, not an object state → state_out")
    for name, out_name in pairs.items():
        if name not in inputs or not isinstance(out_name, str) or out_name not in outputs:
            bad(
                f"state_pairs.{name[:40]}",
                f"pairs {short_repr(name)} with {short_repr(out_name)}, not an input with an output",
            )
        if inputs[name] != outputs[out_name]:
            bad(f"state_pairs.{name[:40]}", f"pairs shapes {inputs[name]} and {outputs[out_name]}")
    extra = card.get("extra_input_planes", [])
    if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
        bad("extra_input_planes", f"is {short_repr(extra)}, not a list of plane names")
    mp = card.get("mask_power")
    for mode, value in mp.items() if isinstance(mp, dict) else [("every mode", mp)]:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.25 <= value <= 8
        ):
            bad("mask_power", f"for {str(mode)[:20]} is {short_repr(value)}, not a number from 0.25 to 8")
    seq = card.get("sequence")
    if seq is not None:  # the offline sequence graph (livedemix.batched): its file is confined too
        if not isinstance(seq, dict):
            bad("sequence", f"is {short_repr(seq)}, not an object")
        safe_relative_name(seq.get("onnx_file"), f"{where}: 'sequence.onnx_file'", ModelError)
    off = card.get("offline")
    if off is not None:  # the offline graph (livedemix.offline_graph): confined, and its shapes the step's
        if not isinstance(off, dict):
            bad("offline", f"is {short_repr(off)}, not an object")
        safe_relative_name(off.get("onnx_file"), f"{where}: 'offline.onnx_file'", ModelError)
        osha = off.get("onnx_sha256")
        if not isinstance(osha, str) or len(osha) != 64 or any(ch not in "0123456789abcdef" for ch in osha):
            bad("offline.onnx_sha256", f"is {short_repr(osha)}, not 64 lowercase hex digits")
        integer("offline.context_frames", off.get("context_frames"), 1, MAX_CONTEXT_FRAMES)
        if "chunk_frames" in off:
            integer("offline.chunk_frames", off["chunk_frames"], 1, 1 << 16)
        want_in, want_out = ["frames", mag[1], mag[2]], ["frames", out[1], out[2], out[3]]
        if not isinstance(off.get("inputs"), dict) or off["inputs"].get("mag") != want_in:
            bad("offline.inputs", f"is {short_repr(off.get('inputs'))}, not {{'mag': {want_in}}} (the step's planes)")
        if not isinstance(off.get("outputs"), dict) or off["outputs"].get("stems") != want_out:
            bad("offline.outputs", f"is {short_repr(off.get('outputs'))}, not {{'stems': {want_out}}}")
    phase = card.get("default_phase", "pu-iter")
    if phase not in MODES:
        bad("default_phase", f"is {short_repr(phase)}, not one of {', '.join(MODES)}")
    return card


def onnx_path_of(card_path: Path, card: dict, name: str | None = None) -> Path:
    """A file the card names (default: its ``onnx_file``), which must lie in the card's own
    folder with symlinks resolved (the sequence graph's file goes through here too)."""
    card_path = Path(card_path)
    name = card["onnx_file"] if name is None else name
    safe_relative_name(name, f"model card {card_path.name}: the ONNX file", ModelError)
    if not confined(name, card_path.parent):
        raise ModelError(
            f"model card {card_path.name} names the ONNX file {short_repr(name)}, which leads outside "
            f"{card_path.parent}: keep the ONNX file next to its card"
        )
    return card_path.parent / name


MAX_ONNX_BYTES = 1 << 30  # the shipped model is ~1 MB


def read_model_bytes(path: Path) -> bytes:
    """An ONNX file's bytes, read once (bounded, regular file): hash these and hand these same
    bytes to onnxruntime (``InferenceSession(bytes)``), never the path."""
    return read_bounded(path, MAX_ONNX_BYTES, "model file", ModelError)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (the model card's `onnx_sha256`)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Separator:
    """Streaming stem-magnitude estimator.

    ``Separator(model=None, stft=None, sample_rate=None)``: ``model`` as for
    :func:`resolve_model`; ``stft`` (a :class:`livedemix.dsp.StftConfig`) and ``sample_rate``,
    when given, must match the card. ``step(mag)`` takes the network's input for one mixture
    frame, |X| of each channel, float32 (channels, bins); it returns the stems' magnitudes (stems,
    channels, bins) for the frame ``lookahead`` frames back, in an internal array that the next
    call overwrites. ``step_spectrum(X)`` does the same from the complex frame (channels, bins),
    taking |X| in place (no allocation), and ``inputs_of`` for whole spectra.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        stft=None,
        sample_rate: int | None = None,
        warmup: int = 16,
        *,
        shipped_only: bool = False,
    ):
        import onnxruntime as ort

        self.card_path = resolve_model(model, shipped_only=shipped_only)
        card = self.card = load_card(self.card_path)
        onnx_path = onnx_path_of(self.card_path, card)
        if not onnx_path.is_file():
            raise ModelError(
                f"model file {onnx_path} named by card {self.card_path.name} is missing: re-export the model"
            )
        model_bytes = read_model_bytes(onnx_path)
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != card["onnx_sha256"]:
            raise ModelError(
                f"model file {onnx_path.name} does not match its card (sha256 {digest[:12]}… instead of "
                f"{card['onnx_sha256'][:12]}…): the file was changed or truncated; re-export or reinstall the model"
            )
        if stft is not None:
            want = card["stft"]
            have = {"n_fft": stft.n_fft, "hop": stft.hop, "window": stft.window}
            diff = [f"{k} {have[k]} vs the model's {want.get(k)}" for k in have if have[k] != want.get(k)]
            if diff:
                raise ModelError(
                    f"model {self.card_path.stem} was trained for a different STFT ({'; '.join(diff)}): "
                    f"use STFT n_fft={want.get('n_fft')}, hop={want.get('hop')}, window={want.get('window')!r} or another model"
                )
        if sample_rate is not None and sample_rate != card["sample_rate"]:
            raise ModelError(
                f"model {self.card_path.stem} runs at {card['sample_rate']} Hz, not {sample_rate} Hz: resample the audio to {card['sample_rate']} Hz"
            )

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.log_severity_level = 3
        try:
            # From the bytes that were hashed: the file can't be swapped between the check and the
            # load, and a graph can't pull "external data" files from elsewhere on the disk.
            self.session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 — InvalidProtobuf, Fail, ... (onnxruntime's own types)
            raise ModelError(
                f"model file {onnx_path.name} is not an ONNX model onnxruntime can load "
                f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}): re-export or reinstall the model"
            ) from None
        names_in = {i.name for i in self.session.get_inputs()}
        names_out = {o.name for o in self.session.get_outputs()}
        missing = sorted((set(card["state_pairs"]) | {"mag"}) - names_in) + sorted(
            (set(card["state_pairs"].values()) | {"stems"}) - names_out
        )
        if missing:
            raise ModelError(
                f"model file {onnx_path.name} has no tensor(s) {', '.join(missing)} that card {self.card_path.name} "
                "names: re-export the model with `python -m factory.export`"
            )

        self.stems = tuple(card["stems"])
        self.lookahead = int(card["lookahead_frames"])
        self.channels = int(card["outputs"]["stems"][2])
        self.bins = int(card["inputs"]["mag"][2])
        if card.get("extra_input_planes"):  # an experiment that never shipped (git tag experiments-before-cleanup)
            raise ModelError(
                f"model card {self.card_path.name} asks for extra input planes (extra_input_planes), which "
                "livedemix does not compute (its models read the channels' magnitudes only): use another model"
            )
        self.input_planes = int(card["inputs"]["mag"][1])
        if self.input_planes != self.channels:
            raise ModelError(
                f"model card {self.card_path.name} gives {self.input_planes} input planes for "
                f"{self.channels} channels (the model reads each channel's magnitude): "
                "re-export the model with `python -m factory.export`"
            )
        # The card's shapes must be the graph's (a fixed dimension that differs would only fail
        # inside onnxruntime at the first run, as a RuntimeError).
        graph = {t.name: t.shape for t in [*self.session.get_inputs(), *self.session.get_outputs()]}
        for name, shape in [*card["inputs"].items(), *card["outputs"].items()]:
            dims = graph.get(name)
            if dims is None:
                continue
            if len(dims) != len(shape) or any(isinstance(d, int) and d != c for d, c in zip(dims, shape)):
                raise ModelError(
                    f"model card {self.card_path.name} gives tensor {name!r} the shape {list(shape)} but the model "
                    f"file's is {[d if isinstance(d, int) else '?' for d in dims]}: re-export the model with "
                    "`python -m factory.export`"
                )
        self._mag = np.zeros(card["inputs"]["mag"], np.float32)
        self._out = np.zeros(card["outputs"]["stems"], np.float32)
        pairs = card["state_pairs"]
        # Two arrays per state: step k reads set k%2 and writes set (k+1)%2.
        self._states = {name: [np.zeros(card["inputs"][name], np.float32) for _ in range(2)] for name in pairs}
        self._bindings = []
        mag_value = ort.OrtValue.ortvalue_from_numpy(self._mag)
        out_value = ort.OrtValue.ortvalue_from_numpy(self._out)
        values = {name: [ort.OrtValue.ortvalue_from_numpy(a) for a in arrs] for name, arrs in self._states.items()}
        for k in range(2):
            b = self.session.io_binding()
            b.bind_ortvalue_input("mag", mag_value)
            b.bind_ortvalue_output("stems", out_value)
            for name, out_name in pairs.items():
                b.bind_ortvalue_input(name, values[name][k])
                b.bind_ortvalue_output(out_name, values[name][1 - k])
            self._bindings.append(b)
        self._values = (mag_value, out_value, values)  # keep the OrtValues alive with the bindings
        self._parity = 0
        try:
            for _ in range(warmup):
                self.session.run_with_iobinding(self._bindings[0])
        except Exception as e:  # noqa: BLE001 — onnxruntime raises plain RuntimeErrors
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(
                f"model {onnx_path.name} can't run with the tensors its card {self.card_path.name} describes "
                f"({first}): re-export the model with `python -m factory.export`"
            ) from None
        self.reset()

    @property
    def output(self) -> np.ndarray:
        """The array that `step` fills: (stems, channels, bins)."""
        return self._out[0]

    def reset(self) -> None:
        """Forget the past: zero every state (call between songs)."""
        for arrs in self._states.values():
            for a in arrs:
                a.fill(0.0)
        self._parity = 0

    def step(self, mag: np.ndarray) -> np.ndarray:
        """One frame: |X| (channels, bins) float32 → stem magnitudes (stems, channels, bins)."""
        self._mag[0] = mag
        return self._run()

    def _run(self) -> np.ndarray:
        """Run the step on the bound input; the states swap bindings each call."""
        self.session.run_with_iobinding(self._bindings[self._parity])
        self._parity ^= 1
        return self._out[0]

    def step_spectrum(self, X: np.ndarray) -> np.ndarray:
        """One frame from its spectrum X (channels, bins) complex64: |X| is taken into the bound
        input array (no allocation), then as ``step``."""
        np.abs(X, out=self._mag[0])
        return self._run()

    @staticmethod
    def inputs_of(X: np.ndarray) -> np.ndarray:
        """Offline: the network's input (frames, channels, bins) float32, |X|, from the mixture's
        spectra X (frames, channels, bins) complex (what ``step_spectrum`` computes per frame)."""
        return np.abs(np.asarray(X, np.complex64)).astype(np.float32)

    def run(self, mags: np.ndarray) -> np.ndarray:
        """Offline convenience: |X| (frames, channels, bins), see ``inputs_of`` → (frames,
        stems, channels, bins), frame by frame through the same streaming step (frame t's
        estimate is in row t + lookahead)."""
        mags = np.asarray(mags, np.float32)
        out = np.empty((mags.shape[0], len(self.stems), self.channels, self.bins), np.float32)
        for t in range(mags.shape[0]):
            out[t] = self.step(mags[t])
        return out
