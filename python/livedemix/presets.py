"""Presets: TOML files that set the engine's options, each bus's stem gains, mutes and solos,
the routing of buses to output channels, and MIDI mappings. Presets are data: they are
parsed and checked against the schema below, never executed.

Schema version 1 (every key optional unless marked):

    schema = 1                                  # required
    name = "karaoke"
    description = "..."
    [engine]
    model = "default"                           # a shipped model name or a model card path
    phase = "pu-iter"                           # wiener | pu-iter | anisotropic
    latency = "quality"                         # quality | low-latency
    n_iter = 32                                 # 1..64, for pu-iter (default: 32 at hop 256, 16 at hop 128)
    kappa = 2.0                                 # 0..50, for anisotropic
    mask_power = 1.0                            # 0.25..8, the stems' mask exponent (default: the card's, for its mode)
    [buses.main]                                # "main" always exists; any other name adds a bus
    outputs = [1, 2]                            # 1-based output channels
    gain_db = 0.0                               # the bus's master gain, -120..24
    [buses.main.stems.vocals]                   # one table per stem (vocals, drums, bass, other)
    gain_db = 0.0                               # -120..24
    mute = false
    solo = false
    [midi]
    input = "nanoKONTROL"                       # input port name substring
    output = "nanoKONTROL"                      # feedback port name substring
    soft_takeover = true
    [[midi.map]]
    kind = "cc"                                 # cc | note | program   (required)
    channel = 1                                 # 1..16, or 0 for any channel
    number = 0                                  # controller or note number 0..127 (cc, note)
    action = "gain"                             # gain | mute | solo | master | preset (required)
    stem = "vocals"                             # for gain/mute/solo
    bus = "main"
    mode = "toggle"                             # toggle | momentary (mute/solo)
    range_db = [-60.0, 6.0]                     # gain/master fader range
    presets = ["karaoke", "drummer"]            # program number → preset (action "preset")
    insert = 1                                  # action "param"/"bypass": the insert (1-based) of
    param = "gain"                              #   the stem's chain (stem = ...) or else the bus's;
    range = [-20.0, 0.0]                        #   param's symbol; CC range (default: the port's)
    [[stems.vocals.inserts]]                    # effect inserts on a stem, in order (docs/PLUGINS.md)
    plugin = "http://lv2plug.in/plugins/eg-amp" # an installed LV2 plugin's URI   (required)
    params = { gain = -6.0 }                    # control ports by symbol, within their ranges
    bypass = false                              # start bypassed
    [[buses.main.inserts]]                      # the same after a bus's mix

Errors name the file, the key and the fix in one sentence (`PresetError`). Saving (MIDI learn)
is atomic: a temporary file in the same folder, fsync, rename.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from . import STEMS
from .errors import LivedemixError
from .phase import MODES as PHASE_MODES
from .validate import (
    MAX_DEPTH,
    MAX_PRESET_BYTES,
    MAX_TEXT,
    confined,
    depth_of,
    has_control_chars,
    identifier_problem,
    is_identifier,
    read_text_bounded,
    short_repr,
)

SCHEMA_VERSION = 1
LATENCY_POINTS = ("quality", "low-latency")
MIDI_KINDS = ("cc", "note", "program")
MIDI_ACTIONS = ("gain", "mute", "solo", "master", "preset", "param", "bypass")
MAX_BUSES = 16  # each bus is an ISTFT and a mixer row per hop: 16 stay well inside a block
MAX_OUTPUTS = 64
MAX_MAPPINGS = 512
MAX_PRESET_LIST = 128


def shipped_presets_dir() -> Path:
    """Presets installed with the package; in a source checkout, the repository's presets/."""
    installed = Path(__file__).parent / "presets"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "presets"


def console_gains(
    gain_db: dict[str, float], mute: dict[str, bool], solo: dict[str, bool], master_db: float = 0.0
) -> dict[str, float]:
    """Linear stem gains with console semantics: if any stem is soloed, only soloed stems sound
    (solo overrides mute); otherwise muted stems are silent."""
    any_solo = any(solo.values())
    master = 10 ** (master_db / 20)
    return {n: master * 10 ** (g / 20) if (solo[n] if any_solo else not mute[n]) else 0.0 for n, g in gain_db.items()}


