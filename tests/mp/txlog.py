"""Host-side helpers for the delivery proofs (tests/test_offline.py, test_powercut.py,
test_retries.py, tools/bench/replay.py): a simulator with an environment and a
preset configuration, and a reading of what the central system received.

CPython code (not run on MicroPython), kept here with the other test helpers."""
import datetime
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from helpers import ROOT, micropython, mp_env  # noqa: E402
from simctl import Sim  # noqa: E402

TX_ACTIONS = ("StartTransaction", "StopTransaction", "MeterValues")
CHECK_SCRIPT = ROOT / "tests" / "mp" / "journal_check.py"
EARLIEST = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


def prepare_state(state, config=None):
    """Create a state directory with `config` (key -> typed value) as config.json, the
    way the firmware stores non-default values."""
    state = Path(state)
    state.mkdir(parents=True, exist_ok=True)
    if config:
        (state / "config.json").write_text(json.dumps(config))
    return state


def free_port():
    """A loopback TCP port nobody listens on (a central system that is not there)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class EnvSim(Sim):
    """tools/sim with extra environment variables (e.g. MPOCPP_KILL_AFTER_WRITES)."""

    def __init__(self, csms_url, cp_id="CP1", state=None, connectors=1, extra=(), env=None,
                 root=ROOT):
        # root: the checkout whose tools/sim (and code) runs; another release's tree for
        # the state that release leaves behind (tests/fixtures/make_state.py).
        self.cp_id = cp_id
        self.state = str(state)
        args = [str(Path(root) / "tools" / "sim"), "--csms", csms_url, "--id", cp_id,
                "--state", self.state, "--connectors", str(connectors)] + list(extra)
        e = dict(os.environ)
        e.pop("MPOCPP_KILL_AFTER_WRITES", None)
        e.update(env or {})
        self.proc = subprocess.Popen(args, cwd=str(root), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     bufsize=0, env=e)
        self.lines = []
        self._cv = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def try_send(self, line):
        """send(), but a dead simulator (power cut) is not an error: returns False."""
        try:
            self.send(line)
            return True
        except OSError:
            return False

    def died(self):
        return self.proc.poll() is not None


def journal_check(state):
    """Open the journal of `state` as a boot would (MicroPython): (queued, corrupt,
    unknown, log lines)."""
    p = subprocess.run([micropython(), str(CHECK_SCRIPT), str(Path(state) / "journal")],
                       env=mp_env(), cwd=str(ROOT), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0, p.stdout
    log = [ln[2:] for ln in p.stdout.splitlines() if ln.startswith("L ")]
    for ln in p.stdout.splitlines():
        if ln.startswith("CHECK "):
            q, c, u = (int(x) for x in ln.split()[1:4])
            return q, c, u, log
    raise AssertionError("no CHECK line:\n" + p.stdout)


def parse_ts(s):
    assert isinstance(s, str) and s.endswith("Z") and len(s) == 20, s
    t = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert t >= EARLIEST, "timestamp before 2020: " + s
    return t


class Msg:
    __slots__ = ("boot", "conn", "uid", "action", "payload", "answer", "t")

    def __init__(self, boot, conn, uid, action, payload, t):
        self.boot, self.conn, self.uid, self.action, self.payload, self.t = \
            boot, conn, uid, action, payload, t
        self.answer = None

    @property
    def result(self):
        """The CALLRESULT payload, or None (CALLERROR or no answer)."""
        return self.answer[2] if self.answer and self.answer[0] == 3 else None

    def __repr__(self):
        return "<boot %d %s %s -> %s>" % (self.boot, self.action, json.dumps(self.payload),
                                          json.dumps(self.answer))


def messages(csms, cp):
    """Every CALL the charger `cp` sent, in arrival order, with the answer it got.
    `boot` counts BootNotifications (1 = first power-on), `conn` connections."""
    boot = conn = 0
    out = []
    pending = {}
    for e in csms.events(cp=cp):
        ev = e.get("ev")
        if ev == "connect":
            conn += 1
            pending = {}
        f = e.get("frame")
        if not isinstance(f, list) or len(f) < 3:
            continue
        if ev == "recv" and f[0] == 2 and len(f) == 4:
            if f[2] == "BootNotification":
                boot += 1
            m = Msg(boot, conn, f[1], f[2], f[3], e.get("t"))
            pending[f[1]] = m
            out.append(m)
        elif ev == "send" and f[0] in (3, 4) and isinstance(f[1], str) and f[1] in pending:
            pending.pop(f[1]).answer = f
    return out


def _key(p):
    return json.dumps(p, sort_keys=True)


class Ledger:
    """What the central system learnt about the transactions of one charger."""

    def __init__(self, msgs):
        self.msgs = [m for m in msgs if m.action in TX_ACTIONS]
        self.tx = {}            # Start content key -> {"starts": [Msg], "txids": [], "stops": []}
        self.order = []         # Start content keys in first-arrival order
        txid_of = {}
        for m in self.msgs:
            if m.action == "StartTransaction":
                k = _key(m.payload)
                if k not in self.tx:
                    self.tx[k] = {"starts": [], "txids": [], "stops": [], "meters": []}
                    self.order.append(k)
                self.tx[k]["starts"].append(m)
                r = m.result
                if r and isinstance(r.get("transactionId"), int):
                    self.tx[k]["txids"].append(r["transactionId"])
                    txid_of[r["transactionId"]] = k
        self.orphans = []
        self.minus_one = []
        for m in self.msgs:
            if m.action == "StartTransaction":
                continue
            tid = m.payload.get("transactionId")
            if tid is None and m.action == "MeterValues":
                continue
            if tid == -1:
                self.minus_one.append(m)
                continue
            k = txid_of.get(tid)
            if k is None:
                self.orphans.append(m)
            else:
                self.tx[k]["stops" if m.action == "StopTransaction" else "meters"].append(m)

    def transactions(self):
        return [self.tx[k] for k in self.order]

    def find(self, tag, meter_start=None):
        for t in self.transactions():
            p = t["starts"][0].payload
            if p["idTag"] == tag and (meter_start is None or p["meterStart"] == meter_start):
                return t
        return None


def check_ledger(led, ctx="", allow_minus_one=False):
    """The delivery guarantees, as the central system sees them:

    - every StopTransaction and MeterValues names a transaction the central system was
      told about (no orphan, no -1 unless allowed);
    - every transaction has its StopTransaction; copies of a Start or a Stop are
      identical, and a copy follows only a send that got no CALLRESULT in its power-on
      (no answer, a CALLERROR, or a cut before the answer was on flash);
    - chronological: a transaction's Start arrives before its Stop, its Stop before the
      next transaction's Start, and timestamps never go back (never 1970).
    """
    assert not led.orphans, "messages for unknown transactions %s %s" % (led.orphans, ctx)
    if not allow_minus_one:
        assert not led.minus_one, "transactionId -1 %s %s" % (led.minus_one, ctx)
    for t in led.transactions():
        for kind in ("starts", "stops"):
            ms = t[kind]
            keys = set(_key(m.payload) for m in ms)
            assert len(keys) <= 1, "%s differ: %s %s" % (kind, ms, ctx)
            for a, b in zip(ms, ms[1:]):
                assert a.result is None or a.boot < b.boot, \
                    "%s sent again after its CALLRESULT: %s %s" % (kind, ms, ctx)
        assert t["stops"], "no StopTransaction for %s %s" % (t["starts"][0], ctx)
        s0 = parse_ts(t["starts"][0].payload["timestamp"])
        e0 = parse_ts(t["stops"][0].payload["timestamp"])
        assert s0 <= e0, "stop before start %s %s" % (t, ctx)
        assert t["stops"][0].payload["meterStop"] >= t["starts"][0].payload["meterStart"], ctx
    # Arrival order of first copies, and their timestamps.
    seen = set()
    last = None
    firsts = []
    for m in led.msgs:
        k = (m.action, _key(m.payload))
        if k in seen:
            continue
        seen.add(k)
        firsts.append(m)
        if m.action == "MeterValues":
            stamps = [parse_ts(v["timestamp"]) for v in m.payload["meterValue"]]
        else:
            stamps = [parse_ts(m.payload["timestamp"])]
        for ts in stamps:
            assert last is None or ts >= last, "timestamps go back at %s %s" % (m, ctx)
            last = ts
    pos = {}
    for i, m in enumerate(firsts):
        pos.setdefault((m.action, _key(m.payload)), i)
    keys = led.order
    for i, k in enumerate(keys):
        t = led.tx[k]
        a = pos[("StartTransaction", k)]
        b = pos[("StopTransaction", _key(t["stops"][0].payload))]
        assert a < b, "Stop before its Start %s" % ctx
        if i + 1 < len(keys):
            c = pos[("StartTransaction", keys[i + 1])]
            assert b < c, "next Start before this Stop %s" % ctx
