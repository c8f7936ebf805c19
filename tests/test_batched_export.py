"""The sequence graph exported beside the streaming step (factory/export.py) is the same
function for every kind of model: with lookahead, with the local refiner, in chunks of any
length with the state carried over (factory tier: exports with torch)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.factory

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "kw",
    [dict(lookahead=2), dict(local=8), dict(local=8, lookahead=2), dict()],
    ids=["lookahead", "refiner", "refiner-lookahead", "plain"],
)
def test_sequence_graph_equals_step_graph(kw, tmp_path):
    from livedemix.batched import SequenceRunner
    from livedemix.separator import Separator

    from factory.export import export_step_model
    from factory.model import ModelConfig, WaveNetSeparator

    torch.manual_seed(3)
    net = WaveNetSeparator(ModelConfig(residual=16, skip=16, hidden=24, dilations=(1, 2, 4, 8), **kw))
    with torch.no_grad():
        net.head2.weight.mul_(8.0)
        if net.refiner is not None:  # the refiner's last layer starts at zero: give it weights
            net.refiner.out.weight.normal_(0, 0.5)
    card = export_step_model(net.eval(), tmp_path, "m", stft=dict(n_fft=1024, hop=256, window="asymmetric"))
    sep = Separator(card)
    mags = (np.random.default_rng(0).random((90, sep.input_planes, sep.bins)) ** 3 * 4).astype(np.float32)
    ref = sep.run(mags)
    runner = SequenceRunner(sep, chunk_frames=16)
    got = np.concatenate([runner.run(mags[a:b]) for a, b in ((0, 1), (1, 5), (5, 40), (40, 90))])
    err = 20 * np.log10(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    print(f"{kw}: sequence vs step {err:.1f} dB")
    assert err < -110
    # and the torch network over the whole excerpt (the reference both graphs were cut from)
    with torch.no_grad():
        whole = net(torch.from_numpy(mags).permute(1, 2, 0).unsqueeze(0))[0].permute(3, 0, 1, 2).numpy()
    L = net.cfg.lookahead
    if L:  # the stream emits frame t's estimate at row t + L
        whole, got = whole[: len(mags) - L], got[L:]
    assert 20 * np.log10(np.linalg.norm(got - whole) / np.linalg.norm(whole)) < -100
