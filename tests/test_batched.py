"""Batched offline separation: the sequence graph (many frames per onnxruntime call) gives the
streaming engine's stems to float rounding, its file is checked against the card, and
``exact=True`` keeps the bit-exact streaming render."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from livedemix import separate
from livedemix.batched import SequenceRunner, SequenceSeparator
from livedemix.offline import StreamingSeparation
from livedemix.separator import ModelError, Separator, sha256_of
from tiny_model import copy_committed_model

DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo"
MODELS = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "models"


def db(err: np.ndarray, ref: np.ndarray) -> float:
    return float(20 * np.log10(np.linalg.norm(err) / np.linalg.norm(ref) + 1e-30))


@pytest.fixture(scope="module")
def demo() -> tuple[np.ndarray, int]:
    x, sr = sf.read(DEMO / "mixture.flac", dtype="float32", frames=4 * 44100, start=2 * 44100)
    return np.ascontiguousarray(x.T), sr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return copy_committed_model("tiny", tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize("which", ["tiny", "live"])
def test_sequence_graph_in_chunks_equals_the_step_graph(which, tmp_path):
    card = copy_committed_model(which, tmp_path)
    sep = Separator(card)
    rng = np.random.default_rng(1)
    T = 150
    mags = (rng.random((T, sep.input_planes, sep.bins), np.float32) ** 3 * 4).astype(np.float32)
    ref = sep.run(mags)  # one frame per call through the streaming step
    runner = SequenceRunner(sep, chunk_frames=64)
    parts, s = [], 0
    for n in (1, 7, 64, 3, 75):  # chunks shorter and longer than the dilations, carried over
        parts.append(runner.run(mags[s : s + n]))
        s += n
    got = np.concatenate(parts)
    assert got.shape == ref.shape
    err = db(got - ref, ref)
    print(f"{which}: sequence graph vs step graph {err:.1f} dB")
    assert err < -110
    assert db(runner.run_all(mags) - ref, ref) < -110  # from a zero state again


@pytest.mark.parametrize("model", ["tiny", "default"])
def test_batched_separation_equals_streaming_within_minus_100_db(model, demo, tiny):
    x, sr = demo
    ref_model = tiny if model == "tiny" else None
    # wiener: the mode whose output is a smooth function of the magnitudes (see the next test)
    exact = separate(x, sr, model=ref_model, phase="wiener", exact=True)
    fast = separate(x, sr, model=ref_model, phase="wiener", exact=False)
    for stem in exact:
        assert fast[stem].shape == exact[stem].shape
        err = db(fast[stem] - exact[stem], exact[stem])
        print(f"{model} {stem}: batched vs streaming {err:.1f} dB")
        assert err < -100, (stem, err)


def test_the_shipped_live_model_renders_batched_within_minus_100_db(demo):
    """The shipped model's live network in its default phase mode, batched (--batched; without
    a flag `separate` uses its offline graph, tests/test_offline_graph.py)."""
    x, sr = demo
    sep = StreamingSeparation(sr, 2, exact=False)
    assert sep.batched and sep.describe()["render"] == "batched"
    exact = separate(x, sr, exact=True)
    fast = separate(x, sr, exact=False)
    worst = max(db(fast[s] - exact[s], exact[s]) for s in exact)
    print(f"default model, default mode: worst stem {worst:.1f} dB")
    assert worst < -100


def test_exact_keeps_the_streaming_render_bit_for_bit(demo, tiny):
    x, sr = demo
    x = x[:, : sr * 2]
    sep = StreamingSeparation(sr, 2, model=tiny, exact=True)
    assert not sep.batched and sep.describe()["render"] == "streaming"
    a = separate(x, sr, model=tiny, exact=True)
    b = separate(x, sr, model=tiny, exact=True, block_size=1000)  # offline == live for any block
    for s in a:
        assert np.array_equal(a[s], b[s])


def test_batched_path_runs_through_the_engine_with_a_preset_and_mono_and_resampling(demo, tiny):
    x, sr = demo
    x = x[:, : sr * 2]
    for audio, rate in ((x, sr), (x[0], sr), (x, 48000)):
        ex = separate(audio, rate, model=tiny, preset="karaoke", phase="wiener", exact=True)
        fa = separate(audio, rate, model=tiny, preset="karaoke", phase="wiener")
        assert set(fa) == set(ex) and "mix" in fa
        for o in ex:
            assert fa[o].shape == audio.shape
            assert db(fa[o] - ex[o], ex[o]) < -100, o


def test_many_frames_per_call(demo, tiny):
    x, sr = demo
    sep = StreamingSeparation(sr, 2, model=tiny, chunk_frames=64, exact=False)
    sep.feed(x)
    sep.finish()
    eng = sep._engines[0]
    assert isinstance(eng.separator, SequenceSeparator)
    frames = eng.stats.frames
    assert sep._engines[0].separator.calls <= frames / 64 + 2 * 14  # one call per 64 frames (+ chunk tails)
    assert frames > 600


class FailingOnce:
    """Wraps an engine's separator: raises on the n-th frame (a model failure the engine answers
    with its pass-through and a reset); everything else goes through."""

    def __init__(self, inner, n):
        self.inner, self.n, self.count = inner, n, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step_spectrum(self, X):
        self.count += 1
        if self.count == self.n:
            raise RuntimeError("boom")
        return self.inner.step_spectrum(X)


def test_an_engine_reset_mid_song_restarts_the_state_where_the_streaming_step_would(demo, tiny):
    x, sr = demo
    outs = {}
    for exact in (True, False):
        sep = StreamingSeparation(sr, 2, model=tiny, phase="wiener", exact=exact)
        eng = sep._engines[0]
        eng.separator = FailingOnce(eng.separator, 100)
        parts = [sep.feed(x), sep.finish()]
        assert eng.stats.separator_errors == 1 and eng.stats.bypass_frames > 0
        outs[exact] = {o: np.concatenate([p[o] for p in parts], axis=1) for o in parts[0]}
    for o in outs[True]:
        assert db(outs[False][o] - outs[True][o], outs[True][o]) < -100, o


def test_a_changed_sequence_graph_is_refused(tiny, tmp_path):
    card = copy_committed_model("tiny", tmp_path)
    seq = tmp_path / "tiny.seq.onnx"
    data = bytearray(seq.read_bytes())
    data[-10] ^= 0xFF
    seq.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sequence graph tiny.seq.onnx does not match its card"):
        separate(np.zeros((2, 4096), np.float32), 44100, model=card, exact=False)
    # --exact needs only the step graph
    assert separate(np.zeros((2, 4096), np.float32), 44100, model=card, exact=True)["vocals"].shape == (2, 4096)


@pytest.mark.parametrize("name", ["../tiny.seq.onnx", "/etc/passwd", "", None, 7])
def test_a_sequence_graph_outside_the_card_folder_is_refused(tiny, tmp_path, name):
    card = copy_committed_model("tiny", tmp_path / "m")
    c = json.loads(card.read_text())
    c["sequence"]["onnx_file"] = name
    card.write_text(json.dumps(c))
    with pytest.raises(ModelError, match="sequence"):  # the card check (validate) or batched.py
        separate(np.zeros((2, 4096), np.float32), 44100, model=card, exact=False)


def test_a_model_without_a_sequence_graph_renders_streaming(demo, tmp_path):
    card = copy_committed_model("tiny", tmp_path)
    c = json.loads(card.read_text())
    del c["sequence"]
    card.write_text(json.dumps(c))
    x, sr = demo
    x = x[:, :sr]
    assert not StreamingSeparation(sr, 2, model=card, exact=False).batched
    a, b = separate(x, sr, model=card, exact=False), separate(x, sr, model=card, exact=True)
    assert all(np.array_equal(a[s], b[s]) for s in a)


def test_shipped_model_names_its_sequence_graph_with_the_right_hash():
    card = json.loads((MODELS / "default.json").read_text())
    seq = card["sequence"]
    assert seq["onnx_file"] == "default.seq.onnx"
    assert sha256_of(MODELS / seq["onnx_file"]) == seq["onnx_sha256"]
    assert seq["state_pairs"] == card["state_pairs"]
    assert sha256_of(MODELS / card["onnx_file"]) == card["onnx_sha256"]


@pytest.mark.parametrize("exact", [False, True])
def test_a_reused_engine_renders_the_next_song_as_a_fresh_one(demo, tiny, exact):
    """A library worker keeps its engines between songs (the model loads once): each song must
    come out as if the engine were new (the classic streaming bug: a state not reset)."""
    x, sr = demo
    a, b = x[:, : sr * 2], x[:, sr * 2 :]
    cache: dict = {}

    def render(audio, cache):
        sep = StreamingSeparation(sr, 2, model=tiny, preset="karaoke", exact=exact, engine_cache=cache)
        parts = [sep.feed(audio), sep.finish()]
        return sep, {o: np.concatenate([p[o] for p in parts], axis=1) for o in parts[0]}

    first, _ = render(a, cache)
    second, out = render(b, cache)
    assert second._engines[0] is first._engines[0]  # reused
    _, fresh = render(b, None)
    for o in fresh:
        assert np.array_equal(out[o], fresh[o]), o


def test_the_default_render_is_batched_only_where_it_stays_within_minus_100_db(demo, tiny):
    """exact=None: batched in the wiener mode; the peak-tracking modes render exactly, because
    there a rounding difference in one magnitude can flip a peak pick (measured here)."""
    x, sr = demo
    x = x[:, :sr]
    assert StreamingSeparation(sr, 2, model=tiny, phase="wiener").batched
    for mode in ("pu-iter", "anisotropic"):
        assert not StreamingSeparation(sr, 2, model=tiny, phase=mode).batched
        a = separate(x, sr, model=tiny, phase=mode)
        b = separate(x, sr, model=tiny, phase=mode, exact=True)
        assert all(np.array_equal(a[s], b[s]) for s in a)
    # forced batched in pu-iter: the network's output is as close as ever, the stems are not
    fast = separate(x, sr, model=tiny, phase="pu-iter", exact=False)
    exact = separate(x, sr, model=tiny, phase="pu-iter", exact=True)
    worst = max(db(fast[s] - exact[s], exact[s]) for s in exact)
    print(f"pu-iter, forced batched: worst stem {worst:.1f} dB from the streaming render")
    assert worst > -100  # if this fails, pu-iter became smooth: add it to BATCHED_MODES


def test_bench_offline_reports_both_paths_and_their_ratio(tiny):
    from livedemix.apps.bench_offline import bench_offline, format_offline, memory_for

    r = bench_offline(model=tiny, rounds=1, memory=False, seconds=3.0)
    assert r["audio_seconds"] == 3.0 and r["streaming_x_realtime"] > 0 and r["batched_x_realtime"] > 0
    assert r["speedup"] == pytest.approx(r["seconds"]["streaming"][0] / r["seconds"]["batched"][0], rel=0.02)
    text = format_offline(r)
    print(text)
    assert "x the streaming path" in text
    m = memory_for(20.0, tiny)  # the child process's peak memory over 20 s of audio
    assert m["peak_rss_mb"] >= m["rss_after_load_mb"] > 0, m


def test_a_non_finite_block_is_handled_as_the_streaming_engine_handles_it(demo, tiny):
    x, sr = demo
    x = x[:, : sr * 2].copy()
    x[:, 30000:30010] = np.nan  # the analyser zeroes the block: both analysers see the same blocks
    a = separate(x, sr, model=tiny, phase="wiener", exact=True)
    b = separate(x, sr, model=tiny, phase="wiener", exact=False)
    for s in a:
        assert np.isfinite(b[s]).all() and db(b[s] - a[s], a[s]) < -100, s


def test_a_sequence_graph_that_is_not_onnx_is_one_model_error(tmp_path):
    card = copy_committed_model("tiny", tmp_path)
    seq = tmp_path / "tiny.seq.onnx"
    seq.write_bytes(b"not an onnx model at all")
    c = json.loads(card.read_text())
    c["sequence"]["onnx_sha256"] = sha256_of(seq)  # a card that vouches for it
    card.write_text(json.dumps(c))
    with pytest.raises(ModelError, match="is not an ONNX model onnxruntime can load"):
        separate(np.zeros((2, 4096), np.float32), 44100, model=card, exact=False)
