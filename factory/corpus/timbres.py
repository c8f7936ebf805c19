"""Which sound library renders each stem of a song.

One soundfont for every song teaches a separator that library's timbres rather than
instruments in general. A *timbre pool* names several libraries; each stem of each song draws
one, from a generator seeded by the song alone, so a build stays byte-reproducible.

``single``   the one soundfont of ``--soundfont`` (FluidR3 by default): the corpus as it was.
``diverse``  General MIDI banks Debian ships (FluidR3, csound's sf_GMbank, the OPL3 FM bank) and,
             for drums, two multi-sampled acoustic kits (avldrums' Black Pearl, Red Zeppelin).
             TimGM6mb is left out on purpose: the unseen-library validation renders the test
             songs with it (``--soundfont TimGM6mb.sf2 --splits test``, docs/EVALUATION.md).
             MuseScore General is never used: a held-out evaluation renders with it.
``wide``     the diverse pool plus two more full General MIDI sets with their own GS drum kits:
             GeneralUser GS (shipped by Debian's ``minuet-data``) and A320U (``denemo-data``).
             The diverse pool stays as it was, so its builds reproduce.
``widest``   the wide pool, with half the drum stems played by one of Hydrogen's recorded or
             electronic kits (``hydrogen-drumkits``, ``hydrogen-data``; factory/corpus/hydrogen.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

SF2 = Path("/usr/share/sounds/sf2")
FLUID = SF2 / "FluidR3_GM.sf2"

# (file, Debian package, licence, weight). Weights favour the realistic banks.
DIVERSE_GM = (
    (FLUID, "fluid-soundfont-gm", "MIT", 0.45),
    (SF2 / "sf_GMbank.sf2", "csound-soundfont", "public domain", 0.40),
    (SF2 / "OPL-3_FM_128M.sf2", "opl3-soundfont", "CC-BY-SA-4.0", 0.15),
)
WIDE_GM = (
    (FLUID, "fluid-soundfont-gm", "MIT", 0.25),
    (SF2 / "sf_GMbank.sf2", "csound-soundfont", "public domain", 0.20),
    (SF2 / "OPL-3_FM_128M.sf2", "opl3-soundfont", "CC-BY-SA-4.0", 0.10),
    (
        Path("/usr/share/minuet/soundfonts/GeneralUser-v1.47.sf2"),
        "minuet-data",
        "GeneralUser GS License v2.0 (free use)",
        0.30,
    ),
    (SF2 / "A320U.sf2", "denemo-data", "GPL-2", 0.15),
)
# Single-preset kits (bank 0, program 0) with General MIDI note numbers.
DIVERSE_KITS = (
    (SF2 / "Black_Pearl_4_LV2.sf2", "avldrums.lv2-soundfont", "CC-BY-SA-3.0", 0.5),
    (SF2 / "Red_Zeppelin_4_LV2.sf2", "avldrums.lv2-soundfont", "CC-BY-SA-3.0", 0.5),
)
# Share of drum stems played by a sampled kit rather than a GM bank's drum set.
KIT_SHARE = 0.5
# The library of the unseen-library validation: never in a training pool.
UNSEEN = SF2 / "TimGM6mb.sf2"
# widest: shares of the drum stems played by an avldrums kit and by a Hydrogen kit.
WIDEST_KIT_SHARES = (0.2, 0.5)
POOLS = ("single", "diverse", "wide", "widest")
PACKAGES = "csound-soundfont opl3-soundfont avldrums.lv2-soundfont minuet-data denemo-data"


@dataclass(frozen=True)
class Choice:
    soundfont: str
    kit: bool  # a single-preset kit: the drum part plays on a melodic channel, program 0
    hydrogen: str = ""  # a Hydrogen kit folder: the drum part is played by factory.corpus.hydrogen


class Timbres:
    """Picks the library for one stem of one song (``pick``)."""

    def __init__(self, pool: str, single: str):
        if pool not in POOLS:
            raise ValueError(f"unknown timbre pool {pool!r}; use one of {', '.join(POOLS)}.")
        self.pool = pool
        self.single = single
        self.gm = WIDE_GM if pool in ("wide", "widest") else DIVERSE_GM
        self.hydrogen = ()
        if pool != "single":
            from .render import MissingTool

            missing = [str(p) for p, *_ in self.gm + DIVERSE_KITS if not p.is_file()]
            if missing:
                raise MissingTool(
                    f"the {pool} timbre pool needs {', '.join(missing)}: install the Debian packages "
                    f"`{PACKAGES}` (or build with --timbres single)."
                )
        if pool == "widest":
            from . import hydrogen as H

            self.hydrogen = H.available_kits()
            if not self.hydrogen:
                raise MissingTool(
                    f"the widest timbre pool needs Hydrogen's drum kits in {H.KIT_ROOT}: install the Debian "
                    f"packages `{H.PACKAGES}` (or build with --timbres wide)."
                )

    def describe(self) -> dict:
        """What corpus.json records (nothing new for the single pool, so old builds still match)."""
        if self.pool == "single":
            return {}
        return {
            "timbres": self.pool,
            "soundfonts": [p.name for p, *_ in self.gm],
            "drum_kits": [p.name for p, *_ in DIVERSE_KITS] + [f"hydrogen:{p.name}" for p in self.hydrogen],
        }

    def pick(self, song_seed: int, song_index: int, stem_index: int, is_drums: bool) -> Choice:
        if self.pool == "single":
            return Choice(self.single, False)
        rng = np.random.default_rng(np.random.SeedSequence([song_seed, song_index, 0x7B, stem_index]))
        if is_drums and self.hydrogen:
            u, (kits, hydrogen) = rng.random(), WIDEST_KIT_SHARES
            if u < hydrogen:
                return Choice(str(FLUID), False, str(self.hydrogen[int(rng.integers(len(self.hydrogen)))]))
            if u < hydrogen + kits:
                return Choice(str(_draw(DIVERSE_KITS, rng)), True)
            return Choice(str(_draw(self.gm, rng)), False)
        if is_drums and rng.random() < KIT_SHARE:
            return Choice(str(_draw(DIVERSE_KITS, rng)), True)
        return Choice(str(_draw(self.gm, rng)), False)


def _draw(rows, rng) -> Path:
    w = np.array([r[3] for r in rows])
    return rows[int(rng.choice(len(rows), p=w / w.sum()))][0]


def as_kit_part(part):
    """A drum part moved to a melodic channel so a bank-0 kit soundfont plays it."""
    return replace(part, channel=0, program=0)
