"""Weight averaging of checkpoints of one network: a line between two, or a soup of several.

A real-music stage fine-tuned from the shipped weights gains on real recordings and loses some
of the corpus's 4-stem split, which its 2-stem real examples do not supervise. Networks that
descend from one another lie in one basin, so averaging their weights trades the two smoothly;
often a point between them is better on both than either end (Wortsman et al., "Robust
fine-tuning of zero-shot models", CVPR 2022; "Model soups", ICML 2022).

    python -m factory.interpolate --base factory/checkpoints/synthetic-v1.pt \\
        --tuned factory/checkpoints/real-stage3.pt --t 0.55 --out ../runs/line-0.55.pt
    python -m factory.interpolate --soup factory/checkpoints/synthetic-v1.pt=0.3 \\
        --soup factory/checkpoints/real-stage1.pt=0.35 --soup factory/checkpoints/real-stage3.pt=0.35 \\
        --out factory/checkpoints/default.pt

The line is the soup of two, ``(1 - t) * base + t * tuned``. An offline graph (a network with
the backward stack, trained from a causal one) takes a causal base as that network's layers
twice, as its training started. The result is a weights-only
checkpoint with the config and training record of its most trained source (the chain of stages
of one lineage is in it), plus ``training.interpolation`` (both sources and t) or
``training.soup`` (every source's file, steps and weight), so an exported card says what it is.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from factory.train import save_atomic

LINE_RULE = "(1 - t) * base + t * tuned, every floating-point tensor"
SOUP_RULE = "sum of weight * checkpoint, every floating-point tensor"


def with_backward_stacks(checkpoints: list[dict]) -> list[dict]:
    """Where some sources have the backward stack (an offline graph) and others are the causal
    network they started from, the causal ones as that network's layers twice, as training
    started (factory.model.with_backward_stack); the others as they are."""
    from factory.model import ModelConfig, with_backward_stack

    cfgs = [ModelConfig.from_dict(c["model_config"]) for c in checkpoints]
    if not any(c.backward for c in cfgs):
        return checkpoints
    out = []
    for c, cfg in zip(checkpoints, cfgs):
        if not cfg.backward:
            c = dict(c, model_config=dict(c["model_config"], backward=True))
            c["state_dict"] = with_backward_stack(c["state_dict"])
        out.append(c)
    return out


def soup(checkpoints: list[dict], weights: list[float], lead: int | None = None) -> dict:
    """sum_i weights[i] * checkpoints[i] (weights >= 0, summing to 1), with the config and training
    record of checkpoints[lead] (by default the source with the most steps); the networks must be
    the same."""
    from factory.model import ModelConfig

    if len(checkpoints) != len(weights) or not checkpoints:
        raise ValueError("give one weight per checkpoint, at least one checkpoint")
    if any(not math.isfinite(w) or w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        listed = " + ".join(f"{w:g}" for w in weights)
        raise ValueError(f"the weights {listed} must be >= 0 and add up to 1: give each checkpoint its share")
    checkpoints = with_backward_stacks(checkpoints)
    cfg = ModelConfig.from_dict(checkpoints[0]["model_config"])
    if any(ModelConfig.from_dict(c["model_config"]) != cfg for c in checkpoints[1:]):
        raise ValueError("the checkpoints are different networks (model_config differs): average like with like")
    first = checkpoints[0]["state_dict"]
    for c in checkpoints[1:]:
        sd = c["state_dict"]
        if sd.keys() != first.keys() or any(sd[k].shape != first[k].shape for k in first):
            raise ValueError("the checkpoints' weights do not line up (names or shapes differ)")
    if lead is None:
        steps = [c.get("training", {}).get("steps") or 0 for c in checkpoints]
        lead = max(range(len(checkpoints)), key=lambda i: (steps[i], weights[i]))
    head = checkpoints[lead]
    mixed = {}
    for k, v in head["state_dict"].items():
        if v.is_floating_point():
            acc = torch.zeros_like(v, dtype=torch.float64)
            for w, c in zip(weights, checkpoints):
                acc += w * c["state_dict"][k].double()
            mixed[k] = acc.to(v.dtype)
        else:
            mixed[k] = v
    keep = ("model_config", "arch", "stft", "sample_rate", "stems", "step")
    return {k: head[k] for k in keep if k in head} | {
        "state_dict": mixed,
        "training": dict(head.get("training", {})),
        "scores": {},
        "best": float("nan"),
        "elapsed_s": head.get("elapsed_s", 0.0),
        "wall_s": head.get("wall_s", 0.0),
    }


def interpolate(base: dict, tuned: dict, t: float) -> dict:
    """The tuned checkpoint with weights (1 - t) * base + t * tuned; the configs must match."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t = {t:g} is outside [0, 1]: give the tuned weights' share, e.g. 0.5")
    out = soup([base, tuned], [1.0 - t, t], lead=1)  # the tuned one's config and record
    out["training"]["interpolation"] = {
        "base_steps": base.get("training", {}).get("steps"),
        "tuned_steps": tuned.get("training", {}).get("steps"),
        "t": t,
        "rule": LINE_RULE,
    }
    return out


def _soup_arg(text: str) -> tuple[Path, float]:
    path, sep, weight = text.rpartition("=")
    try:
        w = float(weight)
    except ValueError:
        w = None
    if not sep or not path or w is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not PATH=WEIGHT: write e.g. real-stage3.pt=0.35")
    return Path(path), w


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m factory.interpolate", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, help="the checkpoint fine-tuning started from")
    p.add_argument("--tuned", type=Path, help="the fine-tuned checkpoint")
    p.add_argument("--t", type=float, help="the tuned weights' share, 0..1")
    p.add_argument(
        "--soup",
        type=_soup_arg,
        action="append",
        metavar="PATH=WEIGHT",
        help="a checkpoint and its share (repeat; the shares add up to 1); instead of --base/--tuned/--t",
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    line = (args.base, args.tuned, args.t)
    if args.soup and any(x is not None for x in line):
        p.error("give either --soup PATH=WEIGHT ... or --base, --tuned and --t, not both")
    if not args.soup and any(x is None for x in line):
        p.error("give --base, --tuned and --t (a line), or --soup PATH=WEIGHT at least twice (a soup)")
    load = lambda path: torch.load(path, map_location="cpu", weights_only=False)  # noqa: E731
    try:
        if args.soup:
            paths, weights = zip(*args.soup)
            sources = [load(x) for x in paths]
            ck = soup(sources, list(weights))
            ck["training"]["soup"] = {
                "rule": SOUP_RULE,
                "sources": [
                    {"file": x.name, "steps": c.get("training", {}).get("steps"), "weight": w}
                    for x, w, c in zip(paths, weights, sources)
                ],
            }
            ck["training"].pop("interpolation", None)  # the lead's own line, if any, is not this one
            what = " + ".join(f"{w:g} {x.name}" for x, w in args.soup)
        else:
            ck = interpolate(load(args.base), load(args.tuned), args.t)
            ck["training"]["interpolation"] |= {"base": str(args.base), "tuned": str(args.tuned)}
            what = f"t = {args.t:g}"
    except (ValueError, OSError) as e:
        p.exit(2, f"python -m factory.interpolate: {e}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(ck, args.out)
    print(f"wrote {args.out} ({what})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
