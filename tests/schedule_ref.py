"""A reference composite schedule on CPython, written from OCPP 1.6 §3.13 (not from the
device code): tests/test_schedule_hypothesis.py compares lib/ocpp16/schedule.py with it.

It works on the profiles as a central system sends them (JSON dicts) and another way
round than the device: it lists every instant at which anything may change in the
window (validity bounds, every occurrence's start, period starts and end), evaluates the
definition at each with exact fractions, and merges equal neighbours.

The rules (the ones the charger documents):
- in force at t: validFrom <= t < validTo, start <= t < start + duration; start =
  startSchedule (Absolute), the transaction's start or else the window's start
  (Relative), startSchedule + k * day/week, the latest <= t (Recurring);
- per purpose the highest stackLevel wins; equal TxDefaultProfiles: the connector's own;
- TxProfile over TxDefaultProfile; the ChargePointMaxProfile caps it, compared as
  amperes per phase (W / (V * numberPhases or 3));
- below the Tx/TxDefault schedule's minChargingRate (same conversion): 0;
- shown in the asked unit: A from W rounded down to 0.1 A, W from A exact; numberPhases
  of the period that won (None when it gave none); no profile in force: None.
"""
from datetime import datetime, timezone
from fractions import Fraction
import math

DAY = 86400


def unix(s):
    return int(datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
               .replace(tzinfo=timezone.utc).timestamp())


def tenths(x):
    return int(Fraction(str(x)) * 10)


class Prof:
    """One profile: (connectorId, JSON dict)."""

    def __init__(self, conn, d):
        self.conn = conn
        self.purpose = d["chargingProfilePurpose"]
        self.stack = d["stackLevel"]
        self.kind = d["chargingProfileKind"]
        self.recur = {"Daily": DAY, "Weekly": 7 * DAY}.get(d.get("recurrencyKind"))
        self.vfrom = unix(d["validFrom"]) if d.get("validFrom") else None
        self.vto = unix(d["validTo"]) if d.get("validTo") else None
        s = d["chargingSchedule"]
        self.start = unix(s["startSchedule"]) if s.get("startSchedule") else None
        self.duration = s.get("duration")
        self.unit = s["chargingRateUnit"]
        self.minrate = tenths(s["minChargingRate"]) if s.get("minChargingRate") is not None \
            else None
        self.periods = [(p["startPeriod"], tenths(p["limit"]), p.get("numberPhases"))
                        for p in s["chargingSchedulePeriod"]]

    def origin(self, t, rel):
        """The start of the schedule (the occurrence) that t falls in."""
        if self.kind == "Relative":
            return rel
        if self.kind == "Recurring":
            k = math.floor((t - self.start) / self.recur)
            return self.start + k * self.recur
        return self.start

    def period(self, t, rel):
        """The (startPeriod, limit10, phases) in force at t, or None."""
        if self.vfrom is not None and t < self.vfrom:
            return None
        if self.vto is not None and t >= self.vto:
            return None
        o = self.origin(t, rel)
        off = t - o
        if off < 0:
            return None
        if self.duration is not None and off >= self.duration:
            return None
        if self.recur and off >= self.recur:
            return None
        found = None
        for p in self.periods:
            if p[0] <= off:
                found = p
        return found

    def instants(self, t0, t1, rel):
        """Every time in (t0, t1) at which this profile's state may change."""
        out = set(x for x in (self.vfrom, self.vto) if x is not None)
        if self.kind == "Recurring":
            k0 = math.floor((t0 - self.start) / self.recur)
            origins = []
            k = k0
            while self.start + k * self.recur < t1:
                origins.append(self.start + k * self.recur)
                k += 1
        else:
            origins = [rel if self.kind == "Relative" else self.start]
        for o in origins:
            out.add(o)
            for p in self.periods:
                out.add(o + p[0])
            if self.duration is not None:
                out.add(o + self.duration)
            if self.recur:
                out.add(o + self.recur)
        return {x for x in out if t0 < x < t1}


def per_phase(limit10, unit, phases, volts):
    """Tenths of amperes per phase, exact."""
    if unit == "A":
        return Fraction(limit10)
    return Fraction(limit10, volts * (phases or 3))


def applicable(profs, conn, tx_running):
    """The profiles that may apply to connector conn (0: the ChargePointMaxProfiles)."""
    out = []
    for p in profs:
        if p.purpose == "ChargePointMaxProfile":
            out.append(p)
        elif conn and p.purpose == "TxDefaultProfile" and p.conn in (0, conn):
            out.append(p)
        elif conn and p.purpose == "TxProfile" and p.conn == conn and tx_running:
            out.append(p)
    return out


def value(profs, conn, t, rel, volts, unit):
    """(limit10 in `unit`, phases) at t, or None."""
    best = {}
    for p in profs:
        per = p.period(t, rel)
        if per is None:
            continue
        cur = best.get(p.purpose)
        if cur is None or p.stack > cur[0].stack or \
                (p.stack == cur[0].stack and p.purpose == "TxDefaultProfile"
                 and p.conn == conn and cur[0].conn != conn):
            best[p.purpose] = (p, per)
    tx = best.get("TxProfile") or best.get("TxDefaultProfile")
    cap = best.get("ChargePointMaxProfile")
    if tx is None and cap is None:
        return None
    win = tx
    if win is None or (cap is not None and per_phase(cap[1][1], cap[0].unit, cap[1][2], volts)
                       < per_phase(tx[1][1], tx[0].unit, tx[1][2], volts)):
        win = cap
    p, per = win
    lim, ph = per[1], per[2]
    if tx is not None and tx[0].minrate is not None:
        if per_phase(lim, p.unit, ph, volts) < per_phase(tx[0].minrate, tx[0].unit, tx[1][2],
                                                         volts):
            return 0, ph
    if p.unit != unit:
        n = ph or 3
        lim = math.floor(Fraction(lim, volts * n)) if unit == "A" else lim * volts * n
    return lim, ph


def composite(profs, conn, t0, duration, rel, volts, unit):
    """[(offset, limit10 or None, phases or None)] over [t0, t0 + duration), merged."""
    t1 = t0 + duration
    times = {t0}
    for p in profs:
        times |= p.instants(t0, t1, rel)
    out = []
    for t in sorted(times):
        v = value(profs, conn, t, rel, volts, unit)
        v = (None, None) if v is None else v
        if not out or out[-1][1:] != v:
            out.append((t - t0,) + v)
    return out
