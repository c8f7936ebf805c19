"""Train the streaming separator on CPU.

    python -m factory.train --data /work/data/corpus --out runs/default --steps 12000

Data: any folder in the stems layout of `factory.stems_data` (the livedemix corpus, or
MUSDB18-HQ with `--valid-split test`). Every `--eval-every` steps is an "epoch": the log
(`<out>/log.jsonl`) gets the mean training loss and the validation score (the waveform SDR of
the Wiener estimate from the model's magnitudes, averaged over stems and songs), `last.pt`
is written, and `best.pt` when the score improved. Re-running the same command resumes
from `last.pt`. Deterministic given `--seed`: example k of step s is drawn from a generator
seeded with (seed, s), so a resumed run sees the same data as an uninterrupted one.

Loss: L1 between predicted and true stem magnitudes, plus L1 between the complex Wiener
estimate built from the predicted magnitudes and the true stem spectra (this is what the
Wiener reconstruction turns into audio, so it tracks SDR better than magnitudes alone;
`--complex-weight` weighs the second term, `--mask-power` sets the masks' power). `--init-from
CHECKPOINT` starts a second stage from a trained model's weights (new optimizer and
schedule); its checkpoints report both stages and the totals. `--frame-stride S` trains the
per-bin part of the network and the loss on every S-th frame of each excerpt (a random offset
per step; the body still runs on every frame), which is most of a step's cost.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .export import atomic_write_bytes
from .model import ModelConfig, WaveNetSeparator, with_backward_stack
from .stems_data import STEMS, BatchPrefetcher, ExampleSampler, load_splits

SAMPLE_RATE = 44100


class TorchStft:
    """The native core's STFT convention in torch: frame t = rfft(w · x[(t+1)hop - n : (t+1)hop])."""

    def __init__(self, n_fft: int, hop: int, window: str):
        from livedemix import dsp

        self.cfg = dsp.StftConfig(n_fft, hop, window)
        analysis, synthesis = self.cfg.windows()
        self.window = torch.from_numpy(np.asarray(analysis, np.float32))
        self.synthesis = torch.from_numpy(np.asarray(synthesis, np.float32))
        self.n_fft, self.hop = n_fft, hop

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n) float → (..., bins, frames) complex."""
        shape = x.shape
        x = torch.nn.functional.pad(x.reshape(-1, shape[-1]), (self.n_fft - self.hop, 0))
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def frames(self, x: torch.Tensor, offset: int, stride: int, count: int) -> torch.Tensor:
        """Frames offset, offset + stride, … (count of them) of ``self(x)``, at 1/stride of its cost."""
        shape = x.shape
        x = torch.nn.functional.pad(x.reshape(-1, shape[-1]), (self.n_fft - self.hop, 0))[:, offset * self.hop :]
        spec = torch.stft(x, self.n_fft, self.hop * stride, window=self.window, center=False, return_complex=True)
        spec = spec[..., :count]
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def inverse(self, Z: torch.Tensor, length: int) -> torch.Tensor:
        """(..., bins, frames) complex → (..., length) float: the synthesis window's overlap-add
        at the analysis frames' places, so ``inverse(self(x))`` is ``x`` (the runtime's ISTFT,
        without its delay) up to the last whole hop; the hop before it lacks the frame after it
        and is not exact, and what lies past it (never analysed) comes back as zeros."""
        shape, frames = Z.shape[:-2], Z.shape[-1]
        y = torch.fft.irfft(Z.reshape(-1, *Z.shape[-2:]), n=self.n_fft, dim=-2) * self.synthesis[:, None]
        y = torch.nn.functional.fold(
            y, output_size=(1, (frames - 1) * self.hop + self.n_fft), kernel_size=(1, self.n_fft), stride=(1, self.hop)
        )
        y = y[..., 0, 0, self.n_fft - self.hop :][..., :length]
        y = torch.nn.functional.pad(y, (0, length - y.shape[-1]))
        return y.reshape(*shape, length)

    def as_dict(self) -> dict:
        return {"n_fft": self.cfg.n_fft, "hop": self.cfg.hop, "window": self.cfg.window}


def strided_spectra(stft: TorchStft, stems: torch.Tensor, stride: int, offset: int):
    """For a step with ``--frame-stride``: the network's input (the mixture's magnitudes) at
    every whole stride's frame, and the stems' and the mixture's spectra at the chosen frames
    offset, offset + stride, … (what the loss compares). stems (B, J, C, n).

    Only what is used is transformed: the mixture at every frame, the stems at the chosen
    frames, and the last stem as the mixture minus the others (the STFT is linear): at stride 2,
    5/8 of the transforms of every stem at every frame, and the whole step costs 0.71 of what it
    did (measured in one process, alternating)."""
    X = stft(stems.sum(1))
    X = X[..., : X.shape[-1] - X.shape[-1] % stride]  # whole strides: one shape for every offset
    Xs = X[..., offset::stride]
    S = stft.frames(stems[:, :-1], offset, stride, Xs.shape[-1])
    S = torch.cat([S, (Xs - S.sum(1)).unsqueeze(1)], dim=1)
    return X.abs(), S, Xs


def wiener_mask(V: torch.Tensor, eps: float = 1e-8, mask_power: float = 2.0) -> torch.Tensor:
    """Each stem's share V^p / Σ V^p of the mixture, from magnitudes V (B, J, C, F, T): p = 2 is
    the Wiener filter (shares of the power); the runtime uses the power in the model's card
    (``mask_power``, see livedemix.phase), so training can score the reconstruction it will get."""
    p = V * V if mask_power == 2.0 else (V if mask_power == 1.0 else V.clamp_min(0) ** mask_power)
    return p / (p.sum(dim=1, keepdim=True) + eps)


def wiener(V: torch.Tensor, X: torch.Tensor, mask_power: float = 2.0) -> torch.Tensor:
    """Stems' complex estimates from magnitudes V (B, J, C, F, T) and mixture X (B, C, F, T)."""
    return wiener_mask(V, mask_power=mask_power) * X.unsqueeze(1)


