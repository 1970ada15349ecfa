"""Power cuts during charging sessions: nothing is lost, nothing is corrupted.

The simulator is MicroPython itself, so SIGKILL is a power cut.  With
MPOCPP_KILL_AFTER_WRITES=N (firmware/main.py) it kills itself right after its Nth flash
write step (journal appends, including the point between a record's header and its
body, marks, deletes, and every store.atomic_write: tmp written, renamed), so a sweep
over N cuts the power at every write of a session.  After each cut the simulator is
started again on the same state directory and left to deliver its queue; then:

- every transaction the charger started (its StartTransaction was on flash, or the
  simulator said so) reached the central system with a StopTransaction: zero lost;
- each Start and Stop arrived once, or, where the cut may have lost the answer, once
  per power-on with identical content; none for a transaction that never existed;
- a stop the charger had recorded keeps its reason and meterStop; one cut while
  running is closed with reason PowerLoss; everything in chronological order, with
  timestamps that never go back and are never 1970, schema-valid;
- the journal is clean: at most the one record being written when the power went is
  reported torn, and after delivery it opens empty with nothing corrupt.

Scenarios (each a full sweep over its write steps):
  online   two sessions against a live central system, the second cut while running;
  offline  the same with no central system (clock never set, relative stamps), then
           delivered after the cut to a live one;
  replay   a queue built offline, cut at every write of its delivery (answers lost
           between the central system and the flash), then delivered.
"""
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mp.txlog import (EnvSim, Ledger, check_ledger, free_port, journal_check, messages,
                      prepare_state)

