"""Command line of the corpus factory."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m factory.corpus", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render a synthetic multi-stem corpus (resumable)")
    b.add_argument("--out", required=True)
    b.add_argument("--hours", type=float, required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--soundfont", default=None)
    b.add_argument(
        "--timbres",
        choices=("single", "diverse", "wide", "widest"),
        default="single",
        help="single: every stem from --soundfont; diverse: each stem draws a GM bank or sampled kit; "
        "wide: the diverse pool plus GeneralUser GS and A320U; widest: wide plus Hydrogen's drum kits "
        "(factory/corpus/timbres.py)",
    )
    b.add_argument("--format", choices=("flac", "wav"), default="flac")
    b.add_argument("--force", action="store_true", help="overwrite a corpus built with other settings")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--song-seconds", type=float, default=None, help="fixed song length (default: 10-60 s)")
    b.add_argument(
        "--splits",
        default=None,
        metavar="SPLIT[,SPLIT]",
        help="render only these splits' songs of the plan (e.g. test: what factory.evaluate "
        "needs, minutes instead of hours); a later build without it adds the rest",
    )
    v = sub.add_parser("verify", help="check sums, activity and splits of a build")
    v.add_argument("root")
    v.add_argument("--max-songs", type=int, default=None)
    s = sub.add_parser("stats", help="statistics and figures of a build (for docs/CORPUS.md)")
    s.add_argument("root")
    s.add_argument("--docs", default="docs")
    d = sub.add_parser("demo", help="render the bundled demo song")
    d.add_argument("--out", required=True)
    d.add_argument("--seed", type=int, default=11)
    f = sub.add_parser("figure", help="spectrograms of the vocal sources next to an instrument")
    f.add_argument("--out", default="docs/vocal_sources.png")
    args = ap.parse_args(argv)
    from .render import MissingTool

    try:
        if args.cmd == "build":
            from .build import build

            r = build(
                args.out,
                args.hours,
                args.seed,
                args.workers,
                args.soundfont,
                args.format,
                args.force,
                progress=not args.no_progress,
                song_seconds=args.song_seconds,
                splits=args.splits.split(",") if args.splits else None,
                timbres=args.timbres,
            )
            print(
                f"{r['songs']} songs, {r['hours']:.2f} h of audio in {args.out} "
                f"(this run: {r['rendered_s'] / 3600:.2f} h rendered in {r['wall_s'] / 60:.1f} min)"
            )
        elif args.cmd == "verify":
            from .verify import verify

            ok = verify(args.root, args.max_songs)
            return 0 if ok else 1
        elif args.cmd == "stats":
            from .stats import write_stats

            write_stats(args.root, args.docs)
        elif args.cmd == "demo":
            from .demo import make_demo

            make_demo(args.out, args.seed)
        elif args.cmd == "figure":
            from .figure import vocal_figure

            vocal_figure(args.out)
    except MissingTool as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
