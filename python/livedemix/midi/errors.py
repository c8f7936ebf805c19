"""The MIDI error type."""

from __future__ import annotations





class MidiError(ValueError):
    """A MIDI port or mapping that can't be used; the message says what exists."""


