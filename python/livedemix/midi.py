"""MIDI control with python-rtmidi: ports, decoding, the preset's mappings, soft takeover,
feedback to controller LEDs, and MIDI learn.

Threads: rtmidi calls :meth:`MidiController._on_message` on its own thread. That thread only
decodes the bytes, finds the mappings and posts them to the stream's
:class:`~livedemix.live_audio.ControlQueue`; the audio path applies them at the next block
boundary (toggles and soft takeover are decided there, against the engine's state of that
moment), and the mixer ramps the gains. Feedback runs on a thread of its own that sends the
mute/solo states whenever they change, whoever changed them (MIDI, keyboard, preset recall).

Messages that are malformed (a data byte without a status byte, i.e. running status; too
few or too many bytes; a data byte ≥ 128), undefined status bytes, system exclusive and
valid but unmapped messages are ignored and counted, never raised. With the JACK API,
rtmidi joins the events that follow an unterminated sysex to it until a 0xF7 arrives; they
arrive here as one sysex and are counted as one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .presets import MidiMapping, MidiSettings, Preset, PresetError, load_preset, save_preset

CLIENT_NAME = "livedemix-midi"
VIRTUAL_IN = "livedemix"
VIRTUAL_OUT = "livedemix-feedback"
FADER_GM_DB = 40.0  # the General MIDI volume law: 40·log10(value/127) dB


class MidiError(ValueError):
    """A MIDI port or mapping that can't be used; the message says what exists."""


# ---- ports -----------------------------------------------------------------------------------

def _rtmidi():
    try:
        import rtmidi
    except ImportError as e:
        raise MidiError(f"python-rtmidi can't be loaded ({e}): pip install python-rtmidi") from None
    return rtmidi


def midi_api(name: str | None = None) -> int:
    """The rtmidi API: 'jack' or 'alsa'; by default JACK when a JACK server runs, else ALSA."""
    rtmidi = _rtmidi()
    if name == "jack":
        return rtmidi.API_UNIX_JACK
    if name == "alsa":
        return rtmidi.API_LINUX_ALSA
    if name is not None:
        raise MidiError(f"unknown MIDI API {name!r}: use jack or alsa")
    if rtmidi.API_UNIX_JACK in rtmidi.get_compiled_api():
        from .live_audio import quiet_stderr

        try:
            with quiet_stderr():
                probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{CLIENT_NAME}-probe")
            probe.delete()
            return rtmidi.API_UNIX_JACK
        except rtmidi.RtMidiError:
            pass
    return rtmidi.API_LINUX_ALSA


def _open(kind: str, api: int | None, client: str):
    rtmidi = _rtmidi()
    api = midi_api() if api is None else api
    cls = rtmidi.MidiIn if kind == "input" else rtmidi.MidiOut
    from .live_audio import quiet_stderr

    try:
        with quiet_stderr():
            return cls(api, name=client)
    except rtmidi.RtMidiError as e:
        hint = "start a JACK server" if api == rtmidi.API_UNIX_JACK else "load the ALSA sequencer (modprobe snd-seq) or start a JACK server"
        raise MidiError(f"MIDI is not available ({rtmidi.get_api_display_name(api)}: {e}): {hint}") from None


def list_ports(api: int | None = None) -> dict:
    api = midi_api() if api is None else api
    mi, mo = _open("input", api, f"{CLIENT_NAME}-list"), _open("output", api, f"{CLIENT_NAME}-list")
    try:
        return {"api": _rtmidi().get_api_name(api), "inputs": mi.get_ports(), "outputs": mo.get_ports()}
    finally:
        mi.delete()
        mo.delete()


def _pick(ports: list[str], spec: str, kind: str) -> int:
    matches = [i for i, p in enumerate(ports) if spec.lower() in p.lower()]
    if len(matches) == 1:
        return matches[0]
    exact = [i for i in matches if ports[i].lower() == spec.lower()]
    if len(exact) == 1:
        return exact[0]
    listing = ", ".join(f"'{p}'" for p in ports) or "none"
    if not matches:
        raise MidiError(f"no MIDI {kind} port matches '{spec}': the {kind} ports are {listing}")
    raise MidiError(f"'{spec}' matches several MIDI {kind} ports ({', '.join(repr(ports[i]) for i in matches)}): give more of the name")


