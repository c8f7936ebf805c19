"""`livedemix play` and `livedemix live`: an engine, a stream, and (optionally) MIDI and the UI."""

from __future__ import annotations

import gc
import json
import signal
import sys

from ..audio import AudioDeviceError, FileReader, StreamRunner, find_device, parse_channels
from ..engine import Engine
from ..presets import load_preset


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
        # A program started in the background by a shell script inherits SIGINT *ignored*, and
        # Python then never raises KeyboardInterrupt: restore it so Ctrl-C always stops cleanly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass


def make_midi(args, engine, runner):
    """A MIDI controller when --midi is given or the preset names a MIDI input; its mappings
    come from --midi-map (a preset) or the preset itself."""
    preset = engine.preset
    spec = getattr(args, "midi", None)
    if spec is None and getattr(args, "midi_map", None):
        spec = "virtual"
    if spec is None and not (preset and preset.midi.input):
        return None
    from ..midi import MidiController, MidiError, midi_api

    if spec is None:
        spec = preset.midi.input
    source_preset = load_preset(args.midi_map) if getattr(args, "midi_map", None) else preset
    settings = source_preset.midi if source_preset else None
    if settings is None or not settings.map:
        raise MidiError(
            "MIDI is on but no mapping is set: add --midi-map fader-controller (or another preset with [[midi.map]]), "
            "or map controls with `livedemix midi learn`"
        )
    out = getattr(args, "midi_out", None)
    if out is None and preset is not None and preset.midi.output:
        out = preset.midi.output
    if out == "none":
        out = False
    return MidiController(
        engine,
        runner.controls,
        settings,
        input=spec,
        output=out,
        api=midi_api(getattr(args, "midi_api", None)),
        source=source_preset.path,
    )


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
    return (
        f"{what}: {r['seconds']:.1f} s on '{r['device']}' at {r['samplerate']} Hz ({r['mode']}), stopped: {r['stopped']}\n"
        f"  latency {r['latency_samples']} samples = {r['latency_ms']:.2f} ms{dev}\n"
        f"  xruns {r['xruns']}, underruns {r['underruns']}, late hops {r['late_hops']}, separator errors {r['separator_errors']}\n"
        f"  audio path {100 * r['cpu_share']:.1f}% of a core (busy {100 * r['busy_share']:.1f}% of the time), "
        f"longest block {r['max_block_ms']:.2f} ms"
        + (
            f"\n  MIDI: {r['midi']['received']} messages, {r['midi']['applied']} applied, {r['midi']['ignored']} ignored"
            if "midi" in r
            else ""
        )
        + _inserts_line(r)
    )


def _inserts_line(r: dict) -> str:
    if "inserts" not in r:
        return ""
    slots = [s for chains in r["inserts"].values() for chain in chains.values() for s in chain]
    bad = [s for s in slots if s["faulted"]]
    line = f"\n  effects: {len(slots)} inserts, {len(bad)} bypassed by the host"
    for s in bad:
        why = "NaN/Inf output" if s["nonfinite_events"] else "too slow"
        line += f"\n    {s['name']} ({s['plugin']}): {why}"
    return line


def run(args, mode: str) -> int:
    """mode: 'play' or 'live'."""
    _sigterm_as_interrupt()
    # The audio callback, the MIDI thread and the UI share one interpreter lock: hand it over
    # every 0.5 ms instead of every 5 ms, so that no thread waits long for it.
    sys.setswitchinterval(0.0005)
    engine = make_engine(args)
    out_dev = find_device(args.device, "output")
    source = None
    if mode == "play":
        routes, skipped = _routes_for_play(engine, out_dev)
        if skipped:
            print(
                f"livedemix: note: device '{out_dev['name']}' has {out_dev['outputs']} outputs, so bus "
                f"{', '.join(skipped)} is not played",
                file=sys.stderr,
            )
        source = FileReader(args.file, engine.sample_rate)
        runner = StreamRunner(engine, output_device=out_dev, source=source, blocksize=args.block, routes=routes)
        what = f"played {source.path.name}"
    else:
        in_dev = find_device(args.input_device if args.input_device is not None else args.device, "input")
        runner = StreamRunner(
            engine,
            output_device=out_dev,
            input_device=in_dev,
            input_channels=parse_channels(args.inputs) or [1, 2],
            blocksize=args.block,
        )
        what = "live"

    midi = make_midi(args, engine, runner)
    try:
        if midi is not None:
            midi.start()
        # Everything built so far lives as long as the stream: move it out of the cyclic garbage
        # collector's reach, so that a collection triggered by an allocation in the audio
        # callback (sounddevice makes its numpy views there) scans a few objects, not all of
        # them (a full collection over numpy/onnxruntime/rich's objects stalls for milliseconds).
        gc.collect()
        gc.freeze()
        runner.start()
        head = (
            f"livedemix {mode}: '{out_dev['name']}' at {runner.samplerate} Hz, buses {', '.join(runner.routes)}, "
            f"latency {runner.latency_samples} samples ({runner.latency_ms:.2f} ms)"
        )
        if midi is not None:
            head += f"; MIDI in {midi.port_names[0]}" + (
                f", feedback {midi.port_names[1]}" if midi.port_names[1] else ""
            )
        if not args.no_ui and sys.stdin.isatty() and sys.stdout.isatty():
            from .tui import LiveUI

            LiveUI(runner, title=what, midi=midi).run()
        else:
            if not args.no_ui:
                head += " (no terminal for the UI: running headless)"
            print(head + "; Ctrl-C stops", file=sys.stderr, flush=True)
            runner.wait()
    except AudioDeviceError as e:
        if runner.stop_reason == "device lost":
            _exit_device_lost(runner, e)
        raise
    finally:
        runner.close()
        if midi is not None:
            midi.close()
    report = runner.report()
    if midi is not None:
        report["midi"] = {
            "received": midi.stats.received,
            "applied": midi.stats.applied,
            "ignored": midi.stats.ignored_total,
            "ignored_by_reason": dict(midi.stats.ignored),
            "takeover_waits": midi.stats.takeover_waits,
        }
    inserts = runner.engine.insert_stats() if hasattr(runner.engine, "insert_stats") else {}
    if inserts.get("stems") or inserts.get("buses"):  # effect inserts: faults counted per slot
        report["inserts"] = inserts
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, what))
    return 0


__all__ = ["run", "make_engine", "format_report", "AudioDeviceError"]
