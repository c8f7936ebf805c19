"""The fuzz suite's engine: seeded generators of hostile presets, model cards, audio files and
engine control sequences, each run against the real code, classified, and counted.

An input ends in one of: *accepted* (it worked), a *clean error* (a LivedemixError: one
sentence), or a *traceback* (any other exception: a bug). Around every file-writing run the
sandbox is snapshotted: a file created, changed or removed outside the output folder is an
*escape*; an input, or an existing output, that changed is a *damaged file*; a written stem or
an engine block with NaN/inf is a *non-finite output*. The suite passes when the last three
and the tracebacks are all zero.

Everything is bounded: each target runs until its share of the time budget is spent, and every
generated file is small. Seeds make a failure reproducible: the report names the seed and the
input's number.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import random
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "data" / "models"
SHIPPED_PRESETS = REPO / "presets"

# ---- results ---------------------------------------------------------------------------------


@dataclass
class Counts:
    tried: int = 0
    accepted: int = 0
    clean_errors: int = 0
    tracebacks: int = 0
    escapes: int = 0
    damaged: int = 0
    nonfinite: int = 0
    by_target: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)  # (target, index, what, detail), the first few
    kinds: dict = field(default_factory=dict)  # (target, what, last line of the detail) → count

    def record(self, target: str, outcome: str) -> None:
        self.tried += 1
        t = self.by_target.setdefault(target, {"tried": 0, "accepted": 0, "clean_errors": 0, "bad": 0})
        t["tried"] += 1
        if outcome == "accepted":
            self.accepted += 1
            t["accepted"] += 1
        elif outcome == "clean":
            self.clean_errors += 1
            t["clean_errors"] += 1
        else:
            t["bad"] += 1

    def fail(self, target: str, index: int, what: str, detail: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        last = (detail.strip().splitlines() or [""])[-1][:120]
        new = (target, what, last) not in self.kinds
        self.kinds[(target, what, last)] = self.kinds.get((target, what, last), 0) + 1
        if new and len(self.failures) < 20:  # the first of each kind, in full
            self.failures.append((target, index, what, detail[-2000:]))

    @property
    def ok(self) -> bool:
        return self.tracebacks == self.escapes == self.damaged == self.nonfinite == 0

    def summary(self, seconds: float, seed: int) -> str:
        per = ", ".join(f"{k} {v['tried']}" for k, v in self.by_target.items())
        return (
            f"fuzz: {self.tried} inputs tried ({per}), {self.clean_errors} clean errors, {self.accepted} accepted, "
            f"tracebacks = {self.tracebacks}, escapes = {self.escapes}, damaged files = {self.damaged}, "
            f"non-finite outputs = {self.nonfinite} in {seconds:.0f} s (seed {seed})"
        )


def classify(fn, *args, **kw):
    """Run fn: ('accepted', value), ('clean', message) or ('traceback', formatted traceback)."""
    from livedemix.errors import LivedemixError

    try:
        return "accepted", fn(*args, **kw)
    except LivedemixError as e:
        msg = str(e)
        if "\n" in msg or not msg:
            return "traceback", f"a LivedemixError that is not one sentence: {msg!r}"
        return "clean", msg
    except Exception:  # noqa: BLE001 — that is the point: anything else is a bug
        return "traceback", traceback.format_exc()


# ---- file system snapshots ------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root → its sha256 (symlinks by their target, FIFOs by kind)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "link:" + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = "special"
        for d in dirnames:
            out.setdefault(os.path.relpath(os.path.join(dirpath, d), root) + "/", "dir")
    return out


# ---- generators: hostile values ------------------------------------------------------------

NASTY_STRINGS = [
    "",
    " ",
    "../../../../tmp/pwned",
    "/etc/passwd",
    "/dev/zero",
    "C:\\Windows\\win.ini",
    "mix",
    "stem:vocals",
    "stem:bass",
    "MIX",
    "con",
    "nul",
    "vocals/../../x",
    "a\x00b",
    "\u202eevil",
    "x" * 5000,
    "vocals.wav",
    ".hidden",
    "~",
    "$(rm -rf /)",
    "vocals",
    "main",
    "karaoke",
    "default",
    "fifo.toml",
    "../karaoke.toml",
]


def nasty_value(rng: random.Random, depth: int = 0):
    k = rng.randrange(16)
    if k == 0:
        return rng.choice(NASTY_STRINGS)
    if k == 1:
        return rng.choice([0, -1, 1, 2, 127, 128, 10**9, -(10**9), 2**63, 10**30])
    if k == 2:
        return rng.choice([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, 1e-320, 24.0001, -120.0001])
    if k == 3:
        return rng.choice([True, False])
    if k == 4 and depth < 3:
        return [nasty_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if k == 5 and depth < 3:
        return {rng.choice(NASTY_STRINGS[:12] + ["gain_db", "mute", "x"]): nasty_value(rng, depth + 1)}
    if k == 6:
        return rng.uniform(-200, 50)
    if k == 7:
        return rng.randrange(-5, 70)
    return rng.choice(["vocals", "drums", "bass", "other", "main", "cue", "toggle", "cc", "gain", 1, 2.0, True, []])


def toml_value(v) -> str:
    """A TOML literal for v (tomlkit can't write NaN keys etc., so by hand)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is JSON-compatible for these
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


PRESET_KEYS = {
    "": ["schema", "name", "description", "engine", "buses", "midi"],
    "engine": ["model", "phase", "latency", "n_iter", "kappa", "mask_power"],
    "bus": ["outputs", "gain_db", "stems"],
    "stem": ["gain_db", "mute", "solo"],
    "map": ["kind", "channel", "number", "action", "stem", "bus", "mode", "range_db", "presets"],
}


def gen_preset_text(rng: random.Random) -> str | bytes:
    """A preset: a shipped one mutated, one built from nasty values, structural bombs, or bytes."""
    k = rng.randrange(10)
    if k == 0:  # structural bombs and odd encodings
        return rng.choice(
            [
                "schema = 1\nx = " + "[" * rng.randrange(100, 2000) + "]" * 0,
                "schema = 1\nname = " + "[" * 600 + "]" * 600 + "\n",
                "schema = " + "9" * rng.randrange(10, 6000) + "\n",
                "schema = 1\n" + "".join(f"[buses.b{i}]\n" for i in range(rng.randrange(17, 1200))),
                "schema = 1\n" + "[[midi.map]]\nkind='cc'\naction='master'\n" * rng.randrange(513, 900),
                b"\xff\xfe\x00s\x00c\x00h\x00e\x00m\x00a",
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))),
                "schema = 1\nname = '" + "é" * 5000 + "'\n",
            ]
        )
    if k <= 4:  # a shipped preset with lines mutated
        base = rng.choice(sorted(SHIPPED_PRESETS.glob("*.toml"))).read_text().splitlines()
        for _ in range(rng.randrange(1, 5)):
            i = rng.randrange(len(base))
            line = base[i]
            if "=" in line and not line.startswith("["):
                key = line.split("=")[0].strip()
                base[i] = f"{key} = {toml_value(nasty_value(rng))}"
            elif line.startswith("[") and rng.random() < 0.5:
                name = toml_value(rng.choice(NASTY_STRINGS[:20]))
                base[i] = line.replace("main", name, 1) if "main" in line else line
            else:
                base.insert(i, f"{rng.choice(sum(PRESET_KEYS.values(), []))} = {toml_value(nasty_value(rng))}")
        return "\n".join(base) + "\n"
    # built from scratch
    lines = [f"schema = {toml_value(rng.choice([1, 1, 1, True, 1.0, '1', 2, 0]))}"]
    if rng.random() < 0.5:
        lines.append("[engine]")
        for key in rng.sample(PRESET_KEYS["engine"], rng.randrange(1, 4)):
            lines.append(f"{key} = {toml_value(nasty_value(rng))}")
    for _ in range(rng.randrange(0, 4)):
        bus = rng.choice(["main", "cue", "mon"] + NASTY_STRINGS[:12])
        lines.append(f"[buses.{json.dumps(bus)}]")
        for key in rng.sample(["outputs", "gain_db"], rng.randrange(0, 3)):
            lines.append(f"{key} = {toml_value(nasty_value(rng))}")
        stem = rng.choice(["vocals", "drums", "bass", "other"] + NASTY_STRINGS[:8])
        lines.append(f"[buses.{json.dumps(bus)}.stems.{json.dumps(stem)}]")
        for key in rng.sample(PRESET_KEYS["stem"], rng.randrange(0, 3)):
            lines.append(f"{key} = {toml_value(nasty_value(rng))}")
    for _ in range(rng.randrange(0, 3)):
        lines.append("[[midi.map]]")
        lines.append(f"kind = {toml_value(rng.choice(['cc', 'note', 'program', nasty_value(rng)]))}")
        lines.append(f"action = {toml_value(rng.choice(['gain', 'mute', 'solo', 'master', 'preset']))}")
        for key in rng.sample(PRESET_KEYS["map"][2:], rng.randrange(0, 5)):
            v = nasty_value(rng)
            if key == "presets" and rng.random() < 0.7:
                v = [rng.choice(NASTY_STRINGS + ["karaoke", "drummer", "mine.toml", "sub/mine.toml"])]
            lines.append(f"{key} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


def gen_card(rng: random.Random) -> dict:
    """The tiny model's card with fields mutated (types, values, paths, names)."""
    card = json.loads((TINY / "tiny.json").read_text())
    card.pop("sequence", None)
    keys = [
        "onnx_file",
        "onnx_sha256",
        "sample_rate",
        "stft",
        "stems",
        "inputs",
        "outputs",
        "state_pairs",
        "lookahead_frames",
        "default_phase",
        "extra_input_planes",
        "mask_power",
    ]
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice(keys)
        r = rng.random()
        if r < 0.15:
            card.pop(key, None)
        elif key == "stems" and r < 0.6:
            card["stems"] = [
                rng.choice(NASTY_STRINGS + ["vocals", "drums"]) for _ in range(rng.choice([1, 3, 4, 4, 40]))
            ]
        elif key == "onnx_file" and r < 0.7:
            card["onnx_file"] = rng.choice(
                ["../tiny.onnx", "/dev/zero", "link.onnx", "junk.onnx", "tiny.onnx", None, 7]
            )
        elif key == "lookahead_frames" and r < 0.6:
            card[key] = rng.choice([-1, 0, 1, 2, 65, 10**9, 1.5, "1", None])
        elif key in ("inputs", "outputs") and r < 0.6:
            t = dict(card[key]) if isinstance(card.get(key), dict) else {}
            name = rng.choice(list(t) or ["mag"])
            t[name] = rng.choice([[1, 2, 513], [1, 10**9], [], [0], "x", [1, -1, 5], [1, 4, 2, 513]])
            card[key] = t
        else:
            card[key] = nasty_value(rng)
    return card


def gen_audio(rng: random.Random, path: Path) -> str:
    """An odd audio (or not audio) file at path; returns what it is."""
    k = rng.randrange(12)
    n = rng.randrange(1, 30000)
    if k == 0:
        ch = rng.choice([3, 65, 200, 1000])
        sf.write(path.with_suffix(".wav"), np.zeros((rng.randrange(1, 8), ch), np.float32), 44100)
        path.with_suffix(".wav").rename(path)
        return f"{ch} channels"
    if k == 1:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000))))
        return "random bytes"
    if k == 2:
        path.write_text(rng.choice(["schema = 1\n", '{"stems": []}', "RIFF" + "x" * 100, ""]))
        return "not audio"
    x = (np.random.default_rng(rng.randrange(2**32)).standard_normal((n, rng.choice([1, 2, 2, 3]))) * 0.3).astype(
        np.float32
    )
    if k == 3:  # loud: square waves and clipping-range noise
        x = np.sign(x) * rng.choice([0.999, 1.0, 1.5, 4.0])
        sf.write(path, x.astype(np.float32), 44100, subtype="FLOAT", format="WAV")
        return "loud"
    if k == 4:  # NaN / inf samples in a float file
        x[rng.randrange(n)] = rng.choice([np.nan, np.inf, -np.inf])
        sf.write(path, x, 44100, subtype="FLOAT", format="WAV")
        return "non-finite samples"
    if k == 5:  # truncated
        sf.write(path, x, 44100, format=rng.choice(["WAV", "FLAC"]))
        data = path.read_bytes()
        path.write_bytes(data[: rng.randrange(0, len(data))])
        return "truncated"
    if k == 6:  # a header with a corrupted field
        sf.write(path, x, 44100, format="WAV")
        data = bytearray(path.read_bytes())
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(min(44, len(data)))
            data[i] = rng.randrange(256)
        path.write_bytes(bytes(data))
        return "header bytes flipped"
    if k == 7:
        sr = rng.choice([1, 4000, 7999, 8000, 22050, 48000, 96000, 384001, 1000000])
        try:
            sf.write(path, x, sr, format="WAV")
        except Exception:  # noqa: BLE001 — libsndfile refuses some rates: write raw bytes then
            path.write_bytes(b"RIFF")
        return f"rate {sr}"
    if k == 8:
        sf.write(path, x[:0], 44100, format="WAV")
        return "empty"
    sf.write(path, x, rng.choice([44100, 48000, 32000]), format=rng.choice(["WAV", "FLAC"]))
    return "plain"


