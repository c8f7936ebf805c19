"""Vocal sources that are not GM patches.

1. `sing`: a source-filter singer of our own. A band-limited glottal pulse (wavetable,
   harmonics up to 18 kHz, spectral tilt per singer) follows the melody with portamento,
   delayed vibrato and slow pitch drift; aspiration noise adds breath; a cascade of five
   formant resonators shapes each vowel; consonants are modelled by class (plosive
   closure + burst + aspiration, fricative noise bands, nasal murmur, liquid glides) and
   placed just before the beat, as singers do.
2. `speak`: spoken lines from espeak-ng (Debian main), many languages and voice variants.

Both are deterministic functions of their inputs and a seed.
"""

from __future__ import annotations

import io
import subprocess
from functools import lru_cache

import numpy as np
from scipy import signal

SR = 44100

# Formant frequencies (Hz) of sung vowels, adult male; bandwidths grow with frequency.
VOWELS = {
    "a": (730, 1090, 2440, 3300, 4100),
    "e": (480, 1900, 2500, 3350, 4200),
    "i": (290, 2250, 3000, 3500, 4300),
    "o": (500, 850, 2450, 3300, 4150),
    "u": (320, 800, 2250, 3250, 4100),
    "ae": (660, 1700, 2400, 3350, 4200),
    "uh": (560, 1150, 2400, 3300, 4150),
    "oo": (380, 950, 2300, 3300, 4150),
}
VOWEL_WEIGHTS = {"a": 5, "e": 3, "i": 3, "o": 4, "u": 2, "ae": 2, "uh": 2, "oo": 3}
BANDWIDTHS = (80, 95, 130, 170, 220)
# Consonants: class, and for voiced ones the formants of the murmur/glide.
CONSONANTS = {
    "p": ("plosive", 900),
    "t": ("plosive", 4200),
    "k": ("plosive", 2200),
    "b": ("vplosive", 800),
    "d": ("vplosive", 3600),
    "g": ("vplosive", 2000),
    "s": ("fricative", (4800, 9500)),
    "sh": ("fricative", (2200, 6000)),
    "f": ("fricative", (1500, 9000)),
    "h": ("aspirate", None),
    "th": ("fricative", (1200, 8000)),
    "v": ("vfricative", (1500, 8000)),
    "z": ("vfricative", (4500, 9000)),
    "m": ("nasal", (250, 1100, 2300, 3300, 4000)),
    "n": ("nasal", (250, 1600, 2600, 3300, 4000)),
    "l": ("liquid", (360, 1300, 2700, 3300, 4100)),
    "r": ("liquid", (400, 1100, 1600, 3000, 4000)),
    "w": ("liquid", (300, 650, 2200, 3200, 4000)),
    "y": ("liquid", (280, 2200, 3000, 3500, 4200)),
}
ONSET_WEIGHTS = {
    "": 6,
    "l": 5,
    "n": 4,
    "m": 4,
    "d": 3,
    "t": 3,
    "s": 3,
    "k": 2,
    "b": 2,
    "h": 2,
    "w": 2,
    "y": 2,
    "r": 3,
    "sh": 1,
    "f": 1,
    "g": 1,
    "p": 1,
    "v": 1,
    "z": 1,
    "th": 1,
}
CODA_WEIGHTS = {"": 14, "n": 3, "m": 1, "s": 2, "t": 1, "l": 1}


def _pick(rng, weights: dict):
    keys = list(weights)
    w = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _resonators(freqs, bws, scale: float) -> np.ndarray:
    """Cascade of 2-pole resonators with unity gain at DC, as second-order sections."""
    sos = []
    for f, bw in zip(freqs, bws):
        f = min(f * scale, 0.45 * SR)
        r = np.exp(-np.pi * bw * scale / SR)
        c = 2 * r * np.cos(2 * np.pi * f / SR)
        sos.append([1 - c + r * r, 0, 0, 1, -c, r * r])
    return np.array(sos)


@lru_cache(maxsize=256)
def _bandpass(lo: float, hi: float) -> np.ndarray:
    return signal.butter(4, [lo / (SR / 2), min(hi, 20000) / (SR / 2)], "bandpass", output="sos")


def _band_noise(rng, n, lo, hi):
    return signal.sosfilt(_bandpass(float(round(lo)), float(round(hi))), rng.standard_normal(n))


DRIFT_SOS = signal.butter(1, 3 / (SR / 2), output="sos")
# Five cascaded resonators fall off far too steeply above the fifth formant; real voices
# keep energy up to 8-10 kHz. A parallel high band of the source stands in for the
# higher formants (the "higher-pole correction" of cascade formant synthesizers).
HF_SOS = signal.butter(2, 4500 / (SR / 2), "highpass", output="sos")


