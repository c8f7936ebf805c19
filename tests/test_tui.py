"""The terminal UI: key parsing and key actions on a real engine without a terminal, and the
whole UI of `livedemix play` driven through a pseudo-terminal over JACK."""

from __future__ import annotations

import math
import os
import re
import select
import sys
import time
from pathlib import Path

import pytest
from live_support import DEMO, REPO, jack_server, live_model  # noqa: F401
from livedemix.apps.tui import KeyControls, parse_keys
from livedemix.audio import ControlQueue
from livedemix.engine import Engine

pytestmark = pytest.mark.live


def test_parse_keys():
    assert parse_keys("1!\x1b[A\x1b[B\x1b[C\x1b[Dq") == ["1", "!", "up", "down", "right", "left", "q"]
    assert parse_keys("\x1bOA") == ["up"]
    assert parse_keys("a\x1b[15~b") == ["a", "b"]  # F5 and other sequences are skipped
    assert parse_keys("") == []


def test_keys_mute_solo_select_gain_bus_and_presets(live_model):
    eng = Engine(model=live_model, preset="cue-vocals" if False else None, buses=["main", "cue"], block_size=256)
    q = ControlQueue()
    kc = KeyControls(eng, q.post, presets=["karaoke", "drummer"])

    def press(*keys):
        for k in keys:
            assert kc.key(k)
        q.drain(limit=1000)

    st = lambda bus="main": eng.state(bus)  # noqa: E731
    press("1")
    assert st()["vocals"]["mute"] is True
    press("1")
    assert st()["vocals"]["mute"] is False
    press("@")  # shift+2
    assert st()["drums"]["solo"] is True
    press("@", "right", "right", "down", "down")
    assert kc.stem_name == "bass" and st()["bass"]["gain_db"] == -2.0 and st()["drums"]["solo"] is False
    press("up", "0")
    assert st()["bass"]["gain_db"] == 0.0
    for _ in range(61):
        press("down")
    assert st()["bass"]["gain_db"] == -math.inf  # below the floor: off
    press("up")
    assert st()["bass"]["gain_db"] == -60.0
    press("left", "left", "left")
    assert kc.stem_name == "other"
    press("b", "4")  # the cue bus: its own mutes
    assert st("cue")["other"]["mute"] is True and st("main")["other"]["mute"] is False
    press("b", "p")
    assert kc.message == "recalled karaoke" and st()["vocals"]["mute"] is True
    press("p")
    assert kc.message == "recalled drummer" and st()["drums"]["mute"] is True and st()["vocals"]["mute"] is False
    press("x", "9", "%")  # unmapped keys do nothing
    assert kc.key("q") is False


def _strip(b: bytes) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b.decode("utf-8", "replace"))


@pytest.mark.jack
def test_play_ui_in_a_pseudo_terminal(jack_server, live_model):
    """The UI draws meters and state, takes keys from the terminal, and q ends the run cleanly."""
    import pty

    env = dict(os.environ, COLUMNS="140", LINES="40", TERM="xterm")
    import livedemix as _ld  # the child imports the same livedemix as this process (installed or source)

    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(_ld.__file__).resolve().parents[1]), env.get("PYTHONPATH")])
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: livedemix with a terminal
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "livedemix", "play", str(DEMO), "--model", str(live_model), "--preset", "karaoke"],
            env,
        )
    out = b""

    def pump(seconds):
        nonlocal out
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return

    try:
        t_end = time.monotonic() + 60
        while "livedemix" not in _strip(out) or "vocals" not in _strip(out):
            assert time.monotonic() < t_end, _strip(out)[-2000:]
            pump(0.2)
        pump(1.0)
        for k in (b"2", b"\x1b[C", b"\x1b[A", b"\x1b[A", b"\x1b[A"):  # mute drums; drums +3 dB
            os.write(fd, k)
            pump(0.3)
        pump(1.0)
        screen = _strip(out)
        os.write(fd, b"q")
        pump(5)
    finally:
        _, status = os.waitpid(pid, 0)
    text = _strip(out)
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    frames = [f for f in screen.split("╭") if "vocals" in f and "q quit" in f]
    last = frames[-1]  # the last complete drawing of the panel
    assert re.search(r"1\s+vocals .*\+0\.0 dB\s+M", last)  # karaoke: vocals muted
    assert re.search(r"▶2\s+drums .*\+3\.0 dB\s+M", last)  # muted and raised from the keyboard
    assert re.search(r"▶main\s+1-2", last) and "latency 11.6 ms" in last and "xruns" in last
    assert "stopped: quit" in text and "Traceback" not in text


def test_midi_learn_from_the_ui_maps_the_next_control_and_saves_it(live_model, tmp_path):
    import shutil

    from livedemix.midi import MidiController
    from livedemix.presets import load_preset, shipped_presets_dir

    copy = tmp_path / "pads.toml"
    shutil.copy(shipped_presets_dir() / "fader-controller.toml", copy)
    preset = load_preset(copy)
    eng = Engine(model=live_model, preset=preset, block_size=256)
    q = ControlQueue()
    midi = MidiController(eng, q, preset.midi, output=False, source=copy)
    kc = KeyControls(eng, q.post, presets=[], midi=midi)
    kc.key("right")
    kc.key("right")  # bass
    kc.key("l")
    assert "MIDI learn" in kc.message
    midi._on_message(([0xF8], 0.0))  # a clock tick is not a control: still learning
    midi._on_message(([0x92, 50, 100], 0.0))  # a pad: note 50 on channel 3 → bass mute
    kc.poll()
    assert kc.message == f"learned note 50 on channel 3 → bass mute (toggle); saved to {copy}"
    saved = [m for m in load_preset(copy).midi.map if m.kind == "note" and m.number == 50]
    assert len(saved) == 1 and saved[0].stem == "bass" and saved[0].action == "mute" and saved[0].channel == 3
    midi._on_message(([0x92, 50, 100], 0.0))  # the pad now works
    q.drain()
    assert eng.state()["bass"]["mute"] is True
    # A fader learned while the mappings come from a shipped preset works but is not saved.
    midi.source = shipped_presets_dir() / "fader-controller.toml"
    kc.key("l")
    midi._on_message(([0xB0, 20, 5], 0.0))
    kc.poll()
    assert kc.message.startswith("learned CC 20 on channel 1 → bass gain (not saved")
    kc.key("l")
    kc.key("l")
    assert kc.message == "MIDI learn cancelled" and midi._learning is None
