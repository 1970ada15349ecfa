"""Retries of transaction messages (OCPP 1.6 §3.7.1, errata 3.18).

- CALLERROR is a failure to process: the message is sent again after
  TransactionMessageRetryInterval x (number of earlier sends), and after
  TransactionMessageAttempts failures it is dropped, logged with its body, and the
  next message goes.  A CALLERROR never counts as delivered.  Failures are on flash:
  a reboot does not reset them, and neither a reboot nor an offline period spends any.
- A response timeout on a live link is sent again and is not a failure.
- A StartTransaction that is never answered (or dropped after its attempts) leaves its
  transaction with transactionId -1 in the MeterValues and StopTransaction that follow;
  answered late, the real id goes into everything still queued.
"""
import time

from ocpp_steps import wait_calls
from mp.txlog import EnvSim, Ledger, check_ledger, messages, prepare_state

TAG = "TAG-R"


def _cfg(**kw):
    c = {"TransactionMessageAttempts": 3, "TransactionMessageRetryInterval": 1,
         "MessageTimeout": 5, "MeterValueSampleInterval": 0,
         "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1}
    c.update(kw)
    return c


def _start(start_csms, start_sim, tmp_path, *csms_args, **cfg):
    csms = start_csms("--heartbeat", "300", *csms_args)
    sim = start_sim(csms.url, state=prepare_state(tmp_path / "st", _cfg(**cfg)))
    sim.wait_line("boot: Accepted")
    sim.send("plug 1")
    return csms, sim


def _times(csms, action):
    return [e["t"] for e in csms.events("recv", "CP1")
            if isinstance(e.get("frame"), list) and e["frame"][0] == 2 and e["frame"][2] == action]


def _until(fn, timeout=10):
    # fn() once it is true, else its last value after `timeout` s: what the central system
    # recorded may be read a moment after the simulator logged the answer it got.
    end = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < end:
        time.sleep(0.05)
        v = fn()
    return v


def _gaps(ts):
    return [round(b - a, 2) for a, b in zip(ts, ts[1:])]


def test_stop_callerror_twice_then_accepted(start_csms, start_sim, tmp_path):
    csms, sim = _start(start_csms, start_sim, tmp_path)
    sim.send("swipe 1 " + TAG)
    start = wait_calls(csms, "StartTransaction", 1)[0][3]
    csms.cmd("error StopTransaction InternalError 2")
    sim.send("stop 1")
    stops = wait_calls(csms, "StopTransaction", 3, timeout=15)
    # The same StopTransaction three times; refused twice, then delivered.
    assert len(set(repr(s[3]) for s in stops)) == 1 and len(set(s[1] for s in stops)) == 3
    ids = [s[1] for s in stops]

    def answered():
        return [f for f in csms.sent("CP1") if f[0] in (3, 4) and f[1] in ids]
    _until(lambda: len(answered()) == 3)
    answers = answered()
    assert [f[0] for f in answers] == [4, 4, 3]
    # Spacing: interval x 1, then interval x 2 (TransactionMessageRetryInterval = 1 s).
    g = _gaps(_times(csms, "StopTransaction"))
    assert 0.95 <= g[0] < 1.8 and 1.95 <= g[1] < 2.8, g
    assert any("failure 2 of 3" in ln for ln in sim.lines)
    assert not any("DROPPED" in ln for ln in sim.lines)
    assert stops[0][3]["transactionId"] == Ledger(messages(csms, "CP1")).find(TAG)["txids"][0]
    assert start["idTag"] == TAG and csms.invalid() == []


def test_stop_always_refused_is_dropped_and_the_next_goes(start_csms, start_sim, tmp_path):
    csms, sim = _start(start_csms, start_sim, tmp_path)
    sim.send("swipe 1 " + TAG)
    wait_calls(csms, "StartTransaction", 1)
    csms.cmd("error StopTransaction GenericError -1")
    sim.send("stop 1")
    sim.wait_line("tx: stopped local #1 ")
    sim.send("swipe 1 TAG-NEXT")               # a new transaction waits behind the Stop
    sim.wait_line("tx: started local #2 ")
    i = sim.wait_line("delivery: DROPPED StopTransaction local #1", timeout=15)
    # Logged with the message itself, so nothing is lost without a trace.
    assert '"meterStop":' in sim.lines[i] and '"idTag":"TAG-R"' in sim.lines[i]
    assert "after 3 CALLERRORs" in sim.lines[i]
    # Exactly TransactionMessageAttempts sends, spaced 1 s then 2 s.
    assert len(csms.calls("StopTransaction", cp="CP1")) == 3
    g = _gaps(_times(csms, "StopTransaction"))
    assert 0.95 <= g[0] < 1.8 and 1.95 <= g[1] < 2.8, g
    # The next message proceeds: the second StartTransaction, after the third refusal.
    nxt = wait_calls(csms, "StartTransaction", 2)[1]
    assert nxt[3]["idTag"] == "TAG-NEXT"
    assert _times(csms, "StartTransaction")[1] > _times(csms, "StopTransaction")[2]
    csms.cmd("error StopTransaction GenericError 0")
    sim.send("stop 1")
    assert wait_calls(csms, "StopTransaction", 4)[3][3]["transactionId"] == \
        [f for f in csms.sent("CP1") if f[0] == 3 and "transactionId" in f[2]][-1][2]["transactionId"]
    assert csms.invalid() == []


def test_failures_survive_a_reboot_and_offline_spends_none(start_csms, tmp_path):
    # Two CALLERRORs, a power cut during the (long) retry wait, a reboot with the central
    # system refusing connections for a while: the Stop goes again as soon as the link is
    # up, and its third CALLERROR (the count was kept on flash) drops it.
    csms = start_csms("--heartbeat", "300")
    state = prepare_state(tmp_path / "st", _cfg(TransactionMessageRetryInterval=60))
    s1 = EnvSim(csms.url, cp_id="CP1", state=state)
    try:
        s1.wait_line("boot: Accepted")
        s1.send("plug 1")
        s1.send("swipe 1 " + TAG)
        wait_calls(csms, "StartTransaction", 1)
        csms.cmd("error StopTransaction InternalError 2")
        s1.send("stop 1")
        wait_calls(csms, "StopTransaction", 1)
        # Second send only after 60 s: make it come at once by a reboot instead.
        s1.kill()
    finally:
        s1.stop()
    csms.cmd("refuse 3")
    s2 = EnvSim(csms.url, cp_id="CP1", state=state)
    try:
        s2.wait_line("delivery: StopTransaction local #1 refused .* failure 2 of 3", timeout=20)
        assert sum("503" in ln for ln in s2.lines) == 3       # offline: nothing spent
        s2.kill()                                               # cut again, failure 2 on flash
    finally:
        s2.stop()
    csms.cmd("error StopTransaction InternalError 1")
    s3 = EnvSim(csms.url, cp_id="CP1", state=state)
    try:
        s3.wait_line("delivery: DROPPED StopTransaction local #1 \\(after 3 CALLERRORs\\)",
                     timeout=20)
        s3.wait_line("delivery: queue empty")
    finally:
        s3.stop()
    assert len(csms.calls("StopTransaction", cp="CP1")) == 3
    assert [f[0] for f in csms.sent("CP1") if f[0] == 4] == [4, 4, 4]


def test_start_never_answered_goes_on_with_minus_one(start_csms, start_sim, tmp_path):
    # Errata 3.18: StartTransaction sent TransactionMessageAttempts times on a live link,
    # never answered: given up; its MeterValues and StopTransaction carry -1.
    csms, sim = _start(start_csms, start_sim, tmp_path, TransactionMessageAttempts=2,
                       MeterValueSampleInterval=1)
    csms.cmd("silent StartTransaction -1")
    sim.send("swipe 1 " + TAG)
    sim.wait_line("tx: started local #1 ")
    sim.send("pulses 1 250")
    sim.wait_line(r"rpc: no answer to CALL")            # first send timed out (5 s)
    sim.send("stop 1")
    i = sim.wait_line("delivery: StartTransaction local #1 unanswered 2 times: given up",
                      timeout=15)
    sim.wait_line("delivery: queue empty", start=i)
    starts = csms.calls("StartTransaction", cp="CP1")
    assert len(starts) == 2 and starts[0][3] == starts[1][3]     # the same message again
    mvs = csms.calls("MeterValues", cp="CP1")
    stop = csms.calls("StopTransaction", cp="CP1")[0][3]
    assert len(mvs) >= 3 and all(m[3]["transactionId"] == -1 for m in mvs)
    assert stop["transactionId"] == -1 and stop["meterStop"] == 250
    assert not any("refused" in ln or "failure" in ln for ln in sim.lines)  # no CALLERROR
    assert csms.invalid() == []                                  # -1 is schema-valid
    # Order: both Starts, then the samples, then the Stop.
    order = [c[2] for c in csms.calls(cp="CP1") if c[2] in ("StartTransaction", "MeterValues",
                                                            "StopTransaction")]
    assert order == ["StartTransaction"] * 2 + ["MeterValues"] * len(mvs) + ["StopTransaction"]


def test_start_dropped_after_callerrors_goes_on_with_minus_one(start_csms, start_sim, tmp_path):
    csms, sim = _start(start_csms, start_sim, tmp_path, TransactionMessageAttempts=2)
    csms.cmd("error StartTransaction InternalError 2")
    sim.send("swipe 1 " + TAG)
    sim.wait_line("tx: started local #1 ")
    sim.send("stop 1")
    sim.wait_line("delivery: DROPPED StartTransaction local #1 \\(after 2 CALLERRORs\\)")
    sim.wait_line("delivery: queue empty")
    assert len(csms.calls("StartTransaction", cp="CP1")) == 2
    assert csms.calls("StopTransaction", cp="CP1")[0][3]["transactionId"] == -1
    assert csms.invalid() == []


def test_start_answered_late_real_id_everywhere_and_timeouts_are_no_failures(
        start_csms, start_sim, tmp_path):
    # The StartTransaction's first send goes unanswered; meanwhile samples and the Stop
    # are queued.  Its resend is answered: every queued message carries the real id.
    # The Stop goes unanswered twice with TransactionMessageAttempts = 2: were response
    # timeouts failures, it would be dropped; it is sent a third time and delivered.
    csms, sim = _start(start_csms, start_sim, tmp_path, TransactionMessageAttempts=2,
                       MeterValueSampleInterval=1)
    csms.cmd("silent StartTransaction 1")
    csms.cmd("silent StopTransaction 2")
    sim.send("swipe 1 " + TAG)
    sim.wait_line("tx: started local #1 ")
    sim.wait_line(r"rpc: no answer to CALL")
    sim.send("stop 1")
    i = sim.wait_line("tx: stopped local #1 ")
    sim.wait_line("delivery: queue empty", start=i, timeout=45)
    led = Ledger(messages(csms, "CP1"))
    check_ledger(led)
    (t,) = led.transactions()
    assert len(t["starts"]) == 2 and len(t["txids"]) == 1
    txid = t["txids"][0]
    assert len(t["meters"]) >= 3 and all(m.payload["transactionId"] == txid for m in t["meters"])
    stops = t["stops"]
    assert len(stops) == 3 and stops[0].answer is None and stops[1].answer is None
    assert stops[2].payload["transactionId"] == txid and stops[2].result is not None
    assert not any("DROPPED" in ln or "refused" in ln for ln in sim.lines)
    assert csms.invalid() == []


def test_link_lost_while_waiting_spends_nothing(start_csms, start_sim, tmp_path):
    # TransactionMessageAttempts = 1: a single failure would drop the Stop.  Twice the
    # link goes down while the Stop waits for its answer: it is sent again after each
    # reconnect, and delivered the third time.
    csms, sim = _start(start_csms, start_sim, tmp_path, TransactionMessageAttempts=1)
    sim.send("swipe 1 " + TAG)
    wait_calls(csms, "StartTransaction", 1)
    csms.cmd("silent StopTransaction 2")
    sim.send("stop 1")
    for k in (1, 2):
        wait_calls(csms, "StopTransaction", k)
        i = len(sim.lines)
        assert csms.cmd("drop CP1")["ok"]
        sim.wait_line("link: connected", start=i)
    stops = wait_calls(csms, "StopTransaction", 3)
    sim.wait_line("delivery: queue empty", start=i)     # after the last reconnect
    assert len(set(repr(s[3]) for s in stops)) == 1

    def third_answered():
        (t,) = Ledger(messages(csms, "CP1")).transactions()
        return len(t["stops"]) == 3 and t["stops"][2].answer is not None
    _until(third_answered)
    led = Ledger(messages(csms, "CP1"))
    (t,) = led.transactions()
    assert [m.answer is None for m in t["stops"]] == [True, True, False]
    assert t["stops"][2].result is not None
    assert not any("DROPPED" in ln or "refused" in ln for ln in sim.lines)
