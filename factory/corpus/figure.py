"""The spectrogram figure of docs/CORPUS.md: each vocal source, singing the same phrase,
next to rendered instruments playing it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import arrange as A
from . import render as R
from . import voice as V

SR = 44100
PHRASE = [(0, 0.5, 62), (0.5, 0.5, 64), (1.0, 1.0, 66), (2.0, 0.5, 69), (2.5, 0.5, 67), (3.0, 1.2, 66)]


def _notes(shift=0, t0=0.2):
    return [[t0 + on, d * 0.95, m + shift, 100] for on, d, m in PHRASE]


def render_sources(soundfont: str | None = None) -> dict:
    sf2 = R.check_tools(soundfont)
    n = int(4.8 * SR)
    out = {}
    out["formant singer (tenor)"] = V.Singer(11, female=False).sing(_notes(-12 + 5), n)[0]
    out["formant singer (soprano)"] = V.Singer(12, female=True).sing(_notes(5), n)[0]
    with tempfile.TemporaryDirectory() as td:
        for prog in (52, 53, 54, 85, 65, 0):
            mid = Path(td) / f"{prog}.mid"
            R.write_midi([A.Part("x", "melody", prog, 0, _notes(-12 + 5 if prog in (52, 53) else 5))], mid)
            label = ("GM patch: " if prog in (52, 53, 54, 85) else "instrument: ") + A.GM_NAMES[prog]
            out[label] = R.render_midi(mid, n, sf2).mean(axis=0)
    out["espeak-ng speech (en-us+m3)"] = V.speak_lines([[0.2, 4.4, 57, 110]], n, 4, "tenor")[0]
    return out


def vocal_figure(path="docs/vocal_sources.png", soundfont: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal

    srcs = render_sources(soundfont)
    order = [k for k in srcs if not k.startswith("instrument")] + [k for k in srcs if k.startswith("instrument")]
    fig, axes = plt.subplots(len(order) // 3 + (len(order) % 3 > 0), 3, figsize=(15, 9), sharex=True, sharey=True)
    for ax, name in zip(axes.flat, order):
        x = srcs[name].astype(np.float64)
        x = x / (np.abs(x).max() + 1e-9)
        f, t, S = signal.stft(x, SR, nperseg=2048, noverlap=2048 - 256)
        db = 20 * np.log10(np.abs(S) + 1e-9)
        ax.pcolormesh(t, f / 1000, db, vmin=db.max() - 80, vmax=db.max(), shading="auto", cmap="magma")
        ax.set_ylim(0, 12)
        ax.set_title(name, fontsize=10)
    for ax in axes.flat[len(order) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("kHz")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.suptitle("Vocal sources of the corpus singing one phrase, and GM instruments playing it (80 dB range)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)
    return path
