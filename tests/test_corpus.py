"""Tests of the synthetic multi-stem corpus (factory.corpus). Fast: a few 10-s songs."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]

from factory.corpus import arrange as A  # noqa: E402
from factory.corpus import build as B  # noqa: E402
from factory.corpus import loudness as L  # noqa: E402
from factory.corpus import material as M  # noqa: E402
from factory.corpus import render as R  # noqa: E402
from factory.corpus import timbres as T  # noqa: E402
from factory.corpus import verify as Vf  # noqa: E402
from factory.corpus.cli import main  # noqa: E402

pytestmark = pytest.mark.factory

HAVE_RENDERERS = shutil.which("fluidsynth") is not None and any(Path(p).exists() for p in R.SOUNDFONT_CANDIDATES)
needs_renderers = pytest.mark.skipif(not HAVE_RENDERERS, reason="needs Debian fluidsynth + fluid-soundfont-gm")
SONG_S = 10.0
TWO_SONGS_H = 2 * (SONG_S + A.TAIL_S) / 3600


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two 10-s songs, built twice into two folders (seed 3)."""
    if not HAVE_RENDERERS:
        pytest.skip("needs Debian fluidsynth + fluid-soundfont-gm")
    base = tmp_path_factory.mktemp("corpus")
    cache = base / "material-cache"
    a, b = base / "a", base / "b"
    for out in (a, b):
        B.build(out, TWO_SONGS_H, seed=3, progress=False, cache_dir=cache, song_seconds=SONG_S)
    return a, b


@needs_renderers
def test_same_seed_gives_byte_identical_corpus(tiny):
    a, b = tiny
    files = _tree(a)
    assert files == _tree(b)
    assert sum(f.endswith(".flac") for f in files) == 10
    mismatch = [f for f in files if not filecmp.cmp(a / f, b / f, shallow=False)]
    assert not mismatch, mismatch


@needs_renderers
def test_stems_sum_to_mixture_and_are_active(tiny):
    root = tiny[0]
    entries = [json.loads(l) for l in (root / "manifest.jsonl").read_text().splitlines()]
    assert [e["index"] for e in entries] == [0, 1]
    for e in entries:
        r = Vf.check_song(root, e)
        print(e["id"], "max |mix - sum| =", r["max_abs_err"], "active:", r["active"])
        assert r["max_abs_err"] <= 1e-6 and r["shape_ok"]
        for stem, frac in r["active"].items():
            assert frac > 0.5, (e["id"], stem, frac)
        info = sf.info(str(root / e["files"]["mixture"]))
        assert info.samplerate == 44100 and info.channels == 2
        assert 10 <= info.duration <= 62
        for k in ("source", "split", "tempo_qpm", "key", "meter", "parts", "vocal", "stems"):
            assert k in e
        assert set(e["stems"]) == {"mixture", "vocals", "drums", "bass", "other"}


@needs_renderers
def test_resume_after_interruption(tiny, tmp_path):
    """A torn manifest line and a leftover temp dir do not stop a resume; results match."""
    src = tiny[0]
    out = tmp_path / "c"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".cache"))
    lines = (out / "manifest.jsonl").read_text().splitlines()
    (out / "manifest.jsonl").write_text(lines[0] + "\n" + lines[1][:50])  # killed mid-write
    shutil.rmtree(out / json.loads(lines[1])["files"]["mixture"].rsplit("/", 1)[0])
    (out / ".tmp" / "song00001.999").mkdir(parents=True)  # debris
    B.build(out, TWO_SONGS_H, seed=3, progress=False, cache_dir=src.parent / "material-cache", song_seconds=SONG_S)
    assert _tree(out) == _tree(src)
    assert (out / "manifest.jsonl").read_bytes() == (src / "manifest.jsonl").read_bytes()


@needs_renderers
def test_stats_and_verify_commands(tiny, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "CORPUS.md").write_text("# x\n<!-- stats:begin -->\nold\n<!-- stats:end -->\ntail\n")
    assert main(["stats", str(tiny[0]), "--docs", str(docs)]) == 0
    text = (docs / "CORPUS.md").read_text()
    assert "2 songs" in text and "old" not in text and text.endswith("tail\n")
    assert (docs / "corpus_stats.png").stat().st_size > 10_000
    assert main(["verify", str(tiny[0])]) == 0
    assert "max |mixture - sum(stems)| = 0.00e+00" in capsys.readouterr().out


@needs_renderers
def test_other_settings_refused_without_force(tiny, capsys):
    code = main(["build", "--out", str(tiny[0]), "--hours", "0.001", "--seed", "4", "--no-progress"])
    assert code == 2
    assert "--force" in capsys.readouterr().err


