"""Sample-rate conversion for the live stream (soxr): quality and the hold-back it adds."""

from __future__ import annotations

import numpy as np

LIVE_RESAMPLE_QUALITY = "LQ"  # 5.7 ms of hold-back for 44.1<->48 kHz; HQ would cost 26 ms
READ_AHEAD = 1 << 16  # samples the file reader keeps ahead (1.5 s at 44.1 kHz)
MAX_HOST_BLOCK = 16384  # resampling mode: the largest host buffer the callback takes
PREFILL_SLACK_BLOCKS = 2  # resampling mode: blocks of slack for the worker (measured on a busy 2-core machine)


def _holdback(rate_in: int, rate_out: int, quality: str) -> float:
    """Output samples a soxr stream holds back (its delay at the output rate)."""
    import soxr

    rs = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=quality)
    rs.resample_chunk(np.zeros((4096, 1), np.float32))
    return float(rs.delay())
