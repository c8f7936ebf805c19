"""`livedemix separate`: files in, one folder of stems per file out, streamed in constant memory."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..audio.files import FORMATS, AtomicOutputs, AudioFileError, open_input, read_blocks
from ..offline import StreamingSeparation

CHUNK = 65536


def plan_outputs(inputs: list[Path], outdir: Path, names: list[str], fmt: str, force: bool) -> dict[Path, Path]:
    """Check every input and output before any work: one sentence for the first problem.
    ``names`` are the real output names (the card's stems, validated identifiers, and ``mix``);
    an output that is one of the inputs is refused even with ``force``."""
    folders, seen = {}, {}
    inputs_real = {os.path.realpath(p) for p in inputs}
    for path in inputs:
        open_input(path).close()  # raises AudioFileError for missing/corrupt/empty/bad rate/too many channels
        folder = outdir / path.stem
        if folder in seen:
            raise AudioFileError(f"{path} and {seen[folder]} would both write to {folder}: rename one of them")
        seen[folder] = path
        for n in names:
            target = folder / f"{n}.{fmt}"
            if os.path.realpath(target) in inputs_real or any(
                target.exists() and os.path.samefile(target, i) for i in inputs
            ):
                raise AudioFileError(
                    f"{target} is an input of this run: --force never overwrites an input; choose another -o folder"
                )
        existing = [folder / f"{n}.{fmt}" for n in names if (folder / f"{n}.{fmt}").exists()]
        if existing and not force:
            raise AudioFileError(
                f"{existing[0]} already exists: pass --force to overwrite, or choose another -o folder"
            )
        folders[path] = folder
    return folders


def _peak_note(path: Path, out: AtomicOutputs) -> str:
    if out.gain_db < 0:
        return (
            f"livedemix: note: the stems of {path.name} peak at {out.peak:.2f}x full scale; every output was "
            f"scaled by {out.gain_db:.1f} dB so the 24-bit files don't clip (use --format wav for float files)"
        )
    return (
        f"livedemix: note: the stems of {path.name} peak at {out.peak:.2f}x full scale; they are written as "
        "32-bit float WAV, so nothing was clipped (lower the level before converting them to an integer format)"
    )


def _progress(done: int, total: int, name: str, start: float) -> None:
    if not sys.stderr.isatty():
        return
    frac = done / max(total, 1)
    bar = "#" * int(30 * frac)
    rate = done / max(time.perf_counter() - start, 1e-9)
    sys.stderr.write(f"\r{name[:30]:<30} [{bar:<30}] {100 * frac:5.1f}% {rate / 44100:5.1f}x real time")
    sys.stderr.flush()


def separate_file(
    path: Path,
    folder: Path,
    *,
    model=None,
    preset=None,
    stems=None,
    phase=None,
    fmt="wav",
    block_size=4096,
    quiet=False,
    exact=False,
    engine_cache=None,
) -> dict:
    """One song into its folder (atomically). ``exact``: the bit-exact streaming render instead
    of the batched one; ``engine_cache``: a library worker's dict, so the model loads once."""
    t0 = time.perf_counter()
    with open_input(path) as f:
        sep = StreamingSeparation(
            f.samplerate,
            f.channels,
            model=model,
            preset=preset,
            stems=stems,
            phase=phase,
            block_size=block_size,
            exact=exact,
            engine_cache=engine_cache,
        )
        total = f.frames
        with AtomicOutputs(folder, sep.outputs, fmt, f.samplerate, f.channels) as out:
            done = 0
            for chunk in read_blocks(f, CHUNK):
                out.write(sep.feed(chunk))
                done += chunk.shape[1]
                if not quiet:
                    _progress(done, total, path.name, t0)
            out.write(sep.finish())
            files = out.commit()
    if not quiet and sys.stderr.isatty():
        sys.stderr.write("\n")
    if out.peak > 1.0 and not quiet:  # never clipped, never silent about it
        sys.stderr.write(_peak_note(path, out) + "\n")
    seconds = total / f.samplerate
    wall = time.perf_counter() - t0
    return {
        "input": str(path),
        "outputs": [str(p) for p in files],
        "seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "real_time_factor": round(wall / seconds, 4),
        "latency_samples": sep.latency,
        "peak": round(out.peak, 4),
        "gain_db": round(out.gain_db, 3),
        "stats": sep.stats,
        "engine": sep.describe(),
    }


def run(
    inputs: list[str],
    outdir: str,
    *,
    model=None,
    preset=None,
    stems=None,
    phase=None,
    fmt="wav",
    force=False,
    block_size=4096,
    quiet=False,
) -> list[dict]:
    if fmt not in FORMATS:
        raise AudioFileError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    paths = [Path(p) for p in inputs]
    from ..presets import Preset, load_preset
    from ..separator import load_card, resolve_model

    if preset is not None and not isinstance(preset, Preset):
        preset = load_preset(preset)
    # The names the files will really have: the stems of the card that will run (a preset's
    # model is a shipped one), checked as identifiers by load_card.
    from_preset = model is None and preset is not None and preset.engine.model is not None
    model_stems = load_card(resolve_model(preset.engine.model if from_preset else model, shipped_only=from_preset))[
        "stems"
    ]
    if stems:
        unknown = [s for s in stems if s not in model_stems]
        if unknown:
            raise AudioFileError(
                f"--stems names {unknown[0]!r}, which the model doesn't separate: use some of {', '.join(model_stems)}"
            )
    names = list(stems or model_stems) + (["mix"] if preset else [])
    folders = plan_outputs(paths, Path(outdir), names, fmt, force)
    return [
        separate_file(
            p,
            folders[p],
            model=model,
            preset=preset,
            stems=stems,
            phase=phase,
            fmt=fmt,
            block_size=block_size,
            quiet=quiet,
        )
        for p in paths
    ]
