"""MIDI control: message decoding and the fader law, ports (python-rtmidi), the controller that
turns a preset's mappings into engine controls, and MIDI learn."""

from .controller import MidiController, MidiStats
from .decode import FADER_GM_DB, Message, decode, fader_db, fader_position
from .errors import MidiError
from .learn import describe_mapping, learn, mapping_for, parse_target, replace_mapping
from .ports import CLIENT_NAME, close_port, list_ports, midi_api, open_input, open_output

__all__ = [
    "MidiController",
    "MidiStats",
    "MidiError",
    "Message",
    "decode",
    "fader_db",
    "fader_position",
    "learn",
    "list_ports",
    "mapping_for",
    "replace_mapping",
    "open_input",
    "open_output",
    "close_port",
    "parse_target",
    "describe_mapping",
    "midi_api",
    "FADER_GM_DB",
    "CLIENT_NAME",
]
