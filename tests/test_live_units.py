"""Parts of the live path that need no audio device: channel lists, the control queue, the
file read-ahead (with and without resampling)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
from live_support import live_model  # noqa: F401
from livedemix import dsp
from livedemix.audio import AudioDeviceError, ControlQueue, FileReader, parse_channels, power_scale


def test_parse_channels():
    assert parse_channels("1,2") == [1, 2]
    assert parse_channels("3-4") == [3, 4]
    assert parse_channels(" 5 ") == [5]
    assert parse_channels(None) is None
    for bad in ("a", "0", "1,2,3", "", "2-"):
        with pytest.raises(AudioDeviceError, match="--in"):
            parse_channels(bad)


def test_control_queue_applies_in_order_across_threads_and_survives_bad_controls():
    q = ControlQueue()
    seen = []

    def producer(k):
        for i in range(500):
            q.post(seen.append, (k, i))
        q.post(lambda: 1 / 0)  # a control that fails is dropped, the rest go on

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    n = 0
    while any(t.is_alive() for t in threads) or len(q):
        n += q.drain(limit=64)
    for t in threads:
        t.join()
    n += q.drain()
    assert n == 4 * 501
    for k in range(4):
        assert [i for kk, i in seen if kk == k] == list(range(500))


@pytest.mark.parametrize("rate", [44100, 22050])
def test_file_reader_fills_the_ring_at_the_model_rate(tmp_path, rate):
    t = np.arange(rate) / rate
    mono = (0.5 * np.sin(2 * np.pi * 441 * t)).astype(np.float32)
    path = tmp_path / "tone.wav"
    sf.write(path, mono, rate, subtype="FLOAT")
    r = FileReader(path, 44100, capacity=1 << 17)
    r.start()
    r.join(30)
    assert r.eof and r.error is None
    out = np.zeros((2, r.ring.available_read), np.float32)
    r.ring.pop_into(out)
    assert abs(out.shape[1] - 44100) <= 1 and r.pushed == out.shape[1]
    np.testing.assert_array_equal(out[0], out[1])  # mono is doubled
    if rate == 44100:
        np.testing.assert_array_equal(out[0], mono)
    else:
        ref = 0.5 * np.sin(2 * np.pi * 441 * np.arange(out.shape[1]) / 44100)
        assert np.abs(out[0, 2000:-2000] - ref[2000:-2000]).max() < 1e-3


def test_file_reader_refuses_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        FileReader(tmp_path / "nope.wav", 44100)


@pytest.mark.parametrize("config", ["quality", "low-latency", "reference"])
def test_meter_scale_reads_a_full_scale_sine_as_0_dbfs(config):
    cfg = dsp.config(config)
    t = np.arange(44100) / 44100
    for amp, want_db in ((1.0, 0.0), (0.1, -20.0)):
        x = np.tile((amp * np.sin(2 * np.pi * 997 * t)).astype(np.float32), (2, 1))
        frames = dsp.stft(x, cfg)[10:-10]
        power = (np.abs(frames) ** 2).mean(axis=(1, 2))
        db = 10 * np.log10(power * power_scale(cfg))
        assert np.abs(db - want_db).max() < 0.2


def test_engine_stem_meters(live_model):
    from livedemix.engine import Engine

    e = Engine(model=live_model, preset="karaoke", block_size=1024)
    out = np.full(len(e.stems), -1.0, np.float32)
    e.process(np.zeros((2, 1024), np.float32))
    e.stem_power_into(out)
    assert np.all(out == 0)
    t = np.arange(44100) / 44100
    x = np.tile((0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), (2, 1))
    for s in range(0, 44100 - 1024, 1024):
        e.process(np.ascontiguousarray(x[:, s : s + 1024]))
    e.stem_power_into(out)
    assert np.all(out >= 0) and out.sum() > 0
    # pre-fader: the vocals muted by the karaoke preset still show their level
    assert out[e.stems.index("vocals")] > 0
