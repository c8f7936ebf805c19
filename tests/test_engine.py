"""The engine: transparency, exact latency, block-size independence, console controls and
ramps, buses, the pass-through fallback, and steady-state allocation."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from livedemix.engine import Engine
from livedemix.offline import separate
from livedemix.presets import PresetError

DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo"
from tiny_model import export_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def demo_mix() -> np.ndarray:
    x, sr = sf.read(DEMO / "mixture.flac", dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T[:, : 6 * sr])


def stream(engine: Engine, x: np.ndarray, block: int) -> np.ndarray:
    out = np.zeros((len(engine.buses),) + x.shape, np.float32)
    for s in range(0, x.shape[1], block):
        out[:, :, s : s + block] = engine.process(x[:, s : s + block])
    return out


def rel_db(err, ref) -> float:
    e = float(np.sum(np.square(err, dtype=np.float64)))
    return -math.inf if e == 0 else 10 * math.log10(e / float(np.sum(np.square(ref, dtype=np.float64))))


@pytest.mark.parametrize("material", ["demo", "noise"])
@pytest.mark.parametrize("phase", ["wiener", "pu-iter", "anisotropic"])
def test_unity_gains_are_transparent(model, demo_mix, material, phase):
    x = (
        demo_mix
        if material == "demo"
        else np.random.default_rng(3).standard_normal((2, 3 * 44100)).astype(np.float32) * 0.3
    )
    e = Engine(model=model, block_size=256, phase=phase)
    y = stream(e, x, 256)[0]
    L = e.latency_samples
    db = rel_db(y[:, L:] - x[:, :-L], x)
    print(f"{material} {phase}: output - delayed input = {db:.1f} dB")
    assert db < -90
    assert e.stats.frames > 0 and e.stats.separator_errors == 0


def test_latency_is_exact_for_any_block_pattern(model):
    e = Engine(model=model, block_size=1000)
    x = np.zeros((2, 8000), np.float32)
    x[:, 3001] = 1.0
    rng = np.random.default_rng(0)
    out, s = [], 0
    while s < x.shape[1]:
        n = int(rng.integers(1, 1000))
        out.append(e.process(x[:, s : s + n])[0].copy())
        s += n
    y = np.concatenate(out, axis=1)
    assert e.latency_samples == 512
    assert int(np.argmax(np.abs(y[0]))) == 3001 + e.latency_samples
    assert abs(y[0, 3001 + 512] - 1.0) < 1e-4


def test_separate_is_identical_for_block_sizes_32_256_4096(model, demo_mix):
    x = demo_mix[:, : 3 * 44100]
    outs = {b: separate(x, 44100, model=model, preset="karaoke", block_size=b) for b in (32, 256, 4096)}
    for b in (32, 256):
        for name in outs[4096]:
            assert np.array_equal(outs[b][name], outs[4096][name]), (b, name)
    # aligned with the input, same length, and the stems sum to the mixture
    assert all(v.shape == x.shape for v in outs[256].values())
    total = sum(outs[256][s] for s in ("vocals", "drums", "bass", "other"))
    assert rel_db(total - x, x) < -90


def test_separate_any_rate_and_channel_count(model, demo_mix):
    import soxr

    x = demo_mix[:, : 2 * 44100]
    x48 = np.ascontiguousarray(soxr.resample(x.T, 44100, 48000, quality="VHQ").T.astype(np.float32))
    out = separate(x48, 48000, model=model)
    total = sum(out.values())
    assert total.shape == x48.shape
    # what resampling alone does to the signal (48k → 44.1k → 48k loses only the band above
    # 20 kHz): the stems must sum to exactly that, so the alignment is right to the sample
    roundtrip = soxr.resample(soxr.resample(x48.T, 48000, 44100, quality="VHQ"), 44100, 48000, quality="VHQ").T
    assert rel_db(total - roundtrip[:, : x48.shape[1]], x48) < -80
    mono = separate(x[0], 44100, model=model)
    assert mono["vocals"].shape == x[0].shape
    three = separate(np.stack([x[0], x[1], x[0]]), 44100, model=model)
    assert three["drums"].shape == (3, x.shape[1])
    np.testing.assert_allclose(three["drums"][2], mono["drums"], atol=1e-6)


def test_mute_solo_console_semantics_and_ramp(model, demo_mix):
    x = demo_mix[:, : 4 * 44100]
    ref = separate(x, 44100, model=model)
    e = Engine(model=model, block_size=256, buses=["main", "cue"])
    L = e.latency_samples
    y = stream(e, x, 256)  # unity everywhere
    e.reset()
    e.mute("vocals")
    e.mute("drums")
    e.solo("bass", bus="cue")
    e.mute("bass", bus="cue")  # solo overrides mute
    e.set_gain("other", -6.0)
    e.reset()  # snap to the new targets: compare with the offline stems without ramps
    y = stream(e, x, 256)
    main = y[0][:, L:]
    want_main = ref["bass"] + 10 ** (-6 / 20) * ref["other"]
    assert rel_db(main - want_main[:, : main.shape[1]], want_main) < -80
    cue = y[1][:, L:]
    assert rel_db(cue - ref["bass"][:, : cue.shape[1]], ref["bass"]) < -80
    assert e.state()["vocals"]["mute"] and e.state("cue")["bass"]["solo"]


def test_gain_changes_ramp_over_at_least_10_ms(model):
    e = Engine(model=model, block_size=256)
    x = np.ones((2, 44100), np.float32) * 0.25  # DC: the stems sum to it exactly
    e.set_master(0.0)
    stream(e, x[:, :22050], 256)
    e.set_master(-120.0)
    y = stream(e, x[:, 22050:], 256)[0, 0]
    fall = np.nonzero(y < 0.25 * 0.999)[0][0]
    silent = np.nonzero(y < 0.25 * 1e-3)[0][0]
    ramp_ms = 1000 * (silent - fall) / 44100
    print(f"gain ramp {ramp_ms:.1f} ms")
    assert ramp_ms >= 10.0
    assert e.ramp_frames * 256 / 44100 >= 0.010


class Exploding:
    """Wraps a separator: raises (or returns NaN) on chosen frames."""

    def __init__(self, sep, bad_frames, how):
        self._sep, self.bad, self.how, self.n = sep, set(bad_frames), how, 0

    def __getattr__(self, name):
        return getattr(self._sep, name)

    def step_spectrum(self, X):  # what the engine calls per frame
        self.n += 1
        if self.n in self.bad:
            if self.how == "raise":
                raise RuntimeError("boom")
            out = self._sep.step_spectrum(X)
            out[0, 0, 0] = np.nan
            return out
        return self._sep.step_spectrum(X)


@pytest.mark.parametrize("how", ["raise", "nan"])
def test_failing_separator_crossfades_to_the_mixture_and_recovers(model, demo_mix, how):
    x = demo_mix[:, : 5 * 44100]
    e = Engine(model=model, block_size=256, retry_seconds=0.5)
    e.mute("vocals")
    e.mute("drums")
    e.reset()
    e.separator = Exploding(e.separator, bad_frames=range(200, 206), how=how)
    y = stream(e, x, 256)[0]
    L = e.latency_samples
    st = e.stats
    assert (st.separator_errors if how == "raise" else st.nonfinite_outputs) >= 1
    assert st.bypass_frames > 0
    assert np.all(np.isfinite(y))
    # during the bypass the output is the mixture itself (delayed)
    mid = (200 + 10) * 256 + L  # a few frames into the bypass, after the ramp
    seg = slice(mid, mid + 20 * 256)
    assert rel_db(y[:, seg] - x[:, seg.start - L : seg.stop - L], x[:, seg.start - L : seg.stop - L]) < -60
    # after the retry the muted stems are gone again: output differs from the mixture
    late = slice(4 * 44100, 5 * 44100 - 1024)
    assert rel_db(y[:, late] - x[:, late.start - L : late.stop - L], x[:, late]) > -20


def test_late_hops_pass_the_mixture_through(model, demo_mix):
    e = Engine(model=model, block_size=256, deadline=1e-9, retry_seconds=0.2)  # every hop is "late"
    stream(e, demo_mix[:, :44100], 256)
    assert e.stats.late_hops >= 1 and e.stats.bypass_frames > 0


def test_bad_blocks_and_controls_get_one_sentence(model):
    e = Engine(model=model, block_size=256)
    with pytest.raises(ValueError, match="block must be float32 shaped"):
        e.process(np.zeros((2, 512), np.float32))
    with pytest.raises(ValueError, match="no stem 'guitar'"):
        e.mute("guitar")
    with pytest.raises(ValueError, match="no bus 'cue'"):
        e.set_gain("vocals", 0.0, bus="cue")
    with pytest.raises(ValueError, match="resample"):
        Engine(model=model, sample_rate=48000)
    y = e.process(np.full((2, 256), np.nan, np.float32))  # non-finite input: zeros, counted
    assert np.all(np.isfinite(y)) and e.stats.nonfinite_input_blocks == 1


def test_a_card_asking_for_extra_input_planes_is_refused_in_one_sentence(tmp_path):
    """The side input plane never shipped (git tag experiments-before-cleanup): the runtime
    computes no planes beyond the channels' magnitudes, so a card that asks for one is refused."""
    import json

    from livedemix.separator import ModelError, Separator
    from tiny_model import copy_committed_model

    path = copy_committed_model("tiny", tmp_path, "planes")
    card = json.loads(path.read_text())
    card["extra_input_planes"] = ["side"]
    path.write_text(json.dumps(card))
    sentence = (
        "model card planes.json asks for extra input planes (extra_input_planes), which livedemix does not "
        "compute (its models read the channels' magnitudes only): use another model"
    )
    for load in (lambda: Separator(path), lambda: Engine(model=path)):
        with pytest.raises(ModelError) as e:
            load()
        assert str(e.value) == sentence


