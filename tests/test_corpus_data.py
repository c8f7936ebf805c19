"""Loaders and augmentation (factory.corpus.datasets / augment) on tiny fixtures written here."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]

from factory.corpus import augment as G  # noqa: E402
from factory.corpus import datasets as Dd  # noqa: E402

pytestmark = pytest.mark.factory

SR = 44100
STEMS = ("vocals", "drums", "bass", "other")


def _tone(freq, seconds=0.5, sr=SR, ch=2, amp=0.2):
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x, 0.5 * x][:ch]).astype(np.float32)


def _write(path: Path, x: np.ndarray, sr=SR, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.T, sr, subtype=subtype)


@pytest.fixture
def musdb_hq(tmp_path):
    root = tmp_path / "musdb18hq"
    k = 0
    for split, names in (("train", ["A - One", "B - Two"]), ("test", ["C - Three"])):
        for name in names:
            k += 1  # each track's stems at their own pitch
            stems = {s: _tone(110 * (i + 1) + 9 * k) for i, s in enumerate(STEMS)}
            for s, x in stems.items():
                _write(root / split / name / f"{s}.wav", x, subtype="FLOAT")
            _write(root / split / name / "mixture.wav", sum(stems.values()), subtype="FLOAT")
    return root


def test_musdb_hq_layout(musdb_hq):
    ds = Dd.open_dataset(musdb_hq)
    assert ds.kind == "musdb18hq" and len(ds) == 3
    assert [t.name for t in ds.split("test")] == ["C - Three"]
    x = ds[0].load()
    assert set(x) == {"mixture", *STEMS}
    assert all(v.shape == (2, SR // 2) and v.dtype == np.float32 for v in x.values())
    assert np.abs(x["mixture"] - sum(x[s] for s in STEMS)).max() < 1e-6
    part = ds[0].load(start_s=0.1, duration_s=0.2)
    assert part["vocals"].shape == (2, int(0.2 * SR))
    assert np.allclose(part["vocals"], x["vocals"][:, int(0.1 * SR) : int(0.3 * SR)])


def test_stem_folder_any_names_rates_and_channels(tmp_path):
    root = tmp_path / "stems"
    _write(root / "song1" / "Lead Vocals.wav", _tone(220, ch=1))  # mono
    _write(root / "song1" / "02_Drums.flac", _tone(80))
    _write(root / "song1" / "bass_DI.wav", _tone(55, sr=48000), sr=48000)  # another rate
    _write(root / "song1" / "guitar.wav", _tone(330))
    _write(root / "song1" / "piano.wav", _tone(440))  # summed into other
    _write(root / "song2" / "vocals.wav", _tone(200))
    _write(root / "song2" / "accompaniment.wav", _tone(300))
    (root / "song2" / "notes.txt").write_text("not audio")
    ds = Dd.open_dataset(root)
    assert ds.kind == "folder" and [t.name for t in ds] == ["song1", "song2"]
    x = ds[0].load()
    assert all(v.shape == (2, SR // 2) for v in x.values())
    assert np.allclose(x["vocals"][0], x["vocals"][1])  # mono -> both channels
    assert np.allclose(x["other"], _tone(330) + _tone(440), atol=2e-4)
    assert np.abs(x["mixture"] - sum(x[s] for s in STEMS)).max() < 1e-6  # no mixture file: the sum
    y = ds[1].load()
    assert not np.any(y["drums"]) and np.any(y["other"])
    assert Dd.role_of("Backing Vocals 2.wav") == "vocals" and Dd.role_of("kick.wav") == "drums"
    assert Dd.role_of("readme.wav") is None


def test_synthetic_corpus_loader(tmp_path):
    root = tmp_path / "synth"
    entry = {"id": "song00000", "index": 0, "split": "valid", "files": {}, "duration_s": 0.5}
    stems = {s: _tone(100 * (i + 1)) for i, s in enumerate(STEMS)}
    q = {s: np.round(v * 32768).astype(np.int16) for s, v in stems.items()}
    q["mixture"] = sum(v.astype(np.int32) for v in q.values()).astype(np.int16)
    (root / "valid" / "song00000").mkdir(parents=True)
    for name, x in q.items():
        rel = f"valid/song00000/{name}.flac"
        sf.write(str(root / rel), x.T, SR)
        entry["files"][name] = rel
    (root / "manifest.jsonl").write_text(json.dumps(entry) + "\n" + '{"torn li')
    ds = Dd.open_dataset(root)
    assert ds.kind == "synthetic" and len(ds) == 1 and len(ds.split("train")) == 0
    x = ds[0].load()
    assert np.abs(x["mixture"] - sum(x[s] for s in STEMS)).max() <= 1e-6
    assert len(Dd.open_corpus(root, hours=1e-4)) == 1 and len(Dd.open_corpus(root, split="train")) == 0


def test_stem_mp4_without_decoder_is_one_sentence(tmp_path, monkeypatch):
    root = tmp_path / "musdb18"
    (root / "train").mkdir(parents=True)
    (root / "train" / "X - Y.stem.mp4").write_bytes(b"\0" * 16)
    monkeypatch.setattr(Dd.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "stempeg", None)  # import fails
    with pytest.raises(Dd.DatasetError) as e:
        Dd.open_dataset(root)
    msg = str(e.value)
    assert "ffmpeg" in msg and msg.count(".") <= 3 and "\n" not in msg


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (Debian package ffmpeg)")
def test_stem_mp4_with_ffmpeg(tmp_path):
    import subprocess

    root = tmp_path / "musdb18" / "test"
    root.mkdir(parents=True)
    srcs = {r: _tone(100 * (i + 1), seconds=1.0) for i, r in enumerate(Dd.STEM_MP4_ORDER)}
    ins = []
    for r, x in srcs.items():
        _write(tmp_path / f"{r}.wav", x)
        ins += ["-i", str(tmp_path / f"{r}.wav")]
    maps = sum((["-map", f"{i}:a"] for i in range(5)), [])
    subprocess.run(
        ["ffmpeg", "-v", "error", *ins, *maps, "-c:a", "aac", "-b:a", "256k", str(root / "T - U.stem.mp4")], check=True
    )
    ds = Dd.open_dataset(root.parent)
    x = ds[0].load()
    assert ds.kind == "musdb18" and set(x) == {"mixture", *STEMS}
    for r in STEMS:  # the right stream landed in the right stem (dominant frequency)
        f = np.fft.rfftfreq(SR, 1 / SR)
        peak = f[np.argmax(np.abs(np.fft.rfft(x[r][0, :SR])))]
        assert abs(peak - 100 * (Dd.STEM_MP4_ORDER.index(r) + 1)) < 3


def test_open_dataset_errors(tmp_path):
    with pytest.raises(Dd.DatasetError):
        Dd.open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Dd.DatasetError):
        Dd.open_dataset(tmp_path / "empty")


# ----------------------------------------------------------------------------- augmentation


def _stems(rng, n=1000):
    return {s: rng.standard_normal((2, n)).astype(np.float32) * 0.1 for s in STEMS}


def test_augment_keeps_mixture_consistent_and_is_reproducible():
    x = G.mix(_stems(np.random.default_rng(0)))
    a = G.augment(x, np.random.default_rng(1), p_flip=0.5)
    b = G.augment(x, np.random.default_rng(1), p_flip=0.5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.abs(a["mixture"] - sum(a[s] for s in STEMS)).max() < 1e-6
    assert not np.allclose(a["mixture"], x["mixture"])


def test_random_gains_range():
    x = _stems(np.random.default_rng(0))
    rng = np.random.default_rng(2)
    for _ in range(20):
        y = G.random_gains(x, rng, -6, 3)
        for s in STEMS:
            g = float(np.abs(y[s]).max() / np.abs(x[s]).max())
            assert 10 ** (-6 / 20) - 1e-6 <= g <= 10 ** (3 / 20) + 1e-6


def test_channel_swap_and_sign_flip():
    x = _stems(np.random.default_rng(0))
    y = G.channel_swap(x, np.random.default_rng(0), p=1.0)
    assert all(np.array_equal(y[s], x[s][::-1]) for s in STEMS)
    z = G.channel_swap(x, np.random.default_rng(0), p=0.0)
    assert all(np.array_equal(z[s], x[s]) for s in STEMS)
    f = G.sign_flip(x, np.random.default_rng(0), p=1.0)
    assert all(np.array_equal(f[s], -x[s]) for s in STEMS)


def test_remix_draws_stems_from_several_tracks(musdb_hq):
    ds = Dd.open_dataset(musdb_hq)
    rng = np.random.default_rng(0)
    m = G.remix(ds, rng, seconds=0.25)
    assert all(v.shape == (2, int(0.25 * SR)) for v in m.values())
    assert np.abs(m["mixture"] - sum(m[s] for s in STEMS)).max() < 1e-6
    # The tracks' stems differ by 9 Hz per track: over many draws, more than one track is used.
    freqs = set()
    for _ in range(12):
        v = G.remix(ds, rng, seconds=0.5)["vocals"][0]
        freqs.add(round(float(np.fft.rfftfreq(v.size, 1 / SR)[np.argmax(np.abs(np.fft.rfft(v * np.hanning(v.size))))])))
    assert len(freqs) >= 2


def test_shuffle_sources_is_a_permutation_per_source():
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((6, 4, 2, 50)).astype(np.float32)
    out = G.shuffle_sources(batch, np.random.default_rng(3))
    for s in range(4):
        rows = {out[b, s].tobytes() for b in range(6)}
        assert rows == {batch[b, s].tobytes() for b in range(6)}


def test_fretsonfire_layout_fixture(tmp_path):
    """Frets on Fire song folders (song.ini, song.ogg, guitar.ogg): real-music checks."""
    d = tmp_path / "songs" / "band" / "tune"
    _write(d / "guitar.wav", _tone(330))
    _write(d / "song.wav", _tone(110))
    for n in ("guitar", "song"):  # libsndfile writes Ogg Vorbis
        x, sr = sf.read(str(d / f"{n}.wav"), dtype="float32")
        sf.write(str(d / f"{n}.ogg"), x, sr, format="OGG", subtype="VORBIS")
        (d / f"{n}.wav").unlink()
    (d / "song.ini").write_text("[song]\nname = Tune\n")
    ds = Dd.open_dataset(tmp_path / "songs")
    assert ds.kind == "fretsonfire" and [t.name for t in ds] == ["band/tune"]
    x = ds[0].load(0, 0.25)
    assert set(x) == {"mixture", "guitar", "backing"}
    assert np.abs(x["mixture"] - x["guitar"] - x["backing"]).max() < 1e-6


@pytest.mark.skipif(not Path(Dd.FRETSONFIRE_ROOT).is_dir(), reason="Debian fretsonfire-songs-* not installed")
def test_fretsonfire_debian_recordings():
    ds = Dd.open_fretsonfire()
    assert len(ds) >= 4
    x = ds[0].load(30.0, 2.0)
    assert x["mixture"].shape == (2, 2 * SR) and np.abs(x["guitar"]).max() > 0.01
