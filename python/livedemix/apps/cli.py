"""The `livedemix` command line."""

from __future__ import annotations

import argparse
import json
import sys

from .. import __version__
from ..phase import MODES as PHASE_CHOICES


def _seconds(text: str) -> float:
    """--seconds: a finite number of seconds above zero (0 divided a benchmark by zero, a
    negative value cut songs from the end)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds: write e.g. --seconds 10") from None
    if not (0 < v <= 86400):  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} is not a duration: give seconds above 0 (at most a day)")
    return v


BLOCK_MIN, BLOCK_MAX = 16, 8192


def _block(text: str) -> int:
    """--block: 0 (the host's own size) or 16..8192 samples, as the help says."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of samples: write e.g. --block 256") from None
    if v != 0 and not BLOCK_MIN <= v <= BLOCK_MAX:
        raise argparse.ArgumentTypeError(
            f"{v} samples is outside {BLOCK_MIN}..{BLOCK_MAX}: give e.g. --block 256, or 0 for the host's own size"
        )
    return v


def json_safe(value):
    """``value`` with every non-finite float replaced by None (JSON has no Infinity or NaN);
    returns (clean value, number of values replaced)."""
    import math

    count = 0

    def clean(v):
        nonlocal count
        if isinstance(v, float) and not math.isfinite(v):
            count += 1
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return clean(value), count


def cmd_info(args) -> int:
    from .. import dsp

    configs = {}
    for name, kw in dsp.SHIPPED_CONFIGS.items():
        cfg = dsp.config(name)
        configs[name] = {
            **kw,
            "synthesis_length": cfg.synthesis_length,
            "latency_samples": cfg.latency_samples,
            "latency_ms_at_44100": round(1000 * cfg.latency_samples / 44100, 2),
        }
    info = {"version": __version__, "build": dsp.build_info(), "stft_configs": configs}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"livedemix {__version__}")
    b = info["build"]
    print(f"  native core: {b['compiler']}, C++{str(b['cxx_standard'])[2:4]}, flags: {b['flags']}")
    print(f"  FFT: {b['fft']}")
    print("  STFT configurations (latency of the analysis→synthesis round trip at 44.1 kHz):")
    for name, c in configs.items():
        print(
            f"    {name:<12} n_fft={c['n_fft']:<5} hop={c['hop']:<4} {c['window']:<11}"
            f" latency {c['latency_samples']:>5} samples = {c['latency_ms_at_44100']:.2f} ms"
        )
    return 0


def cmd_bench(args) -> int:
    from . import bench

    results = {}
    if args.what in ("stft", "all"):
        results["stft"] = bench.bench_stft(args.config, seconds=args.seconds)
    if args.what in ("pipeline", "all"):
        from . import bench_pipeline

        results["pipeline"] = bench_pipeline.bench_pipeline(
            max(args.seconds, 10.0) if args.what == "all" else args.seconds * 10,
            model=args.model,
            baseline_model=args.baseline_model,
        )
    if args.what in ("inserts", "all"):
        from . import bench_inserts

        if args.what == "inserts" or bench_inserts.can_run():  # `all` skips it without the plugins
            results["inserts"] = bench_inserts.bench_inserts(max(args.seconds, 2.0), model=args.model)
    if args.what in ("offline", "all"):
        from . import bench_offline

        results["offline"] = bench_offline.bench_offline(model=args.model, memory=not args.no_memory)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        if "inserts" in results:
            from . import bench_inserts

            print(bench_inserts.format_inserts(results["inserts"]))
        if "offline" in results:
            from . import bench_offline

            print(bench_offline.format_offline(results["offline"]))
        if "stft" in results:
            print(bench.format_stft(results["stft"]))
        if "pipeline" in results:
            from . import bench_pipeline

            print(bench_pipeline.format_pipeline(results["pipeline"]))
    return 0


