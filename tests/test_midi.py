"""MIDI: decoding, the fader law, mappings with soft takeover and toggles on a real engine, and
end to end over JACK MIDI: a second python-rtmidi client drives `livedemix live` while JACK
clients play into it and record it; MIDI learn, monitor and ports as a user runs them."""

from __future__ import annotations

import math
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from live_support import (  # noqa: F401
    DEMO,
    MidiPeer,
    MidiSender,
    Player,
    Recorder,
    finish,
    jack_server,
    live_model,
    livedemix,
    report_of,
    run_live_with_midi,
    wait_until,
)
from livedemix.audio import ControlQueue
from livedemix.engine import RAMP_SECONDS, Engine
from livedemix.midi import Message, MidiController, decode, fader_db, fader_position
from livedemix.presets import load_preset

pytestmark = pytest.mark.live

TEST_PRESET = """schema = 1
name = "midi-test"
[buses.main]
outputs = [1, 2]
[midi]
soft_takeover = true
[[midi.map]]
kind = "cc"
number = 0
action = "gain"
stem = "vocals"
range_db = [-60.0, 0.0]
[[midi.map]]
kind = "note"
number = 36
action = "mute"
stem = "vocals"
[[midi.map]]
kind = "note"
channel = 2
number = 40
action = "solo"
stem = "drums"
mode = "momentary"
[[midi.map]]
kind = "cc"
number = 7
action = "master"
[[midi.map]]
kind = "program"
action = "preset"
presets = ["karaoke", "drummer"]
"""


# ---- decoding and the fader law --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, want",
    [
        ([0xB3, 7, 100], Message("cc", 4, 7, 100)),
        ([0x90, 60, 90], Message("note_on", 1, 60, 90)),
        ([0x9F, 60, 0], Message("note_off", 16, 60, 0)),  # note-on with velocity 0 is a note-off
        ([0x80, 60, 64], Message("note_off", 1, 60, 64)),
        ([0xC2, 5], Message("program", 3, 5, 0)),
        ([0xE0, 0, 64], Message("pitchbend", 1, 0, 0)),
        ([0xE0, 0x7F, 0x7F], Message("pitchbend", 1, 0, 8191)),
        ([0xF8], Message("clock")),
        ([0xFF], Message("reset")),
        ([], "empty"),
        ([0x3C, 0x40], "running status"),
        ([0x90, 0x3C], "truncated"),
        ([0xC0], "truncated"),
        ([0xB0, 1, 2, 3], "too long"),
        ([0xB0, 200, 5], "data out of range"),
        ([0x90, 60, 128], "data out of range"),
        ([0xF0, 1, 2, 0xF7], "sysex"),
        ([0xF0, 1, 2], "sysex"),
        ([0xF4], "undefined status"),
        ([0xF5, 1], "undefined status"),
        ([0xF7], "undefined status"),
        ([0xFD], "undefined status"),
        ([0xF2, 1], "truncated"),
    ],
)
def test_decode(raw, want):
    assert decode(raw) == want


