"""Export a trained separator to the streaming ONNX step model plus its model card.

    python -m factory.export --checkpoint runs/default/best.pt --out python/livedemix/models --name default

The ONNX model runs one STFT frame: inputs `mag` (1, C, F) = |X| of the newest mixture frame
(for a model with extra input planes, (1, C + E, F): the card's `extra_input_planes` after them)
and the state tensors (`conv_state`, and `mag_state` with lookahead); outputs `stems`
(1, J, C, F) and the next states (`conv_state_out`, `mag_state_out`). The card (JSON) says
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
from livedemix.separator import sha256_of

from .model import ModelConfig, StreamingStep, WaveNetSeparator

CARD_SCHEMA = 1


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
    stem_names: tuple = ("vocals", "drums", "bass", "other"),
    training: dict | None = None,
    scores: dict | None = None,
    default_phase: str = "pu-iter",
) -> Path:
    """Write `<name>.onnx` and `<name>.json` into out_dir (atomically); returns the card's path."""
    cfg = net.cfg
    if len(stem_names) != cfg.stems:
        raise ValueError(f"{len(stem_names)} stem names for a model with {cfg.stems} stems")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    step = StreamingStep(net).eval()
    states = step.initial_state()
    state_names = step.state_names()
    mag = torch.zeros(1, cfg.in_channels, cfg.bins)
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
        + (" and of the side signal |X_L - X_R| / 2" if cfg.side else "")
        + f", learned per-bin affine, learned projection to {cfg.residual} channels",
        "output": "stem magnitudes = sigmoid mask * |X| (non-negative)"
        + (
            "; mask logits refined per bin from patches of the features ("
            + ", ".join(f"{b} bins x {f} frames" for b, f in cfg.local_patches)
            + f"; {cfg.local} channels each, {cfg.local_depth} hidden layer(s)"
            + (", the head's hidden vector" if cfg.local_context else "")
            + (", a bias per bin" if cfg.local_bin_bias else "")
            + ")"
            if cfg.local
            else ""
        ),
        "inputs": {"mag": [1, cfg.in_channels, cfg.bins], **{s: list(t.shape) for s, t in zip(state_names, states)}},
        "outputs": {
            "stems": [1, cfg.stems, cfg.channels, cfg.bins],
            **{f"{s}_out": list(t.shape) for s, t in zip(state_names, states)},
        },
        "state_pairs": {s: f"{s}_out" for s in state_names},
        # The planes of `mag`: the channels' |X|, then these (see livedemix.separator).
        **({"extra_input_planes": cfg.extra_planes} if cfg.extra_planes else {}),
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
    card_path = out_dir / f"{name}.json"
    atomic_write_bytes(card_path, (json.dumps(card, indent=2) + "\n").encode())
    return card_path


def load_checkpoint(path: Path) -> tuple[WaveNetSeparator, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    net = WaveNetSeparator(ModelConfig.from_dict(ckpt["model_config"]))
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), ckpt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m factory.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("python/livedemix/models"))
    p.add_argument("--name", default="default")
    p.add_argument("--scores", type=Path, help="JSON file of evaluation scores to put in the card")
    args = p.parse_args(argv)
    net, ckpt = load_checkpoint(args.checkpoint)
    scores = json.loads(args.scores.read_text()) if args.scores else ckpt.get("scores", {})
    card = export_step_model(
        net,
        args.out,
        args.name,
        stft=ckpt["stft"],
        sample_rate=ckpt.get("sample_rate", 44100),
        stem_names=tuple(ckpt.get("stems", ("vocals", "drums", "bass", "other"))),
        training=ckpt.get("training", {}),
        scores=scores,
        default_phase=ckpt.get("default_phase", "pu-iter"),
    )
    print(f"wrote {card} and {card.with_suffix('.onnx')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
