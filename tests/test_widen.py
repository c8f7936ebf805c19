"""factory.widen: a wider network that computes exactly what the trained one did, whose new
weights all train, and whose checkpoint the trainer and the exporter take as is."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
from factory import widen as wd  # noqa: E402
from factory.model import ModelConfig, StreamingStep, WaveNetSeparator  # noqa: E402

pytestmark = pytest.mark.factory


def _trained_like(seed: int = 0) -> dict:
    """A small network with every weight random (as after training: no zero corner to hide in)."""
    cfg = ModelConfig(bins=33, residual=8, skip=6, hidden=10, dilations=(1, 2, 4, 1), local=4)
    torch.manual_seed(seed)
    net = WaveNetSeparator(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return {"model_config": cfg.to_dict(), "state_dict": net.state_dict(), "training": {"steps": 5}, "step": 5}


def _net(ck: dict) -> WaveNetSeparator:
    net = WaveNetSeparator(ModelConfig.from_dict(ck["model_config"]))
    net.load_state_dict(ck["state_dict"])
    return net


def test_widened_network_computes_the_same():
    ck = _trained_like()
    wide = wd.widen(ck, residual=12, hidden=16)
    assert wide["model_config"]["residual"] == 12 and wide["model_config"]["hidden"] == 16
    x = torch.rand(2, 2, 33, 40) * 4
    with torch.no_grad():
        assert torch.equal(_net(ck)(x), _net(wide)(x))
    # the streaming step built from it too (what export turns into ONNX)
    step = StreamingStep(_net(wide))
    states = step.initial_state()
    with torch.no_grad():
        full = _net(ck)(x[:1])
        for t in range(x.shape[-1]):
            y, *states = step(x[:1, ..., t], *states)
            assert torch.allclose(y, full[..., t], atol=1e-5)
    assert wide["training"]["widened"]["from"] == {"residual": 8, "hidden": 10}


def test_every_new_weight_trains():
    """After two optimiser steps every new weight has moved (a unit that is zero on both its
    input and output side would never get a gradient)."""
    ck = _trained_like()
    wide = wd.widen(ck, residual=12, hidden=16)
    net = _net(wide)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x = torch.rand(4, 2, 33, 40) * 4
    target = torch.rand(4, 4, 2, 33, 40) * x.unsqueeze(1)
    for _ in range(2):
        opt.zero_grad()
        (net(x) - target).abs().mean().backward()
        opt.step()
    after = net.state_dict()
    for name, rows, cols in (
        ("inp.weight", slice(8, 12), slice(None)),
        ("layers.1.res.weight", slice(8, 12), slice(None)),
        ("layers.1.res.weight", slice(0, 8), slice(8, 12)),
        ("layers.1.skip.weight", slice(None), slice(8, 12)),
        ("head2.weight", slice(None), slice(10, 16)),
    ):
        moved = (after[name][rows, cols] - before[name][rows, cols]).abs()
        assert (moved > 0).float().mean() > 0.9, name


def test_same_seed_widens_alike_and_shrinking_is_refused():
    a, b = wd.widen(_trained_like(0), 12, 16, seed=3), wd.widen(_trained_like(0), 12, 16, seed=3)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    with pytest.raises(ValueError, match="can only grow"):
        wd.widen(_trained_like(), residual=4, hidden=16)


def test_cli_writes_a_checkpoint_train_can_start_from(tmp_path):
    src, out = tmp_path / "in.pt", tmp_path / "wide.pt"
    torch.save(_trained_like(), src)
    assert wd.main(["--checkpoint", str(src), "--residual", "12", "--hidden", "16", "--out", str(out)]) == 0
    ck = torch.load(out, weights_only=False)
    assert ck["training"]["widened"]["checkpoint"] == str(src)
    _net(ck)  # loads into the config it records
    with pytest.raises(SystemExit):
        wd.main(["--checkpoint", str(src), "--residual", "4", "--hidden", "16", "--out", str(out)])