def wiener_error(V, S, X, mask_power: float = 2.0) -> torch.Tensor:
    """Wiener(V) − S on real views (..., 2): the same values as ``wiener(V, X) − S``, but it
    compiles to a few fused loops, where complex autograd made the loss 60% of a step."""
    return wiener_mask(V, mask_power=mask_power).unsqueeze(-1) * torch.view_as_real(X).unsqueeze(
        1
    ) - torch.view_as_real(S)


def loss_fn(V, S, X, complex_weight: float, mask_power: float = 2.0) -> torch.Tensor:
    """L1(|S|) + w · L1(Wiener(V) − S), the second term on real views (``wiener_error``)."""
    loss = (V - S.abs()).abs().mean()
    if complex_weight:
        d = wiener_error(V, S, X, mask_power)
        loss = loss + complex_weight * torch.sqrt((d * d).sum(-1) + 1e-20).mean()
    return loss


# What the checkpoint and the card say the loss was (the shipped model's; docs/MODEL.md).
LOSS = "L1(|S|) + {w} * L1(Wiener(V) - S)"


def compiled(fn, what: str):
    """torch.compile(fn), falling back to fn itself for good when compiling fails (it happens
    lazily, at the first call: e.g. a machine without a C++ compiler)."""
    fast, failed = torch.compile(fn, dynamic=False), []

    def call(*args, **kwargs):
        if not failed:
            try:
                return fast(*args, **kwargs)
            except Exception as e:  # pragma: no cover - depends on the machine
                failed.append(e)
                print(f"note: training {what} without torch.compile ({type(e).__name__}: {str(e)[:200]})")
        return fn(*args, **kwargs)

    return call


def autocast_forward(net, dtype):
    """net's forward pass under CPU autocast to dtype, its output back in float32: the matrix
    products (most of a step) run in dtype, the weights and their optimiser stay float32."""

    def forward(*args):
        with torch.autocast("cpu", dtype=dtype):
            return net(*args).float()

    return forward


