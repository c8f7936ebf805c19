"""The LV2 plugin host with real plugins from Debian packages (lv2-examples, mda-lv2,
x42-plugins) and a real misbehaving plugin bundle built from tests/lv2: chains, their effect
measured on test signals, latency compensation to the sample, NaN and too-slow plugins
bypassed while the audio goes on, preset validation, and `livedemix separate --preset`."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from livedemix import plugins
from livedemix.engine import Engine
from livedemix.plugins import Chain, InsertSpec, PluginError
from livedemix.presets import PresetError, parse_preset
from plugin_support import (
    AMP,
    DELAY,
    FILTER,
    MISBEHAVE,
    REVERB,
    TINY_MODEL,
    UNHOSTABLE,
    build_misbehave_bundle,
    rel_db,
    require_plugins,
    stream,
)

SR = 44100


@pytest.fixture(scope="module", autouse=True)
def _plugins_installed():
    require_plugins(AMP, FILTER, REVERB, DELAY, UNHOSTABLE)


@pytest.fixture(scope="module")
def misbehave(tmp_path_factory):
    return build_misbehave_bundle(tmp_path_factory.mktemp("lv2"))


def noise(seconds=1.0, seed=0, channels=2):
    return (np.random.default_rng(seed).standard_normal((channels, int(SR * seconds))) * 0.1).astype(np.float32)


def run_chain(specs, x, block=512, live=False):
    c = Chain(specs, SR, block)
    y = x.copy()
    for s in range(0, x.shape[1], block):
        c.process(y[:, s : s + block])
    return c, y


def band_db(y, x, lo, hi):
    f = np.fft.rfftfreq(x.shape[1], 1 / SR)
    sel = (f >= lo) & (f < hi)
    return 10 * np.log10(np.sum(np.abs(np.fft.rfft(y[0])[sel]) ** 2) / np.sum(np.abs(np.fft.rfft(x[0])[sel]) ** 2))


def preset(data, name="p.toml"):
    return parse_preset({"schema": 1, **data}, name)


# ---- catalogue -----------------------------------------------------------------------------


def test_catalogue_lists_plugins_with_ports_and_says_why_it_refuses_some():
    by_uri = {p["uri"]: p for p in plugins.list_plugins()}
    amp = by_uri[AMP]
    assert amp["unsupported"] is None and amp["audio_inputs"] == amp["audio_outputs"] == 1
    gain = plugins.control_inputs(amp)["gain"]
    assert gain["minimum"] == -90 and gain["maximum"] == 24
    assert by_uri[DELAY]["has_latency"]
    refused = by_uri[UNHOSTABLE]["unsupported"]
    assert "atom" in refused and refused.count(":") >= 1  # the reason, then what to do
    instrument = by_uri["http://drobilla.net/plugins/mda/DX10"]["unsupported"]
    assert "no audio input" in instrument
    with pytest.raises(PluginError, match="cannot be an insert|does not feed"):
        Chain([InsertSpec(UNHOSTABLE)], SR, 256)
    with pytest.raises(PluginError, match="not installed: install the Debian package lv2-examples"):
        plugins.plugin_info("http://lv2plug.in/plugins/eg-not-there")


# ---- chains on test signals ----------------------------------------------------------------


def test_mono_plugin_runs_per_channel_and_controls_clamp_to_the_port_range():
    x = noise(0.2)
    c, y = run_chain([InsertSpec(AMP, {"gain": -6.0})], x)
    assert c.stats()[0]["instances"] == 2  # eg-amp is mono: one instance per channel
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), rtol=1e-5, atol=1e-8)
    c.set_param(0, "gain", 1000.0)  # clamped to the port's maximum, 24 dB
    assert c.param(0, "gain") == 24.0
    y = x[:, :512].copy()
    c.process(y)
    np.testing.assert_allclose(y, x[:, :512] * 10 ** (24 / 20), rtol=1e-4)


def test_a_filter_and_a_reverb_measured_on_test_signals():
    x = noise(1.0)
    _, y = run_chain([InsertSpec(FILTER, {"freq": 0.2, "res": 0.0})], x)  # mda RezFilter: a low-pass
    low, high = band_db(y, x, 50, 200), band_db(y, x, 5000, 15000)
    print(f"RezFilter: {low:.1f} dB at 50-200 Hz, {high:.1f} dB at 5-15 kHz")
    assert high < -30 and high < low - 25
    imp = np.zeros((2, SR), np.float32)
    imp[:, 100] = 1.0
    tail = slice(100 + int(0.05 * SR), None)  # 50 ms after the impulse
    _, wet = run_chain([InsertSpec(REVERB, {"size": 0.8, "mix": 1.0})], imp)
    _, dry = run_chain([InsertSpec(REVERB, {"size": 0.8, "mix": 0.0})], imp)
    wet_tail = float(np.sum(wet[0, tail] ** 2))
    print(f"Ambience: tail energy 50 ms after an impulse {wet_tail:.3g} (dry {float(np.sum(dry[0, tail] ** 2)):.3g})")
    assert wet_tail > 1e-3 and float(np.sum(dry[0, tail] ** 2)) < 1e-9


# ---- the engine with inserts ---------------------------------------------------------------


def test_inserts_at_unity_keep_the_engine_transparent_and_offline_equal_live():
    x = noise(1.5, seed=3)
    pre = preset(
        {
            "stems": {"vocals": {"inserts": [{"plugin": AMP, "params": {"gain": 0.0}}]}},
            "buses": {"main": {"inserts": [{"plugin": AMP, "params": {"gain": 0.0}}]}},
        }
    )
    runs = {}
    for block in (256, 1000):
        e = Engine(model=TINY_MODEL, preset=pre, block_size=block)
        L = e.latency_samples
        y = stream(e, x, block)[0]
        runs[block] = y
        err = rel_db(y[:, L + 4096 :] - x[:, 4096 : x.shape[1] - L], x)
        print(f"block {block}: transparency with inserts {err:.1f} dB")
        assert err < -100
    np.testing.assert_allclose(runs[256], runs[1000], atol=2e-6)


def test_a_latency_reporting_plugin_is_compensated_to_the_sample():
    x = np.zeros((2, 16384), np.float32)
    x[:, 2000] = 1.0
    base = Engine(model=TINY_MODEL, block_size=256)
    base_lat = base.latency_samples
    pre = preset(
        {
            "stems": {"drums": {"inserts": [{"plugin": DELAY, "params": {"delay": 300}}]}},
            "buses": {"main": {"inserts": [{"plugin": DELAY, "params": {"delay": 77}}]}},
        }
    )
    e = Engine(model=TINY_MODEL, preset=pre, block_size=256)
    assert e.latency_samples == base_lat + 300 + 77
    y = stream(e, x, 256)[0]
    peak = int(np.argmax(np.abs(y[0])))
    print(f"impulse at 2000 → {peak}; reported latency {e.latency_samples}")
    assert peak == 2000 + e.latency_samples
    assert abs(y[0, peak] - 1.0) < 1e-4  # every stem arrives at once: the mixture's impulse, whole
    # bypassing the delay keeps its latency (no jump in time)
    e.reset()
    e.set_insert_bypass(1, True, bus="main")
    y = stream(e, x, 256)[0]
    assert int(np.argmax(np.abs(y[0]))) == 2000 + e.latency_samples


def test_bypass_and_param_changes_reach_the_audio_within_a_block():
    x = noise(1.0, seed=5)
    pre = preset({"stems": {"vocals": {"inserts": [{"plugin": AMP, "params": {"gain": -6.0}}]}}})
    e = Engine(model=TINY_MODEL, preset=pre, buses=["main", "voc"], block_size=512)
    e.solo("vocals", bus="voc")
    e.reset()
    ref = Engine(model=TINY_MODEL, buses=["main", "voc"], block_size=512)
    ref.solo("vocals", bus="voc")
    ref.reset()
    want = stream(ref, x, 512)[1]

    def change(i):
        if i == 40:
            e.set_insert_param(1, "gain", -20.0, stem="vocals")
        if i == 60:
            e.set_insert_bypass(1, True, stem="vocals")

    y = stream(e, x, 512, between=change)[1]
    seg = lambda i: slice(i * 512, (i + 1) * 512)  # noqa: E731
    assert rel_db(y[:, seg(30)] - 10 ** (-6 / 20) * want[:, seg(30)], want[:, seg(30)]) < -80
    assert rel_db(y[:, seg(41)] - 10 ** (-20 / 20) * want[:, seg(41)], want[:, seg(41)]) < -80  # next block
    assert rel_db(y[:, seg(61)] - want[:, seg(61)], want[:, seg(61)]) < -80  # bypassed after a 1-block crossfade
    assert e.insert_chain(stem="vocals").bypassed(0)


def test_a_nan_plugin_is_bypassed_alone_and_counted_while_the_audio_goes_on(misbehave):
    x = noise(1.5, seed=7)
    pre = preset(
        {"stems": {"bass": {"inserts": [{"plugin": MISBEHAVE}, {"plugin": AMP, "params": {"gain": 0.0}}]}}},
    )
    e = Engine(model=TINY_MODEL, preset=pre, block_size=256)
    L = e.latency_samples
    y = stream(e, x, 256, between=lambda i: i == 100 and e.set_insert_param(1, "mode", 1, stem="bass"))[0]
    assert np.all(np.isfinite(y))
    err = rel_db(y[:, L + 4096 :] - x[:, 4096 : x.shape[1] - L], x)
    stats = e.insert_stats()["stems"]["bass"]
    print(f"after the NaN plugin: transparency {err:.1f} dB, stats {stats[0]}")
    assert err < -100  # the faulted slot passes its input through; nothing else changed
    assert stats[0]["faulted"] and stats[0]["nonfinite_events"] == 1
    assert not stats[1]["faulted"] and stats[1]["blocks"] == stats[0]["blocks"]  # the next slot kept running
    assert e.stats.bypass_frames == 0  # the separator never fell back


def test_a_too_slow_plugin_is_bypassed_live_and_counted(misbehave):
    x = noise(0.5, seed=8)
    pre = preset({"stems": {"other": {"inserts": [{"plugin": MISBEHAVE, "params": {"mode": 2}}]}}})
    e = Engine(model=TINY_MODEL, preset=pre, block_size=256, deadline=1.0)  # live: plugins get a time budget
    L = e.latency_samples
    y = stream(e, x, 256)[0]
    st = e.insert_stats()["stems"]["other"][0]
    print(f"slow plugin: {st}")
    assert st["faulted"] and st["slow_events"] == 1
    assert np.all(np.isfinite(y))
    assert rel_db(y[:, L + 4096 :] - x[:, 4096 : x.shape[1] - L], x) < -100
    # offline (no deadline) never gives up on a slow plugin: the render must not depend on timing
    e2 = Engine(model=TINY_MODEL, preset=pre, block_size=4096)
    stream(e2, x[:, :8192], 4096)
    assert not e2.insert_stats()["stems"]["other"][0]["faulted"]


# ---- presets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "insert, expect",
    [
        ({"plugin": "http://lv2plug.in/plugins/eg-nope"}, "not installed: install the Debian package lv2-examples"),
        ({"plugin": AMP, "params": {"volume": 1.0}}, "unknown parameter 'volume'.*use one of gain"),
        ({"plugin": AMP, "params": {"gain": 99.0}}, "out of its range: give a value from -90 to 24"),
        ({"plugin": UNHOSTABLE}, "cannot be used"),
        ({"params": {"gain": 1.0}}, "'stems.vocals.inserts\\[0\\].plugin' is missing"),
        ({"plugin": AMP, "bypass": "yes"}, "bypass"),
    ],
)
def test_preset_insert_errors_are_one_sentence_naming_file_and_key(insert, expect):
    with pytest.raises(PresetError, match=expect) as ei:
        preset({"stems": {"vocals": {"inserts": [insert]}}}, name="chain.toml")
    msg = str(ei.value)
    assert msg.startswith("chain.toml: 'stems.vocals.inserts[0]") and "\n" not in msg


def test_preset_inserts_round_trip_and_midi_targets_are_checked():
    from livedemix.presets import preset_to_dict

    data = {
        "stems": {"drums": {"inserts": [{"plugin": FILTER, "params": {"freq": 0.4}, "bypass": True}]}},
        "buses": {"main": {"inserts": [{"plugin": REVERB}]}},
        "midi": {
            "map": [
                {"kind": "cc", "number": 20, "action": "param", "stem": "drums", "insert": 1, "param": "freq"},
                {"kind": "note", "number": 36, "action": "bypass", "bus": "main", "insert": 1},
            ]
        },
    }
    p = preset(data)
    again = parse_preset(preset_to_dict(p), "again.toml")
    assert again.stem_inserts["drums"][0] == InsertSpec(FILTER, {"freq": 0.4}, True)
    assert again.buses["main"].inserts[0].plugin == REVERB
    assert [(m.action, m.insert, m.param) for m in again.midi.map] == [("param", 1, "freq"), ("bypass", 1, None)]
    bad = dict(data, midi={"map": [{"kind": "cc", "action": "param", "stem": "drums", "param": "cutoff"}]})
    with pytest.raises(PresetError, match="'midi.map\\[0\\].param' is not a parameter of"):
        preset(bad)
    bad = dict(data, midi={"map": [{"kind": "cc", "action": "param", "stem": "bass", "param": "freq"}]})
    with pytest.raises(PresetError, match="stems.bass.inserts, which has no inserts"):
        preset(bad)


# ---- the must-show: separate --preset ------------------------------------------------------


def test_separate_with_an_amp_insert_scales_the_vocals_and_leaves_the_rest_bit_identical(tmp_path):
    from livedemix.apps.cli import main

    x = noise(3.0, seed=11)
    song = tmp_path / "song.wav"
    sf.write(song, x.T, SR, subtype="FLOAT")
    plain = tmp_path / "plain.toml"
    plain.write_text('schema = 1\nname = "plain"\n')
    amp = tmp_path / "amp.toml"
    amp.write_text(
        'schema = 1\nname = "amp"\n\n[[stems.vocals.inserts]]\nplugin = "http://lv2plug.in/plugins/eg-amp"\n'
        "params = { gain = -6.0 }\n"
    )
    for name, p in (("a", plain), ("b", amp)):
        rc = main(["separate", str(song), "-o", str(tmp_path / name), "--model", TINY_MODEL, "--preset", str(p)])
        assert rc == 0
    read = lambda d, s: sf.read(tmp_path / d / "song" / f"{s}.wav", dtype="float32")[0]  # noqa: E731
    a, b = read("a", "vocals"), read("b", "vocals")
    err = rel_db(b.astype(np.float64) - 10 ** (-6 / 20) * a.astype(np.float64), a)
    print(f"vocals with eg-amp -6 dB vs without × 10^(-6/20): {err:.1f} dB")
    assert err < -80 and np.sum(a**2) > 0
    for stem in ("drums", "bass", "other"):
        assert np.array_equal(read("a", stem), read("b", stem)), stem


# ---- the CLI -------------------------------------------------------------------------------


def test_plugins_list_and_show_commands(capsys):
    import json

    from livedemix.apps.cli import main

    assert main(["plugins", "list", "--json"]) == 0
    rows = {r["uri"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[AMP]["audio"] == "1→1" and rows[AMP]["params"] == 1 and UNHOSTABLE not in rows
    assert rows[DELAY]["latency"] is True
    assert main(["plugins", "list", "--all", "--json"]) == 0
    assert not {r["uri"]: r for r in json.loads(capsys.readouterr().out)}[UNHOSTABLE]["hostable"]
    assert main(["plugins", "show", DELAY]) == 0
    out = capsys.readouterr().out
    assert "reports latency: yes" in out and "delay" in out and "192000" in out
    assert main(["plugins", "show", "http://lv2plug.in/plugins/eg-nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "install the Debian package lv2-examples" in err


def test_bench_inserts_reports_the_chain_cost_as_a_ratio():
    from livedemix.apps.bench_inserts import bench_inserts, format_inserts

    r = bench_inserts(0.5, model=TINY_MODEL, rounds=2)
    print(format_inserts(r))
    assert r["plugin_faults"] == 0 and r["rounds"] == 2
    assert 0.5 < r["ratio_min"] <= r["ratio"] <= r["ratio_max"] < 50
    assert r["real_time_factor_with"] > 0 and r["real_time_factor_without"] > 0


def test_the_shipped_fx_chain_preset_runs_in_the_engine():
    e = Engine(model=TINY_MODEL, preset="fx-chain", block_size=512)
    d = e.describe()["inserts"]
    assert [i["name"] for i in d["stems"]["vocals"]] == ["MDA DubDelay"] and d["stems"]["vocals"][0]["bypass"]
    assert [i["name"] for i in d["stems"]["drums"]] == ["MDA RezFilter"]
    assert [i["name"] for i in d["buses"]["main"]] == ["MDA Ambience"]
    y = stream(e, noise(0.5, seed=2), 512)
    assert np.all(np.isfinite(y)) and np.sum(y**2) > 0


def test_the_engine_with_a_chain_allocates_no_arrays_per_block():
    import gc
    import tracemalloc

    pre = preset(
        {
            "stems": {
                "vocals": {
                    "inserts": [{"plugin": AMP, "params": {"gain": -3.0}}, {"plugin": DELAY, "params": {"delay": 64}}]
                },
                "drums": {"inserts": [{"plugin": FILTER, "params": {"freq": 0.5}}]},
            },
            "buses": {"main": {"inserts": [{"plugin": REVERB}]}},
        }
    )
    e = Engine(model=TINY_MODEL, preset=pre, buses=["main", "cue"], block_size=256)
    x = noise(2.0, seed=4)
    blocks = [np.ascontiguousarray(x[:, s : s + 256]) for s in range(0, x.shape[1] - 256, 256)]
    out = np.empty((2, 2, 256), np.float32)
    for b in blocks[:50]:
        e.process(b, out=out)
    half = 50 + (len(blocks) - 50) // 2
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for b in blocks[50:half]:
            e.process(b, out=out)
        mid = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for b in blocks[half:]:
            e.process(b, out=out)
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        gc.enable()
    print(
        f"{len(blocks) - 50} blocks with 4 inserts: traced growth {mid - base} B then {cur - mid} B, "
        f"peak of the second half {peak - mid} B"
    )
    # One stem block is 2 KiB and one STFT frame 8 KiB: a per-block buffer would show in the
    # peak, and anything kept per block would make the second half grow like the first.
    assert peak - mid < 6144 and cur - mid < 1024


def test_a_preset_recall_sets_the_same_plugins_parameters_and_bypass():
    a = preset({"stems": {"vocals": {"inserts": [{"plugin": AMP, "params": {"gain": -6.0}}]}}})
    b = preset({"stems": {"vocals": {"inserts": [{"plugin": AMP, "bypass": True}]}}})
    other = preset({"stems": {"vocals": {"inserts": [{"plugin": FILTER}]}}})
    e = Engine(model=TINY_MODEL, preset=a, block_size=256)
    chain = e.insert_chain(stem="vocals")
    e.apply_preset(b)
    assert chain.param(0, "gain") == 0.0 and chain.bypassed(0)  # unlisted: the plugin's default
    e.apply_preset(a)
    assert chain.param(0, "gain") == -6.0 and not chain.bypassed(0)
    e.apply_preset(other)  # other plugins need a new engine: the chain stays as it is
    assert e.insert_chain(stem="vocals") is chain and chain.param(0, "gain") == -6.0


def test_separate_keeps_every_output_aligned_with_a_latency_plugin_and_applies_bus_inserts():
    from livedemix.offline import separate

    x = noise(2.0, seed=12)
    base = separate(x, SR, model=TINY_MODEL, preset=preset({}))
    delayed = separate(
        x,
        SR,
        model=TINY_MODEL,
        preset=preset(
            {
                "stems": {"drums": {"inserts": [{"plugin": DELAY, "params": {"delay": 300}}]}},
                "buses": {"main": {"inserts": [{"plugin": AMP, "params": {"gain": -6.0}}]}},
            }
        ),
    )
    for stem in ("vocals", "drums", "bass", "other"):  # the offline render removes the added latency too
        err = rel_db(delayed[stem] - base[stem], base[stem])
        print(f"{stem}: {err:.1f} dB from the render without inserts")
        assert err < -100, stem
    assert rel_db(delayed["mix"] - 10 ** (-6 / 20) * base["mix"], base["mix"]) < -100  # main's chain on mix


def test_replacing_a_chain_with_a_plugin_that_cant_run_keeps_the_old_chain():
    e = Engine(model=TINY_MODEL, preset=preset({"stems": {"bass": {"inserts": [{"plugin": AMP}]}}}), block_size=256)
    with pytest.raises(PluginError, match="not installed"):
        e.set_stem_inserts("bass", [InsertSpec("http://drobilla.net/plugins/mda/NotThere")])
    assert [s["plugin"] for s in e.insert_stats()["stems"]["bass"]] == [AMP]
    e.set_bus_inserts("main", [InsertSpec(DELAY, {"delay": 10})])
    assert (
        e.insert_chain(bus="main").latency == 10 and e.latency_samples == Engine(model=TINY_MODEL).latency_samples + 10
    )


def test_a_broken_bundle_in_the_lv2_path_does_not_leak_into_error_messages(tmp_path):
    """A folder in the LV2 path without manifest.ttl (Debian's avldrums.lv2-soundfont installs
    one) makes lilv print to stderr while it loads; the user still gets one sentence."""
    import os
    import subprocess
    import sys

    (tmp_path / "broken.lv2").mkdir()
    (tmp_path / "broken.lv2" / "kit.sf2").write_bytes(b"RIFF")
    env = dict(os.environ, LV2_PATH=f"{tmp_path}:/usr/lib/lv2")
    res = subprocess.run(
        [sys.executable, "-m", "livedemix.apps.cli", "plugins", "show", "http://example.org/not-installed"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and "is not installed" in res.stderr, res.stderr
