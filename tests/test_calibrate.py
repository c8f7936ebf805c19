"""factory.calibrate: the mask power of each mode measured on held-out songs, written into the
card so that the engine and factory.evaluate use it; bad arguments get one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch", reason="exporting a test model needs the train extra (torch)")
ROOT = Path(__file__).resolve().parents[1]
from livedemix import metrics  # noqa: E402
from livedemix.engine import Engine  # noqa: E402
from tiny_model import export_tiny_model  # noqa: E402

from factory import calibrate, evaluate  # noqa: E402

pytestmark = pytest.mark.factory

SR = 44100
STEMS = ("vocals", "drums", "bass", "other")
DEMO = ROOT / "python" / "livedemix" / "data" / "demo"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two 3-s 'valid' songs cut from the demo song, and a tiny random-init model."""
    root = tmp_path_factory.mktemp("calib")
    stems = np.stack([sf.read(DEMO / f"{s}.flac", dtype="float32", always_2d=True)[0].T for s in STEMS])
    for i, start in enumerate((1.0, 9.0)):
        d = root / "data" / "valid" / f"song{i}"
        d.mkdir(parents=True)
        for j, s in enumerate(STEMS):
            sf.write(d / f"{s}.flac", stems[j, :, int(start * SR) : int((start + 3) * SR)].T, SR, subtype="PCM_16")
    return root, export_tiny_model(root / "model")


def test_calibration_measures_each_power_and_writes_the_best_into_the_card(setup):
    root, card = setup
    before = json.loads(card.read_text())
    r = calibrate.calibrate(card, root / "data", "valid", 2, (1.0, 2.0), ("wiener", "pu-iter"), seconds=2.0, offset=0.5)
    assert r["songs"] == 2 and set(r["table"]) == {"wiener", "pu-iter"}
    for m, row in r["table"].items():
        assert all(np.isfinite(v) for v in row.values())
        assert row[r["best"][m]] == max(row.values())
    # one cell again by hand: the evaluation's reconstruction at that power, plain SDR
    runner = evaluate.CardRunner("x", card, ["wiener"])
    sdrs = []
    for d in sorted((root / "data" / "valid").iterdir()):
        st, sr, _, _ = evaluate.read_excerpt(d, 2.0, 0.5)
        ctx = evaluate.SongContext(st, sr)
        X = ctx.mix_stft(runner.cfg)
        est = evaluate.reconstruct(X, runner.magnitudes(X), runner.cfg, "wiener", ctx.n, 0, 1.0)
        sdrs.append([metrics.sdr(st[j], est[j]) for j in range(4)])
    assert r["table"]["wiener"][1.0] == pytest.approx(float(np.mean(np.mean(sdrs, axis=0))), abs=1e-9)

    calibrate.write_card(card, r)
    after = json.loads(card.read_text())
    assert after["mask_power"] == {m: float(p) for m, p in r["best"].items()}
    assert after["mask_power_calibration"]["split"] == "valid"
    assert {k: v for k, v in after.items() if not k.startswith("mask_power")} == before
    assert Engine(model=card, phase="wiener").phase.mask_power == r["best"]["wiener"]
    assert evaluate.CardRunner("x", card, ["pu-iter"]).mask_power("pu-iter") == r["best"]["pu-iter"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--powers", "1,0"], "--powers '1,0' must be numbers in [0.25, 8]"),
        (["--modes", "wiener,magic"], "unknown mode magic; use some of wiener, pu-iter, anisotropic"),
        (["--split", "train"], "no 'train' split under"),
    ],
)
def test_bad_arguments_get_one_sentence(setup, capsys, extra, message):
    root, card = setup
    assert calibrate.main(["--data", str(root / "data"), "--model", str(card), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err
