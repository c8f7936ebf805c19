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

import ctypes
import math
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import dsp

JACK_CLIENT_NAME = "livedemix"
WATCHDOG_SECONDS = 2.0  # no callback for this long after the start: the device is gone
LIVE_RESAMPLE_QUALITY = "LQ"  # 5.7 ms of hold-back for 44.1<->48 kHz; HQ would cost 26 ms
READ_AHEAD = 1 << 16  # samples the file reader keeps ahead (1.5 s at 44.1 kHz)
MAX_HOST_BLOCK = 16384  # resampling mode: the largest host buffer the callback takes
PREFILL_SLACK_BLOCKS = 2  # resampling mode: blocks of slack for the worker (measured on a busy 2-core machine)


class AudioDeviceError(ValueError):
    """A device or channel that can't be used; the message lists what exists."""


# ---- devices -------------------------------------------------------------------------------

_pa_ready = False
_jack_name = ctypes.create_string_buffer(JACK_CLIENT_NAME.encode())  # PortAudio keeps the pointer


class quiet_stderr:
    """Silence C libraries that print to file descriptor 2 (libjack probing for a server, ALSA
    looking for its sequencer) while a device list is taken; our own errors say what matters."""

    def __enter__(self):
        import os

        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)
        return False


def _sd():
    """sounddevice, with PortAudio (re)initialised so its JACK client is called ``livedemix``
    and clients started after the import are listed."""
    global _pa_ready
    try:
        with quiet_stderr():
            import sounddevice as sd
    except OSError as e:  # PortAudio missing
        raise AudioDeviceError(f"PortAudio can't be loaded ({e}): install the Debian package libportaudio2") from None
    if not _pa_ready:
        with quiet_stderr():
            while sd._initialized > 0:
                sd._terminate()
            try:
                ctypes.CDLL(sd._libname).PaJack_SetClientName(_jack_name)
            except (OSError, AttributeError):  # a PortAudio built without JACK
                pass
            sd._initialize()
        _pa_ready = True
    return sd


def rescan_devices() -> None:
    """Forget PortAudio's device list (it is taken once); the next query scans again."""
    global _pa_ready
    _pa_ready = False


def release_portaudio() -> None:
    """Terminate PortAudio now (no stream may be open): its JACK client leaves the server, so
    the server may go away without PortAudio failing at exit."""
    global _pa_ready
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        with quiet_stderr():
            while sd._initialized > 0:
                sd._terminate()
    _pa_ready = False


def list_devices() -> list[dict]:
    """Every device: index, name, host API, input/output channels, default rate, defaults."""
    sd = _sd()
    apis = sd.query_hostapis()
    out = []
    for i, d in enumerate(sd.query_devices()):
        api = apis[d["hostapi"]]
        out.append({
            "index": i, "name": d["name"], "hostapi": api["name"],
            "inputs": d["max_input_channels"], "outputs": d["max_output_channels"],
            "default_samplerate": d["default_samplerate"],
            "low_output_latency": d["default_low_output_latency"],
            "default_input": api["default_input_device"] == i, "default_output": api["default_output_device"] == i,
        })
    return out


def host_apis() -> list[str]:
    return [a["name"] for a in _sd().query_hostapis()]


def _short_api(name: str) -> str:
    return "JACK" if name.startswith("JACK") else name


def _describe_all(devs: list[dict]) -> str:
    if not devs:
        return ("there are no audio devices (host APIs: " + ", ".join(_short_api(a) for a in host_apis()) +
                "): start a JACK server or connect an audio interface")
    return "the devices are " + "; ".join(
        f"{d['index']} '{d['name']}' ({_short_api(d['hostapi'])}, {d['inputs']} in/{d['outputs']} out)" for d in devs)


def format_devices(devs: list[dict]) -> str:
    if not devs:
        return "no audio devices; host APIs: " + ", ".join(host_apis())
    lines = [f"{'#':>3}  {'name':<32} {'host API':<12} {'in':>3} {'out':>3} {'rate':>7}"]
    for d in devs:
        mark = ("<" if d["default_input"] else " ") + (">" if d["default_output"] else " ")
        lines.append(f"{d['index']:>3}{mark}{d['name'][:32]:<32} {_short_api(d['hostapi'])[:12]:<12} "
                     f"{d['inputs']:>3} {d['outputs']:>3} {d['default_samplerate']:>7.0f}")
    lines.append("host APIs: " + ", ".join(host_apis()) + "   (< default input, > default output)")
    return "\n".join(lines)


