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
            if net.refiner.bin_bias is not None:
                net.refiner.bin_bias.normal_(0, 0.5)
    return net.eval()


VARIANTS = {
    "la0": dict(lookahead=0),
    "la2": dict(lookahead=2, seed=2),
    "local": dict(local=6, seed=3),
    # every refiner option at once: three patches, the frame context, bin bias, 2 layers
    "local-full": dict(
        local=6, seed=4, local_patches=((7, 4), (17, 1), (1, 6)), local_context=True, local_bin_bias=True, local_depth=2
    ),
    # the side signal as a third input plane, with the refiner (feat_state) and with lookahead (mag_state)
    "side": dict(local=6, seed=5, side=True),
    "side-la2": dict(lookahead=2, seed=6, side=True),
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
        ref = net(net.input_magnitudes(torch.from_numpy(X).permute(1, 2, 0)[None]))[0].permute(3, 0, 1, 2).numpy()
    sep = Separator(d / f"{variant}.json", stft=dsp.config("quality"), sample_rate=44100)
    mags = sep.inputs_of(X)
    assert mags.shape == (120, net.cfg.in_channels, 513)
    with torch.no_grad():  # the runtime's input planes are the training's
        want_in = net.input_magnitudes(torch.from_numpy(X).permute(1, 2, 0)[None])[0].permute(2, 0, 1).numpy()
    np.testing.assert_allclose(mags, want_in, rtol=1e-5, atol=1e-5 * np.abs(want_in).max())
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
    # the engine's per-frame path (input planes computed in place from the spectrum) is the same
    sep.reset()
    per_frame = np.stack([sep.step_spectrum(x).copy() for x in X])
    np.testing.assert_allclose(per_frame, out, rtol=0, atol=1e-5 * np.abs(out).max())


def test_side_input_starts_as_the_model_it_widens():
    """`--side --init-from` a model without it: the side plane's weights start at zero, so the
    widened network's output equals the original's (to float rounding) whatever the side signal is."""
    base = random_model(local=6, seed=7)
    cfg = ModelConfig.from_dict(dict(base.cfg.to_dict(), side=True))
    wide = WaveNetSeparator(cfg)
    wide.load_state_dict(wide.widen_input(base.state_dict()))
    rng = np.random.default_rng(2)
    X = torch.from_numpy(
        (rng.standard_normal((1, 2, 513, 30)) + 1j * rng.standard_normal((1, 2, 513, 30))).astype(np.complex64)
    )
    wide.init_input_stats(wide.input_magnitudes(X), planes=slice(2, None))  # only the side plane's affine moves
    with torch.no_grad():
        # equal up to float rounding (the zero block changes how the matrix product sums)
        ref = base(X.abs())
        torch.testing.assert_close(
            wide.eval()(wide.input_magnitudes(X)), ref, rtol=0, atol=1e-6 * float(ref.abs().max())
        )
        wide.inp.weight[:, 2 * 513 :].normal_(0, 0.1)  # and the side plane does reach the output once trained
        assert (wide(wide.input_magnitudes(X)) - base(X.abs())).abs().max() > 1e-3
    with pytest.raises(ValueError, match="does not widen"):
        wide.widen_input(dict(base.state_dict(), **{"head1.weight": torch.zeros(3, 3, 1)}))


def test_card_names_the_extra_input_planes(exported):
    d, _ = exported
    card = json.loads((d / "side.json").read_text())
    assert card["extra_input_planes"] == ["side"] and card["inputs"]["mag"] == [1, 3, 513]
    assert card["inputs"]["feat_state"][1] == 3 and card["outputs"]["stems"] == [1, 4, 2, 513]
    assert "side signal" in card["feature"]
    assert "extra_input_planes" not in json.loads((d / "la0.json").read_text())


def test_refuses_a_card_whose_input_planes_do_not_fit(exported, tmp_path):
    d, _ = exported
    card = json.loads((d / "side.json").read_text())
    del card["extra_input_planes"]  # three input planes, but no side signal: the runtime can't fill the third
    shutil.copy(d / "side.onnx", tmp_path / "side.onnx")
    (tmp_path / "side.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="3 input planes for 2 channels and 0 extra plane"):
        Separator(tmp_path / "side.json")
    card["extra_input_planes"] = ["stereo_width"]
    (tmp_path / "side.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"input planes \['stereo_width'\] that this livedemix does not compute"):
        Separator(tmp_path / "side.json")
