"""Hostile input: presets, model cards, preset lists and engine controls that an
attacker or a clumsy user writes. Each test here failed on the code before the fix: a file
written outside the output folder, a read that never ends, silent corruption, or a traceback
where one sentence belongs. docs/SECURITY.md is the threat model."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from livedemix.engine import Engine
from livedemix.errors import EngineError, LivedemixError
from livedemix.presets import PresetError, load_preset, recall_preset, save_preset
from livedemix.separator import ModelError, Separator, load_card
from tiny_model import copy_committed_model


@pytest.fixture()
def card(tmp_path) -> Path:
    return copy_committed_model("tiny", tmp_path / "m")


def write_card(card: Path, **changes) -> Path:
    c = json.loads(card.read_text())
    c.update(changes)
    card.write_text(json.dumps(c))
    return card


def one_sentence(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and msg.endswith(msg.rstrip()) and ": " in msg, msg
    return msg


# ---- 1. a model card writes files anywhere --------------------------------------------------


@pytest.mark.parametrize(
    "stem", ["/../../../../home/user/notes", "../x", "a/b", "mix", "stem:vocals", "", "vocals.wav", "x" * 40, 7]
)
def test_card_stems_must_be_identifiers(card, stem):
    write_card(card, stems=[stem, "drums", "bass", "other"])
    with pytest.raises(ModelError) as e:
        load_card(card)
    one_sentence(e.value)


@pytest.mark.parametrize("onnx_file", ["/etc/passwd", "../tiny.onnx", "sub/../../x.onnx", None, 3, ""])
def test_card_onnx_file_is_confined_to_the_card_folder(card, onnx_file):
    # the model really is there, one folder up: only the confinement stops it
    (card.parent.parent / "tiny.onnx").write_bytes((card.parent / "tiny.onnx").read_bytes())
    write_card(card, onnx_file=onnx_file)
    with pytest.raises(ModelError) as e:
        Separator(card)
    one_sentence(e.value)


def test_card_onnx_file_through_a_symlink_out_of_the_folder_is_refused(card, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes((card.parent / "tiny.onnx").read_bytes())
    (card.parent / "link.onnx").symlink_to(outside)
    write_card(card, onnx_file="link.onnx")
    with pytest.raises(ModelError, match="outside"):
        Separator(card)


def test_a_preset_names_shipped_models_only(tmp_path, card):
    p = tmp_path / "evil.toml"
    p.write_text(f'schema = 1\n[engine]\nmodel = "{card}"\n')
    with pytest.raises(PresetError, match="engine.model"):
        load_preset(p)
    # a directory in the working directory with an identifier's name is not a shipped model either
    from livedemix.separator import resolve_model

    with pytest.raises(ModelError, match="shipped"):
        resolve_model("tiny", shipped_only=True)
    assert resolve_model("default", shipped_only=True).name == "default.json"


# ---- 2. a preset that can exhaust memory or hang ---------------------------------------------


def test_program_change_lists_are_read_bounded_and_confined(tmp_path):
    ok = tmp_path / "mine.toml"
    ok.write_text('schema = 1\nname = "mine"\n')
    assert recall_preset("mine.toml", tmp_path).name == "mine"
    assert recall_preset("karaoke", tmp_path).name == "karaoke"  # shipped
    for ref in ("/dev/zero", "../x.toml", "/etc/passwd"):
        p = tmp_path / "evil.toml"
        p.write_text(f'schema = 1\n[[midi.map]]\nkind = "program"\naction = "preset"\npresets = ["karaoke", "{ref}"]\n')
        with pytest.raises(PresetError) as e:
            load_preset(p)
        one_sentence(e.value)
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "big.toml").write_bytes(b"#" * (1 << 20))
    (tmp_path / "esc.toml").symlink_to("/dev/zero")
    for ref in ("fifo.toml", "big.toml", "esc.toml"):
        with pytest.raises(PresetError) as e:
            recall_preset(ref, tmp_path)
        one_sentence(e.value)


def test_the_midi_controller_recalls_through_the_confined_reader(tmp_path):
    from livedemix.midi.controller import MidiController
    from livedemix.midi.errors import MidiError

    (tmp_path / "fifo.toml").parent.mkdir(exist_ok=True)
    os.mkfifo(tmp_path / "fifo.toml")
    p = tmp_path / "map.toml"
    p.write_text('schema = 1\n[[midi.map]]\nkind = "program"\naction = "preset"\npresets = ["karaoke", "fifo.toml"]\n')
    preset = load_preset(p)
    with pytest.raises(MidiError, match="FIFO"):
        MidiController._load_presets(preset.midi, base=p.parent)


def test_a_preset_file_that_is_a_fifo_or_a_device_is_refused(tmp_path):
    os.mkfifo(tmp_path / "f.toml")
    for path in (tmp_path / "f.toml", "/dev/zero"):
        with pytest.raises(PresetError) as e:
            load_preset(path)
        one_sentence(e.value)


# ---- 3. silent corruption: reserved bus names ----------------------------------------------


@pytest.mark.parametrize("bus", ['"stem:vocals"', '"stem:bass"', "mix", '"a/b"', '"../x"', '""', "MIX"])
def test_bus_names_are_identifiers_and_not_reserved(tmp_path, bus):
    p = tmp_path / "p.toml"
    p.write_text(f"schema = 1\n[buses.{bus}]\noutputs = [1, 2]\n")
    with pytest.raises(PresetError) as e:
        load_preset(p)
    one_sentence(e.value)


# ---- 4. tracebacks instead of one sentence -----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "schema = 1\nbuses = 5\n",
        "schema = 1\nname = " + "[" * 500 + "]" * 500 + "\n",
        "schema = " + "9" * 4400 + "\n",
        "schema = true\n",
        "schema = 1.0\n",
        'schema = "1"\n',
        "schema = 1\nmidi = 3\n",
        "schema = 1\n[buses.main]\noutputs = [" + ", ".join(["1"] * 100) + "]\n",
        "schema = 1\n" + "".join(f"[buses.b{i}]\n" for i in range(1001)),
        "schema = 1\n[buses.main]\ngain_db = " + "1" * 5000 + "\n",
        "schema = 1\n[[midi.map]]\nkind = 3\naction = []\n",
    ],
)
def test_malformed_presets_are_one_sentence_naming_the_file(tmp_path, text):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(PresetError) as e:
        load_preset(p)
    assert str(p) in one_sentence(e.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"onnx_sha256": 123},
        {"onnx_file": None},
        {"stft": "x"},
        {"state_pairs": [["conv_state", "conv_state_out"]]},
        {"state_pairs": {"conv_state": "nope"}},
        {"lookahead_frames": -1},
        {"lookahead_frames": 1.5},
        {"sample_rate": True},
        {"stems": "vocals"},
        {"stems": ["vocals", "vocals", "bass", "other"]},
        {"inputs": {"mag": [1, 2, 10**9], "conv_state": [1, 15, 16]}},
        {"outputs": {"stems": [1, 3, 2, 513], "conv_state_out": [1, 15, 16]}},
        {"default_phase": 5},
    ],
)
def test_card_fields_of_the_wrong_type_are_one_sentence(card, changes):
    write_card(card, **changes)
    with pytest.raises(ModelError) as e:
        Separator(card)
    one_sentence(e.value)


def test_non_utf8_card_and_non_model_onnx_are_one_sentence(card):
    raw = card.read_bytes()
    card.write_bytes(b"\xff\xfe" + raw)
    with pytest.raises(ModelError, match="UTF-8"):
        load_card(card)
    card.write_bytes(raw)
    junk = b"this is not a protobuf" * 10
    (card.parent / "tiny.onnx").write_bytes(junk)
    import hashlib

    write_card(card, onnx_sha256=hashlib.sha256(junk).hexdigest())
    with pytest.raises(ModelError, match="not an ONNX model") as e:
        Separator(card)
    one_sentence(e.value)


# ---- 5/6. engine controls and blocks ----------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(model=copy_committed_model("tiny", tmp_path_factory.mktemp("m")), block_size=256)


@pytest.mark.parametrize("db", [math.nan, math.inf, 1e308, -1e308, 25.0, "loud", None, True])
def test_set_gain_and_set_master_reject_unusable_db(engine, db):
    with pytest.raises(EngineError) as e:
        engine.set_gain("vocals", db)
    one_sentence(e.value)
    with pytest.raises(EngineError):
        engine.set_master(db)
    engine.set_gain("vocals", -math.inf)  # silent is allowed
    engine.set_gain("vocals", 0.0)
    y = engine.process(np.zeros((2, 256), np.float32))
    assert np.isfinite(y).all()


@pytest.mark.parametrize("block_size", [0, -5, 10**9, 2.5, True])
def test_engine_block_size_is_bounded(card, block_size):
    with pytest.raises(EngineError) as e:
        Engine(model=card, block_size=block_size)
    one_sentence(e.value)


@pytest.mark.parametrize("block", [None, [[0.0] * 8] * 2, np.float32(1.0), np.zeros((2, 8), np.complex64)])
def test_process_rejects_non_arrays_in_one_sentence(engine, block):
    with pytest.raises(LivedemixError):
        engine.process(block)


def test_separator_output_of_the_wrong_shape_falls_back(card):
    eng = Engine(model=card, block_size=256)
    sep = eng.separator
    wrong = np.ones((1, 2, 5), np.float32)
    sep.step_spectrum = lambda X: wrong  # a broken model: finite, but the wrong shape
    x = (np.random.default_rng(0).standard_normal((2, 256 * 40)) * 0.1).astype(np.float32)
    out = np.concatenate([eng.process(x[:, i : i + 256]) for i in range(0, x.shape[1], 256)], axis=2)
    assert eng.stats.separator_errors >= 1 and eng.stats.bypass_frames > 0
    assert np.isfinite(out).all()


# ---- 7. saving keeps mode, symlinks and comments ----------------------------------------------


def test_saving_a_preset_keeps_mode_symlink_and_comments(tmp_path):
    real = tmp_path / "real.toml"
    real.write_text(
        '# my stage setup, do not lose this\nschema = 1\nname = "mine"\n\n[buses.main]\n'
        "outputs = [1, 2]  # the PA\n\n[buses.main.stems.vocals]\nmute = true\n"
    )
    os.chmod(real, 0o644)
    link = tmp_path / "link.toml"
    link.symlink_to(real.name)
    p = load_preset(link)
    p.buses["main"].stems["drums"].gain_db = -6.0
    save_preset(p, link)
    assert link.is_symlink() and os.readlink(link) == real.name
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o644
    text = real.read_text()
    assert "# my stage setup, do not lose this" in text and "# the PA" in text
    again = load_preset(real)
    assert again.buses["main"].stems["drums"].gain_db == -6.0 and again.buses["main"].stems["vocals"].mute
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_validate_resolves_program_change_lists(tmp_path):
    from livedemix.presets import check_recalls

    p = tmp_path / "m.toml"
    p.write_text('schema = 1\n[[midi.map]]\nkind = "program"\naction = "preset"\npresets = ["karaoke", "gone.toml"]\n')
    with pytest.raises(PresetError, match="gone.toml") as e:
        check_recalls(load_preset(p))
    one_sentence(e.value)
    (tmp_path / "gone.toml").write_text("schema = 1\n")
    check_recalls(load_preset(p))


def test_card_tensor_sizes_are_bounded_in_total(card):
    c = json.loads(card.read_text())
    for k in range(40):  # each shape allowed alone, together a memory bomb
        c["inputs"][f"s{k}"] = [1, 1 << 20]
    card.write_text(json.dumps(c))
    with pytest.raises(ModelError, match="elements together"):
        load_card(card)


@pytest.mark.parametrize("text", ["\\u001b]0;pwned\\u0007", "\\u001b[2J", "a\\u202eb", "\\u009b31m"])
def test_preset_strings_with_terminal_control_characters_are_refused(tmp_path, text):
    p = tmp_path / "p.toml"
    p.write_text(f'schema = 1\ndescription = "{text}"\n')
    with pytest.raises(PresetError, match="control characters") as e:
        load_preset(p)
    assert "\x1b" not in str(e.value) and "\u202e" not in str(e.value)


def test_a_symlink_planted_at_a_temporary_name_is_not_written_through(tmp_path):
    from livedemix.audio.files import AtomicOutputs

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "song"
    folder.mkdir()
    (folder / f".vocals.wav.part-{os.getpid()}").symlink_to(victim)
    with AtomicOutputs(folder, ["vocals"], "wav", 44100, 2) as out:
        out.write({"vocals": np.zeros((2, 100), np.float32)})
        out.commit()
    assert victim.read_text() == "precious"
    assert not (folder / "vocals.wav").is_symlink()


def test_a_card_whose_shapes_are_not_the_graphs_is_one_sentence(tmp_path):
    """Found by the fuzz suite: a card that passes every field check but declares a state shape
    the ONNX graph doesn't have failed inside onnxruntime at the warm-up run (RuntimeError)."""
    import json

    from livedemix.engine import Engine
    from livedemix.separator import ModelError
    from tiny_model import copy_committed_model

    card_path = copy_committed_model("tiny", tmp_path)
    card = json.loads(card_path.read_text())
    card["inputs"]["conv_state"] = [1, 2, 513]
    card["outputs"]["conv_state_out"] = [1, 2, 513]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"gives tensor 'conv_state' the shape \[1, 2, 513\] but the model file's"):
        Engine(model=card_path)
