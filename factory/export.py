"""Export a trained separator to the streaming ONNX step model, the sequence graph and the model card.

    python -m factory.export --checkpoint runs/default/best.pt --out python/livedemix/models --name default
    python -m factory.export --checkpoint factory/checkpoints/default.pt --add-sequence python/livedemix/models/default.json
    python -m factory.export --checkpoint factory/checkpoints/offline.pt --add-offline python/livedemix/models/default.json

The sequence graph (`<name>.seq.onnx`, the card's `sequence` entry with its own sha256) is the
same weights over many frames per call, with the step's states in and out (`SequenceStep`): the
offline path feeds it long chunks and carries the causal context over. `--add-sequence` adds it
to a model exported before it existed, leaving the step graph byte for byte as it was.

The offline graph (`<name>.offline.onnx`, the card's `offline` entry) is a second network, trained
with `--backward`, that also hears the future: offline renders use it (`OfflineGraph`,
livedemix.offline_graph). `--add-offline` puts it beside an existing card.

The ONNX model runs one STFT frame: inputs `mag` (1, C, F) = |X| of the newest mixture frame
and the state tensors (`conv_state`, `mag_state` with lookahead, `feat_state` with the local refiner); outputs `stems`
(1, J, C, F) and the next states (`conv_state_out`, …). The card (JSON) says
everything the runtime checks before it runs the model: sample rate, STFT, stems, feature,
state names and shapes, lookahead, size and cost, training data and scores, and the ONNX
file's sha256.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from livedemix import STEMS
from livedemix.phase import MODES
from livedemix.separator import sha256_of
from torch.nn import functional as F

from .model import ModelConfig, StreamingStep, WaveNetSeparator

CARD_SCHEMA = 1
# Frames per call the runtime feeds the sequence graph by default (offline): long enough that the
# per-call overhead vanishes, short enough that a call's activations stay in cache-sized MBs.
SEQUENCE_CHUNK_FRAMES = 64


class SequenceStep(torch.nn.Module):
    """Many frames of `WaveNetSeparator` per call with the streaming step's explicit state.

    Inputs: mag (T, C, F) (T consecutive frames, any T ≥ 1) and the same states as
    `StreamingStep` (conv_state (1, Σ d, R); then mag_state, feat_state where the model has them); outputs stems
    (T, J, C, F) (row t: what the step would return for the t-th frame) and the states after the
    last frame, in the step's layout. So a song can be fed in chunks with the causal context
    carried over, and a chunk's states can be handed to the step graph and back.

    It takes its weights from a `StreamingStep` (the same fused matrices), so the two graphs
    are the same function up to the summation order of the matrix products.
    """

    def __init__(self, step: StreamingStep):
        super().__init__()
        self.step = step
        self.cfg = step.cfg

    def forward(self, mag: torch.Tensor, conv_state: torch.Tensor, *extra_states: torch.Tensor):
        st, cfg = self.step, self.cfg
        mag_state = extra_states[0] if cfg.lookahead else None
        feat_state = extra_states[-1] if cfg.local else None
        r = cfg.residual
        T = mag.shape[0]
        feat = torch.log1p(mag).reshape(T, -1) * st.in_scale + st.in_bias  # (T, C·F)
        x = F.linear(feat, st.inp_w, st.inp_b)  # (T, R)
        skip = 0
        new_segments = []
        for i, (off, d) in enumerate(st.offsets):
            # The layer's inputs with its d cached ones in front: row t is x(t - d).
            xe = torch.cat([conv_state[0, off : off + d], x], dim=0)  # (d + T, R)
            a = F.linear(torch.cat([xe[:-d], x], dim=1), getattr(st, f"gate_w{i}"), getattr(st, f"gate_b{i}"))
            t, g = a.split(r, dim=1)
            z = torch.tanh(t) * torch.sigmoid(g)
            res, sk = F.linear(z, getattr(st, f"out_w{i}"), getattr(st, f"out_b{i}")).split([r, cfg.skip], dim=1)
            new_segments.append(xe[-d:])
            x = x + res
            skip = skip + sk
        conv_state_out = torch.cat(new_segments, dim=0).unsqueeze(0)
        h = F.relu(F.linear(F.relu(skip), st.head1_w, st.head1_b))  # (T, H)
        logits = F.linear(h, st.head2_w, st.head2_b)  # (T, J·C·F)
        outs = [conv_state_out]
        if cfg.local:
            feat_t = feat.reshape(T, cfg.channels, cfg.bins).permute(1, 2, 0).unsqueeze(0)  # (1, C, F, T)
            window = torch.cat([feat_state, feat_t], dim=3)
            lg = logits.reshape(T, cfg.stems * cfg.channels, cfg.bins).permute(1, 2, 0).unsqueeze(0)
            lg = st.refiner(window, lg, pad_time=False)  # (1, J·C, F, T)
            logits = lg[0].permute(2, 0, 1)
        masks = torch.sigmoid(logits).reshape(T, cfg.stems, cfg.channels, cfg.bins)
        target = mag
        if cfg.lookahead:
            L = cfg.lookahead
            ext = torch.cat([mag_state, mag.permute(1, 2, 0).unsqueeze(0)], dim=3)  # (1, C, F, L + T)
            target = ext[0, :, :, :-L].permute(2, 0, 1)  # frame t - L for output t
            outs.append(ext[..., -L:])
        if cfg.local:
            outs.append(window[..., -(cfg.local_frames - 1) :])
        return (masks * target.unsqueeze(1), *outs)


def export_sequence_model(net: WaveNetSeparator, out_dir: Path, name: str) -> dict:
    """Write `<name>.seq.onnx` (the sequence graph, see `SequenceStep`) into out_dir atomically;
    returns the card's `sequence` entry (file, sha256, inputs, outputs, state pairs)."""
    cfg = net.cfg
    step = StreamingStep(net.eval()).eval()
    seq = SequenceStep(step).eval()
    states = step.initial_state()
    state_names = step.state_names()
    T = 5  # any example length: the frame axis is dynamic
    mag = torch.rand(T, cfg.channels, cfg.bins)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.seq.onnx"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_onnx = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                seq,
                (mag, *states),
                str(tmp_onnx),
                input_names=["mag", *state_names],
                output_names=["stems", *[f"{s}_out" for s in state_names]],
                dynamic_axes={"mag": {0: "frames"}, "stems": {0: "frames"}},
                opset_version=17,
                dynamo=False,
            )
        atomic_write_bytes(path, tmp_onnx.read_bytes())
    return {
        "onnx_file": path.name,
        "onnx_sha256": sha256_of(path),
        "inputs": {
            "mag": ["frames", cfg.channels, cfg.bins],
            **{s: list(t.shape) for s, t in zip(state_names, states)},
        },
        "outputs": {
            "stems": ["frames", cfg.stems, cfg.channels, cfg.bins],
            **{f"{s}_out": list(t.shape) for s, t in zip(state_names, states)},
        },
        "state_pairs": {s: f"{s}_out" for s in state_names},
        "chunk_frames": SEQUENCE_CHUNK_FRAMES,
        "about": "the step's weights over many frames per call (offline); states as the step's",
    }