@torch.no_grad()
def validate(net, stft, songs, seconds: float, mask_power: float = 2.0) -> dict:
    """SDR (dB) of the Wiener estimate per stem in the waveform (the evaluation's measure),
    averaged over songs. Both the estimate and the reference go through the same synthesis, so
    the first and last frames' edges count the same for both. (In the STFT domain the score
    differs: with the asymmetric window pair the STFT is not a tight frame.)"""
    net.eval()
    n = int(seconds * SAMPLE_RATE)
    per_stem = {s: [] for s in STEMS}
    for song in songs:
        stems = torch.from_numpy(song.stems[:, :, :n].astype(np.float32) / 32768.0)
        S = stft(stems)  # (J, C, F, T)
        X = S.sum(0)
        V = net(X.unsqueeze(0).abs())[0]
        est = stft.inverse(wiener(V.unsqueeze(0), X.unsqueeze(0), mask_power)[0], stems.shape[-1])
        ref = stft.inverse(S, stems.shape[-1])
        for j, name in enumerate(STEMS):
            energy = (ref[j] ** 2).sum()
            if energy < 1e-6:  # the stem is silent in this song: SDR undefined, skip
                continue
            err = ((ref[j] - est[j]) ** 2).sum()
            per_stem[name].append(float(10 * torch.log10(energy / (err + 1e-12))))
    net.train()
    means = {k: float(np.mean(v)) if v else float("nan") for k, v in per_stem.items()}
    means["mean"] = float(np.nanmean(list(means.values())))
    return means


def add_real_guitar(batch: np.ndarray, real, rng, prob: float) -> np.ndarray:
    """Corpus examples (B, J, C, n) with a real guitar excerpt added to 'other' with probability
    ``prob`` each (the target stays exact: the mixture is the stems' sum); rescaled where the
    mixture would clip."""
    out = batch.copy()
    j = STEMS.index("other")
    for i in range(len(out)):
        if rng.random() < prob:
            out[i, j] += real.guitar(rng)
            peak = np.abs(out[i].sum(axis=0)).max()
            if peak > 1.0:
                out[i] /= peak
    return out


def corpus_timbres(data: Path) -> dict:
    """The sound libraries a synthesized corpus was rendered with (its corpus.json)."""
    cfg = Path(data) / "corpus.json"
    if not cfg.is_file():
        return {}
    c = json.loads(cfg.read_text())
    return {"pool": c.get("timbres", "single"), "soundfonts": c.get("soundfonts", [c.get("soundfont")])} | (
        {"drum_kits": c["drum_kits"]} if "drum_kits" in c else {}
    )


def corpora_timbres(folders: list[Path]) -> dict:
    """corpus_timbres over several corpora trained on together: pools joined by '+', the
    libraries of all of them (each once, in order)."""
    parts = [t for t in (corpus_timbres(d) for d in folders) if t]
    if len(parts) <= 1:
        return parts[0] if parts else {}
    merged = {"pool": "+".join(t["pool"] for t in parts)}
    for key in ("soundfonts", "drum_kits"):
        names = [n for t in parts for n in t.get(key, [])]
        if names:
            merged[key] = list(dict.fromkeys(names))
    return merged