def _open_port(kind: str, spec: str | None, api: int | None, client: str, virtual_name: str):
    port = _open(kind, api, client)
    if kind == "input":
        port.ignore_types(sysex=False, timing=True, active_sense=True)  # sysex reaches us to be counted
    try:
        if spec is None or spec == "virtual":
            port.open_virtual_port(virtual_name)
        else:
            port.open_port(_pick(port.get_ports(), spec, kind), name=virtual_name)
    except _rtmidi().RtMidiError as e:
        port.delete()
        raise MidiError(f"the MIDI {kind} can't be opened ({e}): check `livedemix midi ports`") from None
    except MidiError:
        port.delete()
        raise
    return port


def open_input(spec: str | None = None, api: int | None = None, client: str = CLIENT_NAME):
    """An rtmidi MidiIn on the port whose name contains ``spec``, or on a virtual port named
    ``livedemix`` (others connect to it) when ``spec`` is None or 'virtual'."""
    return _open_port("input", spec, api, client, VIRTUAL_IN)


def open_output(spec: str | None = None, api: int | None = None, client: str = CLIENT_NAME + "-out"):
    """An rtmidi MidiOut (controller feedback) chosen like :func:`open_input`."""
    return _open_port("output", spec, api, client, VIRTUAL_OUT)


def close_port(port) -> None:
    """Close and free an rtmidi port (a JACK client that vanishes unclosed can stall the server)."""
    if port is None:
        return
    try:
        if hasattr(port, "cancel_callback"):
            port.cancel_callback()
    except Exception:  # noqa: BLE001 — no callback was set
        pass
    try:
        port.close_port()
    finally:
        port.delete()


# ---- decoding --------------------------------------------------------------------------------

_VOICE_LEN = {0x8: 3, 0x9: 3, 0xA: 3, 0xB: 3, 0xC: 2, 0xD: 2, 0xE: 3}
_VOICE_KIND = {0x8: "note_off", 0x9: "note_on", 0xA: "poly_aftertouch", 0xB: "cc", 0xC: "program",
               0xD: "aftertouch", 0xE: "pitchbend"}
_SYSTEM = {0xF1: ("mtc_quarter_frame", 2), 0xF2: ("song_position", 3), 0xF3: ("song_select", 2),
           0xF6: ("tune_request", 1), 0xF8: ("clock", 1), 0xFA: ("start", 1), 0xFB: ("continue", 1),
           0xFC: ("stop", 1), 0xFE: ("active_sensing", 1), 0xFF: ("reset", 1)}


@dataclass(frozen=True)
class Message:
    kind: str  # note_on, note_off, cc, program, pitchbend, aftertouch, poly_aftertouch, or a system kind
    channel: int = 0  # 1..16 (0 for system messages)
    number: int = 0  # note, controller or program number
    value: int = 0  # velocity, controller value, pressure; pitch bend -8192..8191

    def __str__(self) -> str:
        if self.kind in ("note_on", "note_off"):
            return f"{self.kind:<9} ch {self.channel:>2} note {self.number:>3} velocity {self.value}"
        if self.kind == "cc":
            return f"cc        ch {self.channel:>2} #{self.number:<3} = {self.value}"
        if self.kind == "program":
            return f"program   ch {self.channel:>2} {self.number}"
        if self.kind == "pitchbend":
            return f"pitchbend ch {self.channel:>2} {self.value:+d}"
        if self.kind in ("aftertouch", "poly_aftertouch"):
            return f"{self.kind} ch {self.channel} {self.number} {self.value}".strip()
        return self.kind


