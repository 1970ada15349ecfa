"""`make bench` section: replay of transactions queued offline (CPython, called from
tools/bench.py).

The simulator (tools/sim, default heap) runs N transactions while the central system
(tools/csms) refuses its connections: each StartTransaction and StopTransaction (with
Transaction.Begin/End data) goes to the journal only.  Then the central system lets it
in and the queue is delivered, one CALL at a time, with schema validation on the
central system's side.  Printed: how long building and replaying took, messages per
second, and the bytes the journal wrote (file data: records, removal marks,
transactionId map) while building and while replaying.
"""
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


def replay(n=1000):
    with tempfile.TemporaryDirectory() as tmp, \
            Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
        cs.cmd("refuse 1000000")
        state = prepare_state(Path(tmp) / "state", CONFIG)
        sim = EnvSim(cs.url, cp_id="BENCH", state=state)
        try:
            sim.wait_line("link: connect failed", timeout=60)
            sim.send("plug 1")
            t0 = time.monotonic()
            for i in range(n):
                sim.send("swipe 1 B%05d" % i)
                sim.send("pulses 1 11")
                sim.send("swipe 1 B%05d" % i)
                if i % 100 == 99:
                    sim.wait_line("tx: stopped local #%d " % (i + 1), timeout=120)
            build = time.monotonic() - t0
            sim.wait_line("tx: stopped local #%d " % n, timeout=120)
            sim.send("heap")
            h = sim.wait_line(r"sim: heap used=", timeout=30)
            heap = dict(kv.split("=") for kv in sim.lines[h].split("sim: heap ")[1].split())
            cs.cmd("refuse 0")
            i = sim.wait_line(r"delivery: (\d+) messages queued, sending \(journal wrote (\d+) "
                              r"bytes so far\)", timeout=60)
            t1 = time.monotonic()
            queued, built = (int(x) for x in re.search(r"(\d+) messages queued.*wrote (\d+)",
                                                       sim.lines[i]).groups())
            j = sim.wait_line(r"delivery: queue empty", start=i, timeout=600)
            t2 = time.monotonic()
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
    print()
    print("Replay of %d transactions queued offline (StartTransaction + StopTransaction"
          % n)
    print("with transactionData), simulator on the unix port, tools/csms on loopback:")
    print("  built offline in          %6.1f s  (host-driven: swipe, pulses, swipe)" % build)
    print("  queued messages           %6d" % queued)
    print("  heap with them queued     %6d bytes in use, %d free, largest free block %d"
          % (int(heap["used"]), int(heap["free"]), int(heap["largest_free_block"])))
    print("                                          (-X heapsize=176wK: tools/sim's default)")
    print("  replay, link up -> empty  %6.1f s  (%.0f messages/s, one CALL in flight)"
          % (replay_s, queued / replay_s))
    print("  journal wrote, building   %6d bytes  (%d per transaction)" % (built, built // n))
    print("  journal wrote, replaying  %6d bytes  (%d per transaction: marks, deletes,"
          % (total - built, (total - built) // n))
    print("                                          transactionId map)")
    print("  delivered in order, schema-valid, none dropped -> %s" % ("yes" if ok else "NO"))
    if not ok:
        raise SystemExit("bench: replay failed (queued %d, delivered %d, dropped %d, "
                         "received %d, invalid %d)" % (queued, delivered, dropped, len(sent),
                                                        invalid))
