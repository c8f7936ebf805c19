"""MIDI ports through python-rtmidi (JACK or ALSA): listing, opening by name, closing."""

from __future__ import annotations

from .errors import MidiError

CLIENT_NAME = "livedemix-midi"
VIRTUAL_IN = "livedemix"
VIRTUAL_OUT = "livedemix-feedback"


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
        from ..audio.devices import quiet_stderr

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
    from ..audio.devices import quiet_stderr

    try:
        with quiet_stderr():
            return cls(api, name=client)
    except rtmidi.RtMidiError as e:
        hint = (
            "start a JACK server"
            if api == rtmidi.API_UNIX_JACK
            else "load the ALSA sequencer (modprobe snd-seq) or start a JACK server"
        )
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
    raise MidiError(
        f"'{spec}' matches several MIDI {kind} ports ({', '.join(repr(ports[i]) for i in matches)}): give more of the name"
    )


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
