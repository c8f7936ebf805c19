"""`livedemix play` and `livedemix live`: an engine, a stream, and (optionally) MIDI and the UI."""

from __future__ import annotations

import json
import signal
import sys

from .engine import Engine
from .live_audio import AudioDeviceError, FileReader, StreamRunner, find_device, parse_channels
from .presets import load_preset


def _deadline(args, engine_hop: int, rate: int) -> float | None:
    ms = getattr(args, "deadline", None)
    if ms is None:
        return engine_hop / rate  # a hop that takes longer than a hop of audio can't keep up
    if ms < 0:
        raise ValueError(f"--deadline {ms} is negative: give milliseconds, or 0 to never pass the mix through")
    return None if ms == 0 else ms / 1000.0


def make_engine(args) -> Engine:
    preset = load_preset(args.preset) if args.preset else None
    eng = Engine(model=args.model, preset=preset, block_size=4096)
    eng.deadline = _deadline(args, eng.stft_config.hop, eng.sample_rate)
    return eng


def _routes_for_play(engine, device: dict) -> tuple[dict, list[str]]:
    """play: every bus that fits on the device (main must); others are left out with a note."""
    routes, skipped = {}, []
    for b in engine.buses:
        outs = engine.bus_outputs(b)
        if b != "main" and max(outs) > device["outputs"]:
            skipped.append(f"{b} (outputs {'-'.join(map(str, outs))})")
        else:
            routes[b] = outs
    return routes, skipped


def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass


def _exit_device_lost(runner, e: Exception) -> None:
    """PortAudio waits forever for a JACK server that died (in Pa_StopStream and again at exit in
    Pa_Terminate), so after saying what happened, leave without asking it."""
    import os

    runner._running = False
    print(f"livedemix: {e}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2)


def format_report(r: dict, what: str) -> str:
    dev = f" + device {r['device_latency_ms'][1]:.2f} ms out" if r["device_latency_ms"][1] else ""
    if r["device_latency_ms"][0]:
        dev += f", {r['device_latency_ms'][0]:.2f} ms in"
    return (f"{what}: {r['seconds']:.1f} s on '{r['device']}' at {r['samplerate']} Hz ({r['mode']}), stopped: {r['stopped']}\n"
            f"  latency {r['latency_samples']} samples = {r['latency_ms']:.2f} ms{dev}\n"
            f"  xruns {r['xruns']}, underruns {r['underruns']}, late hops {r['late_hops']}, separator errors {r['separator_errors']}\n"
            f"  audio path {100 * r['cpu_share']:.1f}% of a core, longest block {r['max_block_ms']:.2f} ms")


def run(args, mode: str) -> int:
    """mode: 'play' or 'live'."""
    _sigterm_as_interrupt()
    engine = make_engine(args)
    out_dev = find_device(args.device, "output")
    source = None
    if mode == "play":
        routes, skipped = _routes_for_play(engine, out_dev)
        if skipped:
            print(f"livedemix: note: device '{out_dev['name']}' has {out_dev['outputs']} outputs, so bus "
                  f"{', '.join(skipped)} is not played", file=sys.stderr)
        source = FileReader(args.file, engine.sample_rate)
        runner = StreamRunner(engine, output_device=out_dev, source=source, blocksize=args.block, routes=routes)
        what = f"played {source.path.name}"
    else:
        in_dev = find_device(args.input_device if args.input_device is not None else args.device, "input")
        runner = StreamRunner(engine, output_device=out_dev, input_device=in_dev,
                              input_channels=parse_channels(args.inputs) or [1, 2], blocksize=args.block)
        what = "live"

    try:
        runner.start()
        head = (f"livedemix {mode}: '{out_dev['name']}' at {runner.samplerate} Hz, buses {', '.join(runner.routes)}, "
                f"latency {runner.latency_samples} samples ({runner.latency_ms:.2f} ms)")
        print(head + "; Ctrl-C stops", file=sys.stderr, flush=True)
        runner.wait()
    except AudioDeviceError as e:
        if runner.stop_reason == "device lost":
            _exit_device_lost(runner, e)
        raise
    finally:
        runner.close()
    report = runner.report()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, what))
    return 0


__all__ = ["run", "make_engine", "format_report", "AudioDeviceError"]
