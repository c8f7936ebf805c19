"""The training recipe end to end on a tiny stems folder: runs, logs, checkpoints, resumes
deterministically, and exports to a model the runtime accepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
from factory import export, train  # noqa: E402
from factory.model import REMOVED_OPTIONS, ModelConfig, WaveNetSeparator  # noqa: E402

pytestmark = pytest.mark.factory

SR = 44100
ROOT = Path(__file__).resolve().parents[1]


def synth_song(rng, seconds=3.0):
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(180, 400)
    vocals = 0.2 * np.sin(2 * np.pi * f0 * t * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)))
    drums = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.25):
        i = int(start * SR)
        n = min(3000, len(t) - i)
        drums[i : i + n] += 0.4 * rng.standard_normal(n) * np.exp(-np.arange(n) / 400)
    bass = 0.3 * np.sin(2 * np.pi * rng.uniform(40, 90) * t)
    other = 0.1 * np.sign(np.sin(2 * np.pi * rng.uniform(500, 900) * t))
    return {
        k: np.stack([v, 0.8 * v]).T.astype(np.float32)
        for k, v in dict(vocals=vocals, drums=drums, bass=bass, other=other).items()
    }


@pytest.fixture(scope="module")
def stems_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stems")
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("valid", 1)):
        for i in range(count):
            d = root / split / f"song{i}"
            d.mkdir(parents=True)
            stems = synth_song(rng)
            for name, audio in stems.items():
                sf.write(d / f"{name}.wav", audio, SR, subtype="FLOAT")
            sf.write(d / "mixture.wav", sum(stems.values()), SR, subtype="FLOAT")
    return root


ARGS = [
    "--steps",
    "4",
    "--eval-every",
    "2",
    "--batch",
    "2",
    "--seconds",
    "1",
    "--valid-seconds",
    "2",
    "--residual",
    "8",
    "--skip",
    "8",
    "--hidden",
    "8",
    "--dilations",
    "1,2",
    "--threads",
    "1",
    "--no-compile",
]  # (the compiled path is checked against the eager one below)


def test_train_logs_checkpoints_and_resumes_deterministically(stems_folder, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main(["--data", str(stems_folder), "--out", str(a), *ARGS]) == 0
    log = [json.loads(line) for line in (a / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4]
    assert all(np.isfinite(e["train_loss"]) and np.isfinite(e["valid_sdr"]["mean"]) for e in log)
    assert (a / "best.pt").exists() and (a / "last.pt").exists()

    # interrupted after 2 steps, then resumed: same weights as the uninterrupted run
    args_b = ["--data", str(stems_folder), "--out", str(b), *ARGS]
    assert train.main([*args_b, "--stop-at-step", "2"]) == 0
    assert torch.load(b / "last.pt", weights_only=False)["step"] == 2
    assert train.main(args_b) == 0
    sa = torch.load(a / "last.pt", weights_only=False)["state_dict"]
    sb = torch.load(b / "last.pt", weights_only=False)["state_dict"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6)


def test_second_stage_starts_from_the_first_and_reports_both(stems_folder, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert train.main(["--data", str(stems_folder), "--out", str(first), *ARGS]) == 0
    ARGS2 = [a if a != "4" else "2" for a in ARGS]  # two more steps
    assert (
        train.main(
            [
                "--data",
                str(stems_folder),
                "--out",
                str(second),
                *ARGS2,
                "--complex-weight",
                "0.5",
                "--init-from",
                str(first / "last.pt"),
                "--stop-at-step",
                "1",
            ]
        )
        == 0
    )
    start = torch.load(second / "last.pt", weights_only=False)
    assert start["step"] == 1 and start["training"]["steps"] == 5  # 4 + 1
    # resuming the second stage continues it, not the first
    assert (
        train.main(
            [
                "--data",
                str(stems_folder),
                "--out",
                str(second),
                *ARGS2,
                "--complex-weight",
                "0.5",
                "--init-from",
                str(first / "last.pt"),
            ]
        )
        == 0
    )
    ck = torch.load(second / "last.pt", weights_only=False)
    tr = ck["training"]
    assert ck["step"] == 2 and tr["steps"] == 6
    assert [st["steps"] for st in tr["stages"]] == [4, 2]
    assert tr["stages"][1]["loss"] == "L1(|S|) + 0.5 * L1(Wiener(V) - S)"
    assert tr["cpu_minutes"] == round(sum(st["cpu_minutes"] for st in tr["stages"]), 1)
    w1 = torch.load(first / "last.pt", weights_only=False)["state_dict"]
    assert any(not torch.equal(w1[k], ck["state_dict"][k]) for k in w1)  # it trained on


def test_second_stage_refuses_weights_of_another_model(stems_folder, tmp_path):
    first = tmp_path / "first"
    assert train.main(["--data", str(stems_folder), "--out", str(first), *ARGS]) == 0
    wider = [a if a != "8" else "12" for a in ARGS]
    with pytest.raises(SystemExit, match="do not fit this model"):
        train.main(
            ["--data", str(stems_folder), "--out", str(tmp_path / "x"), *wider, "--init-from", str(first / "last.pt")]
        )


def test_torch_istft_inverts_the_torch_stft_like_the_core():
    from livedemix import dsp

    stft = train.TorchStft(**dsp.SHIPPED_CONFIGS["quality"])
    x = torch.randn(2, 3, 44100, generator=torch.Generator().manual_seed(3))
    y = stft.inverse(stft(x), x.shape[-1])
    assert y.shape == x.shape
    exact = 44100 // 256 * 256 - 256  # up to the last whole hop, less the hop that lacks its next frame
    torch.testing.assert_close(y[..., :exact], x[..., :exact], rtol=0, atol=1e-5)
    # the same synthesis as the runtime's ISTFT (which adds the round trip's delay)
    core = dsp.istft(dsp.stft(x[0].numpy(), dsp.config("quality")), dsp.config("quality"), x.shape[-1])
    np.testing.assert_allclose(core[:, :exact], y[0, :, :exact].numpy(), atol=1e-5)


def test_checkpoint_exports_to_a_runnable_model(stems_folder, tmp_path):
    out = tmp_path / "run"
    train.main(["--data", str(stems_folder), "--out", str(out), *ARGS])
    assert export.main(["--checkpoint", str(out / "best.pt"), "--out", str(tmp_path / "m"), "--name", "tiny"]) == 0
    from livedemix import dsp
    from livedemix.separator import Separator

    sep = Separator(tmp_path / "m" / "tiny.json", stft=dsp.config("quality"), sample_rate=44100)
    card = json.loads((tmp_path / "m" / "tiny.json").read_text())
    assert card["training"]["train_songs"] == 3 and card["training"]["steps"] == 4
    out = sep.step(np.ones((2, 513), np.float32))
    assert out.shape == (4, 2, 513) and np.isfinite(out).all() and (out >= 0).all()


def test_loss_on_real_views_equals_the_complex_wiener_l1():
    g = torch.Generator().manual_seed(0)
    S = torch.randn(2, 4, 2, 33, 7, 2, generator=g)
    S = torch.view_as_complex(S)
    X = S.sum(1)
    V = torch.rand(2, 4, 2, 33, 7, generator=g)
    ref = (V - S.abs()).abs().mean() + 0.7 * (train.wiener(V, X) - S).abs().mean()
    torch.testing.assert_close(train.loss_fn(V, S, X, 0.7), ref, rtol=1e-5, atol=1e-6)


def test_compiled_loss_matches_eager_value_and_gradient():
    g = torch.Generator().manual_seed(1)
    S = torch.view_as_complex(torch.randn(1, 4, 2, 17, 5, 2, generator=g))
    X = S.sum(1)
    V0 = torch.rand(1, 4, 2, 17, 5, generator=g)
    fast = train.compiled(train.loss_fn, "the loss")
    results = []
    for fn in (train.loss_fn, fast):
        V = V0.clone().requires_grad_()
        loss = fn(V, S, X, 1.0)
        loss.backward()
        results.append((loss.detach(), V.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-7)


def test_input_statistics_normalise_each_feature_of_its_own_bin_and_channel():
    # Channels and bins with very different levels: each feature must come out at zero mean and
    # unit variance, which only holds if the statistics are laid out as features() reads them.
    torch.manual_seed(0)
    net = WaveNetSeparator(ModelConfig(bins=9, residual=4, skip=4, hidden=4, dilations=(1,)))
    level = torch.logspace(-0.5, 2, 18).reshape(1, 2, 9, 1)
    mag = torch.rand(3, 2, 9, 200) * level
    net.init_input_stats(mag)
    feat = net.features(mag).detach()
    assert torch.allclose(feat.mean(dim=(0, 2)), torch.zeros(18), atol=1e-4)
    assert torch.allclose(feat.std(dim=(0, 2)), torch.ones(18), atol=1e-2)


@pytest.mark.parametrize("local,lookahead", [(0, 0), (4, 0), (0, 2), (4, 2)])
def test_frame_stride_gives_the_full_forward_passes_chosen_frames(local, lookahead):
    """``--frame-stride`` runs the per-bin part on every S-th frame only: those frames' stem
    magnitudes must be exactly the full pass's (the refiner's causal patch included), also with
    lookahead, where the chosen frames' masks are computed L frames later."""
    torch.manual_seed(0)
    net = WaveNetSeparator(
        ModelConfig(
            bins=17,
            residual=8,
            skip=8,
            hidden=8,
            dilations=(1, 2, 4),
            local=local,
            local_patches=((5, 3), (3, 1)),
            lookahead=lookahead,
        )
    )
    if net.refiner is not None:  # its last layer starts at zero: make it count
        torch.nn.init.normal_(net.refiner.out.weight, std=0.3)
    mag = torch.rand(2, 2, 17, 23)
    full = net(mag)[..., : 23 - lookahead]  # the last L frames have no estimate
    assert full.abs().amin(dim=(0, 1, 2, 3)).gt(0).all()
    for stride in (2, 3):
        for offset in range(stride):
            got = net(mag, stride, offset)
            want = full[..., offset::stride]
            assert got.shape[-1] == want.shape[-1] > 5
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("stride", [2, 3])
def test_strided_spectra_are_the_full_stfts_chosen_frames(stride):
    stft = train.TorchStft(n_fft=64, hop=16, window="hann")
    stems = torch.randn(2, 4, 2, 16 * 40 + 5)
    S = stft(stems)
    T = S.shape[-1] - S.shape[-1] % stride
    for offset in range(stride):
        mag, Ss, Xs = train.strided_spectra(stft, stems, stride, offset)
        torch.testing.assert_close(mag, S.sum(1)[..., :T].abs(), rtol=0, atol=1e-4)
        torch.testing.assert_close(Ss, S[..., :T][..., offset::stride], rtol=0, atol=1e-4)
        torch.testing.assert_close(Xs, S.sum(1)[..., :T][..., offset::stride], rtol=0, atol=1e-4)


