"""The fuzz suite in pytest: a short run in the default tier, the long one marked slow."""

from __future__ import annotations

import pytest

from tests.fuzz.core import Fuzzer


def _run(seconds: float, seed: int):
    fz = Fuzzer(seed=seed)
    try:
        counts = fz.run(seconds)
    finally:
        fz.close()
    print(counts.summary(seconds, seed))
    details = "\n".join(f"{w} in {t} #{i}: {d}" for t, i, w, d in counts.failures)
    assert counts.tracebacks == 0, details
    assert counts.escapes == 0, details
    assert counts.damaged == 0, details
    assert counts.nonfinite == 0, details
    return counts


def test_fuzz_short():
    counts = _run(12.0, seed=1)
    assert counts.tried > 50 and counts.clean_errors > 0 and counts.accepted > 0
    assert set(counts.by_target) == {"presets", "cards", "audio", "engine", "args"}


@pytest.mark.slow
def test_fuzz_long():
    _run(150.0, seed=2)
