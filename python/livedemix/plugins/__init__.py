"""LV2 effect inserts: the plugin catalogue and insert chains hosted by the native core.

A *chain* is a list of inserts run in series on a stereo signal: one per stem (applied to
the stem before the buses mix it) and one per bus (after its mix). The plugins are the LV2
plugins installed on the machine (``LV2_PATH``, else ``~/.lv2``, ``/usr/lib/lv2``, ...), run
by lilv inside ``livedemix._core``: nothing in the per-block path allocates, locks or holds
the GIL.

    from livedemix.plugins import InsertSpec, Chain, list_plugins
    chain = Chain([InsertSpec("http://lv2plug.in/plugins/eg-amp", {"gain": -6.0})], 44100, 512)
    chain.process(block)                 # float32 (2, n), in place
    chain.set_param(0, "gain", -3.0)     # any thread; applied at the next block boundary

A plugin that is missing, or that livedemix can't host (no audio ports, 1-in/2-out, MIDI
ports, host features it needs), is a :class:`PluginError` of one sentence. A slot whose output
turns NaN/Inf, or (live) that takes too long for several blocks in a row, is bypassed on its
own and counted (:meth:`Chain.stats`); the rest of the audio keeps running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import _core
from ..errors import LivedemixError

MAX_INSERTS = 8  # per chain: a channel strip, not a rack

if getattr(_core, "lv2_available", False):
    PluginError = _core.PluginError
else:  # built without lilv

    class PluginError(LivedemixError):  # type: ignore[no-redef]
        """An LV2 plugin that can't be used; the message says why and what to do."""


# Debian packages for the URI prefixes of the LV2 plugins Debian ships (the "install it" hint).
DEBIAN_PACKAGES = {
    "http://lv2plug.in/plugins/eg-": "lv2-examples",
    "http://drobilla.net/plugins/mda/": "mda-lv2",
    "http://gareus.org/oss/lv2/": "x42-plugins",
    "http://lsp-plug.in/plugins/lv2/": "lsp-plugins-lv2",
    "urn:dragonfly:": "dragonfly-reverb-lv2",
    "https://github.com/michaelwillis/dragonfly-reverb": "dragonfly-reverb-lv2",
    "http://calf.sourceforge.net/plugins/": "calf-plugins",
    "http://guitarix.sourceforge.net/": "guitarix-lv2",
    "urn:zamaudio:": "zam-plugins",
    "http://www.openavproductions.com/": "openav-artyfx",
}


def available() -> bool:
    """Whether this build of livedemix has the LV2 host (lilv was found at build time)."""
    return bool(getattr(_core, "lv2_available", False))


def _require() -> None:
    if not available():
        raise PluginError(
            "this livedemix was built without the LV2 plugin host: install the Debian packages "
            "liblilv-dev and lv2-dev, then reinstall livedemix"
        )


def debian_package(uri: str) -> str | None:
    """The Debian package that ships ``uri``, where known."""
    for prefix, pkg in DEBIAN_PACKAGES.items():
        if uri.startswith(prefix):
            return pkg
    return None


def not_installed_message(uri: str) -> str:
    pkg = debian_package(uri)
    fix = f"install the Debian package {pkg}" if pkg else "install the plugin"
    return f"the LV2 plugin {uri} is not installed: {fix}, or check the URI with `livedemix plugins list`"


def load_bundle(directory) -> None:
    """Add one bundle directory (``*.lv2``) to the catalogue (e.g. a plugin outside LV2_PATH)."""
    _require()
    _core.lv2_load_bundle(str(directory))


def list_plugins() -> list[dict]:
    """Every installed LV2 plugin: uri, name, class, ports, latency, and ``unsupported`` (None,
    or the sentence saying why livedemix can't host it)."""
    _require()
    return sorted(_core.lv2_list(), key=lambda p: p["uri"])


def plugin_info(uri: str) -> dict:
    """One plugin's description (see :func:`list_plugins`); PluginError if not installed."""
    _require()
    if not isinstance(uri, str) or not _core.lv2_has(uri):
        raise PluginError(not_installed_message(str(uri)))
    return _core.lv2_info(uri)


def control_inputs(info: dict) -> dict[str, dict]:
    """The plugin's parameters: {symbol: port} for its control input ports (not the latency port)."""
    return {
        p["symbol"]: p
        for p in info["ports"]
        if p["kind"] == "control" and p["direction"] == "input" and not p.get("reports_latency")
    }


@dataclass
class InsertSpec:
    """One insert as a preset stores it: the plugin URI, parameter values by symbol, bypass."""

    plugin: str
    params: dict[str, float] = field(default_factory=dict)
    bypass: bool = False

    def to_dict(self) -> dict:
        d: dict = {"plugin": self.plugin}
        if self.params:
            d["params"] = dict(self.params)
        if self.bypass:
            d["bypass"] = True
        return d