def _glottal_table(f0_max: float, tilt: float, phases: np.ndarray, size: int = 2048) -> np.ndarray:
    """One period of a band-limited glottal pulse: no harmonic above 18 kHz at f0_max."""
    k_max = int(max(1, min(size // 2 - 1, 18000 // max(f0_max, 1.0))))
    spec = np.zeros(size // 2 + 1, complex)
    k = np.arange(1, k_max + 1)
    spec[1 : k_max + 1] = k ** (-tilt) * np.exp(1j * phases[:k_max])
    tab = np.fft.irfft(spec, size)
    return tab / (np.abs(tab).max() + 1e-12)


class Singer:
    """A voice: register-dependent formant scale, tilt, vibrato, breathiness."""

    def __init__(self, seed: int, female: bool, backing: bool = False):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.formant_scale = rng.uniform(1.10, 1.22) if female else rng.uniform(0.95, 1.05)
        self.tilt = rng.uniform(0.9, 1.5) + (0.3 if backing else 0.0)
        self.vib_rate = rng.uniform(4.8, 6.6)
        self.vib_depth = rng.uniform(0.15, 0.6)  # semitones
        self.vib_delay = rng.uniform(0.12, 0.35)
        self.breath = rng.uniform(0.02, 0.10) + (0.06 if backing else 0.0)
        self.glide = rng.uniform(0.025, 0.07)
        self.consonant_level = rng.uniform(0.5, 1.0) * (0.4 if backing else 1.0)
        self.phases = rng.uniform(-np.pi, np.pi, 1024) * rng.uniform(0.0, 0.4) - np.arange(1024) * np.pi / 2
        self.vowels = {"oo": 5, "a": 3, "uh": 2} if backing else VOWEL_WEIGHTS
        self.onsets = {"": 10, "m": 2, "d": 1} if backing else ONSET_WEIGHTS
        self.singers_formant = rng.random() < 0.4 and not backing  # classical "ring" near 3 kHz
        self.brightness = rng.uniform(0.03, 0.10) * (0.5 if backing else 1.0)

    def sing(self, notes, n_samples: int) -> tuple[np.ndarray, list[str]]:
        """Render notes [(onset s, dur s, midi, velocity)] to mono float32; returns the lyrics too."""
        rng = self.rng
        out = np.zeros(n_samples + SR, np.float64)
        lyrics = []
        prev_pitch, prev_end = None, -1.0
        for on, dur, pitch, vel in notes:
            onset, vowel, coda = _pick(rng, self.onsets), _pick(rng, self.vowels), _pick(rng, CODA_WEIGHTS)
            if dur < 0.25:
                coda = ""
            lyrics.append(onset + vowel + coda)
            legato = prev_pitch is not None and on - prev_end < 0.06
            seg = self._note(on, dur, pitch, vel / 127.0, onset, vowel, coda, prev_pitch if legato else None)
            start = int(round(on * SR)) - seg[1]
            x = seg[0]
            if start < 0:
                x, start = x[-start:], 0
            end = min(out.size, start + x.size)
            out[start:end] += x[: end - start]
            prev_pitch, prev_end = pitch, on + dur
        return out[:n_samples].astype(np.float32), lyrics

    def _note(self, on, dur, pitch, amp, onset, vowel, coda, from_pitch):
        rng = self.rng
        cls, cpar = CONSONANTS.get(onset, (None, None))
        pre = {
            None: 0.0,
            "plosive": 0.07,
            "vplosive": 0.06,
            "fricative": 0.1,
            "vfricative": 0.08,
            "aspirate": 0.06,
            "nasal": 0.07,
            "liquid": 0.06,
        }[cls]
        pre_n = int(pre * SR)
        rel = 0.06
        n = pre_n + int((dur + rel) * SR)
        t = np.arange(n) / SR - pre  # 0 = the beat
        # Pitch: portamento from the previous note, delayed vibrato, slow drift.
        semis = np.full(n, float(pitch)) + rng.normal(0, 0.08)
        if from_pitch is not None:
            semis += (from_pitch - pitch) * np.exp(-np.clip(t + pre, 0, None) / self.glide)
        vib_env = np.clip((t - self.vib_delay) / 0.25, 0, 1)
        semis += self.vib_depth * vib_env * np.sin(2 * np.pi * self.vib_rate * t + rng.uniform(0, 6.28))
        drift = signal.sosfilt(DRIFT_SOS, rng.standard_normal(n)) * 4.0
        semis += 0.15 * drift
        f0 = 440.0 * 2 ** ((semis - 69) / 12)
        phase = np.cumsum(f0 / SR) + rng.uniform()
        table = _glottal_table(float(f0.max()), self.tilt, self.phases)
        pos = (phase % 1.0) * table.size
        i0 = pos.astype(np.int64)
        frac = pos - i0
        src = table[i0 % table.size] * (1 - frac) + table[(i0 + 1) % table.size] * frac
        pulse = 0.5 + 0.5 * np.cos(2 * np.pi * phase)  # breath is louder when the glottis opens
        src += self.breath * 3 * pulse * _band_noise(rng, n, 700, 12000)
        src *= 1 + 0.05 * vib_env * np.sin(2 * np.pi * self.vib_rate * t)  # amplitude follows vibrato
        fs = self.formant_scale * 2 ** ((pitch - 60) / 12 * 0.08)  # formants rise a little with pitch
        vf = list(VOWELS[vowel])
        if self.singers_formant:
            vf[2], vf[3] = 2800, 3200
        v_sos = _resonators(vf, BANDWIDTHS, fs)
        voiced = signal.sosfilt(v_sos, src) + self.brightness * signal.sosfilt(HF_SOS, src)
        # Envelope: voice starts at the beat (or earlier for voiced consonants).
        attack = 0.03
        env = np.clip(t / attack, 0, 1)
        end_t = dur
        env *= np.clip((end_t + rel - t) / rel, 0, 1) ** 1.5
        swell = 1 + 0.15 * np.sin(np.pi * np.clip(t / max(dur, 1e-3), 0, 1))
        y = voiced * env * swell
        c_amp = self.consonant_level
        if cls in ("nasal", "liquid", "vplosive", "vfricative"):
            # Voiced consonant: the same source through the consonant's own resonances,
            # crossfading into the vowel (the formant transition).
            cf = cpar if cls in ("nasal", "liquid") else (250, 1000, 2400, 3300, 4000)
            c_voiced = signal.sosfilt(_resonators(cf, BANDWIDTHS, fs), src)
            xf = np.clip((t + pre) / pre, 0, 1) * np.clip(-t / 0.03 + 1, 0, 1)
            lvl = {"nasal": 0.45, "liquid": 0.7, "vplosive": 0.25, "vfricative": 0.3}[cls]
            y += c_voiced * xf * lvl
        if cls in ("plosive", "vplosive"):
            b0 = int((pre - 0.015) * SR)  # burst 15 ms before the beat, after closure
            bn = int(0.012 * SR)
            burst = _band_noise(rng, bn, max(300, cpar * 0.6), cpar * 1.6) * np.hanning(bn) * 2.5 * c_amp
            y[b0 : b0 + bn] += burst * (0.5 if cls == "vplosive" else 1.0)
            if cls == "plosive":  # aspiration through the vowel's formants
                an = int(0.03 * SR)
                asp = signal.sosfilt(v_sos, rng.standard_normal(an)) * np.linspace(1, 0, an) * 0.25 * c_amp
                y[b0 + bn : b0 + bn + an] += asp[: max(0, min(an, n - b0 - bn))]
        if cls in ("fricative", "vfricative"):
            fn = pre_n + int(0.015 * SR)
            lo, hi = cpar
            fr = _band_noise(rng, fn, lo, hi) * np.hanning(fn) ** 0.5
            y[:fn] += fr * (1.4 if cls == "fricative" else 0.7) * c_amp
        if cls == "aspirate":
            an = pre_n + int(0.02 * SR)
            y[:an] += signal.sosfilt(v_sos, rng.standard_normal(an)) * np.hanning(an) * 0.35 * c_amp
        if coda:
            # The coda takes over from the vowel 70 ms before the note ends, through the release.
            ccls, cpar2 = CONSONANTS[coda]
            c0 = max(0, int((pre + dur - 0.07) * SR))
            m = n - c0
            ramp = np.clip(np.arange(m) / (0.07 * SR), 0, 1)
            if ccls in ("nasal", "liquid"):
                murmur = signal.sosfilt(_resonators(cpar2, BANDWIDTHS, fs), src[c0:]) * env[c0:]
                y[c0:] = y[c0:] * (1 - 0.7 * ramp) + murmur * 0.4 * ramp
            elif ccls == "fricative":
                cn = min(m, int(0.09 * SR))
                y[c0 : c0 + cn] += _band_noise(rng, cn, *cpar2) * np.hanning(cn) * 1.2 * c_amp
            else:  # a stop: close, then release a small burst
                y[c0:] *= 1 - ramp
                b0 = c0 + int(0.07 * SR)
                bn = min(int(0.01 * SR), n - b0)
                if bn > 0:
                    y[b0 : b0 + bn] += _band_noise(rng, bn, 2500, 7000) * np.hanning(bn) * c_amp
        y *= amp**1.2
        return y, pre_n


# ------------------------------------------------------------------ spoken lines (espeak-ng)

WORDS = (
    "time love night heart light away never feel know dream fire rain home road world "
    "alone tonight baby again stay remember falling river morning shadow golden broken "
    "summer winter city dancing running hold tell believe yesterday forever somebody "
    "nothing everything little stars moon ocean window sky train station letter smile "
    "listen children mountain silver highway whisper thunder paper promise hands eyes "
    "voice story slowly together wonder morning silence careful honest radio sunday"
).split()
LANGS = [
    ("en-us", 6),
    ("en-gb-x-rp", 3),
    ("en-gb-scotland", 1),
    ("en-029", 1),
    ("de", 2),
    ("fr-fr", 2),
    ("es", 2),
    ("it", 2),
    ("pt-br", 1),
    ("nl", 1),
    ("sv", 1),
    ("pl", 1),
    ("cs", 1),
    ("fi", 1),
]
VARIANTS = [
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "Andy",
    "Annie",
    "david",
    "linda",
    "john",
    "paul",
    "robert",
    "steph",
    "max",
    "Mike",
]
FEMALE_VARIANTS = {"f1", "f2", "f3", "f4", "f5", "Annie", "linda", "steph"}


def _gibberish(rng, n_words: int) -> str:
    cons, vows = "bdfgklmnprstvz", "aeiou"
    words = []
    for _ in range(n_words):
        words.append("".join(rng.choice(list(cons)) + rng.choice(list(vows)) for _ in range(int(rng.integers(1, 4)))))
    return " ".join(words)


def espeak(text: str, voice: str, wpm: int, pitch: int) -> np.ndarray:
    """Speak `text` with espeak-ng; mono float32 at 44.1 kHz."""
    import soundfile as sf
    import soxr

    res = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-a", "120", "--stdout", text],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if res.returncode != 0 or not res.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice}: {res.stderr.decode(errors='replace')[-200:]}")
    x, sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
    return soxr.resample(x, sr, SR).astype(np.float32) if sr != SR else x


def extend_band(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """espeak-ng speaks at 22.05 kHz, so nothing lies above 11 kHz: a band edge a separator
    could learn as a shortcut for "voice". Continue the fricative energy of 6-10 kHz into
    11-20 kHz with envelope-following noise (a crude spectral band replication)."""
    band = signal.sosfilt(_bandpass(6000.0, 10000.0), x)
    env = signal.sosfilt(signal.butter(2, 60 / (SR / 2), output="sos"), np.abs(band))
    hi = signal.sosfilt(signal.butter(6, 11000 / (SR / 2), "highpass", output="sos"), rng.standard_normal(x.size))
    return (x + 0.6 * env * hi).astype(np.float32)


def speak_lines(lines, n_samples: int, seed: int, register: str) -> tuple[np.ndarray, dict]:
    """Spoken phrases [(onset s, max dur s, midi pitch, velocity)] in one voice."""
    rng = np.random.default_rng(seed)
    langs, w = zip(*LANGS)
    lang = langs[int(rng.choice(len(langs), p=np.array(w) / sum(w)))]
    female = register in ("alto", "mezzo", "soprano")
    pool = [v for v in VARIANTS if (v in FEMALE_VARIANTS) == female]
    voice = f"{lang}+{rng.choice(pool)}"
    wpm = int(rng.integers(130, 200))
    out = np.zeros(n_samples, np.float32)
    texts = []
    for on, span, midi, vel in lines:
        n_words = max(1, int(span * wpm / 60 * rng.uniform(0.6, 0.9)))
        text = " ".join(rng.choice(WORDS, n_words)) if lang.startswith("en") else _gibberish(rng, n_words)
        pitch = int(np.clip(50 + (midi - 60) * 2.5 + rng.normal(0, 5), 5, 95))
        x = extend_band(espeak(text, voice, wpm, pitch), rng)
        nz = np.flatnonzero(np.abs(x) > 1e-4)  # espeak pads with silence
        if nz.size:
            x = x[nz[0] : nz[-1] + 1]
        m = min(x.size, int(span * SR))
        x = x[:m] * (vel / 127.0)
        fade = min(m, int(0.03 * SR))
        x[m - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
        a = int(on * SR)
        b = min(n_samples, a + m)
        out[a:b] += x[: b - a]
        texts.append(text)
    return out, {"espeak_voice": voice, "wpm": wpm, "lines": len(texts), "text": texts[:4]}
