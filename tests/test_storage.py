"""Flash runs short while the central system is away (tools/sim --flash-kb: a small
simulated littlefs).

Offline window 1: two connectors charge with MeterValues every second.  When the flash
runs short the oldest MeterValues are dropped (logged by the journal, told to the
application: "storage: flash short"); the central system comes back and receives every
Start/Stop, and exactly the MeterValues left on flash: the newest ones (nothing of the
first sessions, a gap-free tail of the second ones).

Offline window 2: a session runs on connector 2 while short sessions follow each other
on connector 1 until the flash is full: its MeterValues go first, then a
StartTransaction is refused ("storage: full, StartTransaction refused", the relay stays
open, cp.storage() counts it), while the running session can still stop.  The central
system comes back: every Start and Stop of every session that started arrives, in
order, schema-valid, none lost.

Without a flash size (--flash-kb) nothing is ever dropped and the test fails on its first
bounded wait.
"""
import json
import re
import time

from mp.txlog import Ledger, messages, parse_ts, prepare_state

# 30 blocks of 4 KB; the state directory itself takes ~13 at boot, and the diagnostics
# log's ring (DiagnosticsLogKB 4: 4 files, a block each once past 128 B, and its
# directory) up to 6 more as the test runs.
FLASH_KB = 120
CP = "CP1"
CONFIG = {"MeterValueSampleInterval": 1,
          "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,"
                                    "Current.Import,Voltage",
          "StopTxnSampledData": "Energy.Active.Import.Register",
          "AllowOfflineTxForUnknownId": True,
          "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1, "DiagnosticsLogKB": 4}
TX = ("StartTransaction", "StopTransaction", "MeterValues")
_STORAGE = re.compile(r"sim: storage queued=(\d+) dropped_meter=(\d+) refused=(\d+) free=(\S+)")


def _storage(sim):
    """cp.storage() through the simulator's `storage` command."""
    i = len(sim.lines)
    sim.send("storage")
    m = _STORAGE.search(sim.lines[sim.wait_line(_STORAGE.pattern, timeout=10, start=i)])
    free = m.group(4)
    return {"queued": int(m.group(1)), "dropped_meter": int(m.group(2)),
            "refused": int(m.group(3)), "free": None if free == "None" else int(free)}


def _go_offline(csms, sim):
    i = len(sim.lines)
    csms.cmd("refuse 1000000")
    csms.cmd("drop %s" % CP)
    sim.wait_line("link: connect failed", start=i)


def _come_back(csms, sim, timeout=60):
    i = len(sim.lines)
    csms.cmd("refuse 0")
    sim.wait_line("delivery: queue empty", timeout=timeout, start=i)


def _lines(sim, pattern, start=0, end=None):
    rx = re.compile(pattern)
    return [(k, ln) for k, ln in enumerate(sim.lines[start:end], start) if rx.search(ln)]


def _dedup(msgs):
    seen = set()
    out = []
    for m in msgs:
        k = (m.action, json.dumps(m.payload, sort_keys=True))
        if k not in seen:
            seen.add(k)
            out.append(m)
    return out


def _check_delivery(sim, msgs):
    """Sessions overlap on two connectors (tests/mp/txlog.check_ledger assumes one after
    the other): every StartTransaction and StopTransaction the simulator queued arrived,
    each once, in the order the firmware logged them; every Stop and MeterValues names
    the transactionId its Start got; timestamps never go back.  Returns the Ledger."""
    want = []
    tag_of = {}
    for _, ln in _lines(sim, r"tx: (started|stopped) local #"):
        m = re.search(r"tx: started local #(\d+) on connector \d for (\S+),", ln)
        if m:
            tag_of[m.group(1)] = m.group(2)
            want.append(("StartTransaction", m.group(2)))
        else:
            n = re.search(r"stopped local #(\d+) ", ln).group(1)
            want.append(("StopTransaction", tag_of[n]))
    firsts = _dedup([m for m in msgs if m.action in TX])
    got = [(m.action, m.payload["idTag"]) for m in firsts if m.action != "MeterValues"]
    assert got == want
    led = Ledger(msgs)
    assert not led.orphans and not led.minus_one, (led.orphans, led.minus_one)
    for t in led.transactions():
        assert len(_dedup(t["starts"])) == 1 and len(_dedup(t["stops"])) == 1, t
        assert t["stops"][0].payload["meterStop"] >= t["starts"][0].payload["meterStart"]
    last = None
    for m in firsts:
        p = m.payload
        for ts in ([v["timestamp"] for v in p["meterValue"]] if m.action == "MeterValues"
                   else [p["timestamp"]]):
            ts = parse_ts(ts)
            assert last is None or ts >= last, "timestamps go back at %s" % m
            last = ts
    return led


def _energy(m):
    for v in m.payload["meterValue"][0]["sampledValue"]:
        if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
            return int(v["value"])
    raise AssertionError(m)


def test_flash_short_drops_oldest_meter_values_then_refuses_starts(start_csms, start_sim,
                                                                     tmp_path):
    t_begin = time.monotonic()
    csms = start_csms("--heartbeat", "300")
    state = prepare_state(tmp_path / "st", CONFIG)
    sim = start_sim(csms.url, cp_id=CP, state=state, connectors=2,
                    extra=["--flash-kb", str(FLASH_KB)])
    sim.wait_line("boot: Accepted")
    s0 = _storage(sim)
    assert s0["queued"] == 0 and s0["dropped_meter"] == 0 and s0["refused"] == 0, s0
    # The simulated flash: 120 KB minus the state directory counted in littlefs blocks
    # (the diagnostics ring takes some of the free blocks while the test runs).
    assert s0["free"] is not None and s0["free"] % 4096 == 0, s0
    assert 7 * 4096 <= s0["free"] <= 16 * 4096, \
        "simulated flash of %d KB not as expected (--flash-kb ignored, or the state " \
        "directory grew: adjust FLASH_KB): %s" % (FLASH_KB, s0)

    # ---- offline window 1: MeterValues fill the flash, the oldest are dropped ---------
    _go_offline(csms, sim)
    w1 = len(sim.lines)
    n_before = len(messages(csms, CP))
    for n in (1, 2):
        sim.send("plug %d" % n)
        sim.send("power %d %d" % (n, 11000 if n == 1 else 7400))
    sim.send("swipe 1 A1")
    sim.send("swipe 2 A2")
    sim.wait_line("tx: started local #1 ", start=w1)
    sim.wait_line("tx: started local #2 ", start=w1)
    time.sleep(4.2)                                   # about 4 samples per connector
    sim.send("swipe 1 A1")
    sim.send("swipe 2 A2")
    sim.wait_line("tx: stopped local #1 ", start=w1)
    sim.wait_line("tx: stopped local #2 ", start=w1)
    s1 = _storage(sim)
    m1 = s1["queued"] - 4                             # MeterValues of the first sessions
    assert m1 >= 4 and s1["dropped_meter"] == 0, s1
    sim.send("swipe 1 B1")
    sim.send("swipe 2 B2")
    sim.wait_line("tx: started local #3 ", start=w1)
    sim.wait_line("tx: started local #4 ", start=w1)
    # Until every MeterValues of the first sessions and a few of these are dropped.
    end = time.monotonic() + 45
    while True:
        s = _storage(sim)
        if s["dropped_meter"] >= m1 + 2:
            break
        assert time.monotonic() < end, "MeterValues never dropped: %s\n%s" % (s, sim.tail())
        time.sleep(0.5)
    time.sleep(1.5)
    sim.send("swipe 1 B1")
    sim.send("swipe 2 B2")
    sim.wait_line("tx: stopped local #3 ", start=w1)
    sim.wait_line("tx: stopped local #4 ", start=w1)
    s2 = _storage(sim)
    assert s2["refused"] == 0, s2
    meters_queued = s2["queued"] - 8
    # Logged by the journal record by record, and told to the application.
    dropped_log = _lines(sim, r"journal: flash short, dropped MeterValues seq \d+", w1)
    assert len(dropped_log) == s2["dropped_meter"]
    # The application's line (at most one a minute) counts every drop before it.
    app = _lines(sim, r"storage: flash short, \d+ MeterValues dropped \(oldest first\); "
                      r"(\d+) dropped since boot", w1)
    assert app
    for i, ln in app:
        since_boot = int(re.search(r"(\d+) dropped since boot", ln).group(1))
        assert since_boot == len([j for j, _ in dropped_log if j < i]) > 0, (ln, dropped_log)
    assert not _lines(sim, r"not queued|storage: full", w1)

    _come_back(csms, sim)
    msgs1 = messages(csms, CP)
    replay1 = _dedup([m for m in msgs1[n_before:] if m.action in TX])
    led = _check_delivery(sim, msgs1)
    txs = led.transactions()
    assert [t["starts"][0].payload["idTag"] for t in txs] == ["A1", "A2", "B1", "B2"]
    meters = [m for m in replay1 if m.action == "MeterValues"]
    assert len(meters) == meters_queued >= 4          # all that was left, each once
    for t in txs[:2]:                                 # the oldest: all dropped
        assert _dedup(t["meters"]) == [], t["meters"]
    # The newest: from the first one kept on, every sample of both sessions is there.
    kept = [parse_ts(m.payload["meterValue"][0]["timestamp"]) for m in meters]
    first_kept = min(kept)
    for t in txs[2:]:
        start = parse_ts(t["starts"][0].payload["timestamp"])
        stop = parse_ts(t["stops"][0].payload["timestamp"])
        mv = sorted(_dedup(t["meters"]), key=lambda m: m.payload["meterValue"][0]["timestamp"])
        ts = [parse_ts(m.payload["meterValue"][0]["timestamp"]) for m in mv]
        assert mv and start <= ts[0] and ts[-1] <= stop, (start, ts, stop)
        assert (ts[0] - max(first_kept, start)).total_seconds() <= 2, (first_kept, ts)
        assert (stop - ts[-1]).total_seconds() <= 2, (ts, stop)
        gaps = [(b - a).total_seconds() for a, b in zip(ts, ts[1:])]
        assert all(0 <= g <= 2 for g in gaps), gaps   # MeterValueSampleInterval = 1
        regs = [_energy(m) for m in mv]
        assert regs == sorted(regs)
    # The first samples of the second sessions went too (the oldest first).
    assert first_kept > min(parse_ts(t["starts"][0].payload["timestamp"]) for t in txs[2:])

    # ---- offline window 2: full; a StartTransaction is refused, a Stop still fits -----
    _go_offline(csms, sim)
    w2 = len(sim.lines)
    n_before = len(messages(csms, CP))
    sim.send("swipe 2 C2")
    sim.wait_line("tx: started local #5 ", start=w2)
    end = time.monotonic() + 15                       # MeterValues of connector 2
    while _storage(sim)["queued"] < 3:
        assert time.monotonic() < end, sim.tail()
        time.sleep(0.5)
    k = 0
    full = None
    while full is None:
        assert k < 200, "the flash never filled up: %s\n%s" % (_storage(sim), sim.tail())
        for _ in range(5):
            k += 1
            sim.send("swipe 1 Q%03d" % k)
            sim.send("pulses 1 3")
            sim.send("swipe 1 Q%03d" % k)
        _storage(sim)
        hits = _lines(sim, r"storage: full, StartTransaction refused", w2)
        full = hits[0][0] if hits else None
    # The MeterValues went first: dropped before any StartTransaction was refused.
    drops = _lines(sim, r"journal: flash short, dropped MeterValues", w2)
    assert drops and drops[0][0] < full
    not_queued = _lines(sim, r"tx: StartTransaction not queued", w2)
    assert not_queued and full < not_queued[0][0]      # told while refusing
    # Refused: the relay of connector 1 stays open from the refused swipe on.
    swipe = [i for i, ln in _lines(sim, r"sim: card Q\d+ at connector 1", w2) if i < full][-1]
    assert not _lines(sim, r"sim: relay 1 closed", swipe)
    s3 = _storage(sim)
    assert s3["refused"] >= 1 and s3["free"] < 16384, s3
    # The session that did start can still end (the journal keeps a reserve for Stops).
    i = len(sim.lines)
    sim.send("swipe 2 C2")
    sim.wait_line("tx: stopped local #5 on connector 2", start=i)
    assert not _lines(sim, r"StopTransaction of local #\d+ not queued")
    s4 = _storage(sim)
    started = [re.search(r"started local #(\d+) on connector \d for (\S+),", ln).groups()
               for _, ln in _lines(sim, r"tx: started local #")]
    stopped = [re.search(r"stopped local #(\d+) ", ln).group(1)
               for _, ln in _lines(sim, r"tx: stopped local #")]
    assert sorted(stopped, key=int) == [n for n, _ in started]
    assert len(started) > 6                           # short sessions did start

    _come_back(csms, sim)
    msgs = messages(csms, CP)
    led = _check_delivery(sim, msgs)                  # every Start, every Stop, in order
    txs = led.transactions()
    assert [t["starts"][0].payload["idTag"] for t in txs] == [tag for _, tag in started]
    for t in txs:
        assert len(_dedup(t["stops"])) == 1
        td = t["stops"][0].payload["transactionData"]  # never dropped: Begin and End
        assert td[0]["sampledValue"][0]["context"] == "Transaction.Begin"
        assert td[-1]["sampledValue"][0]["context"] == "Transaction.End"
    tx_msgs = [m for m in msgs if m.action in ("StartTransaction", "StopTransaction")]
    assert len(_dedup(tx_msgs)) == 2 * len(started)
    replay2 = _dedup([m for m in msgs[n_before:] if m.action == "MeterValues"])
    assert len(replay2) == s4["queued"] - 2 * (len(started) - 4)
    assert csms.invalid() == []
    assert not _lines(sim, r"DROPPED|Traceback")
    print("storage test: %d sessions, %d MeterValues dropped, %d refused, %.1f s"
          % (len(started), s4["dropped_meter"], s4["refused"], time.monotonic() - t_begin))
