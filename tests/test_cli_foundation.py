"""`livedemix info` and `livedemix bench stft` run as a user runs them (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "livedemix", *args], capture_output=True, text=True, check=check, timeout=300
    )


def test_info_json_reports_version_build_and_exact_latencies():
    info = json.loads(run("info", "--json").stdout)
    import livedemix

    assert info["version"] == livedemix.__version__
    assert "-O3" in info["build"]["flags"]
    assert info["build"]["fft"]
    cfgs = info["stft_configs"]
    assert cfgs["quality"]["latency_samples"] == 512
    assert cfgs["low-latency"]["latency_samples"] == 256
    assert cfgs["reference"]["latency_samples"] == 1024
    assert abs(cfgs["quality"]["latency_ms_at_44100"] - 11.61) < 0.01


def test_info_text():
    out = run("info").stdout
    assert "low-latency" in out and "5.80 ms" in out


def test_bench_stft_json_runs_and_compares_with_numpy():
    r = json.loads(run("bench", "stft", "--seconds", "0.2", "--json").stdout)["stft"]
    assert r["native_frames_per_s"] > 0 and r["numpy_frames_per_s"] > 0
    assert r["speedup_vs_numpy"] > 1.0  # a ratio measured in one process, not a wall-clock claim


def test_no_command_prints_help_and_exits_2():
    p = run(check=False)
    assert p.returncode == 2 and "usage" in p.stdout.lower()
