"""Hostile and odd files through the CLI: the command as a user runs it (subprocess).
No file outside the output folder, no damaged input or existing output, no clipping without a
word, nothing left behind by a failure or a SIGTERM, one sentence instead of a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from livedemix.audio.files import AtomicOutputs, AudioFileError
from tiny_model import copy_committed_model


def livedemix(*args, env=None, preexec_fn=None, popen=False):
    e = dict(os.environ)
    if e.get("PYTHONPATH"):
        e["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in e["PYTHONPATH"].split(os.pathsep))
    e.update(env or {})
    cmd = [sys.executable, "-m", "livedemix", *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=e, preexec_fn=preexec_fn)


def one_sentence_failure(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("livedemix: "), r.stderr
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return copy_committed_model("tiny", tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("in") / "song.wav"
    sf.write(p, (rng.standard_normal((44100, 2)) * 0.1).astype(np.float32), 44100)
    return p


def test_a_header_claiming_1000_channels_is_refused_before_any_work(model, tmp_path):
    bomb = tmp_path / "bomb.wav"
    sf.write(bomb, np.zeros((3, 1000), np.float32), 44100)
    assert bomb.stat().st_size < 7000
    msg = one_sentence_failure(livedemix("separate", bomb, "-o", tmp_path / "o", "--model", model))
    assert "1000 channels" in msg
    assert not (tmp_path / "o").exists()


def test_a_fifo_or_device_as_input_is_refused_without_hanging(model, tmp_path):
    os.mkfifo(tmp_path / "in.wav")
    for src in (tmp_path / "in.wav", "/dev/zero"):
        one_sentence_failure(livedemix("separate", src, "-o", tmp_path / "o", "--model", model))


def test_card_stems_cant_write_outside_the_output_folder(model, song, tmp_path):
    evil = copy_committed_model("tiny", tmp_path / "evil")
    card = json.loads(evil.read_text())
    card["stems"] = ["/../../../../" + str(tmp_path / "notes"), "drums", "bass", "other"]
    evil.write_text(json.dumps(card))
    before = snapshot(tmp_path)
    one_sentence_failure(livedemix("separate", song, "-o", tmp_path / "out", "--model", evil))
    preset = tmp_path / "evil.toml"
    preset.write_text(f'schema = 1\n[engine]\nmodel = "{evil}"\n')
    one_sentence_failure(livedemix("separate", song, "-o", tmp_path / "out", "--preset", preset))
    assert snapshot(tmp_path) == {**before, "evil.toml": preset.read_bytes()}
    assert not (tmp_path / "notes.wav").exists() and not (tmp_path / "out").exists()


def test_preset_bus_names_that_collide_with_internal_buses_are_refused(model, song, tmp_path):
    preset = tmp_path / "collide.toml"
    preset.write_text(
        'schema = 1\n[buses."stem:vocals"]\noutputs = [1, 2]\n[buses."stem:vocals".stems.drums]\ngain_db = 0.0\n'
    )
    one_sentence_failure(livedemix("separate", song, "-o", tmp_path / "o", "--model", model, "--preset", preset))
    r = livedemix("presets", "validate", preset)
    assert r.returncode == 2 and "bad" in r.stderr


def test_force_never_overwrites_the_input(model, tmp_path):
    folder = tmp_path / "vocals"
    folder.mkdir()
    src = folder / "vocals.wav"  # -o tmp_path writes tmp_path/vocals/vocals.wav: the input itself
    sf.write(src, (np.random.default_rng(1).standard_normal((22050, 2)) * 0.1).astype(np.float32), 44100)
    before = src.read_bytes()
    msg = one_sentence_failure(livedemix("separate", src, "-o", tmp_path, "--model", model, "--force"))
    assert "input" in msg
    assert src.read_bytes() == before
    (tmp_path / "x" / "vocals").mkdir(parents=True)  # an output slot that is a symlink to the input
    (tmp_path / "x" / "vocals" / "drums.wav").symlink_to(src)
    one_sentence_failure(livedemix("separate", src, "-o", tmp_path / "x", "--model", model, "--force"))
    assert src.read_bytes() == before


def test_loud_stems_never_clip_silently(tmp_path):
    """WAV is float: a stem above full scale survives; FLAC gets one peak-safe gain, reported."""
    x = np.full((2, 4096), 1.43, np.float32)
    x[:, ::2] *= -1
    for fmt in ("wav", "flac"):
        with AtomicOutputs(tmp_path / fmt, ["a", "b"], fmt, 44100, 2) as out:
            out.write({"a": x, "b": 0.5 * x})
            files = out.commit()
        a = sf.read(files[0], dtype="float32", always_2d=True)[0].T
        b = sf.read(files[1], dtype="float32", always_2d=True)[0].T
        assert out.peak == pytest.approx(1.43)
        if fmt == "wav":
            assert out.gain_db == 0.0 and np.array_equal(a, x)
        else:
            g = 10 ** (out.gain_db / 20)
            assert out.gain_db < -3.0 and np.abs(a).max() < 1.0
            np.testing.assert_allclose(a, x * g, atol=1e-6)
            np.testing.assert_allclose(b, 0.5 * x * g, atol=1e-6)  # one gain for all: stems still sum


def test_cli_reports_the_peak_and_gain(model, tmp_path):
    loud = tmp_path / "loud.wav"
    t = np.arange(44100) / 44100
    sq = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    sf.write(loud, np.stack([sq, sq], 1) * 0.999, 44100, subtype="FLOAT")
    r = livedemix("separate", loud, "-o", tmp_path / "o", "--model", model, "--format", "flac", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"][0]  # the job's summary (apps/library.py)
    assert "peak" in res and "gain_db" in res
    peaks = [np.abs(sf.read(f, dtype="float32")[0]).max() for f in res["outputs"]]
    assert max(peaks) < 1.0  # nothing at the rail
    if res["peak"] > 0.999:
        assert res["gain_db"] < 0
    r = livedemix("separate", loud, "-o", tmp_path / "w", "--model", model)
    assert r.returncode == 0
    for f in (tmp_path / "w" / "loud").iterdir():
        assert sf.info(f).subtype == "FLOAT"


def test_commit_is_all_or_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "song"
    folder.mkdir()
    for n in ("vocals", "drums", "bass"):
        sf.write(folder / f"{n}.wav", np.zeros((10, 2), np.float32), 44100)
    old = snapshot(folder)
    (folder / "bass.wav").unlink()
    (folder / "bass.wav").mkdir()  # one target blocked
    old = snapshot(folder)
    y = np.ones((2, 100), np.float32) * 0.1
    with pytest.raises(AudioFileError, match="folder"):
        with AtomicOutputs(folder, ["vocals", "drums", "bass"], "wav", 44100, 2) as out:
            out.write({n: y for n in ("vocals", "drums", "bass")})
            out.commit()
    assert snapshot(folder) == old
    assert sorted(p.name for p in folder.iterdir()) == ["bass.wav", "drums.wav", "vocals.wav"]
    # a rename that fails half-way: the outputs already renamed go back, the old files too
    (folder / "bass.wav").rmdir()
    sf.write(folder / "bass.wav", np.zeros((10, 2), np.float32), 44100)
    old = snapshot(folder)
    real_replace, calls = os.replace, []

    def flaky(a, b):
        calls.append((a, b))
        if len(calls) == 5:  # vocals: backup + rename, drums: backup + rename, bass: backup fails
            raise OSError(28, "No space left on device")
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError):
        with AtomicOutputs(folder, ["vocals", "drums", "bass"], "wav", 44100, 2) as out:
            out.write({n: y for n in ("vocals", "drums", "bass")})
            out.commit()
    monkeypatch.undo()
    assert snapshot(folder) == old
    assert sorted(p.name for p in folder.iterdir()) == ["bass.wav", "drums.wav", "vocals.wav"]


def test_a_failed_run_leaves_no_empty_song_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with AtomicOutputs(tmp_path / "out" / "song", ["vocals"], "wav", 44100, 2) as out:
            out.write({"vocals": np.zeros((2, 10), np.float32)})
            raise RuntimeError("the separator failed")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_leaves_no_part_files_and_no_empty_folder(model, tmp_path):
    long = tmp_path / "long.wav"
    rng = np.random.default_rng(2)
    sf.write(long, (rng.standard_normal((44100 * 120, 2)) * 0.1).astype(np.float32), 44100)
    out = tmp_path / "o"
    p = livedemix("separate", long, "-o", out, "--model", model, popen=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.rglob(".*.part-*")):
        time.sleep(0.01)
    assert list(out.rglob(".*.part-*")), "the run never started writing"
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "Traceback" not in err
    assert [str(f) for f in out.rglob("*")] == []


def test_disk_full_is_one_sentence_and_leaves_nothing(model, song, tmp_path):
    import resource

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = livedemix("separate", song, "-o", tmp_path / "o", "--model", model, preexec_fn=small_disk)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    # the job's progress line names the song; the reason is one sentence
    assert any(line.startswith("livedemix: ") and "disk" in line for line in r.stderr.splitlines()), r.stderr
    assert [str(f) for f in (tmp_path).rglob("*")] == []


@pytest.mark.parametrize(
    "args",
    [
        ("bench", "stft", "--seconds", "0"),
        ("bench", "pipeline", "--seconds", "-2"),
        ("eval", ".", "--seconds", "-1"),
        ("eval", ".", "--seconds", "inf"),
        ("play", "x.wav", "--block", "1"),
        ("play", "x.wav", "--block", "100000"),
        ("live", "--block", "8"),
    ],
)
def test_cli_bounds_are_one_sentence(args):
    one_sentence_failure(livedemix(*args))


def test_eval_json_has_no_infinity_or_nan(model, tmp_path):
    song = tmp_path / "stems" / "one"
    song.mkdir(parents=True)
    rng = np.random.default_rng(3)
    v = (rng.standard_normal((44100, 2)) * 0.1).astype(np.float32)
    sf.write(song / "mixture.wav", v, 44100)
    sf.write(song / "vocals.wav", v, 44100)  # one true stem only: BSS Eval has no SIR for it
    r = livedemix("eval", tmp_path / "stems", "--model", model, "--json")
    assert r.returncode == 0, r.stderr

    def no_constants(c):
        raise AssertionError(f"{c} in eval's JSON")

    table = json.loads(r.stdout, parse_constant=no_constants)
    assert "null" in table.get("notes", "") or table["mean"]["vocals"]["SIR"] is None


def test_devices_without_jack_says_how_to_start_it():
    r = livedemix("devices", env={"JACK_DEFAULT_SERVER": f"no-such-server-{os.getpid()}", "JACK_NO_START_SERVER": "1"})
    assert r.returncode == 0, r.stderr
    assert "JACK server" in r.stderr and "jackd" in r.stderr


def test_a_native_abort_in_play_is_reported_in_one_sentence(tmp_path, song):
    """PortAudio's JACK host can abort() the process when a stream stops; `play`/`live` run
    under a parent that reports it. Here the child aborts at start-up (a sitecustomize that
    calls os.abort() in the supervised process stands in for PortAudio's assertion)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nif os.environ.get('LIVEDEMIX_SUPERVISED'):\n    os.abort()\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    r = livedemix("play", song, "--no-ui", env={"PYTHONPATH": path})
    assert r.returncode == 128 + signal.SIGABRT
    lines = [line for line in r.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("livedemix: ") and "SIGABRT" in lines[0], r.stderr


def test_a_song_named_dot_dot_cant_write_beside_the_output_folder(model, song, tmp_path):
    """'...wav' has the stem '..': its folder OUT/.. would put the stems beside OUT."""
    work = tmp_path / "work"
    work.mkdir()
    src = work / "...wav"
    src.write_bytes(song.read_bytes())
    before = snapshot(tmp_path)
    r = livedemix("separate", src, "-o", work / "out", "--model", model)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    after = snapshot(tmp_path)
    assert {k for k in after if k not in before and not k.startswith("work/out/")} == set(), after
