"""Helpers for the plugin host's tests: the Debian plugins they run, and the misbehaving test
plugin (tests/lv2/misbehave.c), built here into a real LV2 bundle and added to the catalogue."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

AMP = "http://lv2plug.in/plugins/eg-amp"  # lv2-examples
FILTER = "http://drobilla.net/plugins/mda/RezFilter"  # mda-lv2
REVERB = "http://drobilla.net/plugins/mda/Ambience"  # mda-lv2
DELAY = "http://gareus.org/oss/lv2/nodelay"  # x42-plugins: reports its delay as latency
UNHOSTABLE = "http://gareus.org/oss/lv2/fil4#stereo"  # needs an atom (MIDI/UI) port
MISBEHAVE = "urn:livedemix:test:misbehave"  # tests/lv2: mode 1 = NaN, mode 2 = too slow

TINY_MODEL = str(Path(__file__).parent / "data" / "models" / "tiny.json")
LV2_SOURCE = Path(__file__).parent / "lv2"


def require_plugins(*uris: str) -> None:
    """Fail (not skip) when a plugin the tests need is missing: CI installs them."""
    from livedemix import plugins

    if not plugins.available():
        pytest.fail("livedemix was built without the LV2 host: apt-get install liblilv-dev lv2-dev, then reinstall")
    from livedemix import _core

    missing = [u for u in uris if not _core.lv2_has(u)]
    if missing:
        pkgs = sorted({plugins.debian_package(u) or u for u in missing})
        pytest.fail(f"LV2 plugins {missing} are missing: apt-get install {' '.join(pkgs)} (scripts/bootstrap.sh does)")


def build_misbehave_bundle(dest: Path) -> Path:
    """Compile tests/lv2/misbehave.c into dest/misbehave.lv2 and load it into the catalogue."""
    from livedemix import plugins

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("a C compiler is needed to build the test plugin: apt-get install build-essential")
    bundle = dest / "misbehave.lv2"
    bundle.mkdir(parents=True, exist_ok=True)
    for ttl in (LV2_SOURCE / "misbehave.lv2").glob("*.ttl"):
        shutil.copy(ttl, bundle / ttl.name)
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(bundle / "misbehave.so"), str(LV2_SOURCE / "misbehave.c"), "-lm"],
        check=True,
    )
    plugins.load_bundle(bundle)
    return bundle


def stream(engine, x: np.ndarray, block: int, between=None) -> np.ndarray:
    """Run x (C, n) through the engine in blocks; ``between(i)`` runs before block i."""
    ys = []
    for i, s in enumerate(range(0, x.shape[1], block)):
        if between is not None:
            between(i)
        ys.append(engine.process(np.ascontiguousarray(x[:, s : s + block])))
    return np.concatenate(ys, axis=-1)


def rel_db(err: np.ndarray, ref: np.ndarray) -> float:
    e, r = np.sum(np.asarray(err, np.float64) ** 2), np.sum(np.asarray(ref, np.float64) ** 2)
    return float(10 * np.log10(max(e, 1e-300) / r))
