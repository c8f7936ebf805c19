"""The MIDI error type."""

from __future__ import annotations

from ..errors import LivedemixError


class MidiError(LivedemixError):
    """A MIDI port or mapping that can't be used; the message says what exists."""
