"""MIDI control with python-rtmidi: ports, decoding, the preset's mappings, soft takeover,
feedback to controller LEDs, and MIDI learn.

Threads: rtmidi calls :meth:`MidiController._on_message` on its own thread. That thread only
decodes the bytes, finds the mappings and posts them to the stream's
:class:`~livedemix.audio.ControlQueue`; the audio path applies them at the next block
boundary (toggles and soft takeover are decided there, against the engine's state of that
moment), and the mixer ramps the gains. Feedback runs on a thread of its own that sends the
mute/solo states whenever they change, whoever changed them (MIDI, keyboard, preset recall).

Messages that are malformed (a data byte without a status byte, i.e. running status; too
few or too many bytes; a data byte ≥ 128), undefined status bytes, system exclusive and
valid but unmapped messages are ignored and counted, never raised. With the JACK API,
rtmidi joins the events that follow an unterminated sysex to it until a 0xF7 arrives; they
arrive here as one sysex and are counted as one."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..presets import MidiMapping, MidiSettings, Preset, PresetError, recall_preset
from .decode import Message, decode, fader_db, fader_position
from .errors import MidiError
from .learn import mapping_for, replace_mapping
from .plugin_targets import check_insert_mapping, param_position, param_value, plugin_port
from .ports import CLIENT_NAME, VIRTUAL_IN, VIRTUAL_OUT, close_port, open_input, open_output


@dataclass
class MidiStats:
    received: int = 0
    mapped: int = 0  # messages that triggered at least one mapping
    applied: int = 0  # mapping actions posted to the audio path
    ignored: dict = field(default_factory=dict)  # reason → count
    takeover_waits: int = 0  # fader moves ignored until the fader reaches the current value

    @property
    def ignored_total(self) -> int:
        return sum(self.ignored.values())


class MidiController:
    """Drives an engine from MIDI through a control queue, with feedback of mute/solo states.

    ``MidiController(engine, controls, settings, input=None, output=None)``: ``settings`` is a
    preset's :class:`~livedemix.presets.MidiSettings` (mappings, soft takeover); ``input`` a port
    name substring or None for the virtual port ``livedemix``; ``output`` likewise for feedback
    (None: a virtual port ``livedemix-feedback``; False: no feedback).
    """

    def __init__(
        self,
        engine,
        controls,
        settings: MidiSettings,
        *,
        input: str | None = None,
        output: str | None | bool = None,
        api: int | None = None,
        source: Path | None = None,
    ):
        self.engine = engine
        self.source = source  # the preset file the mappings came from (MIDI learn saves there)
        self._learning = None  # (spec, on_done) while the UI waits for a control
        self.controls = controls
        self.settings = settings
        self.stats = MidiStats()
        self.input_spec, self.output_spec, self.api = input, output, api
        for m in settings.map:
            self._check_mapping(m)
        self._by_key = self._index(settings.map)
        self._presets = self._load_presets(settings, base=Path(source).parent if source else None)
        # soft takeover state per target: (picked up, last fader position, value we last set)
        self._takeover: dict[tuple, list] = {}
        self._preset_cursor: dict[int, int] = {}
        self._in = self._out = None
        self._fb_thread = None
        self._running = False
        self.last_messages: deque = deque(maxlen=8)  # for the UI

    def _check_mapping(self, m: MidiMapping) -> None:
        if m.action in ("param", "bypass"):
            check_insert_mapping(self.engine, m)
            return
        if m.action in ("gain", "mute", "solo", "master") and m.bus not in self.engine.buses:
            raise MidiError(
                f"a MIDI mapping targets bus '{m.bus}' but the engine has {', '.join(self.engine.buses)}: "
                f"play with a preset that defines it, or change the mapping's bus"
            )
        if m.stem is not None and m.stem not in self.engine.stems:
            raise MidiError(
                f"a MIDI mapping targets stem '{m.stem}' but the model separates {', '.join(self.engine.stems)}"
            )

    @staticmethod
    def _index(maps) -> dict[tuple[str, int, int], list[MidiMapping]]:
        by_key: dict = {}
        for m in maps:
            by_key.setdefault((m.kind, m.channel, m.number if m.kind != "program" else -1), []).append(m)
        return by_key

    def learn_next(self, spec: dict, on_done) -> None:
        """MIDI learn from the UI: the next CC, note-on or program change is mapped to ``spec``
        (a CC to the gain, a note to the mute of ``spec['stem']`` unless spec says otherwise);
        ``on_done(mapping)`` is called on the MIDI thread (save the preset elsewhere)."""
        self._learning = (spec, on_done)

    def cancel_learn(self) -> None:
        self._learning = None

    def _learn(self, msg: Message) -> bool:
        spec, on_done = self._learning
        if msg.kind not in ("cc", "note_on", "program"):
            return False
        if "action" not in spec:
            spec = {**spec, "action": "gain" if msg.kind == "cc" else "mute"}
        m = mapping_for(msg, spec)
        if m is None:
            return False
        self._learning = None
        self.settings.map = replace_mapping(self.settings.map, m)
        self._by_key = self._index(self.settings.map)  # one reference swap: read only by this thread
        on_done(m)
        return True

    @staticmethod
    def _load_presets(settings: MidiSettings, base: Path | None = None) -> dict[str, Preset]:
        """Presets a mapping can recall, read now (the audio path never touches a file): shipped
        names, or .toml files under ``base`` (the mapping preset's folder), bounded reads of
        regular files only (:func:`~livedemix.presets.recall_preset`)."""
        out = {}
        for m in settings.map:
            for name in m.presets:
                if name not in out:
                    try:
                        out[name] = recall_preset(name, base)
                    except PresetError as e:
                        raise MidiError(
                            f"a MIDI mapping recalls preset '{name}', which can't be loaded ({e})"
                        ) from None
        return out

    # ---- ports ----
    def start(self) -> None:
        self._in = open_input(self.input_spec, self.api)
        if self.output_spec is not False:
            try:
                self._out = open_output(self.output_spec or None, self.api)
            except MidiError:
                close_port(self._in)
                raise
        self._running = True
        self._in.set_callback(self._on_message)
        if self._out is not None:
            self._fb_thread = threading.Thread(target=self._feedback_loop, name="livedemix-midi-feedback", daemon=True)
            self._fb_thread.start()

    def close(self) -> None:
        self._running = False
        if self._fb_thread is not None:
            self._fb_thread.join(1.0)
        close_port(self._in)
        close_port(self._out)
        self._in = self._out = None

    @property
    def port_names(self) -> tuple[str, str | None]:
        virtual = (None, "virtual")
        return (
            f"{CLIENT_NAME}:{VIRTUAL_IN} (virtual)" if self.input_spec in virtual else self.input_spec,
            None
            if self.output_spec is False
            else (f"{CLIENT_NAME}-out:{VIRTUAL_OUT} (virtual)" if self.output_spec in virtual else self.output_spec),
        )

    # ---- MIDI thread ----
    def _ignore(self, reason: str) -> None:
        self.stats.ignored[reason] = self.stats.ignored.get(reason, 0) + 1

    def _on_message(self, event, data=None) -> None:
        try:
            raw = event[0]
            self.stats.received += 1
            msg = decode(raw)
            if isinstance(msg, str):
                self._ignore(msg)
                return
            if self._learning is not None and self._learn(msg):
                return
            self.handle(msg)
        except Exception:  # noqa: BLE001 — nothing from a MIDI cable may stop livedemix
            self._ignore("error")

    def handle(self, msg: Message) -> bool:
        """Post the mappings that ``msg`` triggers; returns whether any did."""
        self.last_messages.append(msg)
        if msg.kind in ("note_on", "note_off"):
            key, on = ("note", msg.number), msg.kind == "note_on"
        elif msg.kind == "cc":
            key, on = ("cc", msg.number), msg.value >= 64
        elif msg.kind == "program":
            key, on = ("program", -1), True
        else:
            self._ignore("unmapped")
            return False
        maps = self._by_key.get((key[0], msg.channel, key[1]), []) + self._by_key.get((key[0], 0, key[1]), [])
        if msg.kind == "program":  # program numbers past a mapping's list of presets
            maps = [m for m in maps if msg.number < len(m.presets)]
        if not maps:
            self._ignore("unmapped")
            return False
        self.stats.mapped += 1
        for m in maps:
            self.controls.post(self._apply, m, msg, on)
            self.stats.applied += 1
        return True

    # ---- audio path (block boundary) ----
    def _apply(self, m: MidiMapping, msg: Message, on: bool) -> None:
        eng = self.engine
        a = m.action
        if a in ("gain", "master"):
            if msg.kind != "cc":  # a note on a fader target: full up on press
                if msg.kind != "note_on":
                    return
                value = 127
            else:
                value = msg.value
            target = (a, m.bus, m.stem)
            current = eng.state(m.bus)[m.stem]["gain_db"] if a == "gain" else eng.state(m.bus)["master_db"]
            if (
                self.settings.soft_takeover
                and msg.kind == "cc"
                and not self._takes_over(target, value, current, m.range_db)
            ):
                self.stats.takeover_waits += 1
                return
            db = fader_db(value, m.range_db)
            if a == "gain":
                eng.set_gain(m.stem, db, m.bus)
            else:
                eng.set_master(db, m.bus)
            self._takeover.setdefault(target, [True, value, None])[2] = db
        elif a in ("mute", "solo"):
            st = eng.state(m.bus)[m.stem][a]
            if m.mode == "momentary":
                new = on
            else:
                if not on:  # toggles act on press only
                    return
                new = not st
            (eng.mute if a == "mute" else eng.solo)(m.stem, new, m.bus)
        elif a == "preset":
            if not m.presets:
                return
            if msg.kind == "program":
                name = m.presets[msg.number]
            else:
                if not on:
                    return
                i = (self._preset_cursor.get(id(m), -1) + 1) % len(m.presets)
                self._preset_cursor[id(m)] = i
                name = m.presets[i]
            eng.apply_preset(self._presets[name])
        elif a in ("param", "bypass"):
            self._apply_insert(m, msg, on)

    def _apply_insert(self, m: MidiMapping, msg: Message, on: bool) -> None:
        """A plugin parameter (CC over the range, with soft takeover) or an insert's bypass."""
        chain = self.engine.insert_chain(stem=m.stem, bus=m.bus)
        slot = m.insert - 1
        if m.action == "bypass":
            if m.mode == "momentary":
                chain.set_bypass(slot, on)  # bypassed while held
            elif on:
                chain.set_bypass(slot, not chain.bypassed(slot))
            return
        if msg.kind == "cc":
            value = msg.value
        elif msg.kind == "note_on":
            value = 127
        else:
            return
        lo, hi = m.range if m.range is not None else chain.param_range(slot, m.param)
        port = plugin_port(chain, slot, m.param)
        target = ("param", m.stem, m.bus, m.insert, m.param)
        current = chain.param(slot, m.param)
        if self.settings.soft_takeover and msg.kind == "cc":
            pos = param_position(current, lo, hi, port)
            st = self._takeover.setdefault(target, [False, None, None])
            picked, last, ours = st
            if picked and ours is not None and abs(current - ours) > 1e-6 * (1 + abs(ours)):
                picked, last = False, None  # moved by a preset, the UI or another control
            if not picked and (abs(value - pos) <= 1.0 or (last is not None and (last - pos) * (value - pos) <= 0)):
                picked = True
            st[0], st[1] = picked, value
            if not picked:
                self.stats.takeover_waits += 1
                return
        chain.set_param(slot, m.param, param_value(value, lo, hi, port))
        self._takeover.setdefault(target, [True, value, None])[2] = chain.param(slot, m.param)

    def _takes_over(self, target, value: int, current_db: float, range_db) -> bool:
        """Soft takeover: a fader moves its target only after it reaches the target's value
        (within one step, or by crossing it); a change from elsewhere drops it again."""
        st = self._takeover.setdefault(target, [False, None, None])
        picked, last, ours = st
        if picked and ours is not None and current_db != ours:
            picked, last = False, None  # moved by a preset, the keyboard or another control
        if not picked:
            cur = fader_position(current_db, range_db)
            if abs(value - cur) <= 1.0 or (last is not None and (last - cur) * (value - cur) <= 0):
                picked = True
        st[0], st[1] = picked, value
        return picked

    # ---- feedback ----
    def feedback_messages(self) -> list[list[int]]:
        """The note/CC messages that show every mapped mute/solo state (what the LEDs should be)."""
        out = []
        for m in self.settings.map:
            if m.action not in ("mute", "solo", "bypass") or m.kind == "program":
                continue
            ch = (m.channel or 1) - 1
            if m.action == "bypass":  # the LED is lit while the effect is active
                chain = self.engine.insert_chain(stem=m.stem, bus=m.bus)
                on = chain is not None and not chain.bypassed(m.insert - 1)
                out.append([(0x90 if m.kind == "note" else 0xB0) | ch, m.number, 127 if on else 0])
                continue
            on = bool(self.engine.state(m.bus)[m.stem][m.action])
            if m.kind == "note":
                out.append([0x90 | ch, m.number, 127 if on else 0])
            else:
                out.append([0xB0 | ch, m.number, 127 if on else 0])
        return out

    def _feedback_loop(self) -> None:
        sent: dict[tuple, list[int]] = {}
        while self._running:
            try:
                for msg in self.feedback_messages():
                    key = (msg[0], msg[1])
                    if sent.get(key) != msg:
                        self._out.send_message(msg)
                        sent[key] = msg
            except Exception:  # noqa: BLE001 — a port that vanished: keep the audio going
                pass
            time.sleep(0.02)
