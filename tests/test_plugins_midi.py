"""MIDI targets on effect inserts, on a real engine with real LV2 plugins (no ports: handle()
is what the MIDI thread calls): CC → parameter over its range with soft takeover (linear and
logarithmic ports), note → bypass toggle and momentary, LED feedback, and MIDI learn's
targets written into a preset."""

from __future__ import annotations

import pytest
from livedemix.audio import ControlQueue
from livedemix.engine import Engine
from livedemix.midi import MidiController, decode
from livedemix.midi.errors import MidiError
from livedemix.midi.learn import describe_mapping, mapping_for, parse_target
from livedemix.midi.plugin_targets import param_position, param_value
from livedemix.presets import load_preset, parse_preset, preset_to_dict
from plugin_support import AMP, FILTER, TINY_MODEL, require_plugins

PRESET = f"""schema = 1
name = "fx"
[midi]
soft_takeover = true
[[midi.map]]
kind = "cc"
number = 20
action = "param"
stem = "vocals"
insert = 1
param = "gain"
range = [-40.0, 0.0]
[[midi.map]]
kind = "note"
number = 36
action = "bypass"
stem = "vocals"
insert = 1
[[midi.map]]
kind = "note"
number = 37
action = "bypass"
bus = "main"
insert = 1
mode = "momentary"
[[stems.vocals.inserts]]
plugin = "{AMP}"
params = {{ gain = -20.0 }}
[[buses.main.inserts]]
plugin = "{FILTER}"
"""


@pytest.fixture
def rig(tmp_path):
    require_plugins(AMP, FILTER)
    path = tmp_path / "fx.toml"
    path.write_text(PRESET)
    preset = load_preset(path)
    eng = Engine(model=TINY_MODEL, preset=preset, block_size=256)
    q = ControlQueue()
    return MidiController(eng, q, preset.midi, output=False), eng, q


def send(ctl, q, *msgs):
    for m in msgs:
        ctl.handle(decode(m))
    q.drain(limit=1000)


def test_cc_moves_a_plugin_parameter_with_soft_takeover(rig):
    ctl, eng, q = rig
    chain = eng.insert_chain(stem="vocals")
    assert chain.param(0, "gain") == -20.0  # the preset's value sits at CC 63.5 of [-40, 0]
    send(ctl, q, [0xB0, 20, 0])  # far from the current value: ignored until picked up
    assert chain.param(0, "gain") == -20.0 and ctl.stats.takeover_waits == 1
    send(ctl, q, [0xB0, 20, 60], [0xB0, 20, 70])  # crosses 63.5: picked up
    assert abs(chain.param(0, "gain") - (-40 + 40 * 70 / 127)) < 1e-4
    send(ctl, q, [0xB0, 20, 127])
    assert chain.param(0, "gain") == 0.0
    eng.set_insert_param(1, "gain", -30.0, stem="vocals")  # moved elsewhere: the fader lets go
    send(ctl, q, [0xB0, 20, 120])
    assert chain.param(0, "gain") == -30.0


def test_notes_toggle_and_hold_an_insert_bypass_with_led_feedback(rig):
    ctl, eng, q = rig
    vox, bus = eng.insert_chain(stem="vocals"), eng.insert_chain(bus="main")
    send(ctl, q, [0x90, 36, 100])
    assert vox.bypassed(0)
    assert [0x90, 36, 0] in ctl.feedback_messages()  # LED off while bypassed
    send(ctl, q, [0x80, 36, 0])  # toggles act on press only
    assert vox.bypassed(0)
    send(ctl, q, [0x90, 36, 100])
    assert not vox.bypassed(0) and [0x90, 36, 127] in ctl.feedback_messages()
    send(ctl, q, [0x90, 37, 100])
    assert bus.bypassed(0)  # momentary: bypassed while held
    send(ctl, q, [0x80, 37, 0])
    assert not bus.bypassed(0)


def test_a_mapping_to_a_missing_insert_or_parameter_is_one_sentence(rig):
    _, eng, q = rig
    p = parse_preset(
        {"schema": 1, "midi": {"map": [{"kind": "cc", "action": "bypass", "bus": "main", "insert": 1}]}}
        | {"buses": {"main": {"inserts": [{"plugin": AMP}]}}},
        "x.toml",
    )
    bare = Engine(model=TINY_MODEL, block_size=256)  # an engine without the preset's inserts
    with pytest.raises(MidiError, match="targets insert 1 of the bus main, which has 0"):
        MidiController(bare, q, p.midi, output=False)


def test_logarithmic_ports_map_cc_geometrically():
    port = {"logarithmic": True}
    assert abs(param_value(0, 20, 20000, port) - 20) < 1e-9
    assert abs(param_value(127, 20, 20000, port) - 20000) < 1e-6
    mid = param_value(64, 20, 20000, port)
    assert 600 < mid < 700  # ~sqrt(20 * 20000), not the linear 10 kHz
    assert abs(param_position(mid, 20, 20000, port) - 64) < 1e-9
    assert param_value(64, -40, 0, {}) == -40 + 40 * 64 / 127


def test_learn_targets_for_inserts_round_trip_through_the_preset():
    from livedemix import STEMS

    spec = parse_target("param:vocals/1/gain", STEMS)
    assert spec == {"action": "param", "insert": 1, "stem": "vocals", "param": "gain"}
    assert parse_target("bypass:@main/2", STEMS) == {"action": "bypass", "insert": 2, "bus": "main"}
    with pytest.raises(MidiError, match="write e.g. param:vocals/1/gain"):
        parse_target("param:vocals/gain", STEMS)
    with pytest.raises(MidiError, match="names no stem"):
        parse_target("bypass:voice/1", STEMS)
    m = mapping_for(decode([0xB0, 21, 5]), spec)
    assert (m.kind, m.number, m.action, m.insert, m.param) == ("cc", 21, "param", 1, "gain")
    assert describe_mapping(m) == "CC 21 on channel 1 → vocals insert 1 gain"
    base = parse_preset({"schema": 1, "stems": {"vocals": {"inserts": [{"plugin": AMP}]}}}, "b.toml")
    base.midi.map.append(m)
    again = parse_preset(preset_to_dict(base), "again.toml")
    assert again.midi.map[0].param == "gain" and again.midi.map[0].insert == 1


def test_the_terminal_ui_shows_each_chain_and_toggles_a_stems_effects(rig):
    from livedemix.apps.tui import KeyControls, inserts_label

    _, eng, q = rig
    vox = eng.insert_chain(stem="vocals")
    assert "Simple Amplifier" in inserts_label(vox) and "strike" not in inserts_label(vox)
    assert inserts_label(eng.insert_chain(stem="drums")) == "·"
    assert "MDA RezFilter" in inserts_label(eng.insert_chain(bus="main"))
    kc = KeyControls(eng, q.post)
    kc.key("e")  # the selected stem is the first, vocals
    q.drain()
    assert vox.bypassed(0) and "strike" in inserts_label(vox)
    kc.key("right")
    kc.key("e")
    assert "no effect inserts" in kc.message
