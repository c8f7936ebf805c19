"""Weight interpolation between two checkpoints of the same network (robust fine-tuning).

A real-music stage fine-tuned from the shipped weights gains on real recordings and loses some
of the corpus's 4-stem split, which its 2-stem real examples do not supervise. Both networks lie
in one basin (the second started from the first), so the straight line between their weights,
``(1 - t) * base + t * tuned``, trades the two smoothly; often a point on it is better on both
than either end (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022).

    python -m factory.interpolate --base factory/checkpoints/synthetic-v1.pt \\
        --tuned factory/checkpoints/real-stage2.pt --t 0.4 --out factory/checkpoints/default.pt

The result is a weights-only checkpoint with the tuned one's config and training record, plus
``training.interpolation`` (both sources and t), so an exported card says what it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from factory.train import save_atomic


def interpolate(base: dict, tuned: dict, t: float) -> dict:
    """The tuned checkpoint with weights (1 - t) * base + t * tuned; the configs must match."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t = {t:g} is outside [0, 1]: give the tuned weights' share, e.g. 0.5")
    from factory.model import ModelConfig

    if ModelConfig.from_dict(base["model_config"]) != ModelConfig.from_dict(tuned["model_config"]):
        raise ValueError(
            "the two checkpoints are different networks (model_config differs): interpolate like with like"
        )
    a, b = base["state_dict"], tuned["state_dict"]
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("the two checkpoints' weights do not line up (names or shapes differ)")
    mixed = {k: (a[k] + t * (b[k] - a[k])) if a[k].is_floating_point() else b[k] for k in a}
    training = dict(tuned.get("training", {}))
    training["interpolation"] = {
        "base_steps": base.get("training", {}).get("steps"),
        "tuned_steps": tuned.get("training", {}).get("steps"),
        "t": t,
        "rule": "(1 - t) * base + t * tuned, every floating-point tensor",
    }
    keep = ("model_config", "arch", "stft", "sample_rate", "stems", "step")
    return {k: tuned[k] for k in keep if k in tuned} | {
        "state_dict": mixed,
        "training": training,
        "scores": {},
        "best": float("nan"),
        "elapsed_s": tuned.get("elapsed_s", 0.0),
        "wall_s": tuned.get("wall_s", 0.0),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m factory.interpolate", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="the checkpoint fine-tuning started from")
    p.add_argument("--tuned", type=Path, required=True, help="the fine-tuned checkpoint")
    p.add_argument("--t", type=float, required=True, help="the tuned weights' share, 0..1")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    load = lambda path: torch.load(path, map_location="cpu", weights_only=False)  # noqa: E731
    try:
        ck = interpolate(load(args.base), load(args.tuned), args.t)
    except ValueError as e:
        p.exit(2, f"python -m factory.interpolate: {e}\n")
    ck["training"]["interpolation"] |= {"base": str(args.base), "tuned": str(args.tuned)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(ck, args.out)
    print(f"wrote {args.out} (t = {args.t:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
