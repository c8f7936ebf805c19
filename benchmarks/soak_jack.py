"""Soak test through JACK (not run in CI): `livedemix live` for N minutes on a JACK server with
the dummy driver, fed the demo song in a loop by one JACK client, recorded by another, with a
second MIDI program moving a fader and pressing a mute button all along.

    python benchmarks/soak_jack.py --model python/livedemix/models/default.json --minutes 10

Prints a table: xruns (livedemix's count and the server's, as a second client saw them), late
hops, underruns, the audio path's CPU share, and livedemix's resident memory after a minute of
warm-up and at the end. The server runs in JACK's default asynchronous mode (what a user runs);
``--sync`` makes the graph wait for late clients instead.

Alongside runs `benchmarks/machine_stalls.c` (built here with ``cc``): one do-nothing real-time
thread per CPU, above JACK's priority, that notes every time the machine kept it from running
on schedule. The table then says how many of the server's xruns fell on such a stall (and, as a
control, how many would with the xrun times shifted by half a second): an xrun during a stall
of the machine is one no client could have avoided.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "python" / "livedemix" / "data" / "demo" / "mixture.flac"
PEER = REPO / "tests" / "midi_peer.py"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_stall_probe(threshold_us: int) -> subprocess.Popen | None:
    """Build and start benchmarks/machine_stalls.c; None (with a note) where there's no C compiler."""
    exe = Path(tempfile.mkdtemp(prefix="ldsoak")) / "machine_stalls"
    try:
        subprocess.run(
            ["cc", "-O2", "-pthread", "-o", str(exe), str(REPO / "benchmarks" / "machine_stalls.c")],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"soak: no machine-stall probe ({e}); install a C compiler to get one", file=sys.stderr)
        return None
    return subprocess.Popen([str(exe), str(threshold_us)], stdout=subprocess.PIPE, text=True)


