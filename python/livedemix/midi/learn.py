"""MIDI learn: wait for a control, map it to a target, write the preset atomically."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from ..presets import MidiMapping, load_preset, recall_preset, save_preset
from .decode import Message, decode
from .errors import MidiError
from .ports import CLIENT_NAME, VIRTUAL_IN, close_port, open_input


def parse_target(text: str, stems, base: Path | None = None) -> dict:
    """'gain:vocals', 'gain:vocals@cue', 'mute:drums', 'solo:bass', 'master', 'master@cue',
    'preset:karaoke,drummer' → the mapping's action, stem, bus and presets."""
    t = text.strip()
    action, _, rest = t.partition(":")
    bus = "main"
    if "@" in (rest or action):
        if rest:
            rest, _, bus = rest.partition("@")
        else:
            action, _, bus = action.partition("@")
    action = action.lower()
    if action in ("param", "bypass"):  # effect inserts: param:vocals/1/gain, bypass:@main/1
        from .plugin_targets import parse_insert_target

        return parse_insert_target(action, t.partition(":")[2], stems)
    ok = "gain:STEM, mute:STEM, solo:STEM (each with an optional @BUS), master[@BUS] or preset:NAME1,NAME2"
    if action in ("gain", "mute", "solo"):
        if rest not in stems:
            raise MidiError(f"--target {text!r} names no stem of {', '.join(stems)}: write e.g. {action}:vocals")
        return {"action": action, "stem": rest, "bus": bus}
    if action == "master":
        return {"action": "master", "bus": bus}
    if action == "preset":
        names = [n.strip() for n in rest.split(",") if n.strip()]
        if not names:
            raise MidiError(f"--target {text!r} lists no presets: write e.g. preset:karaoke,drummer")
        for n in names:
            recall_preset(n, base)  # as the controller will: shipped names or files beside the preset
        return {"action": "preset", "presets": names}
    raise MidiError(f"--target {text!r} is not a target: use {ok}")


def learn(
    preset_path: str | Path,
    target: str,
    *,
    port: str | None = None,
    timeout: float = 60.0,
    mode: str = "toggle",
    range_db: tuple[float, float] | None = None,
    api: int | None = None,
    on_waiting=None,
) -> MidiMapping:
    """Wait for a control (a CC, a note-on or a program change), map it to ``target`` and write
    the preset file atomically; a mapping of the same control is replaced. Returns the mapping."""
    path = Path(preset_path)
    if not path.suffix == ".toml" or not path.exists():
        raise MidiError(
            f"midi learn writes into a preset file and {str(preset_path)!r} is not one: copy a preset first "
            f"(e.g. `livedemix presets show fader-controller > my.toml`) and pass its path"
        )
    preset = load_preset(path)
    from .. import STEMS

    spec = parse_target(target, STEMS, base=path.parent)
    if spec["action"] in ("param", "bypass"):
        from .plugin_targets import check_against_preset

        check_against_preset(spec, preset, target, range_db)
    if spec.get("bus", "main") not in preset.buses:
        raise MidiError(
            f"--target {target!r} names bus '{spec['bus']}', which {path} does not define: "
            f"use one of {', '.join(preset.buses)}"
        )
    got: deque = deque()
    mi = open_input(port, api, client=CLIENT_NAME + "-learn")
    mi.set_callback(lambda ev, d=None: got.append(ev[0]))
    if on_waiting is not None:
        on_waiting()
    try:
        t_end = time.monotonic() + timeout
        msg = None
        while msg is None:
            if time.monotonic() > t_end:
                raise MidiError(
                    f"no control moved within {timeout:.0f} s: move a fader, press a pad or send a program "
                    f"change on '{port or VIRTUAL_IN}', or give --timeout"
                )
            while got:
                m = decode(got.popleft())
                if isinstance(m, Message) and m.kind in ("cc", "note_on", "program"):
                    msg = m
                    break
            time.sleep(0.005)
    finally:
        close_port(mi)
    mapping = mapping_for(msg, spec, mode=mode, range_db=range_db)
    if mapping is None:
        raise MidiError(
            f"a program change can only recall presets, not {target!r}: use --target preset:NAME1,NAME2, "
            f"or move a fader or press a pad"
        )
    preset.midi.map = replace_mapping(preset.midi.map, mapping)
    save_preset(preset, path)
    return mapping


def mapping_for(msg: Message, spec: dict, mode: str = "toggle", range_db=None) -> MidiMapping | None:
    """The mapping of the control that sent ``msg`` to ``spec`` (see :func:`parse_target`);
    None when that kind of control can't drive it (a program change only recalls presets)."""
    kind = {"cc": "cc", "note_on": "note", "program": "program"}[msg.kind]
    if kind == "program" and spec["action"] != "preset":
        return None
    m = MidiMapping(
        kind=kind,
        action=spec["action"],
        channel=msg.channel,
        number=msg.number if kind != "program" else 0,
        stem=spec.get("stem"),
        bus=spec.get("bus", "main"),
        mode=mode,
        presets=list(spec.get("presets", [])),
        insert=int(spec.get("insert", 1)),
        param=spec.get("param"),
    )
    if range_db is not None:
        if m.action == "param":  # a plugin parameter's range, in the parameter's units
            m.range = tuple(range_db)
        else:
            m.range_db = tuple(range_db)
    return m


def replace_mapping(maps: list[MidiMapping], new: MidiMapping) -> list[MidiMapping]:
    """``maps`` without any mapping of the same control (kind, number, overlapping channel), plus ``new``."""

    def same_control(m: MidiMapping) -> bool:
        return (
            m.kind == new.kind
            and (new.kind == "program" or m.number == new.number)
            and (m.channel in (0, new.channel) or new.channel == 0)
        )

    return [m for m in maps if not same_control(m)] + [new]


def describe_mapping(m: MidiMapping) -> str:
    ctl = {"cc": f"CC {m.number}", "note": f"note {m.number}", "program": "program change"}[m.kind]
    ch = f"channel {m.channel}" if m.channel else "any channel"
    what = {
        "gain": f"{m.stem} gain",
        "mute": f"{m.stem} mute ({m.mode})",
        "solo": f"{m.stem} solo ({m.mode})",
        "master": "master gain",
        "preset": "preset " + ", ".join(m.presets),
        "param": f"{m.stem or m.bus} insert {m.insert} {m.param}",
        "bypass": f"{m.stem or m.bus} insert {m.insert} bypass ({m.mode})",
    }[m.action]
    bus = f" on bus {m.bus}" if m.action not in ("preset", "param", "bypass") and m.bus != "main" else ""
    return f"{ctl} on {ch} → {what}{bus}"
