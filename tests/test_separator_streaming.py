"""Streaming ONNX separator: frame-by-frame onnxruntime equals the PyTorch forward pass on the
whole sequence; the runtime refuses models whose card is missing, stale or mismatched."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from livedemix import dsp
from livedemix.separator import ModelError, Separator

torch = pytest.importorskip("torch", reason="exporting a model needs the train extra (torch)")
from factory.export import export_step_model  # noqa: E402
from factory.model import ModelConfig, WaveNetSeparator  # noqa: E402

pytestmark = pytest.mark.factory

QUALITY = dict(n_fft=1024, hop=256, window="asymmetric")


def random_model(lookahead=0, seed=0, local=0, **refiner):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        residual=16, skip=16, hidden=24, dilations=(1, 2, 4, 8, 1, 2), lookahead=lookahead, local=local, **refiner
    )
    net = WaveNetSeparator(cfg)
    with torch.no_grad():  # make the random model's masks far from 0.5 everywhere
        net.head2.weight.mul_(8.0)
        if local:  # the refiner starts as a no-op (zero last layer): give it weights to check
            net.refiner.out.weight.normal_(0, 0.5)
    return net.eval()


VARIANTS = {
    "la0": dict(lookahead=0),
    "la2": dict(lookahead=2, seed=2),
    "local": dict(local=6, seed=3),
    # three patches of other shapes: a longer feat_state
    "local-patches": dict(local=6, seed=4, local_patches=((7, 4), (17, 1), (1, 6))),
    # the refiner with lookahead: both mag_state and feat_state
    "local-la2": dict(local=6, seed=5, lookahead=2),
}


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
    level = rng.uniform(0.01, 30, (120, 1, 1))
    X = ((rng.standard_normal((120, 2, 513)) + 1j * rng.standard_normal((120, 2, 513))) * level).astype(np.complex64)
    net = nets[variant]
    with torch.no_grad():
        ref = net(torch.from_numpy(X).permute(1, 2, 0)[None].abs())[0].permute(3, 0, 1, 2).numpy()
    sep = Separator(d / f"{variant}.json", stft=dsp.config("quality"), sample_rate=44100)
    mags = sep.inputs_of(X)
    assert mags.shape == (120, 2, 513) and mags.dtype == np.float32
    np.testing.assert_allclose(mags, np.abs(X), rtol=1e-6)
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
    # the engine's per-frame path (|X| taken in place from the spectrum) is the same
    sep.reset()
    per_frame = np.stack([sep.step_spectrum(x).copy() for x in X])
    np.testing.assert_allclose(per_frame, out, rtol=0, atol=1e-5 * np.abs(out).max())


def test_cards_name_no_extra_input_planes(exported):
    d, _ = exported
    for name in VARIANTS:
        card = json.loads((d / f"{name}.json").read_text())
        assert "extra_input_planes" not in card and card["inputs"]["mag"] == [1, 2, 513]
        assert not set(card["architecture"]) & {"side", "local_context", "local_bin_bias", "local_depth"}


def test_refuses_a_card_whose_input_planes_do_not_fit(exported, tmp_path):
    d, _ = exported
    card = json.loads((d / "la0.json").read_text())
    card["inputs"]["mag"] = [1, 3, 513]  # a third input plane that the runtime has nothing to fill with
    shutil.copy(d / "la0.onnx", tmp_path / "la0.onnx")
    (tmp_path / "la0.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="gives 3 input planes for 2 channels"):
        Separator(tmp_path / "la0.json")
