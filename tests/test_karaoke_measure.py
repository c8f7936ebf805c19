"""factory.karaoke: what muting a stem takes out of the mix, split exactly among the true stems
(the parts add up to what the engine renders, also for a model with lookahead), and its CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch", reason="exporting a test model needs the train extra (torch)")
ROOT = Path(__file__).resolve().parents[1]
from livedemix import dsp  # noqa: E402
from livedemix.engine import Engine  # noqa: E402
from livedemix.offline import separate  # noqa: E402
from livedemix.presets import load_preset  # noqa: E402
from tiny_model import export_tiny_model  # noqa: E402

from factory import karaoke  # noqa: E402
from factory.evaluate import CardRunner  # noqa: E402

pytestmark = pytest.mark.factory

SR = 44100
STEMS = ("vocals", "drums", "bass", "other")
CFG = dsp.config("quality")


def _tones(seconds=2.0, freqs=(1760.0, 110.0, 55.0, 440.0)):
    """Four stems, each one steady tone far from the others in frequency (stereo)."""
    t = np.arange(int(seconds * SR)) / SR
    return np.stack(
        [np.stack([0.2 * np.sin(2 * np.pi * f * t), 0.15 * np.sin(2 * np.pi * f * t + 0.3)]) for f in freqs]
    ).astype(np.float32)


def test_mask_weights_share_every_bin_and_split_silence_equally():
    V = np.abs(np.random.default_rng(0).normal(size=(5, 4, 2, 7))).astype(np.float32)
    V[2, :, 0, 3] = 0
    for p in (1.0, 2.0, 4.0):
        w = karaoke.mask_weights(V, p)
        assert np.allclose(w.sum(axis=1), 1.0)
        assert np.allclose(w[2, :, 0, 3], 0.25)
    assert np.allclose(karaoke.mask_weights(V, 2.0)[0, 0], V[0, 0] ** 2 / (V[0] ** 2).sum(axis=0))


def test_parts_add_up_to_the_masked_mixture():
    stems = _tones() + np.random.default_rng(1).normal(scale=0.01, size=(4, 2, 2 * SR)).astype(np.float32)
    X = dsp.stft(np.ascontiguousarray(stems.sum(axis=0)), CFG)
    gain = np.random.default_rng(2).uniform(size=X.shape)
    parts = karaoke.stem_parts(gain, karaoke.stem_spectra(stems, CFG), CFG, stems.shape[-1])
    whole = dsp.istft((gain * X).astype(np.complex64), CFG, stems.shape[-1])
    assert np.sum((parts.sum(axis=0) - whole) ** 2) / np.sum(whole**2) < 1e-10


def test_oracle_masks_mute_a_stem_that_shares_no_bins():
    stems = _tones()
    X = dsp.stft(np.ascontiguousarray(stems.sum(axis=0)), CFG)
    r = karaoke.mute_check(stems, X, karaoke.oracle_weights(karaoke.stem_spectra(stems, CFG), 2.0), CFG, muted=0)
    assert r["drop_db"] > 30  # the 1760 Hz tone is gone ...
    assert r["band_db"] < 0.1  # ... and the other tones are untouched
    assert np.isnan(r["sir_db"])  # no BSS Eval asked for
    assert karaoke.passes(dict(r, sir_db=20.0)) == (True, True)
    assert karaoke.passes(dict(r, sir_db=r["drop_db"] + 1, band_db=1.0)) == (False, False)


@pytest.mark.parametrize("lookahead", [0, 1])
def test_model_weights_pair_frames_as_the_engine_does(tmp_path, lookahead):
    """The exact split of the engine's own karaoke output, for a model without and with lookahead."""
    card = export_tiny_model(tmp_path, lookahead=lookahead)
    stems = _tones(1.5) + np.random.default_rng(3).normal(scale=0.02, size=(4, 2, int(1.5 * SR))).astype(np.float32)
    mix = np.ascontiguousarray(stems.sum(axis=0))
    preset = load_preset("karaoke")
    out = separate(mix, SR, model=card, preset=preset, phase="wiener")["mix"]
    eng = Engine(model=card, preset=preset, phase="wiener")
    g, power = eng.gain_matrix()[0], eng.describe()["mask_power"]
    runner = CardRunner("tiny", card, ["wiener"])
    _, w = karaoke.model_weights(runner, mix, power)
    parts = karaoke.stem_parts(
        np.einsum("j,tjcf->tcf", g, w), karaoke.stem_spectra(stems, runner.cfg), runner.cfg, mix.shape[1]
    )
    assert np.sum((parts.sum(axis=0) - out) ** 2) / np.sum(out**2) < 1e-8


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "factory.karaoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_cli_runs_on_corpus_songs_and_prints_the_table(tmp_path):
    rng = np.random.default_rng(4)
    for i in range(2):
        d = tmp_path / "valid" / f"song{i}"
        d.mkdir(parents=True)
        for j, s in enumerate(STEMS):
            sf.write(d / f"{s}.flac", (_tones(2.0)[j] + rng.normal(scale=0.01, size=(2, 2 * SR))).T, SR)
    r = _cli("--data", str(tmp_path), "--songs", "2", "--seconds", "1.5", "--powers", "1,4")
    assert r.returncode == 0, r.stderr
    table = r.stdout
    assert "2 song(s)" in table and "| oracle (p = 2) |" in table
    assert "| model (p = 1) |" in table and "| model (p = 4) |" in table


@pytest.mark.parametrize(
    "args,words",
    [
        ((), "either --data"),
        (("--demo", "--data", "x"), "either --data"),
        (("--data", "/nonexistent/corpus"), "no 'valid' split under /nonexistent/corpus"),
        (("--demo", "--muted", "choir"), "no stem 'choir'"),
        (("--demo", "--powers", "1,twelve"), "numbers in [0.25, 8]"),
    ],
)
def test_cli_bad_arguments_get_one_sentence(args, words):
    r = _cli(*args)
    assert r.returncode == 2
    assert words in r.stderr and "Traceback" not in r.stderr
