"""Real-music training material (factory.realmix): built from train-split songs only, examples
whose two targets add up to the mixture, a loss that leaves the accompaniment's split alone, and
factory.train --real end to end on a tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
from factory import realmix as rmx  # noqa: E402
from factory import realmusic as rm  # noqa: E402
from factory import teacher as tch  # noqa: E402
from factory import train  # noqa: E402

pytestmark = pytest.mark.factory

SR = 44100
DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo"


def _key(prefix: str, split: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if rm.split_of(f"{prefix}{i}") == split)


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """Material from the demo song as a train-split sung song (plus an ND one, which must stay
    out) and its accompaniment, reversed, as a train-split instrumental."""
    try:
        teacher = tch.Teacher(threads=2)
    except tch.TeacherError as e:
        pytest.skip(str(e))
    base = tmp_path_factory.mktemp("realmix")
    rd = lambda n: sf.read(DEMO / f"{n}.flac", dtype="float32", always_2d=True)[0].T  # noqa: E731
    mix = rd("mixture")
    acc = rd("drums") + rd("bass") + rd("other")
    sung = base / "sung"
    train_song = _key("Demo Band - Song ", "train")
    for name, lic in ((train_song, "by-sa/3.0"), ("ND Band - Song", "by-nc-nd/2.5")):
        (sung / name).mkdir(parents=True)
        sf.write(sung / name / "audio.flac", mix.T, SR, subtype="PCM_24")
        (sung / name / "license.txt").write_text(f"http://creativecommons.org/licenses/{lic}/\n")
    track = _key("singularity-music/track", "train").split("/", 1)[1]
    deb = base / "debian" / "singularity-music"
    deb.mkdir(parents=True)
    sf.write(deb / f"{track}.flac", acc[:, ::-1].T.copy(), SR, subtype="PCM_24")
    # a Frets on Fire band in the train split: its guitar part becomes 'other' material
    fof_name = _key("fretsonfire-songs-sectoid/Band ", "train").split("/", 1)[1]
    fof = base / "debian" / "fretsonfire-songs-sectoid" / "songs" / fof_name
    fof.mkdir(parents=True)
    (fof / "song.ini").write_text("[song]\n")
    sf.write(fof / "song.ogg", (rd("drums") + rd("bass")).T, SR)
    sf.write(fof / "guitar.ogg", rd("other").T, SR)
    cache = tch.TeacherCache(base / "cache")
    tch.run_files([sung / train_song / "audio.flac", deb / f"{track}.flac"], cache, teacher, progress=False)
    man = rmx.build(base / "out", sung, base / "debian", cache, progress=lambda s: None)
    return base / "out", man, train_song


def test_material_holds_train_songs_only_with_their_licences(material):
    out, man, train_song = material
    songs = {s["song"]: s for s in man["sources"]}
    assert len(songs) == 3 and train_song in songs
    assert {k.split("/")[0] for k in songs if k != train_song} == {"singularity-music", "fretsonfire-songs-sectoid"}
    assert songs[train_song]["licence"] == "CC BY-SA 3.0" and songs[train_song]["kind"] == "mix"
    d = rmx.describe(out)
    assert (d["mixes"], d["instrumentals"]) == (1, 2) and "CC BY-NC-ND 2.5" not in d["licences"]


def test_sampler_draws_both_kinds_deterministically(material):
    out, _, _ = material
    s = rmx.RealSampler(out, SR)
    a = s.batch(np.random.default_rng(5), 6)
    b = rmx.RealSampler(out, SR).batch(np.random.default_rng(5), 6)
    assert a.shape == (6, 2, 2, SR) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.abs(a.sum(axis=1)).max() <= 1.0 + 1e-6  # the mixture (their sum) stays in range
    assert len(s.instr) == 2 and len(s.vocal_sources) == 1 and len(s.guitars) == 1
    g = s.guitar(np.random.default_rng(0))
    assert g.shape == (2, SR) and np.sqrt(np.mean(g**2)) > 1e-3
    # each kind alone: real mixes (one gain for both stems: still the record) and remixes
    mixes = rmx.RealSampler(out, SR, mix_prob=1.0).batch(np.random.default_rng(1), 4)
    remixes = rmx.RealSampler(out, SR, mix_prob=0.0).batch(np.random.default_rng(1), 4)
    assert not np.array_equal(mixes, remixes)
    assert all(np.abs(x).max() > 1e-3 for x in (mixes[:, 0], mixes[:, 1], remixes[:, 0], remixes[:, 1]))


def test_vocal_shift_moves_the_pitch_of_remixed_vocals_both_ways(material):
    """--real-vocal-shift: a 440 Hz tone as the 'vocals' comes out between 440 · 2^(∓3/12) Hz,
    above and below 440 over several draws, at full length; remixes stay in range."""
    out, _, _ = material
    s = rmx.RealSampler(out, SR, vocal_shift=3.0, swap_prob=0.0)
    t = np.arange(3 * SR) / SR
    tone = (np.stack([np.sin(2 * np.pi * 440 * t)] * 2) * 16000).astype(np.int16)
    rng = np.random.default_rng(0)
    peaks = []
    for _ in range(8):
        y = s._shifted_vocals(rng, tone, 0)
        assert y.shape == (2, SR) and y.dtype == np.float32 and np.isfinite(y).all()
        spec = np.abs(np.fft.rfft(y[0, 2000:-2000] * np.hanning(SR - 4000)))
        peaks.append(np.argmax(spec) * SR / (SR - 4000))
    assert all(440 * 2 ** (-3.05 / 12) < f < 440 * 2 ** (3.05 / 12) for f in peaks), peaks
    assert min(peaks) < 430 and max(peaks) > 450, peaks
    near_end = s._shifted_vocals(np.random.default_rng(1), tone, tone.shape[1] - SR)  # runs out: padded
    assert near_end.shape == (2, SR)
    remixes = rmx.RealSampler(out, SR, mix_prob=0.0, vocal_shift=3.0).batch(np.random.default_rng(2), 4)
    assert np.abs(remixes.sum(axis=1)).max() <= 1.0 + 1e-6 and np.abs(remixes[:, 0]).max() > 1e-3


def test_real_guitar_is_added_to_other_only_and_keeps_the_mixture_in_range(material):
    out, _, _ = material
    s = rmx.RealSampler(out, SR)
    batch = np.random.default_rng(0).uniform(-0.2, 0.2, (3, 4, 2, SR)).astype(np.float32)
    got = train.add_real_guitar(batch, s, np.random.default_rng(1), 1.0)
    assert np.abs(got.sum(axis=1)).max() <= 1.0 + 1e-6
    scale = got[:, 0, 0, 0] / batch[:, 0, 0, 0]  # one factor per example (1 unless it clipped)
    for i in range(3):
        assert np.allclose(got[i, :3], batch[i, :3] * scale[i], atol=1e-6)  # vocals, drums, bass untouched
        assert not np.allclose(got[i, 3], batch[i, 3] * scale[i])  # a guitar in 'other'
    assert np.array_equal(train.add_real_guitar(batch, s, np.random.default_rng(1), 0.0), batch)


def test_two_stem_loss_ignores_how_the_accompaniment_splits():
    g = torch.Generator().manual_seed(0)
    V = torch.rand(2, 4, 2, 9, 5, generator=g)
    S2 = torch.randn(2, 2, 2, 9, 5, dtype=torch.complex64, generator=g)
    X = S2.sum(1)
    base = rmx.two_stem_loss(V, S2, X, 1.0, 1.0)
    shuffled = V[:, [0, 3, 1, 2]]  # drums, bass, other permuted: same vocals, same rest
    assert torch.allclose(base, rmx.two_stem_loss(shuffled, S2, X, 1.0, 1.0))
    louder_vocals = V.clone()
    louder_vocals[:, 0] *= 3
    assert not torch.allclose(base, rmx.two_stem_loss(louder_vocals, S2, X, 1.0, 1.0))


def test_anchored_split_loss_vanishes_where_the_split_follows_the_anchor():
    """Stems that are scaled copies of one spectrum: with p = 1 their masks rebuild them
    exactly, so a model whose drums/bass/other magnitudes split the accompaniment as the
    anchor's do has zero loss; the same magnitudes permuted (another split of the same
    accompaniment) do not, and the anchor's overall scale does not matter (only its shares)."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(2, 2, 9, 5, dtype=torch.complex64, generator=g)
    gains = torch.tensor([0.7, 0.2, 0.5, 1.1]).view(1, 4, 1, 1, 1)
    S4 = gains * A.unsqueeze(1)
    S2 = torch.stack([S4[:, 0], S4[:, 1:].sum(1)], 1)
    X = S2.sum(1)
    V = S4.abs()
    assert rmx.anchored_split_loss(V, S2, X, V, 1.0, 1.0) < 1e-5
    assert torch.allclose(
        rmx.anchored_split_loss(V, S2, X, 3 * V, 1.0, 1.0), rmx.anchored_split_loss(V, S2, X, V, 1.0, 1.0), atol=1e-6
    )
    other_split = V[:, [0, 3, 1, 2]]
    assert rmx.anchored_split_loss(other_split, S2, X, V, 1.0, 1.0) > 0.1
    # the vocals' own loss does not see the split at all: the anchor term is what constrains it
    assert torch.allclose(rmx.two_stem_loss(other_split, S2, X, 1.0, 1.0), rmx.two_stem_loss(V, S2, X, 1.0, 1.0))