WORKERS = 6
CONFIG = {"MeterValueSampleInterval": 1,
          "StopTxnSampledData": "Energy.Active.Import.Register",
          "AllowOfflineTxForUnknownId": True,
          "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1}
KILL = "MPOCPP_KILL_AFTER_WRITES"
_STARTED = re.compile(r"tx: started local #(\d+) on connector (\d+) for (\S+), meterStart (\d+) Wh")
_STOPPED = re.compile(r"tx: stopped local #(\d+) on connector (\d+) \((\w+)\), meterStop (\d+) Wh")
_CUT = re.compile(r"sim: POWER CUT after write #(\d+) (\S+)")
_OPENED = re.compile(r"tx: journal holds \d+ message")     # the journal opened


# -- one session, driven from the host ------------------------------------------------------

def _session(tag1, tag2, online):
    """Steps: a session stopped by the button, a second one left running."""
    first = "boot: Accepted" if online else "link: connect failed"
    steps = [("wait", first), ("send", "plug 1"), ("send", "power 1 36000"),
             ("send", "swipe 1 " + tag1), ("wait", "tx: started local #1 ")]
    if online:
        steps += [("wait", r'>> \[2,"\d+","MeterValues"')]
    else:
        steps += [("sleep", 1.15)]                  # one periodic sample, on flash only
    steps += [("send", "stop 1"), ("wait", "tx: stopped local #1 "),
              ("send", "swipe 1 " + tag2), ("wait", "tx: started local #2 ")]
    if online:
        steps += [("wait", r'>> \[2,"\d+","StartTransaction",.*%s' % tag2), ("sleep", 0.2)]
    else:
        steps += [("sleep", 1.15)]
    return steps


def _drive(sim, steps, timeout=20):
    """Run the steps; a power cut (the simulator died) ends them early.  Returns True
    if the simulator is still running afterwards."""
    for op, arg in steps:
        if sim.died():
            return False
        if op == "send":
            if not sim.try_send(arg):
                return False
        elif op == "wait":
            try:
                sim.wait_line(arg, timeout=timeout)
            except AssertionError:
                if sim.died():
                    return False
                raise
        else:
            time.sleep(arg)
    return not sim.died()


def _cut(sim):
    """Power cut by the host (if the write hook has not cut already)."""
    sim.kill()
    sim.stop()


def _drain(url, cp, state, env=None, timeout=30):
    """Boot on `state` and wait until the journal is empty; returns the simulator
    (stopped) or, with a kill hook, possibly dead on the way."""
    sim = EnvSim(url, cp_id=cp, state=state, env=env)
    try:
        i = sim.wait_line(r"tx: journal holds (\d+) message", timeout=timeout)
        n = int(re.search(r"holds (\d+)", sim.lines[i]).group(1))
        if n:
            sim.wait_line(r"delivery: queue empty", timeout=timeout)
        else:
            sim.wait_line(r"boot: Accepted", timeout=timeout)
    except AssertionError:
        if not (env and sim.died()):
            sim.stop()
            raise
    sim.stop()
    return sim


_DAMAGE = ("torn/corrupt", "no valid record", "empty (interrupted create)",
           "leftover of an interrupted write", "unknown format", "unreadable")


def _torn(lines):
    """Damage the journal reported while opening (one line per damaged place)."""
    return [ln for ln in lines if ln.startswith("journal:") and any(d in ln for d in _DAMAGE)]


def _verify(csms, cp, state, runs, ctx):
    """Check the central system's view of `cp` and the journal left in `state`.
    runs: the simulators in order; the last one drained the queue."""
    led = Ledger(messages(csms, cp))
    check_ledger(led, ctx)
    assert [e for e in csms.invalid() if e.get("cp") == cp] == [], ctx
    cuts = []                       # per run: the path being written when it was cut
    for r in runs[:-1]:
        cut_at = None
        local = {}
        for ln in r.lines:
            m = _STARTED.search(ln)
            if m:
                local[m.group(1)] = (m.group(3), int(m.group(4)))
                t = led.find(m.group(3), int(m.group(4)))
                assert t is not None, "transaction %s never reported %s" % (m.group(0), ctx)
            m = _STOPPED.search(ln)
            if m and m.group(1) in local:
                tag, ms = local[m.group(1)]
                stop = led.find(tag, ms)["stops"][0].payload
                # A stop on flash keeps what it recorded.
                assert stop["meterStop"] == int(m.group(4)), ctx
                assert stop.get("reason", "Local") == m.group(3), ctx
            m = _CUT.search(ln)
            if m:
                cut_at = m.group(2)
        cuts.append(cut_at)
    # A transaction left running at the cut is closed with PowerLoss.
    for t in led.transactions():
        p = t["stops"][0].payload
        if t["starts"][0].payload["idTag"].endswith("B"):
            assert p.get("reason") == "PowerLoss", ctx
    # Damage: only the record being appended when the power went, and reported.  The
    # run after a cut may itself be cut before its journal opens (e.g. at its first
    # write, the boot counter): then a later run reports that damage.
    pending = []                    # cuts whose damage no journal open has reported yet
    for i, r in enumerate(runs[1:]):
        if cuts[i]:
            pending.append(cuts[i])
        torn = _torn(r.lines)
        assert len(torn) <= 1, "%s %s" % (torn, ctx)
        if torn:
            assert any(re.search(r"/journal/q/[tm]\d+$", c) for c in pending), \
                "damage without a cut append: %s %s %s" % (torn, pending, ctx)
        if any(_OPENED.search(ln) for ln in r.lines):
            pending = []
    q, corrupt, unknown, log = journal_check(state)
    assert (q, corrupt, unknown) == (0, 0, 0), "journal after delivery: %s %s" % (log, ctx)
    # Nothing left behind: no transactionId mapping, no running-transaction file.
    assert os.listdir(state / "journal" / "tx") == [], ctx
    assert [f for f in os.listdir(state / "tx") if not f.endswith(".tmp")] in (["seq"], []), ctx
    return led, ([c for c in cuts if c] or [None])[-1]


# -- the three scenarios ------------------------------------------------------------------

def _online(csms, tmp, n):
    cp = "ON%d" % n
    state = prepare_state(tmp / cp, CONFIG)
    s1 = EnvSim(csms.url, cp_id=cp, state=state, env={KILL: str(n)})
    try:
        if _drive(s1, _session("T%d-A" % n, "T%d-B" % n, True)):
            _cut(s1)
    finally:
        s1.stop()
    s2 = _drain(csms.url, cp, state)
    return _verify(csms, cp, state, [s1, s2], "[online, cut after write %d]" % n)


def _offline(csms, tmp, n, dead_url):
    cp = "OFF%d" % n
    state = prepare_state(tmp / cp, CONFIG)
    s1 = EnvSim(dead_url, cp_id=cp, state=state, env={KILL: str(n)})
    try:
        if _drive(s1, _session("U%d-A" % n, "U%d-B" % n, False)):
            _cut(s1)
    finally:
        s1.stop()
    s2 = _drain(csms.url, cp, state)
    return _verify(csms, cp, state, [s1, s2], "[offline, cut after write %d]" % n)


def _double(csms, tmp, n, m):
    """A cut during a session, then another during the recovery and replay."""
    cp = "DF%d-%d" % (n, m)
    state = prepare_state(tmp / cp, CONFIG)
    s1 = EnvSim(csms.url, cp_id=cp, state=state, env={KILL: str(n)})
    try:
        if _drive(s1, _session("W%d-%d-A" % (n, m), "W%d-%d-B" % (n, m), True)):
            _cut(s1)
    finally:
        s1.stop()
    s2 = _drain(csms.url, cp, state, env={KILL: str(m)})
    s3 = _drain(csms.url, cp, state)
    return _verify(csms, cp, state, [s1, s2, s3], "[double, cuts after writes %d, %d]" % (n, m))


def _replay(csms, tmp, n, template, s0):
    cp = "RE%d" % n
    state = tmp / cp
    shutil.copytree(template, state)
    s1 = _drain(csms.url, cp, state, env={KILL: str(n)})
    s2 = _drain(csms.url, cp, state)
    return _verify(csms, cp, state, [s0, s1, s2], "[replay, cut after write %d]" % n)


def _template(tmp, dead_url):
    """A state directory with an offline session queued and one cut while running."""
    state = prepare_state(tmp / "template", CONFIG)
    s0 = EnvSim(dead_url, cp_id="TEMPLATE", state=state)
    try:
        assert _drive(s0, _session("V-A", "V-B", False)), s0.tail(30)
        _cut(s0)
    finally:
        s0.stop()
    return state, s0


def _writes(sim):
    return [ln.split()[3] for ln in sim.lines if ln.startswith("sim: write #")]


def _dry_online(csms, tmp):
    state = prepare_state(tmp / "dry-on", CONFIG)
    s = EnvSim(csms.url, cp_id="DRYON", state=state, env={KILL: "0"})
    try:
        assert _drive(s, _session("D-A", "D-B", True)), s.tail(30)
        _cut(s)
    finally:
        s.stop()
    return _writes(s)


def _dry_offline(tmp, dead_url):
    state = prepare_state(tmp / "dry-off", CONFIG)
    s = EnvSim(dead_url, cp_id="DRYOFF", state=state, env={KILL: "0"})
    try:
        assert _drive(s, _session("E-A", "E-B", False)), s.tail(30)
        _cut(s)
    finally:
        s.stop()
    return _writes(s)


def _dry_replay(csms, tmp, template):
    state = tmp / "dry-re"
    shutil.copytree(template, state)
    s = _drain(csms.url, "DRYRE", state, env={KILL: "0"})
    return _writes(s)


def _kinds(paths):
    """Kill points by the file being written (digits as N), for the summary line."""
    out = {}
    for p in paths:
        if p is None:
            k = "host cut"
        else:
            k = re.sub(r"^.*/(ON|OFF|RE)\d+/", "", p)      # relative to the state directory
            k = re.sub(r"\d+", "N", k)
        out[k] = out.get(k, 0) + 1
    return ", ".join("%s %d" % kv for kv in sorted(out.items()))


def _sweep(csms, tmp, stride=1, extra_online=0):
    dead = "ws://127.0.0.1:%d/ocpp" % free_port()
    with ThreadPoolExecutor(3) as ex:
        f_on = ex.submit(_dry_online, csms, tmp)
        f_off = ex.submit(_dry_offline, tmp, dead)
        f_tpl = ex.submit(_template, tmp, dead)
        w_on, w_off = f_on.result(), f_off.result()
        template, s0 = f_tpl.result()
    w_re = _dry_replay(csms, tmp, template)
    jobs = []
    t0 = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as ex:
        for n in range(1, len(w_on) + 1 + extra_online, stride):
            jobs.append(ex.submit(_online, csms, tmp, n))
        for n in range(1, len(w_off) + 1, stride):
            jobs.append(ex.submit(_offline, csms, tmp, n, dead))
        for n in range(1, len(w_re) + 1, stride):
            jobs.append(ex.submit(_replay, csms, tmp, n, template, s0))
        results = []
        failures = []
        for f in jobs:
            try:
                results.append(f.result())
            except AssertionError as e:
                failures.append(str(e))
    dt = time.monotonic() - t0
    assert not failures, "%d of %d kill points failed:\n\n%s" % (
        len(failures), len(jobs), "\n\n".join(x[:1500] for x in failures))
    dup = sum(1 for led, _ in results for t in led.transactions()
              if len(t["starts"]) > 1 or len(t["stops"]) > 1)
    print("power cuts: %d kill points (online %d writes, offline %d, replay %d) in %.1f s; "
          "resent after a lost answer in %d; cut at %s"
          % (len(jobs), len(w_on), len(w_off), len(w_re), dt, dup,
             _kinds(p for _, p in results)))
    return len(jobs), dup


def test_power_cut_at_every_write(start_csms, tmp_path):
    csms = start_csms("--heartbeat", "300")
    n, dup = _sweep(csms, tmp_path)
    assert n >= 100, n
    assert dup >= 1     # the sweep does reach "answered but not yet on flash"


@pytest.mark.slow
def test_power_cut_at_every_write_long(start_csms, tmp_path):
    # The same sweep three times (timing moves the writes around: samples, answers),
    # each against a central system of its own (the charge point ids repeat).
    for i in range(3):
        csms = start_csms("--heartbeat", "300")
        _sweep(csms, tmp_path / ("round%d" % i), extra_online=5)
        csms.stop()


@pytest.mark.slow
def test_power_cut_twice(start_csms, tmp_path):
    # A second cut during the recovery and replay after the first, at every write of
    # the replay, for cuts spread over the session.
    csms = start_csms("--heartbeat", "300")
    jobs = []
    with ThreadPoolExecutor(WORKERS) as ex:
        for n in range(2, 50, 4):
            for m in range(1, 26, 2):
                jobs.append(ex.submit(_double, csms, tmp_path, n, m))
        failures = []
        for f in jobs:
            try:
                f.result()
            except AssertionError as e:
                failures.append(str(e)[:1500])
    assert not failures, "%d of %d failed:\n\n%s" % (len(failures), len(jobs),
                                                    "\n\n".join(failures))
    print("power cut twice: %d pairs of kill points" % len(jobs))


def test_power_cut_while_charging_closes_with_last_saved_register(start_csms, tmp_path):
    # Reboot mid-transaction: StopTransaction PowerLoss, meterStop = the register last
    # saved (the sample before the cut), timestamp of that save; queued like the rest.
    csms = start_csms("--heartbeat", "300")
    state = prepare_state(tmp_path / "st", CONFIG)
    s1 = EnvSim(csms.url, cp_id="PL", state=state)
    try:
        s1.wait_line("boot: Accepted")
        s1.send("plug 1")
        s1.send("swipe 1 TAG-P")
        s1.wait_line("tx: started local #1 ")
        s1.send("pulses 1 1234")
        s1.wait_line(r'>> \[2,"\d+","MeterValues",.*"value":"1234"')
        s1.kill()
    finally:
        s1.stop()
    sample = [f for f in s1.frames() if f[0] == 2 and f[2] == "MeterValues"][-1][3]
    last_saved = max(int(v["sampledValue"][0]["value"]) for v in sample["meterValue"])
    s2 = _drain(csms.url, "PL", state)
    led = Ledger(messages(csms, "PL"))
    check_ledger(led)
    (t,) = led.transactions()
    stop = t["stops"][0].payload
    assert stop["reason"] == "PowerLoss"
    assert stop["meterStop"] == last_saved >= 1234
    assert stop["timestamp"] >= sample["meterValue"][0]["timestamp"]
    assert stop["transactionId"] == t["txids"][0]
    # The intermediate samples kept on flash before the cut (StopTxnSampledData every
    # MeterValueSampleInterval) are in the StopTransaction, between Begin and End.
    td = stop["transactionData"]
    ctx = [v["sampledValue"][0]["context"] for v in td]
    assert ctx[0] == "Transaction.Begin" and ctx[-1] == "Transaction.End"
    assert len(ctx) >= 3 and set(ctx[1:-1]) == {"Sample.Periodic"}, ctx
    regs = [int(v["sampledValue"][0]["value"]) for v in td]
    assert regs == sorted(regs) and last_saved in regs[1:-1], regs
    stamps = [v["timestamp"] for v in td]
    assert stamps == sorted(stamps), stamps
    assert not _torn(s2.lines)


def test_corrupt_record_costs_only_itself(start_csms, tmp_path):
    # A record damaged on flash while the charger was off (bit flip in a segment):
    # reported at boot, set aside in bad/, and every other message is still delivered.
    dead = "ws://127.0.0.1:%d/ocpp" % free_port()
    state = prepare_state(tmp_path / "st", dict(CONFIG, MeterValueSampleInterval=0))
    s1 = EnvSim(dead, cp_id="CR", state=state)
    try:
        s1.wait_line("link: connect failed")
        s1.send("plug 1")
        for i in range(3):
            s1.send("swipe 1 C%d" % i)
            s1.wait_line("tx: started local #%d " % (i + 1))
            s1.send("pulses 1 100")
            s1.send("stop 1")
            s1.wait_line("tx: stopped local #%d " % (i + 1))
        s1.stop()
    finally:
        s1.stop()
    seg = state / "journal" / "q"
    (name,) = [p for p in os.listdir(seg) if p.startswith("t") and "." not in p]
    data = bytearray((seg / name).read_bytes())
    i = data.index(b'"idTag":"C1"')          # the second StartTransaction
    data[i + 9] ^= 0x20                        # "C1" -> "c1": the CRC no longer matches
    (seg / name).write_bytes(bytes(data))
    csms = start_csms("--heartbeat", "300")
    s2 = _drain(csms.url, "CR", state)
    assert any("torn/corrupt" in ln for ln in s2.lines)
    assert os.listdir(state / "journal" / "bad")
    led = Ledger(messages(csms, "CR"))
    tags = [t["starts"][0].payload["idTag"] for t in led.transactions()]
    assert tags == ["C0", "C2"]
    # The damaged Start is gone; its Stop still goes, with transactionId -1 (errata 3.18).
    assert len(led.minus_one) == 1 and led.minus_one[0].payload["idTag"] == "C1"
    check_ledger(led, allow_minus_one=True)
    assert journal_check(state)[:3] == (0, 0, 0)
