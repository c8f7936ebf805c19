"""`LiveStream`: an engine on a live audio stream, as a context manager.

    import livedemix
    eng = livedemix.Engine(preset="cue-vocals")
    with livedemix.LiveStream(eng, device="Scarlett", inputs=[1, 2]) as stream:
        eng.set_gain("vocals", +6.0, bus="cue")   # controls are safe from any thread
        stream.wait(seconds=60)                   # or do other work; Ctrl-C stops it
    print(stream.report()["xruns"])

With ``file=`` the stream plays a file through the engine instead of taking the device's input
(what `livedemix play` does). The engine runs in the audio callback (or in a resampling worker
when the device's rate is not the model's): see :mod:`livedemix.audio.stream`.
"""

from __future__ import annotations

import time
from pathlib import Path

from .audio import FileReader, StreamRunner, find_device


class LiveStream:
    """Runs ``engine`` on a PortAudio device (by index or name substring; default: the system
    default) from ``start()`` (or entering ``with``) to ``close()`` (or leaving it).

    ``inputs``: the input channels (1-based, one or two) that feed the engine in live mode;
    ``file``: play this file instead; ``block``: a fixed block size (16..8192), or 0 for the
    host's (no added buffering on JACK); ``routes``: {bus: [output channels]} (default: each
    bus's preset outputs)."""

    def __init__(
        self,
        engine,
        device: str | int | None = None,
        *,
        input_device: str | int | None = None,
        inputs: list[int] | tuple[int, ...] = (1, 2),
        file: str | Path | None = None,
        block: int = 0,
        routes: dict[str, list[int]] | None = None,
    ):
        self.engine = engine
        out_dev = find_device(device, "output")
        if file is not None:
            source = FileReader(file, engine.sample_rate)
            self._runner = StreamRunner(engine, output_device=out_dev, source=source, blocksize=block, routes=routes)
        else:
            in_dev = find_device(input_device if input_device is not None else device, "input")
            self._runner = StreamRunner(
                engine,
                output_device=out_dev,
                input_device=in_dev,
                input_channels=list(inputs),
                blocksize=block,
                routes=routes,
            )
        self._started = False

    # -- lifetime -------------------------------------------------------------------------
    def start(self) -> LiveStream:
        if not self._started:
            self._runner.start()
            self._started = True
        return self

    def close(self) -> None:
        if self._started:
            self._runner.close()
            self._started = False

    def __enter__(self) -> LiveStream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def active(self) -> bool:
        """True while the stream runs (False once a played file has ended)."""
        return self._started and self._runner.check()

    def wait(self, seconds: float | None = None) -> str:
        """Block until the file ends, ``seconds`` pass, or Ctrl-C; returns why it stopped
        ('end', 'timeout', 'interrupted'). Raises AudioDeviceError if the device is lost."""
        if seconds is None:
            return self._runner.wait()
        t_end = time.monotonic() + seconds
        try:
            while self._runner.check():
                if time.monotonic() >= t_end:
                    return "timeout"
                time.sleep(0.02)
        except KeyboardInterrupt:
            return "interrupted"
        return "end"

    # -- what it is doing -------------------------------------------------------------------
    @property
    def samplerate(self) -> int:
        return self._runner.samplerate

    @property
    def latency_samples(self) -> int:
        """Input to output, at the device's rate: the engine's latency plus any resampling and
        fixed-block buffering (the device's own buffers are in ``report()``)."""
        return self._runner.latency_samples

    @property
    def latency_ms(self) -> float:
        return self._runner.latency_ms

    def levels(self):
        """Peak level per bus and channel (decaying ~20 dB/s), as the terminal UI's meters."""
        return self._runner.bus_peaks.copy()

    def report(self) -> dict:
        """Counts (callbacks, xruns, underruns, late hops, separator errors), CPU share, latency."""
        return self._runner.report()


__all__ = ["LiveStream"]