# ---- targets -------------------------------------------------------------------------------


class Fuzzer:
    def __init__(self, seed: int = 0, workdir: Path | None = None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.counts = Counts()
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="livedemix-fuzz-"))
        self.model_dir = self.dir / "model"
        self.model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TINY / "tiny.onnx", self.model_dir / "tiny.onnx")
        card = json.loads((TINY / "tiny.json").read_text())
        card.pop("sequence", None)  # the step graph only: the fuzz suite needs no batched path
        (self.model_dir / "tiny.json").write_text(json.dumps(card))
        self.card = self.model_dir / "tiny.json"
        self._engine = None

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _outcome(self, target: str, i: int, result) -> str:
        kind, detail = result
        if kind == "traceback":
            self.counts.fail(target, i, "tracebacks", detail)
            self.counts.record(target, "bad")
            return kind
        self.counts.record(target, "accepted" if kind == "accepted" else "clean")
        return kind

    # -- presets: parse, validate via the CLI's code path, recall lists, save round trip
    def presets(self, i: int) -> None:
        from livedemix import presets as P

        box = self.dir / f"p{i}"
        box.mkdir()
        os.mkfifo(box / "fifo.toml")
        (box / "mine.toml").write_text('schema = 1\nname = "mine"\n')
        (box / "zero.toml").symlink_to("/dev/zero")
        text = gen_preset_text(self.rng)
        path = box / "fuzz.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        before = snapshot(self.dir)
        kind, value = classify(P.load_preset, path)
        self._outcome("presets", i, (kind, value))
        if kind == "accepted":
            preset = value
            for m in preset.midi.map:  # recall what a program change would
                for ref in m.presets:
                    self._outcome("presets", i, classify(P.recall_preset, ref, box))
            eng = self._shared_engine()  # a preset that validates must not upset the engine
            res = classify(eng.apply_preset, preset)
            self._outcome("presets", i, res)
            if res[0] == "accepted":
                y = classify(eng.process, np.random.default_rng(i).standard_normal((2, 1024)).astype(np.float32))
                self._outcome("presets", i, y)
                if y[0] == "accepted" and not np.isfinite(y[1]).all():
                    self.counts.fail("presets", i, "nonfinite", "engine output after apply_preset not finite")
            out = box / "saved.toml"
            res = classify(P.save_preset, preset, out)
            self._outcome("presets", i, res)
            if res[0] == "accepted":
                self._outcome("presets", i, classify(P.load_preset, out))
                os.unlink(out)
        after = snapshot(self.dir)
        self._check_unchanged(before, after, "presets", i)
        shutil.rmtree(box)

    # -- model cards: load, and when accepted run a few blocks
    def cards(self, i: int) -> None:
        from livedemix.engine import Engine

        box = self.dir / f"c{i}" / "models"
        box.mkdir(parents=True)
        shutil.copyfile(TINY / "tiny.onnx", box / "tiny.onnx")
        shutil.copyfile(TINY / "tiny.onnx", box.parent / "tiny.onnx")  # reachable only by escaping
        (box / "link.onnx").symlink_to(box.parent / "tiny.onnx")
        (box / "junk.onnx").write_bytes(b"not a model" * 20)
        card = gen_card(self.rng)
        if card.get("onnx_file") == "junk.onnx":
            card["onnx_sha256"] = hashlib.sha256((box / "junk.onnx").read_bytes()).hexdigest()
        raw = json.dumps(card, allow_nan=True)
        if self.rng.random() < 0.1:
            raw = self.rng.choice([raw.encode("utf-16"), b"\xff" + raw.encode(), b"[" * 100000])
        else:
            raw = raw.encode()
        (box / "fuzz.json").write_bytes(raw)
        before = snapshot(self.dir)
        kind, value = classify(Engine, model=box / "fuzz.json", block_size=512)
        self._outcome("cards", i, (kind, value))
        if kind == "accepted":
            x = np.random.default_rng(i).standard_normal((2, 512 * 8)).astype(np.float32) * 0.3
            res = classify(
                lambda: np.concatenate([value.process(x[:, s : s + 512]) for s in range(0, x.shape[1], 512)], axis=2)
            )
            self._outcome("cards", i, res)
            if res[0] == "accepted" and not np.isfinite(res[1]).all():
                self.counts.fail("cards", i, "nonfinite", "engine output not finite")
        self._check_unchanged(before, snapshot(self.dir), "cards", i)
        shutil.rmtree(box.parent)

    # -- audio files through `livedemix separate` (the CLI's own code, in process)
    def audio(self, i: int) -> None:
        from livedemix.apps import cli

        box = self.dir / f"a{i}"
        (box / "in").mkdir(parents=True)
        src = box / "in" / f"song{i}.{self.rng.choice(['wav', 'flac', 'mp3', 'txt'])}"
        what = gen_audio(self.rng, src)
        out = box / "out"
        keep = out / "other-song" / "vocals.wav"  # an existing output of another song
        keep.parent.mkdir(parents=True)
        sf.write(keep, np.zeros((100, 2), np.float32), 44100)
        force = self.rng.random() < 0.3
        fmt = self.rng.choice(["wav", "flac"])
        args = ["separate", str(src), "-o", str(out), "--model", str(self.card), "--format", fmt, "--json"]
        if force:
            args.append("--force")
        if self.rng.random() < 0.3:
            args += ["--preset", self.rng.choice(["karaoke", "drummer", str(SHIPPED_PRESETS / "cue-vocals.toml")])]
        before = snapshot(self.dir)
        rc, stdout, stderr = run_cli(cli, args)
        if rc == 0:
            self.counts.record("audio", "accepted")
        elif rc == 2 and stderr.count("\n") <= 2 and "Traceback" not in stderr:
            self.counts.record("audio", "clean")
        else:
            self.counts.record("audio", "bad")
            self.counts.fail("audio", i, "tracebacks", f"{what}: rc {rc}: {stderr}")
        after = snapshot(self.dir)
        out_rel = os.path.relpath(out, self.dir) + os.sep
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        outside = {k for k in changed if not k.startswith(out_rel) and k + "/" != out_rel and k != out_rel}
        if outside:
            self.counts.fail(
                "audio", i, "escapes", f"{what}: files changed outside the output folder: {sorted(outside)[:5]}"
            )
        damaged = {k for k in changed if k in before and before[k] != "dir"}
        if damaged:
            self.counts.fail("audio", i, "damaged", f"{what}: existing files changed: {sorted(damaged)[:5]}")
        leftovers = [k for k in after if ".part-" in k or ".old-" in k or k.endswith(".enc")]
        if leftovers:
            self.counts.fail("audio", i, "damaged", f"{what}: temporaries left: {leftovers[:5]}")
        if rc == 0:
            for k in after:
                if k.startswith(out_rel) and k not in before and k.endswith((".wav", ".flac")):
                    y = sf.read(self.dir / k, dtype="float32")[0]
                    if not np.isfinite(y).all():
                        self.counts.fail("audio", i, "nonfinite", f"{what}: {k} holds NaN/inf")
        shutil.rmtree(box)

    # -- engine controls: random sequences of calls with hostile arguments
    def engine(self, i: int) -> None:

        eng = self._shared_engine()
        rng = self.rng
        for _ in range(rng.randrange(5, 30)):
            op = rng.randrange(6)
            stem = rng.choice(list(eng.stems) + ["nope", "", None, 3])
            bus = rng.choice(["main", "cue", "mix", None])
            if op == 0:
                call = (eng.set_gain, stem, nasty_value(rng), bus or "main")
            elif op == 1:
                call = (eng.set_master, nasty_value(rng), bus or "main")
            elif op == 2:
                call = (rng.choice([eng.mute, eng.solo]), stem, rng.random() < 0.5, bus or "main")
            elif op == 3:
                call = (eng.apply_preset, rng.choice(["karaoke", "drummer", "acapella", "nope", "/dev/zero"]))
            else:
                n = rng.choice([0, 1, 7, 256, 1024, 1025, 4096])
                kind = rng.randrange(8)
                if kind == 0:
                    block = rng.choice([None, [[0.0] * 4] * 2, np.float32(1.0), "audio"])
                elif kind == 1:
                    block = np.zeros((rng.choice([1, 2, 3]), n), rng.choice([np.float64, np.int16, np.complex64]))
                elif kind == 2:
                    block = np.full((2, n), rng.choice([np.nan, np.inf, -np.inf, 1e30]), np.float32)
                else:
                    block = (
                        np.random.default_rng(rng.randrange(2**32)).standard_normal((2, n)) * rng.choice([0.1, 1, 10])
                    ).astype(np.float32)
                call = (eng.process, block)
            res = classify(*call)
            self._outcome("engine", i, res)
            if call[0] == eng.process and res[0] == "accepted" and not np.isfinite(res[1]).all():
                self.counts.fail("engine", i, "nonfinite", f"process() of {type(call[1]).__name__} gave NaN/inf")

    # -- the command line: hostile arguments to every command that finishes on its own
    def args(self, i: int) -> None:
        from livedemix.apps import cli

        rng = self.rng
        box = self.dir / f"g{i}"
        box.mkdir()
        song = box / "song.wav"
        sf.write(song, np.zeros((2000, 2), np.float32) + 0.01, 44100)
        (box / "p.toml").write_bytes(
            (lambda t: t if isinstance(t, bytes) else t.encode("utf-8", "surrogatepass"))(gen_preset_text(rng))
        )

        def nasty():
            return str(rng.choice(NASTY_STRINGS[:13] + ["p.toml", "song.wav", "-1", "0", "nan", "1e400", "--x"]))

        k = rng.randrange(7)
        if k == 0:
            argv = ["presets", rng.choice(["list", "show", "validate"]), *[nasty() for _ in range(rng.randrange(3))]]
            if rng.random() < 0.3:
                argv.append("--json")
        elif k == 1:
            argv = ["separate", str(song), "-o", "out", "--model", str(self.card)]
            for opt in rng.sample(["--stems", "--format", "--phase", "--preset"], rng.randrange(1, 3)):
                argv += [opt, nasty() if rng.random() < 0.7 else rng.choice(["vocals", "wav", "wiener", "karaoke"])]
        elif k == 2:
            argv = ["eval", nasty(), "--model", str(self.card), "--seconds", rng.choice(["0", "-1", "nan", "inf", "x"])]
        elif k == 3:
            argv = [
                "bench",
                rng.choice(["stft", "pipeline", "all", nasty()]),
                "--seconds",
                rng.choice(["0", "-3", "nan", "", "1e999"]),
            ]
        elif k == 4:
            argv = [
                rng.choice(["play", "live"]),
                str(song),
                "--block",
                rng.choice(["1", "15", "8193", "-5", "x", "1e3"]),
            ]
            if argv[0] == "live":
                del argv[1]
        elif k == 5:
            argv = [nasty(), *[nasty() for _ in range(rng.randrange(3))]]
            if argv[0] in ("play", "live", "demo", "bench", "midi", "devices"):
                argv[0] = "info"
        else:
            argv = ["info", *rng.choice([[], ["--json"], [nasty()]])]
        before = snapshot(self.dir)
        cwd = os.getcwd()
        os.chdir(box)
        try:
            rc, out, err = run_cli(cli, argv)
        finally:
            os.chdir(cwd)
        lines = [line for line in err.strip().splitlines() if line]
        if rc == 0:
            self.counts.record("args", "accepted")
        elif (
            rc == 2
            and "Traceback" not in err
            and lines
            and all(ln.startswith(("livedemix: ", "bad  ")) for ln in lines)
        ):
            self.counts.record("args", "clean")
        else:
            self.counts.record("args", "bad")
            self.counts.fail("args", i, "tracebacks", f"livedemix {' '.join(argv)}: rc {rc}: {err}")
        after = snapshot(self.dir)
        box_rel = os.path.relpath(box, self.dir) + os.sep
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        outside = {k for k in changed if not k.startswith(box_rel + "out")}
        if outside:
            self.counts.fail(
                "args", i, "escapes" if outside - set(before) else "damaged", f"{argv}: {sorted(outside)[:5]}"
            )
        shutil.rmtree(box)

    def _shared_engine(self):
        from livedemix.engine import Engine

        if self._engine is None:
            self._engine = Engine(model=self.card, block_size=1024, buses=["main", "cue"])
        return self._engine

    def _check_unchanged(self, before, after, target, i) -> None:
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        if changed:
            self.counts.fail(
                target, i, "escapes" if changed - set(before) else "damaged", f"changed: {sorted(changed)[:5]}"
            )

    # -- the loop
    def run(self, seconds: float, shares: dict[str, float] | None = None) -> Counts:
        shares = shares or {"presets": 0.2, "cards": 0.15, "audio": 0.3, "engine": 0.15, "args": 0.2}
        from livedemix.audio.devices import quiet_stderr

        with quiet_stderr():  # C libraries (libmpg123, lilv) print notes about junk input to fd 2
            self._run(seconds, shares)
        return self.counts

    def _run(self, seconds: float, shares: dict[str, float]) -> None:
        for target, share in shares.items():
            end = time.monotonic() + seconds * share
            fn = getattr(self, target)
            i = 0
            while time.monotonic() < end:
                try:
                    fn(i)
                except Exception:  # noqa: BLE001 — a bug in a check itself still counts, visibly
                    self.counts.fail(target, i, "tracebacks", "in the fuzz harness: " + traceback.format_exc())
                i += 1


def run_cli(cli, args: list[str]) -> tuple[int, str, str]:
    """The `livedemix` command in this process (its main(), stdout and stderr captured). An
    exception that escapes main() is a traceback, as it would be for the user."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(args)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
        except BaseException:  # noqa: BLE001
            rc = -1
            err.write("Traceback (escaped main):\n" + traceback.format_exc())
    if rc == 70:  # main() turned an unexpected exception into one line: still a bug
        err.write("\nTraceback (internal error)")
    return rc, out.getvalue(), err.getvalue()