def check_insert(spec: InsertSpec) -> str | None:
    """Why ``spec`` can't run here (one clause naming the problem and the fix), or None."""
    if not available():
        return "needs the LV2 plugin host, which this livedemix was built without: install liblilv-dev and lv2-dev, then reinstall livedemix"
    if not _core.lv2_has(spec.plugin):
        pkg = debian_package(spec.plugin)
        fix = f"install the Debian package {pkg}" if pkg else "install it"
        return f"names the LV2 plugin {spec.plugin}, which is not installed: {fix}, or pick one from `livedemix plugins list`"
    info = _core.lv2_info(spec.plugin)
    if info["unsupported"]:
        return "cannot be used: " + info["unsupported"]
    params = control_inputs(info)
    for sym, value in spec.params.items():
        if sym not in params:
            known = ", ".join(params) or "none"
            return f"sets an unknown parameter {sym!r} of {spec.plugin}: use one of {known} (`livedemix plugins show {spec.plugin}`)"
        p = params[sym]
        if not math.isfinite(value) or not (p["minimum"] <= value <= p["maximum"]):
            return (
                f"sets {sym} = {value} for {spec.plugin}, out of its range: "
                f"give a value from {p['minimum']:g} to {p['maximum']:g}"
            )
    return None


class Chain:
    """An insert chain built from :class:`InsertSpec` s, ready to run (activated).

    ``process(block)`` runs in place on float32 (channels, n ≤ max_block) with the GIL
    released; ``set_param``/``set_bypass`` may be called from any thread."""

    def __init__(self, specs: list[InsertSpec], sample_rate: float, max_block: int, channels: int = 2):
        _require()
        if len(specs) > MAX_INSERTS:
            raise PluginError(f"a chain holds at most {MAX_INSERTS} inserts, not {len(specs)}: split the effects")
        self.specs = [InsertSpec(s.plugin, dict(s.params), s.bypass) for s in specs]
        self._chain = _core.InsertChain(float(sample_rate), channels, int(max_block))
        self._ports: list[dict[str, int]] = []
        self.infos: list[dict] = []
        for spec in self.specs:
            problem = check_insert(spec)
            if problem:
                raise PluginError(f"the insert {problem}")
            slot = self._chain.add(spec.plugin)
            info = self._chain.slot_info(slot)
            self.infos.append(info)
            self._ports.append({sym: p["index"] for sym, p in control_inputs(info).items()})
            for sym, v in spec.params.items():
                self._chain.set_control(slot, self._ports[slot][sym], float(v))
            self._chain.set_bypass(slot, bool(spec.bypass))
        self._chain.activate()

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def latency(self) -> int:
        """Samples of delay the chain adds (the sum of its plugins' reported latencies)."""
        return self._chain.latency

    @property
    def budget_fraction(self) -> float:
        return self._chain.budget_fraction

    @budget_fraction.setter
    def budget_fraction(self, f: float) -> None:
        """Fraction of a block's duration one plugin may take before it counts as slow (0: off)."""
        self._chain.budget_fraction = float(f)

    def activate(self) -> None:
        """Restart every plugin from its initial state (a new song); not for the audio thread."""
        self._chain.activate()

    def process(self, block) -> None:
        self._chain.process(block)

    def port(self, slot: int, symbol: str) -> int:
        try:
            return self._ports[slot][symbol]
        except (IndexError, KeyError):
            if not 0 <= slot < len(self._ports):
                raise PluginError(f"no insert {slot + 1}: this chain has {len(self._ports)}") from None
            raise PluginError(
                f"{self.specs[slot].plugin} has no parameter {symbol!r}: use one of {', '.join(self._ports[slot])}"
            ) from None

    def param_range(self, slot: int, symbol: str) -> tuple[float, float]:
        p = control_inputs(self.infos[slot])[symbol] if symbol in self._ports[slot] else None
        if p is None:
            self.port(slot, symbol)  # raises the sentence
        return float(p["minimum"]), float(p["maximum"])

    def set_param(self, slot: int, symbol: str, value: float) -> None:
        """Any thread: clamped to the port's range, applied at the next block boundary."""
        self._chain.set_control(slot, self.port(slot, symbol), float(value))
        self.specs[slot].params[symbol] = self._chain.control(slot, self.port(slot, symbol))

    def param(self, slot: int, symbol: str) -> float:
        return self._chain.control(slot, self.port(slot, symbol))

    def set_bypass(self, slot: int, on: bool) -> None:
        if not 0 <= slot < len(self.specs):
            raise PluginError(f"no insert {slot + 1}: this chain has {len(self.specs)}")
        self._chain.set_bypass(slot, bool(on))
        self.specs[slot].bypass = bool(on)

    def bypassed(self, slot: int) -> bool:
        return self._chain.bypassed(slot)

    def faulted(self, slot: int) -> bool:
        return self._chain.faulted(slot)

    def clear_fault(self, slot: int) -> None:
        self._chain.clear_fault(slot)

    def stats(self) -> list[dict]:
        """Per slot: blocks, nonfinite_events, slow_events, faulted, bypassed, latency, ..."""
        out = []
        for i, spec in enumerate(self.specs):
            d = self._chain.slot_stats(i)
            d["plugin"] = spec.plugin
            d["name"] = self.infos[i]["name"]
            out.append(d)
        return out

    def describe(self) -> list[dict]:
        """What a UI shows: per slot the plugin's name, URI, bypass/fault state and parameters."""
        return [
            {
                "plugin": s.plugin,
                "name": self.infos[i]["name"],
                "bypass": self.bypassed(i),
                "faulted": self.faulted(i),
                "params": {sym: self.param(i, sym) for sym in self._ports[i]},
            }
            for i, s in enumerate(self.specs)
        ]


__all__ = [
    "MAX_INSERTS",
    "Chain",
    "InsertSpec",
    "PluginError",
    "available",
    "check_insert",
    "control_inputs",
    "debian_package",
    "list_plugins",
    "load_bundle",
    "plugin_info",
]
