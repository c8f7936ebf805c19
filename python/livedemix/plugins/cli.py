"""`livedemix plugins list [--json] [--all]` and `livedemix plugins show URI [--json]`."""

from __future__ import annotations

import json

from . import control_inputs, list_plugins, plugin_info


def _summary(p: dict) -> dict:
    audio = f"{p['audio_inputs']}→{p['audio_outputs']}"
    return {
        "uri": p["uri"],
        "name": p["name"],
        "class": p["class"],
        "audio": audio,
        "params": len(control_inputs(p)),
        "latency": p["has_latency"],
        "hostable": p["unsupported"] is None,
        "unsupported": p["unsupported"],
    }


def run(args) -> int:
    if args.action == "list":
        rows = [_summary(p) for p in list_plugins()]
        if not args.all:
            rows = [r for r in rows if r["hostable"]]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print("no LV2 effects found: install some, e.g. apt-get install lv2-examples mda-lv2 x42-plugins")
            return 0
        w = max(len(r["uri"]) for r in rows)
        print(f"{'URI':<{w}}  {'audio':<5}  {'params':>6}  latency  name")
        for r in rows:
            lat = "yes" if r["latency"] else "-"
            mark = "" if r["hostable"] else "   (not hostable)"
            print(f"{r['uri']:<{w}}  {r['audio']:<5}  {r['params']:>6}  {lat:<7}  {r['name']}{mark}")
        hidden = "" if args.all else " (effects livedemix can host; --all shows every plugin)"
        print(f"{len(rows)} plugins{hidden}")
        return 0
    # show
    if not args.uri:
        raise ValueError(
            "`plugins show` needs a plugin URI: e.g. livedemix plugins show http://lv2plug.in/plugins/eg-amp"
        )
    for uri in args.uri:
        p = plugin_info(uri)
        if args.json:
            print(json.dumps(p, indent=2))
            continue
        print(f"{p['name']}  <{p['uri']}>")
        print(f"  class: {p['class'] or '-'}   bundle: {p['bundle']}")
        mono = p["audio_inputs"] == 1 and p["audio_outputs"] == 1
        print(
            f"  audio: {p['audio_inputs']} in, {p['audio_outputs']} out"
            + (" (mono: one instance per channel on a stereo stem)" if mono else "")
        )
        print(f"  reports latency: {'yes' if p['has_latency'] else 'no'}")
        if p["unsupported"]:
            print(f"  NOT HOSTABLE: {p['unsupported']}")
        params = control_inputs(p)
        if params:
            print("  parameters (preset: params = { symbol = value }):")
            for sym, port in params.items():
                flags = [f for f in ("toggled", "integer", "enumeration", "logarithmic") if port.get(f)]
                extra = f"  [{', '.join(flags)}]" if flags else ""
                print(
                    f"    {sym:<16} {port['minimum']:>10g} .. {port['maximum']:<10g} default {port['default']:g}"
                    f"  {port['name']}{extra}"
                )
        outs = [q for q in p["ports"] if q["kind"] == "control" and q["direction"] == "output"]
        if outs:
            print("  outputs: " + ", ".join(q["symbol"] for q in outs))
    return 0
