"""Live audio: the engine on a PortAudio stream (sounddevice), for `livedemix play` and `live`.

Two ways of running, picked by comparing the device's sample rate with the model's:

- **direct** (rates equal, the usual case): the engine runs inside the audio callback. `play`
  reads the file ahead in a worker thread into a lock-free :class:`~livedemix.dsp.AudioRingBuffer`
  and the callback pops one block from it; `live` feeds the callback's input channels. The
  reported latency is the engine's, exactly; a fixed ``--block`` adds that many samples of
  PortAudio buffering (its host buffer is adapted to the block size).
- **resampling** (rates differ): the callback only moves audio between the device and two
  rings; a worker thread resamples to the model's rate (soxr), runs the engine and resamples
  back. The output ring starts with ``prefill`` samples of silence that cover one block of
  hand-off, the resamplers' hold-back and one block of slack, so the delay stays constant:
  latency = prefill + the engine's latency at the device rate.

The audio path (the callback, or the worker in resampling mode) allocates no arrays, takes no
locks, logs nothing and does no I/O: blocks are views of buffers allocated up front, controls
arrive through a ``collections.deque`` (append/popleft are atomic in CPython) and are applied
at the next block boundary, and every event (PortAudio under/overflows, late hops, read-ahead
underruns) is only counted; a normal thread reports the counts.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from .. import dsp
from .devices import WATCHDOG_SECONDS, AudioDeviceError, _sd
from .reader import FileReader
from .resample import LIVE_RESAMPLE_QUALITY, MAX_HOST_BLOCK, PREFILL_SLACK_BLOCKS, _holdback


@dataclass
class StreamStats:
    callbacks: int = 0
    frames: int = 0  # device frames through the callback
    xruns: int = 0  # callbacks with a PortAudio under/overflow flag
    input_overflows: int = 0
    output_underflows: int = 0
    underruns: int = 0  # file read-ahead (play) or resampling worker (resampling mode) not ready in time
    controls_applied: int = 0
    audio_seconds: float = 0.0  # wall time spent in the audio path (includes time it was preempted)
    audio_cpu_seconds: float = 0.0  # CPU time the audio path's thread used (what it costs)
    max_block_ms: float = 0.0


def power_scale(cfg) -> float:
    """Mean |X_k|² over a frame's bins × this = twice the mean square of the windowed signal,
    by Parseval (one-sided spectrum): a full-scale sine reads 1, i.e. 0 dBFS."""
    w = np.asarray(cfg.windows()[0], np.float64)
    return float(2.0 * cfg.bins / (cfg.n_fft / 2 * np.sum(w * w)))


class ControlQueue:
    """Control → audio path: ``post(fn, *args)`` from any thread; the audio path calls
    :meth:`drain` at a block boundary. ``deque.append``/``popleft`` are atomic in CPython, so
    neither side waits."""

    def __init__(self, maxlen: int = 4096):
        self._q: deque = deque(maxlen=maxlen)

    def post(self, fn, *args) -> None:
        self._q.append((fn, args))

    def drain(self, limit: int = 64) -> int:
        n = 0
        q = self._q
        while q and n < limit:
            fn, args = q.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 — a bad control must not stop the audio
                pass
            n += 1
        return n

    def __len__(self) -> int:
        return len(self._q)


class StreamRunner:
    """One engine on one PortAudio stream.

    ``source``: a :class:`FileReader` (play) or None (live: ``input_channels`` of the input
    device feed the engine). Every bus goes to its preset output channels (1-based); a bus
    routed to one channel gets the mono sum. ``blocksize=0`` lets the host choose (no added
    buffering on JACK). Controls: :attr:`controls` (a :class:`ControlQueue`).
    """

    def __init__(
        self,
        engine,
        *,
        output_device: dict,
        input_device: dict | None = None,
        input_channels: list[int] | None = None,
        source: FileReader | None = None,
        blocksize: int = 0,
        routes: dict[str, list[int]] | None = None,
        max_block: int = 4096,
    ):
        self.engine = engine
        self.source = source
        self.live = source is None
        self.output_device = output_device
        self.input_device = input_device if self.live else None
        self.input_channels = input_channels or [1, 2]
        self.blocksize = int(blocksize)
        if self.blocksize < 0 or self.blocksize > 8192:
            raise AudioDeviceError(f"--block {blocksize} is out of range: use 0 (the host's size) or 16..8192 samples")
        self.controls = ControlQueue()
        self.stats = StreamStats()
        self.model_rate = engine.sample_rate
        self.C = engine.channels
        self.B = len(engine.buses)
        self.routes = routes if routes is not None else {b: engine.bus_outputs(b) for b in engine.buses}
        self._check_channels()
        self.samplerate = self._pick_rate()
        self.resampling = self.samplerate != self.model_rate
        # --- buffers (allocated once) ---
        self.max_block = max(int(max_block), self.blocksize, 256)
        if engine.max_block < self.max_block:
            engine.prepare(self.model_rate, self.max_block)
        C, B = self.C, self.B
        self._in_flat = np.zeros(C * self.max_block, np.float32)
        self._y_flat = np.zeros(self.B * C * self.max_block, np.float32)  # the engine writes each block here
        self._abs = np.zeros(C * self.max_block, np.float32)
        self._peak_tmp = np.zeros(C, np.float32)
        #: per bus and channel: peak level with a decay of ~20 dB/s (read by the UI)
        self.bus_peaks = np.zeros((B, C), np.float32)
        J = len(engine.stems)
        #: per stem, before the mixer: mean power of the latest STFT frame, same decay (read by the UI)
        self.stem_power = np.zeros(J, np.float32)
        self._stem_tmp = np.zeros(J, np.float32)
        #: stem_power × this: a full-scale sine reads 1 (0 dBFS)
        self.stem_power_scale = power_scale(engine.stft_config)
        self._route_list = [
            (engine.buses.index(b), c, o - 1)
            for b, outs in self.routes.items()
            for c, o in ([(0, outs[0]), (1, outs[0])] if len(outs) == 1 else [(i % C, o) for i, o in enumerate(outs)])
        ]
        self._mono_outs = [outs[0] - 1 for outs in self.routes.values() if len(outs) == 1]
        self._in_map = [ch - 1 for ch in self.input_channels]
        if len(self._in_map) == 1:
            self._in_map = self._in_map * C
        self._out_pos = 0  # device frames output so far
        self._end_frame = None  # play: the last frame to output, once the file is read
        self.finished = threading.Event()
        self.stop_reason = None
        self._stream = None
        self._callback_stop = _sd().CallbackStop
        # PortAudio's JACK host API adapts its variable host buffer to a fixed block size with
        # one block of buffering; other host APIs report their buffering in device_latency.
        self._adapt = self.blocksize if self.output_device["hostapi"].startswith("JACK") else 0
        self._worker = None
        self._running = False
        self.prefill = 0
        if self.resampling:
            self._setup_resampling()

    # ---- set-up ----------------------------------------------------------------------------
    @property
    def out_channels(self) -> int:
        return max(max(o) for o in self.routes.values())

    def _check_channels(self) -> None:
        dev = self.output_device
        for bus, outs in self.routes.items():
            if max(outs) > dev["outputs"]:
                raise AudioDeviceError(
                    f"bus '{bus}' goes to output {'-'.join(map(str, outs))} but device {dev['index']} '{dev['name']}' "
                    f"has {dev['outputs']} outputs: pick a device with more outputs (`livedemix devices`) or change the preset's outputs"
                )
        if self.live:
            din = self.input_device
            if max(self.input_channels) > din["inputs"]:
                raise AudioDeviceError(
                    f"--in {','.join(map(str, self.input_channels))} asks for input {max(self.input_channels)} but device "
                    f"{din['index']} '{din['name']}' has {din['inputs']} inputs: use channels 1..{din['inputs']}"
                )

    def _pick_rate(self) -> int:
        """The model's rate if the device takes it, else the device's default rate."""
        sd = _sd()
        kw = dict(device=self.output_device["index"], channels=self.out_channels, dtype="float32")
        try:
            sd.check_output_settings(samplerate=self.model_rate, **kw)
            if self.live:
                sd.check_input_settings(
                    device=self.input_device["index"],
                    channels=max(self.input_channels),
                    dtype="float32",
                    samplerate=self.model_rate,
                )
            return self.model_rate
        except sd.PortAudioError:
            rate = int(self.output_device["default_samplerate"])
            try:
                sd.check_output_settings(samplerate=rate, **kw)
            except sd.PortAudioError as e:
                raise AudioDeviceError(
                    f"device '{self.output_device['name']}' takes neither {self.model_rate} Hz nor "
                    f"{rate} Hz ({e}): pick another device"
                ) from None
            return rate

    def _setup_resampling(self) -> None:
        import soxr

        C, B = self.C, self.B
        self._rs_q = LIVE_RESAMPLE_QUALITY
        self._out_rs = soxr.ResampleStream(self.model_rate, self.samplerate, B * C, dtype="float32", quality=self._rs_q)
        hold = _holdback(self.model_rate, self.samplerate, self._rs_q)
        if self.live:
            self._in_rs = soxr.ResampleStream(self.samplerate, self.model_rate, C, dtype="float32", quality=self._rs_q)
            hold += _holdback(self.samplerate, self.model_rate, self._rs_q) * self.samplerate / self.model_rate
        self._hold = int(math.ceil(hold))
        cap = 1 << 17  # > 8 blocks of the largest host buffer plus the prefill
        self._in_ring = dsp.AudioRingBuffer(C, cap) if self.live else None
        self._out_ring = dsp.AudioRingBuffer(B * C, cap)
        self._dev_in = np.zeros(C * MAX_HOST_BLOCK, np.float32)
        self._dev_out = np.zeros(B * C * MAX_HOST_BLOCK, np.float32)
        self._host_block = 0  # frames of the first callback: the host's block size
        self._primed = False  # the worker has pushed the prefill
        self._debt = 0  # output samples owed (silence played instead): dropped, so the delay stays the prefill

    def _prime(self) -> None:
        """Worker: once the host's block size is known, push the prefill: one block of hand-off
        to the worker, the resamplers' hold-back, and slack for a worker woken late."""
        n = self._host_block
        self.prefill = int((1 + PREFILL_SLACK_BLOCKS) * n + self._hold + 32)
        self._out_ring.push(np.zeros((self.B * self.C, self.prefill), np.float32))
        self._primed = True

    @property
    def latency_samples(self) -> int:
        """Input (or file) → output delay in device samples, not counting the device's own buffers."""
        eng = self.engine.latency_samples
        if self.resampling:
            return int(round(self.prefill + eng * self.samplerate / self.model_rate))
        return eng + self._adapt

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.samplerate

    # ---- the audio path ----------------------------------------------------------------------
    def _callback(self, indata, outdata, frames, time_info, status):
        t0 = time.perf_counter()
        c0 = time.thread_time()
        st = self.stats
        st.callbacks += 1
        if status:
            st.xruns += 1
            if status.input_overflow:
                st.input_overflows += 1
            if status.output_underflow:
                st.output_underflows += 1
        if self.resampling:
            self._callback_ring(indata, outdata, frames)
        else:
            st.controls_applied += self.controls.drain()
            pos = 0
            while pos < frames:
                n = min(frames - pos, self.max_block)
                blk = self._in_flat[: self.C * n].reshape(self.C, n)
                self._fill_input(blk, indata, pos, n)
                y = self.engine.process(blk, out=self._y_flat[: self.B * self.C * n].reshape(self.B, self.C, n))
                self._route(y, outdata, pos, n)
                self._meter(y, n)
                pos += n
            self._meter_stems(frames)
        st.frames += frames
        self._out_pos += frames
        dt = time.perf_counter() - t0
        st.audio_seconds += dt
        st.audio_cpu_seconds += time.thread_time() - c0
        if dt * 1000.0 > st.max_block_ms:
            st.max_block_ms = dt * 1000.0
        if self._end_frame is None and self.source is not None and self.source.eof:
            self._end_frame = self.source.pushed * self.samplerate // self.model_rate + self.latency_samples
        if self._end_frame is not None and self._out_pos >= self._end_frame:
            self.stop_reason = self.stop_reason or "end"
            raise self._callback_stop

    def _fill_input(self, blk, indata, pos, n):
        if self.source is None:
            for c in range(self.C):
                blk[c] = indata[pos : pos + n, self._in_map[c]]
            return
        k = self.source.ring.pop_into(blk)
        if k < n:
            blk[:, k:] = 0.0
            if not self.source.eof:
                self.stats.underruns += 1

    def _route(self, y, outdata, pos, n):
        out = outdata[pos : pos + n]
        out.fill(0.0)
        for b, c, o in self._route_list:
            out[:, o] += y[b, c]
        for o in self._mono_outs:
            out[:, o] *= 0.5

    def _meter(self, y, n):
        """Decaying per-bus peaks, in place (~20 dB/s)."""
        a = self._abs[: self.C * n].reshape(self.C, n)
        decay = 0.1 ** (n / self.samplerate)
        for b in range(self.B):
            np.abs(y[b], out=a)
            a.max(axis=1, out=self._peak_tmp)
            p = self.bus_peaks[b]
            np.multiply(p, decay, out=p)
            np.maximum(p, self._peak_tmp, out=p)

    def _meter_stems(self, n):
        self.engine.stem_power_into(self._stem_tmp)
        p = self.stem_power
        np.multiply(p, 0.01 ** (n / self.samplerate), out=p)  # -20 dB/s in power terms
        np.maximum(p, self._stem_tmp, out=p)

    def _callback_ring(self, indata, outdata, frames):
        """Resampling mode: move audio between the device and the rings; the worker does the rest."""
        C, BC = self.C, self.B * self.C
        if frames > MAX_HOST_BLOCK:  # buffers are sized for this; never seen from a real host
            outdata.fill(0.0)
            self.stats.underruns += 1
            return
        if self.live:
            x = self._dev_in[: C * frames].reshape(C, frames)
            for c in range(C):
                x[c] = indata[:, self._in_map[c]]
            if self._in_ring.push(x) < frames:
                self.stats.underruns += 1
        y = self._dev_out[: BC * frames].reshape(BC, frames)
        if not self._primed:  # the worker starts when it knows the host's block size
            if not self._host_block:
                self._host_block = frames
            y.fill(0.0)
            self._debt += frames
        else:
            if self._debt:  # drop what was owed, so that output n is always ring item n
                drop = min(self._debt, self._out_ring.available_read, frames)
                if drop:
                    self._out_ring.pop_into(y[:, :drop])
                    self._debt -= drop
            k = self._out_ring.pop_into(y)
            if k < frames:
                y[:, k:] = 0.0
                self._debt += frames - k
                if not (self.source is not None and self.source.eof):
                    self.stats.underruns += 1
        out = outdata
        out.fill(0.0)
        for b, c, o in self._route_list:
            out[:, o] += y[b * C + c]
        for o in self._mono_outs:
            out[:, o] *= 0.5
        self._meter(y.reshape(self.B, C, frames), frames)

    def _worker_loop(self) -> None:
        """Resampling mode: device rate → model rate → engine → device rate, kept one prefill ahead."""
        C, _B = self.C, self.B
        mblk = np.zeros((C, self.max_block), np.float32)
        while self._running and not self._host_block:
            time.sleep(0.001)
        if self._running:
            self._prime()
        chunk = self._host_block
        while self._running:
            did = False
            if self.live:
                n = min(self._in_ring.available_read, 4096)
                if n:
                    x = np.zeros((C, n), np.float32)
                    self._in_ring.pop_into(x)
                    xm = self._in_rs.resample_chunk(np.ascontiguousarray(x.T)).T
                    self._run_engine(np.ascontiguousarray(xm))
                    did = True
            else:
                room = self.prefill - self._out_ring.available_read
                if room > 0:
                    n_model = max(1, int(room * self.model_rate / self.samplerate))
                    n_model = min(n_model, self.max_block, chunk * 2)
                    k = self.source.ring.pop_into(mblk[:, :n_model]) if n_model else 0
                    if k:
                        self._run_engine(np.ascontiguousarray(mblk[:, :k]))
                        did = True
                    elif self.source.eof and not getattr(self, "_flushed", False):
                        self._flushed = True
                        tail = np.zeros((C, self.engine.latency_samples + chunk), np.float32)
                        self._run_engine(tail, last=True)
                        did = True
            if not did:
                time.sleep(0.0005)

    def _run_engine(self, x: np.ndarray, last: bool = False) -> None:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        self.stats.controls_applied += self.controls.drain()
        C, B = self.C, self.B
        n = x.shape[1]
        out = np.zeros((B * C, n), np.float32)
        for s in range(0, n, self.max_block):
            m = min(self.max_block, n - s)
            y = self.engine.process(
                np.ascontiguousarray(x[:, s : s + m]), out=self._y_flat[: B * C * m].reshape(B, C, m)
            )
            out[:, s : s + m] = y.reshape(B * C, m)
            self._meter_stems(int(m * self.samplerate / self.model_rate))
        yd = self._out_rs.resample_chunk(np.ascontiguousarray(out.T), last=last).T
        yd = np.ascontiguousarray(yd)
        done = 0
        while done < yd.shape[1] and self._running:
            done += self._out_ring.push(yd[:, done:])
            if done < yd.shape[1]:
                time.sleep(0.001)
        self.stats.audio_seconds += time.perf_counter() - t0
        self.stats.audio_cpu_seconds += time.thread_time() - c0

    # ---- control ---------------------------------------------------------------------------
    def warm_up(self, blocks: int = 40) -> None:
        """Run the engine on silence (first-call costs out of the way), then reset it."""
        z = np.zeros((self.C, min(256, self.max_block)), np.float32)
        for _ in range(blocks):
            self.engine.process(z)
        self.engine.reset()

    def start(self) -> None:
        sd = _sd()
        self.warm_up()
        if self.source is not None:
            self.source.start()
            self.source.wait_ready(min(self.source.ring.capacity // 2, 16384))
            if self.source.error:
                raise self.source.error
        self._running = True
        if self.resampling:
            self._worker = threading.Thread(target=self._worker_loop, name="livedemix-dsp", daemon=True)
            self._worker.start()
        common = dict(
            samplerate=self.samplerate,
            blocksize=self.blocksize,
            dtype="float32",
            latency="low" if self.live else "high",
            finished_callback=self.finished.set,
        )
        try:
            if self.live:
                self._stream = sd.Stream(
                    device=(self.input_device["index"], self.output_device["index"]),
                    channels=(max(self.input_channels), self.out_channels),
                    callback=self._callback,
                    **common,
                )
            else:
                self._stream = sd.OutputStream(
                    device=self.output_device["index"],
                    channels=self.out_channels,
                    callback=lambda o, f, t, s: self._callback(None, o, f, t, s),
                    **common,
                )
            self._stream.start()
        except sd.PortAudioError as e:
            self._running = False
            raise AudioDeviceError(
                f"the audio stream on '{self.output_device['name']}' can't be started ({e}): "
                f"check the device with `livedemix devices`"
            ) from None
        self._t_start = time.monotonic()
        self._last_cb, self._last_cb_t = -1, self._t_start
        if self.resampling:  # the latency is known once the worker has primed the output
            t_end = time.monotonic() + 5.0
            while not self._primed and time.monotonic() < t_end:
                time.sleep(0.005)

    @property
    def device_latency(self) -> tuple[float, float]:
        """PortAudio's reported (input, output) latency in seconds: the device's own buffers."""
        if self._stream is None:
            return (0.0, 0.0)
        lat = self._stream.latency
        return (lat[0], lat[1]) if isinstance(lat, tuple) else (0.0, lat)

    def check(self) -> bool:
        """True while the stream runs, False once it has ended; raises AudioDeviceError when
        the device stopped calling back (gone) or the file reader failed."""
        if self.finished.is_set():
            return False
        if self.source is not None and self.source.error:
            raise self.source.error
        now = time.monotonic()
        if self.stats.callbacks != self._last_cb:
            self._last_cb, self._last_cb_t = self.stats.callbacks, now
        elif now - self._last_cb_t > WATCHDOG_SECONDS:
            self.stop_reason = "device lost"
            raise AudioDeviceError(
                f"the audio device '{self.output_device['name']}' stopped delivering audio "
                f"({WATCHDOG_SECONDS:.0f} s without a callback; a JACK server that quit or an interface that was "
                f"unplugged): check it with `livedemix devices` and start again"
            )
        return True

    def wait(self, poll: float = 0.05) -> str:
        """Run until the file ends or Ctrl-C; raise AudioDeviceError when the device is gone."""
        try:
            while self.check():
                time.sleep(poll)
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
        return self.stop_reason or "end"

    def close(self) -> None:
        """Stop the stream and the threads; never hangs on a device that is gone."""
        self._running = False
        if self.source is not None:
            self.source.stop()
        s, self._stream = self._stream, None
        if s is not None:
            t = threading.Thread(target=_close_stream, args=(s, self.stop_reason == "device lost"), daemon=True)
            t.start()
            t.join(3.0)
        if self._worker is not None:
            self._worker.join(1.0)

    def report(self) -> dict:
        st = asdict(self.stats)
        wall = max(1e-9, time.monotonic() - getattr(self, "_t_start", time.monotonic()))
        es = self.engine.stats
        return {
            "device": self.output_device["name"],
            "input_device": self.input_device["name"] if self.input_device else None,
            "samplerate": self.samplerate,
            "model_rate": self.model_rate,
            "mode": "resampling" if self.resampling else "direct",
            "blocksize": self.blocksize,
            "latency_samples": self.latency_samples,
            "latency_ms": round(self.latency_ms, 2),
            "engine_latency_samples": self.engine.latency_samples,
            "prefill_samples": self.prefill,
            "device_latency_ms": [round(1000 * v, 2) for v in self.device_latency],
            **st,
            "late_hops": es.late_hops,
            "separator_errors": es.separator_errors,
            "bypass_frames": es.bypass_frames,
            "seconds": round(wall, 2),
            # cpu_share: CPU the audio path used; busy_share: wall time inside it, which also
            # counts the time its thread was preempted or the machine stalled.
            "cpu_share": round(self.stats.audio_cpu_seconds / wall, 4),
            "busy_share": round(self.stats.audio_seconds / wall, 4),
            "stopped": self.stop_reason or "end",
        }


def _close_stream(stream, lost: bool) -> None:
    try:
        if lost:
            stream.abort(ignore_errors=True)
        else:
            stream.stop(ignore_errors=True)
        stream.close(ignore_errors=True)
    except Exception:  # noqa: BLE001 — the device may be gone
        pass