def test_training_with_a_frame_stride_runs_and_records_it(stems_folder, tmp_path):
    out = tmp_path / "strided"
    assert (
        train.main(["--data", str(stems_folder), "--out", str(out), *ARGS, "--local", "4", "--frame-stride", "3"]) == 0
    )
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 4 and ck["training"]["frame_stride"] == 3
    assert np.isfinite(ck["scores"]["valid_sdr"]["mean"])


def test_frame_stride_trains_a_refiner_with_lookahead(stems_folder, tmp_path):
    """--frame-stride with --lookahead and the local refiner: trains, and the checkpoint records both."""
    out = tmp_path / "la"
    train.main(
        [
            "--data",
            str(stems_folder),
            "--out",
            str(out),
            *ARGS,
            "--lookahead",
            "2",
            "--local",
            "4",
            "--frame-stride",
            "2",
        ]
    )
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["model_config"]["lookahead"] == 2 and ck["model_config"]["local"] == 4
    assert ck["training"]["frame_stride"] == 2 and np.isfinite(ck["scores"]["valid_sdr"]["mean"])


def test_lookahead_beyond_the_refiners_patch_is_refused():
    with pytest.raises(ValueError, match="lookahead of 3"):
        ModelConfig(local=4, lookahead=3)  # the default patch spans 3 frames


