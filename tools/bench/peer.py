"""`make bench` section: the firmware's replay next to the `ocpp` package doing the same.

The peer is the `ocpp` package's own charge point (ocpp.v16.ChargePoint, on CPython with
websockets), in a process of its own, against the same development central system
(tools/csms, schema validation on): N x StartTransaction + StopTransaction with
transactionData shaped as the firmware's (Transaction.Begin and Transaction.End
energy readings), one CALL at a time, each sent when the previous one is answered.  The
package is used as it comes: it validates each request and each answer against the
OCPP 1.6 JSON schemas (the firmware does not; the central system does for both); a
second run with its skip_schema_validation=True shows what that costs.

Measured for both, over the N transactions only (no start-up, no connect):
  wall time and rate (transactions per second);
  CPU per CALL of the charge point's process: time.process_time() in the peer, user +
  system time from /proc for the MicroPython process (tools/bench/replay.py).

    compare(n=1000, firmware=None, verbose=True) -> dict
        firmware: the dict tools/bench/replay.replay(n) returned in this run (else the
        firmware's replay is run here first).  Returns
        {"transactions", "calls", "peer": {...}, "peer_no_validation": {...},
         "firmware": {...}, "ratio": {...}};
        "peer", "peer_no_validation" (the same with skip_schema_validation=True) and
        "firmware" each hold "wall_s", "tx_per_s", "cpu_s", "cpu_ms_per_call",
        "cpu_ms_per_tx", "runtime"; "ratio" holds "rate" (firmware rate / peer rate)
        and "cpu_per_call" (firmware / peer), against the package's default ("peer").

Run alone: python tools/bench/peer.py [N]
"""
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

CP_ID = "PEER"


# -- the peer process ------------------------------------------------------------------

def _stamp():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def _peer(url, n, validate=True):
    import asyncio
    import websockets
    from websockets.asyncio.client import connect
    from ocpp.v16 import ChargePoint, call
    from ocpp.v16.datatypes import MeterValue, SampledValue
    from ocpp.v16.enums import Location, Measurand, ReadingContext, UnitOfMeasure

    def reading(wh, context):
        return MeterValue(timestamp=_stamp(), sampled_value=[SampledValue(
            value=str(wh), context=context, measurand=Measurand.energy_active_import_register,
            location=Location.outlet, unit=UnitOfMeasure.wh)])

    async with connect(url + "/" + CP_ID, subprotocols=["ocpp1.6"]) as ws:
        cp = ChargePoint(CP_ID, ws)
        reader = asyncio.ensure_future(cp.start())
        skip = not validate
        meter = 0
        ids = 0
        t0 = time.monotonic()
        c0 = time.process_time()
        for i in range(n):
            tag = "P%05d" % i
            start = meter
            r = await cp.call(call.StartTransaction(
                connector_id=1, id_tag=tag, meter_start=start, timestamp=_stamp()),
                skip_schema_validation=skip)
            meter += 11
            txid = r.transaction_id
            ids += isinstance(txid, int)
            await cp.call(call.StopTransaction(
                meter_stop=meter, timestamp=_stamp(), transaction_id=txid, id_tag=tag,
                transaction_data=[reading(start, ReadingContext.transaction_begin),
                                  reading(meter, ReadingContext.transaction_end)]),
                skip_schema_validation=skip)
        c1 = time.process_time()
        t1 = time.monotonic()
        reader.cancel()
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "answered_starts": ids,
            "runtime": "CPython %s, ocpp %s, websockets %s"
                       % (platform.python_version(), _version("ocpp"),
                          getattr(websockets, "__version__", "?"))}


def _version(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return "?"


def _child(url, n, validate):
    import asyncio
    print("PEER " + json.dumps(asyncio.run(_peer(url, n, validate))), flush=True)


# -- the comparison (host side) ------------------------------------------------------------

def run_peer(url, n, validate=True):
    """Run the peer in a process of its own against `url`; its figures (dict)."""
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", url, str(n)]
                       + ([] if validate else ["--no-validation"]),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    for ln in p.stdout.splitlines():
        if ln.startswith("PEER "):
            return json.loads(ln[5:])
    raise SystemExit("bench: the ocpp peer failed (exit %s):\n%s" % (p.returncode, p.stdout[-3000:]))


def _figures(wall, cpu, n, runtime):
    calls = 2 * n
    return {"wall_s": round(wall, 3), "tx_per_s": round(n / wall, 1),
            "cpu_s": None if cpu is None else round(cpu, 3),
            "cpu_ms_per_call": None if cpu is None else round(cpu * 1000 / calls, 3),
            "cpu_ms_per_tx": None if cpu is None else round(cpu * 1000 / n, 3),
            "runtime": runtime}


def compare(n=1000, firmware=None, verbose=True):
    from csmsctl import Csms
    from mp.txlog import messages
    if firmware is None:
        from replay import replay
        firmware = replay(n, verbose=False)
    n = firmware["transactions"]
    runs = []
    for validate in (True, False):
        with Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
            peer = run_peer(cs.url, n, validate)
            sent = [c for c in messages(cs, CP_ID) if c.action.endswith("Transaction")]
            invalid = len(cs.invalid())
        ok = (peer["answered_starts"] == n and invalid == 0
              and [c.action for c in sent] == ["StartTransaction", "StopTransaction"] * n
              and all(c.result is not None for c in sent))
        if not ok:
            raise SystemExit("bench: the ocpp peer's replay was not delivered as expected "
                             "(%d transaction CALLs, %d invalid, %d answered starts)"
                             % (len(sent), invalid, peer["answered_starts"]))
        runs.append(_figures(peer["wall_s"], peer["cpu_s"], n, peer["runtime"]))
    p = runs[0]
    f = _figures(firmware["replay_s"], firmware["cpu_s"], n,
                 "MicroPython 1.25 unix port (tools/sim)")
    out = {"transactions": n, "calls": 2 * n, "peer": p, "peer_no_validation": runs[1],
           "firmware": f,
           "ratio": {"rate": round(f["tx_per_s"] / p["tx_per_s"], 2),
                     "cpu_per_call": None if f["cpu_s"] is None else
                     round(f["cpu_ms_per_call"] / p["cpu_ms_per_call"], 2)}}
    if verbose:
        _print(out)
    return out


def _print(o):
    n = o["transactions"]
    print()
    print("The same replay by the `ocpp` package's ChargePoint (%d x StartTransaction +" % n)
    print("StopTransaction with transactionData, one CALL at a time, tools/csms on loopback):")
    print("  %-28s %8s %9s %12s" % ("", "wall", "tx/s", "CPU per CALL"))
    for key, name in (("firmware", "firmware, MicroPython unix"),
                      ("peer", "ocpp ChargePoint, CPython"),
                      ("peer_no_validation", "  the same, validation off")):
        f = o[key]
        cpu = "n/a" if f["cpu_ms_per_call"] is None else "%.2f ms" % f["cpu_ms_per_call"]
        print("  %-28s %6.1f s %9.0f %12s" % (name, f["wall_s"], f["tx_per_s"], cpu))
    r = o["ratio"]
    print("  firmware / ocpp: rate x%.2f, CPU per CALL x%s" % (
        r["rate"], "n/a" if r["cpu_per_call"] is None else "%.2f" % r["cpu_per_call"]))
    print("  peer: %s.  By default it validates requests and" % o["peer"]["runtime"])
    print("  answers against the OCPP 1.6 schemas (the firmware does not); ratios are to that.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), "--no-validation" not in sys.argv[4:])
    else:
        compare(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
