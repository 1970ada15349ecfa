"""Schema-driven fuzzing of the charger through the central system.

Frames come from tests/fuzzgen.py: schema-valid requests of every central-system-to-
charger action (hypothesis-jsonschema on the official OCPP 1.6 schemas of the `ocpp`
package), near-valid ones (one fault each) and hostile ones (broken OCPP-J, deep
nesting, huge strings, surrogates, text that is not JSON).  Each is sent verbatim with
the central system's `send` command and judged by fuzzgen.expect/judge:

- a CALL gets one answer, to its uniqueId: a CALLRESULT valid against
  <Action>Response.json, or a CALLERROR with an OCPP-J code (a fitting one for a payload
  fault, a broken CALL or an unknown action); anything else is never answered;
- the link stays up (also for a frame over the 4 KB receive buffer: README says its
  rest is dropped, a CALL gets GenericError); everything the charger sends is JSON in
  valid UTF-8 (no 1007 from the central system), schema-valid; the simulator keeps
  running and logs no traceback.

Each frame is followed by a probe (GetConfiguration) whose answer bounds the wait: the
charger handles frames in order, so an answer to the frame comes before it.

Reset has a test of its own (a valid one restarts the charger).  What tools/csms cannot
send, a small websocket server in this module does: text frames that are not UTF-8
(RFC 6455: close 1007, then the charger reconnects) and nesting deeper than Python's
json.loads takes (`"[" * 2500`).

Frames go in bursts; around each burst a transaction runs (plug, swipe, power; stop or
unplug after it).  After each burst: the configuration and availability the burst
changed are restored, the charger answers GetConfiguration without having reconnected,
and every transaction's StartTransaction, MeterValues and StopTransaction arrived in
order with exactly one StopTransaction accepted (tests/mp/txlog.py).

`make test` runs a bounded, derandomized number of bursts; `--run-slow` ten times as
many.  MPOCPP_FUZZ_SEED=N draws from another seed; MPOCPP_FUZZ_SHRINK=1 lets hypothesis
shrink a failure (slow: every replay talks to the charger); MPOCPP_FUZZ_VERBOSE=1 prints
every frame and its first answer (with pytest -s).
"""
import asyncio
import json
import os
import re
import threading
import time

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import fuzzgen as F
from mp.txlog import Ledger, check_ledger, messages, prepare_state
from ocpp_steps import wait_calls, statuses

CP = "CP1"
# The simulated flash starts with these (ReconnectMinSeconds/MaxSeconds 1: a reconnect
# after a failure costs about a second; a sample every second for MeterValues).
CONFIG = {"MeterValueSampleInterval": 1, "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1,
          "MessageTimeout": 10}
PROBE_TIMEOUT = 10          # s for the answer to the probe after a frame
RECONNECT_TIMEOUT = 20      # s for the charger to come back after a close
SHOW_LINES = 25
VERBOSE = bool(os.environ.get("MPOCPP_FUZZ_VERBOSE"))   # print every frame (pytest -s)


def _fuzz_settings(pytestconfig, examples):
    slow = pytestconfig.getoption("--run-slow")
    phases = [Phase.explicit, Phase.generate]
    if os.environ.get("MPOCPP_FUZZ_SHRINK"):
        phases.append(Phase.shrink)
    s = settings(max_examples=examples * (10 if slow else 1), deadline=None, database=None,
                 derandomize="MPOCPP_FUZZ_SEED" not in os.environ, phases=phases,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.large_base_example,
                                        HealthCheck.filter_too_much],
                 print_blob=False)

    def deco(fn):
        fn = s(fn)
        if "MPOCPP_FUZZ_SEED" in os.environ:
            fn = seed(int(os.environ["MPOCPP_FUZZ_SEED"]))(fn)
        return fn
    return deco


