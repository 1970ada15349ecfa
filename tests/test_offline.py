"""The central system goes away: transaction messages are kept and delivered later.

- During a session the central system stops.  The session goes on (periodic
  MeterValues), stops, a second session runs offline (tag from the authorisation cache)
  and stops.  The central system comes back on the same address: the queued MeterValues,
  StopTransaction, StartTransaction, MeterValues, StopTransaction arrive in that order,
  schema-valid, with the timestamps of when they happened (inside the offline window,
  spaced by MeterValueSampleInterval); the StatusNotification of the current state
  overtakes them; a transaction message created during the replay waits behind the
  older ones; a response timeout during the replay is retried, not counted as a failure.
- Timestamps taken before the clock was set, in a power-on that never learnt the time,
  survive the reboot: never 1970, after everything that happened before, with their
  spacing kept.
- 1,000 transactions stopped offline are delivered in order after reconnecting.
"""
import time

from ocpp_steps import wait_status, start_conf
from mp.txlog import (EnvSim, Ledger, check_ledger, free_port, journal_check, messages,
                      parse_ts, prepare_state)

CONFIG = {"MeterValueSampleInterval": 2,
          "StopTxnSampledData": "Energy.Active.Import.Register",
          "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1,
          "MessageTimeout": 5}


def _utc(t):
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).replace(microsecond=0)


def _unanswered(csms, action, cp="CP1", timeout=20):
    """The first `action` CALL left without an answer for a second."""
    end = time.time() + timeout
    while time.time() < end:
        for m in messages(csms, cp):
            if m.action == action and m.answer is None and time.time() - m.t > 1:
                return [2, m.uid, m.action, m.payload]
        time.sleep(0.1)
    raise AssertionError("no unanswered %s" % action)


