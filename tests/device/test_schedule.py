# SmartCharging on the device: schedule.py (the composite), chargingprofile.parse,
# smartcharging.Part (selection, limit(), the clock rule, flash).
from ocpp16 import store
from ocpp16 import schedule as S
from ocpp16 import chargingprofile as cpf
from ocpp16 import smartcharging as sc
from ocpp16.clock import parse_iso

T0 = parse_iso("2026-01-01T12:00:00Z")
ISO = "2026-01-01T12:00:00Z"
DIR = "/tmp/mpocpp-test-sc"


class Obj:
    pass


def _cp(now=T0, wall=None, tx=None):
    try:
        import os
        os.mkdir(DIR)
    except OSError:
        pass
    store.remove(DIR + "/" + sc.FILE)
    cp = Obj()
    cp.state = DIR
    cp.connectors = 2
    cp.log = lambda s: None
    cp.cfg = Obj()
    cp.cfg.get = {"ChargingScheduleMaxPeriods": 24, "MaxChargingProfilesInstalled": 10,
                  "ChargeProfileMaxStackLevel": 8, "NominalVoltage": 230}.get
    cp.tx = Obj()
    cp.tx.active = [None, tx, None]
    cp.clock = Obj()
    cp.clock.now = lambda: now
    cp.board = Obj()
    cp.board.seconds = lambda: 1000
    if wall is not None:
        cp.board.wall = lambda: wall
    cp.timebase = Obj()
    cp.timebase.boot = 3
    cp.journal = Obj()
    cp.journal.txid = lambda local: 42
    return cp


def _p(pid, purpose, periods, kind="Absolute", unit="A", dur=None, stack=0, **kw):
    s = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        {"startPeriod": a, "limit": b} for a, b in periods]}
    if dur is not None:
        s["duration"] = dur
    if kind != "Relative":
        s["startSchedule"] = kw.pop("start", ISO)
    d = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind, "chargingSchedule": s}
    d.update(kw)
    return d


def _set(part, n, d):
    return part.set(n, cpf.parse(d, T0, 24))


def _comp(part, t0, dur, rel, unit, n=1):
    # GetCompositeSchedule's computation: the times from schedule.EPOCH.
    return S.composite(part.profiles(n, True), t0 - S.EPOCH, t0 - S.EPOCH + dur,
                       rel - S.EPOCH, 230, unit)


def _table(out):
    return [(out[i], out[i + 1] >> 2) for i in range(0, len(out), 2)]


def test_tc066_table_and_limit_until():
    part = sc.Part(_cp(tx={"tx": 5, "st": [T0, 3, 0]}))
    assert _set(part, 0, _p(1, "ChargePointMaxProfile", [(0, 10)], dur=86400)) == "Accepted"
    assert _set(part, 1, _p(2, "TxDefaultProfile", [(0, 6), (60, 10), (120, 8), (180, 25),
                                                    (260, 8)], dur=300)) == "Accepted"
    assert _set(part, 1, _p(3, "TxProfile", [(0, 8), (50, 11), (140, 16), (200, 6), (240, 12)],
                            dur=260, transactionId=42)) == "Accepted"
    out = _comp(part, T0, 400, part.rel(1, T0), S.A)
    assert _table(out) == [(0, 80), (50, 100), (200, 60), (240, 100), (260, 80), (300, 100)]
    assert part.limit(1, T0 + 10) == (80, T0 + 50)
    assert part.limit(1, T0 + 50) == (100, T0 + 200)     # 140 changes nothing: skipped
    assert part.limit(1, T0 + 400) == (100, T0 + 86400)
    assert part.limit(1, T0 + 86400) == (None, None)
    assert part.limit(0, T0) == (100, T0 + 86400)         # connector 0: the CPMax alone
    part.tx_ended(1)
    assert len(part.p) == 2                               # the TxProfile ended with it


def test_txprofile_and_purpose_rules():
    part = sc.Part(_cp())
    assert _set(part, 1, _p(3, "TxProfile", [(0, 8)])) == "Rejected"       # no transaction
    assert _set(part, 1, _p(1, "ChargePointMaxProfile", [(0, 8)])) == "Rejected"
    assert _set(part, 0, _p(1, "TxDefaultProfile", [(0, 8)], transactionId=1)) == "Rejected"
    assert _set(part, 3, _p(1, "TxDefaultProfile", [(0, 8)])) == "Rejected"
    assert part.p == []


