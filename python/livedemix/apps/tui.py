"""The terminal UI of `livedemix play` / `live` (rich): stem and bus meters, mute/solo/gain,
the audio path's CPU share, late hops, xruns, latency, MIDI activity; keys to remix.

Keys: 1-4 mute a stem, shift+1-4 (! @ # $) solo it, ←/→ select a stem, ↑/↓ its gain ±1 dB,
0 back to 0 dB, b next bus, p next preset, l MIDI learn for the selected stem (a fader → its
gain, a pad → its mute; saved into the preset file the mappings came from), q quit. Every change goes to the audio path through
the stream's control queue (applied at the next block boundary, with the mixer's ramp).

:class:`KeyControls` is the key logic without a terminal (tested on its own); :class:`LiveUI`
draws and reads the keyboard.
"""

from __future__ import annotations

import math
import os
import select
import sys
import time
from pathlib import Path

from ..presets import PresetError, list_presets, load_preset, save_preset, shipped_presets_dir

SOLO_KEYS = "!@#$%^&*("  # shift + 1..9 on a US keyboard
GAIN_STEP_DB = 1.0
GAIN_FLOOR_DB = -60.0  # ↓ below this is off; ↑ from off starts here
GAIN_CEIL_DB = 24.0
ARROWS = {
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1b[C": "right",
    "\x1b[D": "left",
    "\x1bOA": "up",
    "\x1bOB": "down",
    "\x1bOC": "right",
    "\x1bOD": "left",
}

HELP = (
    "1-4 mute · shift+1-4 (!@#$) solo · ←/→ stem · ↑/↓ gain · 0 unity · e stem's effects on/off · b bus · "
    "p preset · l MIDI learn · q quit"
)


def inserts_label(chain) -> str:
    """A chain as the UI shows it: each insert's short name; bypassed ones dim and struck
    through, faulted ones (NaN/too slow, bypassed by the host) red with '!'."""
    if chain is None or not len(chain):
        return "·"
    parts = []
    for d in chain.describe():
        name = (d["name"] or d["plugin"].rsplit("/", 1)[-1]).replace("[", "(")
        name = name[:18]
        if d["faulted"]:
            parts.append(f"[bold red]!{name}[/]")
        elif d["bypass"]:
            parts.append(f"[grey50 strike]{name}[/]")
        else:
            parts.append(f"[cyan]{name}[/]")
    return " › ".join(parts)


def parse_keys(text: str) -> list[str]:
    """Raw terminal input → key names: single characters, or 'up'/'down'/'left'/'right'."""
    keys, i = [], 0
    while i < len(text):
        for seq, name in ARROWS.items():
            if text.startswith(seq, i):
                keys.append(name)
                i += len(seq)
                break
        else:
            if text[i] == "\x1b":  # an escape sequence we don't use: skip it
                j = i + 1
                if j < len(text) and text[j] in "[O":
                    j += 1
                    while j < len(text) and not text[j].isalpha() and text[j] != "~":
                        j += 1
                    j += 1
                i = max(j, i + 1)
                continue
            keys.append(text[i])
            i += 1
    return keys


class KeyControls:
    """What each key does to an engine; changes are posted with ``post(fn, *args)`` (a
    ControlQueue's) and decided on the audio path, so they never race with MIDI."""

    def __init__(self, engine, post, presets: list[str] | None = None, midi=None):
        self.engine = engine
        self.post = post
        self.midi = midi
        self._learned = None  # a mapping learned on the MIDI thread, to be saved here
        self.stem = 0
        self.bus = 0
        self.presets = presets if presets is not None else list_presets()
        cur = engine.preset.name if engine.preset is not None else None
        self.preset_index = self.presets.index(cur) if cur in self.presets else -1
        self.message = ""

    @property
    def bus_name(self) -> str:
        return self.engine.buses[self.bus]

    @property
    def stem_name(self) -> str:
        return self.engine.stems[self.stem]

    # run on the audio path
    def _toggle(self, what: str, stem: str, bus: str) -> None:
        eng = self.engine
        on = not eng.state(bus)[stem][what]
        (eng.mute if what == "mute" else eng.solo)(stem, on, bus)

    def _nudge(self, stem: str, bus: str, step: float) -> None:
        eng = self.engine
        g = eng.state(bus)[stem]["gain_db"]
        if g == -math.inf:
            new = GAIN_FLOOR_DB if step > 0 else -math.inf
        else:
            new = min(GAIN_CEIL_DB, g + step)
            if new < GAIN_FLOOR_DB:
                new = -math.inf
        eng.set_gain(stem, new, bus)

    def key(self, k: str) -> bool:
        """Handle one key; returns False for quit."""
        eng, bus = self.engine, self.bus_name
        J = len(eng.stems)
        if k in ("q", "Q", "\x03"):
            return False
        if k.isdigit() and 1 <= int(k) <= min(J, 9):
            s = eng.stems[int(k) - 1]
            self.post(self._toggle, "mute", s, bus)
            self.message = f"mute {s}"
        elif k in SOLO_KEYS[:J]:
            s = eng.stems[SOLO_KEYS.index(k)]
            self.post(self._toggle, "solo", s, bus)
            self.message = f"solo {s}"
        elif k == "left":
            self.stem = (self.stem - 1) % J
        elif k == "right":
            self.stem = (self.stem + 1) % J
        elif k in ("up", "+", "="):
            self.post(self._nudge, self.stem_name, bus, GAIN_STEP_DB)
        elif k in ("down", "-", "_"):
            self.post(self._nudge, self.stem_name, bus, -GAIN_STEP_DB)
        elif k == "0":
            self.post(eng.set_gain, self.stem_name, 0.0, bus)
        elif k == "e":
            chain = eng.insert_chain(stem=self.stem_name) if hasattr(eng, "insert_chain") else None
            if chain is None or not len(chain):
                self.message = (
                    f"{self.stem_name} has no effect inserts (add [[stems.{self.stem_name}.inserts]] to the preset)"
                )
            else:
                on = not chain.bypassed(0)  # one button for the strip: follow the first insert
                for i in range(len(chain)):
                    self.post(chain.set_bypass, i, on)
                self.message = f"{self.stem_name} effects {'bypassed' if on else 'on'}"
        elif k == "b":
            self.bus = (self.bus + 1) % len(eng.buses)
        elif k == "l":
            self._learn()
        elif k == "p" and self.presets:
            for _ in range(len(self.presets)):
                self.preset_index = (self.preset_index + 1) % len(self.presets)
                name = self.presets[self.preset_index]
                try:
                    preset = load_preset(name)  # read here, on the UI thread; applied on the audio path
                except PresetError as e:
                    self.message = str(e)
                    continue
                self.post(eng.apply_preset, preset)
                self.message = f"recalled {name}"
                break
        return True

    # ---- MIDI learn ----
    def _learn(self) -> None:
        if self.midi is None:
            self.message = "MIDI learn needs MIDI: start with --midi"
            return
        if self.midi._learning is not None:
            self.midi.cancel_learn()
            self.message = "MIDI learn cancelled"
            return
        stem, bus = self.stem_name, self.bus_name
        self.midi.learn_next({"stem": stem, "bus": bus}, self._on_learned)
        self.message = f"MIDI learn: move a fader (→ {stem} gain) or press a pad (→ {stem} mute); l cancels"

    def _on_learned(self, mapping) -> None:  # MIDI thread: no file I/O here
        self._learned = mapping

    def poll(self) -> None:
        """UI thread, every frame: save what MIDI learn found into the mappings' preset file."""
        m, self._learned = self._learned, None
        if m is None:
            return
        from ..midi import describe_mapping, replace_mapping

        what = describe_mapping(m)
        src = self.midi.source
        shipped = src is not None and Path(src).resolve().parent == shipped_presets_dir().resolve()
        if src is None or shipped:
            self.message = (
                f"learned {what} (not saved: the mappings come from a shipped preset; copy it and pass "
                f"--midi-map FILE to keep them)"
            )
            return
        try:
            preset = load_preset(src)
            preset.midi.map = replace_mapping(preset.midi.map, m)
            save_preset(preset, Path(src))
            self.message = f"learned {what}; saved to {src}"
        except (PresetError, OSError) as e:
            self.message = f"learned {what} but could not save it: {e}"


def _bar(db: float, width: int = 24, floor: float = -60.0) -> str:
    if not math.isfinite(db) or db <= floor:
        n = 0
    else:
        n = int(round(width * min(1.0, (db - floor) / -floor)))
    color = "green" if db < -12 else ("yellow" if db < -3 else "red")
    return f"[{color}]{'█' * n}[/{color}][grey30]{'·' * (width - n)}[/grey30]"


def _db(x: float) -> float:
    return 10 * math.log10(x) if x > 1e-12 else -math.inf


def _fmt_db(db: float) -> str:
    return "  off" if db == -math.inf else f"{db:+5.1f}"


class KeyReader:
    """The terminal in cbreak mode (keys arrive one by one, unechoed); restored on exit."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin
        self.fd = self.stream.fileno()
        self._saved = None

    def __enter__(self):
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc):
        import termios

        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        return False

    def read(self) -> list[str]:
        out = ""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            if not chunk:
                break
            out += chunk.decode("utf-8", "replace")
        return parse_keys(out) if out else []


class LiveUI:
    """Draws the stream's state ~15 times a second and feeds keys to :class:`KeyControls`."""

    def __init__(self, runner, title: str = "livedemix", midi=None, presets: list[str] | None = None):
        self.runner = runner
        self.engine = runner.engine
        self.title = title
        self.midi = midi
        self.controls = KeyControls(self.engine, runner.controls.post, presets, midi=midi)
        self._cpu = (time.monotonic(), runner.stats.audio_cpu_seconds, 0.0)

    def cpu_share(self) -> float:
        t0, a0, last = self._cpu
        t, a = time.monotonic(), self.runner.stats.audio_cpu_seconds
        if t - t0 >= 0.5:
            last = (a - a0) / (t - t0)
            self._cpu = (t, a, last)
        return last

    def render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        r, eng, kc = self.runner, self.engine, self.controls
        bus = kc.bus_name
        st = eng.state(bus)
        t = Table(box=None, pad_edge=False, expand=False)
        for col in ("", "stem", "level", "", "gain", "M", "S", "inserts"):
            t.add_column(col)
        for j, s in enumerate(eng.stems):
            lvl = _db(float(r.stem_power[j]) * r.stem_power_scale)
            sel = "▶" if j == kc.stem else " "
            t.add_row(
                f"{sel}{j + 1}",
                s,
                _bar(lvl),
                f"{lvl:6.1f}" if math.isfinite(lvl) else "   -∞",
                f"{_fmt_db(st[s]['gain_db'])} dB",
                "[bold red]M[/]" if st[s]["mute"] else "·",
                "[bold yellow]S[/]" if st[s]["solo"] else "·",
                inserts_label(eng.insert_chain(stem=s)),
            )
        b = Table(box=None, pad_edge=False)
        for col in ("bus", "out", "L", "R", "master", "inserts"):
            b.add_column(col)
        for i, name in enumerate(eng.buses):
            if name not in r.routes:
                continue
            peaks = [20 * math.log10(float(p)) if p > 1e-6 else -math.inf for p in r.bus_peaks[i]]
            mark = "▶" if name == bus else " "
            b.add_row(
                f"{mark}{name}",
                "-".join(map(str, r.routes[name])),
                _bar(peaks[0], 16),
                _bar(peaks[1], 16),
                f"{_fmt_db(eng.state(name)['master_db'])} dB",
                inserts_label(eng.insert_chain(bus=name)),
            )
        s = r.stats
        es = eng.stats
        dev = r.device_latency
        status = (
            f"latency {r.latency_ms:.1f} ms (+ device {1000 * (dev[0] + dev[1]):.1f} ms) · {r.samplerate} Hz"
            f"{' (resampling)' if r.resampling else ''} · audio path {100 * self.cpu_share():4.1f}% CPU\n"
            f"xruns {s.xruns} · underruns {s.underruns} · late hops {es.late_hops}"
        )
        if self.midi is not None:
            ms = self.midi.stats
            last = str(self.midi.last_messages[-1]) if self.midi.last_messages else "-"
            status += f"\nMIDI {ms.received} in, {ms.ignored_total} ignored · last: {last}"
        preset = eng.preset.name if eng.preset is not None else "-"
        head = f"[bold]{self.title}[/bold] · preset {preset} · bus {bus}" + (f" · {kc.message}" if kc.message else "")
        return Panel(Group(head, t, "", b, "", status, f"[grey50]{HELP}[/grey50]"), title="livedemix", expand=False)

    def run(self, fps: float = 15.0) -> str:
        """Until the stream ends, q, or Ctrl-C; raises AudioDeviceError if the device goes."""
        from rich.console import Console
        from rich.live import Live

        console = Console(stderr=False)
        with (
            KeyReader() as keys,
            Live(self.render(), console=console, refresh_per_second=fps, transient=False, auto_refresh=False) as live,
        ):
            try:
                while self.runner.check():
                    for k in keys.read():
                        if not self.controls.key(k):
                            self.runner.stop_reason = "quit"
                            return "quit"
                    self.controls.poll()
                    live.update(self.render(), refresh=True)
                    time.sleep(1.0 / fps)
            except KeyboardInterrupt:
                self.runner.stop_reason = "interrupted"
        return self.runner.stop_reason or "end"


__all__ = ["KeyControls", "LiveUI", "KeyReader", "parse_keys", "HELP"]
