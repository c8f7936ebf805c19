"""Procedural drum grooves on the GM percussion channel.

A groove is a function of (bar family, style, intensity): it returns, for one bar,
hits as (position in quarters, GM drum note, velocity 0-1). Styles are written as
rules over the beat grid rather than fixed tables, so one style works in any bar
length of its family (2/4 and 4/4; 3/4; 6/8, 9/8 and 12/8).
"""

from __future__ import annotations

import numpy as np

KICK, KICK2, RIM, SNARE, CLAP, SNARE2 = 36, 35, 37, 38, 39, 40
HH_CLOSED, HH_PEDAL, HH_OPEN = 42, 44, 46
TOM_LOW, TOM_LMID, TOM_MID, TOM_HMID, TOM_HIGH, TOM_FLOOR = 41, 45, 47, 48, 50, 43
CRASH, CRASH2, RIDE, RIDE_BELL, SPLASH, CHINA = 49, 57, 51, 53, 55, 52
TAMB, COWBELL, SHAKER, CLAVES = 54, 56, 70, 75
CONGA_HI, CONGA_OPEN, CONGA_LOW, BONGO_HI, BONGO_LO = 62, 63, 64, 60, 61

# GM kits in FluidR3 (bank 128): program -> name.
KITS = {
    0: "Standard",
    1: "Standard 1",
    2: "Standard 2",
    8: "Room",
    9: "Room 1",
    16: "Power",
    17: "Power 1",
    24: "Electronic",
    25: "TR-808",
    32: "Jazz",
    33: "Jazz 1",
    40: "Brush",
    41: "Brush 1",
    48: "Orchestra Kit",
}

STYLES = {
    "duple": [
        "rock",
        "pop",
        "funk",
        "disco",
        "hiphop",
        "shuffle",
        "jazz",
        "bossa",
        "reggae",
        "punk",
        "halftime",
        "breakbeat",
        "latin",
        "folk",
    ],
    "triple": ["waltz", "jazzwaltz", "ballad3", "folk3"],
    "compound": ["ballad68", "jig", "shuffle128", "rock68"],
}
# Kits that suit a style (the first is the most likely).
STYLE_KITS = {
    "jazz": [32, 40, 33, 41],
    "jazzwaltz": [32, 40, 33],
    "bossa": [40, 32, 0, 8],
    "disco": [24, 25, 0, 1],
    "hiphop": [25, 24, 8, 0],
    "breakbeat": [8, 24, 0, 16],
    "punk": [16, 0, 17, 8],
    "rock": [0, 16, 8, 1, 2, 9, 17],
    "rock68": [16, 0, 8],
    "folk": [8, 9, 0, 48],
    "folk3": [8, 0, 48],
    "jig": [8, 9, 48, 0],
    "waltz": [0, 8, 40, 48],
}
TEMPO = {  # comfortable quarter-note tempi per style (beats per minute)
    "rock": (90, 150),
    "pop": (80, 130),
    "funk": (85, 115),
    "disco": (110, 128),
    "hiphop": (70, 98),
    "shuffle": (80, 130),
    "jazz": (100, 190),
    "bossa": (110, 150),
    "reggae": (65, 90),
    "punk": (150, 200),
    "halftime": (120, 160),
    "breakbeat": (120, 174),
    "latin": (95, 130),
    "folk": (90, 140),
    "waltz": (85, 180),
    "jazzwaltz": (110, 180),
    "ballad3": (60, 90),
    "folk3": (100, 170),
    "ballad68": (50, 80),
    "jig": (90, 125),
    "shuffle128": (60, 95),
    "rock68": (60, 100),
}


def swing_time(pos: float, amount: float, unit: float = 0.5) -> float:
    """Delay the off-beat of each pair of `unit` notes: amount 0.5 = straight, 0.67 = triplet swing."""
    pair = 2 * unit
    k, r = divmod(pos, pair)
    if abs(r - unit) < 1e-6:
        r = amount * pair
    return k * pair + r


