"""Evaluate trained separators against the true stems of a stems folder.

    python -m factory.evaluate --data /work/data/corpus-20h --split test \\
        --model default=python/livedemix/models/default.json \\
        --peer umx=runs/b60-umx/best.pt --peer umx-bidir=runs/b60-umx-bidir/best.pt \\
        --out docs/separator_eval.json --markdown docs/EVALUATION.md

Songs: the first ``--songs`` of the split (sorted by name); of each, an excerpt of
``--seconds`` starting at ``--offset-seconds`` (moved earlier when the song ends before the
excerpt would, and the whole song when it is shorter than the excerpt). The mixture is the sum
of the stems (in the livedemix corpus that is exactly ``mixture.flac``), so the oracle mask
and the mixture consistency of the reconstructions refer to the same signal.

Methods, each giving an estimate of every stem:
- ``mixture``: the mixture itself (the floor);
- ``IRM oracle``: the ideal ratio mask ``|S_j|²/Σ_k|S_k|²`` of the true stems on the mixture's
  STFT, same STFT as the models (the usual reference ceiling for soft masks with the mixture's
  phase);
- ``NAME/MODE`` for each ``--model NAME=CARD.json``: the card's offline graph over the excerpt
  where it has one (what ``livedemix separate`` uses; ``--live-graph``: never), else the exported
  ONNX step model run frame by frame with ``Separator.run`` (exactly what the engine runs), phases from ``PhaseRecovery`` in
  each reconstruction mode (``wiener``, ``pu-iter``, ``anisotropic``; PU-Iter with the engine's
  iteration count), inverse STFT. This is the engine's offline path without the block plumbing:
  ``product_path_check`` measures that both agree (the evaluation runs it for every model on
  the first song, ``--check-seconds``);
- ``NAME/MODE`` for each ``--peer NAME=CHECKPOINT.pt`` (a training checkpoint of Open-Unmix,
  causal or bidirectional, or of a WaveNet): the torch network on the whole excerpt at once,
  reconstructed the same way (``--peer-modes``, default wiener and pu-iter).

Scores per song and stem: plain SDR 10·log10(Σs²/Σ(s−ŝ)²) over the excerpt (both channels),
SI-SDR, and BSS Eval v4 (museval's ``evaluate``: 1-s windows, 512-tap filters, median over the
windows) SDR/SIR/SAR/ISR. A (song, stem) whose true stem is silent (Σs² < 1e-6 × number of
samples over both channels, i.e. below -60 dBFS RMS) is skipped and counted; BSS Eval is
computed over the stems that are not silent. Per method: the mean over songs of each stem,
the mean of the stems, and the share of the oracle's improvement,
(SDR − SDR_mixture) / (SDR_IRM − SDR_mixture) on the plain-SDR means.

BSS Eval v4 solves, for every estimate, a linear system whose matrix depends on the references
only (4 stems × 2 channels × 512 taps = 4096 unknowns); ``museval`` factorises it anew for
every call, which is most of its time. :class:`BssEvalV4` factorises it once per song and
reuses it for every method (the same LU/LAPACK path as ``numpy.linalg.solve``, so the same
numbers; ``tests/test_evaluate.py`` checks it against museval, and every run compares it with
``museval.evaluate`` on its first song).

Cost, CPU seconds per song-second on one core (12-s excerpts): BSS Eval 0.05 per method plus
0.15 per song shared (museval.evaluate itself: 0.3-1.2 per method); WaveNet card frame by
frame 0.03 plus reconstruction 0.006 (wiener) / 0.018 (pu-iter) / 0.012 (anisotropic);
full-size Open-Unmix in torch 0.16 (causal) / 0.10 (bidirectional); IRM 0.007; plain SDR and
SI-SDR 0.002. With eleven methods a song-second costs ~1.1 s, so the defaults (60 songs × 12 s)
take ~13 minutes of one core; with --no-bss less than half of that.
"""

from __future__ import annotations

import os

# One thread for BLAS/LAPACK (numpy, scipy, museval): the evaluation's cost is meant to be one
# core's. Must happen before numpy is imported (main() also limits a running process).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from livedemix import dsp, metrics  # noqa: E402
from livedemix.offline_graph import OfflineGraphRunner, has_offline_graph  # noqa: E402
from livedemix.phase import DEFAULT_MASK_POWER, MODES, PhaseRecovery, card_mask_power, default_n_iter  # noqa: E402
from livedemix.separator import ModelError, Separator, load_card, resolve_model  # noqa: E402

from .export import atomic_write_bytes  # noqa: E402
from .stems_data import STEMS, find_songs  # noqa: E402

MARK_START = "<!-- separator-eval:start -->"
MARK_END = "<!-- separator-eval:end -->"
SILENCE = 1e-6  # a stem is silent when Σs² < SILENCE × (samples × channels)
MIXTURE, IRM = "mixture", "IRM oracle"
BSS_KEYS = ("SDR", "SIR", "SAR", "ISR")

# Defaults: 60 songs × 12 s = 720 song-seconds. One song-second costs about 1 s of one core for
# eleven methods (mixture, IRM, a model in 3 modes, 3 peers in 2 modes; BSS Eval ~0.05 s per
# method, set-up ~0.2 s, the full-size Open-Unmix forward ~0.1-0.17 s), so the whole run takes
# 11-15 minutes of one core. The excerpts start 10 s in: the corpus's songs (11-59 s long,
# median 34 s) often bring the vocals in only after a few bars, and museval ignores every
# window in which any stem is silent.
DEFAULT_SONGS = 60
DEFAULT_SECONDS = 12.0
DEFAULT_OFFSET = 10.0


# ---- files --------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _stem_path(song_dir: Path, stem: str) -> Path:
    for ext in (".flac", ".wav"):
        p = song_dir / f"{stem}{ext}"
        if p.exists():
            return p
    raise FileNotFoundError(f"{song_dir} has no {stem}.flac or {stem}.wav")


