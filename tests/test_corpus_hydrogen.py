"""Hydrogen drum kits as the corpus's sampler (factory/corpus/hydrogen.py): kit files read in
both of Hydrogen's formats, GM notes mapped by instrument name, velocity layers, pan, and the
mute group that lets a closed hi-hat cut an open one; and the 'widest' timbre pool that uses them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from factory.corpus import arrange as A
from factory.corpus import hydrogen as H
from factory.corpus import timbres as T

pytestmark = pytest.mark.factory
SR = 44100


def _kit(folder: Path, instruments, old_format=False) -> Path:
    """A drumkit.xml with constant-valued samples (value = layer number) so a render shows which
    layer played. instruments: (name, mute group, [(min, max)] velocity layers, (pan_L, pan_R))."""
    folder.mkdir(parents=True)
    xml = [
        '<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit"><name>Test Kit</name>',
        "<license>CC0</license><instrumentList>",
    ]
    for k, (name, group, layers, pan) in enumerate(instruments):
        xml.append(f"<instrument><id>{k}</id><name>{name}</name><volume>1</volume><gain>1</gain>")
        xml.append(f"<pan_L>{pan[0]}</pan_L><pan_R>{pan[1]}</pan_R><muteGroup>{group}</muteGroup>")
        for j, (lo, hi) in enumerate(layers):
            f = f"i{k}l{j}.wav"
            sf.write(folder / f, np.full(4410, 0.1 * (j + 1), np.float32), SR, subtype="FLOAT")
            if old_format:
                xml.append(f"<filename>{f}</filename>")
            else:
                xml.append(f"<layer><filename>{f}</filename><min>{lo}</min><max>{hi}</max><gain>1</gain></layer>")
        xml.append("</instrument>")
    xml.append("</instrumentList></drumkit_info>")
    (folder / "drumkit.xml").write_text("\n".join(xml))
    return folder


KIT = [
    ("Kick Stomp", -1, [(0, 0.5), (0.5, 1)], (1, 1)),
    ("Snare Rimshot", -1, [(0, 1)], (1, 1)),
    ("Snare", -1, [(0, 1)], (1, 1)),
    ("Hi-Hat Closed", 1, [(0, 1)], (1, 0.5)),
    ("Hi-Hat Open", 1, [(0, 1)], (1, 0.5)),
    ("Tom Low", -1, [(0, 1)], (1, 1)),
    ("Ride Bell", -1, [(0, 1)], (1, 1)),
]


def test_notes_map_to_instruments_by_whole_words(tmp_path):
    kit = H.parse_kit(_kit(tmp_path / "k", KIT))
    assert kit.name == "Test Kit" and kit.licence == "CC0" and len(kit.instruments) == 7
    names = {note: [kit.instruments[i].name for i in ks] for note, ks in H.gm_map(kit).items()}
    assert names[36] == ["Kick Stomp"] and names[35] == ["Kick Stomp"]
    assert names[38] == ["Snare"] and names[40] == ["Snare Rimshot"]  # the plain snare, the rimshot for 40
    assert names[42] == ["Hi-Hat Closed"] and names[46] == ["Hi-Hat Open"] and names[44] == ["Hi-Hat Closed"]
    assert names[41] == ["Tom Low"] and names[48] == ["Tom Low"]  # "Stomp" is no tom
    assert names[53] == ["Ride Bell"] and names[49] == names[51] == ["Ride Bell"]  # no crash: the ride plays it
    assert 56 not in names  # no cowbell: the note is left out


def test_velocity_picks_the_layer_and_pan_splits_the_channels(tmp_path):
    folder = _kit(tmp_path / "k", KIT)
    part = A.Part("drums", "drums", 0, 9, [(0.0, 0.1, 36, 30), (0.5, 0.1, 36, 120), (1.0, 0.1, 42, 127)])
    y = H.render([part], SR * 2, folder, 0)
    soft, hard, hat = y[:, 100], y[:, int(0.5 * SR) + 100], y[:, SR + 100]
    np.testing.assert_allclose(soft, 0.1 * 30 / 127, rtol=1e-5)  # layer 1 (0.1) at velocity 30/127
    np.testing.assert_allclose(hard, 0.2 * 120 / 127, rtol=1e-5)  # layer 2 (0.2)
    np.testing.assert_allclose(hat, [0.1, 0.05], rtol=1e-5)  # pan_R 0.5
    assert not y[:, int(0.2 * SR) : int(0.45 * SR)].any()  # 0.1 s samples: silence between the hits


def test_a_closed_hat_cuts_the_open_one_and_nothing_else(tmp_path):
    folder = _kit(tmp_path / "k", KIT)
    a, b = 0.0, 0.05  # the closed hat 50 ms into the open hat's 100 ms sample; the kick under both
    parts = [A.Part("drums", "drums", 0, 9, [(a, 0.1, 46, 127), (b, 0.1, 42, 127), (a, 0.1, 36, 127)])]
    y = H.render(parts, SR, folder, 0)[0]
    kick, closed = 0.2, 0.1
    i = int(b * SR)
    np.testing.assert_allclose(y[i - 10], kick + 0.1)  # open hat sounding
    fade = int(0.005 * SR)
    np.testing.assert_allclose(y[i + fade + 10], kick + closed)  # open hat gone, kick and closed hat left
    assert y[i + 5] > kick + closed  # a short fade, not a click
    np.testing.assert_allclose(y[int(0.12 * SR)], closed)  # the kick ended, the closed hat still rings


def test_the_oldest_format_and_kits_without_a_groove_core(tmp_path):
    old = _kit(
        tmp_path / "old",
        [("Kick 1", -1, [(0, 1)], (1, 1)), ("Snare", -1, [(0, 1)], (1, 1)), ("Closed HH 1", -1, [(0, 1)], (1, 1))],
        old_format=True,
    )
    kit = H.parse_kit(old)
    assert [len(i.layers) for i in kit.instruments] == [1, 1, 1] and all(n in H.gm_map(kit) for n in H.ESSENTIAL)
    _kit(tmp_path / "hands", [("Cajon Thump", -1, [(0, 1)], (1, 1)), ("Hand Clap", -1, [(0, 1)], (1, 1))])
    assert [p.name for p in H.available_kits.__wrapped__(str(tmp_path))] == ["old"]


HAVE_KITS = bool(H.available_kits()) and all(p.is_file() for p, *_ in T.WIDE_GM + T.DIVERSE_KITS)


@pytest.mark.skipif(not HAVE_KITS, reason="needs hydrogen-drumkits, hydrogen-data and the wide pool's packages")
def test_widest_pool_plays_drums_on_hydrogen_kits(tmp_path):
    from factory.corpus import build as B
    from factory.corpus import verify as Vf

    installed = {p.name for p in H.available_kits()}
    assert {"ForzeeStereo", "Audiophob", "TR808EmulationKit"} <= installed and not installed & set(H.DUPLICATES)
    pool = T.Timbres("widest", str(T.FLUID))
    drums = [pool.pick(0, song, 1, True) for song in range(300)]
    share = np.mean([bool(c.hydrogen) for c in drums])
    assert 0.4 < share < 0.6 and len({c.hydrogen for c in drums if c.hydrogen}) == len(installed)
    song_s = 10.0
    B.build(
        tmp_path / "c",
        8 * (song_s + A.TAIL_S) / 3600,
        seed=5,
        progress=False,
        cache_dir=tmp_path / "cache",
        song_seconds=song_s,
        timbres="widest",
    )
    cfg = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert cfg["timbres"] == "widest" and any(k.startswith("hydrogen:") for k in cfg["drum_kits"])
    played = 0
    for song_json in (tmp_path / "c").glob("*/*/song.json"):
        e = json.loads(song_json.read_text())
        if e["soundfonts"].get("drums", "").startswith("hydrogen:"):
            x, _ = sf.read(song_json.parent / "drums.flac")
            assert e["stems"]["drums"]["active_fraction"] > 0.3 and np.abs(x).max() > 0.01
            assert (song_json.parent / "midi" / "drums.mid").is_file()
            played += 1
    assert played >= 1 and not list((tmp_path / "c").rglob(".*.mid"))
    assert Vf.verify(tmp_path / "c")
