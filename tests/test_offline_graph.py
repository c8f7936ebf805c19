"""The offline graph (livedemix.offline_graph): a network that hears the future, used by file
renders only. Chunked with context it equals one pass over the whole song; `separate` uses it
by default and lines its stems up with the input; `--exact` and `--batched` still render the
live model; a card's offline entry is untrusted data like the rest of the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from livedemix.offline import StreamingSeparation, separate
from livedemix.offline_graph import OfflineGraphRunner, has_offline_graph
from livedemix.separator import ModelError, load_card, resolve_model

SR = 44100


def _db(err: np.ndarray, ref: np.ndarray) -> float:
    return 20 * float(np.log10(max(np.linalg.norm(err) / np.linalg.norm(ref), 1e-30)))


def _shipped_copy(tmp_path: Path) -> Path:
    """The shipped model's card and graphs, copied where a test may change them."""
    src = resolve_model(None)
    out = tmp_path / "m"
    out.mkdir()
    for f in src.parent.glob(f"{src.stem}*"):
        shutil.copyfile(f, out / f.name)
    return out / src.name


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    """Stereo tones with onsets: enough structure for the masks to differ from frame to frame."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros((2, t.size), np.float32)
    for k in range(6):
        f, start = rng.uniform(80, 2000), rng.uniform(0, seconds * 0.8)
        env = np.where(t > start, np.exp(-(t - start) * rng.uniform(1, 6)), 0.0)
        x[k % 2] += (0.2 * env * np.sin(2 * np.pi * f * t)).astype(np.float32)
    x += 0.01 * rng.standard_normal(x.shape).astype(np.float32)
    return x


# ---- the shipped model (runtime only) -----------------------------------------------------------


def test_the_shipped_model_renders_files_with_its_offline_graph():
    card = load_card(resolve_model(None))
    assert has_offline_graph(card)
    R = card["offline"]["context_frames"]
    assert R >= 64  # more than the live model's whole lookahead bound: it hears the future
    sep = StreamingSeparation(SR, 2)
    assert sep.render == "offline graph"
    assert sep.latency == StreamingSeparation(SR, 2, exact=True).latency + R * card["stft"]["hop"]
    assert StreamingSeparation(SR, 2, exact=True).render == "streaming"
    assert StreamingSeparation(SR, 2, exact=False).render == "batched"


def test_offline_render_is_aligned_and_sums_to_the_input():
    x = _music(3.0)
    y = separate(x, SR)
    assert all(v.shape == x.shape for v in y.values())
    total = sum(y.values())
    # Wiener masks sum to one, so the stems add up to the input when they are aligned with it
    # (a frame's estimate paired with another frame's mixture would not)
    err = np.linalg.norm(total[:, 2048:-2048] - x[:, 2048:-2048]) / np.linalg.norm(x[:, 2048:-2048])
    assert 20 * np.log10(err) < -60
    live = separate(x, SR, exact=True)
    assert not np.allclose(live["vocals"], y["vocals"], atol=1e-4)  # another network: not the live sound


def test_a_changed_offline_graph_is_refused_in_one_sentence(tmp_path):
    card = _shipped_copy(tmp_path)
    g = card.parent / load_card(card)["offline"]["onnx_file"]
    g.write_bytes(g.read_bytes()[:-10])
    with pytest.raises(ModelError, match="offline graph .* does not match its card") as e:
        separate(_music(0.5), SR, model=card)
    assert "\n" not in str(e.value)
    # the live renders don't need it
    separate(_music(0.5), SR, model=card, exact=True)


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_file": "../default.offline.onnx"},
        {"onnx_file": "/etc/passwd"},
        {"onnx_file": None},
        {"onnx_sha256": "abc"},
        {"context_frames": 0},
        {"context_frames": True},
        {"context_frames": 10**9},
        {"chunk_frames": -1},
        {"inputs": {"mag": ["frames", 2, 10**6]}},
        {"outputs": {"stems": ["frames", 3, 2, 513]}},
    ],
)
def test_hostile_offline_entries_are_one_sentence(tmp_path, change):
    card = _shipped_copy(tmp_path)
    c = json.loads(card.read_text())
    c["offline"].update(change)
    card.write_text(json.dumps(c))
    with pytest.raises(ModelError) as e:
        separate(_music(0.3), SR, model=card)
    assert "\n" not in str(e.value) and "offline" in str(e.value)


def test_chunks_with_context_equal_one_pass_shipped():
    card_path = resolve_model(None)
    card = load_card(card_path)
    rng = np.random.default_rng(1)
    planes = (rng.random((700, card["inputs"]["mag"][1], card["bins"])) ** 3 * 4).astype(np.float32)
    for frames, chunk in ((700, 100), (700, 333), (150, 1)):
        whole = OfflineGraphRunner(card_path, card, chunk_frames=1 << 16).run_all(planes[:frames])  # one call
        got = OfflineGraphRunner(card_path, card, chunk_frames=chunk).run_all(planes[:frames])
        assert _db(got - whole, whole) < -100


# ---- exporting and the torch network (factory tier) ---------------------------------------------


@pytest.mark.factory
def test_offline_graph_is_the_torch_network_and_separate_lines_it_up(tmp_path):
    torch = pytest.importorskip("torch")
    from livedemix.phase import card_mask_power

    from factory.export import add_offline_model, export_step_model
    from factory.model import ModelConfig, WaveNetSeparator
    from factory.train import TorchStft, wiener

    torch.manual_seed(5)
    kw = dict(residual=16, skip=16, hidden=24, dilations=(1, 2, 4, 8), local=4)
    live = WaveNetSeparator(ModelConfig(**kw))
    card = export_step_model(live.eval(), tmp_path, "m", stft=dict(n_fft=1024, hop=256, window="asymmetric"))
    net = WaveNetSeparator(ModelConfig(backward=True, **kw))
    with torch.no_grad():
        net.head2.weight.mul_(8.0)
        net.refiner.out.weight.normal_(0, 0.5)
    with pytest.raises(SystemExit, match="--backward"):
        add_offline_model(live, card)
    add_offline_model(net.eval(), card)
    c = load_card(card)
    assert c["offline"]["context_frames"] == 15

    # the graph, chunked with context, is the torch network over the whole excerpt
    mags = (np.random.default_rng(0).random((200, 2, 513)) ** 3 * 4).astype(np.float32)
    with torch.no_grad():
        whole = net(torch.from_numpy(mags).permute(1, 2, 0).unsqueeze(0))[0].permute(3, 0, 1, 2).numpy()
    for chunk in (7, 64, 512):
        got = OfflineGraphRunner(card, c, chunk).run_all(mags)
        assert _db(got - whole, whole) < -100

    # separate: each frame's masks on that frame's mixture, inverse STFT, lined up with the input
    x = _music(2.0, seed=3)
    y = separate(x, SR, model=card, phase="wiener")
    st = TorchStft(1024, 256, "asymmetric")
    X = st(torch.from_numpy(x))[None]
    with torch.no_grad():
        S = wiener(net(X.abs()), X, card_mask_power(c, "wiener"))[0]
    n = x.shape[1] - SR // 2  # the last frames hear the render's flush (silence), not zeros
    for j, stem in enumerate(c["stems"]):
        ref = st.inverse(S[j], x.shape[1]).numpy()
        err = np.linalg.norm(y[stem][:, :n] - ref[:, :n]) / np.linalg.norm(ref[:, :n])
        assert 20 * np.log10(err) < -60, stem


@pytest.mark.factory
def test_a_backward_model_has_no_streaming_step_and_starts_from_a_causal_one():
    torch = pytest.importorskip("torch")
    from factory.model import ModelConfig, StreamingStep, WaveNetSeparator, with_backward_stack

    kw = dict(residual=8, skip=8, hidden=8, dilations=(1, 2, 4), local=4)
    causal = WaveNetSeparator(ModelConfig(**kw))
    net = WaveNetSeparator(ModelConfig(backward=True, **kw))
    net.load_state_dict(with_backward_stack(causal.state_dict()))
    with pytest.raises(ValueError, match="no streaming step"):
        StreamingStep(net)
    with pytest.raises(ValueError, match="lookahead"):
        ModelConfig(backward=True, lookahead=1, **kw)
    mag = torch.rand(1, 2, 513, 40)
    with torch.no_grad():
        base = net(mag)
        later = mag.clone()
        later[..., 30] += 1.0
        moved = (net(later) - base).abs().amax(dim=(0, 1, 2, 3))
    assert moved[23:30].min() > 0  # frames before the change hear it: the future is in the masks
    assert moved[:23].max() == 0  # but no further back than the stack's reach (1 + 2 + 4 frames)


@pytest.mark.factory
def test_the_line_to_an_offline_graph_takes_a_causal_base_as_its_layers_twice():
    torch = pytest.importorskip("torch")
    from factory.interpolate import interpolate
    from factory.model import ModelConfig, WaveNetSeparator

    kw = dict(residual=8, skip=8, hidden=8, dilations=(1, 2), local=4)
    torch.manual_seed(1)
    base, tuned = WaveNetSeparator(ModelConfig(**kw)), WaveNetSeparator(ModelConfig(backward=True, **kw))
    ck = {
        "base": {"model_config": base.cfg.to_dict(), "state_dict": base.state_dict(), "training": {"steps": 1}},
        "tuned": {"model_config": tuned.cfg.to_dict(), "state_dict": tuned.state_dict(), "training": {"steps": 2}},
    }
    mid = interpolate(ck["base"], ck["tuned"], 0.25)
    assert mid["model_config"]["backward"] is True
    sd, b, t = mid["state_dict"], base.state_dict(), tuned.state_dict()
    for name in ("layers.1.conv.weight", "back_layers.1.conv.weight"):  # both stacks from the base's layers
        want = 0.75 * b[name.removeprefix("back_")] + 0.25 * t[name]
        assert torch.allclose(sd[name], want)
