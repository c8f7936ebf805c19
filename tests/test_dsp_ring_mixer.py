"""Lock-free ring buffer and STFT-domain stem mixer."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from livedemix import dsp


def test_ring_buffer_capacity_and_order():
    ring = dsp.AudioRingBuffer(2, 10)
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    assert ring.push(x) == 10  # full after 10: the caller learns how many went in
    assert ring.available_read == 10 and ring.available_write == 0
    np.testing.assert_array_equal(ring.pop(4), x[:, :4])
    assert ring.push(np.ascontiguousarray(x[:, 10:])) == 2  # wraps around the end
    np.testing.assert_array_equal(ring.pop(100), np.concatenate([x[:, 4:10], x[:, 10:]], axis=1))
    assert ring.pop(5).shape == (2, 0)


def test_ring_buffer_across_threads_keeps_every_sample_in_order():
    ring = dsp.AudioRingBuffer(2, 512)
    total = 400_000
    src = np.stack([np.arange(total), -np.arange(total)]).astype(np.float32)
    got = np.zeros_like(src)

    def consume():
        pos, buf = 0, np.zeros((2, 333), np.float32)
        while pos < total:
            k = ring.pop_into(buf)
            got[:, pos : pos + k] = buf[:, :k]
            pos += k

    consumer = threading.Thread(target=consume)
    consumer.start()
    pos = 0
    while pos < total:
        pos += ring.push(np.ascontiguousarray(src[:, pos : pos + 200]))
    consumer.join(timeout=60)
    np.testing.assert_array_equal(got, src)


def test_ring_buffer_rejects_wrong_channel_count():
    ring = dsp.AudioRingBuffer(2, 64)
    with pytest.raises(ValueError, match=r"shaped \(2, n\)"):
        ring.push(np.zeros((3, 8), np.float32))


def random_stems(rng, J=4, C=2, F=513):
    return (rng.standard_normal((J, C, F)) + 1j * rng.standard_normal((J, C, F))).astype(np.complex64)


def test_mixer_matches_gain_matrix_after_ramp():
    rng = np.random.default_rng(0)
    mixer = dsp.StemMixer(4, 2, 2, 513, ramp_frames=3)
    gains = np.array([[1, 0, 0.5, 1], [0.25, 1, 1, 2]], np.float32)
    mixer.set_gains(gains)
    for _ in range(3):
        mixer.process(random_stems(rng))
    stems = random_stems(rng)
    out = mixer.process(stems)
    ref = np.einsum("bj,jcf->bcf", gains, stems)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_mixer_ramps_a_gain_jump_linearly_over_ramp_frames():
    mixer = dsp.StemMixer(2, 1, 1, 4, ramp_frames=4)
    stems = np.ones((2, 1, 4), np.complex64)
    mixer.set_gain(0, 0, 0.0)
    applied = []
    for _ in range(6):
        applied.append(mixer.process(stems)[0, 0, 0].real - 1.0)  # stem 1 stays at unity
    np.testing.assert_allclose(applied, [0.75, 0.5, 0.25, 0.0, 0.0, 0.0], atol=1e-6)
    # a new target mid-ramp starts a new ramp from where the gain is
    mixer.set_gain(0, 0, 1.0)
    mixer.process(stems)
    mixer.set_gain(0, 0, 0.0)
    assert 0.0 < mixer.current_gain(0, 0) <= 0.25 + 1e-6
    mixer.snap_to_targets()
    assert mixer.current_gain(0, 0) == 0.0


def test_gain_jump_through_the_synthesizer_does_not_click():
    """Muting a stem mid-tone: the envelope of the output falls smoothly (no sample jump
    larger than the tone's own sample-to-sample change)."""
    cfg = dsp.config("quality")
    sr, n = 44100, 44100
    t = np.arange(n) / sr
    tone = np.stack([0.5 * np.sin(2 * np.pi * 220 * t)] * 2).astype(np.float32)
    ana = dsp.StftAnalyzer(cfg, 2, 256)
    syn = dsp.StftSynthesizer(cfg, 2, 256)
    mixer = dsp.StemMixer(1, 1, 2, cfg.bins, ramp_frames=2)
    out = []
    for i in range(0, n, 256):
        if i == 20000 - 20000 % 256:
            mixer.set_gain(0, 0, 0.0)
        block = np.ascontiguousarray(tone[:, i : i + 256])
        frames = ana.process(block)
        buses = np.stack([mixer.process(f[None])[0] for f in frames]) if len(frames) else frames
        out.append(syn.synthesize(buses, block.shape[1]))
    y = np.concatenate(out, axis=1)[0]
    max_step_tone = np.abs(np.diff(tone[0])).max()
    assert np.abs(np.diff(y)).max() <= max_step_tone * 1.01
    assert np.abs(y[-5000:]).max() < 1e-6  # and it does end up muted


def test_mixer_validates():
    with pytest.raises(ValueError, match=">= 1"):
        dsp.StemMixer(0, 1, 2, 513)
    mixer = dsp.StemMixer(4, 2, 2, 513)
    with pytest.raises(ValueError, match="bus 2 does not exist"):
        mixer.set_gain(2, 0, 1.0)
    with pytest.raises(ValueError, match=r"shaped \(4, 2, 513\)"):
        mixer.process(np.zeros((3, 2, 513), np.complex64))
    with pytest.raises(ValueError, match="finite"):
        mixer.set_gain(0, 0, float("nan"))
