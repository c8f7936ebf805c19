"""factory.evaluate end to end on a tiny stems folder: the oracle beats the mixture, the report
files are written (the Markdown section between its markers, replaced and never duplicated),
the evaluation's fast path equals the product's offline path, its BSS Eval equals museval's,
and --set-default-phase edits only the card's default_phase and scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch", reason="exporting a model needs the train extra (torch)")
pytest.importorskip("museval", reason="BSS Eval needs museval")
from livedemix.separator import Separator  # noqa: E402

from factory import evaluate  # noqa: E402
from factory.export import export_step_model  # noqa: E402
from factory.model import ModelConfig, WaveNetSeparator  # noqa: E402

pytestmark = pytest.mark.factory

SR = 44100
STEMS = ("vocals", "drums", "bass", "other")
DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo"
QUALITY = dict(n_fft=1024, hop=256, window="asymmetric")
DOC = "# Evaluation\n\nSome text that must survive.\n\n## Phase recovery\n\n| a | b |\n| --- | --- |\n"


def demo_stems() -> np.ndarray:
    return np.stack([sf.read(DEMO / f"{s}.flac", dtype="float32", always_2d=True)[0].T for s in STEMS])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two 4-s songs (excerpts of the demo song; the second shifted by 6.3 s, channels swapped,
    with silent vocals) and a tiny random-init WaveNet exported as a card and saved as a
    training checkpoint."""
    root = tmp_path_factory.mktemp("eval")
    stems = demo_stems()
    n = 4 * SR
    songs = {
        "song_a": stems[:, :, 2 * SR : 2 * SR + n],
        "song_b": stems[:, ::-1, int(8.3 * SR) : int(8.3 * SR) + n].copy(),
    }
    songs["song_b"][0] = 0.0
    for name, st in songs.items():
        d = root / "data" / "test" / name
        d.mkdir(parents=True)
        for j, s in enumerate(STEMS):
            sf.write(d / f"{s}.flac", st[j].T, SR, subtype="PCM_16")
        sf.write(d / "mixture.flac", st.sum(0).T, SR, subtype="PCM_16")
    torch.manual_seed(0)
    cfg = ModelConfig(residual=16, skip=16, hidden=24, dilations=(1, 2, 4, 8, 1, 2))
    net = WaveNetSeparator(cfg).eval()
    with torch.no_grad():  # masks far from 0.5: a random model that still separates unevenly
        net.head2.weight.mul_(8.0)
    card = export_step_model(net, root / "models", "tiny", stft=QUALITY, training={"steps": 0, "cpu_minutes": 0.0})
    la2 = WaveNetSeparator(
        ModelConfig(residual=16, skip=16, hidden=24, dilations=(1, 2, 4, 8, 1, 2), lookahead=2)
    ).eval()
    with torch.no_grad():
        la2.head2.weight.mul_(8.0)
    export_step_model(la2, root / "models", "la2", stft=QUALITY)
    ckpt = root / "tiny.pt"
    torch.save(
        {
            "model_config": cfg.to_dict(),
            "state_dict": net.state_dict(),
            "stft": QUALITY,
            "training": {"steps": 0, "cpu_minutes": 0.0, "train_songs": 0},
            "step": 0,
        },
        ckpt,
    )
    return root, card, ckpt


def run(root, card, ckpt, extra=()):
    argv = [
        "--data",
        str(root / "data"),
        "--split",
        "test",
        "--songs",
        "2",
        "--seconds",
        "3",
        "--offset-seconds",
        "0.5",
        "--model",
        f"tiny={card}",
        "--peer",
        f"tinypt={ckpt}",
        "--peer-modes",
        "wiener",
        "--check-seconds",
        "2",
        "--out",
        str(root / "out" / "eval.json"),
        "--markdown",
        str(root / "EVALUATION.md"),
        *extra,
    ]
    assert evaluate.main(argv) == 0
    return json.loads((root / "out" / "eval.json").read_text())