def test_removed_experiments_are_refused_and_the_shipped_config_still_loads(stems_folder, tmp_path, capsys):
    """The refiner's context / bin bias / depth, the side input plane and the SDR losses never
    shipped and were removed (git tag experiments-before-cleanup): the shipped checkpoint, which
    records them switched off, still loads; a config that switches one on is refused in one
    sentence, and the options are gone from the command line."""
    shipped = torch.load(ROOT / "factory" / "checkpoints" / "synthetic-v1.pt", map_location="cpu", weights_only=False)
    cfg = ModelConfig.from_dict(shipped["model_config"])
    assert cfg.local == 16 and cfg.local_patches == ((5, 3),)
    WaveNetSeparator(cfg).load_state_dict(shipped["state_dict"])  # every weight fits, none is left over
    # options added since (off by default: the same network) are the only new keys
    assert cfg.backward is False
    assert set(cfg.to_dict()) - {"backward"} == set(shipped["model_config"]) - set(REMOVED_OPTIONS)
    for key, on in (("local_context", True), ("local_bin_bias", True), ("local_depth", 2), ("side", True)):
        with pytest.raises(ValueError) as e:
            ModelConfig.from_dict(dict(shipped["model_config"], **{key: on}))
        assert str(e.value) == (
            f"this model uses {key}, an experiment that was removed (git tag experiments-before-cleanup "
            "has it): build it from that tag"
        )
    for flag in (["--side"], ["--local-context"], ["--local-bin-bias"], ["--local-depth", "2"], ["--loss", "sdr"]):
        with pytest.raises(SystemExit):
            train.main(["--data", str(stems_folder), "--out", str(tmp_path / "x"), *ARGS, *flag])
        assert "unrecognized arguments" in capsys.readouterr().err


