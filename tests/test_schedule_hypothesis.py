"""The device's composite schedule (lib/ocpp16/schedule.py, with the profile parsing and
selection of chargingprofile.py / smartcharging.py) against the CPython reference
(tests/schedule_ref.py) over randomised profile sets: the same periods and limits in A
and W, and the same limit (and a truthful `until`) for the offered current.

One MicroPython process answers every case: a JSON line in, a JSON line out."""
import json
import subprocess
import time

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from helpers import micropython, mp_env
import schedule_ref as ref

BASE = 1767268800           # 2026-01-01T12:00:00Z
VOLTS = 230

DEVICE = r'''
import sys, json
from ocpp16 import smartcharging as sc, chargingprofile as cpf, schedule as S


class Obj:
    pass


cp = Obj()
cp.state = "/nonexistent-sc-state"
cp.connectors = 2
cp.log = lambda s: None
cp.cfg = Obj()
cp.cfg.get = {"NominalVoltage": 230}.get
cp.tx = Obj()
cp.clock = Obj()
cp.board = Obj()
cp.board.seconds = lambda: 0
cp.timebase = Obj()
cp.timebase.boot = 1
part = sc.Part(cp)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    c = json.loads(line)
    t0 = c["t0"]
    cp.clock.now = lambda: t0
    tx = {"tx": 7, "st": [c["rel"], 1, 0]} if c["tx"] else None
    cp.tx.active = [None, tx, None]
    profs = []
    for conn, d in c["profiles"]:
        p = cpf.parse(d, t0, 24)
        if isinstance(p, str):
            raise ValueError(p)
        p[S.CONN] = conn
        p[S.TX] = 7 if p[S.PURP] == S.TXP else None
        profs.append(p)
    part.p = profs
    n = c["conn"]
    sel = part.profiles(n, True)
    out = {}
    for u in ("A", "W"):
        t = t0 - S.EPOCH                # as get_composite_schedule passes it
        out[u] = S.composite(sel, t, t + c["dur"], part.rel(n, t0) - S.EPOCH, 230,
                             0 if u == "A" else 1)
    out["limit"] = list(part.limit(n, c["now"]))
    print(json.dumps(out))
'''