def cmd_presets(args) -> int:
    from .. import presets as P

    if args.action == "list":
        for name in P.list_presets():
            try:
                p = P.load_preset(name)
            except P.PresetError as e:  # e.g. an effect chain whose plugins aren't installed here
                print(f"{name:<18} (can't be used here: {e})")
                continue
            print(f"{name:<18} {p.description}")
        return 0
    if args.action == "show":
        if not args.names:
            raise ValueError("`presets show` needs a preset name or file: e.g. livedemix presets show karaoke")
        import tomli_w

        for name in args.names:
            p = P.load_preset(name)
            if args.json:
                print(json.dumps(P.preset_to_dict(p), indent=2))
            else:
                print(f"# {p.path}")
                print(tomli_w.dumps(P.preset_to_dict(p)))
        return 0
    # validate
    targets = args.names or [str(P.shipped_presets_dir() / f"{n}.toml") for n in P.list_presets()]
    bad = 0
    for t in targets:
        try:
            P.check_recalls(P.load_preset(t))  # the program-change lists resolve too (bounded, confined)
            print(f"ok   {t}")
        except P.PresetError as e:
            print(f"bad  {e}", file=sys.stderr)
            bad += 1
    return 2 if bad else 0


def cmd_demo(args) -> int:
    from . import demo

    report = demo.run(args.out, model=args.model, phase=args.phase, fmt=args.format)
    print(json.dumps(report, indent=2) if args.json else demo.format_report(report))
    return 0