class PresetError(LivedemixError):
    """A preset that can't be used; the message names the file, the key and the fix."""


@dataclass
class StemSettings:
    gain_db: float = 0.0
    mute: bool = False
    solo: bool = False


@dataclass
class BusSettings:
    outputs: list[int] = field(default_factory=lambda: [1, 2])
    gain_db: float = 0.0
    stems: dict[str, StemSettings] = field(default_factory=lambda: {s: StemSettings() for s in STEMS})
    inserts: list = field(default_factory=list)  # [plugins.InsertSpec] after the bus's mix


@dataclass
class EngineOptions:
    model: str | None = None
    phase: str | None = None  # None: the model card's default
    latency: str = "quality"
    n_iter: int | None = None  # None: the engine's default for the hop
    kappa: float = 2.0
    mask_power: float | None = None  # None: the model card's calibrated power for the mode


@dataclass
class MidiMapping:
    kind: str
    action: str
    channel: int = 0
    number: int = 0
    stem: str | None = None
    bus: str = "main"
    mode: str = "toggle"
    range_db: tuple[float, float] = (-60.0, 6.0)
    presets: list[str] = field(default_factory=list)
    insert: int = 1  # "param"/"bypass": 1-based position in the stem's (stem set) or bus's chain
    param: str | None = None  # "param": the plugin port's symbol
    range: tuple[float, float] | None = None  # "param": CC 0..127 maps onto this (default: the port's range)


@dataclass
class MidiSettings:
    input: str | None = None
    output: str | None = None
    soft_takeover: bool = True
    map: list[MidiMapping] = field(default_factory=list)


@dataclass
class Preset:
    name: str
    description: str = ""
    engine: EngineOptions = field(default_factory=EngineOptions)
    buses: dict[str, BusSettings] = field(default_factory=lambda: {"main": BusSettings()})
    midi: MidiSettings = field(default_factory=MidiSettings)
    path: Path | None = None
    stem_inserts: dict[str, list] = field(default_factory=dict)  # stem → [plugins.InsertSpec]

    def stem_gains(self, bus: str) -> dict[str, float]:
        """Linear gain of each stem on `bus` with console semantics (see :func:`console_gains`)."""
        b = self.buses[bus]
        return console_gains(
            {n: s.gain_db for n, s in b.stems.items()},
            {n: s.mute for n, s in b.stems.items()},
            {n: s.solo for n, s in b.stems.items()},
        )


# ---- validation -------------------------------------------------------------------------