def test_fader_law():
    r = (-60.0, 6.0)
    assert fader_db(0, r) == -math.inf
    assert fader_db(127, r) == 6.0
    assert abs(fader_db(64, r) - (6 + 40 * math.log10(64 / 127))) < 1e-12
    assert fader_db(1, r) == -60.0  # the bottom of the range is a floor
    values = [fader_db(v, r) for v in range(1, 128)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    for v in (5, 64, 90, 127):
        assert abs(fader_position(fader_db(v, r), r) - v) < 1e-9
    assert fader_position(-math.inf, r) == 0.0


# ---- mappings on a real engine (no ports: handle() is what the MIDI thread calls) -------------


@pytest.fixture
def controller(live_model, tmp_path):
    path = tmp_path / "midi-test.toml"
    path.write_text(TEST_PRESET)
    preset = load_preset(path)
    eng = Engine(model=live_model, preset=preset, block_size=256)
    q = ControlQueue()
    return MidiController(eng, q, preset.midi, output=False), eng, q


def _send(ctl, q, *msgs):
    for m in msgs:
        ctl.handle(decode(m))
    q.drain(limit=1000)


def test_soft_takeover_toggles_momentary_master_and_program(controller):
    ctl, eng, q = controller
    st = lambda: eng.state("main")  # noqa: E731
    # The fader starts far from the current 0 dB: it does nothing until it reaches it.
    _send(ctl, q, [0xB0, 0, 0], [0xB0, 0, 40])
    assert st()["vocals"]["gain_db"] == 0.0 and ctl.stats.takeover_waits == 2
    _send(ctl, q, [0xB0, 0, 127])  # crossed (reached) 0 dB: picked up
    assert st()["vocals"]["gain_db"] == 0.0
    _send(ctl, q, [0xB0, 0, 64])
    assert abs(st()["vocals"]["gain_db"] - 40 * math.log10(64 / 127)) < 1e-9
    _send(ctl, q, [0xB0, 0, 0])
    assert st()["vocals"]["gain_db"] == -math.inf
    # Another source moves the gain: the fader must catch it again.
    eng.set_gain("vocals", -20.0)
    _send(ctl, q, [0xB0, 0, 100])
    assert st()["vocals"]["gain_db"] == -20.0
    _send(ctl, q, [0xB0, 0, 20], [0xB0, 0, 60])  # 100 → 20 crosses -20 dB (position ≈ 40.2): picked up
    assert abs(st()["vocals"]["gain_db"] - fader_db(60, (-60.0, 0.0))) < 1e-9
    # Toggle on note-on, note-off ignored; any channel (channel 0 in the map).
    _send(ctl, q, [0x95, 36, 100], [0x85, 36, 0])
    assert st()["vocals"]["mute"] is True
    _send(ctl, q, [0x90, 36, 1])
    assert st()["vocals"]["mute"] is False
    # Momentary solo on channel 2 only.
    _send(ctl, q, [0x91, 40, 100])
    assert st()["drums"]["solo"] is True
    _send(ctl, q, [0x81, 40, 0])
    assert st()["drums"]["solo"] is False
    _send(ctl, q, [0x90, 40, 100])  # channel 1: not mapped
    assert st()["drums"]["solo"] is False and ctl.stats.ignored["unmapped"] == 1
    # Master: soft takeover too (at 0 dB of a -60..6 range the fader must reach 90).
    _send(ctl, q, [0xB0, 7, 90], [0xB0, 7, 127])
    assert st()["master_db"] == 6.0
    # Program change 0 recalls karaoke (vocals muted), 1 drummer, 5 is unmapped.
    _send(ctl, q, [0xC0, 0])
    assert st()["vocals"]["mute"] is True
    _send(ctl, q, [0xC0, 1])
    assert load_preset("drummer").buses["main"].stems["drums"].mute == st()["drums"]["mute"]
    _send(ctl, q, [0xC0, 5])
    assert ctl.stats.ignored["unmapped"] == 2
    # Feedback reports mute/solo states as note-ons.
    fb = ctl.feedback_messages()
    assert [0x90, 36, 127 if st()["vocals"]["mute"] else 0] in fb


def test_garbage_is_counted_never_raised(controller):
    ctl, eng, q = controller
    rng = np.random.default_rng(0)
    for _ in range(3000):
        raw = [int(b) for b in rng.integers(0, 300, rng.integers(0, 6))]
        ctl._on_message((raw, 0.0))
    q.drain(limit=100000)
    st = ctl.stats
    assert st.received == 3000 and st.ignored_total + st.mapped == 3000  # every message accounted for
    assert "error" not in st.ignored and st.ignored["data out of range"] > 100
    before = eng.state()["vocals"]["mute"]
    _send(ctl, q, [0x90, 36, 100])  # a valid message after the garbage still works
    assert eng.state()["vocals"]["mute"] is not before
    eng.process(np.zeros((2, 256), np.float32))


# ---- end to end over JACK MIDI ---------------------------------------------------------------


@pytest.mark.jack
@pytest.mark.midi
def test_midi_end_to_end_cc_gain_note_mute_feedback_and_garbage(jack_server, live_model, tmp_path):
    preset = tmp_path / "midi-test.toml"
    preset.write_text(TEST_PRESET)
    rate, period = 44100, 256
    audio, sr = sf.read(DEMO, dtype="float32", always_2d=True, start=3 * rate, frames=7 * rate)
    sig = np.ascontiguousarray(audio.T)
    garbage = [[0x3C, 0x40], [0x90, 0x3C], [0xB0, 200, 5], [0xF4], [0xF7], [0xFF], [0xF0, 1, 2], [0xF0, 0x7E, 0xF7]]
    run = run_live_with_midi(
        jack_server,
        live_model,
        preset,
        sig,
        [
            (0.6, [0xB0, 0, 0]),  # soft takeover: far from 0 dB, ignored
            (1.0, [0xB0, 0, 100]),  # still below
            (1.3, [0xB0, 0, 127]),  # reaches 0 dB: picked up, no change
            (1.8, [0xB0, 0, 0]),  # vocals off
            (2.8, [0xB0, 0, 127]),  # vocals back to 0 dB
            (3.6, [0x90, 36, 100]),  # note toggles mute on
            (3.8, [0x80, 36, 0]),  # note-off: ignored by a toggle
            *[(4.6, g) for g in garbage],
            (4.6, [0x90, 36, 100]),  # toggles mute off: the garbage did no harm
            (5.6, [0x91, 36, 1]),  # mute again (channel 2: the map says any channel)
        ],
    )
    rc, out, err = run.rc, run.out, run.err
    assert rc == 0, err
    assert "Traceback" not in err
    r = report_of(out)
    L = r["latency_samples"]
    carried = run.carried  # frame time of each control's JACK cycle, matched in order of sending
    carried([0xB0, 0, 0])  # refused by soft takeover
    carried([0xB0, 0, 127])  # the pickup at 0 dB
    t_off = carried([0xB0, 0, 0])
    t_on = carried([0xB0, 0, 127])
    t_mute = carried([0x90, 36, 100])
    t_unmute = carried([0x90, 36, 100])
    t_mute2 = carried([0x91, 36, 1])
    dev = run.deviation(L)
    idx = run.index
    eps = 1e-4
    ramp = math.ceil(RAMP_SECONDS * rate / 256) * 256
    # From the JACK cycle that carried the message: livedemix's audio callback of the next cycle
    # (or, when its MIDI thread waited for the interpreter lock, the one after) applies it at its
    # block boundary, and the frames of that block already carry the new gain (the synthesis
    # window reaches back over the latency): audible within three periods (typically one), and
    # complete after the ramp and one more hop.
    hop = 256
    respond = 3 * period
    settle = respond + ramp + hop
    start = idx(run.t_start + L)
    assert dev[start : idx(t_off)].max() < eps, "a CC before soft takeover changed the sound"
    onset_off = idx(t_off) + int(np.argmax(dev[idx(t_off) :] > eps))
    onset_mute = idx(t_mute) + int(np.argmax(dev[idx(t_mute) :] > eps))
    onset_mute2 = idx(t_mute2) + int(np.argmax(dev[idx(t_mute2) :] > eps))
    last_on = idx(t_on) + int(np.flatnonzero(dev[idx(t_on) : idx(t_mute)] > eps)[-1])
    last_unmute = idx(t_unmute) + int(np.flatnonzero(dev[idx(t_unmute) : idx(t_mute2)] > eps)[-1])
    print(
        f"\nlatency {L}; CC off → audible after {onset_off - idx(t_off)} samples; CC back → unity after "
        f"{last_on - idx(t_on)}; note mute → {onset_mute - idx(t_mute)}; unmute after garbage → unity after "
        f"{last_unmute - idx(t_unmute)}; mute again → {onset_mute2 - idx(t_mute2)} (bound {respond} to respond, "
        f"{settle} to settle); midi {r['midi']}"
    )
    for onset, t in ((onset_off, t_off), (onset_mute, t_mute), (onset_mute2, t_mute2)):
        assert 0 <= onset - idx(t) <= respond
    for last, t in ((last_on, t_on), (last_unmute, t_unmute)):
        assert last - idx(t) <= settle
    # between the note-off (ignored) and the unmute the vocals stay muted: the deviation persists
    assert dev[onset_mute + settle : idx(t_unmute)].mean() > 10 * eps
    # Feedback: the LED of note 36 followed mute → unmute → mute.
    leds = [m[2] for m in run.feedback if m[:2] == [0x90, 36]]
    assert leds[-3:] == [127, 0, 127]
    m = r["midi"]
    for reason in ("running status", "truncated", "data out of range", "undefined status", "sysex"):
        assert m["ignored_by_reason"].get(reason, 0) >= 1, reason
    assert m["takeover_waits"] >= 2


@pytest.mark.jack
@pytest.mark.midi
def test_midi_learn_writes_the_mapping_into_a_copy_of_a_preset(jack_server, tmp_path):
    from livedemix.presets import shipped_presets_dir

    copy = tmp_path / "my-controller.toml"
    shutil.copy(shipped_presets_dir() / "fader-controller.toml", copy)
    before = load_preset(copy)
    p = livedemix("midi", "learn", "--preset", str(copy), "--target", "gain:bass", "--range=-40,0", "--timeout", "60")
    sender = MidiSender("livedemix-midi-learn:livedemix")
    try:
        time.sleep(0.2)
        sender.send([0xF8])  # a clock tick is not a control
        sender.send([0xB2, 21, 64])  # CC 21 on channel 3
        rc, out, err = finish(p, timeout=60)
    finally:
        sender.close()
    assert rc == 0, err
    assert "learned: CC 21 on channel 3 → bass gain" in out
    after = load_preset(copy)
    new = [m for m in after.midi.map if m.kind == "cc" and m.number == 21]
    assert len(new) == 1 and new[0].channel == 3 and new[0].action == "gain" and new[0].stem == "bass"
    assert new[0].range_db == (-40.0, 0.0)
    assert len(after.midi.map) == len(before.midi.map) + 1
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary left behind

    # Learning CC 0 again replaces the old mapping of that control instead of adding a second.
    p = livedemix("midi", "learn", "--preset", str(copy), "--target", "mute:other", "--timeout", "60")
    sender = MidiSender("livedemix-midi-learn:livedemix")
    try:
        time.sleep(0.2)
        sender.send([0xB0, 0, 127])
        rc, out, err = finish(p, timeout=60)
    finally:
        sender.close()
    assert rc == 0, err
    cc0 = [m for m in load_preset(copy).midi.map if m.kind == "cc" and m.number == 0]
    assert len(cc0) == 1 and cc0[0].action == "mute" and cc0[0].stem == "other"


@pytest.mark.jack
@pytest.mark.midi
def test_midi_learn_refuses_a_shipped_preset_name_and_times_out_in_one_sentence(jack_server, tmp_path):
    rc, out, err = finish(livedemix("midi", "learn", "--preset", "karaoke", "--target", "gain:vocals"))
    assert rc == 2 and "is not one: copy a preset first" in err and "Traceback" not in err
    copy = tmp_path / "k.toml"
    shutil.copy(load_preset("karaoke").path, copy)
    rc, out, err = finish(livedemix("midi", "learn", "--preset", str(copy), "--target", "gain:nosuch"))
    assert rc == 2 and "names no stem" in err
    rc, out, err = finish(livedemix("midi", "learn", "--preset", str(copy), "--target", "mute:drums", "--timeout", "1"))
    assert rc == 2 and "no control moved within 1 s" in err and "Traceback" not in err
    assert copy.read_text() == load_preset("karaoke").path.read_text()


@pytest.mark.jack
@pytest.mark.midi
def test_midi_monitor_and_ports(jack_server):
    p = livedemix("midi", "monitor")
    sender = MidiSender("livedemix-midi-monitor:livedemix")
    try:
        rc, out, err = finish(livedemix("midi", "ports", "--json"))
        assert rc == 0, err
        import json

        ports = json.loads(out)
        assert ports["api"] == "jack"
        assert "livedemix-midi-monitor:livedemix" in ports["outputs"]  # where others send to
        assert "ldsender:RtMidi output" in ports["inputs"]
        for m in ([0xB0, 7, 100], [0x92, 60, 90], [0xC0, 3], [0x3C, 0x40], [0xF0, 1, 0xF7]):
            sender.send(m)
        time.sleep(0.5)
    finally:
        sender.close()
    rc, out, err = finish(p, interrupt=True)
    assert rc == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert "cc        ch  1 #7   = 100" in lines
    assert "note_on   ch  3 note  60 velocity 90" in lines
    assert "program   ch  1 3" in lines
    assert "ignored (running status): 3c 40" in lines
    assert "ignored (sysex): f0 01 f7" in lines
