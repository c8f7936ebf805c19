"""The `livedemix` command line."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__


def cmd_info(args) -> int:
    from . import dsp

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
        print(f"    {name:<12} n_fft={c['n_fft']:<5} hop={c['hop']:<4} {c['window']:<11}"
              f" latency {c['latency_samples']:>5} samples = {c['latency_ms_at_44100']:.2f} ms")
    return 0


def cmd_bench(args) -> int:
    from . import bench

    results = {}
    if args.what in ("stft", "all"):
        results["stft"] = bench.bench_stft(args.config, seconds=args.seconds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        if "stft" in results:
            print(bench.format_stft(results["stft"]))
    return 0


def cmd_presets(args) -> int:
    from . import presets as P

    if args.action == "list":
        for name in P.list_presets():
            p = P.load_preset(name)
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
            P.load_preset(t)
            print(f"ok   {t}")
        except P.PresetError as e:
            print(f"bad  {e}", file=sys.stderr)
            bad += 1
    return 2 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livedemix", description="Real-time music demixing: split a mix into stems and remix them live.")
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

    bench = sub.add_parser("bench", help="measure speed against a baseline run in the same process")
    bench.add_argument("what", nargs="?", default="all", choices=["all", "stft"], help="which benchmark (default: all)")
    bench.add_argument("--config", default="reference", help="STFT configuration for `stft` (default: reference 1024/256)")
    bench.add_argument("--seconds", type=float, default=2.0, help="audio per timing round (default 2)")
    bench.add_argument("--json", action="store_true", help="print machine-readable JSON")
    bench.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as e:  # user-caused problems arrive as one sentence
        print(f"livedemix: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