def test_central_system_goes_away_during_session(start_csms, start_sim, tmp_path):
    cs1 = start_csms("--heartbeat", "300")
    port = cs1.port
    state = prepare_state(tmp_path / "st", CONFIG)
    sim = start_sim(cs1.url, state=state)
    sim.wait_line("boot: Accepted")
    sim.send("plug 1")
    sim.send("power 1 36000")
    sim.send("swipe 1 TAG-A")
    wait_status(cs1, 1, "Charging")
    txid1 = start_conf(cs1)["transactionId"]
    cs1.wait_call("MeterValues", cp="CP1", timeout=10)          # online samples go at once
    # The central system goes away.
    down = time.time()
    cs1.stop()
    i = sim.wait_line("link: disconnected")
    sim.wait_line("link: connect failed", start=i)
    time.sleep(4.5)                                          # two samples, on flash only
    sim.send("stop 1")
    sim.wait_line("tx: stopped local #1 ")
    sim.send("swipe 1 TAG-A")                                # the cache authorises it
    sim.wait_line("tx: started local #2 ")
    time.sleep(4.5)
    sim.send("stop 1")
    sim.wait_line("tx: stopped local #2 ")
    up = time.time()
    # It comes back, on the same address.  A MeterValues of the replay (the first one
    # after the rule is set) goes unanswered once: a response timeout on a live link.
    cs2 = start_csms("--heartbeat", "300", "--port", port, "--first-txid", "500")
    cs2.cmd("silent MeterValues 1")
    mv = _unanswered(cs2, "MeterValues")
    # While the replay waits for that answer, a new session starts: its StartTransaction
    # is queued behind the older messages.
    sim.send("swipe 1 TAG-N")
    sim.wait_line("tx: started local #3 ")
    sim.wait_line(r'>> \[2,"\d+","StartTransaction",.*TAG-N', timeout=30)
    sim.send("stop 1")
    i = sim.wait_line("tx: stopped local #3 ")
    sim.wait_line("delivery: queue empty", timeout=30, start=i)

    calls = [c for c in cs2.calls(cp="CP1") if c[2] != "Heartbeat"]
    actions = [c[2] for c in calls]
    assert actions[0] == "StatusNotification"               # not transaction-related:
    assert actions.index("StatusNotification") < actions.index("MeterValues")  # overtakes
    tx = [c for c in calls if c[2] in ("StartTransaction", "StopTransaction", "MeterValues")]
    # The unanswered MeterValues went again, identical, and was not counted as a failure.
    k = tx.index(mv)
    assert tx[k + 1][2] == "MeterValues" and tx[k + 1][3] == mv[3] and tx[k + 1][1] != mv[1]
    # ... after a response timeout on the live link, with nothing else sent meanwhile.
    a = sim.wait_line(r'>> \[2,"%s","MeterValues"' % mv[1], timeout=1)
    b = sim.wait_line(r"rpc: no answer to CALL %s within 5000 ms" % mv[1], timeout=1)
    assert b == sim.wait_line(r'>> \[2,|rpc: no answer', timeout=1, start=a + 1)
    assert not any("refused" in ln or "DROPPED" in ln for ln in sim.lines)
    del tx[k]
    kinds = [c[2] for c in tx]
    n1 = kinds.index("StopTransaction")
    n2 = kinds.index("StopTransaction", n1 + 1)
    assert kinds[:n1] == ["MeterValues"] * n1 and n1 >= 2
    assert kinds[n1 + 1] == "StartTransaction"
    assert kinds[n1 + 2:n2] == ["MeterValues"] * (n2 - n1 - 2) and n2 - n1 - 2 >= 2
    assert kinds[n2 + 1] == "StartTransaction" and tx[n2 + 1][3]["idTag"] == "TAG-N"
    # transactionIds: the first from before the outage, the second from the new system.
    assert all(c[3]["transactionId"] == txid1 for c in tx[:n1 + 1])
    assert all(c[3]["transactionId"] == 500 for c in tx[n1 + 2:n2 + 1])
    # Original timestamps: inside the offline window, in order, spaced by the interval.
    lo, hi = _utc(down - 1), _utc(up + 1)
    stamps = []
    for c in tx[:n2 + 1]:
        p = c[3]
        ts = [parse_ts(v["timestamp"]) for v in p["meterValue"]] if c[2] == "MeterValues" \
            else [parse_ts(p["timestamp"])]
        for t in ts:
            assert lo <= t <= hi, (c, lo, hi)
        stamps += ts
    assert stamps == sorted(stamps)
    for a, b in ((0, n1), (n1 + 2, n2)):
        mvs = [parse_ts(c[3]["meterValue"][0]["timestamp"]) for c in tx[a:b]]
        gaps = [(y - x).total_seconds() for x, y in zip(mvs, mvs[1:])]
        assert all(1 <= g <= 3 for g in gaps), gaps      # MeterValueSampleInterval = 2
        regs = [int(c[3]["meterValue"][0]["sampledValue"][0]["value"]) for c in tx[a:b]]
        assert regs == sorted(regs) and regs[-1] > regs[0]
    stop1 = tx[n1][3]
    assert stop1["meterStop"] >= int(tx[n1 - 1][3]["meterValue"][0]["sampledValue"][0]["value"])
    # transactionData: Begin, the periodic samples taken offline (the same instants as
    # the MeterValues of that transaction), End.
    td = stop1["transactionData"]
    ctx = [d["sampledValue"][0]["context"] for d in td]
    assert ctx[0] == "Transaction.Begin" and ctx[-1] == "Transaction.End", ctx
    assert len(ctx) >= 3 and set(ctx[1:-1]) == {"Sample.Periodic"}, ctx
    sampled = {c[3]["meterValue"][0]["timestamp"]                 # online ones went to cs1
               for c in tx[:n1] + cs1.calls("MeterValues", cp="CP1")}
    assert all(d["timestamp"] in sampled for d in td[1:-1])
    assert cs2.invalid() == [] and cs1.invalid() == []
    # Nothing was sent twice except the unanswered MeterValues.
    assert len(cs2.calls("StopTransaction", cp="CP1")) == 3
    assert len(cs1.calls("StopTransaction", cp="CP1")) == 0