def decode(data) -> Message | str:
    """Bytes of one MIDI message → a :class:`Message`, or a string naming why it is ignored
    ('empty', 'running status', 'truncated', 'too long', 'data out of range', 'sysex',
    'undefined status')."""
    if not data:
        return "empty"
    status = data[0]
    if not 0 <= status <= 0xFF:
        return "data out of range"
    if status < 0x80:
        return "running status"
    if status == 0xF0:
        return "sysex"
    if status >= 0xF0:
        if status not in _SYSTEM:
            return "undefined status"
        kind, n = _SYSTEM[status]
        if len(data) != n:
            return "truncated" if len(data) < n else "too long"
        if any(not 0 <= b < 0x80 for b in data[1:]):
            return "data out of range"
        return Message(kind)
    hi = status >> 4
    n = _VOICE_LEN[hi]
    if len(data) < n:
        return "truncated"
    if len(data) > n:
        return "too long"
    if any(not 0 <= b < 0x80 for b in data[1:]):
        return "data out of range"
    ch = (status & 0x0F) + 1
    kind = _VOICE_KIND[hi]
    if kind == "pitchbend":
        return Message(kind, ch, 0, (data[1] | (data[2] << 7)) - 8192)
    if kind in ("program", "aftertouch"):
        return Message(kind, ch, data[1] if kind == "program" else 0, data[1] if kind == "aftertouch" else 0)
    if kind == "note_on" and data[2] == 0:
        kind = "note_off"
    return Message(kind, ch, data[1], data[2])


# ---- fader law ---------------------------------------------------------------------------------

def fader_db(value: int, range_db: tuple[float, float]) -> float:
    """CC value → gain in dB: 0 is off (-inf); otherwise the General MIDI volume law
    40·log10(value/127) below the top of the range, so 127 is ``range_db[1]``, about 2/3 of
    the travel is 6 dB below it, and the bottom of the range is a floor."""
    lo, hi = range_db
    if value <= 0:
        return -math.inf
    return max(lo, hi + FADER_GM_DB * math.log10(min(value, 127) / 127.0))


def fader_position(db: float, range_db: tuple[float, float]) -> float:
    """The inverse of :func:`fader_db` as a (fractional) CC value 0..127."""
    lo, hi = range_db
    if db == -math.inf or db < lo:
        return 0.0
    return min(127.0, 127.0 * 10 ** ((min(db, hi) - hi) / FADER_GM_DB))


# ---- the controller ------------------------------------------------------------------------------

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

    def __init__(self, engine, controls, settings: MidiSettings, *, input: str | None = None,
                 output: str | None | bool = None, api: int | None = None, source: Path | None = None):
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
        self._presets = self._load_presets(settings)
        # soft takeover state per target: (picked up, last fader position, value we last set)
        self._takeover: dict[tuple, list] = {}
        self._preset_cursor: dict[int, int] = {}
        self._in = self._out = None
        self._fb_thread = None
        self._running = False
        self.last_messages: deque = deque(maxlen=8)  # for the UI

    def _check_mapping(self, m: MidiMapping) -> None:
        if m.action in ("gain", "mute", "solo", "master") and m.bus not in self.engine.buses:
            raise MidiError(f"a MIDI mapping targets bus '{m.bus}' but the engine has {', '.join(self.engine.buses)}: "
                            f"play with a preset that defines it, or change the mapping's bus")
        if m.stem is not None and m.stem not in self.engine.stems:
            raise MidiError(f"a MIDI mapping targets stem '{m.stem}' but the model separates {', '.join(self.engine.stems)}")

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
    def _load_presets(settings: MidiSettings) -> dict[str, Preset]:
        """Presets a mapping can recall, read now (the audio path never touches a file)."""
        out = {}
        for m in settings.map:
            for name in m.presets:
                if name not in out:
                    try:
                        out[name] = load_preset(name)
                    except PresetError as e:
                        raise MidiError(f"a MIDI mapping recalls preset '{name}', which can't be loaded ({e})") from None
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
        return (f"{CLIENT_NAME}:{VIRTUAL_IN} (virtual)" if self.input_spec in virtual else self.input_spec,
                None if self.output_spec is False else
                (f"{CLIENT_NAME}-out:{VIRTUAL_OUT} (virtual)" if self.output_spec in virtual else self.output_spec))

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
            if self.settings.soft_takeover and msg.kind == "cc" and not self._takes_over(target, value, current, m.range_db):
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
            if m.action not in ("mute", "solo") or m.kind == "program":
                continue
            on = bool(self.engine.state(m.bus)[m.stem][m.action])
            ch = (m.channel or 1) - 1
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