def find_device(spec: str | int | None, kind: str) -> dict:
    """A device for ``kind`` ('input' or 'output'): by index, by name substring
    (case-insensitive; an exact name wins), or the default when ``spec`` is None."""
    devs = list_devices()
    key = "inputs" if kind == "input" else "outputs"
    usable = [d for d in devs if d[key] > 0]
    if spec is None:
        for d in usable:
            if d[f"default_{kind}"]:
                return d
        if usable:
            return usable[0]
        raise AudioDeviceError(f"there is no {kind} device: {_describe_all(devs)}")
    s = str(spec).strip()
    if s.isdigit():
        i = int(s)
        if i >= len(devs):
            raise AudioDeviceError(f"there is no device {i}: {_describe_all(devs)}")
        if devs[i][key] == 0:
            raise AudioDeviceError(f"device {i} '{devs[i]['name']}' has no {kind}s: {_describe_all(devs)}")
        return devs[i]
    matches = [d for d in usable if s.lower() in d["name"].lower()]
    exact = [d for d in matches if d["name"].lower() == s.lower()]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise AudioDeviceError(f"no {kind} device matches '{s}': {_describe_all(devs)}")
    names = ", ".join(f"{d['index']} '{d['name']}'" for d in matches)
    raise AudioDeviceError(f"'{s}' matches several {kind} devices ({names}): give the device's index instead")


def parse_channels(text: str | None, what: str = "--in") -> list[int] | None:
    """'1,2' or '3-4' or '1' → 1-based channel numbers."""
    if text is None:
        return None
    chans: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                chans += list(range(a, b + 1))
            else:
                chans.append(int(part))
    except ValueError:
        raise AudioDeviceError(f"{what} {text!r} is not a channel list: write e.g. {what} 1,2 or {what} 3-4") from None
    if not chans or len(chans) > 2 or min(chans) < 1:
        raise AudioDeviceError(f"{what} {text!r} must name one or two channels counted from 1: write e.g. {what} 1,2 or {what} 1")
    return chans


# ---- the stream runner ----------------------------------------------------------------------

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


class FileReader(threading.Thread):
    """Reads a file ahead into a ring at the model's rate (resampling with soxr when the file's
    rate differs), as stereo (mono is doubled, channels past two are dropped)."""

    def __init__(self, path: str | Path, model_rate: int, capacity: int = READ_AHEAD):
        super().__init__(name="livedemix-reader", daemon=True)
        from .audio_files import open_input

        self.file = open_input(path)
        self.path = Path(path)
        self.file_rate = self.file.samplerate
        self.file_channels = self.file.channels
        self.model_rate = model_rate
        self.ring = dsp.AudioRingBuffer(2, capacity)
        self.pushed = 0  # model-rate samples in the ring so far
        self.eof = False
        self.error: Exception | None = None
        self._halt = threading.Event()
        self.seconds = self.file.frames / self.file_rate
        self._rs = None
        if self.file_rate != model_rate:
            import soxr

            self._rs = soxr.ResampleStream(self.file_rate, model_rate, 2, dtype="float32", quality="VHQ")

    def stop(self) -> None:
        self._halt.set()

    def _push_all(self, x: np.ndarray) -> bool:
        x = np.ascontiguousarray(x, np.float32)
        done = 0
        while done < x.shape[1]:
            if self._halt.is_set():
                return False
            k = self.ring.push(x[:, done:])
            done += k
            if done < x.shape[1]:
                time.sleep(0.005)
        self.pushed += x.shape[1]
        return True

    def run(self) -> None:
        from .audio_files import read_blocks

        try:
            for blk in read_blocks(self.file, 4096):
                if blk.shape[0] == 1:
                    blk = np.repeat(blk, 2, axis=0)
                elif blk.shape[0] > 2:
                    blk = blk[:2]
                if self._rs is not None:
                    blk = self._rs.resample_chunk(np.ascontiguousarray(blk.T)).T
                if not self._push_all(blk):
                    return
            if self._rs is not None:
                if not self._push_all(self._rs.resample_chunk(np.zeros((0, 2), np.float32), last=True).T):
                    return
        except Exception as e:  # noqa: BLE001 — reported by the main thread
            self.error = e
        finally:
            self.file.close()
            self.eof = True

    def wait_ready(self, samples: int, timeout: float = 10.0) -> None:
        t_end = time.monotonic() + timeout
        while self.ring.available_read < samples and not self.eof and time.monotonic() < t_end:
            time.sleep(0.002)


