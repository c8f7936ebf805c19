"""`livedemix.LiveStream`, the Python API's live stream, through a real JACK server (dummy
driver), PortAudio and sounddevice, captured by a separate JACK client."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from live_support import DEMO, Recorder, jack_server, live_model  # noqa: F401

pytestmark = [pytest.mark.jack, pytest.mark.live]

SCRIPT = """
import json, sys
import livedemix
eng = livedemix.Engine(model=sys.argv[2], block_size=256)
with livedemix.LiveStream(eng, device="ldcap", file=sys.argv[1]) as stream:
    how = stream.wait(seconds=30)
    latency = stream.latency_samples
r = stream.report()
print(json.dumps({"how": how, "latency": latency, "xruns": r["xruns"], "stopped": r["stopped"]}))
"""


def test_live_stream_context_manager_plays_a_file_through_the_engine(jack_server, live_model, tmp_path):
    """Unity gains: the capture is the file delayed by the reported latency (the engine's
    transparency), and leaving the `with` block stops the stream cleanly."""
    audio, sr = sf.read(DEMO, dtype="float32", always_2d=True)
    song = tmp_path / "song.wav"
    sf.write(song, audio[: 3 * sr], sr)
    rec = Recorder(jack_server, "ldcap", seconds=20)
    try:
        p = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(song), str(live_model)], capture_output=True, text=True, timeout=120
        )
    finally:
        captured = rec.stop()
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["how"] == "end" and r["latency"] == 512
    ref = audio[: 3 * sr].T
    first = int(np.flatnonzero(np.abs(captured).max(axis=0) > 1e-4)[0])
    # the song starts within the latency after the first sample the engine put out
    errs = [np.abs(captured[:, first + k : first + k + 4096] - ref[:, :4096]).max() for k in range(-512, 513)]
    start = first - 512 + int(np.argmin(errs))
    got = captured[:, start : start + ref.shape[1]]
    assert got.shape == ref.shape, "the capture ended before the song"
    err_db = 20 * np.log10(np.sqrt(np.mean((got - ref) ** 2)) / np.sqrt(np.mean(ref**2)) + 1e-30)
    print(f"\nLiveStream: transparency error {err_db:.1f} dB, xruns {r['xruns']}")
    assert err_db < -90
