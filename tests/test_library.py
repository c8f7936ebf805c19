"""Library jobs (`livedemix separate` over folders): the tree mirrored under OUT, worker
processes whose outputs equal a single process's, a journal that makes a killed job's rerun
finish only the rest, a worker killed mid-song retried once, and a corrupt file reported while
the others complete. Real processes, real kills, the committed tiny model."""

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
from livedemix.apps import library
from tiny_model import copy_committed_model

DEMO = Path(__file__).resolve().parents[1] / "python" / "livedemix" / "data" / "demo" / "mixture.flac"
STEMS = ("vocals", "drums", "bass", "other")
LONG = "long/marathon"  # the song a test kills a worker in: long enough to be caught mid-song


def cli(*args, **kw) -> list[str]:
    return [sys.executable, "-m", "livedemix", "separate", *map(str, args)]


def env() -> dict:
    e = dict(os.environ)
    if e.get("PYTHONPATH"):
        e["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in e["PYTHONPATH"].split(os.pathsep))
    return e


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return copy_committed_model("tiny", tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    """A small library: songs at the top and in subfolders (one of them long), a hidden file, a
    text file, and a corrupt WAV."""
    x, sr = sf.read(DEMO, dtype="float32")
    root = tmp_path_factory.mktemp("music")
    (root / "albums" / "first").mkdir(parents=True)
    (root / "albums" / "second").mkdir(parents=True)
    (root / "long").mkdir()
    (root / ".cache").mkdir()
    for i, (rel, start, secs) in enumerate(
        [
            ("intro.flac", 0, 2.0),
            ("albums/first/one.wav", 2, 3.0),
            ("albums/first/two.flac", 5, 2.5),
            ("albums/second/three.ogg", 8, 2.0),
            ("albums/second/four.flac", 11, 3.0),
            ("albums/second/five.wav", 14, 2.0),
        ]
    ):
        sf.write(root / rel, x[int(start * sr) : int((start + secs) * sr)], sr)
    loops = np.concatenate([x] * 4)  # ~76 s
    sf.write(root / "long" / "marathon.flac", loops, sr)
    sf.write(root / ".cache" / "hidden.flac", x[: sr // 2], sr)
    (root / "notes.txt").write_text("not audio")
    (root / "albums" / "second" / "broken.wav").write_bytes(
        b"RIFF\x00\x01\x00\x00WAVEfmt garbage" + bytes(range(256)) * 4
    )
    return root


SONGS = ["intro", "albums/first/one", "albums/first/two", "albums/second/three", "albums/second/four"]
SONGS += ["albums/second/five", LONG]


@pytest.fixture(scope="module")
def reference(music, model, tmp_path_factory) -> Path:
    """The single-process render (in this process, one song after another)."""
    out = tmp_path_factory.mktemp("ref")
    s = library.run_job([music], out, model=model, recursive=True, progress=False)
    assert s["done"] == len(SONGS) and len(s["failed"]) == 1
    return out


def audio_of(out: Path, song: str) -> dict[str, np.ndarray]:
    return {n: sf.read(out / song / f"{n}.wav", dtype="float32")[0] for n in STEMS}


def assert_same_outputs(out: Path, ref: Path) -> None:
    for song in SONGS:
        a, b = audio_of(out, song), audio_of(ref, song)
        for n in STEMS:
            assert np.array_equal(a[n], b[n]), (song, n)
    assert not list(out.rglob("*.part-*")), list(out.rglob("*.part-*"))


def journal_events(out: Path) -> list[dict]:
    path = out / library.JOURNAL
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill
            continue
    return events


def test_find_songs_mirrors_the_tree_and_skips_hidden_and_non_audio(music, tmp_path):
    out = tmp_path / "out"
    songs = library.find_songs([music], out, recursive=True)
    assert sorted(s.key for s in songs) == sorted(SONGS + ["albums/second/broken"])
    by_key = {s.key: s for s in songs}
    assert Path(by_key["albums/first/one"].folder) == out / "albums" / "first" / "one"
    top = library.find_songs([music], out, recursive=False)
    assert [s.key for s in top] == ["intro"]
    # a file named on the command line goes to OUT/<name>; the output tree is never walked into
    assert library.find_songs([music / "intro.flac"], out)[0].folder == str(out / "intro")
    inside = music / "albums" / "stems"
    inside.mkdir()
    (inside / "x").mkdir()
    sf.write(inside / "x" / "vocals.wav", np.zeros((100, 2), np.float32), 44100)
    try:
        assert all(not s.key.startswith("albums/stems") for s in library.find_songs([music], inside, True))
    finally:
        (inside / "x" / "vocals.wav").unlink()
        (inside / "x").rmdir()
        inside.rmdir()
    with pytest.raises(library.LibraryError, match="holds no audio files.*--recursive"):
        library.find_songs([music / "albums"], out, recursive=False)
    with pytest.raises(library.LibraryError, match="no such file or folder"):
        library.find_songs([music / "nope"], out)


def test_two_local_workers_equal_one_process_and_a_corrupt_file_is_only_reported(music, model, reference, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        cli(music, "-o", out, "-r", "--model", model, "--jobs", "2", "--json"),
        capture_output=True,
        text=True,
        timeout=300,
        env=env(),
    )
    assert r.returncode == 1, r.stderr  # finished, with a failure to report
    s = json.loads(r.stdout)
    assert s["done"] == len(SONGS) and s["skipped"] == 0 and s["backend"] == "local" and s["workers"] == 2
    assert [f["input"] for f in s["failed"]] == [str(music / "albums" / "second" / "broken.wav")]
    assert "could not be read as audio" in s["failed"][0]["reason"]
    assert s["audio_hours"] > 0 and s["x_realtime"] > 0
    assert json.loads((out / library.SUMMARY).read_text())["done"] == len(SONGS)
    pids = {res["worker_pid"] for res in s["results"] if res["status"] == "done"}
    assert len(pids) == 2 and os.getpid() not in pids  # really two worker processes
    assert_same_outputs(out, reference)
    # a rerun has nothing left to do
    again = library.run_job([music], out, model=model, recursive=True, jobs=2, progress=False)
    assert again["done"] == 0 and again["skipped"] == len(SONGS) and len(again["failed"]) == 1


def test_a_rerun_after_the_job_is_killed_finishes_only_the_rest(music, model, reference, tmp_path):
    out = tmp_path / "out"
    # the job, killed (its whole process group, as Ctrl-C or a crash would) once 2 songs are done
    p = subprocess.Popen(
        cli(music, "-o", out, "-r", "--model", model, "--jobs", "2", "--json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while sum(e["event"] == "done" for e in journal_events(out)) < 2:
        assert p.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(0.3)  # let the orphaned workers notice
    done_before = {e["song"] for e in journal_events(out) if e["event"] == "done"}
    assert 2 <= len(done_before) < len(SONGS)
    stamps = {song: (out / song / "vocals.wav").stat().st_mtime_ns for song in done_before}

    s = library.run_job([music], out, model=model, recursive=True, jobs=2, progress=False)
    assert s["skipped"] == len(done_before)
    assert s["done"] == len(SONGS) - len(done_before)
    redone = {
        Path(r["input"]).relative_to(music).with_suffix("").as_posix() for r in s["results"] if r["status"] == "done"
    }
    assert redone == set(SONGS) - done_before
    assert {song: (out / song / "vocals.wav").stat().st_mtime_ns for song in done_before} == stamps  # untouched
    assert_same_outputs(out, reference)


def _kill_a_worker_mid_song(p: subprocess.Popen, out: Path, song: str) -> int:
    """Wait until a worker is writing `song` (its temporary file names the worker's pid), kill it."""
    folder = out / song
    deadline = time.monotonic() + 180
    while True:
        assert p.poll() is None, "the job ended before the song started"
        assert time.monotonic() < deadline
        parts = list(folder.glob(".vocals.wav.part-*")) if folder.exists() else []
        if parts:
            pid = int(parts[0].name.rsplit("-", 1)[1])
            time.sleep(0.05)  # inside the song, not at its first byte
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.002)


def test_a_worker_killed_during_a_song_is_retried_and_the_song_completes_once(music, model, reference, tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen(
        cli(music, "-o", out, "-r", "--model", model, "--jobs", "2", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    killed = _kill_a_worker_mid_song(p, out, LONG)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 1, stderr  # the corrupt file
    s = json.loads(stdout)
    assert s["done"] == len(SONGS) and s["retried"] >= 1 and len(s["failed"]) == 1
    long = [r for r in s["results"] if r["input"].endswith("marathon.flac")][0]
    assert long["status"] == "done" and long["worker_pid"] != killed
    events = [e for e in journal_events(out) if e["song"] == LONG]
    assert [e["event"] for e in events].count("done") == 1 and events[-1]["attempts"] >= 2
    assert_same_outputs(out, reference)


def test_one_named_file_that_cannot_be_read_is_one_sentence(music, model, tmp_path):
    r = subprocess.run(
        cli(music / "albums" / "second" / "broken.wav", "-o", tmp_path / "out", "--model", model),
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("livedemix: ") and "could not be read as audio" in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


def test_ray_is_not_imported_without_ray(music, model, tmp_path):
    code = (
        "import sys; from livedemix.apps import library; "
        f"library.run_job([{str(music / 'intro.flac')!r}], {str(tmp_path / 'o')!r}, model={str(model)!r}, progress=False); "
        "print('ray' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.slow
def test_a_local_ray_cluster_of_two_cpus_equals_one_process_retries_a_killed_worker_and_reports_the_corrupt_file(
    music, model, reference, tmp_path
):
    pytest.importorskip("ray", reason="the cluster extra: pip install 'livedemix[cluster]'")
    out = tmp_path / "out"
    p = subprocess.Popen(
        cli(music, "-o", out, "-r", "--model", model, "--ray", "--jobs", "2", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        killed = _kill_a_worker_mid_song(p, out, LONG)
        stdout, stderr = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1 and stdout.strip(), stderr[-3000:]
    s = json.loads(stdout)
    assert s["backend"] == "ray" and s["done"] == len(SONGS) and len(s["failed"]) == 1
    assert "could not be read as audio" in s["failed"][0]["reason"]
    long = [r for r in s["results"] if r["input"].endswith("marathon.flac")][0]
    assert long["status"] == "done" and long["worker_pid"] != killed
    assert [e["event"] for e in journal_events(out) if e["song"] == LONG].count("done") == 1
    assert_same_outputs(out, reference)


def test_a_ray_address_where_no_cluster_answers_is_one_sentence(music, model, tmp_path):
    pytest.importorskip("ray", reason="the cluster extra: pip install 'livedemix[cluster]'")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        cli(music / "intro.flac", "-o", tmp_path / "out", "--model", model, "--ray", f"127.0.0.1:{port}"),
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"livedemix: no Ray cluster answers at 127.0.0.1:{port}")
    assert not (tmp_path / "out" / library.JOURNAL).exists()


def test_sigterm_stops_the_workers_at_once_and_leaves_no_part_files(music, model, tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen(
        cli(music, "-o", out, "-r", "--model", model, "--jobs", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    folder = out / LONG
    deadline = time.monotonic() + 120
    while not (folder.exists() and list(folder.glob(".vocals.wav.part-*"))):
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    worker = int(next(folder.glob(".vocals.wav.part-*")).name.rsplit("-", 1)[1])
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and "Traceback" not in err, err
    assert time.monotonic() - t0 < 10  # did not wait for the long song to finish
    assert not list(out.rglob("*.part-*"))
    assert not Path(f"/proc/{worker}").exists()
    assert any(e["event"] == "start" and e["song"] == LONG for e in journal_events(out))
    assert not any(e["event"] == "done" and e["song"] == LONG for e in journal_events(out))


@pytest.mark.slow
def test_a_ray_job_stopped_half_way_reruns_only_the_rest(music, model, reference, tmp_path):
    pytest.importorskip("ray", reason="the cluster extra: pip install 'livedemix[cluster]'")

    def rays() -> set[int]:
        r = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True)
        return {int(x) for x in r.stdout.split()}

    before = rays()
    out = tmp_path / "out"
    p = subprocess.Popen(
        cli(music, "-o", out, "-r", "--model", model, "--ray", "--jobs", "2", "--json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    deadline = time.monotonic() + 180
    while sum(e["event"] == "done" for e in journal_events(out)) < 2:
        assert p.poll() is None, "the job ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    p.send_signal(signal.SIGTERM)  # the driver stops its local cluster on the way out
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    done_before = {e["song"] for e in journal_events(out) if e["event"] == "done"}
    assert 2 <= len(done_before) < len(SONGS)
    time.sleep(1.0)
    assert rays() <= before  # no cluster left behind
    s = library.run_job([music], out, model=model, recursive=True, use_ray=True, jobs=2, progress=False)
    assert s["skipped"] == len(done_before) and s["done"] == len(SONGS) - len(done_before)
    assert_same_outputs(out, reference)


def test_stems_the_journal_does_not_know_are_kept_unless_forced(music, model, tmp_path):
    out = tmp_path / "out"
    (out / "intro").mkdir(parents=True)
    mine = out / "intro" / "vocals.wav"
    sf.write(mine, np.zeros((10, 2), np.float32), 44100)
    s = library.run_job([music], out, model=model, progress=False)  # top level only: intro
    assert s["done"] == 0 and "already exists" in s["failed"][0]["reason"] and "--force" in s["failed"][0]["reason"]
    assert sf.info(mine).frames == 10  # untouched
    s = library.run_job([music], out, model=model, progress=False, force=True)
    assert s["done"] == 1 and sf.info(mine).frames > 10


def test_a_second_job_on_the_same_output_folder_is_refused_and_a_torn_journal_line_is_survived(music, model, tmp_path):
    out = tmp_path / "out"
    first = library.Journal(out)  # a job holding the folder
    try:
        with pytest.raises(library.LibraryError, match="another livedemix job is writing to"):
            library.run_job([music], out, model=model, progress=False)
    finally:
        first.close()
    with open(out / library.JOURNAL, "a") as f:  # a line torn by a kill
        f.write('{"t": 1, "event": "done", "song": "int')
    s = library.run_job([music], out, model=model, progress=False)
    assert s["done"] == 1
    events = journal_events(out)  # every complete line parses; the torn one stays on its own
    assert [e["event"] for e in events] == ["start", "done"]