def cmd_separate(args) -> int:
    from . import library

    stems = [s.strip() for s in args.stems.split(",")] if args.stems else None
    summary = library.run_job(
        args.inputs,
        args.out,
        model=args.model,
        preset=args.preset,
        stems=stems,
        phase=args.phase,
        fmt=args.format,
        force=args.force,
        exact=True if args.exact else (False if args.batched else None),
        recursive=args.recursive,
        jobs=args.jobs,
        use_ray=args.ray is not None,
        ray_address=args.ray or None,
        retries=args.retries,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(library.format_summary(summary))
        library.print_peak_notes(summary)
    return 1 if summary["failed"] else 0


def cmd_eval(args) -> int:
    from . import eval_folder

    table = eval_folder.run(args.stems_dir, model=args.model, phase=args.phase, seconds=args.seconds)
    if args.json:
        clean, replaced = json_safe(table)
        if replaced:
            clean["notes"] = (
                f"{replaced} score(s) were not finite (a silent or perfectly matched reference, or a stem "
                "with no true file to compare with) and are null"
            )
        print(json.dumps(clean, indent=2, allow_nan=False))
    else:
        print(eval_folder.format_table(table))
    return 0


def cmd_model(args) -> int:
    from .model_info import cmd_model as run

    return run(args)


def cmd_plugins(args) -> int:
    from ..plugins import cli as plugins_cli

    return plugins_cli.run(args)


def cmd_devices(args) -> int:
    from ..audio import devices as live_audio

    devs = live_audio.list_devices()
    apis = live_audio.host_apis()
    jack = any(a.startswith("JACK") for a in apis)
    hint = (
        None
        if jack
        else "no JACK server is running, so JACK's ports are not listed: start one (e.g. `jackd -d alsa -r 44100 "
        "-p 256`, or `qjackctl`) and run `livedemix devices` again"
    )
    if args.json:
        print(json.dumps({"host_apis": apis, "devices": devs, "jack": jack, "hint": hint}, indent=2))
    else:
        print(live_audio.format_devices(devs))
        if hint:
            print(f"livedemix: {hint}", file=sys.stderr)
    return 0


def cmd_play(args) -> int:
    from . import session

    return session.run(args, "play")


def cmd_live(args) -> int:
    from . import session

    return session.run(args, "live")


def cmd_midi(args) -> int:
    from .. import midi

    api = midi.midi_api(args.api)
    if args.action == "ports":
        ports = midi.list_ports(api)
        if args.json:
            print(json.dumps(ports, indent=2))
        else:
            print(f"MIDI ({ports['api']})")
            print("  inputs:  " + (", ".join(ports["inputs"]) or "none"))
            print("  outputs: " + (", ".join(ports["outputs"]) or "none"))
        return 0
    if args.action == "monitor":
        return _midi_monitor(midi, args, api)
    if not args.preset or not args.target:
        raise ValueError(
            "`midi learn` needs --preset FILE and --target: e.g. livedemix midi learn --preset my.toml --target gain:vocals"
        )
    rng = None
    if args.range:
        try:
            rng = tuple(float(v) for v in args.range.split(","))
            assert len(rng) == 2 and rng[0] < rng[1]
        except (ValueError, AssertionError):
            raise ValueError(f"--range {args.range!r} is not LOW,HIGH in dB: write e.g. --range -60,6") from None
    m = midi.learn(
        args.preset,
        args.target,
        port=args.port,
        timeout=args.timeout,
        mode=args.mode,
        range_db=rng,
        api=api,
        on_waiting=lambda: print(
            f"waiting for a control on {args.port or 'the virtual port livedemix'} (move a fader, press a pad) ...",
            file=sys.stderr,
            flush=True,
        ),
    )
    print(f"learned: {midi.describe_mapping(m)}; written to {args.preset}")
    return 0


def _midi_monitor(midi, args, api) -> int:
    import time
    from collections import deque

    got: deque = deque()
    mi = midi.open_input(args.port, api, client=midi.CLIENT_NAME + "-monitor")
    mi.set_callback(lambda ev, d=None: got.append(ev[0]))
    print(f"listening on {args.port or 'the virtual port livedemix'}; Ctrl-C stops", file=sys.stderr, flush=True)
    t_end = time.monotonic() + args.seconds if args.seconds else None
    try:
        while t_end is None or time.monotonic() < t_end:
            while got:
                raw = got.popleft()
                m = midi.decode(raw)
                hexb = " ".join(f"{b:02x}" for b in raw)
                print(f"{m}" if isinstance(m, midi.Message) else f"ignored ({m}): {hexb}", flush=True)
            time.sleep(0.005)
    except KeyboardInterrupt:
        pass
    finally:
        midi.close_port(mi)
    return 0


def _stream_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset", default=None, help="preset name or .toml file (gains, mutes, routing of buses to outputs)"
    )
    p.add_argument("--model", default=None, help="model name or card (default: the preset's, else the shipped default)")
    p.add_argument("--device", default=None, help="output device: index or name substring (see `livedemix devices`)")
    p.add_argument(
        "--block",
        type=_block,
        default=0,
        metavar="N",
        help="samples per callback, 16..8192 (default 0: the host's own size, which adds no buffering on JACK)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        metavar="MS",
        help="a separator step slower than this passes the mix through for a second (default: one hop; 0: never)",
    )
    p.add_argument(
        "--midi",
        nargs="?",
        const="virtual",
        default=None,
        metavar="PORT",
        help="MIDI control: an input port name substring, or nothing for a virtual port 'livedemix'",
    )
    p.add_argument(
        "--midi-map",
        default=None,
        metavar="PRESET",
        help="take the MIDI mappings from this preset (default: the --preset's own), e.g. fader-controller",
    )
    p.add_argument(
        "--midi-out",
        default=None,
        metavar="PORT",
        help="feedback of mute/solo states to this output port (default: a virtual port 'livedemix-feedback'; 'none': off)",
    )
    p.add_argument(
        "--midi-api",
        choices=["jack", "alsa"],
        default=None,
        help="MIDI API (default: JACK when a server runs, else ALSA)",
    )
    p.add_argument("--no-ui", action="store_true", help="no terminal UI: run headless until the end or Ctrl-C")
    p.add_argument("--json", action="store_true", help="print the final report as JSON")


