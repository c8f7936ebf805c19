"""Per-stem production: EQ, compression, saturation, stereo placement, echo and a shared
reverb bus. It runs on each stem before the sum, so the training targets contain the
production, as real multitrack stems do."""

from __future__ import annotations

import numpy as np
from scipy import signal

SR = 44100


def biquad(kind: str, f0: float, gain_db: float = 0.0, q: float = 0.707) -> np.ndarray:
    """RBJ audio-EQ-cookbook biquad as one second-order section."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / SR
    cw, sw = np.cos(w), np.sin(w)
    alpha = sw / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    elif kind in ("lowshelf", "highshelf"):
        s = 1 if kind == "lowshelf" else -1
        sq = 2 * np.sqrt(a) * alpha
        b = [
            a * ((a + 1) - s * (a - 1) * cw + sq),
            s * 2 * a * ((a - 1) - s * (a + 1) * cw),
            a * ((a + 1) - s * (a - 1) * cw - sq),
        ]
        den = [(a + 1) + s * (a - 1) * cw + sq, -s * 2 * ((a - 1) + s * (a + 1) * cw), (a + 1) + s * (a - 1) * cw - sq]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        den = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        den = [1 + alpha, -2 * cw, 1 - alpha]
    else:
        raise ValueError(kind)
    return np.array(b + den) / den[0]


def random_eq(rng, stem: str) -> tuple[np.ndarray, dict]:
    secs, desc = [], {}
    hp = {"bass": (25, 40), "drums": (20, 45), "vocals": (70, 180), "other": (40, 160)}[stem]
    f = float(rng.uniform(*hp))
    secs.append(biquad("highpass", f))
    desc["highpass_hz"] = round(f, 1)
    g, f = float(rng.uniform(-4, 4)), float(rng.uniform(80, 250))
    secs.append(biquad("lowshelf", f, g))
    desc["lowshelf"] = [round(f, 1), round(g, 2)]
    g, f, q = (
        float(rng.uniform(-5, 5)),
        float(np.exp(rng.uniform(np.log(300), np.log(5000)))),
        float(rng.uniform(0.7, 2.0)),
    )
    secs.append(biquad("peak", f, g, q))
    desc["peak"] = [round(f, 1), round(g, 2), round(q, 2)]
    g, f = float(rng.uniform(-5, 4)), float(rng.uniform(3000, 10000))
    secs.append(biquad("highshelf", f, g))
    desc["highshelf"] = [round(f, 1), round(g, 2)]
    return np.array(secs), desc


def compress(x: np.ndarray, threshold_db: float, ratio: float, attack_s: float, release_s: float) -> np.ndarray:
    """Feed-forward compressor with a smoothed gain computer (vectorised with lfilter:
    the level detector and the gain smoother are one-pole filters)."""
    return x * compressor_gain(x, threshold_db, ratio, attack_s, release_s)


def compressor_gain(x: np.ndarray, threshold_db: float, ratio: float, attack_s: float, release_s: float) -> np.ndarray:
    """The linear gain curve (n,) that `compress` applies to (channels, n)."""
    level = np.abs(x).max(axis=0)
    a_att = np.exp(-1 / (attack_s * SR))
    env = signal.lfilter([1 - a_att], [1, -a_att], level)
    with np.errstate(divide="ignore"):
        env_db = 20 * np.log10(env + 1e-9)
    gr_db = np.minimum(0.0, (threshold_db - env_db) * (1 - 1 / ratio))
    a_rel = np.exp(-1 / (release_s * SR))
    gr_db = signal.lfilter([1 - a_rel], [1, -a_rel], gr_db)
    return 10 ** (gr_db / 20)


def room_ir(rng, rt60: float, predelay_s: float, damping: float) -> np.ndarray:
    """A stereo room: sparse early reflections, then decorrelated noise decaying at rt60,
    with the highs decaying faster (damping)."""
    n = int((rt60 * 1.2 + predelay_s) * SR)
    t = np.arange(n) / SR
    ir = np.zeros((2, n))
    p0 = int(predelay_s * SR)
    for ch in range(2):
        noise = rng.standard_normal(n)
        hi = signal.sosfilt(signal.butter(2, 3000 / (SR / 2), "highpass", output="sos"), noise)
        lo = noise - hi
        decay = np.exp(-6.91 * t / rt60)
        tail = (lo * decay + hi * decay ** (1 + 2 * damping)) * np.clip((t - predelay_s) / 0.01, 0, 1)
        ir[ch] = tail
        for _ in range(8):  # early reflections
            k = p0 + int(rng.uniform(0.002, 0.06) * SR)
            if k < n:
                ir[ch, k] += rng.uniform(-1, 1) * 3
    return ir / np.sqrt((ir**2).sum() / 2)


def echo(x: np.ndarray, delay_s: float, feedback: float, taps: int = 5) -> np.ndarray:
    """Ping-pong echo, lowpassed, returns the wet signal only."""
    d = int(delay_s * SR)
    wet = np.zeros_like(x)
    lp = signal.butter(1, 3500 / (SR / 2), output="sos")
    src = x.mean(axis=0)
    for k in range(1, taps + 1):
        if k * d >= x.shape[1]:
            break
        src = signal.sosfilt(lp, src)
        wet[k % 2, k * d :] += (feedback**k) * src[: x.shape[1] - k * d]
    return wet


def pan_width(x: np.ndarray, pan: float, width: float) -> np.ndarray:
    """Mid/side width, then a constant-power balance (pan in [-1, 1])."""
    mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2 * width
    l, r = mid + side, mid - side
    th = (pan + 1) * np.pi / 4
    return np.stack([l * np.cos(th) * np.sqrt(2), r * np.sin(th) * np.sqrt(2)])


def produce(stems: dict, rng: np.random.Generator, tempo: float) -> tuple[dict, dict]:
    """Apply the chain to each stem (2, n) float64; returns processed stems and settings."""
    rt60 = float(rng.uniform(0.3, 2.5))
    ir = room_ir(rng, rt60, float(rng.uniform(0.005, 0.04)), float(rng.uniform(0, 1)))
    settings = {"reverb_rt60_s": round(rt60, 2)}
    out = {}
    for name in sorted(stems):
        x = stems[name]
        s: dict = {}
        if not np.any(x):
            out[name] = x
            continue
        sos, s["eq"] = random_eq(rng, name)
        x = signal.sosfilt(sos, x, axis=-1)
        if rng.random() < {"vocals": 0.9, "drums": 0.7, "bass": 0.8, "other": 0.5}[name]:
            rms_db = 10 * np.log10(np.mean(x**2) + 1e-20)
            thr, ratio = rms_db + float(rng.uniform(-2, 8)), float(rng.uniform(1.5, 6))
            att, rel = float(rng.uniform(0.002, 0.03)), float(rng.uniform(0.05, 0.3))
            x = compress(x, thr, ratio, att, rel)
            s["compressor"] = {
                "threshold_rel_rms_db": round(thr - rms_db, 1),
                "ratio": round(ratio, 2),
                "attack_ms": round(att * 1e3, 1),
                "release_ms": round(rel * 1e3),
            }
        if name != "vocals" and rng.random() < 0.2:
            drive = float(rng.uniform(1.5, 4))
            pk = np.abs(x).max() + 1e-12
            x = np.tanh(drive * x / pk) / np.tanh(drive) * pk
            s["saturation_drive"] = round(drive, 2)
        pan = float(np.clip(rng.normal(0, 0.08 if name in ("vocals", "bass") else 0.25), -0.8, 0.8))
        width = float(rng.uniform(0.0, 0.4) if name == "bass" else rng.uniform(0.4, 1.3))
        x = pan_width(x, pan, width)
        s["pan"], s["width"] = round(pan, 3), round(width, 3)
        if name == "vocals" and rng.random() < 0.3:
            d = 60.0 / tempo * float(rng.choice([0.5, 0.75, 1.0]))
            fb = float(rng.uniform(0.15, 0.4))
            x = x + echo(x, d, fb) * float(rng.uniform(0.2, 0.5))
            s["echo"] = {"delay_s": round(d, 3), "feedback": round(fb, 2)}
        send = float(
            rng.uniform(
                *{"vocals": (0.05, 0.4), "other": (0.02, 0.35), "drums": (0.0, 0.25), "bass": (0.0, 0.06)}[name]
            )
        )
        if send > 0.01:
            wet = signal.oaconvolve(x, ir, axes=1)[:, : x.shape[1]]
            x = x * (1 - send / 2) + wet * send
        s["reverb_send"] = round(send, 3)
        out[name] = x
        settings[name] = s
    return out, settings


# ----------------------------------------------------------------------------- master bus


def limiter_gain(x: np.ndarray, ceiling: float, lookahead_s: float = 0.004, release_s: float = 0.08) -> np.ndarray:
    """Gain curve of a look-ahead brick-wall limiter for (channels, n): never lets |x| * g
    exceed `ceiling`. The per-sample required gain is min-filtered over +-lookahead, then
    averaged over the lookahead (each average only sees gains <= the one needed at the
    peak, so there is no overshoot), then held down by a one-pole release (min only lowers)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    level = np.abs(x).max(axis=0)
    req = np.minimum(1.0, ceiling / np.maximum(level, 1e-12))
    w = max(1, int(lookahead_s * SR))
    g = uniform_filter1d(minimum_filter1d(req, 2 * w + 1, mode="nearest"), w, mode="nearest")
    a = np.exp(-1 / (release_s * SR))
    rel = signal.lfilter([1 - a], [1, -a], g - 1.0) + 1.0  # starts at unity gain
    return np.minimum(g, rel)


