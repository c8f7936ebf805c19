"""`livedemix separate` and `livedemix demo` run as a user runs them (subprocess), including
every kind of bad input: one sentence, a non-zero exit, no traceback, no partial files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_model import export_tiny_model  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo"


def run(*args, cwd=None):
    env = dict(os.environ)
    if env.get("PYTHONPATH"):  # keep a source checkout importable from another working directory
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep))
    return subprocess.run(
        [sys.executable, "-m", "livedemix", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return export_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    x, sr = sf.read(DEMO / "mixture.flac", dtype="float32")
    p = tmp_path_factory.mktemp("in") / "song.flac"
    sf.write(p, x[: 3 * sr], sr)
    return p


def one_sentence_failure(r):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("livedemix: "), r.stderr
    return lines[0]


def test_separate_writes_stems_and_preset_mix(model, song, tmp_path):
    out = tmp_path / "out"
    r = run("separate", song, "-o", out, "--model", model, "--preset", "karaoke", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"][0]
    names = sorted(p.name for p in (out / "song").iterdir())
    assert names == ["bass.wav", "drums.wav", "mix.wav", "other.wav", "vocals.wav"]
    x, sr = sf.read(song, dtype="float32")
    stems = {n: sf.read(out / "song" / f"{n}.wav", dtype="float32")[0] for n in ("vocals", "drums", "bass", "other")}
    assert all(s.shape == x.shape for s in stems.values())
    total = sum(stems.values())
    assert np.max(np.abs(total - x)) < 1e-4  # 24-bit files of stems that sum to the mixture
    mix = sf.read(out / "song" / "mix.wav", dtype="float32")[0]
    assert np.max(np.abs(mix - (total - stems["vocals"]))) < 1e-4
    assert res["latency_samples"] == 512 and res["real_time_factor"] > 0
    # refuses to overwrite, then --force overwrites; --stems subset; flac output
    msg = one_sentence_failure(run("separate", song, "-o", out, "--model", model))
    assert "already exists" in msg and "--force" in msg
    r = run("separate", song, "-o", out, "--model", model, "--stems", "vocals,bass", "--format", "flac", "--force")
    assert r.returncode == 0, r.stderr
    assert (out / "song" / "vocals.flac").exists() and not (out / "song" / "drums.flac").exists()


def test_separate_mono_and_48k_inputs(model, tmp_path):
    x, sr = sf.read(DEMO / "mixture.flac", dtype="float32")
    import soxr

    mono = tmp_path / "mono.wav"
    sf.write(mono, x[: 2 * sr, 0], sr)
    hi = tmp_path / "hi.wav"
    sf.write(hi, soxr.resample(x[: 2 * sr], sr, 48000), 48000)
    r = run("separate", mono, hi, "-o", tmp_path / "o", "--model", model)
    assert r.returncode == 0, r.stderr
    v, vsr = sf.read(tmp_path / "o" / "mono" / "vocals.wav")
    assert v.ndim == 1 and len(v) == 2 * sr
    h, hsr = sf.read(tmp_path / "o" / "hi" / "drums.wav")
    assert hsr == 48000 and h.shape == (2 * 48000, 2)


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty", "rate", "folder", "model", "stem", "preset"])
def test_bad_input_is_one_sentence_and_leaves_no_files(model, song, tmp_path, case):
    out = tmp_path / "out"
    args = [song, "-o", out, "--model", model]
    if case == "missing":
        args[0] = tmp_path / "nope.wav"
    elif case == "corrupt":
        bad = tmp_path / "bad.wav"
        bad.write_bytes(b"RIFF\x00\x01\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4)
        args[0] = bad
    elif case == "empty":
        empty = tmp_path / "empty.wav"
        sf.write(empty, np.zeros((0, 2), np.float32), 44100)
        args[0] = empty
    elif case == "rate":
        low = tmp_path / "low.wav"
        sf.write(low, np.zeros((4000, 2), np.float32), 4000)
        args[0] = low
    elif case == "folder":
        args[0] = tmp_path
    elif case == "model":
        args[4] = "no-such-model"
    elif case == "stem":
        args += ["--stems", "vocals,guitar"]
    elif case == "preset":
        args += ["--preset", "no-such-preset"]
    msg = one_sentence_failure(run("separate", *args))
    print(case, "→", msg)
    assert not out.exists() or not any(out.rglob("*.*")), list(out.rglob("*"))


def test_demo_runs_on_the_bundled_song(model, tmp_path):
    r = run("demo", "--model", model, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert {row["stem"] for row in rep["stems"]} == {"vocals", "drums", "bass", "other"}
    assert rep["latency_samples"] == 512 and 0 < rep["real_time_factor"] < 1
    names = sorted(p.name for p in (tmp_path / "livedemix-demo").iterdir())
    assert names == ["bass.wav", "drums.wav", "karaoke.wav", "other.wav", "vocals.wav"]


def test_eval_scores_a_musdb_layout_folder(model, tmp_path):
    song = tmp_path / "stems" / "demo"
    song.mkdir(parents=True)
    for name in ("mixture", "vocals", "drums", "bass", "other"):
        x, sr = sf.read(DEMO / f"{name}.flac", dtype="float32")
        sf.write(song / f"{name}.wav", x[10 * sr : 13 * sr], sr)
    r = run("eval", tmp_path / "stems", "--model", model, "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    assert t["songs"] == 1 and set(t["mean"]) == {"vocals", "drums", "bass", "other"}
    assert all(np.isfinite(v["SDR"]) for v in t["mean"].values())
    msg = one_sentence_failure(run("eval", tmp_path / "nothing-here", "--model", model))
    assert "not a folder" in msg


def test_bench_pipeline_reports_budget_shares(model):
    r = run("bench", "pipeline", "--model", model, "--seconds", "0.2", "--json")
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)["pipeline"]["engine"]
    assert e["hop"] == 256 and e["stems"] == 4
    assert 0 < e["real_time_factor"] and e["per_hop_us"]["p50"] <= e["per_hop_us"]["p99.9"]
    assert e["separator_step_us"] > 0 and e["phase_us"] > 0
    # CPU per hop in both lines, so the cold factor compares like with like
    assert 0 < e["mean_cpu_us"] and e["paced"]["cold_factor"] == pytest.approx(
        e["paced"]["mean_cpu_us"] / e["mean_cpu_us"]
    )
    assert set(e["machine"]) == {"load_1min", "cores", "busy"}
    # the paced run keeps real time: 2 s of hops take about 2 s, each hop's CPU is counted
    p = e["paced"]
    assert p["hops"] == int(2.0 * 44100 / 256) and p["mean_cpu_us"] > 0
    assert p["cpu_share"] == pytest.approx(p["mean_cpu_us"] / e["hop_budget_us"])
    assert e["mask_power"] == 2.0  # the tiny model's card has no calibrated power
    from livedemix.apps.bench_pipeline import format_pipeline

    report = json.loads(r.stdout)["pipeline"]
    assert "mask power 2" in format_pipeline(report) and "µs CPU per hop" in format_pipeline(report)
    report["engine"]["machine"] = {"load_1min": 9.0, "cores": 2, "busy": True}
    assert format_pipeline(report).startswith("warning: this machine is busy (load 9.0 on 2 cores)")


def test_bench_pipeline_step_against_a_baseline_model(model):
    """The step of one model against another's in one process, as a ratio; the 0.9 M-parameter
    default costs several times the tiny test model's step (best of alternating rounds)."""
    from livedemix.apps.bench_pipeline import format_pipeline, step_against_baseline

    same = step_against_baseline(model, model, frames=100, rounds=3)
    assert same["model"] == same["baseline"] and same["ratio"] == same["model_step_us"] / same["baseline_step_us"]
    big = step_against_baseline(None, model, frames=100, rounds=3)
    assert big["model"] == "default" and big["ratio"] > 1.0
    r = run("bench", "pipeline", "--model", model, "--baseline-model", model, "--seconds", "0.2", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)["pipeline"]
    assert set(report["step_vs_baseline"]) == {"model", "baseline", "model_step_us", "baseline_step_us", "ratio"}
    assert "separator step against" in format_pipeline(report)