def load_anchor(path: Path, bins: int) -> WaveNetSeparator:
    """A trained WaveNet checkpoint as a frozen network in eval mode (for --anchor); one clear
    sentence when it is not one, or was trained on other STFT bins than this run's."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        cfg = ModelConfig.from_dict(ck["model_config"])
        net = WaveNetSeparator(cfg)
        net.load_state_dict(ck["state_dict"])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise SystemExit(
            f"--anchor {path}: not a WaveNet checkpoint of factory.train ({type(e).__name__}); "
            "give one, e.g. factory/checkpoints/synthetic-v1.pt"
        ) from None
    if cfg.bins != bins:
        raise SystemExit(
            f"--anchor {path}: its network has {cfg.bins} STFT bins, this run {bins}; "
            "give an anchor trained with the same --stft"
        )
    net.eval()
    for w in net.parameters():
        w.requires_grad_(False)
    return net


def save_atomic(obj, path: Path) -> None:
    """torch.save through export.atomic_write_bytes: never half-written, a new file readable by
    all, a replaced one keeping its mode."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def keep_freed_memory() -> None:
    """Make glibc's malloc reuse freed memory instead of handing it back to the kernel.

    Every step allocates and frees the same few large tensors (spectra of the batch, tens of
    MB each). By default glibc serves each one with a fresh mmap and unmaps it when freed, so
    every step page-faults all of them in again: measured here, a third of the CPU time went
    to the kernel and a step of the 128-channel network took 1.96 s; with mmap off and no
    trimming, 1.03 s. Linux/glibc only; elsewhere this does nothing."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m factory.train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="stems folder (<root>/<split>/<song>/<stem>.flac); several folders train on all their songs",
    )
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, log)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--valid-split", default="valid", help="'valid' for the corpus, 'test' for MUSDB18-HQ")
    p.add_argument("--stft", default="quality", help="shipped STFT configuration (livedemix.dsp.SHIPPED_CONFIGS)")
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--seconds", type=float, default=3.0, help="excerpt length")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="raise the learning rate linearly over the first N steps (for a second stage)",
    )
    p.add_argument("--complex-weight", type=float, default=1.0)
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from this checkpoint's weights (a second stage: new optimizer and schedule; "
        "the model flags must match it)",
    )
    p.add_argument(
        "--frame-stride",
        type=int,
        default=1,
        help="train the per-bin part (the head's last layer, the refiner) and the loss on every "
        "S-th frame of each excerpt, from a random offset (the body runs on all frames); "
        "a step then costs about 1/S of its per-bin work",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: the network's forward pass under bfloat16 autocast (weights, optimiser and "
        "loss stay float32); 1.1-1.5x cheaper steps measured on a CPU with AVX-512 BF16",
    )
    p.add_argument(
        "--mask-power",
        type=float,
        default=2.0,
        help="the power p of the masks V^p / sum V^p that the loss's reconstruction and the "
        "validation use (2: Wiener; the runtime uses the card's calibrated power, 1 for the "
        "shipped model)",
    )
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--valid-seconds", type=float, default=20.0)
    p.add_argument("--valid-songs", type=int, default=30, help="validate on the first N songs of the valid split")
    p.add_argument("--residual", type=int, default=64)
    p.add_argument("--skip", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--dilations", default="1,2,4,8,16,32,1,2,4,8,16,32")
    p.add_argument("--lookahead", type=int, default=0)
    p.add_argument(
        "--backward",
        action="store_true",
        help="add the reverse-time stack (an offline-only model that sees the future; see factory/model.py)",
    )
    p.add_argument("--local", type=int, default=0, help="channels of the per-bin local refiner of the masks (0: none)")
    p.add_argument(
        "--local-patches",
        default="5x3",
        help="the refiner's patches, BINSxFRAMES[,BINSxFRAMES...] (bins odd), e.g. 5x3,17x1,1x9",
    )
    p.add_argument(
        "--arch",
        choices=("wavenet", "umx", "umx-bidir"),
        default="wavenet",
        help="our WaveNet, or Open-Unmix's network (causal or bidirectional) as the peer",
    )
    p.add_argument("--umx-hidden", type=int, default=512)
    p.add_argument(
        "--cpu-minutes",
        type=float,
        default=None,
        help="stop (checkpointed, as if finished) once the run has used this much CPU time: "
        "the equal budget for side-by-side comparisons",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="run the training step eagerly (torch.compile fuses the loss and the gated layers: "
        "1.5x faster steps on CPU, after ~30 s of compiling)",
    )
    p.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="pause at this step (checkpointed); the same command without it resumes",
    )
    p.add_argument(
        "--stop-after-minutes",
        type=float,
        default=None,
        help="pause at the next evaluation after this much wall time; rerun to resume",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="decode songs once into this folder and memory-map them (runs side by side share them)",
    )
    p.add_argument("--limit-songs", type=int, default=None, help="use only the first N songs (smoke tests)")
    p.add_argument(
        "--real",
        type=Path,
        default=None,
        help="real-music material (python -m factory.realmix build): a share of every batch is real "
        "songs and remixed real parts with 2-stem labels (vocals; the sum of the rest)",
    )
    p.add_argument("--real-fraction", type=float, default=0.25, help="share of each batch from --real")
    p.add_argument(
        "--snapshots",
        action="store_true",
        help="also keep every evaluation's checkpoint as stepNNNNNN.pt (to pick a stage on other validations)",
    )
    p.add_argument(
        "--real-guitar",
        type=float,
        default=0.0,
        help="probability that a corpus example gets a real guitar part (from --real) added to its 'other'",
    )
    p.add_argument(
        "--real-vocal-shift",
        type=float,
        default=0.0,
        help="shift the remixed real vocals by up to ± this many semitones (resampled: more voices from few songs)",
    )
    p.add_argument(
        "--real-vocal-formants",
        action="store_true",
        help="with --real-vocal-shift: move the shifted vocals' formants back (the same voice at another pitch)",
    )
    p.add_argument(
        "--anchor",
        type=Path,
        default=None,
        help="a trained 4-stem checkpoint (e.g. factory/checkpoints/synthetic-v1.pt): on --real examples, "
        "drums, bass and other learn its split of the teacher's accompaniment (realmix.anchored_split_loss)",
    )
    p.add_argument("--anchor-weight", type=float, default=1.0, help="weight of the --anchor term")
    args = p.parse_args(argv)
    if args.anchor is not None and (args.real is None or args.arch != "wavenet"):
        p.error("--anchor needs --real and the WaveNet: it only shapes the real examples' accompaniment")
    if args.real_vocal_formants and not (args.real is not None and args.real_vocal_shift > 0):
        p.error(
            "--real-vocal-formants keeps the formants of shifted vocals: give it with --real and --real-vocal-shift"
        )
    if args.frame_stride > 1 and args.arch != "wavenet":
        p.error("--frame-stride needs the WaveNet: drop --frame-stride")
    if not 0.25 <= args.mask_power <= 8:
        p.error(f"--mask-power {args.mask_power:g} is out of range: give a value from 0.25 to 8 (2 is Wiener)")

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    from livedemix import dsp

    stft = TorchStft(**dsp.SHIPPED_CONFIGS[args.stft])
    train_songs = load_splits(args.data, args.train_split, args.limit_songs, args.cache)
    valid_songs = load_splits(args.data, args.valid_split, args.valid_songs, args.cache)
    train_seconds = sum(s.frames for s in train_songs) / SAMPLE_RATE
    print(f"train: {len(train_songs)} songs, {train_seconds / 60:.1f} min; valid: {len(valid_songs)} songs")
    sampler = ExampleSampler(train_songs, int(args.seconds * SAMPLE_RATE))
    real, n_real, real_info = None, 0, None
    if args.real is not None:
        from .realmix import RealSampler, anchored_split_loss, describe, two_stem_loss

        real = RealSampler(
            args.real,
            int(args.seconds * SAMPLE_RATE),
            vocal_shift=args.real_vocal_shift,
            vocal_formants=args.real_vocal_formants,
        )
        n_real = min(args.batch - 1, max(1, round(args.batch * args.real_fraction)))
        real_info = dict(describe(args.real), per_batch=n_real)
        print(f"real: {real_info['mixes']} songs, {real_info['instrumentals']} instrumentals; {n_real} per batch")

    if args.arch == "wavenet":
        mcfg = ModelConfig(
            bins=stft.cfg.bins,
            residual=args.residual,
            skip=args.skip,
            hidden=args.hidden,
            dilations=tuple(int(d) for d in args.dilations.split(",")),
            lookahead=args.lookahead,
            backward=args.backward,
            local=args.local,
            local_patches=tuple(tuple(int(v) for v in p.split("x")) for p in args.local_patches.split(",")),
        )
        net = WaveNetSeparator(mcfg)
        model_config = mcfg.to_dict()
    else:
        from .peers import UmxPeer, max_bin_for

        net = UmxPeer(
            bins=stft.cfg.bins,
            hidden=args.umx_hidden,
            unidirectional=args.arch == "umx",
            max_bin=max_bin_for(16000, SAMPLE_RATE, stft.cfg.n_fft),
        )
        model_config = net.config
    print(f"{args.arch}: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters")
    anchor = load_anchor(args.anchor, stft.cfg.bins) if args.anchor is not None else None
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)

    def lr_factor(s: int) -> float:
        cosine = 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))
        # a linear warm-up (for a second stage): a fresh Adam's first updates are ~lr per weight
        # whatever the gradient, until its moment estimates settle
        return cosine * min(1.0, (s + 1) / args.warmup_steps) if args.warmup_steps else cosine

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    step, best, elapsed, wall = 0, -math.inf, 0.0, 0.0
    last = args.out / "last.pt"
    first_stage = torch.load(args.init_from, map_location="cpu", weights_only=False) if args.init_from else None
    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step, best, elapsed = ck["step"], ck["best"], ck["elapsed_s"]
        wall = ck.get("wall_s", 0.0)
        print(f"resuming from step {step} (best valid SDR {best:.2f} dB)")
    elif first_stage is not None:
        try:
            if args.arch == "wavenet":
                first_cfg = ModelConfig.from_dict(first_stage["model_config"])  # refuses removed options
                if mcfg.backward and not first_cfg.backward:  # a causal start: its layers for both stacks
                    first_stage["state_dict"] = with_backward_stack(first_stage["state_dict"])
            net.load_state_dict(first_stage["state_dict"])
        except (RuntimeError, ValueError) as e:
            raise SystemExit(
                f"--init-from {args.init_from}: its weights do not fit this model ({str(e).splitlines()[0]}); "
                "give the model flags it was trained with"
            ) from None
        print(
            f"starting from {args.init_from} (step {first_stage['step']}, "
            f"trained {first_stage['training'].get('cpu_minutes')} CPU-min)"
        )
    else:
        rng = np.random.default_rng([args.seed, 10**9])
        init = torch.from_numpy(sampler.batch(rng, 16)).sum(1)
        net.init_input_stats(stft(init).abs())
    # A second stage reports its first stage's training too, and the totals.
    previous = first_stage["training"] if first_stage is not None else None

    timbres = corpora_timbres(args.data)

    def checkpoint(scores):
        stage = {
            "data": str(args.data[0]) if len(args.data) == 1 else [str(d) for d in args.data],
            "train_songs": len(train_songs),
            "train_minutes": round(train_seconds / 60, 1),
            "steps": step,
            "batch": args.batch,
            "excerpt_s": args.seconds,
            "seed": args.seed,
            "lr": args.lr,
            "cpu_minutes": round(elapsed / 60, 1),
            "wall_minutes": round(wall / 60, 1),
            "threads": args.threads,
            "loss": LOSS.format(w=args.complex_weight),
            "frame_stride": args.frame_stride,
            "precision": args.precision,
            "mask_power": args.mask_power,
            "warmup_steps": args.warmup_steps,
            "augmentation": "remix across songs p=0.5, gain U(0.25,1.25) per stem, channel swap p=0.5",
            "real": real_info,
            "real_guitar": args.real_guitar if real is not None else 0.0,
            "real_vocal_shift": args.real_vocal_shift if real is not None else 0.0,
            "real_vocal_formants": args.real_vocal_formants,  # the parser refuses it without a shift
            "corpus_timbres": timbres,
            "anchor": {"checkpoint": str(args.anchor), "weight": args.anchor_weight} if anchor is not None else None,
        }
        if previous is not None:
            stages = previous.get("stages", [previous]) + [stage]
            stage = dict(
                stage,
                stages=stages,
                init_from=str(args.init_from),
                **{k: round(sum(st[k] for st in stages), 1) for k in ("steps", "cpu_minutes", "wall_minutes")},
            )
        return {
            "model_config": model_config,
            "arch": args.arch,
            "state_dict": net.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "best": best,
            "elapsed_s": elapsed,
            "wall_s": wall,
            "stft": stft.as_dict(),
            "sample_rate": SAMPLE_RATE,
            "stems": list(STEMS),
            "scores": scores,
            "training": stage,
        }

    loss_of = functools.partial(loss_fn, mask_power=args.mask_power)
    forward = net if args.precision == "fp32" else autocast_forward(net, torch.bfloat16)
    train_net, train_loss = (
        (forward, loss_of) if args.no_compile else (compiled(forward, "the network"), compiled(loss_of, "the loss"))
    )
    if anchor is not None:
        anchor_forward = anchor if args.precision == "fp32" else autocast_forward(anchor, torch.bfloat16)
        anchor_net = anchor_forward if args.no_compile else compiled(anchor_forward, "the anchor")
    log = open(args.out / "log.jsonl", "a")
    net.train()
    losses = []
    bar = tqdm(total=args.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    wall_start = time.time()
    stop_at = min(args.steps, args.stop_at_step or args.steps)
    out_of_budget = args.cpu_minutes is not None and elapsed >= 60 * args.cpu_minutes
    prefetch = BatchPrefetcher(sampler, args.batch - n_real, args.seed)
    while step < stop_at:
        t0 = time.process_time()  # CPU time: the fair budget when runs share the machine
        w0 = time.time()
        batch, rng = prefetch.get(step)
        if real is not None and args.real_guitar > 0 and real.guitars:
            batch = add_real_guitar(batch, real, np.random.default_rng([args.seed, step, 2]), args.real_guitar)
        stems = torch.from_numpy(batch)
        if real is not None:  # 2-stem examples (vocals, accompaniment) after the corpus's
            real_stems = torch.from_numpy(real.batch(np.random.default_rng([args.seed, step, 1]), n_real))
        stride, offset = args.frame_stride, 0
        if stride > 1:
            offset = int(rng.integers(stride))
            mag, S, X = strided_spectra(stft, stems, stride, offset)
            if real is not None:
                mag2, S2, X2 = strided_spectra(stft, real_stems, stride, offset)
                mag = torch.cat([mag, mag2])
            V = train_net(mag, stride, offset)  # S, X and V: the chosen frames
        else:
            S = stft(stems)  # (B, J, C, F, T)
            X = S.sum(1)
            if real is not None:
                S2 = stft(real_stems)
                X2 = S2.sum(1)
                mag2 = X2.abs()
            V = train_net(torch.cat([X.abs(), mag2]) if real is not None else X.abs())
            if args.arch == "wavenet" and args.lookahead:  # the last L frames have no estimate
                V = V[..., : V.shape[-1] - args.lookahead]
        if V.shape[-1] < S.shape[-1]:  # with lookahead: the last frames lack their future
            n = V.shape[-1]
            S, X = S[..., :n], X[..., :n]
            if real is not None:
                S2, X2 = S2[..., :n], X2[..., :n]
        if real is None:
            loss = train_loss(V, S, X, args.complex_weight)
        else:
            b = len(S)
            loss = (
                b * train_loss(V[:b], S, X, args.complex_weight)
                + n_real * two_stem_loss(V[b:], S2, X2, args.complex_weight, args.mask_power, STEMS.index("vocals"))
            ) / (b + n_real)
            if anchor is not None:  # the frozen model on the same input (stride 1 is the whole pass)
                with torch.no_grad():
                    V_anchor = anchor_net(mag2, stride, offset)[..., : V.shape[-1]]
                split = anchored_split_loss(
                    V[b:], S2, X2, V_anchor, args.complex_weight, args.mask_power, STEMS.index("vocals")
                )
                loss = loss + args.anchor_weight * n_real * split / (b + n_real)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        elapsed += time.process_time() - t0
        wall += time.time() - w0
        out_of_budget = args.cpu_minutes is not None and elapsed >= 60 * args.cpu_minutes
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        pausing = step == stop_at or (
            args.stop_after_minutes and time.time() - wall_start > 60 * args.stop_after_minutes
        )
        if step % args.eval_every == 0 or step == args.steps or pausing or out_of_budget:
            scores = validate(net, stft, valid_songs, args.valid_seconds, args.mask_power)
            improved = scores["mean"] > best
            best = max(best, scores["mean"])
            entry = {
                "step": step,
                "train_loss": float(np.mean(losses)),
                "valid_sdr": scores,
                "lr": sched.get_last_lr()[0],
                "cpu_minutes": round(elapsed / 60, 2),
                "wall_minutes": round(wall / 60, 2),
            }
            log.write(json.dumps(entry) + "\n")
            log.flush()
            losses = []
            ck = checkpoint({"valid_sdr": scores})
            save_atomic(ck, last)
            if improved:
                save_atomic(ck, args.out / "best.pt")
            if args.snapshots:  # the corpus score alone does not pick a real-music stage
                save_atomic(ck, args.out / f"step{step:06d}.pt")
            bar.write(
                f"step {step}: loss {entry['train_loss']:.4f}, valid SDR {scores['mean']:.2f} dB "
                + " ".join(f"{k} {v:.2f}" for k, v in scores.items() if k != "mean")
                + (" *" if improved else "")
            )
            if out_of_budget:
                break
            if pausing and step < args.steps:
                bar.close()
                prefetch.close()
                print(f"paused at step {step}; rerun the same command to resume")
                return 0
    bar.close()
    prefetch.close()
    if out_of_budget:
        print(f"CPU budget of {args.cpu_minutes} min used at step {step}")
    print(f"done: best valid SDR {best:.2f} dB; checkpoint {args.out / 'best.pt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
