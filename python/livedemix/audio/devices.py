"""Audio devices through PortAudio (sounddevice): listing, finding by index or name, channel lists."""

from __future__ import annotations

import ctypes
import sys

from ..errors import LivedemixError

JACK_CLIENT_NAME = "livedemix"
WATCHDOG_SECONDS = 2.0  # no callback for this long after the start: the device is gone


class AudioDeviceError(LivedemixError):
    """A device or channel that can't be used; the message lists what exists."""


# ---- devices -------------------------------------------------------------------------------

_pa_ready = False
_jack_name = ctypes.create_string_buffer(JACK_CLIENT_NAME.encode())  # PortAudio keeps the pointer


class quiet_stderr:
    """Silence C libraries that print to file descriptor 2 (libjack probing for a server, ALSA
    looking for its sequencer) while a device list is taken; our own errors say what matters."""

    def __enter__(self):
        import os

        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)
        return False


def _sd():
    """sounddevice, with PortAudio (re)initialised so its JACK client is called ``livedemix``
    and clients started after the import are listed."""
    global _pa_ready
    try:
        with quiet_stderr():
            import sounddevice as sd
    except OSError as e:  # PortAudio missing
        raise AudioDeviceError(f"PortAudio can't be loaded ({e}): install the Debian package libportaudio2") from None
    if not _pa_ready:
        with quiet_stderr():
            while sd._initialized > 0:
                sd._terminate()
            try:
                ctypes.CDLL(sd._libname).PaJack_SetClientName(_jack_name)
            except (OSError, AttributeError):  # a PortAudio built without JACK
                pass
            sd._initialize()
        _pa_ready = True
    return sd


def rescan_devices() -> None:
    """Forget PortAudio's device list (it is taken once); the next query scans again."""
    global _pa_ready
    _pa_ready = False


def release_portaudio() -> None:
    """Terminate PortAudio now (no stream may be open): its JACK client leaves the server, so
    the server may go away without PortAudio failing at exit."""
    global _pa_ready
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        with quiet_stderr():
            while sd._initialized > 0:
                sd._terminate()
    _pa_ready = False


def list_devices() -> list[dict]:
    """Every device: index, name, host API, input/output channels, default rate, defaults."""
    sd = _sd()
    apis = sd.query_hostapis()
    out = []
    for i, d in enumerate(sd.query_devices()):
        api = apis[d["hostapi"]]
        out.append(
            {
                "index": i,
                "name": d["name"],
                "hostapi": api["name"],
                "inputs": d["max_input_channels"],
                "outputs": d["max_output_channels"],
                "default_samplerate": d["default_samplerate"],
                "low_output_latency": d["default_low_output_latency"],
                "default_input": api["default_input_device"] == i,
                "default_output": api["default_output_device"] == i,
            }
        )
    return out


def host_apis() -> list[str]:
    return [a["name"] for a in _sd().query_hostapis()]


def _short_api(name: str) -> str:
    return "JACK" if name.startswith("JACK") else name


def _describe_all(devs: list[dict]) -> str:
    if not devs:
        return (
            "there are no audio devices (host APIs: "
            + ", ".join(_short_api(a) for a in host_apis())
            + "): start a JACK server or connect an audio interface"
        )
    return "the devices are " + "; ".join(
        f"{d['index']} '{d['name']}' ({_short_api(d['hostapi'])}, {d['inputs']} in/{d['outputs']} out)" for d in devs
    )


def format_devices(devs: list[dict]) -> str:
    if not devs:
        return "no audio devices; host APIs: " + ", ".join(host_apis())
    lines = [f"{'#':>3}  {'name':<32} {'host API':<12} {'in':>3} {'out':>3} {'rate':>7}"]
    for d in devs:
        mark = ("<" if d["default_input"] else " ") + (">" if d["default_output"] else " ")
        lines.append(
            f"{d['index']:>3}{mark}{d['name'][:32]:<32} {_short_api(d['hostapi'])[:12]:<12} "
            f"{d['inputs']:>3} {d['outputs']:>3} {d['default_samplerate']:>7.0f}"
        )
    lines.append("host APIs: " + ", ".join(host_apis()) + "   (< default input, > default output)")
    return "\n".join(lines)


def find_device(spec: str | int | None, kind: str) -> dict:
    """A device for ``kind`` ('input' or 'output'): by index, by name substring
    (case-insensitive; an exact name wins), or the default when ``spec`` is None."""
    devs = list_devices()
    key = "inputs" if kind == "input" else "outputs"
    usable = [d for d in devs if d[key] > 0]
    if spec is None:
        for d in usable:
            if d[f"default_{kind}"]:
                return d
        if usable:
            return usable[0]
        raise AudioDeviceError(f"there is no {kind} device: {_describe_all(devs)}")
    s = str(spec).strip()
    if s.isdigit():
        i = int(s)
        if i >= len(devs):
            raise AudioDeviceError(f"there is no device {i}: {_describe_all(devs)}")
        if devs[i][key] == 0:
            raise AudioDeviceError(f"device {i} '{devs[i]['name']}' has no {kind}s: {_describe_all(devs)}")
        return devs[i]
    matches = [d for d in usable if s.lower() in d["name"].lower()]
    exact = [d for d in matches if d["name"].lower() == s.lower()]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise AudioDeviceError(f"no {kind} device matches '{s}': {_describe_all(devs)}")
    names = ", ".join(f"{d['index']} '{d['name']}'" for d in matches)
    raise AudioDeviceError(f"'{s}' matches several {kind} devices ({names}): give the device's index instead")


def parse_channels(text: str | None, what: str = "--in") -> list[int] | None:
    """'1,2' or '3-4' or '1' → 1-based channel numbers."""
    if text is None:
        return None
    chans: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                chans += list(range(a, b + 1))
            else:
                chans.append(int(part))
    except ValueError:
        raise AudioDeviceError(f"{what} {text!r} is not a channel list: write e.g. {what} 1,2 or {what} 3-4") from None
    if not chans or len(chans) > 2 or min(chans) < 1:
        raise AudioDeviceError(
            f"{what} {text!r} must name one or two channels counted from 1: write e.g. {what} 1,2 or {what} 1"
        )
    return chans