def test_train_with_real_material_runs_and_records_it(material, tmp_path):
    from test_train_smoke import ARGS, synth_song

    out, _, train_song = material
    root = tmp_path / "stems"
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("valid", 1)):
        for i in range(count):
            d = root / split / f"song{i}"
            d.mkdir(parents=True)
            for name, audio in synth_song(rng).items():
                sf.write(d / f"{name}.wav", audio, SR, subtype="FLOAT")
    run = tmp_path / "run"
    args = ["--data", str(root), "--out", str(run), "--real", str(out), "--real-fraction", "0.5", "--real-guitar", "1"]
    assert train.main(args + ARGS) == 0
    ck = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    real = ck["training"]["real"]
    assert real["per_batch"] == 1 and train_song in real["songs"] and real["mixes"] == 1
    assert ck["training"]["real_guitar"] == 1.0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["train_loss"]) for e in log)

    # a second run anchored to the first one's split of the real examples' accompaniment
    anchored = tmp_path / "anchored"
    args = [a if a != str(run) else str(anchored) for a in args] + ["--anchor", str(run / "last.pt")]
    assert train.main(args + ARGS) == 0
    ck = torch.load(anchored / "last.pt", map_location="cpu", weights_only=False)
    assert ck["training"]["anchor"] == {"checkpoint": str(run / "last.pt"), "weight": 1.0}
    log = [json.loads(line) for line in (anchored / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["train_loss"]) for e in log)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="not a WaveNet checkpoint"):
        train.load_anchor(tmp_path / "junk.pt", 513)
    with pytest.raises(SystemExit, match="STFT bins"):
        train.load_anchor(run / "last.pt", 2049)


