"""Karaoke as people hear it: with the vocals muted, the shipped model's mix is closer to the true
accompaniment than the mixture itself is (plain SDR), on corpus valid songs and, where it is
available, on the real 2-stem validation (factory.realval); and how much vocal energy it leaves,
next to what the ideal ratio mask leaves (the ceiling of any magnitude mask).

These replace two strict-xfail checks on the demo song that asked for something even the ideal
ratio mask cannot do (vocals down by their SIR, every other stem within 1 dB).

Material: ``LIVEDEMIX_CORPUS`` (a built corpus with a valid split, e.g. /work/data/corpus-6h), else
a few valid songs rendered here (about a minute); ``LIVEDEMIX_REALVAL`` (a set built by
``python -m factory.realval build``), else that test is skipped (no real audio in CI).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from livedemix.metrics import sdr
from livedemix.offline import separate

pytestmark = [pytest.mark.factory, pytest.mark.slow]

SR = 44100
SONGS = 4
EXCERPT_S = 20.0


def _read(p: Path) -> np.ndarray:
    return sf.read(p, dtype="float32", always_2d=True)[0].T


@pytest.fixture(scope="module")
def corpus_songs(tmp_path_factory) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, mixture, vocals, accompaniment) of the first corpus valid songs that have vocals."""
    from factory.corpus import build as B
    from factory.corpus import render as R

    root = os.environ.get("LIVEDEMIX_CORPUS")
    if root and (Path(root) / "valid").is_dir():
        root = Path(root)
    else:
        if shutil.which("fluidsynth") is None or not any(Path(p).exists() for p in R.SOUNDFONT_CANDIDATES):
            pytest.skip("needs LIVEDEMIX_CORPUS or Debian fluidsynth + fluid-soundfont-gm to render songs")
        root = tmp_path_factory.mktemp("corpus")
        B.build(root, 0.35, seed=0, progress=False, song_seconds=EXCERPT_S, splits=["valid"])
    out = []
    for d in sorted(p for p in (root / "valid").iterdir() if p.is_dir()):
        n = int(EXCERPT_S * SR)
        voc = _read(d / "vocals.flac")[:, :n]
        if np.sqrt(np.mean(voc**2)) < 1e-3:
            continue
        acc = sum(_read(d / f"{s}.flac")[:, :n] for s in ("drums", "bass", "other"))
        out.append((d.name, voc + acc, voc, acc))
        if len(out) == SONGS:
            break
    assert len(out) >= 2, f"too few valid songs with vocals under {root}"
    return out


def _karaoke_rows(items):
    from factory.realval import karaoke_residual

    rows = []
    for name, mix, voc, acc in items:
        kar = separate(mix, SR, preset="karaoke")["mix"]
        r = karaoke_residual(mix, voc, acc)
        rows.append((name, sdr(acc, kar), sdr(acc, mix), r))
        print(
            f"{name}: karaoke mix vs accompaniment {rows[-1][1]:.2f} dB (the mixture's own {rows[-1][2]:.2f}, "
            f"ideal ratio mask {r['oracle_karaoke_sdr']:.2f}); vocals left {r['model_vocals_db']:.1f} dB "
            f"(ideal ratio mask {r['oracle_vocals_db']:.1f} dB); accompaniment changed {r['model_acc_db']:+.2f} dB "
            f"(ideal {r['oracle_acc_db']:+.2f}), mask power {r['power']:g}"
        )
    return rows


def test_karaoke_mix_beats_the_mixture_on_corpus_valid_songs(corpus_songs):
    rows = _karaoke_rows(corpus_songs)
    for name, kar, mix, r in rows:
        assert kar > mix, (
            f"{name}: the karaoke mix ({kar:.2f} dB) is no closer to the accompaniment than the mixture ({mix:.2f} dB)"
        )
        # it takes the vocals down (by a few dB at least), and never below what the ideal mask leaves
        assert r["model_vocals_db"] < -2.0, name
        assert r["oracle_vocals_db"] < r["model_vocals_db"], name


def test_karaoke_mix_beats_the_mixture_on_the_real_2stem_validation():
    data = os.environ.get("LIVEDEMIX_REALVAL")
    if not data or not (Path(data) / "manifest.json").exists():
        pytest.skip("set LIVEDEMIX_REALVAL to a set built by `python -m factory.realval build` (not in CI)")
    from factory.realval import load_clips

    clips = load_clips(data)
    rows = _karaoke_rows([(n, c["mixture"], c["vocals"], c["accompaniment"]) for n, c in clips])
    kar = np.array([r[1] for r in rows])
    mix = np.array([r[2] for r in rows])
    print(
        f"{len(rows)} clips: karaoke mean {kar.mean():.2f} dB vs mixture {mix.mean():.2f}; beats it on {np.sum(kar > mix)}"
    )
    assert kar.mean() > mix.mean()
    assert np.mean(kar > mix) >= 0.75