def test_evaluation_end_to_end(setup):
    root, card, ckpt = setup
    (root / "EVALUATION.md").write_text(DOC)
    card_before = json.loads(Path(card).read_text())
    report = run(root, card, ckpt, ["--set-default-phase", str(card)])

    methods = report["methods"]
    assert methods == ["mixture", "IRM oracle", "tiny/wiener", "tiny/pu-iter", "tiny/anisotropic", "tinypt/wiener"]
    summ = report["summary"]
    for stem in STEMS:
        assert summ["IRM oracle"]["sdr"][stem] > summ["mixture"]["sdr"][stem] + 3, stem
        assert summ["IRM oracle"]["SDR"][stem] > summ["mixture"]["SDR"][stem], stem
    assert summ["mixture"]["irm_share"] == 0.0 and summ["IRM oracle"]["irm_share"] == pytest.approx(1.0)
    # the silent vocals of song_b are skipped, and only they
    assert report["data"]["skipped"] == {"vocals": 1, "drums": 0, "bass": 0, "other": 0}
    assert report["songs"][1]["scores"]["IRM oracle"]["vocals"] is None
    assert summ["IRM oracle"]["songs_scored"] == {"vocals": 1, "drums": 2, "bass": 2, "other": 2}
    # the excerpts: 3 s from 0.5 s
    assert [s["start_s"] for s in report["songs"]] == [0.5, 0.5] and report["data"]["song_seconds"] == 6.0
    # the torch checkpoint of the same network scores what its ONNX export scores
    for stem in STEMS:
        assert summ["tinypt/wiener"]["sdr"][stem] == pytest.approx(summ["tiny/wiener"]["sdr"][stem], abs=1e-3)
    # the evaluation's path equals the product's (Engine, block by block) on the first song
    assert report["product_path_check"]["tiny"]["relative_difference"] < 1e-4
    # BSS Eval here equals museval.evaluate's
    assert report["bss_check"]["max_abs_difference_db"] < 1e-4
    assert set(report["timing"]["per_method_per_song_second"]) == set(methods)

    # Markdown: the section is appended once after the untouched document
    text = (root / "EVALUATION.md").read_text()
    assert text.startswith(DOC)
    assert text.count(evaluate.MARK_START) == 1 and text.count(evaluate.MARK_END) == 1
    assert "| IRM oracle |" in text and "share of IRM gain" in text and "python -m factory.evaluate" in text
    assert "| tiny | ONNX model card |" in text

    # the card: best mode written, scores recorded, every other field unchanged, still loads
    card_after = json.loads(Path(card).read_text())
    best = max(("wiener", "pu-iter", "anisotropic"), key=lambda m: summ[f"tiny/{m}"]["sdr"]["mean"])
    assert card_after["default_phase"] == best
    assert card_after["scores"]["test"]["phase"] == best
    assert card_after["scores"]["test"]["sdr"]["mean"] == pytest.approx(summ[f"tiny/{best}"]["sdr"]["mean"])
    for k, v in card_before.items():
        if k not in ("default_phase", "scores"):
            assert card_after[k] == v, k
    Separator(card)  # the ONNX hash still matches

    # a second run (and text after the section) leaves one section, replaced, and the rest intact
    (root / "EVALUATION.md").write_text(text + "\n## After\n\nmore text\n")
    run(root, card, ckpt, ["--no-bss", "--modes", "wiener", "--check-seconds", "0"])
    text2 = (root / "EVALUATION.md").read_text()
    assert text2.count(evaluate.MARK_START) == 1 and text2.count(evaluate.MARK_END) == 1
    assert text2.startswith(DOC) and text2.endswith("\n## After\n\nmore text\n")
    assert "tiny/pu-iter" not in text2 and "BSS Eval not computed" in text2


@pytest.mark.parametrize("model,mode", [("tiny", "pu-iter"), ("tiny", "anisotropic"), ("la2", "pu-iter")])
def test_fast_path_equals_product_path(setup, model, mode):
    """Separator.run + PhaseRecovery.process_stft + istft == livedemix.offline.separate (the
    Engine), also for a model with lookahead (the phase recovery then starts with L silent frames)."""
    root, _, _ = setup
    audio = demo_stems().sum(0)[:, 5 * SR : 8 * SR]
    err = evaluate.product_path_check(root / "models" / f"{model}.json", audio, mode)
    print(f"{model}/{mode}: relative difference fast path vs Engine: {err:.2e}")
    assert err < 1e-4


def test_bss_eval_equals_museval():
    """BssEvalV4 == museval's bss_eval v4 (shorter filters than the default 512 taps to keep the
    test fast; the end-to-end test compares with museval.evaluate itself), including a window
    where a reference is silent (NaN for every stem there)."""
    from museval import metrics

    rng = np.random.default_rng(0)
    ref = demo_stems()[:, :, 3 * SR : 6 * SR].astype(np.float64)
    ref[1, :, SR : 2 * SR] = 0.0  # drums silent in the second window
    est = ref + 0.3 * rng.standard_normal(ref.shape) * ref.std(axis=(1, 2), keepdims=True)
    est[:, :, : SR // 2] += 0.2 * ref[::-1, :, : SR // 2]  # some interference
    ours = evaluate.BssEvalV4(ref, SR, SR, filters_len=128)(est)
    want = metrics.bss_eval(
        np.moveaxis(ref, 1, 2),
        np.moveaxis(est, 1, 2),
        window=SR,
        hop=SR,
        filters_len=128,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    assert np.isnan(want[0][:, 1]).all() and np.isfinite(want[0][:, [0, 2]]).all()
    for k, w in zip(("SDR", "ISR", "SIR", "SAR"), want):
        np.testing.assert_allclose(ours[k], w, atol=1e-6, err_msg=k)


def test_write_markdown_refuses_one_marker(tmp_path):
    p = tmp_path / "E.md"
    p.write_text("x\n" + evaluate.MARK_START + "\n")
    with pytest.raises(SystemExit, match="only one of the markers"):
        evaluate.write_markdown(p, evaluate.MARK_START + "\nnew\n" + evaluate.MARK_END + "\n")
    assert p.read_text() == "x\n" + evaluate.MARK_START + "\n"