def master(stems: dict, rng: np.random.Generator, loudness) -> tuple[dict, dict]:
    """A master bus: a glue compressor and a limiter whose gain is computed from the mixture
    and applied to every stem alike (a linear, time-varying gain), so the stems still sum to
    the mastered mixture exactly, as with a real VCA bus compressor. Most songs are mastered
    loud (-16..-9 LUFS, like released music); some stay unmastered with headroom."""
    mix = sum(stems.values())
    info: dict = {}
    gain = np.ones(mix.shape[1])
    if rng.random() < 0.75:
        rms_db = 10 * np.log10(np.mean(mix**2) + 1e-20)
        thr, ratio = rms_db + float(rng.uniform(-8, -2)), float(rng.uniform(1.5, 3.0))
        att, rel = float(rng.uniform(0.01, 0.03)), float(rng.uniform(0.1, 0.3))
        g1 = compressor_gain(mix, thr, ratio, att, rel)
        mixc = mix * g1
        target = float(rng.uniform(-16, -9))
        pre = 10 ** ((target - loudness(mixc)) / 20)
        ceiling = 10 ** (float(rng.uniform(-1.0, -0.3)) / 20)
        g2 = limiter_gain(mixc * pre, ceiling)
        gain = g1 * pre * g2
        info = {
            "mastered": True,
            "bus_compressor": {"threshold_rel_rms_db": round(thr - rms_db, 1), "ratio": round(ratio, 2)},
            "target_lufs": round(target, 2),
            "ceiling_dbfs": round(20 * np.log10(ceiling), 2),
            "limiter_max_reduction_db": round(float(-20 * np.log10(g2.min())), 2),
        }
    else:
        target = float(rng.uniform(-24, -14))
        gain *= 10 ** ((target - loudness(mix)) / 20)
        info = {"mastered": False, "target_lufs": round(target, 2)}
    out = {k: v * gain for k, v in stems.items()}
    # Headroom for the 16-bit files: a stem can peak above the mixture (cancellation).
    peak = max(np.abs(sum(out.values())).max(), max(np.abs(v).max() for v in out.values()))
    if peak > 0.97:
        out = {k: v * (0.97 / peak) for k, v in out.items()}
        info["headroom_trim_db"] = round(float(20 * np.log10(0.97 / peak)), 2)
    return out, info
