"""Library jobs: `livedemix separate` over folders of songs, resumable, on N local worker
processes or a Ray cluster.

    livedemix separate ~/Music -o /mnt/stems --recursive --jobs 2
    livedemix separate /nfs/music -o /nfs/stems --recursive --ray ray://head:10001

One song is one task. The inputs are walked (audio by extension, hidden files and folders
skipped, the output folder never walked into) and the folder tree is mirrored under OUT:
``DIR/a/b/song.flac`` → ``OUT/a/b/song/<stem>.wav`` (a file named on the command line →
``OUT/song/``). Each song's outputs are committed all together (written under temporary
names, then renamed), so a song is either complete or absent.

The journal (``OUT/.livedemix-journal.jsonl``, one JSON line per event, fsynced) records when
each song started and when it finished, with the input's size and modification time and the
job's settings (model hashes, preset, stems, phase, format, render). A rerun skips the songs
that are done with the same settings and an unchanged input, and redoes the ones that started
but never finished (the job was killed): it finishes only the rest. Outputs the journal does
not know about are never overwritten without ``--force``.

Workers load the model once (their engines are reused from song to song) and write their
song's files themselves, so OUT must be a path every worker sees (on a cluster: a network file
system mounted at the same path on every node; docs/LIBRARY.md). Only the driver writes the
journal and the summary. A song that can't be read is reported and skipped, never fatal; a song
whose worker process dies is retried on another (``--retries``, default 2); the job ends with a
summary on screen and in ``OUT/livedemix-summary.json``: done, skipped, failed with the reason,
audio hours and throughput.

``ray`` is imported only for ``--ray`` (``pip install livedemix[cluster]``).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import LivedemixError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".caf"}
)
JOURNAL = ".livedemix-journal.jsonl"
SUMMARY = "livedemix-summary.json"
DEFAULT_RETRIES = 2


class LibraryError(LivedemixError):
    """A library job that can't start (no inputs, a bad option); one sentence with the fix."""


@dataclass
class Song:
    input: str
    folder: str  # where its stems go
    key: str  # the folder relative to OUT, posix: the journal's name for the song
    seconds: float = 0.0
    size: int = 0
    mtime_ns: int = 0


