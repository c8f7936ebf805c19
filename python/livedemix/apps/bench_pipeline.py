"""`livedemix bench pipeline`: the whole engine against its hop budget.

Measured on one core (onnxruntime, torch and the native core all single-threaded), on the
same audio, in the same process:

- the engine (4 stems, stereo, 44.1 kHz, the default reconstruction), one hop per call:
  real-time factor and per-hop p50/p99/p99.9 times against the hop budget;
- its parts per hop: the separator step (and the onnxruntime call overhead, measured on a
  model with the same inputs and outputs that computes nothing), phase recovery, the rest;
- the engine paced at real time (one hop, then sleep until the next hop is due), as it runs
  live: a hop that follows a sleep finds its weights, state and code paths cold in the caches
  (the core idled or ran something else meanwhile), so it costs more CPU than a hop in a
  back-to-back loop. Reported as CPU per hop, its share of a core and the ratio to the warm
  figure;

The peers' networks (Open-Unmix, HT Demucs) are timed against this by
``benchmarks/peers_cost.py`` in the source checkout; the runtime never imports the factory.
"""

from __future__ import annotations

import time

import numpy as np

from .. import dsp
from ..engine import Engine


def _percentiles(times_s: np.ndarray) -> dict:
    return {f"p{p}": float(np.percentile(times_s, p) * 1e6) for p in (50, 99, 99.9)} | {
        "max": float(times_s.max() * 1e6)
    }


