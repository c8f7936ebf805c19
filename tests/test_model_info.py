"""`livedemix model`: a model's network and training data from its card, safe on hostile cards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from livedemix.separator import MODELS_DIR

MODELS = Path(__file__).parent / "data" / "models"


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "livedemix.apps.cli", "model", *args], capture_output=True, text=True, timeout=60
    )


def test_shipped_model_lists_its_training_data():
    card = json.loads((MODELS_DIR / "default.json").read_text())
    res = _run("--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    t = info["training"]
    assert info["name"] == "default" and info["parameters"] == card["parameters"]
    assert t["steps"] == card["training"]["steps"] and t["synthesized"][0]["songs"]
    real = card["training"].get("real") or {}
    assert len(t["real"]) == len(real.get("sources") or real.get("songs") or [])
    for row in t["real"]:  # every real recording is named with its licence
        assert row["song"] != "not recorded" and row["licence"] != "not recorded"
    text = _run().stdout
    assert "synthesized songs" in text and ("real recordings: none" in text) == (not t["real"])
    vocals = card["scores"]["real_2stem_validation"]["vocals_sdr"]
    assert info["scores"]["real_vocals_sdr"] == f"{vocals:.2f}" and f"vocals {vocals:.2f} dB" in text
    mix = card["training"].get("interpolation")
    assert ("weights: t = " in text) == bool(mix)
    soup = (card["training"].get("soup") or {}).get("sources") or []
    assert ("weights: a soup" in text) == bool(soup)
    for src in soup:  # each source named with its share
        assert f"{src['weight']:.2f} × {src['file']}" in text


def test_hostile_training_record_prints_safely(tmp_path):
    for f in ("tiny.onnx", "tiny.seq.onnx"):
        shutil.copy(MODELS / f, tmp_path / f)
    card = json.loads((MODELS / "tiny.json").read_text())
    card["training"] = {
        "steps": "\x1b]0;owned\x07",
        "stages": [{"corpus_timbres": {"soundfonts": ["a\x1b[2Jb", 7, None]}}, "not a stage"],
        "real": {"sources": [{"song": "x" * 5000, "licence": ["list"]}, 3], "teacher": {"nested": 1}},
        "interpolation": {"t": float("nan"), "base": "\x1b[31mred", "tuned": ["x"]},
        "soup": {"sources": [{"file": "\x1b[2Ja.pt", "steps": [1], "weight": "0.5"}, "odd"] * 50},
    }
    card["scores"] = {"test": {"irm_share": "1e999"}, "real_2stem_validation": [1, 2], "unseen_library": None}
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    res = _run(str(tmp_path / "tiny.json"))
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) < 400
    assert "not recorded" in res.stdout
