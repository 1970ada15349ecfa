"""`make bench` section: replay of transactions queued offline (CPython, called from
tools/bench.py).

The simulator (tools/sim, default heap) runs N transactions while the central system
(tools/csms) refuses its connections: each StartTransaction and StopTransaction (with
Transaction.Begin/End data) goes to the journal only.  Then the central system lets it
in and the queue is delivered, one CALL at a time, with schema validation on the
central system's side.  Printed: how long building and replaying took, messages per
second, the firmware's CPU time per transaction while replaying (user + system time of
the MicroPython process, from /proc), and the bytes the journal wrote (file data:
records, removal marks, transactionId log) while building and while replaying.

`replay(n)` prints the section and returns its figures as a dict (see FIELDS).
"""
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from csmsctl import Csms  # noqa: E402
from mp.txlog import EnvSim, messages, prepare_state  # noqa: E402

CONFIG = {"MeterValueSampleInterval": 0, "AllowOfflineTxForUnknownId": True,
          "StopTxnSampledData": "Energy.Active.Import.Register",
          "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1}

# Keys of the dict replay() returns.
FIELDS = ("transactions", "queued", "delivered", "build_s", "replay_s", "tx_per_s",
          "msgs_per_s", "cpu_s", "cpu_ms_per_tx", "cpu_ms_per_call", "heap_used",
          "heap_free", "heap_largest_free", "journal_bytes_build", "journal_bytes_replay",
          "ok")

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid):
    """User + system CPU seconds of process `pid` so far (Linux /proc), None if unknown."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state is field 3; utime
    # and stime are fields 14 and 15.
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def _wait(sim, pattern, start, timeout):
    """sim.wait_line, but each line is looked at once (wait_line scans every line from
    `start` again at each new one: thousands of lines during a replay, and that host CPU
    would be taken from the simulator and the central system)."""
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    k = start
    while True:
        n = len(sim.lines)
        for i in range(k, n):
            if rx.search(sim.lines[i]):
                return i
        k = n
        if time.monotonic() > end or not sim.alive():
            raise AssertionError("sim: no line matching %r within %ss; last lines:\n%s"
                                 % (pattern, timeout, sim.tail()))
        time.sleep(0.01)


def queue_offline(sim, n, prefix):
    """n transactions on connector 1 (plugged) while the link is down: swipe, 11 Wh,
    swipe; a pause every 100 for the simulator to catch up."""
    for i in range(n):
        sim.send("swipe 1 %s%05d" % (prefix, i))
        sim.send("pulses 1 11")
        sim.send("swipe 1 %s%05d" % (prefix, i))
        if i % 100 == 99:
            sim.wait_line("tx: stopped local #%d " % (i + 1), timeout=120)


def replay(n=1000, verbose=True):
    with tempfile.TemporaryDirectory() as tmp, \
            Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
        cs.cmd("refuse 1000000")
        state = prepare_state(Path(tmp) / "state", CONFIG)
        sim = EnvSim(cs.url, cp_id="BENCH", state=state)
        try:
            sim.wait_line("link: connect failed", timeout=60)
            sim.send("plug 1")
            t0 = time.monotonic()
            queue_offline(sim, n, "B")
            build = time.monotonic() - t0
            sim.wait_line("tx: stopped local #%d " % n, timeout=120)
            sim.send("heap")
            h = sim.wait_line(r"sim: heap used=", timeout=30)
            heap = dict(kv.split("=") for kv in sim.lines[h].split("sim: heap ")[1].split())
            # The firmware is idle now (link down, retrying once a second): its CPU from
            # here to the end of the queue is the replay's.
            pid = sim.proc.pid
            c1 = proc_cpu(pid)
            cs.cmd("refuse 0")
            i = _wait(sim, r"delivery: (\d+) messages queued, sending \(journal wrote (\d+) "
                           r"bytes so far\)", h, 60)
            t1 = time.monotonic()
            queued, built = (int(x) for x in re.search(r"(\d+) messages queued.*wrote (\d+)",
                                                       sim.lines[i]).groups())
            j = _wait(sim, r"delivery: queue empty", i, 600)
            t2 = time.monotonic()
            c2 = proc_cpu(pid)
            m = re.search(r"\((\d+) delivered, (\d+) dropped; journal wrote (\d+) bytes\)",
                          sim.lines[j])
            delivered, dropped, total = (int(x) for x in m.groups())
        finally:
            sim.stop()
        sent = [c for c in messages(cs, "BENCH") if c.action.endswith("Transaction")]
        invalid = len(cs.invalid())
    in_order = ([c.action for c in sent] == ["StartTransaction", "StopTransaction"] * n
                and [c.payload["idTag"] for c in sent[::2]] == ["B%05d" % i for i in range(n)])
    ok = (queued == 2 * n and delivered == 2 * n and not dropped and in_order and not invalid)
    replay_s = t2 - t1
    cpu = None if c1 is None or c2 is None else c2 - c1
    fig = {"transactions": n, "queued": queued, "delivered": delivered,
           "build_s": round(build, 3), "replay_s": round(replay_s, 3),
           "tx_per_s": round(n / replay_s, 1), "msgs_per_s": round(queued / replay_s, 1),
           "cpu_s": cpu, "cpu_ms_per_tx": None if cpu is None else round(cpu * 1000 / n, 3),
           "cpu_ms_per_call": None if cpu is None else round(cpu * 1000 / queued, 3),
           "heap_used": int(heap["used"]), "heap_free": int(heap["free"]),
           "heap_largest_free": int(heap["largest_free_block"]),
           "journal_bytes_build": built, "journal_bytes_replay": total - built, "ok": ok}
    if verbose:
        _print(fig)
    if not ok:
        raise SystemExit("bench: replay failed (queued %d, delivered %d, dropped %d, "
                         "received %d, invalid %d)" % (queued, delivered, dropped, len(sent),
                                                        invalid))
    return fig


def _print(f):
    n = f["transactions"]
    print()
    print("Replay of %d transactions queued offline (StartTransaction + StopTransaction"
          % n)
    print("with transactionData), simulator on the unix port, tools/csms on loopback:")
    print("  built offline in          %6.1f s  (host-driven: swipe, pulses, swipe)"
          % f["build_s"])
    print("  queued messages           %6d" % f["queued"])
    print("  heap with them queued     %6d bytes in use, %d free, largest free block %d"
          % (f["heap_used"], f["heap_free"], f["heap_largest_free"]))
    print("                                          (-X heapsize=176wK: tools/sim's default)")
    print("  replay, link up -> empty  %6.1f s  (%.0f messages/s, one CALL in flight)"
          % (f["replay_s"], f["msgs_per_s"]))
    if f["cpu_s"] is not None:
        print("  firmware CPU, replaying   %6.2f ms per transaction  (%.2f ms per CALL; user +"
              % (f["cpu_ms_per_tx"], f["cpu_ms_per_call"]))
        print("                                          system time of the MicroPython process)")
    print("  journal wrote, building   %6d bytes  (%d per transaction)"
          % (f["journal_bytes_build"], f["journal_bytes_build"] // n))
    print("  journal wrote, replaying  %6d bytes  (%d per transaction: marks, deletes,"
          % (f["journal_bytes_replay"], f["journal_bytes_replay"] // n))
    print("                                          transactionId log)")
    print("  delivered in order, schema-valid, none dropped -> %s"
          % ("yes" if f["ok"] else "NO"))


if __name__ == "__main__":
    replay(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