def test_steady_state_allocates_no_arrays(model, demo_mix):
    e = Engine(model=model, block_size=256, buses=["main", "cue"])
    x = demo_mix[:, : 2 * 44100]
    blocks = [np.ascontiguousarray(x[:, s : s + 256]) for s in range(0, x.shape[1] - 256, 256)]
    out = np.empty((2, 2, 256), np.float32)  # the audio path passes `out`: no per-block array
    # Warm up under tracing too. onnxruntime's Python binding keeps ~124-byte objects on some
    # of its calls (seen as 0.1-0.7 per call, varying from process to process): that is
    # onnxruntime's, not a per-block buffer of the engine, so it is measured apart and taken out.
    tracemalloc.start(32)
    for b in blocks[:50]:
        e.process(b, out=out)
    before = tracemalloc.take_snapshot()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for b in blocks[50:]:
        e.process(b, out=out)
    cur, peak = tracemalloc.get_traced_memory()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    ort = tracemalloc.Filter(True, "*onnxruntime*", all_frames=True)
    ort_growth = sum(
        d.size_diff for d in after.filter_traces([ort]).compare_to(before.filter_traces([ort]), "filename")
    )
    ours = sum(
        d.size_diff
        for d in after.filter_traces([tracemalloc.Filter(False, "*onnxruntime*", all_frames=True)]).compare_to(
            before.filter_traces([tracemalloc.Filter(False, "*onnxruntime*", all_frames=True)]), "filename"
        )
        if "tracemalloc" not in d.traceback[0].filename
    )
    print(
        f"{len(blocks) - 50} blocks: growth outside onnxruntime {ours} B (onnxruntime's binding {ort_growth} B), "
        f"peak above start {peak - base} B"
    )
    # The steady path creates only small Python objects (array views, floats). One STFT frame or
    # mixer frame is 8 KiB and one second-bus output frame another 8 KiB, so any per-block
    # buffer would show in the peak; nothing of ours accumulates either.
    assert peak - base - ort_growth < 6144
    assert ours < 1024