def read_excerpt(song_dir: Path, seconds: float, offset: float, stems=STEMS) -> tuple[np.ndarray, int, int, int]:
    """The stems of one excerpt: (float32 (J, 2, n), sample_rate, start sample, song length).

    The excerpt starts at ``offset`` unless the song ends before ``offset + seconds``: then it
    is the song's last ``seconds`` (all of it when it is shorter)."""
    paths = [_stem_path(song_dir, s) for s in stems]
    infos = [sf.info(str(p)) for p in paths]
    rates = {i.samplerate for i in infos}
    if len(rates) != 1:
        raise ValueError(f"the stems of {song_dir} have different sample rates ({sorted(rates)})")
    sr = rates.pop()
    total = min(i.frames for i in infos)
    n = min(int(round(seconds * sr)), total)
    start = max(0, min(int(round(offset * sr)), total - n))
    out = np.empty((len(stems), 2, n), np.float32)
    for j, p in enumerate(paths):
        a, _ = sf.read(str(p), start=start, frames=n, dtype="float32", always_2d=True)
        a = a.T
        if a.shape[0] == 1:
            a = np.repeat(a, 2, axis=0)
        out[j] = a[:2, :n]
    return out, sr, start, total


# ---- BSS Eval v4 with the references' work done once --------------------------------------------


class BssEvalV4:
    """``museval.evaluate(references, estimates, win=window, hop=hop)`` (mode v4, the SiSEC
    setting), for many estimates of the same references.

    ``references``: (J, channels, n). ``__call__(estimates (J, channels, n))`` returns
    {"SDR", "SIR", "SAR", "ISR"}: (J, windows) arrays, NaN in the windows where any reference
    or any estimate is silent (museval's rule).

    museval's v4 computes each estimate's distortion filters over the whole signal by solving
    (G + eps·I) C = D, G being the (J·channels·taps)² correlation matrix of the references, then
    projects every 1-s window of the references through them. It rebuilds and refactorises G
    for every call, with complex FFTs of a power-of-two length. Here, once per set of
    references: G is built with real FFTs of the shortest fast length, G and each source's
    diagonal block are LU-factorised (LAPACK getrf, the algorithm behind numpy.linalg.solve,
    which museval uses), and the spectra of the reference windows are kept; an estimate then
    costs its correlations D, triangular solves, and one product in the frequency domain per
    window. The same linear algebra as museval, so the same numbers up to rounding (about
    1e-6 dB; tests/test_evaluate.py checks it against museval, and the evaluation itself on
    its first song).
    """

    def __init__(self, references: np.ndarray, window: int, hop: int, filters_len: int = 512):
        import scipy.fft
        import scipy.linalg
        from museval import metrics as M

        self._M = M
        ref = np.ascontiguousarray(np.moveaxis(np.asarray(references, np.float64), 1, 2))  # (J, n, C)
        M.validate(ref, ref)  # refuses all-zero references, as museval.evaluate does
        self.ref = ref
        self.window, self.hop, self.filters_len = window, hop, filters_len
        nsrc, nsampl, nchan = ref.shape
        L = filters_len
        # The references' spectra, for their correlations G and for each estimate's D (any FFT
        # length ≥ n + taps − 1 gives the same linear correlations; museval's power of two can
        # be nearly twice that).
        self._n_fft = scipy.fft.next_fast_len(nsampl + L - 1, real=True)
        self._ref_spec = scipy.fft.rfft(np.moveaxis(ref, 1, 2), n=self._n_fft, axis=-1)  # (J, C, F)
        Gr = self._reference_gram()
        eps = np.finfo(float).eps
        K = nchan * L
        self._lu_j = []
        for j in range(nsrc):
            Gj = Gr[j * K : (j + 1) * K, j * K : (j + 1) * K].copy()
            Gj[np.diag_indices_from(Gj)] += eps
            self._lu_j.append(scipy.linalg.lu_factor(Gj, overwrite_a=True, check_finite=False))
        Gr[np.diag_indices_from(Gr)] += eps
        self._lu = scipy.linalg.lu_factor(Gr, overwrite_a=True, check_finite=False)
        del Gr
        if any(np.any(np.diag(lu[0]) == 0) for lu in [self._lu] + self._lu_j):
            # numpy.linalg.solve would raise here and museval fall back to least squares
            self._lu = None
        self._lags = (-np.arange(L)) % self._n_fft
        # windows (all of length `window`, as museval.metrics.Framing makes them) and their spectra
        self._frames = list(M.Framing(window, hop, nsampl))
        self._nw = min(window, nsampl)
        self._n_fft_w = scipy.fft.next_fast_len(self._nw + L - 1, real=True)
        self._win_spec = [
            None
            if M._any_source_silent(ref[:, w])
            else scipy.fft.rfft(np.moveaxis(ref[:, w], 1, 2), n=self._n_fft_w, axis=-1)
            for w in self._frames
        ]  # (J, C, F) each; None: a reference is silent there

    def _reference_gram(self) -> np.ndarray:
        """museval's G (_compute_reference_correlations) already in _reshape_G's layout: rows
        (source i, channel c1, lag a), columns (j, c2, b), entry Σ_n s_j,c2(n + b − a)·s_i,c1(n)."""
        import scipy.fft
        from scipy.linalg import toeplitz

        L = self.filters_len
        nsrc, nchan = self._ref_spec.shape[:2]
        spec = self._ref_spec.reshape(nsrc * nchan, -1)
        K = len(spec)
        G = np.empty((K * L, K * L))
        neg = (-np.arange(L)) % self._n_fft
        for p in range(K):
            for q in range(p, K):
                ssf = scipy.fft.irfft(spec[q] * np.conj(spec[p]), n=self._n_fft)
                ss = toeplitz(ssf[neg], ssf[:L])
                G[q * L : (q + 1) * L, p * L : (p + 1) * L] = ss
                G[p * L : (p + 1) * L, q * L : (q + 1) * L] = ss.T
        return G

    def _correlations(self, est: np.ndarray) -> np.ndarray:
        """D[j, cj, k, c] = Σ_n ref_j,cj(n) · est_c(n + k), k < taps (museval's D)."""
        import scipy.fft

        sef = np.conj(scipy.fft.rfft(est.T, n=self._n_fft, axis=-1))  # (c, F)
        nsrc, nchan = self._ref_spec.shape[:2]
        D = np.empty((nsrc, nchan, nchan, self.filters_len))
        for j in range(nsrc):  # one source at a time: the full-length temporaries stay small
            r = scipy.fft.irfft(self._ref_spec[j][:, None, :] * sef[None], n=self._n_fft, axis=-1)  # (cj, c, n_fft)
            D[j] = r[..., self._lags]
        return np.moveaxis(D, 3, 2)  # (J, cj, L, c)

    def _solve(self, lu, D: np.ndarray, nsrc: int, nchan: int, est_j: np.ndarray, j: int | None) -> np.ndarray:
        import scipy.linalg

        L = self.filters_len
        if lu is None:  # singular: museval's own code path (least squares)
            G, sf = self._M._compute_reference_correlations(self.ref if j is None else self.ref[j : j + 1], L)
            C = self._M._compute_projection_filters(G, sf, est_j)
            return C.reshape(nsrc, nchan, L, nchan)
        return scipy.linalg.lu_solve(lu, D.reshape(nsrc * nchan * L, nchan), check_finite=False).reshape(
            nsrc, nchan, L, nchan
        )

    def __call__(self, estimates: np.ndarray) -> dict[str, np.ndarray]:
        import scipy.fft

        M, L = self._M, self.filters_len
        est = np.ascontiguousarray(np.moveaxis(np.asarray(estimates, np.float64), 1, 2))
        if est.shape != self.ref.shape:
            raise ValueError(
                f"estimates shaped {np.shape(estimates)} for references shaped {np.moveaxis(self.ref, 1, 2).shape}"
            )
        nsrc, _, nchan = est.shape
        nw, nf = self._nw, self._n_fft_w
        out = np.full((4, nsrc, len(self._frames)), np.nan)
        for j in range(nsrc):
            D = self._correlations(est[j])
            C = self._solve(self._lu, D, nsrc, nchan, est[j], None)  # (J, cj, L, c): all references
            Cj = self._solve(self._lu_j[j] if self._lu is not None else None, D[j : j + 1], 1, nchan, est[j], j)[0]
            Cf = scipy.fft.rfft(np.moveaxis(C, 2, 3), n=nf, axis=-1).reshape(nsrc * nchan, nchan, -1)  # (J·cj, c, F)
            Cjf = scipy.fft.rfft(np.moveaxis(Cj, 1, 2), n=nf, axis=-1)  # (cj, c, F)
            for t, win in enumerate(self._frames):
                R = self._win_spec[t]
                if R is None or M._any_source_silent(est[:, win]):
                    continue
                Rk = R.reshape(nsrc * nchan, 1, -1)
                spec = np.stack([(Cf * Rk).sum(axis=0), (Cjf * R[j][:, None]).sum(axis=0)])  # (2, c, F)
                proj_all, proj_j = scipy.fft.irfft(spec, n=nf, axis=-1)[..., : nw + L - 1].transpose(0, 2, 1)
                s_true = M._zeropad(self.ref[j, win], L - 1, axis=0)
                e_spat = proj_j - s_true
                e_interf = proj_all - s_true - e_spat
                e_artif = -s_true - e_spat - e_interf
                e_artif[:nw] += est[j, win]
                out[:, j, t] = M._bss_crit(s_true, e_spat, e_interf, e_artif, False)
        sdr_, isr, sir, sar = out
        return {"SDR": sdr_, "SIR": sir, "SAR": sar, "ISR": isr}