class OfflineGraph(torch.nn.Module):
    """A model with the backward stack over a window of frames: mag (T, C, F) → stems (T, J, C, F),
    row t from rows t - R … t + R (zeros beyond the window). No state: the runtime gives each
    chunk its context (livedemix.offline_graph)."""

    def __init__(self, net: WaveNetSeparator):
        super().__init__()
        self.net = net

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return self.net(mag.permute(1, 2, 0).unsqueeze(0))[0].permute(3, 0, 1, 2)


OFFLINE_CHUNK_FRAMES = 512  # estimates per call; each call also gets 2 × context frames around them


def card_bytes_like(original: str, card: dict) -> bytes:
    """The card as JSON, indented as ``original`` was (a card edited in place keeps a small diff)."""
    lines = original.splitlines()
    indent = len(lines[1]) - len(lines[1].lstrip(" ")) if len(lines) > 1 and lines[1].startswith(" ") else 2
    return (json.dumps(card, indent=indent) + "\n").encode()


def add_offline_model(
    net: WaveNetSeparator, card_path: Path, training: dict | None = None, scores: dict | None = None
) -> Path:
    """Export an offline-only network (one with the backward stack) as `<name>.offline.onnx`
    beside an existing card and name it in the card's `offline` entry; the step and sequence
    graphs and the other fields stay as they are. Refuses a network whose STFT bins, channels
    or stems differ from the card's."""
    cfg = net.cfg
    card_path = Path(card_path)
    original = card_path.read_text()
    card = json.loads(original)
    if not cfg.backward:
        raise SystemExit(
            "--add-offline takes a checkpoint trained with --backward (a causal network is the step graph)"
        )
    if (cfg.bins, cfg.channels, cfg.stems) != (card["bins"], card["channels"], len(card["stems"])):
        raise SystemExit(
            f"{card_path}: the checkpoint has {cfg.bins} bins, {cfg.channels} channels, {cfg.stems} stems; the card "
            f"{card['bins']}, {card['channels']}, {len(card['stems'])}: give a checkpoint trained like the card's model"
        )
    graph = OfflineGraph(net.eval()).eval()
    path = card_path.parent / f"{card_path.stem}.offline.onnx"
    with tempfile.TemporaryDirectory(dir=card_path.parent) as tmp:
        tmp_onnx = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                graph,
                (torch.rand(300, cfg.channels, cfg.bins),),
                str(tmp_onnx),
                input_names=["mag"],
                output_names=["stems"],
                dynamic_axes={"mag": {0: "frames"}, "stems": {0: "frames"}},
                opset_version=17,
                dynamo=False,
            )
        atomic_write_bytes(path, tmp_onnx.read_bytes())
    card["offline"] = {
        "onnx_file": path.name,
        "onnx_sha256": sha256_of(path),
        "context_frames": cfg.receptive_field - 1,
        "chunk_frames": OFFLINE_CHUNK_FRAMES,
        "inputs": {"mag": ["frames", cfg.channels, cfg.bins]},
        "outputs": {"stems": ["frames", cfg.stems, cfg.channels, cfg.bins]},
        "architecture": {"type": "wavenet-frames", **cfg.to_dict()},
        "parameters": net.parameter_count(),
        "flops_per_frame": 2 * net.macs_per_frame(),
        "training": training or {},
        "scores": scores or {},
        "about": "offline renders only: masks from the frames before and after (a causal and a reverse-time "
        "stack); livedemix separate uses it unless --exact or --batched",
    }
    atomic_write_bytes(card_path, card_bytes_like(original, card))
    return card_path