class _Parser(argparse.ArgumentParser):
    """Argument errors as every other error: one line, ``livedemix: ...``, exit code 2."""

    def error(self, message):
        self.exit(2, f"livedemix: {message}: see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="livedemix", description="Real-time music demixing: split a mix into stems and remix them live.")
    p.add_argument("--version", action="version", version=f"livedemix {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="version, build flags and the latency of the shipped STFT configurations")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=cmd_info)

    presets = sub.add_parser("presets", help="list, show or validate presets")
    presets.add_argument("action", choices=["list", "show", "validate"])
    presets.add_argument("names", nargs="*", help="preset names or .toml files (validate: all shipped presets if none)")
    presets.add_argument("--json", action="store_true", help="show: print JSON")
    presets.set_defaults(func=cmd_presets)

    demo = sub.add_parser(
        "demo", help="separate the bundled demo song into ./livedemix-demo and print how well it went"
    )
    demo.add_argument("-o", "--out", default="livedemix-demo", help="output folder (default: ./livedemix-demo)")
    demo.add_argument("--model", default=None, help="model name or card (default: the shipped default)")
    demo.add_argument("--phase", choices=PHASE_CHOICES, default=None, help="reconstruction (default: the model's best)")
    demo.add_argument("--format", choices=["wav", "flac"], default="wav")
    demo.add_argument("--json", action="store_true", help="print machine-readable JSON")
    demo.set_defaults(func=cmd_demo)

    sep = sub.add_parser(
        "separate",
        help="separate audio files or whole folders into stems (OUTDIR/<name>/<stem>.wav), resumable (docs/LIBRARY.md)",
    )
    sep.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="audio files (WAV, FLAC, OGG, MP3, ...) or folders of them"
    )
    sep.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (the input tree is mirrored)")
    sep.add_argument("-r", "--recursive", action="store_true", help="also walk the subfolders of folder inputs")
    sep.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes on this machine (default 1; with --ray and no ADDRESS: CPUs of the local cluster, default all)",
    )
    sep.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on a Ray cluster (pip install 'livedemix[cluster]'): no ADDRESS starts a local one",
    )
    sep.add_argument(
        "--retries", type=int, default=2, metavar="N", help="retries of a song whose worker died (default 2)"
    )
    render = sep.add_mutually_exclusive_group()
    render.add_argument(
        "--exact",
        action="store_true",
        help="render with the live model frame by frame, bit for bit the live output (slower; default: the "
        "model's offline graph, which also hears the next ~0.7 s, where its card has one)",
    )
    render.add_argument(
        "--batched",
        action="store_true",
        help="render with the live model's sequence graph, many frames per call, in every phase mode (within "
        "-100 dB of the live output in the wiener mode)",
    )
    sep.add_argument("--model", default=None, help="model name or card (default: the shipped default)")
    sep.add_argument("--phase", choices=PHASE_CHOICES, default=None, help="reconstruction (default: the model's best)")
    sep.add_argument("--stems", default=None, help="comma-separated subset, e.g. vocals,drums (default: all)")
    sep.add_argument("--preset", default=None, help="also write mix.<ext>: the preset's main bus (e.g. karaoke)")
    sep.add_argument(
        "--format",
        choices=["wav", "flac"],
        default="wav",
        help="wav: 32-bit float (never clips); flac: 24-bit, scaled down together if a stem would clip (reported)",
    )
    sep.add_argument("--force", action="store_true", help="overwrite existing outputs")
    sep.add_argument("--json", action="store_true", help="print machine-readable JSON (no progress bar)")
    sep.set_defaults(func=cmd_separate)

    ev = sub.add_parser(
        "eval", help="BSS Eval v4 table against true stems (MUSDB18-HQ layout: <song>/{mixture,vocals,...}.wav)"
    )
    ev.add_argument("stems_dir", help="a song folder, or a folder of song folders")
    ev.add_argument("--model", default=None)
    ev.add_argument("--phase", choices=PHASE_CHOICES, default=None)
    ev.add_argument("--seconds", type=_seconds, default=None, help="evaluate only the first N seconds of each song")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    bench = sub.add_parser("bench", help="measure speed against a baseline run in the same process")
    bench.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "stft", "pipeline", "inserts", "offline"],
        help="stft: the C++ STFT against numpy; pipeline: the whole engine against its hop budget; inserts: a "
        "typical LV2 effect chain against the engine without it; offline: the batched offline path against the "
        "streaming one on the demo song, and the memory for a 10-minute song (default: all; inserts when its plugins are installed)",
    )
    bench.add_argument(
        "--no-memory", action="store_true", help="offline: skip the 10-minute memory measurement (~20 s)"
    )
    bench.add_argument("--model", default=None, help="pipeline: model name or card (default: the shipped default)")
    bench.add_argument(
        "--baseline-model",
        default=None,
        help="pipeline: also time the separator step against this model's (a card), as a ratio",
    )
    bench.add_argument(
        "--config", default="reference", help="STFT configuration for `stft` (default: reference 1024/256)"
    )
    bench.add_argument("--seconds", type=_seconds, default=2.0, help="audio per timing round (default 2)")
    bench.add_argument("--json", action="store_true", help="print machine-readable JSON")
    bench.set_defaults(func=cmd_bench)

    model = sub.add_parser("model", help="what a separator model is and what it was trained on (data, licences)")
    model.add_argument("model", nargs="?", default=None, help="shipped name or card path (default: the default model)")
    model.add_argument("--json", action="store_true", help="print machine-readable JSON")
    model.set_defaults(func=cmd_model)

    plug = sub.add_parser("plugins", help="list the installed LV2 effects, or show one's parameters")
    plug.add_argument("action", choices=["list", "show"])
    plug.add_argument("uri", nargs="*", help="show: plugin URIs (see `livedemix plugins list`)")
    plug.add_argument("--all", action="store_true", help="list: also the plugins livedemix can't host, with why")
    plug.add_argument("--json", action="store_true", help="print machine-readable JSON")
    plug.set_defaults(func=cmd_plugins)

    dev = sub.add_parser("devices", help="list audio devices and host APIs (JACK, ALSA, ...)")
    dev.add_argument("--json", action="store_true", help="print machine-readable JSON")
    dev.set_defaults(func=cmd_devices)

    play = sub.add_parser("play", help="play a file through the engine, remixing its stems live")
    play.add_argument("file", metavar="FILE", help="audio file (WAV, FLAC, OGG, MP3)")
    _stream_options(play)
    play.set_defaults(func=cmd_play)

    live = sub.add_parser(
        "live", help="separate and remix a live input: input channels -> engine -> each bus to its outputs"
    )
    live.add_argument(
        "--in",
        dest="inputs",
        default=None,
        metavar="CH",
        help="input channels, 1-based: '1,2' (default), '3-4', or one channel for a mono source",
    )
    live.add_argument(
        "--input-device", default=None, help="input device if it is not the output device (index or name)"
    )
    _stream_options(live)
    live.set_defaults(func=cmd_live)

    mid = sub.add_parser("midi", help="MIDI: list ports, monitor incoming messages, learn a mapping into a preset")
    mid.add_argument("action", choices=["ports", "monitor", "learn"])
    mid.add_argument("--port", default=None, help="input port name substring (default: a virtual port 'livedemix')")
    mid.add_argument(
        "--api", choices=["jack", "alsa"], default=None, help="MIDI API (default: JACK when a server runs, else ALSA)"
    )
    mid.add_argument("--json", action="store_true", help="ports: print JSON")
    mid.add_argument("--seconds", type=float, default=None, help="monitor: stop after this long (default: Ctrl-C)")
    mid.add_argument("--preset", default=None, metavar="FILE", help="learn: the preset file to write the mapping into")
    mid.add_argument(
        "--target",
        default=None,
        help="learn: gain:STEM[@BUS], mute:STEM[@BUS], solo:STEM[@BUS], master[@BUS], preset:NAME1,NAME2, "
        "or an effect insert: param:STEM/N/PARAM, param:@BUS/N/PARAM, bypass:STEM/N, bypass:@BUS/N",
    )
    mid.add_argument(
        "--mode", choices=["toggle", "momentary"], default="toggle", help="learn: for mute/solo (default toggle)"
    )
    mid.add_argument("--range", default=None, metavar="LOW,HIGH", help="learn: fader range in dB (default -60,6)")
    mid.add_argument("--timeout", type=float, default=60.0, help="learn: seconds to wait for a control (default 60)")
    mid.set_defaults(func=cmd_midi)
    return p