# ---- MIDI learn -----------------------------------------------------------------------------------

def parse_target(text: str, stems) -> dict:
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
    ok = ("gain:STEM, mute:STEM, solo:STEM (each with an optional @BUS), master[@BUS] "
          "or preset:NAME1,NAME2")
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
            load_preset(n)
        return {"action": "preset", "presets": names}
    raise MidiError(f"--target {text!r} is not a target: use {ok}")


def learn(preset_path: str | Path, target: str, *, port: str | None = None, timeout: float = 60.0,
          mode: str = "toggle", range_db: tuple[float, float] | None = None, api: int | None = None,
          on_waiting=None) -> MidiMapping:
    """Wait for a control (a CC, a note-on or a program change), map it to ``target`` and write
    the preset file atomically; a mapping of the same control is replaced. Returns the mapping."""
    path = Path(preset_path)
    if not path.suffix == ".toml" or not path.exists():
        raise MidiError(f"midi learn writes into a preset file and {str(preset_path)!r} is not one: copy a preset first "
                        f"(e.g. `livedemix presets show fader-controller > my.toml`) and pass its path")
    preset = load_preset(path)
    from . import STEMS

    spec = parse_target(target, STEMS)
    if spec.get("bus", "main") not in preset.buses:
        raise MidiError(f"--target {target!r} names bus '{spec['bus']}', which {path} does not define: "
                        f"use one of {', '.join(preset.buses)}")
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
                raise MidiError(f"no control moved within {timeout:.0f} s: move a fader, press a pad or send a program "
                                f"change on '{port or VIRTUAL_IN}', or give --timeout")
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
        raise MidiError(f"a program change can only recall presets, not {target!r}: use --target preset:NAME1,NAME2, "
                        f"or move a fader or press a pad")
    preset.midi.map = replace_mapping(preset.midi.map, mapping)
    save_preset(preset, path)
    return mapping


def mapping_for(msg: Message, spec: dict, mode: str = "toggle", range_db=None) -> MidiMapping | None:
    """The mapping of the control that sent ``msg`` to ``spec`` (see :func:`parse_target`);
    None when that kind of control can't drive it (a program change only recalls presets)."""
    kind = {"cc": "cc", "note_on": "note", "program": "program"}[msg.kind]
    if kind == "program" and spec["action"] != "preset":
        return None
    m = MidiMapping(kind=kind, action=spec["action"], channel=msg.channel,
                    number=msg.number if kind != "program" else 0, stem=spec.get("stem"),
                    bus=spec.get("bus", "main"), mode=mode, presets=list(spec.get("presets", [])))
    if range_db is not None:
        m.range_db = tuple(range_db)
    return m


def replace_mapping(maps: list[MidiMapping], new: MidiMapping) -> list[MidiMapping]:
    """``maps`` without any mapping of the same control (kind, number, overlapping channel), plus ``new``."""
    def same_control(m: MidiMapping) -> bool:
        return (m.kind == new.kind and (new.kind == "program" or m.number == new.number)
                and (m.channel in (0, new.channel) or new.channel == 0))
    return [m for m in maps if not same_control(m)] + [new]


def describe_mapping(m: MidiMapping) -> str:
    ctl = {"cc": f"CC {m.number}", "note": f"note {m.number}", "program": "program change"}[m.kind]
    ch = f"channel {m.channel}" if m.channel else "any channel"
    what = {"gain": f"{m.stem} gain", "mute": f"{m.stem} mute ({m.mode})", "solo": f"{m.stem} solo ({m.mode})",
            "master": "master gain", "preset": "preset " + ", ".join(m.presets)}[m.action]
    bus = f" on bus {m.bus}" if m.action != "preset" and m.bus != "main" else ""
    return f"{ctl} on {ch} → {what}{bus}"


__all__ = ["MidiController", "MidiError", "Message", "decode", "fader_db", "fader_position", "learn", "list_ports",
           "mapping_for", "replace_mapping",
           "open_input", "open_output", "close_port", "parse_target", "describe_mapping", "midi_api"]