def add_sequence_model(net: WaveNetSeparator, card_path: Path) -> Path:
    """Export the sequence graph beside an existing model and name it in the card's `sequence`
    entry, leaving the step ONNX file and every other card field as they are. Refuses when the
    network is not the one the card's step graph was exported from (re-exported to a temporary
    folder, its sha256 must equal the card's)."""
    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        probe = export_step_model(
            net, Path(tmp), "probe", stft=card["stft"], stem_names=tuple(card["stems"]), sequence=False
        )
        digest = json.loads(probe.read_text())["onnx_sha256"]
    if digest != card["onnx_sha256"]:
        raise SystemExit(
            f"{card_path}: the checkpoint's step graph (sha256 {digest[:12]}…) is not the card's "
            f"({card['onnx_sha256'][:12]}…): give the checkpoint this model was exported from"
        )
    card["sequence"] = export_sequence_model(net, card_path.parent, card_path.stem)
    atomic_write_bytes(card_path, (json.dumps(card, indent=2) + "\n").encode())
    return card_path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, fsync, rename: never half-written.
    A replaced file keeps its permissions; a new one is readable by all (mkstemp makes it private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export_step_model(
    net: WaveNetSeparator,
    out_dir: Path,
    name: str,
    *,
    stft: dict,
    sample_rate: int = 44100,
    stem_names: tuple = STEMS,
    training: dict | None = None,
    scores: dict | None = None,
    default_phase: str = "pu-iter",
    sequence: bool = True,
) -> Path:
    """Write `<name>.onnx` and `<name>.json` into out_dir (atomically), and with `sequence` the
    offline sequence graph `<name>.seq.onnx` that the card names; returns the card's path."""
    cfg = net.cfg
    if len(stem_names) != cfg.stems:
        raise ValueError(f"{len(stem_names)} stem names for a model with {cfg.stems} stems")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    step = StreamingStep(net).eval()
    states = step.initial_state()
    state_names = step.state_names()
    mag = torch.zeros(1, cfg.channels, cfg.bins)
    onnx_path = out_dir / f"{name}.onnx"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_onnx = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                step,
                (mag, *states),
                str(tmp_onnx),
                input_names=["mag", *state_names],
                output_names=["stems", *[f"{s}_out" for s in state_names]],
                opset_version=17,
                dynamo=False,
            )
        atomic_write_bytes(onnx_path, tmp_onnx.read_bytes())
    card = {
        "schema": CARD_SCHEMA,
        "name": name,
        "onnx_file": onnx_path.name,
        "onnx_sha256": sha256_of(onnx_path),
        "sample_rate": sample_rate,
        "stft": dict(stft),
        "stems": list(stem_names),
        "channels": cfg.channels,
        "bins": cfg.bins,
        "feature": "log1p(|X|) of both channels"
        + f", learned per-bin affine, learned projection to {cfg.residual} channels",
        "output": "stem magnitudes = sigmoid mask * |X| (non-negative)"
        + (
            "; mask logits refined per bin from patches of the features ("
            + ", ".join(f"{b} bins x {f} frames" for b, f in cfg.local_patches)
            + f"; {cfg.local} channels each, 1 hidden layer(s))"
            if cfg.local
            else ""
        ),
        "inputs": {"mag": [1, cfg.channels, cfg.bins], **{s: list(t.shape) for s, t in zip(state_names, states)}},
        "outputs": {
            "stems": [1, cfg.stems, cfg.channels, cfg.bins],
            **{f"{s}_out": list(t.shape) for s, t in zip(state_names, states)},
        },
        "state_pairs": {s: f"{s}_out" for s in state_names},
        "lookahead_frames": cfg.lookahead,
        "receptive_field_frames": cfg.receptive_field,
        "architecture": {"type": "wavenet-frames", **cfg.to_dict()},
        "parameters": net.parameter_count(),
        "flops_per_frame": 2 * net.macs_per_frame(),
        "default_phase": default_phase,
        "training": training or {},
        "scores": scores or {},
    }
    # A model trained for a mask power other than Wiener's starts out at that power in every mode
    # (python -m factory.calibrate then measures the best one per mode).
    trained_power = (training or {}).get("mask_power", 2.0)
    if trained_power != 2.0:
        card["mask_power"] = {mode: float(trained_power) for mode in ("wiener", "pu-iter", "anisotropic")}
    if sequence:
        card["sequence"] = export_sequence_model(net, out_dir, name)
    card_path = out_dir / f"{name}.json"
    atomic_write_bytes(card_path, (json.dumps(card, indent=2) + "\n").encode())
    return card_path