CRASH_SIGNALS = ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE")


def _supervise(argv: list[str]) -> int:
    """Run `play`/`live` in a child process and wait for it. A native library that aborts the
    process (PortAudio's JACK host asserts 'hostApi->processQueue' in UpdateQueue about one stop
    in ten) would otherwise end the command with no word; the parent reports it in one
    sentence. Signals: one a user sends with kill (SIGTERM from a script, SIGINT from a test)
    is forwarded; one the terminal sends (Ctrl-C) reaches the child on its own, so it isn't
    sent twice."""
    import os
    import signal
    import subprocess

    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "livedemix", *argv],
            env=dict(os.environ, LIVEDEMIX_SUPERVISED="1"),
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, old),
        )
        while child.poll() is None:
            info = signal.sigtimedwait(sigs, 0.1)
            if info is not None and info.si_code <= 0 and info.si_pid != child.pid:  # sent with kill()
                try:
                    child.send_signal(info.si_signo)
                except ProcessLookupError:
                    pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    rc = child.returncode
    if rc >= 0:
        return rc
    sig = signal.Signals(-rc)
    if sig.name in CRASH_SIGNALS:
        print(
            f"livedemix: the audio library crashed ({sig.name}) and ended `livedemix {argv[0]}`; this is a known "
            "PortAudio/JACK race when a stream stops (pa_jack.c UpdateQueue): no file was harmed, run the command again",
            file=sys.stderr,
        )
    return 128 + sig.value


