"""End to end through a real JACK server: `livedemix live` runs eg-amp on the vocals stem, a
second MIDI client (python-rtmidi) sends CCs mapped to the amp's gain, and a JACK recorder
hears the vocals leave the mix within a few periods of the JACK cycle that carried the CC;
soft takeover ignores a CC far from the parameter's value; the bypass note brings them back."""

from __future__ import annotations

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
from plugin_support import AMP, FILTER, require_plugins

pytestmark = [pytest.mark.live, pytest.mark.jack, pytest.mark.midi]

PRESET = f"""schema = 1
name = "fx-live"
[buses.main]
outputs = [1, 2]
[midi]
soft_takeover = true
[[midi.map]]
kind = "cc"
number = 21
action = "param"
stem = "vocals"
insert = 1
param = "gain"
range = [-90.0, 0.0]
[[midi.map]]
kind = "note"
number = 40
action = "bypass"
stem = "vocals"
insert = 1
[[stems.vocals.inserts]]
plugin = "{AMP}"
params = {{ gain = 0.0 }}
"""


def test_a_cc_from_a_second_midi_client_moves_a_plugin_parameter_audibly(jack_server, live_model, tmp_path):
    require_plugins(AMP)
    preset = tmp_path / "fx-live.toml"
    preset.write_text(PRESET)
    rate, period = 44100, 256
    audio, _ = sf.read(DEMO, dtype="float32", always_2d=True, start=3 * rate, frames=5 * rate)
    sig = np.ascontiguousarray(audio.T)
    run = run_live_with_midi(
        jack_server,
        live_model,
        preset,
        sig,
        [
            (0.8, [0xB0, 21, 0]),  # soft takeover: the amp sits at 0 dB (CC 127), ignored
            (1.4, [0xB0, 21, 127]),  # picked up at 0 dB: no change
            (2.0, [0xB0, 21, 0]),  # -90 dB: the vocals leave the mix
            (3.0, [0x90, 40, 100]),  # bypass the amp: the vocals come back
        ],
        record_seconds=20,
    )
    assert run.rc == 0, run.err
    assert "Traceback" not in run.err
    r = report_of(run.out)
    L = r["latency_samples"]
    t_ignored = run.carried([0xB0, 21, 0])
    run.carried([0xB0, 21, 127])
    t_off = run.carried([0xB0, 21, 0])
    t_bypass = run.carried([0x90, 40, 100])
    dev = run.deviation(L)
    idx = run.index
    eps = 1e-4
    # The CC's JACK cycle → livedemix's next callback (or the one after, if its MIDI thread
    # waited for the interpreter lock) applies it at the block boundary, and the amp applies
    # the new gain from that block's first sample (a bypass crossfades over one block).
    respond = 3 * period
    settle = respond + period
    start = idx(run.t_start + L)
    assert dev[start : idx(t_off)].max() < eps, "the CC refused by soft takeover changed the sound"
    assert idx(t_ignored) > start
    onset = idx(t_off) + int(np.argmax(dev[idx(t_off) :] > eps))
    silent_from = onset + settle
    last_back = idx(t_bypass) + int(np.flatnonzero(dev[idx(t_bypass) :] > eps)[-1])
    print(
        f"\nlatency {L}; CC → parameter audible after {onset - idx(t_off)} samples (bound {respond}); "
        f"bypass → unity after {last_back - idx(t_bypass)} (bound {settle}); midi {r['midi']}"
    )
    assert 0 <= onset - idx(t_off) <= respond
    assert dev[silent_from : idx(t_bypass)].mean() > 10 * eps  # the vocals stay out until the bypass
    assert last_back - idx(t_bypass) <= settle
    assert r["midi"]["takeover_waits"] >= 1
    amp = r["inserts"]["stems"]["vocals"][0]  # the report counts each slot's runs and faults
    assert amp["plugin"] == AMP and amp["bypassed"] and not amp["faulted"] and amp["blocks"] > 500


def test_midi_learn_maps_a_knob_to_a_plugin_parameter_and_a_pad_to_a_bypass(jack_server, tmp_path):
    from livedemix.presets import load_preset

    require_plugins(AMP, FILTER)
    copy = tmp_path / "fx.toml"
    copy.write_text(PRESET + f'\n[[buses.main.inserts]]\nplugin = "{FILTER}"\n')
    p = livedemix("midi", "learn", "--preset", str(copy), "--target", "param:@main/1/freq", "--range=0.2,0.9")
    sender = MidiSender("livedemix-midi-learn:livedemix")
    try:
        time.sleep(0.2)
        sender.send([0xB1, 22, 10])  # CC 22 on channel 2
        rc, out, err = finish(p, timeout=60)
    finally:
        sender.close()
    assert rc == 0, err
    assert "learned: CC 22 on channel 2 → main insert 1 freq" in out
    p = livedemix("midi", "learn", "--preset", str(copy), "--target", "bypass:vocals/1")
    sender = MidiSender("livedemix-midi-learn:livedemix")
    try:
        time.sleep(0.2)
        sender.send([0x90, 44, 90])
        rc, out, err = finish(p, timeout=60)
    finally:
        sender.close()
    assert rc == 0, err
    maps = {(m.kind, m.number): m for m in load_preset(copy).midi.map}
    knob, pad = maps[("cc", 22)], maps[("note", 44)]
    assert (knob.action, knob.bus, knob.insert, knob.param, knob.range) == ("param", "main", 1, "freq", (0.2, 0.9))
    assert (pad.action, pad.stem, pad.insert) == ("bypass", "vocals", 1)
    assert load_preset(copy).stem_inserts["vocals"][0].plugin == AMP  # the chain itself survives the save
    # a target the preset can't hold is one sentence, before any waiting
    rc, out, err = finish(livedemix("midi", "learn", "--preset", str(copy), "--target", "param:drums/1/freq"))
    assert rc == 2 and "has 0: add [[stems.drums.inserts]] first" in err and err.count("\n") == 1