def test_stamps_before_the_clock_survive_a_reboot(start_csms, tmp_path):
    # Power-on 1 learns the time and charges; power-on 2 never reaches the central system
    # (no clock: relative stamps), charges and is cut; power-on 3 delivers.  The stamps of
    # power-on 2 are resolved from the last time saved before it (a lower bound), so they
    # come after everything of power-on 1, keep their spacing, and are never 1970.
    csms = start_csms("--heartbeat", "300")
    state = prepare_state(tmp_path / "st", dict(CONFIG, MeterValueSampleInterval=0))
    s1 = EnvSim(csms.url, cp_id="TB", state=state)
    try:
        s1.wait_line("boot: Accepted")
        s1.send("plug 1")
        s1.send("swipe 1 TAG-T")
        s1.wait_line("tx: started local #1 ")
        time.sleep(3.2)                     # the stop is well after the clock was set
        s1.send("stop 1")
        s1.wait_line("delivery: queue empty")
    finally:
        s1.stop()
    dead = "ws://127.0.0.1:%d/ocpp" % free_port()
    s2 = EnvSim(dead, cp_id="TB", state=state)
    try:
        s2.wait_line("link: connect failed")
        s2.send("swipe 1 TAG-T")
        s2.wait_line("tx: started local #2 ")
        time.sleep(2.2)
        s2.send("stop 1")
        s2.wait_line("tx: stopped local #2 ")
        s2.kill()
    finally:
        s2.stop()
    before = time.time()
    s3 = EnvSim(csms.url, cp_id="TB", state=state)
    try:
        s3.wait_line("delivery: queue empty")
    finally:
        s3.stop()
    led = Ledger(messages(csms, "TB"))
    check_ledger(led)
    t1, t2 = led.transactions()
    stop1 = parse_ts(t1["stops"][0].payload["timestamp"])
    start2 = parse_ts(t2["starts"][0].payload["timestamp"])
    stop2 = parse_ts(t2["stops"][0].payload["timestamp"])
    assert stop1 <= start2 <= stop2 <= _utc(before + 1)
    assert 1 <= (stop2 - start2).total_seconds() <= 4       # the 2.2 s offline session
    # Sent only after power-on 3 connected (the central system's second BootNotification).
    assert all(m.boot == 2 for m in t2["starts"] + t2["stops"])


def test_thousand_transactions_offline_delivered_in_order(start_csms, tmp_path):
    n = 1000
    csms = start_csms("--heartbeat", "3600")
    csms.cmd("refuse 1000000")                               # the central system is away
    state = prepare_state(tmp_path / "st", {"MeterValueSampleInterval": 0,
                                            "AllowOfflineTxForUnknownId": True,
                                            "StopTxnSampledData":
                                                "Energy.Active.Import.Register",
                                            "ReconnectMinSeconds": 1,
                                            "ReconnectMaxSeconds": 1})
    sim = EnvSim(csms.url, cp_id="K", state=state)
    try:
        sim.wait_line("link: connect failed")
        sim.send("plug 1")
        for i in range(n):
            sim.send("swipe 1 K%04d" % i)
            sim.send("pulses 1 7")
            sim.send("swipe 1 K%04d" % i)
            if i % 100 == 99:
                sim.wait_line("tx: stopped local #%d " % (i + 1), timeout=60)
        assert not any(">> " in ln and "Transaction" in ln for ln in sim.lines)
        t0 = time.monotonic()
        csms.cmd("refuse 0")
        sim.wait_line("delivery: queue empty", timeout=120)
        replay = time.monotonic() - t0
    finally:
        sim.stop()
    msgs = [m for m in messages(csms, "K") if m.action.endswith("Transaction")]
    assert len(msgs) == 2 * n
    assert [m.action for m in msgs] == ["StartTransaction", "StopTransaction"] * n
    assert [m.payload["idTag"] for m in msgs[::2]] == ["K%04d" % i for i in range(n)]
    for i in range(n):
        start, stop = msgs[2 * i], msgs[2 * i + 1]
        assert start.payload["meterStart"] == 7 * i
        assert stop.payload["meterStop"] == 7 * (i + 1)
        assert stop.payload["transactionId"] == start.result["transactionId"]
    check_ledger(Ledger(msgs))
    assert csms.invalid() == []
    assert journal_check(state)[:3] == (0, 0, 0)
    print("1000 offline transactions replayed in %.1f s" % replay)