def load_checkpoint(path: Path) -> tuple[WaveNetSeparator, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    net = WaveNetSeparator(ModelConfig.from_dict(ckpt["model_config"]))
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), ckpt


REPO = Path(__file__).resolve().parents[1]


def portable_paths(value, base: Path = REPO.parent):
    """The training record with paths under the folder that holds the repository written
    relative to the repository (``../data/...``, ``../shared/...``): a card names its data, not
    the machine it was trained on."""
    if isinstance(value, dict):
        return {k: portable_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_paths(v, base) for v in value]
    if isinstance(value, str) and value.startswith(str(REPO) + os.sep):
        return value[len(str(REPO)) + 1 :]
    if isinstance(value, str) and value.startswith(str(base) + os.sep):
        return "../" + value[len(str(base)) + 1 :]
    return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m factory.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("python/livedemix/models"))
    p.add_argument("--name", default="default")
    p.add_argument("--scores", type=Path, help="JSON file of evaluation scores to put in the card")
    p.add_argument(
        "--add-sequence",
        type=Path,
        metavar="CARD",
        help="only add the sequence graph to this existing card (its step ONNX and other fields stay as they are)",
    )
    p.add_argument(
        "--default-phase",
        choices=MODES,
        default=None,
        help="the card's default reconstruction mode (default: the checkpoint's, else pu-iter)",
    )
    p.add_argument(
        "--add-offline",
        type=Path,
        metavar="CARD",
        help="add the checkpoint (trained with --backward) as this card's offline graph; the rest stays as it is",
    )
    args = p.parse_args(argv)
    net, ckpt = load_checkpoint(args.checkpoint)
    if args.add_offline:
        scores = json.loads(args.scores.read_text()) if args.scores else {}
        card = add_offline_model(net, args.add_offline, portable_paths(ckpt.get("training", {})), scores)
        print(f"wrote {card.with_suffix('.offline.onnx')} and its entry in {card}")
        return 0
    if args.add_sequence:
        card = add_sequence_model(net, args.add_sequence)
        print(f"wrote {card.with_suffix('.seq.onnx')} and its entry in {card}")
        return 0
    scores = json.loads(args.scores.read_text()) if args.scores else ckpt.get("scores", {})
    card = export_step_model(
        net,
        args.out,
        args.name,
        stft=ckpt["stft"],
        sample_rate=ckpt.get("sample_rate", 44100),
        stem_names=tuple(ckpt.get("stems", STEMS)),
        training=portable_paths(ckpt.get("training", {})),
        scores=scores,
        default_phase=args.default_phase or ckpt.get("default_phase", "pu-iter"),
    )
    print(f"wrote {card} and {card.with_suffix('.onnx')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