class _Checker:
    def __init__(self, path: Path | str, stems: tuple[str, ...]):
        self.where = str(path)
        self.stems = stems

    def fail(self, key: str, problem: str, fix: str):
        raise PresetError(f"{self.where}: '{key}' {problem}: {fix}")

    def table(self, value, key: str, allowed: set[str] | None) -> dict:
        """A table whose keys are all in ``allowed`` (None: any keys, checked by the caller)."""
        if not isinstance(value, dict):
            self.fail(key, f"must be a table, not {type(value).__name__}", f"write it as [{key}]")
        for k in value:
            if allowed is not None and k not in allowed:
                self.fail(
                    f"{key}.{k[:60]}" if key else k[:60],
                    "is not a known key",
                    f"remove it or use one of {', '.join(sorted(allowed))}",
                )
        return value

    def number(self, value, key: str, lo: float, hi: float, integer: bool = False):
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            self.fail(
                key,
                f"must be {'an integer' if integer else 'a number'}, not {short_repr(value)}",
                f"give a value from {lo} to {hi}",
            )
        if not (lo <= value <= hi) or (isinstance(value, float) and not math.isfinite(value)):
            self.fail(key, f"is {short_repr(value)}, out of range", f"give a value from {lo} to {hi}")
        return value

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {short_repr(value)}", "write true or false (no quotes)")
        return value

    def string(self, value, key: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {short_repr(value)}", "put the value in quotes")
        if len(value) > MAX_TEXT:
            self.fail(key, f"is {len(value)} characters long", f"keep it under {MAX_TEXT}")
        if has_control_chars(value):  # printed to terminals: no escape sequences, no bidi tricks
            self.fail(key, f"holds control characters ({short_repr(value)})", "remove them")
        if choices and value not in choices:
            self.fail(key, f"is {short_repr(value)}", f"use one of {', '.join(choices)}")
        return value

    def name(self, value, key: str, what: str) -> str:
        """An identifier (bus names, model names): no paths, no reserved names."""
        problem = identifier_problem(value)
        if problem:
            self.fail(key, problem, f"name the {what} with letters, digits, '_' or '-' (e.g. 'cue')")
        return value

    def stem(self, value, key: str) -> str:
        if not isinstance(value, str) or value not in self.stems:
            self.fail(key, f"names an unknown stem {short_repr(value)}", f"use one of {', '.join(self.stems)}")
        return value


def parse_preset(data: dict, path: Path | str = "<preset>", stems: tuple[str, ...] = STEMS) -> Preset:
    c = _Checker(path, stems)
    c.table(data, "", {"schema", "name", "description", "engine", "buses", "midi", "stems"})
    if depth_of(data) > MAX_DEPTH:
        c.fail("", f"nests tables or arrays more than {MAX_DEPTH} deep", "no preset needs that: check the file")
    if "schema" not in data:
        c.fail("schema", "is missing", f"add `schema = {SCHEMA_VERSION}` at the top")
    schema = data["schema"]
    if type(schema) is not int or schema != SCHEMA_VERSION:  # not true, not 1.0
        c.fail(
            "schema",
            f"is {short_repr(schema)}, a version this livedemix doesn't read",
            f"use schema = {SCHEMA_VERSION} (an integer)",
        )
    name = c.string(data.get("name", Path(str(path)).stem), "name")
    preset = Preset(name=name, description=c.string(data.get("description", ""), "description"))

    e = c.table(data.get("engine", {}), "engine", {"model", "phase", "latency", "n_iter", "kappa", "mask_power"})
    opts = preset.engine
    if "model" in e:  # a shipped model's name only: a preset can't point at files (docs/SECURITY.md)
        opts.model = c.name(e["model"], "engine.model", "model (a shipped model's name; pass other cards with --model)")
    if "phase" in e:
        opts.phase = c.string(e["phase"], "engine.phase", PHASE_MODES)
    opts.latency = c.string(e.get("latency", opts.latency), "engine.latency", LATENCY_POINTS)
    if "n_iter" in e:
        opts.n_iter = c.number(e["n_iter"], "engine.n_iter", 1, 64, integer=True)
    opts.kappa = float(c.number(e.get("kappa", opts.kappa), "engine.kappa", 0.0, 50.0))
    if "mask_power" in e:
        opts.mask_power = float(c.number(e["mask_power"], "engine.mask_power", 0.25, 8.0))

    buses = c.table(data.get("buses", {}), "buses", None)
    if len(buses) > MAX_BUSES:
        c.fail("buses", f"defines {len(buses)} buses", f"use at most {MAX_BUSES}")
    for bus_name, b in buses.items():
        c.name(bus_name, f"buses.{short_repr(bus_name)}", "bus")
        key = f"buses.{bus_name}"
        b = c.table(b, key, {"outputs", "gain_db", "stems", "inserts"})
        settings = BusSettings()
        if "outputs" in b:
            outs = b["outputs"]
            if not isinstance(outs, list) or not outs or len(outs) > MAX_OUTPUTS:
                c.fail(
                    f"{key}.outputs",
                    f"must be a list of 1 to {MAX_OUTPUTS} output channel numbers, not {short_repr(outs)}",
                    "write e.g. outputs = [1, 2]",
                )
            settings.outputs = [c.number(o, f"{key}.outputs", 1, 64, integer=True) for o in outs]
        settings.gain_db = float(c.number(b.get("gain_db", 0.0), f"{key}.gain_db", -120.0, 24.0))
        st = b.get("stems", {})
        if not isinstance(st, dict):
            c.fail(f"{key}.stems", "must be a table of stems", f"write [{key}.stems.vocals] etc.")
        for stem_name, s in st.items():
            c.stem(stem_name, f"{key}.stems.{stem_name}")
            skey = f"{key}.stems.{stem_name}"
            s = c.table(s, skey, {"gain_db", "mute", "solo"})
            settings.stems[stem_name] = StemSettings(
                gain_db=float(c.number(s.get("gain_db", 0.0), f"{skey}.gain_db", -120.0, 24.0)),
                mute=c.boolean(s.get("mute", False), f"{skey}.mute"),
                solo=c.boolean(s.get("solo", False), f"{skey}.solo"),
            )
        if "inserts" in b:
            settings.inserts = _parse_inserts(c, b["inserts"], f"{key}.inserts")
        preset.buses[bus_name] = settings
    if "main" not in preset.buses:
        preset.buses["main"] = BusSettings()
    if "stems" in data:
        for stem_name, st in c.table(data["stems"], "stems", None).items():
            c.stem(stem_name, f"stems.{short_repr(stem_name)}")
            st = c.table(st, f"stems.{stem_name}", {"inserts"})
            if "inserts" in st:
                preset.stem_inserts[stem_name] = _parse_inserts(c, st["inserts"], f"stems.{stem_name}.inserts")

    m = c.table(data.get("midi", {}), "midi", {"input", "output", "soft_takeover", "map"})
    midi = preset.midi
    if "input" in m:
        midi.input = c.string(m["input"], "midi.input")
    if "output" in m:
        midi.output = c.string(m["output"], "midi.output")
    midi.soft_takeover = c.boolean(m.get("soft_takeover", True), "midi.soft_takeover")
    maps = m.get("map", [])
    if not isinstance(maps, list):
        c.fail("midi.map", "must be an array of tables", "write each mapping as [[midi.map]]")
    if len(maps) > MAX_MAPPINGS:
        c.fail("midi.map", f"has {len(maps)} mappings", f"use at most {MAX_MAPPINGS}")
    for i, mp in enumerate(maps):
        key = f"midi.map[{i}]"
        mp = c.table(
            mp,
            key,
            {"kind", "channel", "number", "action", "stem", "bus", "mode", "range_db", "presets"}
            | {"insert", "param", "range"},
        )
        for req in ("kind", "action"):
            if req not in mp:
                c.fail(
                    f"{key}.{req}",
                    "is missing",
                    f"add {req} = ... ({', '.join(MIDI_KINDS if req == 'kind' else MIDI_ACTIONS)})",
                )
        mapping = MidiMapping(
            kind=c.string(mp["kind"], f"{key}.kind", MIDI_KINDS),
            action=c.string(mp["action"], f"{key}.action", MIDI_ACTIONS),
        )
        mapping.channel = c.number(mp.get("channel", 0), f"{key}.channel", 0, 16, integer=True)
        mapping.number = c.number(mp.get("number", 0), f"{key}.number", 0, 127, integer=True)
        if mapping.action in ("param", "bypass"):
            _parse_insert_target(c, mp, key, mapping, preset)
        elif mapping.action in ("gain", "mute", "solo"):
            if "stem" not in mp:
                c.fail(
                    f"{key}.stem", "is missing", f"say which stem the {mapping.action} applies to ({', '.join(stems)})"
                )
            mapping.stem = c.stem(mp["stem"], f"{key}.stem")
        mapping.bus = c.string(mp.get("bus", "main"), f"{key}.bus")
        if mapping.bus not in preset.buses:
            c.fail(
                f"{key}.bus",
                f"names a bus {mapping.bus!r} that the preset doesn't define",
                f"use one of {', '.join(preset.buses)} or add [buses.{mapping.bus}]",
            )
        mapping.mode = c.string(mp.get("mode", "toggle"), f"{key}.mode", ("toggle", "momentary"))
        if "range_db" in mp:
            r = mp["range_db"]
            if not (isinstance(r, list) and len(r) == 2):
                c.fail(
                    f"{key}.range_db", f"must be [low, high], not {short_repr(r)}", "write e.g. range_db = [-60.0, 6.0]"
                )
            lo = float(c.number(r[0], f"{key}.range_db", -120.0, 24.0))
            hi = float(c.number(r[1], f"{key}.range_db", -120.0, 24.0))
            if lo >= hi:
                c.fail(f"{key}.range_db", f"is [{lo}, {hi}], low not below high", "give the low end first")
            mapping.range_db = (lo, hi)
        if mapping.action == "preset":
            names = mp.get("presets", [])
            if not isinstance(names, list) or not names or len(names) > MAX_PRESET_LIST:
                c.fail(
                    f"{key}.presets",
                    f"must be a list of 1 to {MAX_PRESET_LIST} preset names",
                    'write e.g. presets = ["karaoke", "drummer"]',
                )
            for n in names:
                problem = preset_ref_problem(n)
                if problem:
                    c.fail(f"{key}.presets", problem, "name a shipped preset, or a .toml file in this preset's folder")
            mapping.presets = list(names)
        if mapping.kind == "program" and mapping.action != "preset":
            c.fail(
                f"{key}.action",
                f"is {mapping.action!r} for a program change",
                'use action = "preset" with kind = "program"',
            )
        midi.map.append(mapping)
    return preset


# ---- effect inserts (docs/PLUGINS.md) -------------------------------------------


def _parse_inserts(c: _Checker, value, key: str) -> list:
    """``[[...inserts]]``: an array of {plugin, params, bypass} tables, each checked against the
    installed plugin (installed, hostable, known parameters within their ranges)."""
    from .plugins import MAX_INSERTS, InsertSpec, check_insert

    if not isinstance(value, list):
        c.fail(key, f"must be an array of tables, not {short_repr(value)}", f"write each insert as [[{key}]]")
    if len(value) > MAX_INSERTS:
        c.fail(key, f"has {len(value)} inserts", f"use at most {MAX_INSERTS} per chain")
    out = []
    for i, ins in enumerate(value):
        ikey = f"{key}[{i}]"
        ins = c.table(ins, ikey, {"plugin", "params", "bypass"})
        if "plugin" not in ins:
            c.fail(f"{ikey}.plugin", "is missing", 'add plugin = "<LV2 URI>" (see `livedemix plugins list`)')
        uri = c.string(ins["plugin"], f"{ikey}.plugin")
        params = c.table(ins.get("params", {}), f"{ikey}.params", None)
        values = {}
        for sym, v in params.items():
            if not isinstance(sym, str) or len(sym) > 64:
                c.fail(f"{ikey}.params", f"has a bad parameter name {short_repr(sym)}", "use the ports' symbols")
            if isinstance(v, bool):
                v = 1.0 if v else 0.0
            values[sym] = float(c.number(v, f"{ikey}.params.{sym}", -1e9, 1e9))
        spec = InsertSpec(uri, values, c.boolean(ins.get("bypass", False), f"{ikey}.bypass"))
        problem = check_insert(spec)
        if problem:
            where, _, fix = problem.partition(": ")
            c.fail(ikey, where, fix or "remove the insert")
        out.append(spec)
    return out


def _parse_insert_target(c: _Checker, mp: dict, key: str, mapping: MidiMapping, preset: Preset) -> None:
    """A MIDI mapping to an insert: ``stem`` (its chain) or ``bus``; ``insert`` (1-based);
    for "param", the parameter's symbol and an optional ``range``."""
    from .plugins import control_inputs, plugin_info

    if "stem" in mp:
        mapping.stem = c.stem(mp["stem"], f"{key}.stem")
        chain, where = preset.stem_inserts.get(mapping.stem, []), f"stems.{mapping.stem}.inserts"
    else:
        bus = c.string(mp.get("bus", "main"), f"{key}.bus")
        chain = preset.buses[bus].inserts if bus in preset.buses else []
        where = f"buses.{bus}.inserts"
    mapping.insert = c.number(mp.get("insert", 1), f"{key}.insert", 1, max(1, len(chain)), integer=True)
    if not chain:
        c.fail(f"{key}.insert", f"targets {where}, which has no inserts", f"add [[{where}]] or target another chain")
    spec = chain[mapping.insert - 1]
    if mapping.action == "param":
        if "param" not in mp:
            c.fail(f"{key}.param", "is missing", f"name the parameter of {spec.plugin} to control")
        params = control_inputs(plugin_info(spec.plugin))
        mapping.param = c.string(mp["param"], f"{key}.param")
        if mapping.param not in params:
            c.fail(f"{key}.param", f"is not a parameter of {spec.plugin}", f"use one of {', '.join(params)}")
        lo, hi = params[mapping.param]["minimum"], params[mapping.param]["maximum"]
        if "range" in mp:
            r = mp["range"]
            if not (isinstance(r, list) and len(r) == 2):
                c.fail(
                    f"{key}.range", f"must be [low, high], not {short_repr(r)}", f"write e.g. range = [{lo:g}, {hi:g}]"
                )
            a = float(c.number(r[0], f"{key}.range", lo, hi))
            b = float(c.number(r[1], f"{key}.range", lo, hi))
            mapping.range = (a, b)


def load_preset(name_or_path: str | Path, stems: tuple[str, ...] = STEMS) -> Preset:
    """A shipped preset by name, or a preset file by path (a path the user gave: the file is
    still read bounded, regular files only). Presets named *inside* a preset are recalled with
    :func:`recall_preset`, which also confines them to that preset's folder."""
    p = Path(name_or_path)
    if not p.suffix:
        candidate = shipped_presets_dir() / f"{p.name}.toml"
        if is_identifier(p.name, frozenset()) and candidate.exists() and not p.exists():
            p = candidate
    if not p.exists():
        names = ", ".join(list_presets()) or "none"
        raise PresetError(
            f"preset {short_repr(str(name_or_path))} not found: give a .toml path or a shipped preset name ({names})"
        )
    return _load_file(p, stems)


def _load_file(p: Path, stems: tuple[str, ...]) -> Preset:
    text = read_text_bounded(p, MAX_PRESET_BYTES, "preset", PresetError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{p}: not valid TOML ({e}): fix the syntax at that line") from None
    except (RecursionError, MemoryError):
        raise PresetError(
            f"{p}: nests arrays or tables too deep to read: no preset needs that; check the file"
        ) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise PresetError(f"{p}: holds a value that can't be read ({str(e)[:80]}): fix the value") from None
    preset = parse_preset(data, p, stems)
    preset.path = p
    return preset


def preset_ref_problem(ref) -> str | None:
    """Why ``ref`` can't name a preset from inside another preset (None when it can): a shipped
    preset's name, or a relative ``.toml`` path with no ``..`` (resolved in that preset's folder)."""
    if not isinstance(ref, str):
        return f"lists {short_repr(ref)}, not a preset name"
    if is_identifier(ref, frozenset()):
        return None
    rel = Path(ref)
    if (
        not ref
        or len(ref) > 255
        or "\x00" in ref
        or "\\" in ref
        or rel.is_absolute()
        or ".." in rel.parts
        or rel.suffix != ".toml"
    ):
        return (
            f"lists {short_repr(ref)}: a preset is recalled by a shipped name or a .toml file under this "
            "preset's own folder, never by an absolute path or through '..'"
        )
    return None


def recall_preset(ref: str, base: Path | str | None, stems: tuple[str, ...] = STEMS) -> Preset:
    """A preset named by another preset (a MIDI program-change list): a shipped preset's name
    (or ``NAME.toml`` in ``base`` when no shipped preset has that name), or a relative .toml
    path that, with symlinks resolved, stays inside ``base`` (the naming preset's folder). The
    file is read bounded (a FIFO, /dev/zero or a huge file is refused, never read)."""
    problem = preset_ref_problem(ref)
    if problem:
        raise PresetError(f"a preset list {problem}")
    if is_identifier(ref, frozenset()):
        shipped = shipped_presets_dir() / f"{ref}.toml"
        if shipped.exists():
            return _load_file(shipped, stems)
        ref = f"{ref}.toml"
    if base is None:
        names = ", ".join(list_presets()) or "none"
        raise PresetError(f"preset {ref!r} is not a shipped preset: use one of {names}, or load the list from a file")
    base = Path(base)
    if not confined(ref, base):
        raise PresetError(
            f"preset {ref!r} leads outside {base} (through a symlink): recall presets in the same folder only"
        )
    path = base / ref
    if not path.exists():
        names = ", ".join(list_presets()) or "none"
        raise PresetError(f"preset {ref!r} is neither a shipped preset ({names}) nor a file in {base}: fix the name")
    return _load_file(path, stems)


def check_recalls(preset: Preset) -> None:
    """Recall every preset that the preset's program-change lists name (as the MIDI controller
    will when it starts): a PresetError naming the first that can't be used."""
    base = preset.path.parent if preset.path else None
    for m in preset.midi.map:
        for ref in m.presets:
            try:
                recall_preset(ref, base)
            except PresetError as e:
                where = preset.path or preset.name
                raise PresetError(f"{where}: a program change recalls {ref!r}, which can't be used ({e})") from None


def list_presets() -> list[str]:
    return sorted(f.stem for f in shipped_presets_dir().glob("*.toml"))


def preset_to_dict(preset: Preset) -> dict:
    """The preset as TOML-ready data (defaults included, so a saved preset says everything)."""
    e = preset.engine
    engine = {"latency": e.latency, "kappa": e.kappa}
    if e.n_iter is not None:
        engine["n_iter"] = e.n_iter
    if e.model:
        engine["model"] = e.model
    if e.phase:
        engine["phase"] = e.phase
    if e.mask_power is not None:
        engine["mask_power"] = e.mask_power
    buses = {}
    for name, b in preset.buses.items():
        buses[name] = {
            "outputs": list(b.outputs),
            "gain_db": b.gain_db,
            "stems": {s: {"gain_db": v.gain_db, "mute": v.mute, "solo": v.solo} for s, v in b.stems.items()},
        }
        if b.inserts:
            buses[name]["inserts"] = [i.to_dict() for i in b.inserts]
    midi: dict = {"soft_takeover": preset.midi.soft_takeover}
    if preset.midi.input:
        midi["input"] = preset.midi.input
    if preset.midi.output:
        midi["output"] = preset.midi.output
    maps = []
    for mp in preset.midi.map:
        d = {
            "kind": mp.kind,
            "action": mp.action,
            "channel": mp.channel,
            "number": mp.number,
            "bus": mp.bus,
            "mode": mp.mode,
            "range_db": list(mp.range_db),
        }
        if mp.stem:
            d["stem"] = mp.stem
        if mp.presets:
            d["presets"] = list(mp.presets)
        if mp.action in ("param", "bypass"):
            d["insert"] = mp.insert
            if mp.param:
                d["param"] = mp.param
            if mp.range is not None:
                d["range"] = list(mp.range)
        maps.append(d)
    if maps:
        midi["map"] = maps
    out = {
        "schema": SCHEMA_VERSION,
        "name": preset.name,
        "description": preset.description,
        "engine": engine,
        "buses": buses,
        "midi": midi,
    }
    if any(preset.stem_inserts.values()):
        out["stems"] = {s: {"inserts": [i.to_dict() for i in ins]} for s, ins in preset.stem_inserts.items() if ins}
    return out


def _merge_into(doc, new: dict) -> None:
    """Update a tomlkit table in place to hold ``new``: keys whose value is unchanged keep their
    formatting and comments, tables are merged key by key, keys no longer present go."""
    for k in [k for k in doc if k not in new]:
        del doc[k]
    for k, v in new.items():
        old = doc.get(k) if k in doc else None
        if isinstance(v, dict) and isinstance(old, dict) and not _is_inline(old):
            _merge_into(old, v)
        elif old is None or _plain(old) != v:
            doc[k] = v


def _is_inline(item) -> bool:
    import tomlkit.items

    return isinstance(item, tomlkit.items.InlineTable)


def _plain(item):
    return item.unwrap() if hasattr(item, "unwrap") else item


def preset_text(preset: Preset, previous: str | None = None) -> str:
    """The preset as TOML; with ``previous`` (the file's current text), the user's comments,
    key order and layout are kept wherever the values didn't change."""
    import tomlkit

    data = preset_to_dict(preset)
    if previous is not None:
        try:
            doc = tomlkit.parse(previous)
        except Exception:  # noqa: BLE001 — an unreadable old file is simply replaced
            doc = None
        if doc is not None:
            _merge_into(doc, data)
            return tomlkit.dumps(doc)
    return tomlkit.dumps(data)


def save_preset(preset: Preset, path: Path) -> None:
    """Write atomically: a temporary file beside the target, fsync, rename. A crash leaves the
    old file or the new one, never half of one. The user's comments and layout survive
    (format-preserving TOML), the file keeps its mode, and a symlink stays a symlink: the write
    goes to the file it points to."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    previous, mode = None, None
    if path.exists():
        st = os.stat(path)
        mode = stat.S_IMODE(st.st_mode)
        try:
            previous = read_text_bounded(path, MAX_PRESET_BYTES, "preset", PresetError)
        except PresetError:
            previous = None
    text = preset_text(preset, previous)
    parse_preset(tomllib.loads(text), path, tuple(next(iter(preset.buses.values())).stems))  # read back
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is None:  # a new file: the mode a plain open() would give it
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
