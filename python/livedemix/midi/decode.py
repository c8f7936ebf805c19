"""MIDI message decoding (never raises on garbage) and the fader law."""

from __future__ import annotations

import math
from dataclasses import dataclass

FADER_GM_DB = 40.0  # the General MIDI volume law: 40·log10(value/127) dB


_VOICE_LEN = {0x8: 3, 0x9: 3, 0xA: 3, 0xB: 3, 0xC: 2, 0xD: 2, 0xE: 3}
_VOICE_KIND = {
    0x8: "note_off",
    0x9: "note_on",
    0xA: "poly_aftertouch",
    0xB: "cc",
    0xC: "program",
    0xD: "aftertouch",
    0xE: "pitchbend",
}
_SYSTEM = {
    0xF1: ("mtc_quarter_frame", 2),
    0xF2: ("song_position", 3),
    0xF3: ("song_select", 2),
    0xF6: ("tune_request", 1),
    0xF8: ("clock", 1),
    0xFA: ("start", 1),
    0xFB: ("continue", 1),
    0xFC: ("stop", 1),
    0xFE: ("active_sensing", 1),
    0xFF: ("reset", 1),
}


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