@dataclass
class Settings:
    model: str | None = None
    preset: str | None = None
    stems: list[str] | None = None
    phase: str | None = None
    fmt: str = "wav"
    exact: bool | None = None  # None: the offline graph, else batched where it equals the live render
    block_size: int = 4096

    def fingerprint(self) -> str:
        """What decides a song's outputs: the model's files (by hash), the preset's content,
        stems, phase, format and render. A rerun with another fingerprint redoes the songs."""
        from ..presets import load_preset
        from ..separator import load_card, resolve_model

        model_ref = self.model
        preset_text = None
        if self.preset is not None:
            p = load_preset(self.preset)
            preset_text = Path(p.path).read_text() if getattr(p, "path", None) else str(self.preset)
            if model_ref is None:
                model_ref = p.engine.model
        card = load_card(resolve_model(model_ref))
        seq = card.get("sequence") or {}
        model = [card["onnx_sha256"], seq.get("onnx_sha256")]
        if self.exact is None and isinstance(card.get("offline"), dict):  # the default render uses it
            model.append(card["offline"]["onnx_sha256"])
        what = {
            "model": model,
            "preset": hashlib.sha256(preset_text.encode()).hexdigest() if preset_text else None,
            "stems": self.stems,
            "phase": self.phase,
            "fmt": self.fmt,
            "exact": self.exact,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Outcome:
    song: Song
    status: str  # done | skipped | failed
    reason: str | None = None
    result: dict = field(default_factory=dict)
    attempts: int = 0


# ---- finding the songs -------------------------------------------------------------------------
def _hidden(name: str) -> bool:
    return name.startswith(".")


def find_songs(inputs: list[str | Path], outdir: str | Path, recursive: bool = False) -> list[Song]:
    """The songs named by files and folders, each with its output folder (the tree mirrored
    under outdir), in a stable order. A named input that does not exist, or a folder without
    audio, is a LibraryError (a typo in the command, not a bad song)."""
    outdir = Path(outdir)
    out_real = os.path.realpath(outdir)
    songs: list[Song] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise LibraryError(f"{p}: no such file or folder: check the path")
        if not p.is_dir():
            songs.append(Song(str(p), str(outdir / p.stem), p.stem))
            continue
        found = 0
        for root, dirs, files in os.walk(p, followlinks=False):
            here = Path(root)
            # never descend into hidden folders or into the output tree itself
            dirs[:] = sorted(d for d in dirs if not _hidden(d) and os.path.realpath(here / d) != out_real and recursive)
            for name in sorted(files):
                f = here / name
                if _hidden(name) or f.suffix.lower() not in AUDIO_EXTENSIONS:
                    continue
                rel = f.relative_to(p).with_suffix("")
                songs.append(Song(str(f), str(outdir / rel), rel.as_posix()))
                found += 1
        if not found:
            hint = "" if recursive else " (pass --recursive to look in its subfolders)"
            raise LibraryError(
                f"{p} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}){hint}: point to a folder of songs"
            )
    if not songs:
        raise LibraryError("no input files: give audio files or folders")
    return songs


# ---- the journal -------------------------------------------------------------------------------
class Journal:
    """Append-only JSON lines in OUT, fsynced per event; the last event of a song wins. A line
    torn by a kill is ignored (and the next event starts on a line of its own). The journal is
    locked while a job runs: a second job on the same OUT is refused instead of racing it."""

    def __init__(self, outdir: Path, enabled: bool = True):
        self.path = Path(outdir) / JOURNAL
        self.enabled = enabled
        self.last: dict[str, dict] = {}
        self.known: set[str] = set()
        self._fd = None
        if not enabled:
            return
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LibraryError(
                f"another livedemix job is writing to {self.path.parent} (its journal is locked): wait for it to "
                "finish, or give this job another -o folder"
            ) from None
        self._fd = fd
        with open(self.path, "rb") as f:
            data = f.read()
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(e, dict) and isinstance(e.get("song"), str):
                self.last[e["song"]] = e
                self.known.add(e["song"])
        if data and not data.endswith(b"\n"):  # a line torn by a kill: close it
            os.write(fd, b"\n")

    def append(self, event: str, song: Song, **extra) -> None:
        if self._fd is None:
            return
        e = {"t": round(time.time(), 3), "event": event, "song": song.key, "input": song.input, **extra}
        os.write(self._fd, (json.dumps(e) + "\n").encode())
        os.fsync(self._fd)
        self.last[song.key] = e
        self.known.add(song.key)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def _output_names(settings: Settings) -> list[str]:
    from ..offline import MIX
    from ..separator import load_card, resolve_model

    names = settings.stems
    if names is None:
        model_ref = settings.model
        if model_ref is None and settings.preset is not None:
            from ..presets import load_preset

            model_ref = load_preset(settings.preset).engine.model
        names = load_card(resolve_model(model_ref))["stems"]
    return list(names) + ([MIX] if settings.preset else [])


def plan(
    songs: list[Song], journal: Journal, settings: Settings, fingerprint: str, force: bool
) -> tuple[list[Song], list[Outcome]]:
    """Split the songs into work to do and outcomes known now (skipped: done before with the same
    settings; failed: unreadable, colliding, or outputs the journal doesn't own)."""
    from ..audio.files import open_input

    names = _output_names(settings)
    inputs_real = {os.path.realpath(s.input) for s in songs}
    todo, known, seen = [], [], {}
    for s in songs:
        try:
            st = os.stat(s.input)
            s.size, s.mtime_ns = st.st_size, st.st_mtime_ns
            with open_input(s.input) as f:
                s.seconds = f.frames / f.samplerate
        except LivedemixError as e:
            known.append(Outcome(s, "failed", str(e)))
            continue
        except OSError as e:
            known.append(Outcome(s, "failed", f"{s.input} can't be read ({e.strerror}): check its permissions"))
            continue
        if s.folder in seen:
            known.append(
                Outcome(s, "failed", f"{s.input} and {seen[s.folder]} would both write to {s.folder}: rename one")
            )
            continue
        seen[s.folder] = s.input
        targets = [Path(s.folder) / f"{n}.{settings.fmt}" for n in names]
        if any(os.path.realpath(t) in inputs_real for t in targets):
            known.append(
                Outcome(s, "failed", f"an output of {s.input} is an input of this job: choose another -o folder")
            )
            continue
        last = journal.last.get(s.key)
        if (
            last is not None
            and last.get("event") == "done"
            and last.get("settings") == fingerprint
            and last.get("size") == s.size
            and last.get("mtime_ns") == s.mtime_ns
            and all(t.exists() for t in targets)
        ):
            known.append(Outcome(s, "skipped", "done in an earlier run", result=last.get("result", {})))
            continue
        existing = [t for t in targets if t.exists()]
        # This job's own outputs are redone without --force: a song it started and never
        # finished, or one done with the same settings whose input has changed since.
        ours = last is not None and (
            last.get("event") == "start" or (last.get("event") == "done" and last.get("settings") == fingerprint)
        )
        if existing and not ours and not force:
            other = last is not None and last.get("event") == "done"
            why = " by a job with other settings" if other else ""
            known.append(
                Outcome(
                    s,
                    "failed",
                    f"{existing[0]} already exists{why}: pass --force to overwrite, or choose another -o folder",
                )
            )
            continue
        todo.append(s)
    return todo, known


# ---- the work of one song (runs in a worker) -----------------------------------------------------
_ENGINES: dict = {}  # this worker's engines, reused from song to song: the model loads once


def _clean_stale_parts(folder: Path, names: list[str], fmt: str) -> int:
    """Remove the temporary files of an attempt that died (its worker was killed) before this
    one; returns how many there were (a song is only ever worked on by one task at a time)."""
    n_removed = 0
    if folder.is_dir():
        for n in names:
            for part in folder.glob(f".{n}.{fmt}.part-*"):
                part.unlink(missing_ok=True)
                n_removed += 1
    return n_removed


def _worker_init() -> None:
    """A local worker: Ctrl-C is the driver's to handle; SIGTERM (the driver stopping it) unwinds
    like an exception, so the song's temporary files are removed."""
    import signal

    def _terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)