def _short(text, n=600):
    if len(text) <= n:
        return text
    return "%s ...<%d chars>... %s" % (text[:n // 2], len(text), text[-120:])


class _TxView:
    """The central system's events for mp.txlog.messages, without the answer frames the
    fuzz itself sent (their uniqueIds may be lists or objects, which it cannot pair)."""

    def __init__(self, csms):
        self.csms = csms

    def events(self, ev=None, cp=None):
        out = []
        for e in self.csms.events(ev, cp):
            f = e.get("frame")
            if e.get("ev") == "send" and isinstance(f, list) and len(f) > 1 \
                    and f[0] in (3, 4) and not isinstance(f[1], str):
                continue
            out.append(e)
        return out


class Fuzz:
    """A simulated charger (one connector) booted against tools/csms, and the steps of
    the fuzz: send a frame and judge the outcome, bursts inside transactions."""

    def __init__(self, start_csms, start_sim, tmp_path, config=CONFIG):
        self.csms = start_csms("--heartbeat", "300", "--call-timeout", "15")
        self.view = _TxView(self.csms)
        state = prepare_state(tmp_path / "fuzz", config)
        self.sim = start_sim(self.csms.url, cp_id=CP, state=state)
        wait_calls(self.csms, "StatusNotification", 2, cp=CP, timeout=30)
        self.n = 0
        self.bursts = 0
        self.closes_allowed = 0        # reconnects a frame was allowed to cause
        self.dirty = True              # a burst may have left state behind
        self.baseline = self.configuration()

    # -- observations ------------------------------------------------------------------
    def connects(self):
        return len(self.csms.events("connect", cp=CP))

    def connected(self):
        evs = [e for e in self.csms.events(cp=CP) if e.get("ev") in ("connect", "disconnect")]
        return bool(evs) and evs[-1]["ev"] == "connect"

    def wait_connected(self, timeout=RECONNECT_TIMEOUT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.connected() and self.csms.events("connect", cp=CP):
                return True
            if not self.sim.alive():
                return False
            time.sleep(0.05)
        return False

    def configuration(self):
        r = self.csms.call(CP, "GetConfiguration", {})
        assert r.get("ok"), "GetConfiguration not answered: %s\n%s" % (r, self.context())
        return {k["key"]: k.get("value") for k in r["result"]["configurationKey"]}

    def context(self, line0=None, mark=None):
        sim_lines = self.sim.lines[line0:] if line0 is not None else self.sim.lines[-SHOW_LINES:]
        out = ["charger log:"]
        for ln in sim_lines[:SHOW_LINES]:
            out.append("  | " + _short(ln, 300))
        if len(sim_lines) > SHOW_LINES:
            out.append("  | ... %d more lines" % (len(sim_lines) - SHOW_LINES))
        evs = self.csms.events()[mark:] if mark is not None else self.csms.events()[-SHOW_LINES:]
        out.append("central system events:")
        for e in [e for e in evs if e.get("ev") != "reply"][:SHOW_LINES]:
            e = {k: v for k, v in e.items() if k != "t"}
            out.append("  | " + _short(json.dumps(e, ensure_ascii=True), 300))
        return "\n".join(out)

    # -- one frame ---------------------------------------------------------------------
    def check(self, frame):
        """Send `frame` (a fuzzgen.Frame), wait for the probe after it; returns
        (text, problems, context)."""
        csms, sim = self.csms, self.sim
        self.n += 1
        text = frame.render("fz%d" % self.n)
        exp = F.expect(text)
        probe = "probe-%d" % self.n
        if not self.wait_connected():
            return text, ["the charger is not connected before the frame"], self.context()
        mark, line0, conns0 = csms.mark(), len(sim.lines), self.connects()
        r = csms.cmd("send %s %s" % (CP, text))
        assert r.get("ok"), "csms could not send the frame: %s" % r
        csms.cmd('send %s [2,"%s","GetConfiguration",{"key":["HeartbeatInterval"]}]'
                 % (CP, probe))

        def settled(e):
            if e.get("cp") != CP:
                return False
            if e.get("ev") == "disconnect":
                return True
            f = e.get("frame")
            return e.get("ev") == "recv" and isinstance(f, list) and len(f) > 1 \
                and f[0] in (3, 4) and f[1] == probe
        problems = []
        try:
            csms.wait(settled, timeout=PROBE_TIMEOUT, after=mark)
        except AssertionError:
            problems.append("no answer to the probe after the frame within %ds (the charger "
                            "stopped serving its link?)" % PROBE_TIMEOUT)
        evs = [e for e in csms.events()[mark:] if e.get("cp") == CP]
        sent = [e for e in evs if e.get("ev") == "send"]
        first = sent[0].get("frame") if sent else None
        if not sent or (isinstance(first, list) and first[1:2] == [probe]):
            raise AssertionError("tools/csms did not send the frame (see its log):\n%s\n%s"
                                 % (_short(text), csms.log_text(20)))
        closed = [e for e in evs if e.get("ev") == "disconnect"]
        if closed:
            if self.wait_connected():
                if exp.close:
                    self.closes_allowed += self.connects() - conns0
            else:
                problems.append("the charger did not reconnect within %ds" % RECONNECT_TIMEOUT)
            evs = [e for e in csms.events()[mark:] if e.get("cp") == CP]
        answers, probe_answer = [], None
        for e in evs:
            f = e.get("frame")
            if e.get("ev") == "recv" and "raw" in e:
                problems.append("the charger sent a frame that is not JSON: %r"
                                % _short(e["raw"], 200))
            if e.get("ev") != "recv" or not isinstance(f, list) or not f or f[0] not in (3, 4):
                continue
            if len(f) > 1 and f[1] == probe:
                probe_answer = f
                break
            answers.append(f)
        request = None
        if exp.action == "GetConfiguration":
            request = F.loads(text)[3]
        problems += F.judge(exp, answers, request)
        if probe_answer is not None and probe_answer[0] != 3:
            problems.append("the probe GetConfiguration got %s" % (probe_answer,))
        for e in closed:
            code = e.get("code")
            if code == 1007:
                problems.append("the central system closed the link with 1007: the charger "
                                "sent invalid UTF-8 (%s)" % e.get("reason"))
            elif code not in exp.close:
                problems.append("the link was closed (code %s %s); it must stay up%s"
                                % (code, e.get("reason") or "",
                                   "" if not exp.close else " or close with %s" % (exp.close,)))
        for e in evs:
            if e.get("ev") == "invalid":
                problems.append("the charger sent something the central system refused: "
                                "%s %s: %s" % (e.get("kind"), e.get("action"), e.get("error")))
        if not sim.alive():
            problems.append("the simulator exited (code %s)" % sim.proc.returncode)
        new_lines = sim.lines[line0:]
        if any("Traceback" in ln or re.search(r"rpc: handler .* failed", ln) for ln in new_lines):
            problems.append("the firmware logged an exception")
        if any("---- reboot ----" in ln for ln in new_lines):
            problems.append("the charger rebooted")
        if VERBOSE:
            print("%s %s -> %s" % ("FAIL" if problems else "ok  ", _short(text, 200),
                                   answers[:1] or "-"))
        if not problems:
            return text, [], ""
        # The whole frame, to replay it (tools/csms: `send CP1 <frame>`); the report
        # shortens long ones.
        print("failing frame (%d characters), as sent:\n%s" % (len(text), text))
        return text, problems, self._report(text, exp, problems, line0, mark)

    def _report(self, text, exp, problems, line0, mark):
        return "\n".join(
            ["frame sent (%d bytes): %s" % (len(text.encode("utf-8", "surrogatepass")),
                                            _short(text)),
             "expected: %r" % exp, "problems:"] + ["  - " + p for p in problems]
            + [self.context(line0, mark)])

    # -- transactions around bursts -------------------------------------------------------
    def _tx_lines(self):
        started, stopped = set(), set()
        for ln in list(self.sim.lines):
            m = re.match(r"tx: (started|stopped) local #(\d+) ", ln)
            if m:
                (started if m.group(1) == "started" else stopped).add(int(m.group(2)))
        return started, stopped

    def _quiet(self, timeout=5):
        """Wait until the charger's CALLs are answered and its log is still for 0.3 s
        (an Authorize for a RemoteStartTransaction of the burst, and the start after)."""
        end = time.monotonic() + timeout
        last = (len(self.sim.lines), time.monotonic())
        while time.monotonic() < end:
            n = len(self.sim.lines)
            if n != last[0]:
                last = (n, time.monotonic())
            pending = [m for m in messages(self.view, CP)[-20:] if m.answer is None]
            if not pending and time.monotonic() - last[1] >= 0.3:
                return
            time.sleep(0.05)

    def clean(self, stop_with="stop"):
        """Back to the state a burst starts from: link up, the configuration and
        availability of the baseline, no transaction, cable out, connector Available."""
        assert self.wait_connected(), "the charger is not connected\n" + self.context()
        self._quiet()
        now = self.configuration()
        for k, v in sorted(now.items()):
            if self.baseline.get(k) != v and k in self.baseline:
                r = self.csms.call(CP, "ChangeConfiguration", {"key": k, "value": self.baseline[k]})
                assert r.get("ok") and r["result"]["status"] == "Accepted", \
                    "could not restore %s := %r (is %r): %s" % (k, self.baseline[k], v, r)
        for n in (1, 0):
            r = self.csms.call(CP, "ChangeAvailability", {"connectorId": n, "type": "Operative"})
            assert r.get("ok") and r["result"]["status"] == "Accepted", r
        self.sim.send("%s 1" % stop_with)
        for _ in range(20):
            started, stopped = self._tx_lines()
            if started <= stopped:
                break
            self.sim.send("stop 1")
            time.sleep(0.3)
        self.sim.send("unplug 1")
        started, stopped = self._tx_lines()
        assert started <= stopped, "transactions still running: %s" % sorted(started - stopped)
        self._delivered()
        self._wait_available()

    def _delivered(self, timeout=20):
        """Every transaction has its StopTransaction answered."""
        end = time.monotonic() + timeout
        while True:
            led = Ledger(messages(self.view, CP))
            open_ = [t for t in led.transactions() if not any(m.result is not None
                                                               for m in t["stops"])]
            if not open_:
                return led
            if time.monotonic() > end:
                raise AssertionError("StopTransaction not accepted for %s\n%s"
                                     % ([t["starts"][0] for t in open_], self.context()))
            time.sleep(0.1)

    def _wait_available(self, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = statuses(self.csms, 1, cp=CP)
            if s and s[-1] == "Available":
                return
            time.sleep(0.05)
        raise AssertionError("connector 1 not Available (statuses %s)\n%s"
                             % (statuses(self.csms, 1, cp=CP)[-5:], self.context()))

    def begin_tx(self):
        self.bursts += 1
        tag = "FZ%d" % self.bursts
        line0 = len(self.sim.lines)
        self.sim.send("plug 1")
        self.sim.send("power 1 7000")
        self.sim.send("swipe 1 " + tag)
        self.sim.wait_line(r"tx: started local #\d+ on connector 1 for %s," % tag, start=line0,
                           timeout=15)
        end = time.monotonic() + 15
        txid = None
        while txid is None:
            assert time.monotonic() < end, "StartTransaction of %s not answered\n%s" \
                % (tag, self.context())
            for m in messages(self.view, CP):
                if m.action == "StartTransaction" and m.payload.get("idTag") == tag and m.result:
                    txid = m.result.get("transactionId")
            time.sleep(0.05)
        while not any(m.action == "MeterValues" and m.payload.get("transactionId") == txid
                      and m.result is not None for m in messages(self.view, CP)):
            assert time.monotonic() < end, "no MeterValues for transaction %s\n%s" \
                % (txid, self.context())
            time.sleep(0.05)
        self.tx = (tag, txid)

    def end_tx(self):
        """Stop (or unplug, every other burst), restore, and check the transactions and
        the link."""
        conns = self.connects()
        self.clean("stop" if self.bursts % 2 else "unplug")
        led = self._delivered()
        check_ledger(led, "(burst %d)" % self.bursts)
        pos = {id(m): i for i, m in enumerate(led.msgs)}
        for t in led.transactions():
            accepted = [m for m in t["stops"] if m.result is not None]
            assert len(accepted) == 1, "%d StopTransactions accepted for %s" \
                % (len(accepted), t["starts"][0])
            a, b = pos[id(t["starts"][0])], pos[id(t["stops"][0])]
            late = [m for m in t["meters"] if not a < pos[id(m)] < b]
            assert not late, "MeterValues outside their transaction: %s" % late
        mine = led.find(self.tx[0])
        assert mine and mine["meters"], "no MeterValues for %s" % (self.tx,)
        # The charger still answers, on the same link.
        self.configuration()
        assert self.connects() == conns, "the charger reconnected while the burst ended\n" \
            + self.context()
        assert self.csms.invalid() == [], self.csms.invalid()

    # -- bursts --------------------------------------------------------------------------
    def burst(self, frames, collect=None):
        """A transaction around `frames`.  With `collect` (a list), failures are appended
        to it and the burst goes on; else the first one raises."""
        if self.dirty:
            self.clean()
        conns0, allowed0 = self.connects(), self.closes_allowed
        self.dirty = True
        self.begin_tx()
        for f in frames:
            text, problems, report = self.check(f)
            if problems:
                if collect is None:
                    raise AssertionError(report)
                collect.append(report)
        if collect is None:
            assert self.connects() - conns0 <= self.closes_allowed - allowed0, \
                "the charger reconnected during the burst\n" + self.context()
        self.end_tx()
        self.dirty = False


@pytest.fixture
def fuzz(start_csms, start_sim, tmp_path):
    return Fuzz(start_csms, start_sim, tmp_path)


def test_schema_valid_requests(fuzz, pytestconfig):
    """Schema-valid requests of the actions the charger implements (Reset aside) and of
    some it does not: a valid CALLRESULT or an OCPP-J CALLERROR, nothing else."""
    @_fuzz_settings(pytestconfig, 6)
    @given(frames=F.valid_frames())
    def bursts(frames):
        fuzz.burst(frames)
    bursts()


def test_near_valid_requests(fuzz, pytestconfig):
    """One fault per request (a field removed, retyped, out of range, too long, extra, a
    wrong enum value, a lone surrogate) or non-BMP text: a fitting CALLERROR for a fault."""
    @_fuzz_settings(pytestconfig, 6)
    @given(frames=F.near_valid_frames())
    def bursts(frames):
        fuzz.burst(frames)
    bursts()


def test_hostile_frames(fuzz, pytestconfig):
    """Near-valid requests mixed with broken OCPP-J, answers with unknown uniqueIds,
    deep nesting, huge strings, truncated JSON and text that is not JSON."""
    @_fuzz_settings(pytestconfig, 6)
    @given(frames=F.hostile_frames(max_size=8))
    def bursts(frames):
        fuzz.burst(frames)
    bursts()


def test_curated_hostile_frames(fuzz):
    """Every frame of fuzzgen.CURATED, in bursts of 25; all failures are reported
    together.  Then 40 frames that are not OCPP-J in a row: ignored, logged, and the log
    is rate-limited."""
    failures = []
    frames = [f for f in F.CURATED if F.unsafe(f.render("u1")) is None]
    try:
        for i in range(0, len(frames), 25):
            fuzz.burst(frames[i:i + 25], collect=failures)
        fuzz.clean()
    except AssertionError as e:       # the charger is gone or its transactions broke
        failures.append("the run stopped: %s" % e)
        raise AssertionError("%d failures:\n\n%s" % (len(failures), "\n\n".join(failures)))
    # Not OCPP-J, back to back: no answer, the link stays up, a few log lines at most.
    junk = ["[]", '{"a":1}', "not json", "[null]", '[9,"x",{}]', '[3,"nope",{}]', "[2]"] * 6
    junk = junk[:40]
    conns, line0, mark = fuzz.connects(), len(fuzz.sim.lines), fuzz.csms.mark()
    for t in junk:
        fuzz.csms.cmd("send %s %s" % (CP, t))
    text, problems, report = fuzz.check(F.Frame('[2,"' + F.UID + '","GetConfiguration",{}]'))
    logged = [ln for ln in fuzz.sim.lines[line0:]
              if not ln.startswith(("<< ", ">> ")) and "probe" not in ln]
    answered = [e["frame"] for e in fuzz.csms.events()[mark:]
                if e.get("ev") == "recv" and e.get("cp") == CP
                and isinstance(e.get("frame"), list) and e["frame"] and e["frame"][0] in (3, 4)
                and not str(e["frame"][1:2]).startswith(("['fz", "['probe"))]
    if fuzz.connects() != conns or problems or answered or not 1 <= len(logged) <= 10:
        failures.append("40 frames that are not OCPP-J, back to back: %d reconnects, answers %s, "
                        "%d log lines (expected 1 to 10: logged, rate-limited)%s\n%s"
                        % (fuzz.connects() - conns, answered[:5], len(logged),
                           "\n" + report if report else "", fuzz.context(line0, mark)))
    assert not failures, "%d failures:\n\n%s" % (len(failures), "\n\n".join(failures))


# -- Reset ------------------------------------------------------------------------------

def _reset_frames():
    return st.lists(F.near_valid_frame(actions=("Reset",),
                                       kinds=("remove", "retype", "enum", "extra", "null",
                                              "surrogate")),
                    min_size=1, max_size=4)


def test_reset_requests(fuzz, pytestconfig):
    """Reset with a faulty payload: a fitting CALLERROR and no restart.  A valid Reset
    (Soft, then Hard) during a transaction: Accepted, the charger boots again, and the
    transaction is stopped once (SoftReset / HardReset)."""
    @_fuzz_settings(pytestconfig, 4)
    @given(frames=_reset_frames())
    def bursts(frames):
        fuzz.burst(frames)
    bursts()
    for typ in ("Soft", "Hard"):
        fuzz.clean()
        fuzz.begin_tx()
        boots = len(fuzz.csms.calls("BootNotification", cp=CP))
        mark, line0 = fuzz.csms.mark(), len(fuzz.sim.lines)
        uid = "reset-%s" % typ
        fuzz.csms.cmd('send %s [2,"%s","Reset",{"type":"%s"}]' % (CP, uid, typ))
        ans = fuzz.csms.wait(lambda e: e.get("ev") == "recv" and isinstance(e.get("frame"), list)
                             and e["frame"][:2] in ([3, uid], [4, uid]), after=mark, timeout=10)
        assert ans["frame"][0] == 3 and ans["frame"][2] == {"status": "Accepted"}, ans
        fuzz.csms.wait_call("BootNotification", cp=CP, after=boots, timeout=30)
        assert fuzz.wait_connected()
        led = fuzz._delivered()
        t = led.find(fuzz.tx[0])
        assert t and t["stops"][0].payload.get("reason") == typ + "Reset", \
            (t, fuzz.context(line0, mark))
        fuzz.end_tx()


# -- invalid UTF-8: the central system cannot send it, a small server does --------------

class RawServer:
    """A minimal OCPP 1.6J central system on `websockets` (in a thread), for what
    tools/csms cannot send: text frames with invalid UTF-8, nesting deeper than Python's
    json.loads (which tools/csms runs on every frame it sends) can take.  It answers every
    CALL of the charger and keeps, per connection, the texts received and the close."""

    def __init__(self):
        from websockets.asyncio.server import serve
        self.conns = []          # {"conn", "msgs": [str], "rcvd": code, "sent": code, "done"}
        self.gone = False        # the charger did not come back
        self.loop = asyncio.new_event_loop()
        self._serve = serve
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def main():
            # max_size: the charger's answers are small; ping off: no extra traffic.
            self.server = await self._serve(self._handle, "127.0.0.1", 0,
                                            subprotocols=["ocpp1.6"], ping_interval=None)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.serve_forever()
        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    async def _handle(self, conn):
        rec = {"conn": conn, "msgs": [], "rcvd": None, "sent": None, "done": False}
        self.conns.append(rec)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        answers = {"BootNotification": {"currentTime": now, "interval": 300,
                                        "status": "Accepted"},
                   "Heartbeat": {"currentTime": now},
                   "Authorize": {"idTagInfo": {"status": "Accepted"}},
                   "StartTransaction": {"transactionId": 1,
                                        "idTagInfo": {"status": "Accepted"}}}
        try:
            async for msg in conn:
                rec["msgs"].append(msg)
                try:
                    f = json.loads(msg)
                except ValueError:
                    continue
                if isinstance(f, list) and len(f) == 4 and f[0] == 2:
                    await conn.send(json.dumps([3, f[1], answers.get(f[2], {})]))
        except Exception:
            pass
        p = conn.protocol
        rec["rcvd"] = p.close_rcvd.code if p.close_rcvd else None
        rec["sent"] = p.close_sent.code if p.close_sent else None
        rec["done"] = True

    def send(self, rec, data):
        """Send str or bytes (as a text frame, not checked) on connection `rec`."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        fut = asyncio.run_coroutine_threadsafe(rec["conn"].send(data, text=True), self.loop)
        fut.result(5)

    def check(self, sim, frame, n):
        """fuzzgen's judgement of `frame` (a Frame) sent here, as Fuzz.check does it for
        tools/csms: the answers before a probe's, and the link.  Returns problems."""
        text = frame.render("raw%d" % n)
        exp = F.expect(text)
        rec = self.conns[-1]
        n0, count, line0 = len(rec["msgs"]), len(self.conns), len(sim.lines)
        probe = "probe-%d" % n
        problems = []
        for data in (text, '[2,"%s","GetConfiguration",{"key":["HeartbeatInterval"]}]' % probe):
            try:
                self.send(rec, data)
            except Exception as e:
                problems.append("could not send: %r" % e)
                break

        def settled():
            return rec["done"] or any(m.startswith('[3,"%s"' % probe) for m in rec["msgs"][n0:])
        try:
            _wait(settled, PROBE_TIMEOUT, "the probe's answer")
        except AssertionError as e:
            problems.append(str(e) + ": the charger stopped serving its link (the rest is "
                            "not sent)")
            self.gone = True
        answers = []
        for m in rec["msgs"][n0:]:
            if m.startswith('[3,"%s"' % probe):
                break
            try:
                f = F.loads(m)
            except ValueError:
                problems.append("the charger sent a frame that is not JSON: %r" % m[:200])
                continue
            if isinstance(f, list) and f and f[0] in (3, 4):
                answers.append(f)
        problems += F.judge(exp, answers)
        if rec["done"]:
            if rec["sent"] == 1007:
                problems.append("the server closed with 1007: the charger sent invalid UTF-8")
            elif rec["rcvd"] not in exp.close:
                problems.append("the charger closed the link (code %s); it must stay up"
                                % rec["rcvd"])
            try:
                _wait(lambda: len(self.conns) > count, RECONNECT_TIMEOUT, "a new connection")
            except AssertionError as e:
                problems.append(str(e) + " (the charger is gone; the rest is not sent)")
                self.gone = True
        if not sim.alive():
            problems.append("the simulator exited")
            self.gone = True
        if problems:
            problems = ["frame sent (%d bytes): %s" % (len(text.encode("utf-8", "surrogatepass")),
                                                       _short(text, 300)),
                        "expected: %r" % exp] + ["  - " + p for p in problems] + \
                ["  | " + _short(ln, 200) for ln in sim.lines[line0:][:SHOW_LINES]]
        return problems

    def stop(self):
        def shut():
            self.server.close()
            for t in asyncio.all_tasks(self.loop):
                t.cancel()
        self.loop.call_soon_threadsafe(shut)
        self.thread.join(5)


INVALID_UTF8 = [
    b'[2,"u8a","GetConfiguration",{"key":["\xff"]}]',
    b'[2,"u8b","GetConfiguration",{"key":["\xc0\xaf"]}]',            # overlong "/"
    b'[2,"u8c","GetConfiguration",{"key":["EV\xed\xa0\xbd"]}]',      # a raw lone surrogate
    b'[2,"u8d","RemoteStartTransaction",{"idTag":"\xed\xa0\xbd\xed\xba\x97"}]',  # CESU pair
    b'[2,"u8e","GetConfiguration",{"key":["\xf0\x9f\x9a"]}]',        # cut 4-byte sequence
    b'[2,"u8f","GetConfiguration",{"key":["\xf4\x90\x80\x80"]}]',    # above U+10FFFF
    b'[3,"zz",{"a":"\x80"}]',
    b"\xfe\xff not json",
]


def _wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def _raw_charger(start_sim, tmp_path, srv, name):
    state = prepare_state(tmp_path / name, CONFIG)
    sim = start_sim("ws://127.0.0.1:%d/ocpp" % srv.port, cp_id=CP, state=state)
    _wait(lambda: srv.conns and any('"StatusNotification"' in m for m in srv.conns[0]["msgs"]),
          30, "the charger's StatusNotification")
    return sim


def test_invalid_utf8_closes_1007_and_reconnects(start_sim, tmp_path):
    """RFC 6455 8.1: a text frame that is not valid UTF-8 fails the connection with
    1007.  The charger closes with 1007 without answering, and connects again."""
    srv = RawServer()
    try:
        sim = _raw_charger(start_sim, tmp_path, srv, "u8")
        failures = []
        for data in INVALID_UTF8:
            rec, count, line0 = srv.conns[-1], len(srv.conns), len(sim.lines)
            n0 = len(rec["msgs"])
            srv.send(rec, data)
            try:
                _wait(lambda: rec["done"], 10, "the connection to close")
                _wait(lambda: len(srv.conns) > count, RECONNECT_TIMEOUT, "a new connection")
            except AssertionError as e:
                failures.append("%r: %s\n%s" % (data, e, "\n".join(sim.lines[line0:][:15])))
                if not rec["done"]:       # go on from a new connection
                    asyncio.run_coroutine_threadsafe(rec["conn"].close(1000), srv.loop).result(5)
                    _wait(lambda: len(srv.conns) > count, RECONNECT_TIMEOUT, "a new connection")
                continue
            answered = [m for m in rec["msgs"][n0:] if m.startswith(("[3,", "[4,"))]
            if rec["rcvd"] != 1007 or answered:
                failures.append("%r: the charger closed with %s (expected 1007)%s, answered %s\n%s"
                                % (data, rec["rcvd"],
                                   "; the server closed with %s" % rec["sent"]
                                   if rec["sent"] and rec["sent"] != rec["rcvd"] else "",
                                   answered, "\n".join(sim.lines[line0:][:15])))
        # The last connection works.
        rec = srv.conns[-1]
        n0 = len(rec["msgs"])
        srv.send(rec, '[2,"ok1","GetConfiguration",{"key":["HeartbeatInterval"]}]')
        _wait(lambda: any(m.startswith('[3,"ok1"') for m in rec["msgs"][n0:]), 10,
              "the answer to a GetConfiguration after all that")
        assert sim.alive()
        assert not failures, "%d failures:\n\n%s" % (len(failures), "\n\n".join(failures))
    finally:
        srv.stop()


def test_deep_nesting_beyond_the_central_system(start_sim, tmp_path):
    """fuzzgen.DEEP (nesting 1500 to 3000 deep, "[" * 2500), judged as every other frame:
    the link stays up, a CALL with a readable uniqueId gets a fitting CALLERROR."""
    srv = RawServer()
    try:
        sim = _raw_charger(start_sim, tmp_path, srv, "deep")
        failures = []
        for i, f in enumerate(F.DEEP):
            problems = srv.check(sim, f, i)
            if problems:
                failures.append("\n".join(problems))
            if srv.gone:
                break
        assert sim.alive()
        assert not failures, "%d failures:\n\n%s" % (len(failures), "\n\n".join(failures))
    finally:
        srv.stop()