def test_w_units_phases_and_min_rate():
    part = sc.Part(_cp())
    d = _p(1, "TxDefaultProfile", [(0, 11040), (100, 3680)], unit="W")
    d["chargingSchedule"]["chargingSchedulePeriod"][1]["numberPhases"] = 1
    assert _set(part, 0, d) == "Accepted"
    out = _comp(part, T0, 200, T0, S.A)
    assert out == [0, 160 * 4, 100, 160 * 4 + 1]
    out = _comp(part, T0, 200, T0, S.W)
    assert out == [0, 110400 * 4, 100, 36800 * 4 + 1]
    d = _p(2, "TxDefaultProfile", [(0, 8)], stack=1)
    d["chargingSchedule"]["minChargingRate"] = 10
    assert _set(part, 1, d) == "Accepted"
    assert part.limit(1, T0)[0] == 0                       # 8 A is below its 10 A


def test_recurring_weekly_and_validity():
    part = sc.Part(_cp())
    # Weekly, from the same time a week before; valid from T0 + 1 h.
    d = _p(1, "TxDefaultProfile", [(0, 7), (3600, 12)], kind="Recurring",
           start="2025-12-25T12:00:00Z", recurrencyKind="Weekly", validFrom="2026-01-01T13:00:00Z")
    assert _set(part, 0, d) == "Accepted"
    assert part.limit(1, T0) == (None, T0 + 3600)
    assert part.limit(1, T0 + 3600)[0] == 120
    assert part.limit(1, T0 + 7 * 86400 + 10) == (70, T0 + 7 * 86400 + 3600)
    assert _set(part, 0, _p(2, "TxDefaultProfile", [(0, 7)], kind="Recurring")) == "Rejected"


def test_clock_unset_relative_only_or_the_board_wall_clock():
    tx = {"tx": 9, "st": [0, 3, 900]}             # started at uptime 900 s, no clock then
    part = sc.Part(_cp(now=None, tx=tx))
    assert _set(part, 0, _p(1, "TxDefaultProfile", [(0, 6), (200, 16)], kind="Relative")) \
        == "Accepted"
    assert _set(part, 0, _p(2, "TxDefaultProfile", [(0, 10)], stack=1,
                            start="2026-01-01T00:00:00Z")) == "Accepted"   # Absolute
    # Clock unknown: the Relative one acts, 100 s into the transaction (uptime 1000).
    assert part.limit(1, None) == (60, 1100)
    # A board wall clock that reads a plausible time: the Absolute one (stack 1) acts.
    part.cp.board.wall = lambda: T0
    assert part.limit(1, None)[0] == 100


def test_limits_and_flash():
    cp = _cp()
    part = sc.Part(cp)
    assert _set(part, 1, _p(1, "TxDefaultProfile", [(0, 6)], stack=9)) == "Rejected"
    assert cpf.parse(_p(1, "TxDefaultProfile", [(i, 6) for i in range(25)]), T0, 24) \
        .startswith("25 periods")
    for s in range(9):
        assert _set(part, 1, _p(10 + s, "TxDefaultProfile", [(0, 6 + s)], stack=s)) == "Accepted"
    assert _set(part, 0, _p(1, "ChargePointMaxProfile", [(0, 32)])) == "Accepted"
    assert _set(part, 2, _p(99, "TxDefaultProfile", [(0, 6)])) == "Rejected"    # an 11th
    assert _set(part, 1, _p(99, "TxDefaultProfile", [(0, 9)], stack=3)) == "Accepted"
    again = sc.Part(cp)                                   # a reboot
    assert sorted(q[S.ID] for q in again.p) == sorted(q[S.ID] for q in part.p)
    assert again.limit(1, T0) == part.limit(1, T0) == (140, None)
    assert again.clear(None, None, None, None)
    assert not store.exists(DIR + "/" + sc.FILE)


def test_times_small_in_ram_unix_on_flash():
    # In RAM the profiles' times count from schedule.EPOCH (small ints on a 32-bit port:
    # no long int per sum); the file keeps Unix seconds, as earlier versions wrote it.
    import json
    cp = _cp()
    part = sc.Part(cp)
    frm = "2026-02-01T00:00:00Z"
    assert _set(part, 0, _p(1, "TxDefaultProfile", [(0, 16)], validFrom=frm)) == "Accepted"
    q = part.p[0]
    assert q[S.FROM] == parse_iso(frm) - S.EPOCH and 0 < q[S.FROM] < 2 ** 30
    assert q[S.START] == T0 - S.EPOCH
    with open(DIR + "/" + sc.FILE) as f:
        e = json.loads(f.readline())
    assert e[S.FROM] == parse_iso(frm) and e[S.START] == T0
    again = sc.Part(cp)                 # the next boot reads it back the same
    assert again.p[0][:S.PER] == q[:S.PER]
    assert again.limit(1, parse_iso(frm) + 5) == (160, None)
    assert again.limit(1, parse_iso(frm) - 5) == (None, parse_iso(frm))