def xruns_on_stalls(xrun_times: list[float], stalls: list, period_s: float, shift: float = 0.0) -> int:
    """How many xruns (monotonic times the client heard of them) came within a few periods after
    a stall of the machine ended: the server notices a late cycle at the next period's start and
    tells clients from its notification thread, a few ms later."""
    ends = np.sort(np.array([due + late / 1000 for due, late, _cpu in stalls])) if stalls else np.zeros(0)
    n = 0
    for t in xrun_times:
        t = t + shift
        i = np.searchsorted(ends, t - 3 * period_s - 0.02)
        n += bool(i < len(ends) and ends[i] <= t + 0.005)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model card (default: the shipped default model)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--period", type=int, default=256)
    ap.add_argument("--rate", type=int, default=44100)
    ap.add_argument("--sync", action="store_true", help="jackd -S: the graph waits for late clients")
    ap.add_argument(
        "--no-realtime",
        action="store_true",
        help="run jackd without realtime scheduling (what CI's tests do; a live setup runs realtime, "
        "so that a client is not woken late because an ordinary process had the core)",
    )
    ap.add_argument("--no-midi", action="store_true", help="no MIDI traffic during the soak")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = ap.parse_args()

    import jack

    name = f"ldsoak{os.getpid()}"
    env = {
        **os.environ,
        "JACK_DEFAULT_SERVER": name,
        "JACK_NO_START_SERVER": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "python"), os.environ.get("PYTHONPATH")])),
    }
    os.environ.update({k: env[k] for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")})
    log = open(f"/tmp/{name}.log", "w")
    server = subprocess.Popen(
        [
            "jackd",
            "-n",
            name,
            *(["-S", "-t", "5000"] if a.sync else []),
            "--no-realtime" if a.no_realtime else "--realtime",
            "-d",
            "dummy",
            "-r",
            str(a.rate),
            "-p",
            str(a.period),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(100):
            try:
                jack.Client("soakprobe", no_start_server=True, servername=name).close()
                break
            except jack.JackOpenError:
                time.sleep(0.1)
        song, sr = sf.read(DEMO, dtype="float32", always_2d=True)
        song = np.ascontiguousarray(song.T)
        assert sr == a.rate, "the demo song is 44.1 kHz: run with --rate 44100"

        src = jack.Client("ldsrc", no_start_server=True, servername=name)
        outs = [src.outports.register(f"out_{i}") for i in range(2)]
        pos = [0]

        def play(frames):  # the song in a loop
            p, n = pos[0], song.shape[1]
            for i, port in enumerate(outs):
                buf = port.get_array()
                a0 = min(frames, n - p)
                buf[:a0] = song[i, p : p + a0]
                if a0 < frames:
                    buf[a0:] = song[i, : frames - a0]
            pos[0] = (p + frames) % n

        cap = jack.Client("ldcap", no_start_server=True, servername=name)
        ins = [cap.inports.register(f"in_{i}") for i in range(2)]
        seen = {"xruns": 0, "frames": 0, "peak": 0.0, "xrun_times": []}

        def record(frames):
            seen["frames"] += frames
            seen["peak"] = max(seen["peak"], float(np.abs(ins[0].get_array()).max()))

        def xrun(delay):
            seen["xruns"] += 1
            seen["xrun_times"].append(time.monotonic())

        # This process's two JACK callbacks are Python too: keep them from stalling in a full
        # garbage collection, or waiting the default 5 ms for the interpreter lock while the
        # main loop below runs (livedemix does the same for its own callback).
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(0.0005)
        src.set_process_callback(play)
        cap.set_process_callback(record)
        cap.set_xrun_callback(xrun)
        src.activate()
        cap.activate()

        args = [
            sys.executable,
            "-m",
            "livedemix",
            "live",
            "--device",
            "ldcap",
            "--input-device",
            "ldsrc",
            "--no-ui",
            "--json",
        ]
        if a.model:
            args += ["--model", a.model]
        if not a.no_midi:
            args += ["--midi", "--midi-map", "fader-controller"]
        live = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(live)
        t_end = time.monotonic() + 120
        while not (cap.get_all_connections(ins[0]) and src.get_all_connections(outs[0])):
            if live.poll() is not None or time.monotonic() > t_end:
                print(live.communicate()[1], file=sys.stderr)
                return 2
            time.sleep(0.1)
        peer = None
        if not a.no_midi:
            peer = subprocess.Popen(
                [sys.executable, str(PEER), "--send-to", "livedemix-midi:livedemix", "--listen", "livedemix-feedback"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            procs.append(peer)
            assert peer.stdout.readline().strip() == "ready"
            threading.Thread(target=lambda: [None for _ in peer.stdout], daemon=True).start()  # drain its replies
        period_s = a.period / a.rate
        probe = start_stall_probe(int(period_s / 2 * 1e6))
        if probe is not None:
            procs.append(probe)
        xruns_before = seen["xruns"]  # the start-up's own (connections made) don't count against the soak
        t0 = time.monotonic()
        duration = a.minutes * 60
        rss_warm = None
        samples = []
        k = 0
        while time.monotonic() - t0 < duration:
            time.sleep(0.5)
            k += 1
            el = time.monotonic() - t0
            if rss_warm is None and el >= min(60.0, duration / 4):
                rss_warm = rss_kib(live.pid)
            if k % 20 == 0:
                samples.append((round(el), rss_kib(live.pid)))
            if k % 120 == 0:
                print(
                    f"soak: {el / 60:4.1f} min, RSS {rss_kib(live.pid) / 1024:.1f} MiB, server xruns {seen['xruns']}",
                    file=sys.stderr,
                    flush=True,
                )
            if peer is not None:  # a fader sweep (CC 1, drums) and now and then a mute button (note 38, bass)
                v = int(64 + 63 * np.sin(el / 3.0))
                peer.stdin.write(f"b0 01 {v:02x}\n")
                if k % 30 == 0:
                    peer.stdin.write("90 26 7f\n")
                peer.stdin.flush()
            if live.poll() is not None:
                break
        rss_end = rss_kib(live.pid)
        stalls = None
        if probe is not None:
            probe.send_signal(signal.SIGTERM)
            stalls = json.loads(probe.communicate(timeout=30)[0])
        if peer is not None:
            peer.stdin.write("quit\n")
            peer.stdin.flush()
            peer.wait(30)
        live.send_signal(signal.SIGTERM)  # (SIGINT may be ignored when this runs in the background)
        try:
            out, err = live.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            print(f"soak: livedemix (pid {live.pid}) did not stop within 60 s of SIGTERM", file=sys.stderr)
            return 2
        if live.returncode != 0:
            print(err, file=sys.stderr)
            return 2
        r = json.loads(out[out.index("{") :])
        cap.deactivate()
        src.deactivate()
        cap.close()
        src.close()
        res = {
            "minutes": round((time.monotonic() - t0) / 60, 2),
            "jack": f"dummy {a.rate} Hz, period {a.period}, "
            + ("sync" if a.sync else "async")
            + (", no realtime" if a.no_realtime else ", realtime"),
            "xruns_livedemix": r["xruns"],
            "xruns_server": seen["xruns"],
            "xruns_server_during_soak": seen["xruns"] - xruns_before,
            "late_hops": r["late_hops"],
            "underruns": r["underruns"],
            "separator_errors": r["separator_errors"],
            "cpu_share": r["cpu_share"],
            "busy_share": r["busy_share"],
            "max_block_ms": r["max_block_ms"],
            "latency_ms": r["latency_ms"],
            "rss_after_warmup_mib": round((rss_warm or 0) / 1024, 1),
            "rss_end_mib": round(rss_end / 1024, 1),
            "rss_growth_mib": round((rss_end - (rss_warm or rss_end)) / 1024, 2),
            "midi_received": r.get("midi", {}).get("received", 0),
            "output_peak": round(seen["peak"], 3),
            "rss_samples": samples,
            "load_average": os.getloadavg(),
        }
        if stalls is not None:
            soak_xruns = [t for t in seen["xrun_times"] if t >= t0]
            long_stalls = [st for st in stalls["stalls"] if st[1] > period_s * 1000]
            res.update(
                {
                    "machine_stalls_over_half_period": len(stalls["stalls"]),
                    "machine_stalls_over_period": len(long_stalls),
                    "machine_longest_stall_ms": stalls["max_late_ms"],
                    "xruns_at_machine_stalls": xruns_on_stalls(soak_xruns, stalls["stalls"], period_s),
                    "xruns_at_machine_stalls_control": xruns_on_stalls(
                        soak_xruns, stalls["stalls"], period_s, shift=0.5
                    ),
                    "probe_realtime": stalls["realtime"],
                }
            )
        # Whom the server blamed: a client still running when the next period began, or the
        # driver itself woken late (a busy machine delays every client alike).
        log.flush()
        blame: dict[str, int] = {}
        for line in Path(log.name).read_text(errors="replace").splitlines():
            if "was not finished" in line:
                who = line.split("client = ", 1)[1].split(" was not finished")[0]
                blame[who] = blame.get(who, 0) + 1
            elif "JackTimedDriver::Process XRun" in line:
                blame["(driver woke late)"] = blame.get("(driver woke late)", 0) + 1
        res["server_blamed"] = dict(sorted(blame.items(), key=lambda kv: -kv[1]))
        width = max(len(k) for k in res)
        print(f"{'soak':<{width}}  value")
        for key, v in res.items():
            if key != "rss_samples":
                print(f"{key:<{width}}  {v}")
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2))
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        for f in Path("/dev/shm").glob(f"*{name}*"):
            f.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