def test_bf16_autocast_forward_is_close_to_float32_and_trains_float32_weights():
    """``--precision bf16`` runs the forward pass's matrix products in bfloat16: the stem
    magnitudes stay within bfloat16's rounding of the float32 pass, come back as float32, and
    the gradients reach the float32 weights."""
    torch.manual_seed(0)
    net = WaveNetSeparator(ModelConfig(bins=17, residual=8, skip=8, hidden=8, dilations=(1, 2, 4), local=4))
    torch.nn.init.normal_(net.refiner.out.weight, std=0.3)
    mag = torch.rand(2, 2, 17, 23) * 10
    full = net(mag)
    half = train.autocast_forward(net, torch.bfloat16)(mag, 2, 1)
    assert half.dtype == torch.float32
    ref = full[..., 1::2]
    assert (half - ref).abs().max() <= 0.05 * ref.abs().max()  # bf16 keeps 8 bits of mantissa
    assert (half - ref).abs().max() > 0  # (it did run in bf16)
    ref.sum().backward()
    used = [p.grad is not None for p in net.parameters()]  # (the last layer's residual is not)
    net.zero_grad(set_to_none=True)
    half.sum().backward()
    assert [p.grad is not None for p in net.parameters()] == used
    assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32) for p in net.parameters())


def test_training_in_bf16_runs_and_records_it(stems_folder, tmp_path):
    out = tmp_path / "bf16"
    assert (
        train.main(
            [
                "--data",
                str(stems_folder),
                "--out",
                str(out),
                *ARGS,
                "--local",
                "4",
                "--frame-stride",
                "2",
                "--precision",
                "bf16",
            ]
        )
        == 0
    )
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["training"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in ck["state_dict"].values() if v.is_floating_point())
    assert np.isfinite(ck["scores"]["valid_sdr"]["mean"])


def test_prefetched_batches_are_those_drawn_in_line(stems_folder):
    from factory.stems_data import BatchPrefetcher, ExampleSampler, load_split

    sampler = ExampleSampler(load_split(stems_folder, "train"), SR)
    prefetch = BatchPrefetcher(sampler, 3, seed=7)
    try:
        for step in (0, 1, 2, 5, 6):  # in order, then a jump (a resumed run)
            batch, rng = prefetch.get(step)
            ref_rng = np.random.default_rng([7, step])
            np.testing.assert_array_equal(batch, sampler.batch(ref_rng, 3))
            assert rng.integers(1 << 30) == ref_rng.integers(1 << 30)  # the step's later draws too
    finally:
        prefetch.close()


