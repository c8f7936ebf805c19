"""Streaming ONNX separator: frame-by-frame onnxruntime equals the PyTorch forward pass on the
whole sequence; the runtime refuses models whose card is missing, stale or mismatched."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from livedemix import dsp
from livedemix.separator import ModelError, Separator

torch = pytest.importorskip("torch", reason="exporting a model needs the train extra (torch)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.export import export_step_model  # noqa: E402
from engine.model import ModelConfig, WaveNetSeparator  # noqa: E402

QUALITY = dict(n_fft=1024, hop=256, window="asymmetric")


def random_model(lookahead=0, seed=0, local=0, **refiner):
    torch.manual_seed(seed)
    cfg = ModelConfig(residual=16, skip=16, hidden=24, dilations=(1, 2, 4, 8, 1, 2), lookahead=lookahead, local=local,
                      **refiner)
    net = WaveNetSeparator(cfg)
    with torch.no_grad():  # make the random model's masks far from 0.5 everywhere
        net.head2.weight.mul_(8.0)
        if local:  # the refiner starts as a no-op (zero last layer): give it weights to check
            net.refiner.out.weight.normal_(0, 0.5)
            if net.refiner.bin_bias is not None:
                net.refiner.bin_bias.normal_(0, 0.5)
    return net.eval()


VARIANTS = {"la0": dict(lookahead=0), "la2": dict(lookahead=2, seed=2), "local": dict(local=6, seed=3),
            # every refiner option at once: three patches, the frame context, bin bias, 2 layers
            "local-full": dict(local=6, seed=4, local_patches=((7, 4), (17, 1), (1, 6)), local_context=True, local_bin_bias=True,
                               local_depth=2)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    nets = {}
    for name, kw in VARIANTS.items():
        nets[name] = random_model(**kw)
        export_step_model(nets[name], d, name, stft=QUALITY)
    return d, nets


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_frame_by_frame_onnx_equals_pytorch_whole_sequence(exported, variant):
    d, nets = exported
    lookahead = VARIANTS[variant].get("lookahead", 0)
    rng = np.random.default_rng(1)
    mags = (np.abs(rng.standard_normal((120, 2, 513))) * rng.uniform(0.01, 30, (120, 1, 1))).astype(np.float32)
    with torch.no_grad():
        ref = nets[variant](torch.from_numpy(mags).permute(1, 2, 0)[None])[0].permute(3, 0, 1, 2).numpy()
    sep = Separator(d / f"{variant}.json", stft=dsp.config("quality"), sample_rate=44100)
    out = sep.run(mags)
    L = lookahead
    got = out[L:]  # row t + L holds frame t
    want = ref[: len(ref) - L]
    err = np.abs(got - want).max() / max(1e-6, np.abs(want).max())
    print(f"{variant}: max |onnx stream - torch batch| / max = {err:.2e}")
    assert err < 1e-4
    # reuse after reset gives the same stream (no state survives between songs)
    sep.reset()
    np.testing.assert_array_equal(sep.run(mags), out)


def test_card_describes_the_model(exported):
    d, nets = exported
    card = json.loads((d / "la0.json").read_text())
    assert card["stft"] == QUALITY and card["sample_rate"] == 44100
    assert card["stems"] == ["vocals", "drums", "bass", "other"]
    assert card["state_pairs"] == {"conv_state": "conv_state_out"}
    assert card["inputs"]["conv_state"] == [1, sum((1, 2, 4, 8, 1, 2)), 16]
    assert card["parameters"] == nets["la0"].parameter_count() and card["flops_per_frame"] > card["parameters"]
    assert len(card["onnx_sha256"]) == 64


def test_refuses_missing_card(exported, tmp_path):
    d, _ = exported
    shutil.copy(d / "la0.onnx", tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="card .* is missing"):
        Separator(tmp_path / "m.onnx")


def test_refuses_changed_model_file(exported, tmp_path):
    d, _ = exported
    shutil.copy(d / "la0.json", tmp_path / "la0.json")
    data = bytearray((d / "la0.onnx").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "la0.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        Separator(tmp_path / "la0.json")


def test_refuses_mismatched_stft_and_rate(exported):
    d, _ = exported
    with pytest.raises(ModelError, match=r"different STFT \(hop 128 vs the model's 256"):
        Separator(d / "la0.json", stft=dsp.config("low-latency"))
    with pytest.raises(ModelError, match="runs at 44100 Hz, not 48000 Hz"):
        Separator(d / "la0.json", sample_rate=48000)


def test_unknown_model_name():
    with pytest.raises(ModelError, match="not found"):
        Separator("no-such-model")