def groove_bar(
    style: str, family: str, bar: float, intensity: int, rng: np.random.Generator, variant: int
) -> list[tuple[float, int, float]]:
    """One bar of a groove; `variant` is fixed per song section so bars repeat like a drummer's."""
    hits: list[tuple[float, int, float]] = []
    add = lambda p, n, v: hits.append((float(p), n, float(np.clip(v, 0.05, 1.0))))
    beats = bar / 1.5 if family == "compound" else bar
    nb = int(round(beats))
    beat_len = 1.5 if family == "compound" else 1.0
    eighths = np.arange(0, bar - 1e-6, 0.5)
    sixteenths = np.arange(0, bar - 1e-6, 0.25)
    cym = RIDE if intensity >= 2 and variant % 2 else HH_CLOSED
    if style in ("rock", "pop", "punk", "folk", "halftime"):
        grid = sixteenths if (style == "pop" and variant % 3 == 2) else eighths
        step = 1.0 if (style == "folk" and intensity == 0) else None
        for p in np.arange(0, bar - 1e-6, step) if step else grid:
            on_beat = abs(p - round(p)) < 1e-6
            add(p, cym, 0.75 if on_beat else 0.5)
        snare_beats = [bar / 2] if style == "halftime" else [b for b in range(1, nb, 2)]
        for b in snare_beats:
            add(b, SNARE, 0.9)
        kick = {0: [0, 2], 1: [0, 2, 2.5], 2: [0, 1.5, 2], 3: [0, 0.5, 2, 2.5]}[variant % 4]
        if style == "punk":
            kick = list(np.arange(0, bar, 1.0))
        for p in kick:
            if p < bar:
                add(p, KICK, 0.9 if p == 0 else 0.75)
        if bar > 4:  # longer bars (rare): repeat the kick on beat 5
            add(4, KICK, 0.75)
    elif style == "funk":
        for p in sixteenths:
            add(p, HH_CLOSED, 0.7 if abs(p * 2 - round(p * 2)) < 1e-6 else 0.35)
        for b in range(1, nb, 2):
            add(b, SNARE, 0.95)
        pats = [[0, 0.75, 1.5, 2.5], [0, 0.5, 1.75, 2.25, 3.5], [0, 1.5, 2.75, 3.25], [0, 0.75, 2, 2.75]]
        for p in pats[variant % 4]:
            if p < bar:
                add(p, KICK, 0.85)
        for p in sixteenths:  # ghost notes
            if rng.random() < 0.12 * (1 + intensity):
                add(p, SNARE, 0.2)
        if variant % 2 and bar >= 4:
            add(bar - 0.5, HH_OPEN, 0.6)
    elif style == "disco":
        for b in range(nb):
            add(b, KICK, 0.95)
            add(b + 0.5, HH_OPEN, 0.7)
            add(b, HH_CLOSED, 0.5)
        for b in range(1, nb, 2):
            add(b, CLAP if variant % 2 else SNARE, 0.85)
        if intensity >= 2:
            for p in eighths:
                add(p + 0.25, SHAKER, 0.4)
    elif style == "hiphop":
        for p in eighths:
            add(swing_time(p, 0.58), HH_CLOSED, 0.6 if abs(p - round(p)) < 1e-6 else 0.45)
        for b in range(1, nb, 2):
            add(b, SNARE if variant % 2 == 0 else CLAP, 0.95)
        for p in [0, 1.75, 2.5] if variant % 2 == 0 else [0, 0.75, 2.25, 2.5]:
            if p < bar:
                add(p, KICK, 0.9)
    elif style in ("shuffle", "jazz"):
        sw = rng.uniform(0.62, 0.68)
        for b in range(nb):
            add(b, RIDE, 0.75)
            if style == "jazz" and b % 2 == 1:
                add(swing_time(b + 0.5, sw), RIDE, 0.55)
            if style == "shuffle":
                add(swing_time(b + 0.5, sw), RIDE if intensity > 1 else HH_CLOSED, 0.55)
        for b in range(1, nb, 2):
            add(b, HH_PEDAL if style == "jazz" else SNARE, 0.7 if style == "jazz" else 0.9)
        if style == "shuffle":
            add(0, KICK, 0.9)
            if bar >= 4:
                add(2, KICK, 0.8)
        else:
            for p in eighths:  # sparse comping on snare and kick
                if rng.random() < 0.1 + 0.05 * intensity:
                    add(swing_time(p, sw), SNARE if rng.random() < 0.6 else KICK, rng.uniform(0.3, 0.6))
            add(0, KICK, 0.35)
    elif style == "bossa":
        for p in eighths:
            add(p, HH_CLOSED, 0.5)
        clave = [0, 0.75, 1.5, 2.5, 3.0] if variant % 2 == 0 else [0, 1.0, 1.75, 2.5, 3.25]
        for p in clave:
            if p < bar:
                add(p, RIM, 0.7)
        for b in range(0, nb, 2):
            add(b, KICK, 0.8)
            add(b + 1.5, KICK, 0.6)
    elif style == "reggae":
        for p in eighths:
            add(swing_time(p, 0.6), HH_CLOSED, 0.55)
        for b in range(2, nb, 4) if nb >= 4 else [bar / 2]:  # one drop: kick and rim on 3
            add(b, KICK, 0.9)
            add(b, RIM if variant % 2 == 0 else SNARE, 0.85)
    elif style == "breakbeat":
        for p in eighths:
            add(p, HH_CLOSED, 0.55)
        for p in [0, 1.25, 2.5] + ([3.25] if variant % 2 else []):
            if p < bar:
                add(p, KICK, 0.9)
        for p in [1, 3] + ([2.75] if variant % 3 == 1 else []):
            if p < bar:
                add(p, SNARE, 0.95 if p in (1, 3) else 0.5)
    elif style == "latin":
        tumbao = [(0.5, CONGA_HI), (1.5, CONGA_HI), (2.0, CONGA_OPEN), (2.5, CONGA_OPEN), (3.5, CONGA_LOW)]
        for p, n in tumbao:
            if p < bar:
                add(p, n, 0.7)
        for p in sixteenths:
            add(p, SHAKER, 0.45 if abs(p * 2 - round(p * 2)) < 1e-6 else 0.3)
        for p in [0, 1.5, 3.0]:
            if p < bar:
                add(p, CLAVES, 0.6)
        if intensity >= 1:
            for b in range(0, nb, 2):
                add(b, KICK, 0.7)
    elif style in ("waltz", "jazzwaltz", "ballad3", "folk3"):
        add(0, KICK, 0.9)
        for b in range(1, nb):
            add(b, SNARE if style != "jazzwaltz" else HH_PEDAL, 0.6 if style == "waltz" else 0.5)
        if style == "ballad3":
            for p in eighths:
                add(p, HH_CLOSED, 0.5)
            add(nb - 1, SNARE, 0.8)
        elif style == "jazzwaltz":
            for b in range(nb):
                add(b, RIDE, 0.7)
            add(swing_time(1.5, 0.65), RIDE, 0.5)
        else:
            for b in range(nb):
                add(b, HH_CLOSED if style == "waltz" else TAMB, 0.5)
    else:  # compound families
        for bi in range(nb):
            b0 = bi * beat_len
            add(b0, KICK if bi % 2 == 0 or style == "jig" else SNARE, 0.9 if bi % 2 == 0 else 0.8)
            for k in range(3):
                inst = {"ballad68": HH_CLOSED, "jig": TAMB, "shuffle128": RIDE, "rock68": HH_CLOSED}[style]
                add(b0 + 0.5 * k, inst, 0.65 if k == 0 else 0.45)
            if style == "jig" and variant % 2:
                add(b0 + 1.0, TOM_FLOOR, 0.5)
            if style == "shuffle128":
                add(b0 + 1.0, KICK if bi % 2 else HH_PEDAL, 0.5)
    return [h for h in hits if h[0] < bar - 1e-9]  # a pattern longer than a short bar


def fill(bar: float, start: float, rng: np.random.Generator, family: str) -> list[tuple[float, int, float]]:
    """A tom/snare fill from `start` to the end of the bar."""
    step = 0.5 if family == "compound" else (0.25 if rng.random() < 0.6 else 0.5)
    toms = [SNARE, TOM_HIGH, TOM_HMID, TOM_MID, TOM_LMID, TOM_LOW, TOM_FLOOR]
    ps = np.arange(start, bar - 1e-6, step)
    out = []
    for i, p in enumerate(ps):
        idx = min(len(toms) - 1, int(i * len(toms) / max(1, len(ps))))
        out.append((float(p), toms[idx] if rng.random() < 0.8 else SNARE, 0.6 + 0.4 * i / max(1, len(ps))))
        if i == 0 or rng.random() < 0.3:
            out.append((float(p), KICK, 0.6))
    return out