def test_mask_power_comes_from_the_call_the_preset_or_the_card_per_mode(model, tmp_path):
    """The card's calibrated power for the engine's mode (factory.calibrate writes it), 2 for a
    mode it has none for; a preset's or the caller's power wins."""
    import json

    from livedemix.presets import load_preset

    card = json.loads(Path(model).read_text())
    card["mask_power"] = {"wiener": 1.0, "anisotropic": 1.5}
    mine = tmp_path / "calibrated.json"
    mine.write_text(json.dumps(card))
    (tmp_path / card["onnx_file"]).write_bytes((Path(model).parent / card["onnx_file"]).read_bytes())
    assert Engine(model=mine, phase="wiener").phase.mask_power == 1.0
    assert Engine(model=mine, phase="anisotropic").phase.mask_power == 1.5
    assert Engine(model=mine, phase="pu-iter").phase.mask_power == 2.0
    assert Engine(model=model, phase="wiener").phase.mask_power == 2.0  # an uncalibrated card
    assert Engine(model=mine, phase="wiener", mask_power=3.0).phase.mask_power == 3.0
    preset = tmp_path / "soft.toml"
    preset.write_text('schema = 1\n[engine]\nphase = "wiener"\nmask_power = 0.75\n')
    assert Engine(model=mine, preset=load_preset(preset)).phase.mask_power == 0.75
    # A preset names shipped models only (docs/SECURITY.md): a card path in it is refused.
    preset.write_text(f'schema = 1\n[engine]\nmodel = "{mine}"\n')
    with pytest.raises(PresetError, match="engine.model"):
        load_preset(preset)


def test_process_returns_a_new_array_unless_out_is_given(model):
    """Kept blocks stay intact (each call returns its own array); with `out`, the engine writes
    there and returns it; a wrong `out` or block is one EngineError sentence."""
    from livedemix.errors import EngineError, LivedemixError

    eng = Engine(model=model, block_size=256)
    rng = np.random.default_rng(3)
    blocks = [rng.standard_normal((2, 256)).astype(np.float32) * 0.1 for _ in range(40)]
    kept = [eng.process(b) for b in blocks]
    eng.reset()
    out = np.empty((1, 2, 256), np.float32)
    for b, k in zip(blocks, kept):
        r = eng.process(b, out=out)
        assert r is out and np.array_equal(out, k)
    assert len({id(k) for k in kept}) == len(kept) and np.abs(kept[-1]).max() > 0
    for bad in (np.empty((1, 2, 128), np.float32), np.empty((1, 2, 256), np.float64), [[0.0] * 256] * 2):
        with pytest.raises(EngineError, match="out must be"):
            eng.process(blocks[0], out=bad)
    for bad in (None, [[0.0] * 256] * 2, np.float32(1.0), np.zeros((2, 256), np.complex64)):
        with pytest.raises(LivedemixError, match="block must be a real float32 array"):
            eng.process(bad)
