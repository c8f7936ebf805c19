"""Evaluation of livedemix's causal phase recovery.

Two experiments, both on material rendered with fluidsynth (factory/phase_render.py):

``retrieval``  pure phase retrieval on single-instrument renders: from the true STFT magnitude,
               with the true phase only at the frames the causal onset detector flags (and the
               first frame), PU (``PhaseRecovery.unwrap_stft``) versus ``librosa.griffinlim``
               (32 iterations, offline, same STFT: periodic Hann, no centring).
``separation`` oracle-magnitude separation of 4-stem songs: V_j = |STFT(s_j)|, X = STFT(mix);
               wiener / pu-iter / anisotropic (and the mixture as the lower bound), scored with
               BSS Eval v4 (museval, 1 s windows, median over windows, mean over stems and songs).

    python -m factory.phase_eval retrieval
    python -m factory.phase_eval separation --songs 4 --seconds 12
    python -m factory.phase_eval sweep --songs 4 --seconds 12       # n_iter, kappa, window length

The STFT here is a NumPy twin of the core's (cpp/core/stft, window.cpp): frame t is the rfft of
analysis · x[(t+1)·hop - n_fft : (t+1)·hop] (zeros before the start), resynthesis by weighted
overlap-add with the dual synthesis window; the asymmetric pair is Mauler & Martin's (a long
analysis window ending in a short sqrt-Hann of 2·hop, synthesis only over the last 2·hop).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
from livedemix import STEMS  # noqa: E402

from factory.phase_render import INSTRUMENTS, SR, instrument_clip, render_song  # noqa: E402

# -- STFT (NumPy twin of the core) ---------------------------------------------------------------


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def stft_windows(n_fft: int, hop: int, window: str = "hann"):
    """(analysis, synthesis) windows, float64, as in cpp/core/window.cpp."""
    if window == "asymmetric":
        m2, rise = 2 * hop, n_fft - hop
        a = np.empty(n_fft)
        i = np.arange(n_fft)
        a[:rise] = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * i[:rise] / (2 * rise)))
        a[rise:] = np.sqrt(_periodic_hann(m2)[i[rise:] - (n_fft - m2)])
        s = np.zeros(n_fft)
        tail = slice(n_fft - m2, n_fft)
        s[tail] = _periodic_hann(m2) / np.maximum(a[tail], 1e-12)
    else:
        a = _periodic_hann(n_fft) if window == "hann" else np.sqrt(_periodic_hann(n_fft))
        sq = np.zeros(hop)
        np.add.at(sq, np.arange(n_fft) % hop, a * a)
        s = a / sq[np.arange(n_fft) % hop]
    return a, s


def stft(x: np.ndarray, n_fft: int, hop: int, window: str = "hann") -> np.ndarray:
    """x (C, N) -> complex (T, C, F), T = ceil((N + n_fft - hop) / hop): enough frames that every
    sample, the last ones included, is covered by all the frames that contain it (a flush)."""
    a, _ = stft_windows(n_fft, hop, window)
    C, N = x.shape
    T = -(-(N + n_fft - hop) // hop)
    pad = np.zeros((C, (n_fft - hop) + T * hop))
    pad[:, n_fft - hop : n_fft - hop + N] = x
    idx = np.arange(T)[:, None] * hop + np.arange(n_fft)[None, :]
    frames = pad[:, idx]  # (C, T, n_fft)
    return np.fft.rfft(frames * a, axis=-1).transpose(1, 0, 2)


def istft(S: np.ndarray, n_fft: int, hop: int, window: str = "hann", length: int | None = None) -> np.ndarray:
    """S (..., T, C, F) with leading stem axes allowed: returns (..., C, N)."""
    _, s = stft_windows(n_fft, hop, window)
    T = S.shape[-3]
    frames = np.fft.irfft(S, n=n_fft, axis=-1) * s  # (..., T, C, n_fft)
    lead = S.shape[:-3]
    C = S.shape[-2]
    out = np.zeros(lead + (C, (n_fft - hop) + T * hop))
    for t in range(T):
        out[..., :, t * hop : t * hop + n_fft] += frames[..., t, :, :]
    out = out[..., n_fft - hop :]
    return out[..., :length] if length is not None else out


# -- scoring -------------------------------------------------------------------------------------


def _museval_metrics():
    """museval.metrics without importing the museval package (its __init__ imports musdb and
    stempeg, which require ffmpeg at import time; the metrics themselves need only scipy)."""
    try:
        import museval.metrics as m  # noqa: F401

        return m
    except Exception:
        spec = importlib.util.find_spec("museval")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("museval is not installed: pip install museval")
        path = Path(list(spec.submodule_search_locations)[0]) / "metrics.py"
        ms = importlib.util.spec_from_file_location("_museval_metrics", path)
        mod = importlib.util.module_from_spec(ms)
        ms.loader.exec_module(mod)
        return mod


def bss_eval_v4(refs: np.ndarray, ests: np.ndarray, win: float = 1.0) -> dict:
    """refs, ests: (J, C, N). BSS Eval v4 (museval), median over 1 s windows per stem."""
    m = _museval_metrics()
    R = np.ascontiguousarray(refs.transpose(0, 2, 1), dtype=np.float64)
    E = np.ascontiguousarray(ests.transpose(0, 2, 1), dtype=np.float64)
    sdr, isr, sir, sar, _ = m.bss_eval(
        R,
        E,
        window=int(win * SR),
        hop=int(win * SR),
        compute_permutation=False,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    med = lambda a: np.nanmedian(np.where(np.isfinite(a), a, np.nan), axis=1)  # noqa: E731
    return {"SDR": med(sdr), "SIR": med(sir), "SAR": med(sar), "ISR": med(isr)}


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - est) ** 2), 1e-30)))


# -- running the core ----------------------------------------------------------------------------


def phase_recovery(J: int, C: int, n_fft: int, hop: int, **kw):
    from livedemix.phase import PhaseRecovery

    return PhaseRecovery(J, C, n_fft, hop, **kw)


def separate(X: np.ndarray, V: np.ndarray, n_fft: int, hop: int, mode: str, **kw) -> np.ndarray:
    """X (T, C, F), V (T, J, C, F) -> stems STFT (T, J, C, F) (``mode='pu'``: unwrap only)."""
    J, C = V.shape[1], V.shape[2]
    if mode == "pu":
        return phase_recovery(J, C, n_fft, hop, **kw).unwrap_stft(X, V)
    return phase_recovery(J, C, n_fft, hop, mode=mode, **kw).process_stft(X, V)


# -- experiment 1: pure phase retrieval ----------------------------------------------------------


def griffin_lim(mag_tf: np.ndarray, n_fft: int, hop: int, length: int, n_iter: int = 32) -> np.ndarray:
    """librosa.griffinlim on the same STFT (periodic Hann analysis, center=False, frames aligned
    as the core's): mag_tf is (T, F) of our STFT of one channel. Returns (N,)."""
    import librosa

    # Our frame t starts at (t+1)·hop - n_fft; librosa's (center=False) at t·hop. Pad the front by
    # n_fft - hop so the two frame grids coincide.
    lead = n_fft - hop
    y = librosa.griffinlim(
        mag_tf.T.astype(np.float32),
        n_iter=n_iter,
        hop_length=hop,
        win_length=n_fft,
        n_fft=n_fft,
        window="hann",
        center=False,
        random_state=0,
    )
    y = np.pad(y, (0, max(0, lead + length - y.size)))
    return y[lead : lead + length]


def retrieval_table(n_fft: int = 1024, hop: int = 256, seconds: float = 8.0, gl_iter: int = 32) -> list:
    rows = []
    for name in INSTRUMENTS:
        x = instrument_clip(name, seconds=seconds).astype(np.float64)
        N = x.size
        S = stft(x[None, :], n_fft, hop)  # (T, 1, F)
        V = np.abs(S)[:, None].astype(np.float32)
        t0 = time.perf_counter()
        pr = phase_recovery(1, 1, n_fft, hop)
        Y = pr.unwrap_stft(S.astype(np.complex64), V)
        t_pu = time.perf_counter() - t0
        onsets = pr.stats["onsets"]
        y_pu = istft(Y[:, 0], n_fft, hop, length=N)[0]
        # Zero phase and random phase as references, and Griffin-Lim.
        t0 = time.perf_counter()
        y_gl = griffin_lim(np.abs(S[:, 0]), n_fft, hop, N, n_iter=gl_iter)
        t_gl = time.perf_counter() - t0
        # True phase only at onsets, mixture-free: the "PU" row; for scale, also what one gets by
        # using the onset frames' phase and Griffin-Lim elsewhere is not attempted (offline).
        sl = slice(n_fft, N - n_fft)  # skip the edges (first frame, release tail padding)
        row = {
            "instrument": name,
            "frames": S.shape[0],
            "onset_frames": int(onsets),
            "pu_sdr": snr_db(x[sl], y_pu[sl]),
            "gl_sdr": snr_db(x[sl], y_gl[sl]),
        }
        ev = bss_eval_v4(np.stack([x[None, :]]), np.stack([y_pu[None, :]]))
        ev_gl = bss_eval_v4(np.stack([x[None, :]]), np.stack([y_gl[None, :]]))
        row["pu_bss_sdr"] = float(ev["SDR"][0])
        row["gl_bss_sdr"] = float(ev_gl["SDR"][0])
        # spectral convergence (consistency of the result's STFT with the target magnitude)
        for k, y in (("pu", y_pu), ("gl", y_gl)):
            M = np.abs(stft(y[None, :], n_fft, hop))
            row[f"{k}_spec_conv_db"] = float(20 * np.log10(np.linalg.norm(M - np.abs(S)) / np.linalg.norm(np.abs(S))))
        row["pu_seconds"] = t_pu
        row["gl_seconds"] = t_gl
        rows.append(row)
    return rows


# -- experiment 2: oracle-magnitude separation ---------------------------------------------------

CONFIGS = {
    "hann-1024-256": dict(n_fft=1024, hop=256, window="hann"),  # reference STFT
    "asym-1024-256": dict(n_fft=1024, hop=256, window="asymmetric"),  # shipped "quality" point
    "asym-1024-128": dict(n_fft=1024, hop=128, window="asymmetric"),  # shipped "low-latency" point
}


def load_songs(n_songs: int, seconds: float, stems_dirs=None) -> list:
    """Rendered songs 0..n_songs-1, or the songs in ``stems_dirs`` (folders holding
    vocals/drums/bass/other as .wav or .flac, e.g. python/livedemix/data/demo)."""
    if not stems_dirs:
        return [render_song(s, seconds) for s in range(n_songs)]
    import soundfile as sf

    songs = []
    for d in stems_dirs:
        song = {}
        for k in STEMS:
            path = next((p for p in (Path(d) / f"{k}.flac", Path(d) / f"{k}.wav") if p.exists()), None)
            if path is None:
                raise SystemExit(f"{d} has no {k}.flac or {k}.wav: give a folder with the four stems")
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            if sr != SR:
                raise SystemExit(f"{path} is at {sr} Hz; the evaluation runs at {SR} Hz")
            song[k] = np.ascontiguousarray(x.T)
        songs.append(song)
    return songs


def separation_scores(song: dict, cfg: dict, methods: list) -> dict:
    """methods: list of (label, mode, kwargs). Returns {label: {SDR/SIR/SAR: per-stem array}}."""
    refs = np.stack([song[k] for k in STEMS]).astype(np.float64)  # (J, C, N)
    mix = refs.sum(0)
    N = mix.shape[1]
    n_fft, hop, window = cfg["n_fft"], cfg["hop"], cfg["window"]
    X = stft(mix, n_fft, hop, window)
    V = np.abs(np.stack([stft(s, n_fft, hop, window) for s in refs], axis=1))  # (T, J, C, F)
    X32, V32 = X.astype(np.complex64), V.astype(np.float32)
    out = {}
    for label, mode, kw in methods:
        if mode == "mixture":
            est = np.repeat(mix[None], len(STEMS), axis=0)
        else:
            Y = separate(X32, V32, n_fft, hop, mode, **kw)  # (T, J, C, F)
            est = istft(Y.transpose(1, 0, 2, 3).astype(np.complex128), n_fft, hop, window, length=N)
        out[label] = bss_eval_v4(refs, est)
    return out


def run_separation(songs: list, configs: dict, methods: list, log=print) -> dict:
    """Returns {config: {label: {metric: (songs, J) array}}}."""
    res = {}
    for cname, cfg in configs.items():
        acc = {}
        for i, song in enumerate(songs):
            t0 = time.perf_counter()
            sc = separation_scores(song, cfg, methods)
            for label, d in sc.items():
                for m, v in d.items():
                    acc.setdefault(label, {}).setdefault(m, []).append(v)
            log(
                f"  {cname} song {i}: {time.perf_counter() - t0:.1f} s  "
                + "  ".join(f"{lab} {np.mean(d['SDR']):.2f}" for lab, d in sc.items())
            )
        res[cname] = {lab: {m: np.array(v) for m, v in d.items()} for lab, d in acc.items()}
    return res


def summary_rows(res: dict) -> list:
    rows = []
    for cname, d in res.items():
        for label, m in d.items():
            rows.append(
                {
                    "config": cname,
                    "method": label,
                    **{k: float(np.mean(m[k])) for k in ("SDR", "SIR", "SAR")},
                    **{f"SDR_{s}": float(np.mean(m["SDR"][:, j])) for j, s in enumerate(STEMS)},
                }
            )
    return rows


def markdown_table(rows: list, cols: list, fmt: str = "{:.2f}") -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "|".join(" --- " for _ in cols) + "|\n"
    body = ""
    for r in rows:
        body += "| " + " | ".join(fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols) + " |\n"
    return head + body


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate livedemix phase recovery.")
    ap.add_argument("experiment", choices=["retrieval", "separation", "sweep"])
    ap.add_argument("--songs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument(
        "--n-iter",
        type=int,
        default=None,
        help="pu-iter iterations (default: livedemix.phase.default_n_iter of each STFT's hop)",
    )
    ap.add_argument("--kappa", type=float, default=None)
    ap.add_argument("--json", type=str, default=None, help="also write the rows as JSON here")
    ap.add_argument(
        "--stems-dir",
        action="append",
        default=None,
        help="evaluate the song in this folder (vocals/drums/bass/other .flac/.wav) instead of rendering; repeatable",
    )
    a = ap.parse_args(argv)
    from livedemix.phase import DEFAULT_KAPPA

    # PU-Iter: the given count, else the product default for each STFT's hop (PhaseRecovery's default)
    pu_label = f"n_iter={a.n_iter}" if a.n_iter else "default n_iter"
    pu_kw = {"n_iter": a.n_iter} if a.n_iter else {}
    kappa = DEFAULT_KAPPA if a.kappa is None else a.kappa
    rows = []
    if a.experiment == "retrieval":
        rows = retrieval_table()
        print(
            markdown_table(
                rows,
                [
                    "instrument",
                    "frames",
                    "onset_frames",
                    "pu_sdr",
                    "gl_sdr",
                    "pu_bss_sdr",
                    "gl_bss_sdr",
                    "pu_spec_conv_db",
                    "gl_spec_conv_db",
                ],
            )
        )
    elif a.experiment == "separation":
        songs = load_songs(a.songs, a.seconds, a.stems_dir)
        methods = [
            ("mixture", "mixture", {}),
            ("wiener", "wiener", {}),
            (f"pu-iter ({pu_label})", "pu-iter", pu_kw),
            (f"anisotropic (kappa={kappa:g})", "anisotropic", {"kappa": kappa}),
            ("pu (no consistency)", "pu", {}),
        ]
        res = run_separation(songs, CONFIGS, methods)
        rows = summary_rows(res)
        print(markdown_table(rows, ["config", "method", "SDR", "SIR", "SAR"] + [f"SDR_{s}" for s in STEMS]))
    else:
        songs = load_songs(a.songs, a.seconds, a.stems_dir)
        methods = [("wiener", "wiener", {})]
        methods += [(f"pu-iter n_iter={n}", "pu-iter", {"n_iter": n}) for n in (1, 4, 8, 16, 24, 32)]
        methods += [(f"anisotropic kappa={k:g}", "anisotropic", {"kappa": k}) for k in (0.5, 1, 2, 4)]
        res = run_separation(songs, {k: CONFIGS[k] for k in ("hann-1024-256", "asym-1024-128")}, methods)
        rows = summary_rows(res)
        print(markdown_table(rows, ["config", "method", "SDR", "SIR", "SAR"]))
        wl = {f"hann-{n}-{n // 4}": dict(n_fft=n, hop=n // 4, window="hann") for n in (512, 2048, 4096)}
        res2 = run_separation(
            songs,
            wl,
            [
                ("wiener", "wiener", {}),
                (f"pu-iter {pu_label}", "pu-iter", pu_kw),
                (f"anisotropic kappa={kappa:g}", "anisotropic", {"kappa": kappa}),
            ],
        )
        rows2 = summary_rows(res2)
        print(markdown_table(rows2, ["config", "method", "SDR", "SIR", "SAR"]))
        rows += rows2
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
