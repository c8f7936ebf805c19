"""Training material from real recordings, with 2-stem labels (vocals / accompaniment), for
``python -m factory.train --real DIR``. Only ``train``-split songs (factory.realmusic) go in.

Two kinds of example, drawn by :class:`RealSampler`:

- **real mixes**: an excerpt of a real song; targets the teacher's two stems, which add up to
  the song (factory.teacher), so the training mixture is the real record;
- **remixed real parts with exact targets**: the teacher's vocals from a window where it is
  confident (factory.realval's purity test) laid over an excerpt of a real instrumental where
  the teacher hears no singing; the mixture is the exact sum of the two;
- **real guitar parts in synthesized songs** (``--real-guitar``): the isolated guitar tracks of
  Frets on Fire songs added to a corpus example's 'other' stem (4-stem exact targets).

The separator predicts four stems; on these examples only the vocals and the sum of the other
three are supervised (factory.train's 2-stem loss): nothing is said about how the accompaniment
splits into drums, bass and other.

    python -m factory.realmix build --out DIR [--max-instrumental-minutes 60]

DIR gets, per source, int16 arrays (memory-mapped when training) and ``manifest.json`` with every
source's licence (what a model card must list). Resumable: sources already written are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from factory import realmusic as rm
from factory import realval as rv
from factory import teacher as tch
from factory.voice_shift import preserve_formants

SR = 44100
VERSION = 1


class RealMixError(RuntimeError):
    """Real training material cannot be built or read; the message says what to do."""


def _i16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x) * 32767.0), -32768, 32767).astype(np.int16)


def _save_source(out: Path, name: str, arrays: dict, meta: dict) -> None:
    final = out / name
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".tmp-"))
    try:
        for k, v in arrays.items():
            np.save(tmp / f"{k}.npy", v)
        (tmp / "source.json").write_text(json.dumps(meta, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def build(
    out,
    sung=rm.DEFAULT_SUNG,
    debian=rm.DEFAULT_DEBIAN,
    cache: tch.TeacherCache | None = None,
    max_instrumental_minutes: float = 60.0,
    progress=print,
) -> dict:
    """Write the train-split material (see the module docstring); the teacher runs (cached) on
    what it has not seen. Instrumentals are taken in a fixed order up to the time budget."""
    out = Path(out).resolve()
    if rm.ROOT in (out, *out.parents):
        raise RealMixError(f"{out} is inside the repository; build training material in a folder outside it.")
    cache = cache or tch.TeacherCache()
    songs = [s for s in rm.scan(sung, debian) if s.split == "train"]
    mixes = [s for s in songs if s.has_vocals]
    instr, total = [], 0.0
    for s in sorted((s for s in songs if not s.has_vocals), key=lambda s: rv._rng(s.key).random()):
        f = (s.files.get("instrumental") or s.files.get("backing"))[0]
        d = rm.duration_s(f)
        if total + d > 60 * max_instrumental_minutes:
            continue
        instr.append((s, f))
        total += d
    if not mixes and not instr:
        raise RealMixError("no train-split real songs found: check --sung and --debian (factory.realmusic list).")
    tch.run_files([s.files["mixture"][0] for s in mixes] + [f for _, f in instr], cache)
    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for s in mixes:
        f = s.files["mixture"][0]
        name = rv._slug(s.key)
        meta = {"kind": "mix", "song": s.key, "file": str(f), "licence": s.licence, "source": s.source}
        if not (out / name / "source.json").exists():
            stems, _, _ = cache.get(f)
            confident, present = rv.vocal_confidence(stems["vocals"], stems["accompaniment"])
            arrays = {
                "vocals": _i16(stems["vocals"]),
                "accompaniment": _i16(stems["accompaniment"]),
                "confident": confident,
                "present": present,
            }
            _save_source(out, name, arrays, meta)
            progress(f"{s.key}: teacher stems")
        sources.append({"name": name, **meta})
    for s, f in instr:
        name = rv._slug(s.key)
        parts = [p for r in ("instrumental", "backing", "guitar", "rhythm") for p in s.files.get(r, [])]
        meta = {
            "kind": "instrumental",
            "song": s.key,
            "files": [str(p) for p in parts],
            "licence": s.licence,
            "source": s.source,
        }
        if not (out / name / "source.json").exists():
            xs = [rm.decode(p) for p in parts]
            n = max(x.shape[1] for x in xs)
            x = sum(np.pad(v, ((0, 0), (0, n - v.shape[1]))) for v in xs)
            _, conf, _ = cache.get(f)
            _save_source(out, name, {"instrumental": _i16(x), "clean": conf["share"] <= rv.MAX_INSTR_SHARE}, meta)
            progress(f"{s.key}: instrumental")
        if "guitar" in s.files and not (out / name / "guitar.npy").exists():
            # a real isolated guitar part (Frets on Fire): 'other' material with an exact target
            g = rm.decode(s.files["guitar"][0])
            for k, v in (("guitar_active", _active_frames(g)), ("guitar", _i16(g))):
                tmp = out / name / f".{k}.tmp.npy"
                np.save(tmp, v)
                os.replace(tmp, out / name / f"{k}.npy")
            progress(f"{s.key}: guitar part")
        sources.append({"name": name, **meta})
    man = {"version": VERSION, "teacher": tch.TEACHER_ID, "sources": sources}
    rv._atomic_text(out / "manifest.json", json.dumps(man, indent=1) + "\n")
    return man


def _active_frames(x: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    """Per teacher-hop frame: is the part audible (RMS above ``floor_db`` dBFS)?"""
    n = x.shape[1] // tch.HOP
    e = np.mean(np.asarray(x[:, : n * tch.HOP], np.float64).reshape(x.shape[0], n, tch.HOP) ** 2, axis=(0, 2))
    return 10 * np.log10(e + 1e-20) > floor_db


class RealSampler:
    """Draws 2-stem examples (2 = vocals, accompaniment; 2 channels; length) float32 from a
    folder written by :func:`build`: a real mix with probability ``mix_prob``, else a remix of
    confident teacher vocals over a clean instrumental excerpt (both with a random gain in
    ``gain_range`` and a random channel swap).

    ``vocal_shift`` > 0 stretches the few sung songs into more voices: a remix's vocals are
    resampled by a ratio drawn uniformly in ±``vocal_shift`` semitones (pitch, formants and
    tempo move together, as a tape played faster or slower); with ``vocal_formants`` the
    formants are then moved back (factory.voice_shift): the same singer at another pitch. Only
    the remixes: their targets stay exact; a real mix is a record and stays as it was.
    (docs/EVALUATION.md has what each measured.)"""

    def __init__(
        self,
        root,
        length: int,
        *,
        mix_prob=0.5,
        gain_range=(0.25, 1.25),
        swap_prob=0.5,
        vocal_shift=0.0,
        vocal_formants=False,
    ):
        root = Path(root)
        if not (root / "manifest.json").exists():
            raise RealMixError(f"{root} holds no real training material: python -m factory.realmix build --out {root}")
        man = json.loads((root / "manifest.json").read_text())
        self.length, self.mix_prob, self.gain_range, self.swap_prob = length, mix_prob, gain_range, swap_prob
        self.vocal_shift = float(vocal_shift)
        self.vocal_formants = bool(vocal_formants)
        self.frames = -(-length // tch.HOP)
        self.mixes, self.instr, self.guitars = [], [], []
        for s in man["sources"]:
            d = root / s["name"]
            if s["kind"] == "mix":
                voc = np.load(d / "vocals.npy", mmap_mode="r")
                if voc.shape[1] <= length:
                    continue
                acc = np.load(d / "accompaniment.npy", mmap_mode="r")
                ok = np.load(d / "confident.npy") & np.load(d / "present.npy")
                starts = self._good_starts(ok, rv.MIN_CONFIDENT, voc.shape[1])
                self.mixes.append((voc, acc, starts))
            else:
                x = np.load(d / "instrumental.npy", mmap_mode="r")
                if x.shape[1] <= length:
                    continue
                starts = self._good_starts(np.load(d / "clean.npy"), 1.0, x.shape[1])
                if len(starts):
                    self.instr.append((x, starts))
                if (d / "guitar.npy").exists():
                    g = np.load(d / "guitar.npy", mmap_mode="r")
                    starts = self._good_starts(np.load(d / "guitar_active.npy"), 0.5, g.shape[1])
                    if len(starts):
                        self.guitars.append((g, starts))
        if not self.mixes:
            raise RealMixError(f"{root} has no real song longer than {length / SR:.1f} s")
        self.vocal_sources = [m for m in self.mixes if len(m[2])]

    def _good_starts(self, ok: np.ndarray, min_fraction: float, n: int) -> np.ndarray:
        """Frame indices where a window of the example's length has ≥ min_fraction good frames."""
        if len(ok) < self.frames:
            return np.zeros(0, np.int64)
        c = np.concatenate([[0], np.cumsum(ok.astype(np.int64))])
        frac = (c[self.frames :] - c[: -self.frames]) / self.frames
        starts = np.nonzero(frac >= min_fraction - 1e-9)[0]
        return starts[starts * tch.HOP + self.length <= n]

    def _part(self, rng, x: np.ndarray, start: int) -> np.ndarray:
        return self._gain_and_swap(rng, np.asarray(x[:, start : start + self.length], np.float32) / 32767.0)

    def _gain_and_swap(self, rng, y: np.ndarray) -> np.ndarray:
        y = y * rng.uniform(*self.gain_range)
        return y[::-1] if rng.random() < self.swap_prob else y

    def _shifted_vocals(self, rng, voc: np.ndarray, start: int) -> np.ndarray:
        """``length`` samples of ``voc`` from ``start``, played ``2^(s/12)`` times as fast."""
        import soxr

        ratio = 2.0 ** (rng.uniform(-self.vocal_shift, self.vocal_shift) / 12.0)
        need = min(int(np.ceil(self.length * ratio)) + 64, voc.shape[1] - start)
        x = np.asarray(voc[:, start : start + need], np.float32) / 32767.0
        y = soxr.resample(np.ascontiguousarray(x.T), SR * ratio, SR, quality="HQ").T
        if self.vocal_formants:
            y = preserve_formants(np.ascontiguousarray(y), ratio)
        y = y[:, : self.length]
        if y.shape[1] < self.length:  # the song ended: pad the tail with silence
            y = np.pad(y, ((0, 0), (0, self.length - y.shape[1])))
        return self._gain_and_swap(rng, np.ascontiguousarray(y, np.float32))

    def guitar(self, rng: np.random.Generator) -> np.ndarray:
        """An excerpt (2, length) of a real isolated guitar part, audible in ≥ half its frames,
        with a random gain and channel swap: to add to a synthesized song's 'other' stem."""
        g, starts = self.guitars[int(rng.integers(len(self.guitars)))]
        return self._part(rng, g, int(starts[rng.integers(len(starts))]) * tch.HOP)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((2, 2, self.length), np.float32)
        if rng.random() < self.mix_prob or not self.instr or not self.vocal_sources:
            voc, acc, _ = self.mixes[int(rng.integers(len(self.mixes)))]
            start = int(rng.integers(0, voc.shape[1] - self.length))
            g = rng.uniform(*self.gain_range)  # one gain: it stays the real record
            swap = rng.random() < self.swap_prob
            for j, x in enumerate((voc, acc)):
                y = np.asarray(x[:, start : start + self.length], np.float32) / 32767.0 * g
                out[j] = y[::-1] if swap else y
        else:
            voc, _, starts = self.vocal_sources[int(rng.integers(len(self.vocal_sources)))]
            start = int(starts[rng.integers(len(starts))]) * tch.HOP
            out[0] = self._shifted_vocals(rng, voc, start) if self.vocal_shift > 0 else self._part(rng, voc, start)
            x, starts = self.instr[int(rng.integers(len(self.instr)))]
            out[1] = self._part(rng, x, int(starts[rng.integers(len(starts))]) * tch.HOP)
        peak = np.abs(out.sum(axis=0)).max()
        if peak > 1.0:
            out /= peak
        return out

    def batch(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.stack([self.sample(rng) for _ in range(size)])


def describe(root) -> dict:
    """What a model card says of the material: counts, licences and the teacher."""
    man = json.loads((Path(root) / "manifest.json").read_text())
    src = man["sources"]
    return {
        "dir": str(root),
        "teacher": man["teacher"],
        "mixes": sum(s["kind"] == "mix" for s in src),
        "instrumentals": sum(s["kind"] == "instrumental" for s in src),
        "licences": sorted({s["licence"] for s in src}),
        "songs": sorted(s["song"] for s in src),
        # one row per song: what a model card lists (title, how it was used, licence, origin)
        "sources": sorted(
            (
                {"song": s["song"], "kind": s["kind"], "licence": s["licence"], "source": s.get("source", "")}
                for s in src
            ),
            key=lambda r: (r["kind"], r["song"]),
        ),
    }


def two_stem_loss(V, S2, X, complex_weight: float, mask_power: float = 2.0, vocals: int = 0):
    """The loss on 2-stem examples (factory.train --real): V the network's four magnitudes
    (B, J, C, F, T), S2 the targets' spectra (B, 2, C, F, T: vocals, accompaniment), X the
    mixture's. L1 on the vocals' magnitude, plus ``complex_weight`` times the L1 distance of the
    vocals' mask estimate λ_v·X to the true vocals. The accompaniment's estimate (1 − λ_v)·X, the
    sum of the other three stems, has exactly the opposite error since S2 adds up to X, so it is
    supervised too; how the accompaniment splits into drums, bass and other is not."""
    import torch

    from factory.train import wiener_mask

    loss = (V[:, vocals] - S2[:, 0].abs()).abs().mean()
    if complex_weight:
        m = wiener_mask(V, mask_power=mask_power)[:, vocals].unsqueeze(-1)
        d = m * torch.view_as_real(X) - torch.view_as_real(S2[:, 0])
        loss = loss + complex_weight * torch.sqrt((d * d).sum(-1) + 1e-20).mean()
    return loss


def anchored_split_loss(V, S2, X, V_anchor, complex_weight: float, mask_power: float = 2.0, vocals: int = 0):
    """The loss on how a 2-stem example's accompaniment splits into drums, bass and other,
    which the teacher's labels leave free: each of those stems' target is the teacher's
    accompaniment times the anchor model's share of it, V_a,j^p / Σ_k≠vocals V_a,k^p (V_anchor:
    a frozen 4-stem model's magnitudes on the same example; factory.train --anchor). Without
    it every real-music stage drifted from the 4-stem split it had learned on the corpus.
    Same terms as the corpus loss, averaged over the three stems: L1 on magnitudes plus
    ``complex_weight`` times the L1 distance of each stem's mask estimate to its target."""
    import torch

    from factory.train import wiener_mask

    rest = [j for j in range(V.shape[1]) if j != vocals]
    p = V_anchor[:, rest].clamp_min(0) ** mask_power
    share = p / (p.sum(1, keepdim=True) + 1e-8)  # (B, 3, C, F, T)
    loss = (V[:, rest] - share * S2[:, 1].abs().unsqueeze(1)).abs().mean()
    if complex_weight:
        target = share.unsqueeze(-1) * torch.view_as_real(S2[:, 1]).unsqueeze(1)  # real views (..., 2)
        m = wiener_mask(V, mask_power=mask_power)[:, rest].unsqueeze(-1)
        d = m * torch.view_as_real(X).unsqueeze(1) - target
        loss = loss + complex_weight * torch.sqrt((d * d).sum(-1) + 1e-20).mean()
    return loss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m factory.realmix", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="teacher stems of train-split real songs + clean instrumentals (resumable)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--sung", type=Path, default=rm.DEFAULT_SUNG)
    b.add_argument("--debian", type=Path, default=rm.DEFAULT_DEBIAN)
    b.add_argument("--cache", type=Path, default=tch.DEFAULT_CACHE)
    b.add_argument("--max-instrumental-minutes", type=float, default=60.0)
    args = ap.parse_args(argv)
    try:
        man = build(
            args.out, args.sung, args.debian, tch.TeacherCache(args.cache / "teacher"), args.max_instrumental_minutes
        )
        kinds = [s["kind"] for s in man["sources"]]
        print(f"{kinds.count('mix')} real mixes and {kinds.count('instrumental')} instrumentals in {args.out}")
    except (RealMixError, rm.RealMusicError, tch.TeacherError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