def test_card_names_data_relative_to_the_repository():
    """The training record in an exported card holds no machine's absolute paths."""
    from factory.export import portable_paths

    repo = Path(__file__).resolve().parents[1]
    rec = {
        "real": {"sources": [{"source": str(repo.parent / "shared" / "realmusic" / "sung" / "A - B")}]},
        "stages": [{"data": str(repo.parent / "data" / "corpus-div"), "init_from": str(repo / "factory" / "x.pt")}],
        "teacher": "spleeter",
    }
    out = portable_paths(rec)
    assert out["real"]["sources"][0]["source"] == "../shared/realmusic/sung/A - B"
    assert out["stages"][0] == {"data": "../data/corpus-div", "init_from": "factory/x.pt"}
    assert out["teacher"] == "spleeter"


def test_vocal_formants_change_only_the_shifted_remixes(material):
    """--real-vocal-formants: the shifted vocals differ from the plain tape shift with the same
    draws (the envelope moved back), keep their length and range, and real mixes are untouched."""
    out, _, _ = material
    tape = rmx.RealSampler(out, SR, vocal_shift=3.0, swap_prob=0.0)
    kept = rmx.RealSampler(out, SR, vocal_shift=3.0, vocal_formants=True, swap_prob=0.0)
    t = np.arange(3 * SR) / SR
    voice = (np.stack([np.sign(np.sin(2 * np.pi * 150 * t))] * 2) * 8000).astype(np.int16)  # rich in harmonics
    a = tape._shifted_vocals(np.random.default_rng(3), voice, 0)
    b = kept._shifted_vocals(np.random.default_rng(3), voice, 0)
    assert a.shape == b.shape == (2, SR) and b.dtype == np.float32 and np.isfinite(b).all()
    assert np.abs(a - b).max() > 1e-3
    mixes_a = rmx.RealSampler(out, SR, mix_prob=1.0, vocal_shift=3.0).batch(np.random.default_rng(4), 3)
    mixes_b = rmx.RealSampler(out, SR, mix_prob=1.0, vocal_shift=3.0, vocal_formants=True).batch(
        np.random.default_rng(4), 3
    )
    np.testing.assert_array_equal(mixes_a, mixes_b)
    with pytest.raises(SystemExit):
        train.main(["--data", str(out), "--real-vocal-formants", "--steps", "1"])
