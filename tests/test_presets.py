"""Presets: the shipped ones are valid and mean what they say; bad files fail with one
sentence naming the file, the key and the fix; saving is atomic and round-trips."""

from __future__ import annotations

import subprocess
import sys

import pytest
from livedemix import presets as P

SHIPPED = ["acapella", "bassist", "cue-vocals", "drummer", "fader-controller", "fx-chain", "karaoke"]


def test_shipped_presets_are_listed_and_valid():
    assert P.list_presets() == SHIPPED
    for name in SHIPPED:
        P.load_preset(name)


def test_shipped_presets_mean_what_they_say():
    assert P.load_preset("karaoke").stem_gains("main") == {"vocals": 0.0, "drums": 1.0, "bass": 1.0, "other": 1.0}
    assert P.load_preset("drummer").stem_gains("main")["drums"] == 0.0
    assert P.load_preset("bassist").stem_gains("main")["bass"] == 0.0
    assert P.load_preset("acapella").stem_gains("main") == {"vocals": 1.0, "drums": 0.0, "bass": 0.0, "other": 0.0}
    cue = P.load_preset("cue-vocals")
    assert cue.stem_gains("main") == {s: 1.0 for s in ("vocals", "drums", "bass", "other")}
    assert cue.stem_gains("cue")["vocals"] == pytest.approx(10 ** (6 / 20))
    assert cue.buses["cue"].outputs == [3, 4]
    fc = P.load_preset("fader-controller")
    assert [m.number for m in fc.midi.map if m.action == "gain"] == [0, 1, 2, 3]
    assert sum(m.kind == "note" for m in fc.midi.map) == 8


def test_solo_overrides_mute():
    p = P.parse_preset(
        {"schema": 1, "buses": {"main": {"stems": {"vocals": {"mute": True, "solo": True}, "drums": {"mute": False}}}}}
    )
    assert p.stem_gains("main") == {"vocals": 1.0, "drums": 0.0, "bass": 0.0, "other": 0.0}


BAD = [
    ('schema = 1\ncolour = "red"\n', r"'colour' is not a known key: remove it or use one of"),
    ('name = "x"\n', r"'schema' is missing: add `schema = 1`"),
    ("schema = 2\n", r"'schema' is 2, a version this livedemix doesn't read"),
    ('schema = 1\n[engine]\nphase = "magic"\n', r"'engine.phase' is 'magic': use one of wiener, pu-iter, anisotropic"),
    ('schema = 1\n[engine]\nn_iter = "4"\n', r"'engine.n_iter' must be an integer"),
    ("schema = 1\n[engine]\nn_iter = 1000\n", r"'engine.n_iter' is 1000, out of range: give a value from 1 to 64"),
    ("schema = 1\n[engine]\nmask_power = 0\n", r"'engine.mask_power' is 0, out of range: give a value from 0.25 to 8"),
    (
        "schema = 1\n[buses.main.stems.vocal]\nmute = true\n",
        r"'buses.main.stems.vocal' names an unknown stem 'vocal': use one of vocals, drums, bass, other",
    ),
    ('schema = 1\n[buses.main.stems.vocals]\nmute = "yes"\n', r"'buses.main.stems.vocals.mute' must be true or false"),
    ("schema = 1\n[buses.main.stems.vocals]\ngain_db = 40\n", r"'buses.main.stems.vocals.gain_db' is 40, out of range"),
    ("schema = 1\n[buses.main]\noutputs = [0]\n", r"'buses.main.outputs' is 0, out of range"),
    ('schema = 1\n[[midi.map]]\nkind = "cc"\naction = "gain"\n', r"'midi.map\[0\].stem' is missing"),
    (
        'schema = 1\n[[midi.map]]\nkind = "cc"\naction = "mute"\nstem = "bass"\nbus = "cue"\n',
        r"names a bus 'cue' that the preset doesn't define",
    ),
    (
        'schema = 1\n[[midi.map]]\nkind = "cc"\naction = "gain"\nstem = "bass"\nrange_db = [6, -60]\n',
        r"low not below high",
    ),
    (
        'schema = 1\n[[midi.map]]\nkind = "cc"\nnumber = 128\naction = "master"\n',
        r"'midi.map\[0\].number' is 128, out of range",
    ),
    ("schema = 1\n[engine\n", r"not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_presets_fail_with_one_sentence(tmp_path, text, message):
    f = tmp_path / "mine.toml"
    f.write_text(text)
    with pytest.raises(P.PresetError, match=message) as e:
        P.load_preset(f)
    msg = str(e.value)
    assert msg.startswith(str(f)) and "\n" not in msg


def test_save_is_atomic_and_round_trips(tmp_path):
    p = P.load_preset("fader-controller")
    p.buses["main"].stems["bass"].gain_db = -3.5
    target = tmp_path / "mine.toml"
    target.write_text("old contents")
    P.save_preset(p, target)
    q = P.load_preset(target)
    assert q.buses["main"].stems["bass"].gain_db == -3.5
    assert len(q.midi.map) == len(p.midi.map)
    assert [f.name for f in tmp_path.iterdir()] == ["mine.toml"]  # no temporary left behind


def test_presets_cli(tmp_path):
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "livedemix", "presets", *a], capture_output=True, text=True, timeout=60
    )
    out = run("list")
    assert out.returncode == 0 and "karaoke" in out.stdout and "cue-vocals" in out.stdout
    assert run("validate").returncode == 0
    show = run("show", "karaoke")
    assert show.returncode == 0 and "mute = true" in show.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 1\n[engine]\nlatency = 'instant'\n")
    v = run("validate", str(bad))
    assert v.returncode == 2 and "'engine.latency' is 'instant'" in v.stderr and "Traceback" not in v.stderr
    missing = run("show", "nope")
    assert missing.returncode == 2 and "not found" in missing.stderr
