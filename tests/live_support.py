"""Real parts for the live tests: a JACK server with the dummy driver, JACK clients that play and
record with sample-exact JACK frame times, the livedemix CLI as a subprocess, and a model.

The server runs in synchronous mode (``-S``): the graph waits for every client each period, so
a client that the scheduler wakes late on a busy machine costs time, not samples, and a capture
is exact. JACK still reports such a late period as an xrun, to every client alike; the tests
compare livedemix's count with what a second client saw.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "python" / "livedemix" / "models" / "default.json"
DEMO = REPO / "python" / "livedemix" / "data" / "demo" / "mixture.flac"


_registry_checked = False


def _clear_stale_registry() -> None:
    """JACK keeps every server it has seen in /dev/shm/jack-shm-registry (8 at most); servers
    killed by an interrupted earlier test run stay there and a later start fails with "Too
    many servers already active". Once per test process, before this process has attached to
    the registry, and only with no jackd running (then nothing in it is live), remove it."""
    global _registry_checked
    if _registry_checked:
        return
    _registry_checked = True
    if subprocess.run(["pgrep", "-x", "jackd"], capture_output=True).returncode != 0:
        for f in Path("/dev/shm").glob("jack*"):
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)


class JackServer:
    """``jackd -S --no-realtime -d dummy -r RATE -p PERIOD`` under a unique server name."""

    def __init__(self, rate: int = 44100, period: int = 256, outputs: int = 4, inputs: int = 2):
        if shutil.which("jackd") is None:
            pytest.fail("jackd is needed for the live tests: apt-get install jackd2 libportaudio2")
        self.name = f"ldtest{os.getpid()}_{rate}_{time.monotonic_ns() % 100000}"
        self.rate, self.period = rate, period
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"{self.name}.log", "w+")
        _clear_stale_registry()
        self.proc = subprocess.Popen(
            [
                "jackd",
                "-n",
                self.name,
                "-S",
                "-t",
                "5000",
                "--no-realtime",
                "-d",
                "dummy",
                "-r",
                str(rate),
                "-p",
                str(period),
                "-C",
                str(inputs),
                "-P",
                str(outputs),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import jack

        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                self.log.seek(0)
                pytest.fail(f"jackd exited at start: {self.log.read()[-2000:]}")
            try:
                c = jack.Client("probe", no_start_server=True, servername=self.name)
                c.close()
                return
            except jack.JackOpenError:
                time.sleep(0.1)
        self.proc.kill()  # never leave a half-started server behind
        self.proc.wait()
        self.log.seek(0)
        pytest.fail(f"jackd did not come up within {timeout:.0f} s: {self.log.read()[-1000:]}")

    def activate_env(self, monkeypatch=None) -> None:
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ["JACK_NO_START_SERVER"] = "1"

    def stop(self) -> None:
        if "livedemix.audio.devices" in sys.modules:  # PortAudio's JACK client leaves first
            sys.modules["livedemix.audio.devices"].release_portaudio()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        for f in Path("/dev/shm").glob(f"*{self.name}*"):  # left behind by a server that was killed
            f.unlink(missing_ok=True)


class Recorder:
    """A JACK client with input ports that records into a preallocated array, stamped with the
    JACK frame time of every period, and counts the server's xruns."""

    def __init__(
        self, server: JackServer, name: str = "ldcap", channels: int = 2, seconds: float = 30.0, midi: bool = False
    ):
        import jack

        self.client = jack.Client(name, no_start_server=True, servername=server.name)
        self.ports = [self.client.inports.register(f"in_{i}") for i in range(channels)]
        #: with ``midi``: a MIDI input whose events are kept as (frame time, bytes)
        self.midi_in = self.client.midi_inports.register("midi_in") if midi else None
        self.midi_events: list[tuple[int, bytes]] = []
        self.data = np.zeros((channels, int(seconds * server.rate)), np.float32)
        self.t0 = None  # frame time of data[:, 0]
        self.pos = 0
        self.xruns = 0
        self.recording = True
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delay):
        self.xruns += 1

    def _process(self, frames):
        if not self.recording:
            return
        t = self.client.last_frame_time
        if self.t0 is None:
            self.t0 = t
        p = t - self.t0
        if p + frames > self.data.shape[1]:
            self.recording = False
            return
        for i, port in enumerate(self.ports):
            self.data[i, p : p + frames] = port.get_array()
        if self.midi_in is not None:
            for offset, data in self.midi_in.incoming_midi_events():
                self.midi_events.append((t + offset, bytes(data)))
        self.pos = p + frames

    def connected(self) -> bool:
        return all(self.client.get_all_connections(p) for p in self.ports)

    def stop(self) -> np.ndarray:
        self.recording = False
        time.sleep(0.05)
        self.client.deactivate()
        self.client.close()
        return self.data[:, : self.pos]


