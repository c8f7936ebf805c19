"""`livedemix bench offline`: the offline render paths against each other, same run.

The streaming step (one frame per call), the batched sequence graph and, where the model's card
has one, its offline graph (the default render) each separate the bundled demo song (all stems,
the model's default phase mode) in this process, interleaved in rounds (so frequency scaling
and a busy neighbour hit all alike), one onnxruntime thread each; the figures are ratios of the
best rounds, and each path's speed as a multiple of real time. The memory line streams a
10-minute song (the demo looped) through the default render the way `livedemix separate` does
(65536-sample chunks in, each chunk's stems out to the writer), in a child process, and reports
its peak resident memory above the memory it had once the model was loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..offline_graph import has_offline_graph
from ..separator import load_card, resolve_model

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "mixture.flac"
CHUNK = 65536


def _demo(seconds: float | None = None) -> tuple[np.ndarray, int]:
    from ..audio.files import read_audio

    x, sr = read_audio(DEMO)
    if seconds is not None:
        x = x[:, : int(seconds * sr)]
    return np.ascontiguousarray(x), sr


def _render(x: np.ndarray, sr: int, model, exact: bool | None) -> float:
    """Seconds to separate x the way the CLI does (chunks in, chunks out), model loaded outside."""
    from ..offline import StreamingSeparation

    sep = StreamingSeparation(sr, x.shape[0], model=model, exact=exact)
    t0 = time.perf_counter()
    for s in range(0, x.shape[1], CHUNK):
        sep.feed(x[:, s : s + CHUNK])
    sep.finish()
    return time.perf_counter() - t0


def bench_offline(model=None, rounds: int = 3, memory: bool = True, seconds: float | None = None) -> dict:
    x, sr = _demo(seconds)
    dur = x.shape[1] / sr
    paths = {"streaming": True, "batched": False}
    if has_offline_graph(load_card(resolve_model(model))):
        paths["offline graph"] = None  # what `livedemix separate` uses by default
    for exact in paths.values():  # warm-up (caches, the graphs' sessions)
        _render(x[:, : sr * 2], sr, model, exact)
    times = {k: [] for k in paths}
    for _ in range(rounds):
        for k, exact in paths.items():
            times[k].append(_render(x, sr, model, exact))
    best = {k: min(v) for k, v in times.items()}
    out = {
        "song": DEMO.name,
        "audio_seconds": round(dur, 3),
        "rounds": rounds,
        "streaming_x_realtime": dur / best["streaming"],
        "batched_x_realtime": dur / best["batched"],
        "speedup": best["streaming"] / best["batched"],
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }
    if "offline graph" in best:
        out["offline_graph_x_realtime"] = dur / best["offline graph"]
        out["offline_graph_cost_vs_batched"] = best["offline graph"] / best["batched"]
    if memory:
        out["memory_10min"] = memory_for(600.0, model)
    return out


def memory_for(seconds: float, model=None) -> dict:
    """Peak resident memory of the default render (`livedemix separate`'s) over `seconds` of audio,
    in a child process."""
    code = (
        "import json, sys; from livedemix.apps.bench_offline import _memory_child; "
        f"print(json.dumps(_memory_child({seconds!r}, {None if model is None else str(model)!r})))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_child(seconds: float, model=None) -> dict:
    from ..offline import StreamingSeparation

    x, sr = _demo()
    sep = StreamingSeparation(sr, 2, model=model)
    sep.feed(x[:, :CHUNK])  # loads and warms everything
    loaded = _rss_mb()
    n = int(seconds * sr)
    t0 = time.perf_counter()
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        start = s % (x.shape[1] - CHUNK)
        sep.feed(x[:, start : start + m])
    sep.finish()
    wall = time.perf_counter() - t0
    peak = _peak_mb()
    return {
        "audio_seconds": seconds,
        "rss_after_load_mb": round(loaded, 1),
        "peak_rss_mb": round(peak, 1),
        "growth_mb": round(peak - loaded, 1),
        "x_realtime": round(seconds / wall, 1),
    }


def format_offline(r: dict) -> str:
    lines = [
        f"offline separation of the demo song ({r['audio_seconds']:.1f} s, all stems, best of {r['rounds']} rounds)",
        f"  streaming step, one frame per call : {r['streaming_x_realtime']:6.1f}x real time",
        f"  batched sequence graph             : {r['batched_x_realtime']:6.1f}x real time   "
        f"= {r['speedup']:.2f}x the streaming path",
    ]
    if "offline_graph_x_realtime" in r:
        lines.append(
            f"  offline graph (the default render)  : {r['offline_graph_x_realtime']:6.1f}x real time   "
            f"= {r['offline_graph_cost_vs_batched']:.2f}x the batched path's time"
        )
    m = r.get("memory_10min")
    if m and "error" not in m:
        lines.append(
            f"  a 10-minute song, as `separate` renders it: peak {m['peak_rss_mb']:.0f} MB resident "
            f"({m['rss_after_load_mb']:.0f} MB once loaded, +{m['growth_mb']:.0f} MB while running; "
            f"constant in the song's length), {m['x_realtime']:.1f}x real time"
        )
    elif m:
        lines.append(f"  memory for a 10-minute song: not measured ({m['error']})")
    return "\n".join(lines)
