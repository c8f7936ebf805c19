"""`livedemix model`: what a separator model is and what it was trained on, from its card.

The card is untrusted data (docs/SECURITY.md): every value printed here is type-checked or
passed through ``_text``, which drops control characters and bounds the length, and a
missing or odd field prints as "not recorded" rather than failing.
"""

from __future__ import annotations

import json
import math

from ..separator import load_card, resolve_model
from ..validate import has_control_chars


def _text(value, limit: int = 100) -> str:
    s = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (int, float, bool)) else ""
    if not s:
        return "not recorded"
    if has_control_chars(s):
        s = "".join(ch if ch.isprintable() else "?" for ch in s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _number(value, fmt: str = "{:.2f}") -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return fmt.format(value) if ok else "not recorded"


def _architecture(arch) -> str:
    a = _dict(arch)
    if not a:
        return "not recorded"
    layers = len(_list(a.get("dilations")))
    causal = "causal" if a.get("lookahead") == 0 else f"lookahead {_text(a.get('lookahead'))} frames"
    if a.get("backward") is True:
        causal = "a causal and a reverse-time stack (hears the future: offline only)"
    return (
        f"{_text(a.get('type'))}, {layers} dilated layers, {_text(a.get('residual'))} residual channels, "
        f"per-bin refiner {_text(a.get('local'))} channels, {causal}"
    )


def training_summary(card: dict) -> dict:
    """The card's training record reduced to what a user asks: which data, which licences."""
    t = _dict(card.get("training"))
    stages = [_dict(s) for s in _list(t.get("stages"))] or [t]
    corpus = []
    for s in stages:
        timbres = _dict(s.get("corpus_timbres"))
        corpus.append(
            {
                "songs": s.get("train_songs"),
                "minutes": s.get("train_minutes"),
                "soundfonts": [_text(x) for x in _list(timbres.get("soundfonts"))] or ["FluidR3_GM.sf2"],
                "drum_kits": [_text(x) for x in _list(timbres.get("drum_kits"))],
            }
        )
    real = _dict(t.get("real"))
    sources = [
        {k: _text(_dict(r).get(k)) for k in ("song", "kind", "licence", "source")} for r in _list(real.get("sources"))
    ]
    if not sources:  # older records: song names and the set of licences only
        sources = [{"song": _text(x), "kind": "", "licence": "", "source": ""} for x in _list(real.get("songs"))]
    mix = _dict(t.get("interpolation"))
    soup = [_dict(x) for x in _list(_dict(t.get("soup")).get("sources"))][:20]
    return {
        "steps": t.get("steps"),
        "cpu_minutes": t.get("cpu_minutes"),
        # weights made by factory.interpolate: (1 - t) * base + t * tuned
        "interpolation": {"t": _number(mix.get("t")), "base": _text(mix.get("base")), "tuned": _text(mix.get("tuned"))}
        if mix
        else None,
        # weights made by factory.interpolate --soup: sum of weight * source
        "soup": [
            {"file": _text(x.get("file")), "steps": _text(x.get("steps")), "weight": _number(x.get("weight"))}
            for x in soup
        ],
        "synthesized": corpus,
        "real": sources,
        "real_licences": [_text(x) for x in _list(real.get("licences"))],
        "teacher": _text(real.get("teacher")) if real else None,
    }


def scores_summary(card: dict) -> dict:
    """The card's held-out scores (factory's evaluations), the measures a user compares models by."""
    sc = _dict(card.get("scores"))
    real = _dict(sc.get("real_2stem_validation"))
    return {
        "real_vocals_sdr": _number(real.get("vocals_sdr")),
        "real_accompaniment_sdr": _number(real.get("accompaniment_sdr")),
        "unseen_library_irm_share": _number(_dict(sc.get("unseen_library")).get("irm_share"), "{:.1%}"),
        "corpus_test_irm_share": _number(_dict(sc.get("test")).get("irm_share"), "{:.1%}"),
    }


def cmd_model(args) -> int:
    path = resolve_model(args.model)
    card = load_card(path)
    summary = {
        "card": str(path),
        "name": _text(card.get("name")),
        "architecture": _architecture(card.get("architecture")),
        "parameters": card.get("parameters") if isinstance(card.get("parameters"), int) else None,
        "lookahead_frames": card.get("lookahead_frames"),
        "training": training_summary(card),
        "scores": scores_summary(card),
    }
    off = _dict(card.get("offline"))
    if off:  # checked by load_card: a confined file, its sha256, sane shapes
        summary["offline"] = {
            "architecture": _architecture(off.get("architecture")),
            "parameters": off.get("parameters") if isinstance(off.get("parameters"), int) else None,
            "context_frames": off.get("context_frames"),
            "training": training_summary(off),
            "scores": scores_summary(off),
        }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    tr = summary["training"]
    print(f"model {summary['name']} ({summary['card']})")
    print(f"  network: {summary['architecture']}")
    if summary["parameters"]:
        print(f"  parameters: {summary['parameters']:,}")
    if not _dict(card.get("training")):
        print("  training data: not recorded in this card")
        return 0
    if tr["steps"] is not None:
        print(f"  training: {_text(tr['steps'])} steps, {_text(tr['cpu_minutes'])} CPU minutes")
    if tr["interpolation"]:
        m = tr["interpolation"]
        print(f"  weights: t = {m['t']} of {m['tuned']}, the rest {m['base']} (factory.interpolate)")
    if tr["soup"]:
        print("  weights: a soup, the weighted average of (factory.interpolate --soup):")
        for x in tr["soup"]:
            print(f"    {x['weight']} × {x['file']} ({x['steps']} steps)")
    sc = summary["scores"]
    print(
        f"  scores: real 2-stem validation vocals {sc['real_vocals_sdr']} dB, accompaniment "
        f"{sc['real_accompaniment_sdr']} dB; share of the ideal mask's gain: unseen library "
        f"{sc['unseen_library_irm_share']}, corpus test {sc['corpus_test_irm_share']}"
    )
    print("  synthesized songs (factory.corpus), per stage:")
    for c in tr["synthesized"]:
        kits = f"; drum kits {', '.join(c['drum_kits'])}" if c["drum_kits"] else ""
        print(f"    {_text(c['songs'])} songs, {_text(c['minutes'])} min; {', '.join(c['soundfonts'])}{kits}")
    if tr["real"]:
        print(f"  real recordings ({len(tr['real'])}; 2-stem labels from {tr['teacher']}):")
        for r in tr["real"]:
            kind = f" [{r['kind']}]" if r["kind"] else ""
            print(f"    {r['song']}{kind}: {r['licence']}")
    else:
        print("  real recordings: none")
    if "offline" in summary:
        o, hop = summary["offline"], _dict(card.get("stft")).get("hop", 256)
        ahead = o["context_frames"] * hop / 44100 if isinstance(hop, int) else float("nan")
        print(f"offline graph (what `livedemix separate` renders with; it hears {ahead:.2f} s ahead):")
        print(f"  network: {o['architecture']}")
        if o["parameters"]:
            print(f"  parameters: {o['parameters']:,}")
        ot = o["training"]
        if ot["steps"] is not None:
            print(f"  training: {_text(ot['steps'])} steps, {_text(ot['cpu_minutes'])} CPU minutes, the same data")
        if ot["interpolation"]:
            m = ot["interpolation"]
            print(f"  weights: t = {m['t']} of {m['tuned']}, the rest {m['base']} (factory.interpolate)")
        osc = o["scores"]
        print(
            f"  scores: real 2-stem validation vocals {osc['real_vocals_sdr']} dB, accompaniment "
            f"{osc['real_accompaniment_sdr']} dB; share of the ideal mask's gain: unseen library "
            f"{osc['unseen_library_irm_share']}, corpus test {osc['corpus_test_irm_share']}"
        )
    return 0
