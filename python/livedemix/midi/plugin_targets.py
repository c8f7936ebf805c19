"""MIDI targets on effect inserts: a CC (or a note) drives a plugin parameter over its range,
a note or a CC toggles an insert's bypass. Shared by the controller and MIDI learn.

A parameter's CC mapping is linear over ``range`` (default: the port's declared range), or
logarithmic for ports marked ``logarithmic`` with a positive range (a frequency knob), and
the host clamps and rounds the value for integer/toggled ports."""

from __future__ import annotations

import math

from ..presets import MidiMapping
from .errors import MidiError


def check_insert_mapping(engine, m: MidiMapping) -> None:
    """One sentence if the engine has no such insert or parameter."""
    where = f"stem {m.stem}" if m.stem is not None else f"bus {m.bus}"
    if m.stem is None and m.bus not in engine.buses:
        raise MidiError(
            f"a MIDI mapping targets an insert on bus '{m.bus}' but the engine has {', '.join(engine.buses)}: "
            "play with a preset that defines it, or change the mapping's bus"
        )
    if m.stem is not None and m.stem not in engine.stems:
        raise MidiError(f"a MIDI mapping targets stem '{m.stem}' but the model separates {', '.join(engine.stems)}")
    chain = engine.insert_chain(stem=m.stem, bus=m.bus)
    if chain is None or not 1 <= m.insert <= len(chain):
        n = 0 if chain is None else len(chain)
        raise MidiError(
            f"a MIDI mapping targets insert {m.insert} of the {where}, which has {n}: "
            "add the insert to the preset or change the mapping's insert"
        )
    if m.action == "param":
        chain.port(m.insert - 1, m.param)  # raises the sentence naming the known parameters


def plugin_port(chain, slot: int, symbol: str) -> dict:
    from ..plugins import control_inputs

    return control_inputs(chain.infos[slot])[symbol]


def _log_ok(lo: float, hi: float, port: dict) -> bool:
    return bool(port.get("logarithmic")) and lo > 0 and hi > 0


def param_value(cc: int, lo: float, hi: float, port: dict) -> float:
    """CC 0..127 → the parameter's value over [lo, hi]."""
    t = min(max(cc, 0), 127) / 127.0
    if _log_ok(lo, hi, port):
        return math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
    return lo + t * (hi - lo)


def param_position(value: float, lo: float, hi: float, port: dict) -> float:
    """The CC position (0..127, fractional) that would give ``value`` (for soft takeover)."""
    if hi == lo:
        return 0.0
    if _log_ok(lo, hi, port):
        t = (math.log(max(value, 1e-30)) - math.log(lo)) / (math.log(hi) - math.log(lo))
    else:
        t = (value - lo) / (hi - lo)
    return 127.0 * min(max(t, 0.0), 1.0)


def parse_insert_target(action: str, rest: str, stems) -> dict:
    """'vocals/1/gain' (stem chain) or '@cue/1/mix' (bus chain) for param; 'vocals/1' or
    '@main/2' for bypass → the mapping's stem or bus, insert and param."""
    parts = rest.split("/")
    want = 3 if action == "param" else 2
    example = "param:vocals/1/gain or param:@main/1/mix" if action == "param" else "bypass:vocals/1 or bypass:@main/1"
    if len(parts) != want or not parts[1].isdigit() or int(parts[1]) < 1:
        raise MidiError(f"--target {action}:{rest!r} is not an insert target: write e.g. {example}")
    spec: dict = {"action": action, "insert": int(parts[1])}
    if parts[0].startswith("@"):
        spec["bus"] = parts[0][1:] or "main"
    elif parts[0] in stems:
        spec["stem"] = parts[0]
    else:
        raise MidiError(
            f"--target {action}:{rest!r} names no stem of {', '.join(stems)} (or @BUS): write e.g. {example}"
        )
    if action == "param":
        spec["param"] = parts[2]
    return spec


def check_against_preset(spec: dict, preset, target: str, rng=None) -> None:
    """MIDI learn: the preset must hold the insert (and the plugin the parameter, with ``rng``
    inside the parameter's range)."""
    from ..plugins import control_inputs, plugin_info

    if "stem" in spec:
        chain, where = preset.stem_inserts.get(spec["stem"], []), f"stems.{spec['stem']}.inserts"
    else:
        bus = spec.get("bus", "main")
        chain = preset.buses[bus].inserts if bus in preset.buses else []
        where = f"buses.{bus}.inserts"
    if not 1 <= spec["insert"] <= len(chain):
        raise MidiError(
            f"--target {target!r} names insert {spec['insert']} but the preset's {where} has {len(chain)}: "
            f"add [[{where}]] first"
        )
    if spec["action"] == "param":
        plugin = chain[spec["insert"] - 1].plugin
        params = control_inputs(plugin_info(plugin))
        if spec["param"] not in params:
            raise MidiError(
                f"--target {target!r}: {plugin} has no parameter {spec['param']!r}; use one of {', '.join(params)}"
            )
        lo, hi = params[spec["param"]]["minimum"], params[spec["param"]]["maximum"]
        if rng is not None and not all(lo <= v <= hi for v in rng):
            raise MidiError(
                f"--range {rng[0]:g},{rng[1]:g} is outside {spec['param']}'s range: give values from {lo:g} to {hi:g}"
            )