class Player:
    """A JACK client with output ports that plays ``signal`` (channels, n) from a given frame time."""

    def __init__(self, server: JackServer, name: str = "ldsrc", channels: int = 2):
        import jack

        self.client = jack.Client(name, no_start_server=True, servername=server.name)
        self.ports = [self.client.outports.register(f"out_{i}") for i in range(channels)]
        self.signal = np.zeros((channels, 0), np.float32)
        self.start = None
        self.client.set_process_callback(self._process)
        self.client.activate()

    def play(self, signal: np.ndarray, delay_frames: int = 2048) -> int:
        """Schedule ``signal`` to start ``delay_frames`` from now; returns its first frame time."""
        self.signal = np.ascontiguousarray(signal, np.float32)
        start = self.client.frame_time + delay_frames
        self.start = start
        return start

    def _process(self, frames):
        t = self.client.last_frame_time
        sig, start = self.signal, self.start
        for i, port in enumerate(self.ports):
            buf = port.get_array()
            buf.fill(0.0)
            if start is None:
                continue
            a, b = max(t, start), min(t + frames, start + sig.shape[1])
            if a < b:
                buf[a - t : b - t] = sig[i, a - start : b - start]

    def busy(self) -> bool:
        return self.start is not None and self.client.frame_time < self.start + self.signal.shape[1]

    def connected(self) -> bool:
        return all(self.client.get_all_connections(p) for p in self.ports)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class MidiPeer:
    """tests/midi_peer.py in its own process: a second python-rtmidi client that sends to
    ``send_to`` (stamping each send with the JACK frame time) and records ``listen``."""

    def __init__(self, send_to: str, listen: str | None = None, env=None):
        args = [sys.executable, str(Path(__file__).with_name("midi_peer.py")), "--send-to", send_to]
        if listen:
            args += ["--listen", listen]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise AssertionError(f"midi_peer did not start: {line} {self.proc.stderr.read()}")
        self.feedback: list[list[int]] = []

    def send(self, msg: list[int]) -> int:
        self.proc.stdin.write(" ".join(f"{b:02x}" for b in msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        assert line[0] == "sent", line
        return int(line[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith("feedback "):
                    self.feedback = json.loads(line[len("feedback ") :])
            self.proc.wait(30)


class MidiSender:
    """A python-rtmidi client (JACK MIDI API) in the test process that sends to a port of another
    client; only for tests without JACK clients of their own in this process (see MidiPeer)."""

    def __init__(self, port_substring: str, name: str = "ldsender", timeout: float = 60.0):
        import rtmidi

        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
        wait_until(
            lambda: any(port_substring in p for p in self.out.get_ports()), timeout, f"MIDI port {port_substring}"
        )
        ports = self.out.get_ports()
        self.out.open_port([i for i, p in enumerate(ports) if port_substring in p][0])
        self.sent: list[tuple[int, list[int]]] = []

    def send(self, msg: list[int]) -> None:
        self.out.send_message(msg)
        self.sent.append(list(msg))

    def close(self) -> None:
        self.out.close_port()
        self.out.delete()


def livedemix(*args, env=None, **kw) -> subprocess.Popen:
    """The CLI as a user runs it, in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "livedemix", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def finish(proc: subprocess.Popen, interrupt: bool = False, timeout: float = 120) -> tuple[int, str, str]:
    if interrupt and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def report_of(out: str) -> dict:
    return json.loads(out[out.index("{") :])


def wait_until(pred, timeout: float = 30.0, what: str = "condition") -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def export_random_model(out_dir: Path, name: str = "live") -> Path:
    """A small random-init WaveNet (committed in tests/data/models) copied into out_dir with its card."""
    from tiny_model import copy_committed_model

    return copy_committed_model("live", out_dir, name)


@pytest.fixture(scope="session")
def live_model(tmp_path_factory) -> Path:
    """The shipped default model if there is one, else a small random model exported once."""
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    return export_random_model(tmp_path_factory.mktemp("live-model"))


@pytest.fixture(scope="module")
def jack_server():
    """A JACK server (dummy driver, 44.1 kHz, 256-sample periods) for a test module; the
    environment points every client (PortAudio, rtmidi, JACK-Client) at it."""
    server = JackServer()
    old = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    server.activate_env()
    yield server
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class LiveMidiRun:
    """What :func:`run_live_with_midi` saw: the exit, the capture, the MIDI events as the JACK
    cycles that carried them, and the controller's last LED feedback."""

    def __init__(self, rc, out, err, captured, t0, t_start, sig, events, feedback):
        self.rc, self.out, self.err = rc, out, err
        self.captured, self.t0, self.t_start, self.sig = captured, t0, t_start, sig
        self.events, self.feedback = list(events), feedback

    def index(self, frame_time: int) -> int:
        """JACK frame time → capture index."""
        return frame_time - self.t0

    def carried(self, msg: list[int]) -> int:
        """Frame time of the cycle that carried `msg`, matched in order of sending (each call
        consumes the events up to and including the match)."""
        for i, (t, data) in enumerate(self.events):
            if list(data) == msg:
                del self.events[: i + 1]
                return t
        raise AssertionError(f"the recorder never saw {msg}")

    def deviation(self, latency: int) -> np.ndarray:
        """|captured − the input delayed by `latency`| per sample: zero wherever every gain is at unity."""
        n = self.captured.shape[1]
        ref = np.zeros_like(self.captured)
        k0 = self.t_start + latency - self.t0  # capture index where the input's sample 0 is due
        a, b = max(0, k0), min(n, k0 + self.sig.shape[1])
        ref[:, a:b] = self.sig[:, a - k0 : b - k0]
        return np.abs(self.captured - ref).max(axis=0)


def run_live_with_midi(server, model, preset, sig, sends, record_seconds: float = 30) -> LiveMidiRun:
    """`livedemix live --midi --preset PRESET` between a JACK player of `sig` and a recorder,
    while a second MIDI client sends each (seconds after the signal starts, message) of `sends`
    in order. The recorder also hears the sender, stamped with the frame time of the JACK cycle
    that carried each message: the moment livedemix's MIDI port got it too."""
    rec = Recorder(server, "ldcap", seconds=record_seconds, midi=True)
    src = Player(server, "ldsrc")
    sender = None
    try:
        p = livedemix(
            "live", "--device", "ldcap", "--input-device", "ldsrc", "--model", str(model), "--preset", str(preset),
            "--midi", "--no-ui", "--json", "--deadline", "0",
        )  # fmt: skip
        wait_until(lambda: (rec.connected() and src.connected()) or p.poll() is not None, 60, "livedemix's ports")
        assert p.poll() is None, p.communicate()[1]
        sender = MidiPeer("livedemix-midi:livedemix", listen="livedemix-feedback")
        rec.client.connect("ldsender:RtMidi output", rec.midi_in)
        time.sleep(0.3)
        t_start = src.play(sig, delay_frames=4096)
        for seconds, msg in sends:  # wait until the source has played this long, then send
            due = t_start + seconds * server.rate
            wait_until(lambda: rec.client.frame_time >= due, 30, f"t={seconds}")  # noqa: B023
            sender.send(msg)
        wait_until(lambda: not src.busy(), 30, "the source to finish")
        time.sleep(0.3)
        rc, out, err = finish(p, interrupt=True)
    finally:
        if sender is not None:
            sender.close()
        captured = rec.stop()
        src.close()
    return LiveMidiRun(rc, out, err, captured, rec.t0, t_start, sig, rec.midi_events, sender.feedback)