class Device:
    def __init__(self, path):
        self.p = subprocess.Popen([micropython(), str(path)], env=mp_env(), text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)

    def ask(self, case):
        self.p.stdin.write(json.dumps(case) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        try:
            return json.loads(line)
        except ValueError:
            raise AssertionError("device: %s%s" % (line, self.p.stdout.read(2000)
                                                    if self.p.poll() is not None else ""))

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    path = tmp_path_factory.mktemp("sched") / "device_schedule.py"
    path.write_text(DEVICE)
    d = Device(path)
    yield d
    d.close()


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@st.composite
def profile(draw, key):
    purpose, conn, stack = key
    kind = draw(st.sampled_from(["Absolute", "Recurring", "Relative"]))
    unit = draw(st.sampled_from(["A", "W"]))
    n = draw(st.integers(1, 5))
    starts = sorted(draw(st.sets(st.integers(1, 30000), min_size=n - 1, max_size=n - 1)))
    top = 800 if unit == "A" else 600000
    periods = []
    for s in [0] + starts:
        per = {"startPeriod": s, "limit": draw(st.integers(0, top)) / 10}
        ph = draw(st.sampled_from([None, 1, 2, 3]))
        if ph:
            per["numberPhases"] = ph
        periods.append(per)
    sched = {"chargingRateUnit": unit, "chargingSchedulePeriod": periods}
    if draw(st.booleans()):
        sched["duration"] = draw(st.integers(0, 40000))
    if kind != "Relative":
        sched["startSchedule"] = _iso(BASE + draw(st.integers(-10 * 86400, 2 * 86400)))
    if draw(st.integers(0, 3)) == 0:
        sched["minChargingRate"] = draw(st.integers(0, top // 2)) / 10
    d = {"chargingProfileId": draw(st.integers(1, 10 ** 6)), "stackLevel": stack,
         "chargingProfilePurpose": purpose, "chargingProfileKind": kind,
         "chargingSchedule": sched}
    if kind == "Recurring":
        d["recurrencyKind"] = draw(st.sampled_from(["Daily", "Weekly"]))
    if draw(st.booleans()):
        a = BASE + draw(st.integers(-3 * 86400, 86400))
        d["validFrom"] = _iso(a)
        if draw(st.booleans()):
            d["validTo"] = _iso(a + draw(st.integers(1, 3 * 86400)))
    elif draw(st.integers(0, 2)) == 0:
        d["validTo"] = _iso(BASE + draw(st.integers(-3600, 2 * 86400)))
    return conn, d


@st.composite
def case(draw):
    tx = draw(st.booleans())
    keys = [("ChargePointMaxProfile", 0, s) for s in range(3)] + \
        [("TxDefaultProfile", c, s) for c in (0, 1, 2) for s in range(3)]
    if tx:
        keys += [("TxProfile", 1, s) for s in range(3)]
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=6, unique=True))
    profs = [draw(profile(k)) for k in chosen]
    t0 = BASE + draw(st.integers(-86400, 86400))
    dur = draw(st.integers(0, 3 * 86400))
    return {"profiles": profs, "conn": draw(st.sampled_from([0, 1, 1, 1])), "tx": tx,
            "rel": t0 - draw(st.integers(0, 20000)), "t0": t0, "dur": dur,
            "now": t0 + draw(st.integers(0, 86400))}


def _unpack(comp):
    return [(comp[i], None, None) if comp[i + 1] < 0 else
            (comp[i], comp[i + 1] >> 2, (comp[i + 1] & 3) or None)
            for i in range(0, len(comp), 2)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(case())
def test_device_composite_matches_the_reference(device, c):
    got = device.ask(c)
    profs = ref.applicable([ref.Prof(conn, d) for conn, d in c["profiles"]], c["conn"], c["tx"])
    rel = c["rel"] if c["tx"] and c["conn"] else c["t0"]
    for unit in ("A", "W"):
        want = ref.composite(profs, c["conn"], c["t0"], c["dur"], rel, VOLTS, unit)
        if c["dur"] == 0:
            want = []
        assert _unpack(got[unit]) == want, unit
    # limit(): the value at `now` and nothing else before `until`.
    now = c["now"]
    rel = c["rel"] if c["tx"] and c["conn"] else now
    v = ref.value(profs, c["conn"], now, rel, VOLTS, "A")
    a10, until = got["limit"]
    assert a10 == (None if v is None else v[0])
    horizon = until if until is not None else now + 8 * 86400
    inst = set()
    for p in profs:
        inst |= p.instants(now, horizon, rel)
    for t in sorted(inst):
        w = ref.value(profs, c["conn"], t, rel, VOLTS, "A")
        assert (None if w is None else w[0]) == a10, ("changes before until", t, until)


def test_the_tc066_table_by_the_reference_too():
    # The reference itself gives the document's table (so it is no copy of a bug).
    s = _iso(BASE)
    mk = lambda pid, pur, per, dur: ref.Prof(0 if pur[0] == "C" else 1, {
        "chargingProfileId": pid, "stackLevel": 0, "chargingProfilePurpose": pur,
        "chargingProfileKind": "Absolute", "chargingSchedule": {
            "duration": dur, "startSchedule": s, "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": a, "limit": b} for a, b in per]}})
    profs = [mk(1, "ChargePointMaxProfile", [(0, 10)], 86400),
             mk(2, "TxDefaultProfile", [(0, 6), (60, 10), (120, 8), (180, 25), (260, 8)], 300),
             mk(3, "TxProfile", [(0, 8), (50, 11), (140, 16), (200, 6), (240, 12)], 260)]
    got = ref.composite(profs, 1, BASE, 400, BASE, VOLTS, "A")
    assert [(o, v / 10) for o, v, _ in got] == [(0, 8), (50, 10), (200, 6), (240, 10),
                                                 (260, 8), (300, 10)]