def _cpu() -> float:
    """CPU seconds of this process (the costs reported per method; fair when the machine is shared)."""
    return time.process_time()


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


# ---- estimation ---------------------------------------------------------------------------------


def active_stems(stems: np.ndarray) -> list[int]:
    """Indices of the stems (J, C, n) that are not silent in the excerpt (see SILENCE); the
    silent ones have no SDR and are skipped."""
    energy = (stems.astype(np.float64) ** 2).sum(axis=(1, 2))
    return [j for j in range(len(stems)) if energy[j] >= SILENCE * stems[j].size]


def stft_key(cfg) -> tuple:
    return (cfg.n_fft, cfg.hop, cfg.window)


class SongContext:
    """One excerpt: its stems, mixture, and the mixture's STFT per configuration (cached)."""

    def __init__(self, stems: np.ndarray, sample_rate: int):
        self.stems = stems
        self.mix = np.ascontiguousarray(stems.sum(axis=0))
        self.n = stems.shape[-1]
        self.sample_rate = sample_rate
        self._stfts: dict = {}

    def mix_stft(self, cfg, extra_frames: int = 0) -> np.ndarray:
        """STFT (T, C, F) of the mixture followed by ``extra_frames`` hops of silence (a model with
        lookahead L needs L frames past the end, as the engine's flush gives it)."""
        key = (stft_key(cfg), extra_frames)
        if key not in self._stfts:
            x = self.mix
            if extra_frames:
                x = np.concatenate([x, np.zeros((x.shape[0], extra_frames * cfg.hop), np.float32)], axis=1)
            self._stfts[key] = dsp.stft(x, cfg)
        return self._stfts[key]


def reconstruct(
    X: np.ndarray, V: np.ndarray, cfg, mode: str, n: int, lookahead: int = 0, mask_power: float = DEFAULT_MASK_POWER
) -> np.ndarray:
    """Stem signals (J, C, n) from the mixture STFT X (T, C, F) and stem magnitudes V.

    With ``lookahead`` L, V is the streaming separator's output, row i being frame i − L (as the
    engine gets it): the phase recovery then sees L leading silent frames, exactly as in the
    engine. Otherwise V (T, J, C, F) is aligned with X."""
    J, C = V.shape[1], X.shape[1]
    # the engine's settings (livedemix.engine.Engine without a preset)
    pr = PhaseRecovery(
        J, C, cfg.n_fft, cfg.hop, mode=mode, n_iter=default_n_iter(cfg.hop), kappa=2.0, mask_power=mask_power
    )
    if lookahead:
        X = np.concatenate([np.zeros((lookahead,) + X.shape[1:], X.dtype), X])
    T = min(len(X), len(V))
    Y = pr.process_stft(X[:T], V[:T])[lookahead:]
    return np.stack([dsp.istft(Y[:, j], cfg, n) for j in range(J)])


