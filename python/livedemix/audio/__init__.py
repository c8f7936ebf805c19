"""Audio in and out: files (read, write atomically), devices, the read-ahead file reader, the
live stream and its resampling."""

from .devices import (
    JACK_CLIENT_NAME,
    AudioDeviceError,
    find_device,
    format_devices,
    host_apis,
    list_devices,
    parse_channels,
    release_portaudio,
    rescan_devices,
)
from .reader import FileReader
from .stream import ControlQueue, StreamRunner, StreamStats, power_scale

__all__ = [
    "AudioDeviceError",
    "StreamRunner",
    "FileReader",
    "ControlQueue",
    "StreamStats",
    "find_device",
    "list_devices",
    "format_devices",
    "parse_channels",
    "rescan_devices",
    "release_portaudio",
    "host_apis",
    "power_scale",
    "JACK_CLIENT_NAME",
]
