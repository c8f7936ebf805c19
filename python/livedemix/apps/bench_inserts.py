"""`livedemix bench inserts`: the cost of a typical effect chain, as a ratio to the engine
without inserts, measured in the same process on the same audio.

The chain: a filter on each stem (mda RezFilter; each stem then gets its own ISTFT, the
larger part of the cost) and a reverb on the main bus (mda Ambience). Both engines run the
live block size (256) back to back, in alternating rounds so that a busy machine slows both
alike; the figure is the median over rounds of (time with inserts) / (time without).
"""

from __future__ import annotations

import time

import numpy as np

from ..engine import Engine
from ..plugins import InsertSpec, PluginError, available
from ..presets import Preset

STEM_PLUGIN = "http://drobilla.net/plugins/mda/RezFilter"
BUS_PLUGIN = "http://drobilla.net/plugins/mda/Ambience"


def can_run() -> bool:
    """Whether the host and the chain's plugins (Debian mda-lv2) are here."""
    from .. import _core

    return available() and all(_core.lv2_has(u) for u in (STEM_PLUGIN, BUS_PLUGIN))


def typical_chain_preset(stems) -> Preset:
    p = Preset(name="bench-inserts")
    p.stem_inserts = {s: [InsertSpec(STEM_PLUGIN, {"freq": 0.6, "res": 0.2})] for s in stems}
    p.buses["main"].inserts = [InsertSpec(BUS_PLUGIN, {"size": 0.6, "mix": 0.3})]
    return p


def bench_inserts(seconds: float = 4.0, model=None, block: int = 256, rounds: int = 5) -> dict:
    if not available():
        raise PluginError("this livedemix has no LV2 host: install liblilv-dev and lv2-dev, then reinstall")
    plain = Engine(model=model, block_size=block)
    fx = Engine(model=model, preset=typical_chain_preset(plain.stems), block_size=block)
    sr = plain.sample_rate
    n = int(seconds * sr) // block * block
    x = (np.random.default_rng(0).standard_normal((2, n)) * 0.1).astype(np.float32)
    blocks = [np.ascontiguousarray(x[:, s : s + block]) for s in range(0, n, block)]
    outs = {id(e): np.empty((len(e.buses), 2, block), np.float32) for e in (plain, fx)}

    def run(e) -> float:
        out = outs[id(e)]
        t0 = time.perf_counter()
        for b in blocks:
            e.process(b, out=out)
        return time.perf_counter() - t0

    run(plain), run(fx)  # warm-up
    t_plain, t_fx = [], []
    for _ in range(rounds):
        t_plain.append(run(plain))
        t_fx.append(run(fx))
    ratios = [f / p for f, p in zip(t_fx, t_plain)]
    chains = fx.insert_stats()
    return {
        "chain": {"each stem": STEM_PLUGIN, "main bus": BUS_PLUGIN},
        "block": block,
        "seconds_of_audio": n / sr,
        "rounds": rounds,
        "real_time_factor_without": float(np.median(t_plain)) / (n / sr),
        "real_time_factor_with": float(np.median(t_fx)) / (n / sr),
        "ratio": float(np.median(ratios)),
        "ratio_min": float(min(ratios)),
        "ratio_max": float(max(ratios)),
        "plugin_faults": sum(s["faulted"] for c in chains["stems"].values() for s in c)
        + sum(s["faulted"] for c in chains["buses"].values() for s in c),
    }


def format_inserts(r: dict) -> str:
    return (
        f"effect inserts (a RezFilter on each stem, Ambience on the main bus), block {r['block']}, "
        f"{r['seconds_of_audio']:.1f} s of audio × {r['rounds']} rounds:\n"
        f"  engine without inserts: real-time factor {r['real_time_factor_without']:.3f}\n"
        f"  engine with the chain:  real-time factor {r['real_time_factor_with']:.3f}\n"
        f"  cost ratio with/without: {r['ratio']:.2f}x (rounds {r['ratio_min']:.2f}-{r['ratio_max']:.2f}x)"
    )
