"""Statistics of a build, from its manifest: tables for docs/CORPUS.md and a figure."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
from livedemix import STEMS

from .material import PC_NAMES
from .verify import splits_disjoint

BEGIN, END = "<!-- stats:begin -->", "<!-- stats:end -->"


def load_manifest(root) -> list[dict]:
    out = []
    for line in (Path(root) / "manifest.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return sorted(out, key=lambda e: e["index"])


def _pct(xs, qs=(5, 25, 50, 75, 95)):
    xs = np.asarray([x for x in xs if x is not None and np.isfinite(x)], float)
    return [float(np.percentile(xs, q)) for q in qs] if xs.size else [float("nan")] * len(qs)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def summarize(entries: list[dict]) -> dict:
    hours = lambda es: sum(e["duration_s"] for e in es) / 3600
    s: dict = {"songs": len(entries), "hours": hours(entries)}
    s["splits"] = {
        sp: (len(es), hours(es), len({e["source"].split("#")[0] for e in es}))
        for sp in ("train", "valid", "test")
        for es in [[e for e in entries if e["split"] == sp]]
    }
    s["disjoint"] = splits_disjoint(entries)[0]
    s["durations"] = _pct([e["duration_s"] for e in entries])
    s["collections"] = collections.Counter(e["collection"] for e in entries)
    s["tempo"] = [e["tempo_qpm"] for e in entries]
    s["keys"] = collections.Counter(e["key"] for e in entries)
    s["modes"] = collections.Counter(e["mode"] for e in entries)
    s["meters"] = collections.Counter(e["meter"] for e in entries)
    s["styles"] = collections.Counter(e["drum_style"] for e in entries)
    s["modulated"] = sum(1 for e in entries if e["structure"].get("modulation"))
    inst = {st: collections.Counter() for st in STEMS}
    for e in entries:
        for p in e["parts"]:
            inst[p["stem"]][p["name"]] += 1
    s["instruments"] = inst
    s["vocal_sources"] = collections.Counter(e["vocal"]["source"] for e in entries)
    s["singers"] = collections.Counter(e["vocal"].get("singer") for e in entries if e["vocal"]["source"] != "none")
    s["espeak_langs"] = collections.Counter(
        e["vocal"]["espeak_voice"].split("+")[0] for e in entries if e["vocal"].get("espeak_voice")
    )
    s["lufs"] = {n: [e["stems"][n]["lufs"] for e in entries] for n in ("mixture",) + STEMS}
    s["peak"] = {n: [e["stems"][n]["peak_dbfs"] for e in entries] for n in ("mixture",) + STEMS}
    s["silent"] = {n: sum(e["stems"][n]["silent"] for e in entries) for n in STEMS}
    s["active"] = {n: [e["stems"][n]["active_fraction"] for e in entries if not e["stems"][n]["silent"]] for n in STEMS}
    s["rel"] = {
        n: [e["stems"][n]["lufs"] - e["stems"]["mixture"]["lufs"] for e in entries if e["stems"][n]["lufs"] is not None]
        for n in STEMS
    }
    s["rt60"] = [e["production"]["reverb_rt60_s"] for e in entries]
    s["comp"] = {
        n: np.mean(
            [("compressor" in e["production"].get(n, {})) for e in entries if not e["stems"][n]["silent"]] or [0]
        )
        for n in STEMS
    }
    return s


def markdown(s: dict, root: str) -> str:
    out = [
        f"Build `{root}`: **{s['songs']} songs, {s['hours']:.2f} hours** "
        f"(durations 5/50/95 %: {s['durations'][0]:.0f} / {s['durations'][2]:.0f} / {s['durations'][4]:.0f} s). "
        f"Splits disjoint by music21 source file: **{s['disjoint']}**.",
        "",
    ]
    out.append(
        _table(
            ["split", "songs", "hours", "distinct source files"],
            [[k, v[0], f"{v[1]:.2f}", v[2]] for k, v in s["splits"].items()],
        )
    )
    out += [
        "",
        "**Sources** (music21 collections, songs): " + ", ".join(f"{k} {v}" for k, v in s["collections"].most_common()),
        "",
    ]
    t = np.asarray(s["tempo"])
    out.append(
        "**Tempo** (quarter notes per minute): 5/25/50/75/95 % = "
        + " / ".join(f"{x:.0f}" for x in _pct(t))
        + "; histogram (20-qpm bins): "
        + ", ".join(
            f"{lo}-{lo + 20}: {int(((t >= lo) & (t < lo + 20)).sum())}"
            for lo in range(40, 260, 20)
            if ((t >= lo) & (t < lo + 20)).any()
        )
    )
    out += [
        "",
        f"**Keys**: {dict(s['modes'])}; by tonic: "
        + ", ".join(f"{k} {v}" for k, v in sorted(s["keys"].items(), key=lambda kv: (-kv[1], kv[0])))
        + f". Songs with a modulation in the last section: {s['modulated']}.",
        "",
    ]
    out += [
        "**Meters**: " + ", ".join(f"{k} {v}" for k, v in s["meters"].most_common()) + ". "
        "**Drum styles**: " + ", ".join(f"{k} {v}" for k, v in s["styles"].most_common()),
        "",
    ]
    out += [
        "**Vocal sources** (songs): "
        + ", ".join(f"{k} {v}" for k, v in s["vocal_sources"].most_common())
        + "; registers: "
        + ", ".join(f"{k} {v}" for k, v in s["singers"].most_common())
        + "; espeak-ng languages: "
        + ", ".join(f"{k} {v}" for k, v in s["espeak_langs"].most_common()),
        "",
    ]
    out.append("**Instruments** (parts per stem across songs; top 12 per stem):")
    out.append("")
    rows = []
    for st in STEMS:
        c = s["instruments"][st]
        rows.append([st, len(c), ", ".join(f"{k} ({v})" for k, v in c.most_common(12))])
    out += [_table(["stem", "distinct", "most used"], rows), ""]
    out.append(
        "**Loudness** (BS.1770 integrated LUFS of the stored files; percentiles over songs that feature the stem):"
    )
    out.append("")
    rows = []
    for n in ("mixture",) + STEMS:
        p = _pct(s["lufs"][n])
        r = _pct(s["rel"].get(n, [])) if n != "mixture" else [float("nan")] * 5
        silent = s["silent"].get(n, 0)
        act = _pct(s["active"].get(n, [1.0]), (5, 50))
        rows.append(
            [n]
            + [f"{x:.1f}" for x in p]
            + (
                [
                    f"{r[2]:+.1f}",
                    f"{silent} ({100 * silent / max(1, s['songs']):.1f} %)",
                    f"{act[0]:.2f} / {act[1]:.2f}",
                ]
                if n != "mixture"
                else ["", "", ""]
            )
        )
    out += [
        _table(
            [
                "file",
                "p5",
                "p25",
                "p50",
                "p75",
                "p95",
                "median re mixture (LU)",
                "silent songs",
                "active 1-s windows p5 / p50",
            ],
            rows,
        ),
        "",
    ]
    low = {n: sum(1 for f in s["active"][n] if f <= 0.5) for n in STEMS}
    out.append(
        "Featured stems active (> -50 dBFS) in at most half of the 1-s windows of their song: "
        + ", ".join(f"{n} {low[n]} of {len(s['active'][n])}" for n in STEMS)
        + "."
    )
    out.append("")
    out.append(
        "**Production**: reverb RT60 5/50/95 % = "
        + " / ".join(f"{x:.2f}" for x in _pct(s["rt60"], (5, 50, 95)))
        + " s; compressed stems: "
        + ", ".join(f"{n} {100 * s['comp'][n]:.0f} %" for n in STEMS)
        + "."
    )
    return "\n".join(out)


def figure(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(16, 9))
    a = ax[0, 0]
    a.hist(s["tempo"], bins=np.arange(40, 265, 10), color="C0")
    a.set_title("tempo (quarter notes / min)")
    a = ax[0, 1]
    labels = [f"{pc} {m}" for m in ("major", "minor") for pc in PC_NAMES]
    a.bar(range(24), [s["keys"].get(k, 0) for k in labels], color=["C1"] * 12 + ["C2"] * 12)
    a.set_xticks(range(24))
    a.set_xticklabels([l.replace(" major", "").replace(" minor", "m") for l in labels], rotation=90, fontsize=8)
    a.set_title("keys (orange major, green minor)")
    a = ax[0, 2]
    for i, n in enumerate(("mixture",) + STEMS):
        v = [x for x in s["lufs"][n] if x is not None]
        a.hist(v, bins=np.arange(-50, -5, 1), histtype="step", lw=1.6, label=n, color=f"C{i}")
    a.legend()
    a.set_title("integrated loudness per file (LUFS)")
    a = ax[1, 0]
    items = []
    for st in STEMS:
        items += [(f"{st}: {k}", v) for k, v in s["instruments"][st].most_common(6)]
    items.sort(key=lambda kv: kv[1])
    a.barh([k for k, _ in items], [v for _, v in items], color="C4")
    a.tick_params(axis="y", labelsize=7)
    a.set_title("most used instruments per stem (parts)")
    a = ax[1, 1]
    vs = s["vocal_sources"].most_common()
    a.bar([k for k, _ in vs], [v for _, v in vs], color="C5")
    a.set_title("vocal source (songs)")
    a = ax[1, 2]
    st = s["styles"].most_common()
    a.barh([k for k, _ in st][::-1], [v for _, v in st][::-1], color="C6")
    a.set_title("drum styles (songs)")
    fig.suptitle(f"livedemix synthetic corpus: {s['songs']} songs, {s['hours']:.1f} h")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=70)
    tmp.replace(path)


def write_stats(root, docs="docs") -> str:
    entries = load_manifest(root)
    s = summarize(entries)
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    figure(s, docs / "corpus_stats.png")
    md = markdown(s, str(root)) + "\n\n![corpus statistics](corpus_stats.png)\n"
    doc = docs / "CORPUS.md"
    if doc.exists() and BEGIN in doc.read_text():
        text = doc.read_text()
        a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
        tmp = doc.with_name(doc.name + ".tmp")
        tmp.write_text(text[:a] + "\n" + md + "\n" + text[b:])
        tmp.replace(doc)
    else:
        print(md)
    return md
