"""The song plan: from a seed and a piece of music21 material to timed notes per stem.

Everything random comes from one numpy Generator seeded by (corpus seed, song index),
so a song is the same whatever order or process renders it, and a build can resume.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from . import drums as D
from .material import CHORD_QUALITIES, PC_NAMES, MaterialCache

SR = 44100
SPLIT_FRACTIONS = (("test", 0.1), ("valid", 0.1))
TAIL_S = 1.0  # room after the last bar for releases (and reverb)

GM_NAMES = [
    "Acoustic Grand Piano",
    "Bright Acoustic Piano",
    "Electric Grand Piano",
    "Honky-tonk Piano",
    "Electric Piano 1",
    "Electric Piano 2",
    "Harpsichord",
    "Clavinet",
    "Celesta",
    "Glockenspiel",
    "Music Box",
    "Vibraphone",
    "Marimba",
    "Xylophone",
    "Tubular Bells",
    "Dulcimer",
    "Drawbar Organ",
    "Percussive Organ",
    "Rock Organ",
    "Church Organ",
    "Reed Organ",
    "Accordion",
    "Harmonica",
    "Tango Accordion",
    "Acoustic Guitar (nylon)",
    "Acoustic Guitar (steel)",
    "Electric Guitar (jazz)",
    "Electric Guitar (clean)",
    "Electric Guitar (muted)",
    "Overdriven Guitar",
    "Distortion Guitar",
    "Guitar Harmonics",
    "Acoustic Bass",
    "Electric Bass (finger)",
    "Electric Bass (pick)",
    "Fretless Bass",
    "Slap Bass 1",
    "Slap Bass 2",
    "Synth Bass 1",
    "Synth Bass 2",
    "Violin",
    "Viola",
    "Cello",
    "Contrabass",
    "Tremolo Strings",
    "Pizzicato Strings",
    "Orchestral Harp",
    "Timpani",
    "String Ensemble 1",
    "String Ensemble 2",
    "Synth Strings 1",
    "Synth Strings 2",
    "Choir Aahs",
    "Voice Oohs",
    "Synth Voice",
    "Orchestra Hit",
    "Trumpet",
    "Trombone",
    "Tuba",
    "Muted Trumpet",
    "French Horn",
    "Brass Section",
    "Synth Brass 1",
    "Synth Brass 2",
    "Soprano Sax",
    "Alto Sax",
    "Tenor Sax",
    "Baritone Sax",
    "Oboe",
    "English Horn",
    "Bassoon",
    "Clarinet",
    "Piccolo",
    "Flute",
    "Recorder",
    "Pan Flute",
    "Blown Bottle",
    "Shakuhachi",
    "Whistle",
    "Ocarina",
    "Lead 1 (square)",
    "Lead 2 (sawtooth)",
    "Lead 3 (calliope)",
    "Lead 4 (chiff)",
    "Lead 5 (charang)",
    "Lead 6 (voice)",
    "Lead 7 (fifths)",
    "Lead 8 (bass + lead)",
    "Pad 1 (new age)",
    "Pad 2 (warm)",
    "Pad 3 (polysynth)",
    "Pad 4 (choir)",
    "Pad 5 (bowed)",
    "Pad 6 (metallic)",
    "Pad 7 (halo)",
    "Pad 8 (sweep)",
    "FX 1 (rain)",
    "FX 2 (soundtrack)",
    "FX 3 (crystal)",
    "FX 4 (atmosphere)",
    "FX 5 (brightness)",
    "FX 6 (goblins)",
    "FX 7 (echoes)",
    "FX 8 (sci-fi)",
    "Sitar",
    "Banjo",
    "Shamisen",
    "Koto",
    "Kalimba",
    "Bagpipe",
    "Fiddle",
    "Shanai",
    "Tinkle Bell",
    "Agogo",
    "Steel Drums",
    "Woodblock",
    "Taiko Drum",
    "Melodic Tom",
    "Synth Drum",
    "Reverse Cymbal",
    "Guitar Fret Noise",
    "Breath Noise",
    "Seashore",
    "Bird Tweet",
    "Telephone Ring",
    "Helicopter",
    "Applause",
    "Gunshot",
]

# Instrument pools (GM program, weight). Voice patches are kept out of "other": in
# MUSDB18 backing choirs belong to the vocals stem.
BASS_PROGRAMS = [(33, 25), (34, 15), (32, 10), (35, 10), (36, 7), (37, 3), (38, 12), (39, 12), (43, 6)]
COMP_PROGRAMS = [
    (0, 14),
    (1, 5),
    (2, 3),
    (4, 8),
    (5, 5),
    (6, 2),
    (7, 3),
    (16, 4),
    (17, 3),
    (18, 4),
    (19, 2),
    (21, 2),
    (24, 6),
    (25, 8),
    (26, 4),
    (27, 8),
    (28, 3),
    (29, 5),
    (30, 6),
    (11, 2),
    (12, 2),
    (61, 3),
    (62, 2),
    (105, 1),
    (15, 1),
    (46, 2),
]
ARP_PROGRAMS = [
    (0, 8),
    (24, 8),
    (25, 6),
    (46, 6),
    (11, 4),
    (12, 3),
    (8, 2),
    (10, 2),
    (27, 5),
    (80, 3),
    (81, 3),
    (84, 2),
    (45, 3),
    (5, 3),
    (13, 1),
    (108, 1),
]
PAD_PROGRAMS = [
    (48, 12),
    (49, 8),
    (50, 6),
    (51, 4),
    (88, 4),
    (89, 6),
    (90, 4),
    (92, 3),
    (94, 2),
    (95, 2),
    (19, 4),
    (16, 3),
    (20, 2),
    (60, 3),
    (61, 3),
    (44, 2),
]
INNER_PROGRAMS = [
    (48, 8),
    (40, 4),
    (41, 4),
    (42, 5),
    (68, 3),
    (71, 3),
    (70, 2),
    (73, 2),
    (60, 3),
    (57, 3),
    (19, 4),
    (0, 4),
    (6, 2),
    (49, 3),
]
LEAD_PROGRAMS = [
    (73, 8),
    (71, 5),
    (68, 4),
    (64, 3),
    (65, 5),
    (66, 4),
    (56, 5),
    (59, 2),
    (40, 6),
    (110, 3),
    (80, 4),
    (81, 4),
    (27, 3),
    (29, 3),
    (30, 4),
    (21, 3),
    (22, 2),
    (78, 2),
    (79, 2),
    (74, 2),
    (75, 2),
    (109, 1),
    (11, 2),
    (0, 3),
]
GM_VOICE_PROGRAMS = [(52, 40), (53, 30), (54, 20), (85, 10)]
SINGER_CENTRES = {"bass": 50, "baritone": 53, "tenor": 57, "alto": 62, "mezzo": 65, "soprano": 69}

BASS_STYLE = {
    "rock": ["root8", "rootfifth", "root8"],
    "punk": ["root8"],
    "pop": ["root", "syncop", "rootfifth", "root8"],
    "funk": ["syncop", "octave"],
    "disco": ["octave"],
    "hiphop": ["syncop", "root"],
    "shuffle": ["walking", "rootfifth"],
    "jazz": ["walking"],
    "bossa": ["rootfifth"],
    "reggae": ["syncop"],
    "halftime": ["root", "root8"],
    "breakbeat": ["syncop", "root"],
    "latin": ["tumbao"],
    "folk": ["rootfifth", "root"],
    "waltz": ["rootfifth"],
    "jazzwaltz": ["walking"],
    "ballad3": ["root", "rootfifth"],
    "folk3": ["rootfifth"],
    "ballad68": ["root", "rootfifth"],
    "jig": ["rootfifth"],
    "shuffle128": ["rootfifth", "walking"],
    "rock68": ["root8", "root"],
}


@dataclass
class Part:
    stem: str
    role: str  # e.g. "drums", "bass", "comp", "lead", "melody", "backing"
    program: int
    channel: int
    notes: list = field(default_factory=list)  # (onset s, duration s, midi pitch, velocity 1-127)
    synth: str = "fluid"  # "fluid" (GM soundfont), "formant" (own singer), "speech" (espeak-ng)
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.synth != "fluid":
            return f"{self.synth} voice"
        if self.channel == 9:
            return "Drum kit: " + D.KITS.get(self.program, str(self.program))
        return GM_NAMES[self.program]


@dataclass
class Song:
    index: int
    seed: int
    split: str
    source: str
    n_samples: int
    tempo: float  # quarter notes per minute
    tonic: int
    mode: str
    meter: tuple
    style: str
    bar_s: float
    n_bars: int
    parts: list
    meta: dict

    @property
    def id(self) -> str:
        return f"song{self.index:05d}"

    @property
    def duration(self) -> float:
        return self.n_samples / SR


def split_of(seed: int, index: int) -> str:
    """Split of a song index: a keyed hash, so it depends on nothing but (seed, index)."""
    u = int.from_bytes(hashlib.sha256(f"split:{seed}:{index}".encode()).digest()[:8], "big") / 2.0**64
    acc = 0.0
    for name, frac in SPLIT_FRACTIONS:
        acc += frac
        if u < acc:
            return name
    return "train"


def song_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index, 0x50C]))


def planned_duration(seed: int, index: int) -> float:
    """The target length of a song, known without planning it (used to size a build)."""
    return float(np.random.default_rng(np.random.SeedSequence([seed, index, 0xD0])).uniform(10.0, 60.0))


def wchoice(rng, pairs):
    vals, w = zip(*pairs)
    w = np.asarray(w, float)
    return vals[int(rng.choice(len(vals), p=w / w.sum()))]


def _window(line, start_q, total_q, length_q):
    """Events of a looped line that fall in [0, total_q) of the song."""
    out = []
    passes = int(np.ceil((total_q + start_q) / length_q)) + 1
    for k in range(passes):
        for ev in line:
            on = ev[0] - start_q + k * length_q
            if 0 <= on < total_q - 1e-6:
                out.append([on, min(ev[1], total_q - on)] + list(ev[2:]))
    out.sort(key=lambda e: e[0])
    return out


def _octave_to(pitches_median: float, centre: float) -> int:
    return int(12 * round((centre - pitches_median) / 12))


def _chord_tones(root: int, quality: str):
    return [(root + i) % 12 for i in CHORD_QUALITIES[quality]]


def _voicing(root, quality, centre, n=4, power=False):
    """Chord tones placed near `centre` (close position, so voices move little)."""
    if power:
        r = root + 12 * int(np.floor((centre - root) / 12))
        return [r, r + 7, r + 12]
    pcs = _chord_tones(root, quality)
    notes = sorted({int(pc + 12 * round((centre - pc) / 12)) for pc in pcs})
    while len(notes) < n:
        notes.append(notes[len(notes) - len(pcs)] + 12 if len(notes) >= len(pcs) else notes[-1] + 12)
    return sorted(notes)[:n]


class Planner:
    def __init__(self, seed: int, pools: dict, cache: MaterialCache, song_seconds: float | None = None):
        self.seed, self.pools, self.cache = seed, pools, cache
        self.song_seconds = song_seconds  # fixed length instead of 10-60 s (tests, demo)

    # ------------------------------------------------------------------ song skeleton
    def plan(self, index: int) -> Song:
        seed = self.seed
        rng = song_rng(seed, index)
        split = split_of(seed, index)
        target = self.song_seconds or planned_duration(seed, index)
        pool = self.pools[split]
        for _ in range(100):  # a few corpus files do not reduce
            src = pool[int(rng.integers(len(pool)))]
            mat = self.cache.get(src)
            if mat.get("ok"):
                break
        else:
            raise RuntimeError("no usable music21 material in split " + split)
        fam, bar = mat["family"], float(mat["bar"])
        style = str(rng.choice(D.STYLES[fam]))
        beat_len = 1.5 if fam == "compound" else 1.0
        lo, hi = D.TEMPO[style]
        bpm = rng.uniform(lo, hi) * beat_len  # quarter notes per minute
        mel_d = float(np.median([e[1] for e in mat["melody"]]))
        bpm = float(np.clip(bpm, 60 * mel_d / 0.9, 60 * mel_d / 0.13))  # singable note lengths
        bpm = round(float(np.clip(bpm, 45, 260)), 1)
        bar_s = bar * 60 / bpm
        n_bars = int(np.clip(round(target / bar_s), np.ceil(9.0 / bar_s), np.floor(58.5 / bar_s)))
        n_bars = max(n_bars, 2)
        total_q = n_bars * bar
        n_samples = int(round((n_bars * bar_s + TAIL_S) * SR))
        tonic = int(rng.integers(12))
        shift = (tonic - mat["tonic"] + 6) % 12 - 6
        length_q = float(mat["length"])
        n_phr = max(1, int(length_q // (4 * bar)))
        start_q = float(rng.integers(n_phr)) * 4 * bar if length_q > total_q else 0.0

        sec_bars = 8 if bar_s < 1.6 else 4
        n_sec = int(np.ceil(n_bars / sec_bars))
        song = Song(
            index=index,
            seed=seed,
            split=split,
            source=src.key,
            n_samples=n_samples,
            tempo=bpm,
            tonic=tonic,
            mode=mat["mode"],
            meter=tuple(mat["meter"]),
            style=style,
            bar_s=bar_s,
            n_bars=n_bars,
            parts=[],
            meta={},
        )
        q2s = 60.0 / bpm
        # Section plan: who plays where (intros, instrumental breaks, drum breaks), intensity.
        present = {
            "vocals": rng.random() < 0.88,
            "drums": rng.random() < 0.94,
            "bass": rng.random() < 0.95,
            "other": rng.random() < 0.97,
        }
        if not present["vocals"]:
            present["other"] = True  # the melody goes to a lead instrument
        vocal_on = np.ones(n_sec, bool)
        if n_sec >= 3 and rng.random() < 0.3:
            vocal_on[0] = False
        if n_sec >= 4 and rng.random() < 0.25:
            vocal_on[int(rng.integers(2, n_sec))] = False
        if vocal_on.mean() < 0.6 or not present["other"]:
            # Keep the voice in most of the song (and everywhere when no lead can take over).
            vocal_on[1:] = True
            if not present["other"]:
                vocal_on[0] = True
        intensity = np.clip(rng.integers(0, 2) + (np.arange(n_sec) > 0) * (rng.random(n_sec) < 0.6), 0, 2)
        drum_off_bars = set()
        if n_sec >= 3 and rng.random() < 0.2:
            drum_off_bars |= set(range(0, sec_bars))  # drums enter after the intro
        if rng.random() < 0.25 and n_bars >= 8:  # a break without drums
            b = int(rng.integers(n_bars // 2, n_bars - 1))
            drum_off_bars |= {b, b + 1} if rng.random() < 0.5 else {b}
        if len(drum_off_bars) > 0.25 * n_bars:  # drums stay in most of the song
            drum_off_bars = {b for b in drum_off_bars if b >= sec_bars}
            if len(drum_off_bars) > 0.25 * n_bars:
                drum_off_bars = set()
        modulation = 0
        if n_sec >= 3 and rng.random() < 0.12:
            modulation = int(rng.choice([1, 2]))
        sec_of_bar = lambda b: min(n_sec - 1, b // sec_bars)
        # Key shift per bar (a truck-driver modulation in the last section).
        bar_shift = np.array(
            [shift + (modulation if sec_of_bar(b) == n_sec - 1 and modulation else 0) for b in range(n_bars)]
        )

        def shift_at(q):
            return int(bar_shift[min(n_bars - 1, int(q // bar))])

        chords = [
            (c[0], c[1], (c[2] + shift_at(c[0])) % 12, c[3])
            for c in _window([[c[0], c[1], c[2], c[3]] for c in mat["chords"]], start_q, total_q, length_q)
        ]
        melody = [(e[0], e[1], e[2] + shift_at(e[0])) for e in _window(mat["melody"], start_q, total_q, length_q)]
        voices = [
            [(e[0], e[1], e[2] + shift_at(e[0])) for e in _window(v, start_q, total_q, length_q)]
            for v in mat["voices"]
            if v
        ]
        real_bass = None
        if mat.get("bass"):
            real_bass = [(e[0], e[1], e[2] + shift_at(e[0])) for e in _window(mat["bass"], start_q, total_q, length_q)]
        ctx = dict(
            rng=rng,
            bar=bar,
            fam=fam,
            style=style,
            q2s=q2s,
            n_bars=n_bars,
            sec_bars=sec_bars,
            intensity=intensity,
            sec_of_bar=sec_of_bar,
            tight=rng.uniform(0.003, 0.016),
            vel_sd=rng.uniform(3, 9),
            total_q=total_q,
        )
        channels = iter([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15])
        parts = []
        if present["drums"]:
            parts.append(self._drums(ctx, drum_off_bars))
        if present["bass"]:
            parts.append(self._bass(ctx, chords, real_bass, next(channels)))
        vocal_bars = {b for b in range(n_bars) if vocal_on[sec_of_bar(b)]} if present["vocals"] else set()
        if present["vocals"]:
            parts.extend(self._vocals(ctx, melody, voices, vocal_bars, channels))
        if present["other"]:
            parts.extend(self._other(ctx, chords, voices, channels))
        lead_bars = set(range(n_bars)) - vocal_bars
        if lead_bars and (present["other"]):
            p = self._lead(ctx, melody, lead_bars, next(channels))
            if p.notes:
                parts.append(p)
        self._humanize(ctx, parts)
        song.parts = [p for p in parts if p.notes]
        song.meta = {
            "key": f"{PC_NAMES[tonic]} {mat['mode']}",
            "modulation": modulation,
            "sections": int(n_sec),
            "intensity": [int(x) for x in intensity],
            "vocal_sections": [bool(x) for x in vocal_on] if present["vocals"] else [],
            "drum_break_bars": sorted(int(b) for b in drum_off_bars) if present["drums"] else [],
            "start_quarter": start_q,
            "transpose": int(shift),
            "n_parts_source": mat["n_parts"],
        }
        return song

    # ------------------------------------------------------------------ parts
    def _drums(self, ctx, off_bars):
        rng, bar, fam, style = ctx["rng"], ctx["bar"], ctx["fam"], ctx["style"]
        kit = (
            int(rng.choice(D.STYLE_KITS[style]))
            if style in D.STYLE_KITS and rng.random() < 0.7
            else int(rng.choice(list(D.KITS)[:13]))
        )
        part = Part("drums", "drums", kit, 9)
        variants = rng.integers(0, 12, size=64)
        for b in range(ctx["n_bars"]):
            if b in off_bars:
                continue
            s = ctx["sec_of_bar"](b)
            inten = int(ctx["intensity"][s])
            hits = D.groove_bar(style, fam, bar, inten, rng, int(variants[s % 64]))
            phrase_end = (b + 1) % ctx["sec_bars"] == 0 or (b + 1) in off_bars
            if phrase_end and b < ctx["n_bars"] - 1 and rng.random() < 0.7:
                start = bar - (1.0 if rng.random() < 0.7 else 2.0) * (1.5 if fam == "compound" else 1.0)
                hits = [h for h in hits if h[0] < start] + D.fill(bar, max(0.0, start), rng, fam)
            if b % ctx["sec_bars"] == 0 or (b - 1) in off_bars:
                hits.append((0.0, D.CRASH if rng.random() < 0.7 else D.CRASH2, 0.85))
            for pos, note, v in hits:
                t = (b * bar + pos) * ctx["q2s"]
                part.notes.append([t, 0.12, note, v * (0.8 + 0.1 * inten)])
        part.info = {"style": style, "kit": D.KITS.get(kit, str(kit))}
        return part

    def _bass(self, ctx, chords, real_bass, ch):
        rng, _bar, q2s = ctx["rng"], ctx["bar"], ctx["q2s"]
        style = ctx["style"]
        prog = wchoice(rng, BASS_PROGRAMS if style in ("jazz", "jazzwaltz", "waltz", "folk3") else BASS_PROGRAMS[:-1])
        pattern = str(rng.choice(BASS_STYLE[style]))
        if real_bass and rng.random() < 0.35:
            pattern = "real"
        part = Part("bass", "bass", int(prog), ch, info={"pattern": pattern})
        low = int(rng.integers(28, 34))  # E1..Bb1: lowest root allowed

        def root_midi(pc):
            return low + (pc - low) % 12

        if pattern == "real":
            med = np.median([e[2] for e in real_bass])
            o = _octave_to(med, low + 9)
            for on, d, m in real_bass:
                part.notes.append([on * q2s, d * q2s * 0.92, m + o, 0.8])
            return part
        beat = 1.5 if ctx["fam"] == "compound" else 1.0
        for i, (on, dur, root, quality) in enumerate(chords):
            r = root_midi(root)
            tones = [r + ((pc - root) % 12) for pc in _chord_tones(root, quality)]
            fifth = r + 7
            nxt = root_midi(chords[i + 1][2]) if i + 1 < len(chords) else r
            end = on + dur
            if pattern == "root":
                hits = [(on, dur, r)]
            elif pattern == "root8":
                hits = [(t, 0.45, r) for t in np.arange(on, end - 1e-6, 0.5)]
            elif pattern == "rootfifth":
                hits = [
                    (t, beat * 0.9, r if k % 2 == 0 else fifth) for k, t in enumerate(np.arange(on, end - 1e-6, beat))
                ]
            elif pattern == "octave":
                hits = [(t, 0.4, r if k % 2 == 0 else r + 12) for k, t in enumerate(np.arange(on, end - 1e-6, 0.5))]
            elif pattern == "walking":
                ts = np.arange(on, end - 1e-6, beat)
                hits = []
                for k, t in enumerate(ts):
                    if k == 0:
                        m = r
                    elif k == len(ts) - 1:
                        m = nxt + (1 if rng.random() < 0.5 else -1)
                    else:
                        m = int(rng.choice(tones[1:] + [r + 12]))
                    hits.append((t, beat * 0.95, m))
            elif pattern == "tumbao":
                hits = [
                    (t, 1.0, r if k % 2 == 0 else fifth) for k, t in enumerate(np.arange(on + 1.5, end - 1e-6, 2.0))
                ] or [(on, dur, r)]
            else:  # syncopated 16ths: root on the one, then a rhythm of roots/octaves/fifths
                hits = [(on, 0.4, r)]
                for t in np.arange(on + 0.25, end - 1e-6, 0.25):
                    if rng.random() < 0.22:
                        hits.append((t, 0.2, int(rng.choice([r, r, r + 12, fifth, r + 10]))))
            for t, d, m in hits:
                d = min(d, end - t)
                part.notes.append([t * q2s, d * q2s * 0.95, int(m), 0.75 + 0.1 * ((t - on) < 1e-6)])
        return part

    def _vocals(self, ctx, melody, voices, vocal_bars, channels):
        rng, q2s, bar = ctx["rng"], ctx["q2s"], ctx["bar"]
        source = str(rng.choice(["formant", "gm", "speech"], p=[0.55, 0.33, 0.12]))
        singer = str(rng.choice(list(SINGER_CENTRES)))
        med = np.median([e[2] for e in melody]) if melody else 60
        octv = _octave_to(med, SINGER_CENTRES[singer] + rng.uniform(-2, 2))
        notes = []
        for on, d, m in melody:
            if int(on // bar) in vocal_bars:
                notes.append([on * q2s, d * q2s, int(m + octv), 0.8])
        notes = _breathe(notes, rng)
        parts = []
        info = {"source": source, "singer": singer}
        if source == "gm":
            prog = int(wchoice(rng, GM_VOICE_PROGRAMS))
            parts.append(Part("vocals", "melody", prog, next(channels), notes, info=info))
            if voices and rng.random() < 0.5 and voices[0]:  # a second choir part from the alto line
                # (the alto line can be empty in the song's window of the piece)
                v = voices[0]
                o = _octave_to(np.median([e[2] for e in v]), SINGER_CENTRES[singer] - 4)
                hn = [[on * q2s, d * q2s, int(m + o), 0.6] for on, d, m in v if int(on // bar) in vocal_bars]
                parts.append(Part("vocals", "harmony", prog, next(channels), hn, info=info))
        elif source == "formant":
            info["voice_seed"] = int(rng.integers(2**31))
            parts.append(Part("vocals", "melody", -1, -1, notes, synth="formant", info=info))
            if rng.random() < 0.25 and voices and voices[0]:
                v = voices[0]
                o = _octave_to(np.median([e[2] for e in v]), SINGER_CENTRES[singer] - 3)
                hn = [[on * q2s, d * q2s, int(m + o), 0.5] for on, d, m in v if int(on // bar) in vocal_bars]
                binfo = dict(info, voice_seed=int(rng.integers(2**31)), backing=True)
                parts.append(Part("vocals", "backing", -1, -1, _breathe(hn, rng), synth="formant", info=binfo))
        else:
            # Spoken lines: one phrase per 1-2 bars where the voice is on, pitch from the melody.
            info["voice_seed"] = int(rng.integers(2**31))
            span = bar * q2s * (1 if bar * q2s > 2.2 else 2)
            lines = []
            t = 0.0
            total = ctx["n_bars"] * bar * q2s
            while t < total - 0.5:
                b = int(t / (bar * q2s))
                if b in vocal_bars:
                    pitch = next((n[2] for n in notes if n[0] >= t), int(SINGER_CENTRES[singer]))
                    lines.append([t + rng.uniform(0, 0.15), span * 0.95, int(pitch), 0.8])
                t += span
            parts.append(Part("vocals", "speech", -1, -1, lines, synth="speech", info=info))
        return parts

    def _other(self, ctx, chords, voices, channels):
        rng, q2s, _bar, style = ctx["rng"], ctx["q2s"], ctx["bar"], ctx["style"]
        roles = ["comp", "arp", "pad"]
        if voices:
            roles.append("inner")
        n = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
        chosen = list(rng.choice(roles, size=min(n, len(roles)), replace=False))
        parts = []
        beat = 1.5 if ctx["fam"] == "compound" else 1.0
        for role in map(str, chosen):
            if role == "inner":
                prog = int(wchoice(rng, INNER_PROGRAMS))
                p = Part("other", "inner", prog, next(channels), info={"voices": len(voices[:-1] or voices)})
                for v in (voices[:-1] or voices)[:2]:
                    for on, d, m in v:
                        p.notes.append([on * q2s, d * q2s * 0.95, int(m), 0.65])
                parts.append(p)
                continue
            pool = {"comp": COMP_PROGRAMS, "arp": ARP_PROGRAMS, "pad": PAD_PROGRAMS}[role]
            prog = int(wchoice(rng, pool))
            centre = int(rng.integers(52, 68))
            power = prog in (29, 30) and rng.random() < 0.7
            rhythm = str(rng.choice(["stabs", "offbeat", "strum8", "half", "charleston"])) if role == "comp" else role
            if style == "reggae" and role == "comp":
                rhythm = "offbeat"
            p = Part("other", role, prog, next(channels), info={"rhythm": rhythm})
            for on, dur, root, quality in chords:
                vo = _voicing(root, quality, centre, n=3 if power else int(rng.integers(3, 5)), power=power)
                end = on + dur
                if role == "pad" or rhythm == "half":
                    step = dur if role == "pad" else 2 * beat
                    hits = [(t, min(step, end - t)) for t in np.arange(on, end - 1e-6, step)]
                    for t, d in hits:
                        for m in vo:
                            p.notes.append([t * q2s, d * q2s * 0.98, m, 0.6])
                elif role == "arp":
                    step = 0.25 if (ctx["q2s"] > 0.45 and rng.random() < 0.5) else 0.5
                    seq = vo + vo[-2:0:-1]
                    for k, t in enumerate(np.arange(on, end - 1e-6, step)):
                        p.notes.append([t * q2s, step * q2s * 1.5, seq[k % len(seq)], 0.6 + 0.15 * (k % 4 == 0)])
                else:
                    if rhythm == "stabs":
                        ts = np.arange(on, end - 1e-6, beat)
                        d = beat * 0.6
                    elif rhythm == "offbeat":
                        ts = np.arange(on + beat / 2, end - 1e-6, beat)
                        d = beat * 0.35
                    elif rhythm == "strum8":
                        ts = np.arange(on, end - 1e-6, 0.5)
                        d = 0.45
                    else:  # charleston: one, and the and-of-two
                        ts = [t for t in (on, on + 1.5) if t < end]
                        d = 0.8
                    for k, t in enumerate(ts):
                        for j, m in enumerate(vo):
                            strum = 0.008 * j if prog in range(24, 32) else 0.0
                            p.notes.append([t * q2s + strum, d * q2s, m, 0.7 - 0.1 * (k % 2)])
            parts.append(p)
        return parts

    def _lead(self, ctx, melody, bars, ch):
        rng, q2s, bar = ctx["rng"], ctx["q2s"], ctx["bar"]
        prog = int(wchoice(rng, LEAD_PROGRAMS))
        med = np.median([e[2] for e in melody]) if melody else 72
        o = _octave_to(med, rng.uniform(64, 80))
        p = Part("other", "lead", prog, ch)
        for on, d, m in melody:
            if int(on // bar) in bars:
                p.notes.append([on * q2s, d * q2s * 0.95, int(m + o), 0.8])
        return p

    def _humanize(self, ctx, parts):
        """Timing jitter and velocity spread; mapped to MIDI velocity 1-127."""
        rng = ctx["rng"]
        for p in parts:
            loud = rng.uniform(0.75, 1.0)
            for n in p.notes:
                n[0] = max(0.0, n[0] + rng.normal(0, ctx["tight"]))
                v = 127 * loud * n[3] + rng.normal(0, ctx["vel_sd"])
                n[3] = int(np.clip(round(v), 20, 127))
                n[0], n[1] = round(float(n[0]), 4), round(float(max(0.03, n[1])), 4)
            p.notes.sort(key=lambda n: (n[0], n[2]))


def _breathe(notes, rng):
    """Singers breathe: merge very short notes into the previous one and leave a short gap
    before some phrase starts (bar lines after long notes)."""
    out = []
    for n in notes:
        if out and n[1] < 0.09 and abs(n[0] - (out[-1][0] + out[-1][1])) < 0.05:
            out[-1][1] = n[0] + n[1] - out[-1][0]
            continue
        out.append(list(n))
    for a, b in zip(out, out[1:]):
        gap = b[0] - (a[0] + a[1])
        if gap < 0.15 and a[1] > 0.4 and rng.random() < 0.35:
            a[1] = max(0.15, a[1] - 0.2)
    return out