def test_missing_soundfont_exit_2_nothing_written(tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["build", "--out", str(out), "--hours", "0.01", "--soundfont", str(tmp_path / "none.sf2")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert "fluid-soundfont-gm" in err and err.count("\n") == 0


def test_missing_fluidsynth_exit_2_nothing_written(tmp_path):
    """Run the real CLI with a PATH that has no fluidsynth."""
    out = tmp_path / "never"
    env = dict(os.environ, PATH=str(tmp_path / "empty-bin"), PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-m", "factory.corpus", "build", "--out", str(out), "--hours", "0.01"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    msg = res.stderr.strip()
    assert msg.count("\n") == 0 and "Traceback" not in msg
    assert "`fluidsynth`" in msg and "`fluid-soundfont-gm`" in msg
    assert not out.exists()


# ----------------------------------------------------------------------------- pieces


def test_splits_are_disjoint_and_fixed_by_seed():
    files = M.list_files()
    s0, s0b, s1 = M.assign_splits(files, 0), M.assign_splits(files, 0), M.assign_splits(files, 1)
    assert s0 == s0b and s0 != s1
    frac = {k: sum(v == k for v in s0.values()) / len(files) for k in ("train", "valid", "test")}
    assert 0.05 < frac["test"] < 0.15 and 0.05 < frac["valid"] < 0.15
    # The test split of a seed does not depend on how many files (or hours) there are.
    sub = M.assign_splits(files[::3], 0)
    assert all(sub[f] == s0[f] for f in sub)
    # Songs draw their source only from their own split's files.
    pools = {k: [] for k in ("train", "valid", "test")}
    for src in M.list_sources(files):
        pools[s0[src.path]].append(src)
    for k, srcs in pools.items():
        assert all(s0[x.path] == k for x in srcs)
    ok, shared = Vf.splits_disjoint([{"source": "a.abc#1", "split": "train"}, {"source": "a.abc#2", "split": "test"}])
    assert not ok and "a.abc" in shared


def test_song_plan_is_deterministic(tmp_path):
    p1 = B.make_planner(5, tmp_path / "c")
    p2 = B.make_planner(5, tmp_path / "c")
    for i in range(3):
        a, b = p1.plan(i), p2.plan(i)
        assert [(p.stem, p.program, p.notes) for p in a.parts] == [(p.stem, p.program, p.notes) for p in b.parts]
        assert a.split == A.split_of(5, i)
        assert 10 <= a.duration <= 61


def test_key_and_chords_from_material():
    scale = [[i, 1.0, 60 + s] for i, s in enumerate([0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0])]
    assert M.estimate_key(scale) == (0, "major")
    # Four bars of C, F, G7, C as block chords.
    lines = []
    for bar, tones in enumerate([(60, 64, 67), (60, 65, 69), (59, 65, 67), (60, 64, 67)]):
        lines.append([[bar * 4.0, 4.0, t] for t in tones])
    lines = [sum(lines, [])]
    ch = M.estimate_chords(lines + [[[0, 1, 48]]], None, 16.0, 4.0, 0, "major")
    roots = [(c[2], c[3]) for c in ch]
    assert roots[0] == (0, "maj") and roots[1] == (5, "maj") and roots[2][0] == 7


def test_loudness_reference_tone():
    sr = 44100
    t = np.arange(5 * sr) / sr
    x = np.sin(2 * np.pi * 997 * t)
    assert abs(L.integrated_lufs(x[None], sr) - (-3.01)) < 0.05  # BS.1770 calibration
    assert abs(L.integrated_lufs(np.stack([x, x]) * 0.1, sr) - (-20.0)) < 0.05
    assert L.active_fraction(np.zeros((2, sr * 3))) == 0.0


def test_formant_singer_is_voice_like():
    from scipy import signal

    from factory.corpus.voice import Singer

    notes = [[0.2 + 0.4 * i, 0.35, 57 + (i % 5) * 2, 100] for i in range(10)]
    y, lyrics = Singer(1, female=False).sing(notes, 44100 * 5)
    assert np.isfinite(y).all() and np.abs(y).max() > 0 and len(lyrics) == 10
    # Harmonics at the sung pitch: the spectrum of a sustained vowel peaks near multiples of f0.
    seg = y[int(0.25 * 44100) : int(0.5 * 44100)]
    f, pxx = signal.welch(seg, 44100, nperseg=8192)
    f0 = 440 * 2 ** ((57 - 69) / 12)
    band = (f > 0.8 * f0) & (f < 1.2 * f0)
    assert pxx[band].max() > 30 * np.median(pxx[(f > 50) & (f < 5000)])
    # No clicks: nothing above 14 kHz out of proportion.
    hp = signal.sosfilt(signal.butter(8, 14000 / 22050, "highpass", output="sos"), y)
    assert np.abs(hp).max() < 0.05 * np.abs(y).max()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")
def test_spoken_lines_are_deterministic():
    from factory.corpus.voice import speak_lines

    a, info = speak_lines([[0.1, 1.5, 60, 100]], 44100 * 2, 9, "tenor")
    b, _ = speak_lines([[0.1, 1.5, 60, 100]], 44100 * 2, 9, "tenor")
    assert np.array_equal(a, b) and np.abs(a).max() > 0.01 and info["lines"] == 1


def test_midi_writer_handles_restruck_notes(tmp_path):
    import mido

    part = A.Part("other", "comp", 0, 0, [[0.0, 1.0, 60, 100], [0.5, 1.0, 60, 90], [2.0, 0.5, 64, 80]])
    R.write_midi([part], tmp_path / "x.mid")
    mid = mido.MidiFile(tmp_path / "x.mid")
    ons = [m for m in mid.tracks[0] if m.type == "note_on" and m.velocity > 0]
    offs = [m for m in mid.tracks[0] if m.type == "note_off"]
    assert len(ons) == 3 and len(offs) == 3
    assert abs(mid.length - 2.5) < 1e-3


def test_bundled_demo_song():
    demo = REPO / "python" / "livedemix" / "data" / "demo"
    meta = json.loads((demo / "demo.json").read_text())
    files = {n: demo / f"{n}.flac" for n in ("mixture", "vocals", "drums", "bass", "other")}
    assert sum(f.stat().st_size for f in demo.iterdir()) <= 3_000_000
    x = {n: sf.read(str(f), dtype="float32", always_2d=True) for n, f in files.items()}
    assert all(sr == 44100 and a.shape[1] == 2 for a, sr in x.values())
    assert (
        15 <= x["mixture"][0].shape[0] / 44100 <= 25
        and abs(meta["duration_s"] - x["mixture"][0].shape[0] / 44100) < 1e-3
    )
    err = np.abs(x["mixture"][0] - sum(x[s][0] for s in ("vocals", "drums", "bass", "other"))).max()
    assert err <= 1e-6
    for s in ("vocals", "drums", "bass", "other"):
        assert L.active_fraction(x[s][0].T) > 0.5, s


@pytest.mark.slow
@needs_renderers
def test_worker_count_does_not_change_the_corpus(tmp_path):
    """Full-length songs (10-60 s), one worker vs two: byte-identical, verified."""
    cache = tmp_path / "cache"
    for name, w in (("one", 1), ("two", 2)):
        B.build(tmp_path / name, 0.05, seed=11, workers=w, progress=False, cache_dir=cache)
    a, b = tmp_path / "one", tmp_path / "two"
    assert _tree(a) == _tree(b)
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in _tree(a))
    assert Vf.verify(a)


def test_master_bus_keeps_the_sum_and_the_ceiling():
    from factory.corpus import production as P

    rng = np.random.default_rng(0)
    n = 44100 * 3
    env = 1 + 4 * (np.arange(n) % 11025 < 300)  # transients
    stems = {s: rng.standard_normal((2, n)) * 0.05 * env for s in ("vocals", "drums", "bass", "other")}
    for seed in range(6):
        out, info = P.master(stems, np.random.default_rng(seed), L.integrated_lufs)
        mix = sum(out.values())
        gains = [out[s] / stems[s] for s in stems]  # one gain curve for every stem
        assert all(np.allclose(g, gains[0]) for g in gains)
        assert np.abs(mix).max() <= 0.97 + 1e-9 and max(np.abs(v).max() for v in out.values()) <= 0.97 + 1e-9
        if info["mastered"]:
            assert np.abs(mix).max() <= 10 ** (info["ceiling_dbfs"] / 20) + 1e-3


@needs_renderers
def test_build_of_chosen_splits_renders_only_their_songs_and_the_same_bytes(tiny, tmp_path):
    """--splits renders the plan's songs of those splits only (what an evaluation needs); a
    later build without it adds the rest, and the result is the full build byte for byte."""
    assert [A.split_of(6, i) for i in (0, 1)] == ["test", "train"]  # seed 6: one song of each
    cache = tiny[0].parent / "material-cache"
    part, full = tmp_path / "part", tmp_path / "full"
    B.build(part, TWO_SONGS_H, seed=6, progress=False, cache_dir=cache, song_seconds=SONG_S, splits=["test"])
    assert [json.loads(l)["index"] for l in (part / "manifest.jsonl").read_text().splitlines()] == [0]
    assert (part / "test" / "song00000" / "mixture.flac").exists() and not (part / "train").exists()
    B.build(part, TWO_SONGS_H, seed=6, progress=False, cache_dir=cache, song_seconds=SONG_S)
    B.build(full, TWO_SONGS_H, seed=6, progress=False, cache_dir=cache, song_seconds=SONG_S)
    assert _tree(part) == _tree(full)
    assert all(filecmp.cmp(part / f, full / f, shallow=False) for f in _tree(full))


def test_build_refuses_an_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="unknown split tset; use some of test, train, valid"):
        B.build(tmp_path / "c", 0.01, seed=3, progress=False, splits=["tset"])
    assert not (tmp_path / "c").exists()


HAVE_DIVERSE = HAVE_RENDERERS and all(p.is_file() for p, *_ in T.DIVERSE_GM + T.DIVERSE_KITS)


@pytest.mark.skipif(not HAVE_DIVERSE, reason="needs csound-soundfont, opl3-soundfont, avldrums.lv2-soundfont")
def test_diverse_timbres_draw_libraries_per_stem_reproducibly(tmp_path):
    """Each stem draws its library from the song's seed: several libraries over a few songs, the
    sampled kits among the drums (audible, on a melodic channel), byte-identical rebuilds, the
    sum still exact, and the held-out library never drawn."""
    cache = tmp_path / "cache"
    hours = 6 * (SONG_S + A.TAIL_S) / 3600
    for name in ("a", "b"):
        B.build(tmp_path / name, hours, seed=4, progress=False, cache_dir=cache, song_seconds=SONG_S, timbres="diverse")
    a, b = tmp_path / "a", tmp_path / "b"
    assert _tree(a) == _tree(b) and all(filecmp.cmp(a / f, b / f, shallow=False) for f in _tree(a))
    cfg = json.loads((a / "corpus.json").read_text())
    assert cfg["timbres"] == "diverse" and T.UNSEEN.name not in cfg["soundfonts"] + cfg["drum_kits"]
    used, kit_drums = set(), 0
    for song_json in a.glob("*/*/song.json"):
        e = json.loads(song_json.read_text())
        used |= set(e["soundfonts"].values())
        if e["soundfonts"].get("drums") in {p.name for p, *_ in T.DIVERSE_KITS}:
            kit_drums += 1
            drums, _ = sf.read(song_json.parent / "drums.flac")
            assert e["stems"]["drums"]["active_fraction"] > 0.3 and np.abs(drums).max() > 0.01
    assert len(used) >= 3 and kit_drums >= 1
    assert Vf.verify(a)
    with pytest.raises(ValueError, match="unknown timbre pool"):
        T.Timbres("every", str(T.FLUID))


HAVE_WIDE = HAVE_DIVERSE and all(p.is_file() for p, *_ in T.WIDE_GM)


@pytest.mark.skipif(not HAVE_WIDE, reason="needs the diverse pool's packages and minuet-data, denemo-data")
def test_wide_pool_adds_two_gm_sets_and_leaves_the_diverse_pool_alone(tmp_path):
    """The wide pool draws every one of its libraries (the two new GM sets play audible stems);
    the diverse pool never draws them, so its builds reproduce; neither draws a held-out library."""
    wide, diverse = T.Timbres("wide", str(T.FLUID)), T.Timbres("diverse", str(T.FLUID))
    draws = {
        pool.pool: {
            Path(pool.pick(0, song, stem, stem == 1).soundfont).name for song in range(200) for stem in range(4)
        }
        for pool in (wide, diverse)
    }
    new = {p.name for p, *_ in T.WIDE_GM} - {p.name for p, *_ in T.DIVERSE_GM}
    assert new == {"GeneralUser-v1.47.sf2", "A320U.sf2"}
    assert draws["wide"] == {p.name for p, *_ in T.WIDE_GM + T.DIVERSE_KITS}
    assert not draws["diverse"] & new
    for names in draws.values():
        assert T.UNSEEN.name not in names and not any("musescore" in n.lower() for n in names)
    hours = 8 * (SONG_S + A.TAIL_S) / 3600
    B.build(
        tmp_path / "w", hours, seed=5, progress=False, cache_dir=tmp_path / "cache", song_seconds=SONG_S, timbres="wide"
    )
    cfg = json.loads((tmp_path / "w" / "corpus.json").read_text())
    assert cfg["timbres"] == "wide" and set(cfg["soundfonts"]) >= new
    heard = set()
    for song_json in (tmp_path / "w").glob("*/*/song.json"):
        e = json.loads(song_json.read_text())
        for stem, name in e["soundfonts"].items():
            if name in new and e["stems"][stem]["active_fraction"] > 0.3:
                x, _ = sf.read(song_json.parent / f"{stem}.flac")
                assert np.abs(x).max() > 0.01, (name, stem)
                heard.add(name)
    assert heard, "no stem of the build was played by a new library"
    assert Vf.verify(tmp_path / "w")


@needs_renderers
def test_single_pool_records_nothing_new():
    """Corpora built before timbre pools keep matching their corpus.json (no new keys)."""
    assert T.Timbres("single", str(T.FLUID)).describe() == {}