def separate_song(song: dict, settings: dict) -> dict:
    """Separate one song; never raises for a bad song (the reason comes back instead)."""
    from .separate_files import separate_file

    s = Song(**song)
    st = Settings(**settings)
    try:
        stale = _clean_stale_parts(Path(s.folder), _output_names(st), st.fmt)
        r = separate_file(
            Path(s.input),
            Path(s.folder),
            model=st.model,
            preset=st.preset,
            stems=st.stems,
            phase=st.phase,
            fmt=st.fmt,
            block_size=st.block_size,
            quiet=True,
            exact=st.exact,
            engine_cache=_ENGINES,
        )
        r["worker_pid"] = os.getpid()
        r["worker_host"] = socket.gethostname()
        r["after_lost_attempt"] = stale > 0
        return {"ok": True, "result": r}
    except LivedemixError as e:
        return {"ok": False, "reason": str(e)}
    except MemoryError:
        return {"ok": False, "reason": f"{s.input}: out of memory while separating it"}
    except Exception as e:  # noqa: BLE001 — one bad song never ends the job; the summary names it
        return {"ok": False, "reason": f"{s.input}: {type(e).__name__}: {e}"}


# ---- progress ------------------------------------------------------------------------------------
def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """One bar over the whole job on a terminal: songs and audio time, speed and ETA. When
    stderr is a log file instead, one line per finished song (the same figures)."""

    def __init__(self, songs: int, audio_seconds: float, enabled: bool):
        self.songs, self.audio = songs, audio_seconds
        self.done_songs, self.done_audio = 0, 0.0
        self.t0 = time.perf_counter()
        self.enabled = enabled and sys.stderr.isatty()
        self.log = enabled and not self.enabled
        self._draw()

    def add(self, seconds: float, song: str = "", status: str = "done") -> None:
        self.done_songs += 1
        self.done_audio += seconds
        if self.log:
            wall = time.perf_counter() - self.t0
            speed = self.done_audio / wall if wall > 0 else 0.0
            sys.stderr.write(
                f"[{self.done_songs}/{self.songs}] {status}: {song} ({_hms(self.done_audio)}/{_hms(self.audio)} "
                f"audio, {speed:.1f}x)\n"
            )
            sys.stderr.flush()
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        frac = self.done_audio / self.audio if self.audio else 1.0
        wall = time.perf_counter() - self.t0
        speed = self.done_audio / wall if wall > 0 else 0.0
        eta = (self.audio - self.done_audio) / speed if speed > 0 else float("nan")
        bar = "#" * int(30 * frac)
        sys.stderr.write(
            f"\r[{bar:<30}] {self.done_songs}/{self.songs} songs  {_hms(self.done_audio)}/{_hms(self.audio)} audio"
            f"  {speed:5.1f}x  ETA {_hms(eta) if eta == eta else '?'}  "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


# ---- back ends -----------------------------------------------------------------------------------
def _run_inline(todo, settings, on_start, on_result, retries):
    for s in todo:
        on_start(s)
        on_result(s, separate_song(asdict(s), asdict(settings)), 1)


def _run_local(todo, settings, on_start, on_result, retries, jobs):
    """N worker processes, one song each at a time. A worker that dies breaks the pool (and
    ends the songs of the others): the pool is rebuilt and those songs are retried."""
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no forked onnxruntime threads
    attempts = {s.key: 0 for s in todo}
    pending = deque(todo)
    st = asdict(settings)
    running: dict = {}

    def lost(s: Song) -> None:
        if attempts[s.key] > retries:
            reason = f"{s.input}: its worker process died on each of {attempts[s.key]} attempts"
            on_result(s, {"ok": False, "reason": reason}, attempts[s.key])
        else:
            pending.appendleft(s)

    def new_pool():
        return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init)

    pool = new_pool()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                s = pending.popleft()
                if attempts[s.key] == 0:
                    on_start(s)
                attempts[s.key] += 1
                running[pool.submit(separate_song, asdict(s), st)] = s
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in finished:
                s = running.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    broken = True
                    lost(s)
                    continue
                on_result(s, res, attempts[s.key])
            if broken:  # the others' futures end too (a result that made it through still counts)
                for fut in list(running):
                    s = running.pop(fut)
                    try:
                        on_result(s, fut.result(), attempts[s.key])
                    except BrokenProcessPool:
                        lost(s)
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
    except BaseException:  # Ctrl-C, SIGTERM: stop the workers now (they remove their temporary files)
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for proc in procs:
            proc.terminate()
        # Never wait on the pool's own shutdown here: a signal that lands inside the executor's
        # machinery can leave it waiting without end. Wait for the processes, bounded, instead.
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
        raise
    pool.shutdown(wait=True, cancel_futures=True)