@dataclass
class Result:
    estimates: dict  # method name → (J, C, n) float32
    seconds: dict  # method name → CPU seconds spent making it (a separator run shared by modes counts in each)


class MixtureRunner:
    kind = "reference"

    def __init__(self):
        self.name = MIXTURE
        self.methods = [MIXTURE]

    def run(self, ctx: SongContext) -> Result:
        t0 = _cpu()
        est = np.broadcast_to(ctx.mix, ctx.stems.shape)
        return Result({MIXTURE: est}, {MIXTURE: _cpu() - t0})


class IrmRunner:
    kind = "reference"

    def __init__(self, cfg):
        self.name = IRM
        self.cfg = cfg
        self.methods = [IRM]

    def run(self, ctx: SongContext) -> Result:
        t0 = _cpu()
        cfg = self.cfg
        X = ctx.mix_stft(cfg)
        P = np.stack([np.abs(dsp.stft(s, cfg)) ** 2 for s in ctx.stems])  # (J, T, C, F)
        mask = P / np.maximum(P.sum(axis=0), 1e-20)
        est = np.stack([dsp.istft((mask[j] * X).astype(np.complex64), cfg, ctx.n) for j in range(len(P))])
        return Result({IRM: est}, {IRM: _cpu() - t0})


class _MagnitudeRunner:
    """A magnitude estimator plus PhaseRecovery in several modes."""

    cfg = None
    lookahead = 0
    streaming = False  # V rows are frame i − L (streaming) or aligned with X (whole sequence)

    def magnitudes(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def mask_power(self, mode: str) -> float:
        """The mask power of ``mode``: a card's calibrated one; Wiener's 2 for a checkpoint."""
        return DEFAULT_MASK_POWER

    def run(self, ctx: SongContext) -> Result:
        t0 = _cpu()
        X = ctx.mix_stft(self.cfg, self.lookahead)
        V = self.magnitudes(X)
        t_sep = _cpu() - t0
        out, secs = {}, {}
        for mode in self.modes:
            t1 = _cpu()
            out[f"{self.name}/{mode}"] = reconstruct(
                X, V, self.cfg, mode, ctx.n, self.lookahead if self.streaming else 0, self.mask_power(mode)
            )
            secs[f"{self.name}/{mode}"] = _cpu() - t1 + t_sep
        return Result(out, secs)


class CardRunner(_MagnitudeRunner):
    """An exported ONNX model (card) as `livedemix separate` runs it: its offline graph over the
    whole excerpt where the card has one (unless ``live``), else the step graph frame by frame
    as the engine runs it."""

    kind = "model"

    def __init__(self, name: str, card_path: Path, modes, live: bool = False):
        self.name = name
        self.card_path = resolve_model(card_path)
        self.card = load_card(self.card_path)
        self.cfg = dsp.StftConfig(**self.card["stft"])
        self.sep = Separator(self.card_path, stft=self.cfg)
        self.offline = (
            None if live or not has_offline_graph(self.card) else OfflineGraphRunner(self.card_path, self.card)
        )
        self.streaming = self.offline is None  # the offline graph's rows are aligned with X
        # frames of silence after the excerpt: the model's lookahead, or the offline graph's
        # context (the render's flush gives the graph that much silence to hear)
        self.lookahead = self.sep.lookahead if self.streaming else self.offline.context
        self.modes = list(modes)
        self.methods = [f"{name}/{m}" for m in self.modes]

    def magnitudes(self, X):
        if self.offline is not None:
            return self.offline.run_all(self.sep.inputs_of(X))
        self.sep.reset()
        return self.sep.run(self.sep.inputs_of(X))

    def mask_power(self, mode: str) -> float:
        return card_mask_power(self.card, mode)

    def info(self) -> dict:
        c = self.card
        tr = c.get("training", {})
        return {
            "kind": "ONNX model card",
            "path": str(self.card_path),
            "graph": "offline" if self.offline is not None else "step",
            "architecture": c.get("architecture", {}).get("type"),
            "parameters": c.get("parameters"),
            "lookahead_frames": self.lookahead,
            "stft": c["stft"],
            "pu_iter_n_iter": default_n_iter(self.cfg.hop),
            "default_phase": c.get("default_phase"),
            "mask_power": {m: card_mask_power(c, m) for m in self.modes},
            "training": {k: tr.get(k) for k in ("cpu_minutes", "steps", "train_songs", "train_minutes", "data")},
            "valid_scores": c.get("scores", {}).get("valid_sdr", c.get("scores", {}).get("valid_stft_sdr")),
        }


class PeerRunner(_MagnitudeRunner):
    """A torch checkpoint (Open-Unmix peer or WaveNet) run on the whole excerpt at once."""

    kind = "peer"

    def __init__(self, name: str, path: Path, modes):
        import torch

        from .model import ModelConfig, WaveNetSeparator
        from .peers import UmxPeer

        self.name = name
        self.path = Path(path)
        if not self.path.exists():
            raise SystemExit(f"checkpoint {self.path} does not exist: give the path of a training checkpoint (best.pt)")
        ck = torch.load(self.path, map_location="cpu", weights_only=False)
        self.arch = ck.get("arch", "wavenet")
        mc = dict(ck["model_config"])
        if self.arch == "wavenet":
            net = WaveNetSeparator(ModelConfig.from_dict(mc))
            self.lookahead = net.cfg.lookahead
        elif self.arch in ("umx", "umx-bidir"):
            net = UmxPeer(**{k: mc[k] for k in ("bins", "channels", "hidden", "unidirectional", "max_bin") if k in mc})
        else:
            raise SystemExit(
                f"checkpoint {self.path} has an unknown arch {self.arch!r}: expected wavenet, umx or umx-bidir"
            )
        net.load_state_dict(ck["state_dict"])
        self.net = net.eval()
        self.cfg = dsp.StftConfig(**ck["stft"])
        self.training = ck.get("training", {})
        self.step = ck.get("step")
        self.scores = ck.get("scores", {})
        self.parameters = sum(p.numel() for p in net.parameters())
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self.modes = list(modes)
        self.methods = [f"{name}/{m}" for m in self.modes]

    def magnitudes(self, X):
        import torch

        spec = torch.from_numpy(np.ascontiguousarray(X.transpose(1, 2, 0)))[None]  # (1, C, F, T) complex
        with torch.inference_mode():
            V = self.net(spec.abs())[0]  # (J, C, F, T)
        return np.ascontiguousarray(V.permute(3, 0, 1, 2).numpy(), dtype=np.float32)

    def info(self) -> dict:
        tr = self.training
        return {
            "kind": "torch checkpoint",
            "path": str(self.path),
            "sha256": self.sha256,
            "architecture": self.arch,
            "parameters": self.parameters,
            "lookahead_frames": self.lookahead,
            "stft": {"n_fft": self.cfg.n_fft, "hop": self.cfg.hop, "window": self.cfg.window},
            "pu_iter_n_iter": default_n_iter(self.cfg.hop),
            "training": {
                "cpu_minutes": tr.get("cpu_minutes"),
                "steps": tr.get("steps", self.step),
                "train_songs": tr.get("train_songs"),
                "train_minutes": tr.get("train_minutes"),
                "data": tr.get("data"),
            },
            "valid_scores": self.scores.get("valid_sdr", self.scores.get("valid_stft_sdr")),
        }


def product_path_check(card_path: Path, audio: np.ndarray, mode: str, sample_rate: int = 44100) -> float:
    """Relative difference ‖fast − engine‖/‖engine‖ (worst stem) between the evaluation's path
    (Separator.run + PhaseRecovery.process_stft + istft) and the product's exact offline path
    (livedemix.offline.separate with exact=True: the Engine block by block with the streaming
    step, bit for bit the live output) on ``audio`` (C, n). The evaluation runs the streaming
    step frame by frame too, so it scores what plays live; the batched render's own distance
    from it is measured in docs/LIBRARY.md."""
    from livedemix.offline import separate

    runner = CardRunner("check", card_path, [mode])
    ctx = SongContext(np.asarray(audio, np.float32)[None], sample_rate)
    fast = runner.run(ctx).estimates[f"check/{mode}"]
    exact = None if runner.offline is not None else True  # the render that uses the same graph
    ref = separate(ctx.mix, sample_rate, model=runner.card_path, phase=mode, exact=exact)
    errs = []
    for j, stem in enumerate(runner.sep.stems):
        r = ref[stem].astype(np.float64)
        errs.append(float(np.linalg.norm(fast[j] - r) / max(np.linalg.norm(r), 1e-12)))
    return max(errs)


# ---- scoring ------------------------------------------------------------------------------------


def score_song(
    stems: np.ndarray, estimates: dict, active: list[int], bss: BssEvalV4 | None, names
) -> tuple[dict, dict]:
    """Per method, per stem: {sdr, si_sdr, SDR, SIR, SAR, ISR} (None for a skipped stem), and
    the seconds spent scoring per method."""
    scores, secs = {}, {}
    for method, est in estimates.items():
        t0 = _cpu()
        per = {s: None for s in names}
        for j in active:
            per[names[j]] = {"sdr": metrics.sdr(stems[j], est[j]), "si_sdr": metrics.si_sdr(stems[j], est[j])}
        t1 = _cpu()
        if bss is not None:
            r = bss(np.asarray(est)[active])
            for k in BSS_KEYS:
                med = _nanmedian(r[k], axis=1)
                for i, j in enumerate(active):
                    per[names[j]][k] = None if not np.isfinite(med[i]) else float(med[i])
        t2 = _cpu()
        scores[method] = per
        secs[method] = {"plain": t1 - t0, "bss": t2 - t1}
    return scores, secs


def museval_check(stems, estimates, active, scores, names, secs, sample_rate) -> dict:
    """BSS Eval of one method by museval.evaluate itself: the largest difference (dB) from the
    medians computed here, and museval's CPU time for the same work."""
    import museval

    models = [m for m in estimates if "/" in m]
    method = models[0] if models else IRM
    ref = np.moveaxis(stems[active].astype(np.float64), 1, 2)
    est = np.moveaxis(np.asarray(estimates[method])[active].astype(np.float64), 1, 2)
    t0 = _cpu()
    r = museval.evaluate(ref, est, win=sample_rate, hop=sample_rate)
    t = _cpu() - t0
    diff = 0.0
    for k, v in zip(("SDR", "ISR", "SIR", "SAR"), r):
        med = _nanmedian(v, axis=1)
        for i, j in enumerate(active):
            ours = scores[method][names[j]][k]
            if ours is None or not np.isfinite(med[i]):
                if (ours is None) != (not np.isfinite(med[i])):
                    diff = math.inf
                continue
            diff = max(diff, abs(ours - float(med[i])))
    return {
        "method": method,
        "max_abs_difference_db": diff,
        "museval_cpu_s": t,
        "ours_cpu_s": secs[method]["bss"],
        "seconds": stems.shape[-1] / sample_rate,
    }


def summarize(songs: list[dict], methods: list[str], names) -> dict:
    out = {}
    for m in methods:
        s = {}
        for key in ("sdr", "si_sdr") + BSS_KEYS:
            per_stem = {}
            for stem in names:
                vals = [song["scores"][m][stem].get(key) for song in songs if song["scores"][m][stem] is not None]
                per_stem[stem] = _nanmean(vals)
            per_stem["mean"] = _nanmean(per_stem[st] for st in names)
            s[key] = per_stem
        s["songs_scored"] = {stem: sum(song["scores"][m][stem] is not None for song in songs) for stem in names}
        s["bss_nan_songs"] = {
            stem: sum(
                song["scores"][m][stem] is not None and song["scores"][m][stem].get("SDR") is None for song in songs
            )
            for stem in names
        }
        out[m] = s
    mix, irm = out.get(MIXTURE), out.get(IRM)
    for m in methods:
        share = float("nan")
        if mix and irm:
            gain = irm["sdr"]["mean"] - mix["sdr"]["mean"]
            if abs(gain) > 1e-9:
                share = (out[m]["sdr"]["mean"] - mix["sdr"]["mean"]) / gain
        out[m]["irm_share"] = share
    return out


# ---- report -------------------------------------------------------------------------------------


def _f(x, fmt="{:.2f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _json_safe(o):
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def markdown_section(report: dict) -> str:
    cfg, summ, names = report["config"], report["summary"], report["stems"]
    methods = report["methods"]
    L = [
        MARK_START,
        "## Separator",
        "",
        "Written by `factory/evaluate.py` (do not edit by hand: the next run replaces this section).",
        "",
        "    " + report["command"],
        "",
        f"**Data.** `{cfg['data']}`, split `{cfg['split']}`: the first {report['data']['songs']} songs, an excerpt of "
        f"{_f(cfg['seconds'], '{:g}')} s from {_f(cfg['offset_seconds'], '{:g}')} s in each (taken earlier in songs "
        f"that end sooner: {report['data']['shifted']}; songs shorter than the excerpt, used whole: {report['data']['short']}), "
        f"{report['data']['song_seconds']:.0f} song-seconds in all. The mixture is the sum of the stems. "
        f"Silent stems skipped (RMS below -60 dBFS in the excerpt): {report['data']['skipped_total']} "
        f"({', '.join(f'{k} {v}' for k, v in report['data']['skipped'].items())}).",
        "",
        "**Plain SDR** (dB) = 10·log10(Σs²/Σ(s−ŝ)²) over the excerpt, both channels; mean over songs per stem, "
        "then over stems. Share of the IRM gain = (SDR − SDR<sub>mixture</sub>)/(SDR<sub>IRM</sub> − SDR<sub>mixture</sub>).",
        "",
        "| method | " + " | ".join(names) + " | mean | share of IRM gain |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- | --- |",
    ]
    for m in methods:
        s = summ[m]
        L.append(
            f"| {m} | " + " | ".join(_f(s["sdr"][n]) for n in names) + f" | **{_f(s['sdr']['mean'])}** | "
            f"{_f(s['irm_share'] * 100 if s['irm_share'] is not None and math.isfinite(s['irm_share']) else None, '{:.0f} %')} |"
        )
    if report["config"]["bss"]:
        L += [
            "",
            "**BSS Eval v4** (museval: 1-s windows, median over windows, mean over songs, then over stems; "
            "windows where any stem is silent do not count; the mixture has no artefacts, so its SAR is "
            "meaninglessly large) and **SI-SDR** (mean over songs and stems), dB:",
            "",
            "| method | SDR | SIR | SAR | ISR | SI-SDR |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for m in methods:
            s = summ[m]
            L.append(f"| {m} | " + " | ".join(_f(s[k]["mean"]) for k in BSS_KEYS) + f" | {_f(s['si_sdr']['mean'])} |")
        c = report.get("bss_check")
        if c:
            L += [
                "",
                f"BSS Eval is museval's v4 with the references' work shared between methods (`BssEvalV4`); on the "
                f"first song it differs from `museval.evaluate` by at most {c['max_abs_difference_db']:.1e} dB "
                f"({c['method']}), and took {c['ours_cpu_s']:.1f} s CPU for that method (plus a set-up shared by all methods, "
                f"{c['setup_cpu_s']:.1f} s) where museval takes {c['museval_cpu_s']:.1f} s.",
            ]
    else:
        L += [
            "",
            "**SI-SDR** (mean over songs and stems), dB (BSS Eval not computed: `--no-bss`):",
            "",
            "| method | SI-SDR |",
            "| --- | --- |",
        ]
        L += [f"| {m} | {_f(summ[m]['si_sdr']['mean'])} |" for m in methods]
    if report["models"]:
        L += [
            "",
            "**Models** (from the card or checkpoint):",
            "",
            "| name | source | architecture | parameters | lookahead (frames) | training CPU minutes | steps | train songs |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, info in report["models"].items():
            tr = info["training"]
            L.append(
                f"| {name} | {info['kind']} | {info['architecture']} | {_f(info['parameters'], '{:,}')} | "
                f"{info['lookahead_frames']} | {_f(tr.get('cpu_minutes'), '{:g}')} | {_f(tr.get('steps'), '{}')} | "
                f"{_f(tr.get('train_songs'), '{}')} |"
            )
        checks = report.get("product_path_check", {})
        if checks:
            L += [
                "",
                "Evaluation path vs the product's (`livedemix.offline.separate(exact=True)`, the Engine) on "
                f"{_f(cfg['check_seconds'], '{:g}')} s of the first song: "
                + ", ".join(f"{k} ({v['mode']}) {v['relative_difference']:.1e}" for k, v in checks.items())
                + " (relative L2).",
            ]
    t = report["timing"]
    L += [
        "",
        f"**Time.** {t['wall_s'] / 60:.1f} min wall ({t['cpu_s'] / 60:.1f} min CPU, one thread) on {report['host']}"
        + ". CPU seconds per song-second (estimate: the separator's run, shared by its modes, plus this mode's "
        "reconstruction):",
        "",
        "| method | estimate | plain SDR + SI-SDR | BSS Eval |",
        "| --- | --- | --- | --- |",
    ]
    for m in methods:
        x = t["per_method_per_song_second"][m]
        L.append(f"| {m} | {x['estimate']:.4f} | {x['plain']:.4f} | {x['bss']:.3f} |")
    L.append(f"| (BSS Eval set-up per song, shared) | | | {t['bss_setup_per_song_second']:.3f} |")
    L += ["", MARK_END]
    return "\n".join(L) + "\n"


def write_markdown(path: Path, section: str) -> None:
    """Put ``section`` (which starts and ends with the markers) between the markers in ``path``,
    or append it when the file has none; nothing else in the file changes."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    i, j = text.find(MARK_START), text.find(MARK_END)
    if i >= 0 and j > i:
        j += len(MARK_END)
        if text[j : j + 1] == "\n":
            j += 1
        new = text[:i] + section + text[j:]
    elif i >= 0 or j >= 0:
        raise SystemExit(
            f"{path} has only one of the markers {MARK_START} / {MARK_END}: fix the file by hand "
            "(both or neither), then run again"
        )
    else:
        sep = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        new = text + sep + section
    atomic_write_text(path, new)


def set_default_phase(card_path: Path, report: dict, model_name: str) -> str:
    """Write the model's best mode (mean plain SDR) into the card's default_phase and its test
    scores into card['scores']['test']; every other field stays as it was."""
    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    summ = report["summary"]
    modes = {m.split("/", 1)[1]: summ[m] for m in report["methods"] if m.startswith(model_name + "/")}

    def mean_sdr(mode):
        v = modes[mode]["sdr"]["mean"]
        return -math.inf if v is None else v

    best = max(modes, key=mean_sdr)
    b = modes[best]
    cfg = report["config"]
    card["default_phase"] = best
    card.setdefault("scores", {})
    card["scores"]["test"] = _json_safe(
        {
            "data": cfg["data"],
            "split": cfg["split"],
            "songs": report["data"]["songs"],
            "seconds": cfg["seconds"],
            "offset_seconds": cfg["offset_seconds"],
            "date": report["date"],
            "phase": best,
            "sdr": b["sdr"],
            "si_sdr": b["si_sdr"]["mean"],
            "bss_v4": {k: b[k]["mean"] for k in ("SDR", "SIR", "SAR")} if cfg["bss"] else None,
            "irm_share": b["irm_share"],
            "sdr_by_phase": {k: v["sdr"]["mean"] for k, v in modes.items()},
            "mixture_sdr": summ[MIXTURE]["sdr"]["mean"],
            "irm_sdr": summ[IRM]["sdr"]["mean"],
        }
    )
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return best


# ---- main ---------------------------------------------------------------------------------------


def _named(spec: str, what: str) -> tuple[str, Path]:
    if "=" in spec:
        name, path = spec.split("=", 1)
    else:
        name, path = Path(spec).stem, spec
    if not name or "/" in name:
        raise SystemExit(f"bad {what} {spec!r}: write NAME=PATH with a NAME without '/'")
    return name, Path(path)


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SystemExit(f"unknown reconstruction mode(s) {', '.join(bad) or '(none)'}: use {', '.join(MODES)}")
    return modes


def main(argv=None) -> int:
    try:
        return _main(argv)
    except (ModelError, FileNotFoundError) as e:  # a wrong path or model: one sentence, no traceback
        raise SystemExit(f"factory.evaluate: {e}") from None


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m factory.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="stems folder (<root>/<split>/<song>/<stem>.flac)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--songs", type=int, default=DEFAULT_SONGS, help="evaluate the first N songs of the split (default %(default)s)"
    )
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="excerpt length (default %(default)s)")
    p.add_argument(
        "--offset-seconds",
        type=float,
        default=DEFAULT_OFFSET,
        help="excerpt start, moved earlier for songs that end sooner (default %(default)s)",
    )
    p.add_argument("--model", action="append", default=[], metavar="NAME=CARD.json", help="an exported model (card)")
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT.pt",
        help="a training checkpoint (Open-Unmix peer or WaveNet), run in torch on the whole excerpt",
    )
    p.add_argument("--modes", default=",".join(MODES), help="reconstruction modes for --model (default %(default)s)")
    p.add_argument(
        "--live-graph",
        action="store_true",
        help="score each --model's step graph (the live render) even where its card has an offline graph",
    )
    p.add_argument(
        "--peer-modes", default="wiener,pu-iter", help="reconstruction modes for --peer (default %(default)s)"
    )
    p.add_argument("--stft", default="quality", help="STFT of the IRM oracle (livedemix.dsp.SHIPPED_CONFIGS)")
    p.add_argument("--no-bss", dest="bss", action="store_false", help="skip BSS Eval (plain SDR and SI-SDR only)")
    p.add_argument(
        "--no-bss-check",
        dest="bss_check",
        action="store_false",
        help="skip the comparison of the BSS Eval here with museval.evaluate on the first song",
    )
    p.add_argument(
        "--check-seconds",
        type=float,
        default=3.0,
        help="compare the evaluation path with the product's on this much of the first song (0: skip)",
    )
    p.add_argument("--out", type=Path, default=Path("docs/separator_eval.json"))
    p.add_argument("--markdown", type=Path, default=None, help="write the summary between the markers in this file")
    p.add_argument(
        "--set-default-phase",
        type=Path,
        default=None,
        metavar="CARD.json",
        help="write the best reconstruction mode of this --model into its card's default_phase",
    )
    args = p.parse_args(argv)
    command = "python -m factory.evaluate " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))

    try:  # numpy may have started its BLAS threads before the environment variables above were set
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    if args.peer:
        import torch

        torch.set_num_threads(1)
    wall0, cpu0 = time.perf_counter(), time.process_time()

    runners = [MixtureRunner(), IrmRunner(dsp.config(args.stft))]
    models = {}
    for spec in args.model:
        name, path = _named(spec, "--model")
        r = CardRunner(name, path, _modes(args.modes), live=args.live_graph)
        runners.append(r)
        models[name] = r
    config = {
        "data": str(args.data),
        "split": args.split,
        "songs": args.songs,
        "seconds": args.seconds,
        "offset_seconds": args.offset_seconds,
        "stft_irm": args.stft,
        "modes": _modes(args.modes),
        "peer_modes": _modes(args.peer_modes),
        "bss": args.bss,
        "check_seconds": args.check_seconds,
        "silence_threshold": f"sum(s^2) < {SILENCE:g} * samples * channels",
        "mixture": "sum of the stems",
        "phase": "livedemix.phase.PhaseRecovery with the engine's settings: n_iter = "
        "livedemix.phase.default_n_iter(hop), kappa = 2, mask power: the card's per mode "
        "(factory.calibrate), 2 (Wiener) for the peer checkpoints",
    }
    for spec in args.peer:
        name, path = _named(spec, "--peer")
        r = PeerRunner(name, path, _modes(args.peer_modes))
        runners.append(r)
        models[name] = r
    if len(models) != len(args.model) + len(args.peer):
        raise SystemExit("two --model/--peer share a name: give each its own NAME=")
    default_phase_model = None
    if args.set_default_phase is not None:
        want = args.set_default_phase.resolve()
        hits = [n for n, r in models.items() if isinstance(r, CardRunner) and r.card_path.resolve() == want]
        if not hits:
            raise SystemExit(
                f"--set-default-phase {args.set_default_phase} is not one of the --model cards: add "
                f"--model NAME={args.set_default_phase}"
            )
        default_phase_model = hits[0]
    methods = [m for r in runners for m in r.methods]

    dirs = find_songs(args.data, args.split)[: args.songs]
    if not dirs:
        raise SystemExit(f"no songs in {args.data}/{args.split}")
    names = list(STEMS)
    for name, r in models.items():
        if isinstance(r, CardRunner) and list(r.sep.stems) != names:
            raise SystemExit(f"model {name} separates {r.sep.stems}, not {names}")
    print(
        f"evaluating {len(methods)} methods on {len(dirs)} songs of {args.data}/{args.split}, "
        f"{args.seconds:g} s from {args.offset_seconds:g} s: {', '.join(methods)}",
        flush=True,
    )

    songs, checks, bss_check = [], {}, None
    est_s = {m: 0.0 for m in methods}
    plain_s = {m: 0.0 for m in methods}
    bss_s = {m: 0.0 for m in methods}
    bss_setup_s = 0.0
    song_seconds = 0.0
    skipped = {s: 0 for s in names}
    shifted = short = 0
    for i, d in enumerate(dirs):
        t_song = time.perf_counter()
        stems, sr, start, total = read_excerpt(d, args.seconds, args.offset_seconds)
        for name, r in models.items():
            want = r.card["sample_rate"] if isinstance(r, CardRunner) else 44100
            if sr != want:
                raise SystemExit(f"{d} is at {sr} Hz but model {name} runs at {want} Hz: resample the data set")
        n = stems.shape[-1]
        song_seconds += n / sr
        shifted += start < int(round(args.offset_seconds * sr)) and n == int(round(args.seconds * sr))
        short += n < int(round(args.seconds * sr))
        active = active_stems(stems)
        for j in range(len(names)):
            if j not in active:
                skipped[names[j]] += 1
        ctx = SongContext(stems, sr)
        if i == 0 and args.check_seconds > 0:
            m = min(n, int(args.check_seconds * sr))
            for name, r in models.items():
                if isinstance(r, CardRunner):
                    mode = "pu-iter" if "pu-iter" in r.modes else r.modes[0]
                    err = product_path_check(r.card_path, ctx.mix[:, :m], mode, sr)
                    checks[name] = {"mode": mode, "seconds": m / sr, "relative_difference": err}
                    flag = "" if err < 1e-4 else "  <-- MORE THAN 1e-4: the evaluation path differs from the engine"
                    print(f"product-path check {name}/{mode}: relative difference {err:.1e}{flag}", flush=True)
        estimates = {}
        for r in runners:
            res = r.run(ctx)
            estimates.update(res.estimates)
            for m, s in res.seconds.items():
                est_s[m] += s
        bss = None
        if args.bss and active:
            t0 = _cpu()
            bss = BssEvalV4(stems[active], window=sr, hop=sr)
            bss_setup_s += _cpu() - t0
        scores, secs = score_song(stems, estimates, active, bss, names)
        del bss
        if i == 0 and args.bss and args.bss_check and active:
            bss_check = museval_check(stems, estimates, active, scores, names, secs, sr)
            bss_check["setup_cpu_s"] = bss_setup_s
            print(
                f"BSS Eval check on {bss_check['method']}: museval.evaluate differs by at most "
                f"{bss_check['max_abs_difference_db']:.1e} dB and took {bss_check['museval_cpu_s']:.1f} s CPU "
                f"({bss_check['museval_cpu_s'] / (n / sr):.2f} s per song-second)",
                flush=True,
            )
        for m, s in secs.items():
            plain_s[m] += s["plain"]
            bss_s[m] += s["bss"]
        songs.append(
            {
                "name": d.name,
                "start_s": start / sr,
                "seconds": n / sr,
                "song_seconds": total / sr,
                "skipped": [names[j] for j in range(len(names)) if j not in active],
                "scores": scores,
            }
        )
        means = {m: _nanmean(v["sdr"] for v in scores[m].values() if v is not None) for m in methods}
        print(
            f"[{i + 1}/{len(dirs)}] {d.name} {start / sr:.1f}-{(start + n) / sr:.1f} s: "
            + ", ".join(f"{m} {_f(v, '{:+.2f}')}" for m, v in means.items())
            + f" dB ({time.perf_counter() - t_song:.1f} s; {(time.perf_counter() - wall0) / 60:.1f} min so far)",
            flush=True,
        )

    summary = summarize(songs, methods, names)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "host": f"{os.uname().nodename}, {os.cpu_count()} cores",
        "config": config,
        "stems": names,
        "methods": methods,
        "data": {
            "songs": len(songs),
            "song_seconds": song_seconds,
            "shifted": int(shifted),
            "short": int(short),
            "skipped": skipped,
            "skipped_total": sum(skipped.values()),
        },
        "models": {name: r.info() for name, r in models.items()},
        "product_path_check": checks,
        "bss_check": bss_check,
        "summary": summary,
        "timing": {
            "wall_s": wall,
            "cpu_s": cpu,
            "song_seconds": song_seconds,
            "per_method_per_song_second": {
                m: {
                    "estimate": est_s[m] / song_seconds,
                    "plain": plain_s[m] / song_seconds,
                    "bss": bss_s[m] / song_seconds,
                }
                for m in methods
            },
            "bss_setup_per_song_second": bss_setup_s / song_seconds,
        },
        "songs": songs,
    }
    report = _json_safe(report)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.markdown is not None:
        write_markdown(args.markdown, markdown_section(report))
        print(f"wrote the section between the markers in {args.markdown}")
    if default_phase_model is not None:
        best = set_default_phase(args.set_default_phase, report, default_phase_model)
        print(f"{args.set_default_phase}: default_phase = {best}")
    print("\nplain SDR (dB), mean over stems; share of the IRM gain:")
    for m in methods:
        s = report["summary"][m]
        print(f"  {m:28s} {_f(s['sdr']['mean'], '{:+.2f}')}  {_f(s['irm_share'], '{:.2f}')}")
    print(f"{wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
