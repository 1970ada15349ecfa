#!/usr/bin/env python3
"""`make bench`: figures measured on the MicroPython unix port.

- heap bytes allocated per steady-state message cycle (encode, send, receive the
  CALLRESULT, dispatch), against tools/csms on loopback; target < 512 B per cycle;
- and where they go: send (envelope, encode, mask, socket write), recv (websocket
  receive of the CALLRESULT, the wait for it included), json (json.loads of it) and
  rest (dispatch, waking the caller), from a step-by-step run;
- a replay of 1,000 transactions queued offline (time, journal bytes, heap);
- the firmware's heap after a charging session, code and objects apart.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from csmsctl import Csms  # noqa: E402
from helpers import micropython, mp_env  # noqa: E402


def alloc_cycle():
    with Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
        p = subprocess.run([micropython(), "-X", "heapsize=112wK",
                            str(ROOT / "tools" / "bench" / "alloc_cycle.py"), cs.url],
                           env=mp_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=300)
    rows = [l.split()[1:] for l in p.stdout.splitlines() if l.startswith("BENCH ")]
    rows = [(r[0], dict(kv.split("=") for kv in r[1:])) for r in rows]
    if p.returncode or not rows:
        print(p.stdout)
        raise SystemExit("bench: alloc_cycle failed")
    print("Steady-state message cycle (encode, mask, send, CALLRESULT, parse, dispatch),")
    print("MicroPython %s unix port, 64-bit (GC blocks of 32 B; an ESP32 uses 16 B):"
          % "1.25")
    print("  %-20s %12s %9s   %s" % ("message", "bytes/cycle", "us/cycle",
                                     "bytes: send + recv + json + rest"))
    worst = 0
    for name, f in rows:
        b = int(f["bytes_per_cycle"])
        worst = max(worst, b)
        print("  %-20s %12d %9s   %4s + %4s + %4s + %4s"
              % (name, b, f["us_per_cycle"], f["send"], f["recv"], f["json"], f["rest"]))
    print("  target: < 512 bytes per cycle -> %s" % ("met" if worst < 512 else "NOT MET"))


if __name__ == "__main__":
    alloc_cycle()
    # Transaction replay after an offline period: tools/bench/replay.py
    sys.path.insert(0, str(ROOT / "tools" / "bench"))
    from replay import replay  # noqa: E402
    replay()
    # Heap of the whole firmware after a session: tools/bench/session.py
    print()
    from session import session_heap  # noqa: E402
    session_heap()
