"""A second MIDI program for the tests: sends what it reads on stdin to a JACK MIDI port with
python-rtmidi, stamps each send with the JACK frame time, and records what a feedback port
sends back. It runs in its own process because a JACK client in sync mode must never wait for
a Python interpreter lock that a blocking JACK call of the same process holds.

stdin:  'b0 00 7f' (hex bytes of one message) | 'quit'
stdout: 'ready' | 'sent <frame time>' | 'feedback <json list of messages>' (on quit)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jack
import rtmidi


def find(port_list_fn, substring: str, timeout: float = 60.0) -> int:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        ports = port_list_fn()
        hits = [i for i, p in enumerate(ports) if substring in p]
        if hits:
            return hits[0]
        time.sleep(0.05)
    raise SystemExit(f"midi_peer: no MIDI port matches {substring!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--send-to", required=True)
    ap.add_argument("--listen", default=None)
    a = ap.parse_args()
    clock = jack.Client("ldmidi-clock", no_start_server=True)  # never activated: only reads the frame clock
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="ldsender")
    out.open_port(find(out.get_ports, a.send_to))
    got = []
    inp = None
    if a.listen:
        inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="ldreceiver")
        inp.set_callback(lambda ev, d=None: got.append(list(ev[0])))
        inp.open_port(find(inp.get_ports, a.listen))
    print("ready", flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "quit":
            break
        msg = [int(b, 16) for b in line.split()]
        t = clock.frame_time
        out.send_message(msg)
        print(f"sent {t}", flush=True)
    time.sleep(0.2)
    out.close_port()
    out.delete()
    if inp is not None:
        inp.cancel_callback()
        inp.close_port()
        inp.delete()
    clock.close()
    print("feedback " + json.dumps(got), flush=True)


if __name__ == "__main__":
    main()
