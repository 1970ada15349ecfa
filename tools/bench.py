#!/usr/bin/env python3
"""`make bench`: figures measured on the MicroPython unix port, printed and written as JSON.

  tools/bench.py [--quick] [--json PATH] [--compare OLD.json] [--no-readme]

- memory, for three builds side by side (32-bit frozen, 32-bit .mpy, 64-bit source):
  idle heap, after a session, 50 and 1,000 transactions queued, the smallest heap for
  the standard scenario, bytes per message cycle (tools/bench/figures.py); the README's
  figures table is rewritten from them (between its `bench:memory` markers);
- where a message cycle's bytes go (64-bit, step by step; tools/bench/alloc_cycle.py);
- the heap after each profile beyond Core was used once, and the Local Authorization
  List's lookups with 1,000 and 5,000 entries (tools/bench/profiles.py);
- a replay of 1,000 transactions queued offline (tools/bench/replay.py), and the same
  work done by the `ocpp` package's ChargePoint on CPython against the same central
  system: rate and CPU per call side by side (tools/bench/peer.py).
--quick: a 10 s session and a coarser bisection, for a look during development (the
README is left alone).  The JSON (default bench.json) holds every figure, for
--compare between commits.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools" / "bench"))
from csmsctl import Csms  # noqa: E402
from helpers import micropython, mp_env  # noqa: E402
import figures  # noqa: E402

BLOCKS = {"memory": ("<!-- bench:memory -->", "<!-- /bench:memory -->"),
          "profiles": ("<!-- bench:profiles -->", "<!-- /bench:profiles -->"),
          "speed": ("<!-- bench:speed -->", "<!-- /bench:speed -->")}


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
    print("64-bit unix port, code from source (GC blocks of 32 B; 32-bit ports use 16 B):")
    print("  %-20s %12s %9s   %s" % ("message", "bytes/cycle", "us/cycle",
                                     "bytes: send + recv + json + rest"))
    worst = 0
    for name, f in rows:
        b = int(f["bytes_per_cycle"])
        worst = max(worst, b)
        print("  %-20s %12d %9s   %4s + %4s + %4s + %4s"
              % (name, b, f["us_per_cycle"], f["send"], f["recv"], f["json"], f["rest"]))
    print("  target: < 512 bytes per cycle -> %s" % ("met" if worst < 512 else "NOT MET"))
    return {name: {k: int(v) for k, v in f.items()} for name, f in rows}


TARGETS = {"idle": ("idle", 30 * 1024),
           "smallest": ("smallest heap for the standard scenario", 48 * 1024),
           "q1000": ("1,000 transactions queued", 56 * 1024)}


def memory(quick):
    print("Memory: gc.mem_alloc() after a collection; the standard scenario is boot, 2 "
          "connectors x %d s\nof 1 s MeterValues (2 measurands, kept for the "
          "StopTransaction), 50 transactions offline, replay." % (10 if quick else 60))
    t0 = time.monotonic()
    kw = {"session_s": 10, "probes": 3, "rounds": 2} if quick else {}
    res = figures.memory(**kw)
    print(figures.table(res))
    print(targets(res))
    print("  (%.0f s)" % (time.monotonic() - t0))
    return res


def targets(res):
    fz = res["32-bit frozen"]
    out = []
    for k, (label, t) in TARGETS.items():
        v = fz.get(k)
        out.append("- 32-bit frozen, %s: target under %d KB: %s" % (
            label, t // 1024, "-" if v is None else "%.1f KB, %s" % (
                v / 1024, "met" if v < t else "**not met**")))
    return "\n".join(out)


def speed_table(out):
    """Markdown: the replay of 1,000 queued transactions, and the ocpp package doing it."""
    r, p = out["replay"], out["peer"]
    rows = [("firmware (MicroPython unix port, 64-bit, tools/sim)", p["firmware"]),
            ("`ocpp` package ChargePoint, CPython, schema validation on (its default)",
             p["peer"]),
            ("the same, validation off", p["peer_no_validation"])]
    t = ["| replaying %d transactions (StartTransaction + StopTransaction with "
         "transactionData, one CALL at a time) | wall | transactions/s | CPU per CALL |"
         % r["transactions"], "|---|---|---|---|"]
    for name, f in rows:
        t.append("| %s | %.1f s | %.0f | %s |" % (
            name, f["wall_s"], f["tx_per_s"],
            "-" if f["cpu_ms_per_call"] is None else "%.2f ms" % f["cpu_ms_per_call"]))
    t.append("")
    t.append("Firmware CPU per transaction: %.2f ms (target under 2 ms: %s); against the "
             "`ocpp` package: rate x%.2f, CPU per CALL x%s. Journal bytes written: %d per "
             "transaction while offline, %d while replaying; delivered in order, "
             "schema-valid, none dropped: %s." % (
                 r["cpu_ms_per_tx"], "met" if r["cpu_ms_per_tx"] < 2 else "**not met**",
                 p["ratio"]["rate"], p["ratio"]["cpu_per_call"],
                 r["journal_bytes_build"] // r["transactions"],
                 r["journal_bytes_replay"] // r["transactions"], "yes" if r["ok"] else "NO"))
    return "\n".join(t)


def readme(blocks):
    """Rewrite the README's generated blocks: {name: markdown}."""
    path = ROOT / "README.md"
    text = path.read_text()
    for name, body in blocks.items():
        begin, end = BLOCKS[name]
        if begin not in text or end not in text:
            print("bench: README has no %s ... %s block; not updated" % (begin, end))
            continue
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + begin + "\n" + body + "\n" + end + tail
    path.write_text(text)
    print("bench: README.md figures rewritten (%s)" % ", ".join(blocks))


def compare(old, new, path=()):
    """Print every numeric figure that changed between two result files."""
    if isinstance(new, dict):
        for k, v in new.items():
            if isinstance(old, dict) and k in old:
                compare(old[k], v, path + (k,))
    elif isinstance(new, (int, float)) and isinstance(old, (int, float)) and old != new:
        print("  %-50s %10s -> %10s (%+.1f%%)" % ("/".join(path), old, new,
                                                 100.0 * (new - old) / old if old else 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=str(ROOT / "bench.json"))
    ap.add_argument("--compare")
    ap.add_argument("--no-readme", action="store_true")
    a = ap.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            stdout=subprocess.PIPE, text=True).stdout.strip()
    out = {"commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "quick": a.quick}
    out["memory"] = memory(a.quick)
    print()
    out["cycle"] = alloc_cycle()
    print()
    import profiles  # noqa: E402
    out["profiles"] = profiles.profiles()
    print()
    from replay import replay  # noqa: E402
    from peer import compare  # noqa: E402
    out["replay"] = replay()
    print()
    # The same work done by the usual Python choice, the ocpp package on CPython.
    out["peer"] = compare(firmware=out["replay"])
    if not (a.quick or a.no_readme):
        readme({"memory": figures.table(out["memory"]) + "\n\n" + targets(out["memory"]),
                "profiles": profiles.table(out["profiles"]),
                "speed": speed_table(out)})
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    print("\nbench: figures written to %s" % a.json)
    if a.compare:
        print("Changed since %s:" % a.compare)
        compare(json.loads(Path(a.compare).read_text()), out)


if __name__ == "__main__":
    main()