def null_model_overhead_us(separator, calls: int = 2000) -> float | None:
    """Per-call time of onnxruntime on a model with the separator's inputs/outputs that only
    copies (Identity): what the runtime costs before any arithmetic."""
    try:
        import onnx  # noqa: F401 — only to say it is missing
        from onnx import TensorProto, helper
    except ImportError:
        return None
    import onnxruntime as ort

    card = separator.card
    ins = card["inputs"]
    outs = card["outputs"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in ins.items()]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outs.items()]
    nodes = []
    pairs = dict(card["state_pairs"])
    for name in outs:
        if name == "stems":  # broadcast the frame to the stems' shape: one cheap op
            shape = helper.make_tensor("shape", TensorProto.INT64, [len(outs[name])], outs[name])
            nodes.append(helper.make_node("Constant", [], ["stems_shape"], value=shape))
            nodes.append(helper.make_node("Expand", ["mag", "stems_shape"], [name]))
    for src, dst in pairs.items():
        nodes.append(helper.make_node("Identity", [src], [dst]))
    model = helper.make_model(
        helper.make_graph(nodes, "null", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8  # readable by every onnxruntime we support
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    b = sess.io_binding()
    arrays = {n: np.zeros(s, np.float32) for n, s in {**ins, **outs}.items()}
    for n in ins:
        b.bind_cpu_input(n, arrays[n])
    for n in outs:
        b.bind_output(n, "cpu", 0, np.float32, outs[n], arrays[n].ctypes.data)
    for _ in range(100):
        sess.run_with_iobinding(b)
    t0 = time.perf_counter()
    for _ in range(calls):
        sess.run_with_iobinding(b)
    return 1e6 * (time.perf_counter() - t0) / calls


def machine_load() -> dict:
    """The 1-minute load average against the cores: above them, other work competes for the CPU
    and no timing here is representative of the machine."""
    import os

    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    return {"load_1min": round(load, 2), "cores": cores, "busy": load > cores}


def bench_engine(seconds: float = 20.0, model=None, rounds: int = 3, paced_seconds: float = 10.0) -> dict:
    eng = Engine(model=model, block_size=256)
    hop = eng.stft_config.hop
    sr = eng.sample_rate
    n = int(seconds * sr) // hop * hop
    audio = _audio(n, sr)
    blocks = [np.ascontiguousarray(audio[:, i : i + hop]) for i in range(0, n, hop)]
    per_hop = np.empty(len(blocks))
    out = np.empty((len(eng.buses), eng.channels, hop), np.float32)
    best_total = np.inf
    for _ in range(rounds):
        eng.reset()
        t_start, c_start = time.perf_counter(), time.thread_time()
        for i, b in enumerate(blocks):
            t0 = time.perf_counter()
            eng.process(b, out=out)
            per_hop[i] = time.perf_counter() - t0
        total = time.perf_counter() - t_start
        if total < best_total:
            best_total, best_hops = total, per_hop.copy()
            best_cpu = time.thread_time() - c_start
    budget_us = 1e6 * hop / sr

    # the parts, one frame at a time on the same audio
    ana = dsp.StftAnalyzer(eng.stft_config, eng.channels, hop)
    frames = np.concatenate([ana.process(b) for b in blocks[:400]])
    sep = eng.separator
    mags = sep.inputs_of(frames)
    step_us = min(_step_us(sep, mags) for _ in range(rounds))  # best of rounds, like the whole engine's figure
    V = sep.run(mags)
    out = np.empty((len(eng.stems), eng.channels, eng.stft_config.bins), np.complex64)
    phase_us = np.inf
    for _ in range(rounds):
        eng.phase.reset()
        t0 = time.perf_counter()
        for X, v in zip(frames, V):
            eng.phase.process(X, v, out=out)
        phase_us = min(phase_us, 1e6 * (time.perf_counter() - t0) / len(frames))
    overhead = null_model_overhead_us(sep)
    hop_us = 1e6 * best_total / len(blocks)
    paced = _paced(eng, blocks[: max(1, int(paced_seconds * sr / hop))], hop / sr)
    return {
        "audio_seconds": n / sr,
        "hop": hop,
        "sample_rate": sr,
        "stems": len(eng.stems),
        "channels": eng.channels,
        "phase": eng.phase.mode,
        "n_iter": eng.phase.n_iter,
        "mask_power": eng.phase.mask_power,
        "model": eng.separator.card_path.stem,
        "model_parameters": eng.separator.card.get("parameters"),
        "latency_ms": eng.latency_ms,
        "hop_budget_us": budget_us,
        "mean_hop_us": hop_us,
        # CPU time per hop, back to back: the figure the paced run's CPU per hop compares with
        "mean_cpu_us": 1e6 * best_cpu / len(blocks),
        "real_time_factor": best_total / (n / sr),
        "per_hop_us": _percentiles(best_hops),
        "p99_9_share_of_budget": float(np.percentile(best_hops, 99.9) * 1e6 / budget_us),
        "separator_step_us": step_us,
        "onnxruntime_call_overhead_us": overhead,
        "phase_us": phase_us,
        "rest_us": max(0.0, hop_us - step_us - phase_us),
        "paced": paced
        | {
            "cold_factor": paced["mean_cpu_us"] / (1e6 * best_cpu / len(blocks)),
            "cpu_share": paced["mean_cpu_us"] / budget_us,
        },
        "machine": machine_load(),
    }


def _paced(eng: Engine, blocks: list[np.ndarray], hop_s: float) -> dict:
    """Run hops at real time: each one due `hop_s` after the previous one, sleeping between."""
    eng.reset()
    cpu = np.empty(len(blocks))
    wall = np.empty(len(blocks))
    due = time.perf_counter()
    for i, b in enumerate(blocks):
        due += hop_s
        c0, t0 = time.thread_time(), time.perf_counter()
        eng.process(b)
        cpu[i] = time.thread_time() - c0
        wall[i] = time.perf_counter() - t0
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return {"hops": len(blocks), "mean_cpu_us": float(cpu.mean() * 1e6), "per_hop_us": _percentiles(wall)}


def _audio(n: int, sr: int) -> np.ndarray:
    """The bundled demo song, looped to length: music, not noise, so phase recovery and the
    separator do realistic work."""
    from ..audio.files import read_audio
    from .demo import DEMO_DIR

    x, _ = read_audio(DEMO_DIR / "mixture.flac")
    reps = -(-n // x.shape[1])
    return np.ascontiguousarray(np.tile(x, (1, reps))[:, :n])


def _step_us(sep, mags) -> float:
    """One round of the separator's streaming step over ``mags`` from a reset: µs per frame."""
    sep.reset()
    t0 = time.perf_counter()
    for m in mags:
        sep.step(m)
    return 1e6 * (time.perf_counter() - t0) / len(mags)


def step_against_baseline(model, baseline, frames: int = 400, rounds: int = 7) -> dict:
    """The separator step of ``model`` against ``baseline``'s on the same frames, timed in
    alternating rounds in one process (best of rounds each), so that load on a shared machine
    hits both alike: the ratio is the figure, not the microseconds."""
    engines = {name: Engine(model=m, block_size=256) for name, m in (("model", model), ("baseline", baseline))}
    first = engines["model"]
    ana = dsp.StftAnalyzer(first.stft_config, first.channels, first.stft_config.hop)
    hop = first.stft_config.hop
    audio = _audio(frames * hop, first.sample_rate)
    X = np.concatenate([ana.process(np.ascontiguousarray(audio[:, i : i + hop])) for i in range(0, frames * hop, hop)])
    best = {name: np.inf for name in engines}
    mags = {name: e.separator.inputs_of(X) for name, e in engines.items()}
    for _ in range(rounds):
        for name, e in engines.items():
            best[name] = min(best[name], _step_us(e.separator, mags[name]))
    return {
        "model": engines["model"].separator.card_path.stem,
        "baseline": engines["baseline"].separator.card_path.stem,
        "model_step_us": best["model"],
        "baseline_step_us": best["baseline"],
        "ratio": best["model"] / best["baseline"],
    }


def bench_pipeline(seconds: float = 20.0, model=None, baseline_model=None) -> dict:
    out = {"engine": bench_engine(seconds, model, paced_seconds=min(10.0, seconds))}
    if baseline_model is not None:
        out["step_vs_baseline"] = step_against_baseline(model, baseline_model)
    return out


def format_pipeline(r: dict) -> str:
    e = r["engine"]
    ph = e["per_hop_us"]
    ov = e["onnxruntime_call_overhead_us"]
    lines = [
        f"engine: {e['stems']} stems, {e['channels']} channels, {e['sample_rate']} Hz, hop {e['hop']} "
        f"(budget {e['hop_budget_us']:.0f} µs), phase {e['phase']} ({e['n_iter']} it., mask power "
        f"{e.get('mask_power', 2.0):g}), model {e['model']} "
        f"({e['model_parameters']} parameters), latency {e['latency_ms']:.2f} ms",
        f"  real-time factor on one core: {e['real_time_factor']:.4f} ({100 * e['real_time_factor']:.2f}% of a core)",
        f"  back to back: {e['mean_cpu_us']:.0f} µs CPU per hop = {100 * e['mean_cpu_us'] / e['hop_budget_us']:.2f}% "
        f"of a core; wall per hop mean {e['mean_hop_us']:.0f} µs, p50 {ph['p50']:.0f}, p99 {ph['p99']:.0f}, "
        f"p99.9 {ph['p99.9']:.0f}, max {ph['max']:.0f} µs; p99.9 = {100 * e['p99_9_share_of_budget']:.1f}% of the "
        "hop budget",
        f"  parts per hop: separator step {e['separator_step_us']:.0f} µs"
        + (f" (of which onnxruntime call overhead {ov:.0f} µs)" if ov is not None else "")
        + f", phase recovery {e['phase_us']:.0f} µs, STFT + mixer + ISTFT + Python {e['rest_us']:.0f} µs",
    ]
    if "step_vs_baseline" in r:
        b = r["step_vs_baseline"]
        lines.append(
            f"  separator step against {b['baseline']}: {b['model_step_us']:.0f} µs vs {b['baseline_step_us']:.0f} µs "
            f"= {b['ratio']:.2f}x (alternating rounds, same process)"
        )
    m = e.get("machine")
    if m and m["busy"]:
        lines.insert(
            0,
            f"warning: this machine is busy (load {m['load_1min']:.1f} on {m['cores']} cores): other work competes "
            "for the CPU, so these figures are not representative; run again on an idle machine",
        )
    if "paced" in e:
        p = e["paced"]
        pp = p["per_hop_us"]
        lines.append(
            f"  paced at real time ({p['hops']} hops, sleeping between them as live): {p['mean_cpu_us']:.0f} µs CPU per hop "
            f"= {100 * p['cpu_share']:.2f}% of a core, {p['cold_factor']:.1f}× the back-to-back hop (cold caches); "
            f"per hop p50 {pp['p50']:.0f}, p99 {pp['p99']:.0f}, p99.9 {pp['p99.9']:.0f} µs"
        )
    return "\n".join(lines)