def _probe(address: str, timeout: float = 10.0) -> None:
    """A Ray address (HOST:PORT or ray://HOST:PORT) that accepts a TCP connection, else one sentence."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    if hostport in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise LibraryError(
            f"no Ray cluster answers at {address} ({e}): start one with `ray start --head` on the head node, "
            "or pass its address as HOST:6379 (or ray://HOST:10001)"
        ) from None


def _run_ray(todo, settings, on_start, on_result, retries, address, jobs):
    import contextlib

    # Ray prints its own notices (a worker that died, ...) to stdout: keep stdout for our output.
    with contextlib.redirect_stdout(sys.stderr):
        return _run_ray_tasks(todo, settings, on_start, on_result, retries, address, jobs)


def _run_ray_tasks(todo, settings, on_start, on_result, retries, address, jobs):
    try:
        import ray
    except ImportError:
        raise LibraryError(
            "--ray needs Ray, which is not installed: pip install 'livedemix[cluster]' (on every node)"
        ) from None
    import signal
    import threading

    started_here = not ray.is_initialized()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: h for sig in (signal.SIGTERM, signal.SIGINT) if (h := signal.getsignal(sig)) is not None}
    if started_here:
        kw = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
        if address:
            _probe(address)  # Ray itself waits for an address that never answers, without end
            try:
                ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise LibraryError(
                    f"can't join the Ray cluster at {address} ({str(e).splitlines()[0][:120]}): check the address "
                    "(`ray status` on the head node) and, for a cluster with token authentication (Ray 2.59+ "
                    "clusters started with `ray start`), set RAY_AUTH_MODE=token here and give the cluster's token "
                    "in ~/.ray/auth_token or RAY_AUTH_TOKEN"
                ) from None
        else:  # a local cluster of this machine's cores (or --jobs of them)
            ray.init(num_cpus=jobs or os.cpu_count() or 1, **kw)
        for sig, handler in handlers.items():  # ray.init takes SIGTERM over: ours unwinds and shuts Ray down
            signal.signal(sig, handler)
    try:
        task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(separate_song)
        st = ray.put(asdict(settings))
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        window = 4 * cpus
        queue = list(reversed(todo))
        running = {}
        while queue or running:
            while queue and len(running) < window:
                s = queue.pop()
                on_start(s)
                running[task.remote(asdict(s), st)] = s
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                s = running.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as e:  # noqa: BLE001 — retries used up (WorkerCrashedError, node lost, ...)
                    res = {"ok": False, "reason": f"{s.input}: the task failed on the cluster ({type(e).__name__})"}
                on_result(s, res, None)
        return cpus
    finally:
        if started_here:
            ray.shutdown()


# ---- the job -------------------------------------------------------------------------------------
def run_job(
    inputs: list[str],
    outdir: str,
    *,
    model=None,
    preset=None,
    stems=None,
    phase=None,
    fmt: str = "wav",
    force: bool = False,
    exact: bool | None = None,
    recursive: bool = False,
    jobs: int | None = None,
    ray_address: str | None = None,
    use_ray: bool = False,
    retries: int = DEFAULT_RETRIES,
    progress: bool = True,
) -> dict:
    """Run a library job; returns the summary (also written to OUT/livedemix-summary.json)."""
    from ..audio.files import FORMATS, AudioFileError
    from ..offline import StreamingSeparation

    if fmt not in FORMATS:
        raise AudioFileError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    if jobs is not None and jobs < 1:
        raise LibraryError(f"--jobs {jobs}: give at least 1 worker process")
    if retries < 0:
        raise LibraryError(f"--retries {retries}: give 0 or more")
    t0 = time.perf_counter()
    settings = Settings(
        model=None if model is None else str(model),
        preset=None if preset is None else str(preset),
        stems=list(stems) if stems else None,
        phase=phase,
        fmt=fmt,
        exact=exact,
    )
    # Every setting is checked here, once, before any work: a bad model, preset or stem is one
    # sentence for the whole job, not one failure per song.
    StreamingSeparation(44100, 2, model=model, preset=preset, stems=settings.stems, phase=phase, exact=exact)
    fingerprint = settings.fingerprint()
    songs = find_songs(inputs, outdir, recursive)
    out = Path(outdir)
    # One file named on the command line is today's `separate`: no journal (a rerun redoes it,
    # existing stems need --force, and a failed or interrupted run leaves nothing behind).
    one_file = len(songs) == 1 and not any(Path(i).is_dir() for i in inputs)
    journal = Journal(out, enabled=not one_file)  # locked until the job ends
    bar = None
    try:
        todo, outcomes = plan(songs, journal, settings, fingerprint, force)
        if one_file and outcomes and outcomes[0].status == "failed":
            raise AudioFileError(outcomes[0].reason)  # one song named: its problem is the command's
        by_key = {o.song.key: o for o in outcomes}
        bar = Progress(len(todo), sum(s.seconds for s in todo), progress)

        def on_start(s: Song) -> None:
            journal.append("start", s, settings=fingerprint, size=s.size, mtime_ns=s.mtime_ns)

        def on_result(s: Song, res: dict, attempts) -> None:
            if res.get("ok"):
                r = res["result"]
                journal.append(
                    "done",
                    s,
                    settings=fingerprint,
                    size=s.size,
                    mtime_ns=s.mtime_ns,
                    result=_slim(r),
                    attempts=attempts,
                )
                by_key[s.key] = Outcome(s, "done", result=r, attempts=attempts or 1)
            else:
                journal.append("failed", s, settings=fingerprint, reason=res["reason"])
                by_key[s.key] = Outcome(s, "failed", res["reason"], attempts=attempts or 1)
            bar.add(s.seconds, s.key, "done" if res.get("ok") else "failed")

        workers = jobs or 1
        backend = "ray" if use_ray else ("local" if workers > 1 else "inline")
        if todo:
            if use_ray:  # a local cluster gets --jobs CPUs (default: all); a running one has its own
                workers = _run_ray(todo, settings, on_start, on_result, retries, ray_address, jobs)
            elif workers > 1:
                _run_local(todo, settings, on_start, on_result, retries, workers)
            else:
                _run_inline(todo, settings, on_start, on_result, retries)
    finally:
        if bar is not None:
            bar.close()
        journal.close()
    wall = time.perf_counter() - t0
    ordered = [by_key[s.key] for s in songs if s.key in by_key]
    summary = _summary(ordered, wall, backend, workers, out, fingerprint, journal.enabled)
    if one_file and ordered and ordered[0].status == "failed":
        raise AudioFileError(ordered[0].reason)
    _write_json_atomic(out / SUMMARY, summary)
    return summary


def _slim(r: dict) -> dict:
    keys = ("outputs", "seconds", "wall_seconds", "peak", "gain_db", "worker_pid", "worker_host", "after_lost_attempt")
    return {k: r[k] for k in keys if k in r}


def _summary(
    outcomes: list[Outcome], wall: float, backend: str, jobs: int, out: Path, fingerprint: str, journaled: bool
) -> dict:
    done = [o for o in outcomes if o.status == "done"]
    audio = sum(o.song.seconds for o in done)
    return {
        "output": str(out),
        "songs": len(outcomes),
        "done": len(done),
        "skipped": sum(o.status == "skipped" for o in outcomes),
        "failed": [{"input": o.song.input, "reason": o.reason} for o in outcomes if o.status == "failed"],
        "retried": sum(1 for o in done if (o.attempts or 1) > 1 or o.result.get("after_lost_attempt")),
        "audio_hours": round(audio / 3600, 4),
        "wall_seconds": round(wall, 2),
        "x_realtime": round(audio / wall, 2) if wall > 0 else None,
        "audio_hours_per_hour": round(audio / wall, 2) if wall > 0 else None,
        "backend": backend,
        "workers": jobs,
        "settings": fingerprint,
        "journal": str(out / JOURNAL) if journaled else None,
        "results": [
            {"input": o.song.input, "status": o.status, **({"reason": o.reason} if o.reason else {}), **o.result}
            for o in outcomes
        ],
    }


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def format_summary(s: dict) -> str:
    retried = f" ({s['retried']} retried after a lost worker)" if s.get("retried") else ""
    lines = [
        f"{s['done']} done, {s['skipped']} skipped (done before), {len(s['failed'])} failed of {s['songs']} songs"
        + retried,
        f"{_hms(s['audio_hours'] * 3600)} of audio ({s['audio_hours']:.3f} h) in "
        + (f"{s['wall_seconds']:.1f} s" if s["wall_seconds"] < 60 else _hms(s["wall_seconds"]))
        + (f" = {s['x_realtime']:.1f}x real time" if s.get("x_realtime") else "")
        + f" on {s['workers']} {s['backend']} worker(s); stems in {s['output']}",
    ]
    for f in s["failed"]:
        lines.append(f"  failed: {f['reason']}")
    lines.append(f"summary: {Path(s['output']) / SUMMARY}")
    return "\n".join(lines)


def print_peak_notes(summary: dict) -> None:
    """The notes that `separate` prints for stems louder than full scale (never silently clipped)."""
    from types import SimpleNamespace

    from .separate_files import _peak_note

    for r in summary["results"]:
        if r.get("status") == "done" and r.get("peak", 0) > 1.0:
            note = _peak_note(Path(r["input"]), SimpleNamespace(peak=r["peak"], gain_db=r.get("gain_db", 0.0)))
            print(note, file=sys.stderr)