def test_mask_power_shapes_the_losses_like_the_runtimes_reconstruction():
    """--mask-power p: the loss's and the validation's masks are V^p / sum V^p, as the core's
    PhaseRecovery(mode="wiener", mask_power=p) makes them."""
    from livedemix.phase import PhaseRecovery

    g = torch.Generator().manual_seed(1)
    V = torch.rand(1, 4, 2, 513, 5, generator=g)
    S = torch.view_as_complex(torch.randn(1, 4, 2, 513, 5, 2, generator=g))
    X = S.sum(1)
    for p in (1.0, 1.5, 2.0):
        core = PhaseRecovery(4, 2, 1024, 256, mode="wiener", mask_power=p).process_stft(
            X[0].permute(2, 0, 1).numpy(), V[0].permute(3, 0, 1, 2).numpy()
        )
        ours = train.wiener(V, X, p)[0].permute(3, 0, 1, 2).numpy()
        np.testing.assert_allclose(ours, core, rtol=1e-4, atol=1e-5)
        ref = (V - S.abs()).abs().mean() + (train.wiener(V, X, p) - S).abs().mean()
        torch.testing.assert_close(train.loss_fn(V, S, X, 1.0, p), ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(train.loss_fn(V, S, X, 1.0, 1.0), train.loss_fn(V, S, X, 1.0, 2.0))


def test_training_with_a_mask_power_records_it_and_refuses_a_bad_one(stems_folder, tmp_path, capsys):
    out = tmp_path / "p1"
    assert train.main(["--data", str(stems_folder), "--out", str(out), *ARGS, "--mask-power", "1"]) == 0
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["training"]["mask_power"] == 1.0 and np.isfinite(ck["scores"]["valid_sdr"]["mean"])
    assert export.main(["--checkpoint", str(out / "best.pt"), "--out", str(tmp_path / "m"), "--name", "p1"]) == 0
    card = json.loads((tmp_path / "m" / "p1.json").read_text())  # the card starts at the trained power
    assert card["mask_power"] == {"wiener": 1.0, "pu-iter": 1.0, "anisotropic": 1.0}
    with pytest.raises(SystemExit):
        train.main(["--data", str(stems_folder), "--out", str(tmp_path / "x"), *ARGS, "--mask-power", "0"])
    assert "--mask-power 0 is out of range: give a value from 0.25 to 8" in capsys.readouterr().err


def test_warmup_raises_the_learning_rate_linearly_into_the_cosine(stems_folder, tmp_path):
    out = tmp_path / "warm"
    assert train.main(["--data", str(stems_folder), "--out", str(out), *ARGS, "--warmup-steps", "4"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    cosine = 0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * 2 / 4))  # the schedule after 2 of 4 steps
    assert log[0]["step"] == 2 and log[0]["lr"] == pytest.approx(2e-3 * cosine * 3 / 4)
    assert torch.load(out / "last.pt", weights_only=False)["training"]["warmup_steps"] == 4


def test_training_on_several_corpora_draws_from_all_and_records_them(stems_folder, tmp_path):
    """--data A B: songs of both folders (named apart, so the decode cache cannot mix them up),
    --valid-songs counted over both in order, and a record naming both corpora's libraries."""
    import shutil

    from factory.stems_data import load_splits

    other = tmp_path / "other"
    shutil.copytree(stems_folder, other)
    (other / "corpus.json").write_text(json.dumps({"timbres": "wide", "soundfonts": ["A.sf2", "B.sf2"]}))
    songs = load_splits([stems_folder, other], "train", cache=tmp_path / "cache")
    assert [s.name for s in songs] == [f"{r.name}/song{i}" for r in (stems_folder, other) for i in range(3)]
    assert len(load_splits([stems_folder, other], "train", limit=4)) == 4
    assert len(load_splits([stems_folder, other], "valid", limit=1)) == 1
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 6

    out = tmp_path / "both"
    assert train.main(["--data", str(stems_folder), str(other), "--out", str(out), *ARGS]) == 0
    rec = torch.load(out / "last.pt", weights_only=False)["training"]
    assert rec["train_songs"] == 6 and rec["data"] == [str(stems_folder), str(other)]
    assert rec["corpus_timbres"] == {"pool": "wide", "soundfonts": ["A.sf2", "B.sf2"]}
    assert train.corpora_timbres([other, other]) == {"pool": "wide+wide", "soundfonts": ["A.sf2", "B.sf2"]}


def test_checkpoints_are_written_whole_and_readable_like_other_outputs(tmp_path):
    """save_atomic: a new checkpoint is readable by all (not mkstemp's private 0600), a replaced
    one keeps its mode, and a failed save leaves the old file and no temporary behind."""
    path = tmp_path / "c.pt"
    train.save_atomic({"a": torch.zeros(3)}, path)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    train.save_atomic({"a": torch.ones(3)}, path)
    assert path.stat().st_mode & 0o777 == 0o640 and torch.load(path)["a"].sum() == 3
    with pytest.raises(Exception):
        train.save_atomic({"f": lambda: 0}, path)  # a lambda cannot be pickled
    assert torch.load(path)["a"].sum() == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
