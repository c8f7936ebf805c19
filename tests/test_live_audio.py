"""`livedemix play` / `live` through a real JACK server (dummy driver), PortAudio and sounddevice,
checked by separate JACK clients that play and record with JACK frame times."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf
from live_support import (  # noqa: F401
    DEMO,
    JackServer,
    Player,
    Recorder,
    finish,
    jack_server,
    live_model,
    livedemix,
    report_of,
    wait_until,
)
from livedemix.offline import separate

pytestmark = [pytest.mark.jack, pytest.mark.live]


def db(x: float) -> float:
    return 20 * np.log10(max(x, 1e-30))


def test_play_through_jack_equals_offline_karaoke(jack_server, live_model):
    """The captured output of `livedemix play --preset karaoke` is `separate(..., preset='karaoke',
    exact=True)['mix']` (the live network's render, not the offline graph's), delayed by the
    reported latency, sample for sample."""
    rec = Recorder(jack_server, "ldcap", seconds=40)
    try:
        p = livedemix(
            "play",
            str(DEMO),
            "--preset",
            "karaoke",
            "--model",
            str(live_model),
            "--device",
            "ldcap",
            "--no-ui",
            "--json",
            "--deadline",
            "0",
        )
        rc, out, err = finish(p, timeout=180)
    finally:
        captured = rec.stop()
    assert rc == 0, err
    assert "Traceback" not in err
    r = report_of(out)
    audio, sr = sf.read(DEMO, dtype="float32", always_2d=True)
    ref = separate(audio.T, sr, preset="karaoke", model=live_model, exact=True)["mix"]
    L = r["latency_samples"]
    assert L == r["engine_latency_samples"] == 512  # blocksize 0: no buffering beyond the engine's
    # Output sample n of the stream is the engine's output n; the song's sample i is due at
    # n = L + i. Before that the engine may ring a little (a frame's synthesis window reaches
    # back into the latency), so the stream starts at most L samples before the song appears:
    # find the song within L samples after the capture's first non-zero sample.
    c0 = int(np.flatnonzero(np.abs(captured).max(axis=0) > 0)[0])
    probe = ref[:, 4096:8192]
    errs = [np.abs(captured[:, c0 + k + 4096 : c0 + k + 8192] - probe).max() for k in range(L + 1)]
    song = c0 + int(np.argmin(errs))
    stream_start = song - L
    assert stream_start <= c0, "output appeared earlier than the reported latency allows"
    got = captured[:, song : song + ref.shape[1]]
    assert got.shape == ref.shape, "the capture ended before the song"
    assert not captured[:, :stream_start].any()
    diff = got - ref
    err_db = db(np.sqrt(np.mean(diff**2)) / np.sqrt(np.mean(ref**2)))
    print(
        f"\nplay vs offline karaoke: max |diff| {np.abs(diff).max():.3g}, error {err_db:.1f} dB; "
        f"xruns livedemix {r['xruns']}, seen by the capture client {rec.xruns}; cpu {r['cpu_share']:.3f}"
    )
    assert np.abs(diff).max() == 0.0 or err_db < -90
    assert r["underruns"] == 0 and r["late_hops"] == 0 and r["separator_errors"] == 0
    # Every xrun livedemix counted is one the server reported to every client (on an idle
    # machine both are 0; on a busy one the dummy driver itself wakes late now and then).
    assert r["xruns"] <= rec.xruns
    assert r["stopped"] == "end"


def _impulse_delays(server, live_model, *extra, rate=44100, amp=(0.5, -0.25)):
    """Impulses into `livedemix live` (unity gains) from one client, captured by another:
    returns (report, [delay in samples of each impulse], [captured peak value])."""
    rec = Recorder(server, "ldcap", seconds=20)
    src = Player(server, "ldsrc")
    try:
        p = livedemix(
            "live",
            "--device",
            "ldcap",
            "--input-device",
            "ldsrc",
            "--model",
            str(live_model),
            "--no-ui",
            "--json",
            "--deadline",
            "0",
            *extra,
            env=server.env,
        )
        wait_until(lambda: (rec.connected() and src.connected()) or p.poll() is not None, 60, "livedemix's JACK ports")
        assert p.poll() is None, p.communicate()[1]
        time.sleep(0.3)
        offsets = [1000, 12345, 23456 + 77, 40000 + 255]
        sig = np.zeros((2, rate), np.float32)
        for k in offsets:
            sig[0, k], sig[1, k] = amp
        t_start = server_play(src, sig)
        wait_until(lambda: not src.busy(), 30, "the source to finish")
        time.sleep(0.5)
        rc, out, err = finish(p, interrupt=True)
    finally:
        captured = rec.stop()
        src.close()
    assert rc == 0, err
    assert "Traceback" not in err
    r = report_of(out)
    assert r["stopped"] == "interrupted"
    delays, peaks = [], []
    for k in offsets:
        i0 = t_start + k - rec.t0
        window = captured[0, i0 : i0 + 8192]
        j = int(np.argmax(np.abs(window)))
        delays.append(j)
        peaks.append(float(window[j]))
        assert np.sign(captured[1, i0 + j]) == np.sign(amp[1])
    return r, delays, peaks


def server_play(src, sig):
    return src.play(sig, delay_frames=4096)


@pytest.mark.parametrize("block", [0, 256])
def test_impulse_through_live_arrives_exactly_after_the_reported_latency(jack_server, live_model, block):
    r, delays, peaks = _impulse_delays(jack_server, live_model, "--block", str(block))
    print(f"\nblock {block}: reported {r['latency_samples']} samples, measured {delays}, peaks {peaks}")
    assert r["latency_samples"] == r["engine_latency_samples"] + block
    assert delays == [r["latency_samples"]] * len(delays)
    assert all(abs(p - 0.5) < 1e-4 for p in peaks)  # unity gains: the stems sum back to the input


def test_live_resamples_when_the_device_rate_differs_and_counts_the_delay():
    """A 48 kHz JACK server and a 44.1 kHz model: the stream resamples both ways and the reported
    latency (prefill + the engine's latency at 48 kHz) is where the impulse arrives."""
    import tempfile
    from pathlib import Path

    from live_support import DEFAULT_MODEL, export_random_model

    server = JackServer(rate=48000)
    try:
        with tempfile.TemporaryDirectory() as d:
            model = DEFAULT_MODEL if DEFAULT_MODEL.exists() else export_random_model(Path(d))
            r, delays, peaks = _impulse_delays(server, model, rate=48000)
    finally:
        server.stop()
    print(
        f"\n48 kHz: reported {r['latency_samples']} samples (prefill {r['prefill_samples']}), measured {delays}, peaks {peaks}"
    )
    assert r["mode"] == "resampling" and r["samplerate"] == 48000
    assert r["latency_samples"] == r["prefill_samples"] + round(r["engine_latency_samples"] * 48000 / 44100)
    # Every impulse that arrives arrives at the reported latency (an underrun of the resampling
    # worker zero-fills the samples it missed but never shifts the ones after it).
    arrived = [d for d, p in zip(delays, peaks) if abs(p) > 0.3]
    assert all(abs(d - r["latency_samples"]) <= 1 for d in arrived)
    assert len(arrived) == len(delays) or r["underruns"] > 0
    assert len(arrived) >= len(delays) - 1
    assert r["underruns"] <= 2 * r["xruns"] + 2  # the worker only misses when JACK itself ran late


def test_live_ends_with_one_sentence_when_the_jack_server_goes_away(live_model):
    import jack

    server = JackServer()
    try:
        p = livedemix("live", "--model", str(live_model), "--no-ui", env=server.env)
        probe = jack.Client("probe2", no_start_server=True, servername=server.name)

        def ports_up():
            return bool(probe.get_ports("livedemix:out")) or p.poll() is not None

        wait_until(ports_up, 60, "livedemix's ports")
        probe.close()
        time.sleep(0.5)
        server.proc.kill()  # the server dies without a word
        rc, out, err = finish(p, timeout=30)
    finally:
        server.stop()
    assert rc == 2
    assert "Traceback" not in err
    assert "stopped delivering audio" in err
    assert len([ln for ln in err.splitlines() if ln.startswith("livedemix:")]) == 1


def test_device_and_channel_errors_are_one_sentence_listing_what_exists(jack_server, live_model, tmp_path):
    p = livedemix("play", str(DEMO), "--model", str(live_model), "--device", "nosuch", "--no-ui")
    rc, out, err = finish(p)
    assert rc == 2 and "no output device matches 'nosuch': the devices are 0 'system' (JACK" in err
    assert err.count("\n") == 1 and "Traceback" not in err

    rc, out, err = finish(livedemix("live", "--model", str(live_model), "--device", "7", "--no-ui"))
    assert rc == 2 and "there is no device 7" in err

    rc, out, err = finish(livedemix("live", "--model", str(live_model), "--in", "1,5", "--no-ui"))
    assert rc == 2 and "asks for input 5 but device 0 'system' has 2 inputs" in err

    rc, out, err = finish(livedemix("live", "--model", str(live_model), "--in", "a,b", "--no-ui"))
    assert rc == 2 and "is not a channel list" in err

    preset = tmp_path / "wide.toml"
    preset.write_text("schema = 1\n[buses.main]\noutputs = [1, 2]\n[buses.cue]\noutputs = [7, 8]\n")
    rc, out, err = finish(livedemix("live", "--model", str(live_model), "--preset", str(preset), "--no-ui"))
    assert rc == 2 and "bus 'cue' goes to output 7-8 but device 0 'system' has 4 outputs" in err

    rc, out, err = finish(livedemix("play", str(tmp_path / "missing.flac"), "--model", str(live_model), "--no-ui"))
    assert rc == 2 and "no such file" in err and "Traceback" not in err


def test_devices_lists_jack(jack_server):
    import json

    rc, out, err = finish(livedemix("devices", "--json"))
    assert rc == 0, err
    d = json.loads(out)
    assert any(a.startswith("JACK") for a in d["host_apis"])
    system = [x for x in d["devices"] if x["name"] == "system"][0]
    assert system["outputs"] == 4 and system["inputs"] == 2 and system["default_samplerate"] == 44100
    rc, out, err = finish(livedemix("devices"))
    assert "system" in out and "JACK" in out


def test_the_audio_callback_allocates_no_arrays(jack_server, live_model):
    """The callback of `live` (input → engine → routing → meters, with MIDI-style controls in
    the queue) run 1500 times against the real device description: no per-block buffers."""
    import tracemalloc

    import sounddevice as sd
    from livedemix.audio import StreamRunner, find_device
    from livedemix.engine import Engine

    eng = Engine(model=live_model, preset="karaoke", buses=["main", "cue"], block_size=4096)
    r = StreamRunner(
        eng,
        output_device=find_device("system", "output"),
        input_device=find_device("system", "input"),
        input_channels=[1, 2],
        routes={"main": [1, 2], "cue": [3, 4]},
    )
    r.warm_up()
    rng = np.random.default_rng(0)
    n = 1024
    inputs = [(0.1 * rng.standard_normal((n, 2))).astype(np.float32) for _ in range(8)]
    outdata = np.zeros((n, r.out_channels), np.float32)
    flags = sd.CallbackFlags()
    for i in range(50):
        r._callback(inputs[i % 8], outdata, n, None, flags)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for i in range(1500):
        if i % 100 == 0:
            r.controls.post(eng.set_gain, "drums", -6.0 * (i % 200 == 0), "cue")
        r._callback(inputs[i % 8], outdata, n, None, flags)
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\n1500 callbacks of {n} frames: growth {cur - base} B, peak above start {peak - base} B")
    # One input or output block is 8 KiB, one STFT frame 8 KiB, the stem meter's scratch 16 KiB.
    assert peak - base < 6144
    assert cur - base < 2048
    assert r.stats.controls_applied == 15 and np.abs(outdata[:, 2:]).max() > 0