def main(argv=None) -> int:
    # A command started from a script's background job inherits SIGINT as ignored, and Python
    # then never raises KeyboardInterrupt: restore it, so Ctrl-C stops every command cleanly.
    # SIGTERM unwinds like an exception too (SystemExit 143), so the `with` blocks that own
    # temporary files remove them: a terminated `separate` leaves no .part files behind.
    import signal

    def _terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: don't interrupt the cleanup
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # main() called from a thread other than the main one
        pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import os

    if (
        args.command in ("play", "live")
        and not os.environ.get("LIVEDEMIX_SUPERVISED")
        and hasattr(signal, "sigtimedwait")
    ):
        return _supervise(list(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as e:  # user-caused problems arrive as one sentence
        print(f"livedemix: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ...
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(
            f"livedemix: {e.strerror or e}{where}: check the path, its permissions and the free disk space",
            file=sys.stderr,
        )
        return 2
    except (RecursionError, MemoryError) as e:  # input too deep or too large for any check to catch first
        print(
            f"livedemix: an input is too large or too deeply nested ({type(e).__name__}): check the files passed",
            file=sys.stderr,
        )
        return 2
    except Exception as e:  # noqa: BLE001 — a bug: one line, exit 70; LIVEDEMIX_DEBUG=1 shows the traceback
        import os

        if os.environ.get("LIVEDEMIX_DEBUG"):
            raise
        print(
            f"livedemix: internal error ({type(e).__name__}: {str(e)[:200]}): please report it with the command "
            "you ran (LIVEDEMIX_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
