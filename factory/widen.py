"""Widen a trained WaveNet separator without changing what it computes (Net2Net-style growth).

The real-music stages plateaued near 4.8 dB of real vocals, and even on its own training songs
(`factory.realval build --from-split train`) the network gains only 2.5 dB over the
synthetic-only model: it does not fit what it trains on, so its size is one of the limits. A
wider network trained from scratch would need the whole 4.5-hour chain again; this starts it
from the trained one instead.

    python -m factory.widen --checkpoint factory/checkpoints/real-stage3.pt \\
        --residual 96 --hidden 160 --out ../runs/wide-init.pt

New units are wired so that the output is unchanged and every new weight still gets a gradient:
- residual channels: the input projection and every residual projection write zero into them,
  so they stay zero until trained; the gated convolutions read them with small random weights;
- gated units: small random weights from all inputs, their residual and skip outputs zero;
- hidden units of the head: small random weights in, zero weights out.
Each zero sits on exactly one link of a chain whose other links are random, so the first steps
move it. The same seed gives the same new weights, so two checkpoints of one line (the base and
the tuned end of an interpolation) widen alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from factory.model import ModelConfig
from factory.train import save_atomic

SCALE = 0.5  # new random weights: this times the standard deviation of the tensor's trained part


def _grow(old: torch.Tensor, shape: tuple, gen: torch.Generator, random: bool) -> torch.Tensor:
    """A tensor of ``shape`` holding ``old`` in its leading corner; the rest random or zero."""
    if random:
        std = float(old.float().std()) if old.numel() > 1 else 0.0
        new = torch.randn(shape, generator=gen, dtype=old.dtype) * (SCALE * (std or 1e-2))
    else:
        new = torch.zeros(shape, dtype=old.dtype)
    new[tuple(slice(0, n) for n in old.shape)] = old
    return new


def widen_state(state: dict, cfg: ModelConfig, residual: int, hidden: int, seed: int = 0) -> dict:
    """The state dict of ``cfg`` widened to ``residual`` channels and ``hidden`` head units."""
    r, h = cfg.residual, cfg.hidden
    if residual < r or hidden < h:
        raise ValueError(f"can only grow: the network has residual {r}, hidden {h}")
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    n_in = cfg.channels * cfg.bins
    out["inp.weight"] = _grow(state["inp.weight"], (residual, n_in, 1), gen, random=False)
    out["inp.bias"] = _grow(state["inp.bias"], (residual,), gen, random=False)
    for i in range(len(cfg.dilations)):
        p = f"layers.{i}."
        w, b = state[p + "conv.weight"], state[p + "conv.bias"]  # (2r, r, 2): [tanh rows | gate rows]
        halves = [_grow(part, (residual, residual, 2), gen, random=True) for part in (w[:r], w[r:])]
        out[p + "conv.weight"] = torch.cat(halves, 0)
        out[p + "conv.bias"] = torch.cat(
            [_grow(b[:r], (residual,), gen, random=False), _grow(b[r:], (residual,), gen, random=False)]
        )
        # residual: new rows zero (new channels stay zero), new columns zero (old channels unchanged)
        out[p + "res.weight"] = _grow(state[p + "res.weight"], (residual, residual, 1), gen, random=False)
        out[p + "res.bias"] = _grow(state[p + "res.bias"], (residual,), gen, random=False)
        out[p + "skip.weight"] = _grow(state[p + "skip.weight"], (cfg.skip, residual, 1), gen, random=False)
    out["head1.weight"] = _grow(state["head1.weight"], (hidden, cfg.skip, 1), gen, random=True)
    out["head1.bias"] = _grow(state["head1.bias"], (hidden,), gen, random=False)
    out["head2.weight"] = _grow(state["head2.weight"], (state["head2.weight"].shape[0], hidden, 1), gen, random=False)
    return out


def widen(ck: dict, residual: int, hidden: int, seed: int = 0) -> dict:
    """A weights-only checkpoint of the widened network; ``training.widened`` records the growth."""
    cfg = ModelConfig.from_dict(ck["model_config"])
    state = widen_state(ck["state_dict"], cfg, residual, hidden, seed)
    new_cfg = ModelConfig.from_dict(ck["model_config"] | {"residual": residual, "hidden": hidden})
    training = dict(ck.get("training", {}))
    training["widened"] = {
        "from": {"residual": cfg.residual, "hidden": cfg.hidden},
        "to": {"residual": residual, "hidden": hidden},
        "seed": seed,
        "rule": "function-preserving: new units read with random weights, write with zero weights",
    }
    keep = ("arch", "stft", "sample_rate", "stems", "step", "elapsed_s", "wall_s")
    return {k: ck[k] for k in keep if k in ck} | {
        "model_config": new_cfg.to_dict(),
        "state_dict": state,
        "training": training,
        "scores": {},
        "best": float("nan"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m factory.widen", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--residual", type=int, required=True, help="residual channels of the body")
    p.add_argument("--hidden", type=int, required=True, help="hidden units of the mask head")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    try:
        wide = widen(ck, args.residual, args.hidden, args.seed)
    except (ValueError, KeyError) as e:
        p.exit(2, f"python -m factory.widen: {args.checkpoint}: {e}\n")
    wide["training"]["widened"]["checkpoint"] = str(args.checkpoint)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(wide, args.out)
    print(f"wrote {args.out} (residual {args.residual}, hidden {args.hidden})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
