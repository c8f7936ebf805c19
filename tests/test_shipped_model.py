"""The shipped default model: it streams exactly like its PyTorch network, it separates the
demo song, and muting works as a singer needs it to (karaoke)."""

from __future__ import annotations

import json
from pathlib import Path

import livedemix
import numpy as np
import pytest
import soundfile as sf
from livedemix import dsp
from livedemix.engine import Engine
from livedemix.metrics import bss_eval, sdr
from livedemix.offline import separate
from livedemix.separator import Separator

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "python" / "livedemix" / "data" / "demo"
CARD = Path(livedemix.__file__).parent / "models" / "default.json"
CHECKPOINT = ROOT / "factory" / "checkpoints" / "default.pt"
STEMS = ("vocals", "drums", "bass", "other")


@pytest.fixture(scope="module")
def demo():
    mix = sf.read(DEMO / "mixture.flac", dtype="float32", always_2d=True)[0].T
    stems = {s: sf.read(DEMO / f"{s}.flac", dtype="float32", always_2d=True)[0].T for s in STEMS}
    return np.ascontiguousarray(mix), stems


def test_the_default_model_ships_with_a_complete_card():
    card = json.loads(CARD.read_text())
    onnx = CARD.parent / card["onnx_file"]
    assert onnx.stat().st_size < 20e6
    assert card["stft"] == {"n_fft": 1024, "hop": 256, "window": "asymmetric"}
    assert card["default_phase"] in ("wiener", "pu-iter", "anisotropic")
    for key in ("parameters", "flops_per_frame", "training", "scores", "state_pairs", "lookahead_frames"):
        assert key in card, key
    # the recipe fits "≤ 10 hours of wall time on this 2-core CPU", all stages together
    # (older cards: 1 thread, CPU = wall)
    t = card["training"]
    assert t.get("wall_minutes", t["cpu_minutes"]) <= 600


@pytest.mark.factory
def test_shipped_model_streams_like_its_pytorch_network(demo):
    torch = pytest.importorskip("torch", reason="the PyTorch side needs the train extra")
    from factory.model import ModelConfig, WaveNetSeparator

    ck = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    net = WaveNetSeparator(ModelConfig.from_dict(ck["model_config"]))
    net.load_state_dict(ck["state_dict"])
    net.eval()
    X = dsp.stft(demo[0][:, : 3 * 44100], dsp.config("quality"))  # (T, C, F)
    mags = np.abs(X).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(mags).permute(1, 2, 0)[None])[0].permute(3, 0, 1, 2).numpy()
    got = Separator(CARD).run(mags)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"shipped model: max |ONNX stream - torch whole| / max = {err:.2e}")
    assert err < 1e-4


def test_default_model_separates_the_demo_song(demo):
    mix, stems = demo
    est = separate(mix, 44100)
    gains = {s: sdr(stems[s], est[s]) - sdr(stems[s], mix) for s in STEMS}
    print("SDR improvement over the mixture per stem (dB):", {k: round(v, 2) for k, v in gains.items()})
    assert all(g > 3.0 for g in gains.values())


def _karaoke_measure():
    from factory import karaoke
    from factory.evaluate import CardRunner

    return karaoke, CardRunner


@pytest.fixture(scope="module")
def karaoke(demo):
    """The karaoke preset on the demo song, measured exactly (factory/karaoke.py): in the Wiener
    mode the main bus is G·X bin by bin, so stem j's part of it is ISTFT(G·S_j), and the parts
    must add up to what the engine itself rendered."""
    measure, CardRunner = _karaoke_measure()
    mix, stems = demo
    est = separate(mix, 44100, preset="karaoke")
    eng = Engine(preset="karaoke")
    settings = eng.describe()
    assert settings["phase"] == "wiener", "the exact measure holds for the Wiener mode"
    g = eng.gain_matrix()[0]  # main bus, per stem
    runner = CardRunner("model", CARD, ["wiener"])
    _, w = measure.model_weights(runner, mix, settings["mask_power"])
    refs = np.stack([stems[s] for s in STEMS])
    parts = measure.stem_parts(
        np.einsum("j,tjcf->tcf", g, w), measure.stem_spectra(refs, runner.cfg), runner.cfg, mix.shape[1]
    )
    mismatch = np.sum((parts.sum(axis=0) - est["mix"]) ** 2) / np.sum(est["mix"] ** 2)
    change = measure.change_db(parts, refs)
    sir_vocals = float(bss_eval(refs, np.stack([est[s] for s in STEMS]))["SIR"][0])
    print(
        f"karaoke: stems' change in the main bus { {s: round(float(c), 2) for s, c in zip(STEMS, change)} } dB; "
        f"separator's vocals SIR {sir_vocals:.2f} dB; parts vs the engine's output {10 * np.log10(mismatch):.0f} dB"
    )
    return change, sir_vocals, mismatch


@pytest.mark.factory
def test_karaoke_measure_adds_up_to_the_engines_output(karaoke):
    """What the exact karaoke measure (factory.karaoke, factory.realval.karaoke_residual) stands on:
    the stems' parts are the engine's output, split."""
    _, _, mismatch = karaoke
    assert 10 * np.log10(mismatch) < -80


# The karaoke checks as people hear them (the karaoke mix against the true accompaniment, and the
# vocals it leaves next to the ideal ratio mask) are in tests/test_karaoke_real.py.