class StreamRunner:
    """One engine on one PortAudio stream.

    ``source``: a :class:`FileReader` (play) or None (live: ``input_channels`` of the input
    device feed the engine). Every bus goes to its preset output channels (1-based); a bus
    routed to one channel gets the mono sum. ``blocksize=0`` lets the host choose (no added
    buffering on JACK). Controls: :attr:`controls` (a :class:`ControlQueue`).
    """

    def __init__(self, engine, *, output_device: dict, input_device: dict | None = None,
                 input_channels: list[int] | None = None, source: FileReader | None = None,
                 blocksize: int = 0, routes: dict[str, list[int]] | None = None, max_block: int = 4096):
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
        self._route_list = [(engine.buses.index(b), c, o - 1) for b, outs in self.routes.items()
                            for c, o in ([(0, outs[0]), (1, outs[0])] if len(outs) == 1 else
                                         [(i % C, o) for i, o in enumerate(outs)])]
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
                    f"has {dev['outputs']} outputs: pick a device with more outputs (`livedemix devices`) or change the preset's outputs")
        if self.live:
            din = self.input_device
            if max(self.input_channels) > din["inputs"]:
                raise AudioDeviceError(
                    f"--in {','.join(map(str, self.input_channels))} asks for input {max(self.input_channels)} but device "
                    f"{din['index']} '{din['name']}' has {din['inputs']} inputs: use channels 1..{din['inputs']}")

    def _pick_rate(self) -> int:
        """The model's rate if the device takes it, else the device's default rate."""
        sd = _sd()
        kw = dict(device=self.output_device["index"], channels=self.out_channels, dtype="float32")
        try:
            sd.check_output_settings(samplerate=self.model_rate, **kw)
            if self.live:
                sd.check_input_settings(device=self.input_device["index"], channels=max(self.input_channels),
                                        dtype="float32", samplerate=self.model_rate)
            return self.model_rate
        except sd.PortAudioError:
            rate = int(self.output_device["default_samplerate"])
            try:
                sd.check_output_settings(samplerate=rate, **kw)
            except sd.PortAudioError as e:
                raise AudioDeviceError(f"device '{self.output_device['name']}' takes neither {self.model_rate} Hz nor "
                                       f"{rate} Hz ({e}): pick another device") from None
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
                y = self.engine.process(blk)
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
        C, B = self.C, self.B
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
            y = self.engine.process(np.ascontiguousarray(x[:, s : s + m]))
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
        common = dict(samplerate=self.samplerate, blocksize=self.blocksize, dtype="float32",
                      latency="low" if self.live else "high", finished_callback=self.finished.set)
        try:
            if self.live:
                self._stream = sd.Stream(device=(self.input_device["index"], self.output_device["index"]),
                                         channels=(max(self.input_channels), self.out_channels),
                                         callback=self._callback, **common)
            else:
                self._stream = sd.OutputStream(device=self.output_device["index"], channels=self.out_channels,
                                               callback=lambda o, f, t, s: self._callback(None, o, f, t, s), **common)
            self._stream.start()
        except sd.PortAudioError as e:
            self._running = False
            raise AudioDeviceError(f"the audio stream on '{self.output_device['name']}' can't be started ({e}): "
                                   f"check the device with `livedemix devices`") from None
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
                f"unplugged): check it with `livedemix devices` and start again")
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
            "device": self.output_device["name"], "input_device": self.input_device["name"] if self.input_device else None,
            "samplerate": self.samplerate, "model_rate": self.model_rate,
            "mode": "resampling" if self.resampling else "direct", "blocksize": self.blocksize,
            "latency_samples": self.latency_samples, "latency_ms": round(self.latency_ms, 2),
            "engine_latency_samples": self.engine.latency_samples, "prefill_samples": self.prefill,
            "device_latency_ms": [round(1000 * v, 2) for v in self.device_latency],
            **st, "late_hops": es.late_hops, "separator_errors": es.separator_errors,
            "bypass_frames": es.bypass_frames, "seconds": round(wall, 2),
            # cpu_share: CPU the audio path used; busy_share: wall time inside it, which also
            # counts the time its thread was preempted or the machine stalled.
            "cpu_share": round(self.stats.audio_cpu_seconds / wall, 4),
            "busy_share": round(self.stats.audio_seconds / wall, 4), "stopped": self.stop_reason or "end",
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


def _holdback(rate_in: int, rate_out: int, quality: str) -> float:
    """Output samples a soxr stream holds back (its delay at the output rate)."""
    import soxr

    rs = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=quality)
    rs.resample_chunk(np.zeros((4096, 1), np.float32))
    return float(rs.delay())


__all__ = ["AudioDeviceError", "StreamRunner", "FileReader", "ControlQueue", "StreamStats", "find_device",
           "list_devices", "format_devices", "parse_channels", "rescan_devices", "JACK_CLIENT_NAME"]
