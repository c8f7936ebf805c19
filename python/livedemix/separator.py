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
from pathlib import Path

import numpy as np

from .errors import LivedemixError

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "default"


class ModelError(LivedemixError):
    """A model that can't be used; the message says why and what to do."""


def resolve_model(model: str | Path | None) -> Path:
    """Path of a model card from None (the shipped default), a shipped name, a card path or a
    directory holding one card."""
    if model is None:
        model = DEFAULT_MODEL
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


def load_card(card_path: Path) -> dict:
    try:
        card = json.loads(Path(card_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(
            f"model card {card_path} can't be read ({e}): re-export the model with `python -m factory.export`"
        ) from None
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
            raise ModelError(
                f"model card {card_path} has no '{key}': re-export the model with `python -m factory.export`"
            )
    return card


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (the model card's `onnx_sha256`)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# The input planes a model may read after the channels' magnitudes (factory/model.py trains them):
EXTRA_PLANES = {
    "side": "the side signal's magnitude |X_L - X_R| / 2 (a spatial cue)",
}


def input_planes_of(X: np.ndarray, extra: tuple | list = ()) -> np.ndarray:
    """The network's input planes (frames, channels + len(extra), bins) float32 from the
    mixture's spectra X (frames, channels, bins) complex, as the separator computes them frame
    by frame."""
    X = np.asarray(X, np.complex64)
    planes = [np.abs(X)]
    for name in extra:
        if name == "side":
            planes.append(np.abs(X[:, :1] - X[:, 1:2]) * 0.5)
        else:
            raise ModelError(f"unknown input plane {name!r}")
    return np.concatenate(planes, axis=1).astype(np.float32)


class Separator:
    """Streaming stem-magnitude estimator.

    ``Separator(model=None, stft=None, sample_rate=None)``: ``model`` as for
    :func:`resolve_model`; ``stft`` (a :class:`livedemix.dsp.StftConfig`) and ``sample_rate``,
    when given, must match the card. ``step(mag)`` takes the network's input for one mixture
    frame, float32 (input planes, bins): |X| of each channel, then the card's
    ``extra_input_planes`` (see ``EXTRA_PLANES``); it returns the stems' magnitudes (stems,
    channels, bins) for the frame ``lookahead`` frames back, in an internal array that the next
    call overwrites. ``step_spectrum(X)`` does the same from the complex frame (channels, bins),
    computing the input planes in place (no allocation), and ``inputs_of`` for whole spectra.
    """

    def __init__(self, model: str | Path | None = None, stft=None, sample_rate: int | None = None, warmup: int = 16):
        import onnxruntime as ort

        self.card_path = resolve_model(model)
        card = self.card = load_card(self.card_path)
        onnx_path = self.card_path.parent / card["onnx_file"]
        if not onnx_path.exists():
            raise ModelError(
                f"model file {onnx_path} named by card {self.card_path.name} is missing: re-export the model"
            )
        digest = sha256_of(onnx_path)
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
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

        self.stems = tuple(card["stems"])
        self.lookahead = int(card["lookahead_frames"])
        self.channels = int(card["outputs"]["stems"][2])
        self.bins = int(card["inputs"]["mag"][2])
        self.extra_planes = tuple(card.get("extra_input_planes", ()))
        unknown = [p for p in self.extra_planes if p not in EXTRA_PLANES]
        if unknown:
            raise ModelError(
                f"model card {self.card_path.name} asks for input planes {unknown} that this livedemix "
                f"does not compute (it knows {sorted(EXTRA_PLANES)}): upgrade livedemix or use another model"
            )
        self.input_planes = int(card["inputs"]["mag"][1])
        if self.input_planes != self.channels + len(self.extra_planes):
            raise ModelError(
                f"model card {self.card_path.name} gives {self.input_planes} input planes for "
                f"{self.channels} channels and {len(self.extra_planes)} extra plane(s): "
                "re-export the model with `python -m factory.export`"
            )
        self._mag = np.zeros(card["inputs"]["mag"], np.float32)
        self._diff = np.zeros(self.bins, np.complex64)  # X_L - X_R, for the side plane
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
        for _ in range(warmup):
            self.session.run_with_iobinding(self._bindings[0])
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
        """One frame: the input planes (planes, bins) float32, |X| for a model without extra
        planes → stem magnitudes (stems, channels, bins)."""
        self._mag[0] = mag
        return self._run()

    def _run(self) -> np.ndarray:
        """Run the step on the bound input; the states swap bindings each call."""
        self.session.run_with_iobinding(self._bindings[self._parity])
        self._parity ^= 1
        return self._out[0]

    def step_spectrum(self, X: np.ndarray) -> np.ndarray:
        """One frame from its spectrum X (channels, bins) complex64: the input planes are
        computed into the bound input array (no allocation), then as ``step``."""
        mag = self._mag[0]
        C = self.channels
        np.abs(X, out=mag[:C])
        for k, name in enumerate(self.extra_planes):
            plane = mag[C + k]
            if name == "side":  # the only one so far (EXTRA_PLANES)
                np.subtract(X[0], X[1], out=self._diff)
                np.abs(self._diff, out=plane)
                plane *= 0.5
        return self._run()

    def inputs_of(self, X: np.ndarray) -> np.ndarray:
        """Offline: the network's input planes (frames, planes, bins) float32 from the mixture's
        spectra X (frames, channels, bins) complex (what ``step_spectrum`` computes per frame)."""
        return input_planes_of(X, self.extra_planes)

    def run(self, mags: np.ndarray) -> np.ndarray:
        """Offline convenience: input planes (frames, planes, bins), see ``inputs_of`` (for a
        model without extra planes, |X|) → (frames, stems, channels, bins), frame by frame
        through the same streaming step (frame t's estimate is in row t + lookahead)."""
        mags = np.asarray(mags, np.float32)
        out = np.empty((mags.shape[0], len(self.stems), self.channels, self.bins), np.float32)
        for t in range(mags.shape[0]):
            out[t] = self.step(mags[t])
        return out
