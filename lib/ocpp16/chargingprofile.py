"""SmartCharging profile: SetChargingProfile, ClearChargingProfile, GetCompositeSchedule,
and the chargingProfile of RemoteStartTransaction (OCPP 1.6 §3.13, §5.5, §5.7, §5.16).

This module (the handlers, imported at the first of these CALLs) checks and answers;
smartcharging.py (the component, cp.part("smartcharging"), also made at boot when
profiles are on flash) stores and selects the profiles; schedule.py computes the
composite (its rules are there).  Two modules, so neither is compiled whole at once
where the code is not frozen.

Rules:
- ChargePointMaxProfile: connector 0 only.  TxDefaultProfile: connector 0 (every
  connector) or one.  TxProfile: only on a connector with a running transaction, and a
  transactionId, when given, must be that transaction's (else Rejected, TC_058); it ends
  with its transaction.  RemoteStartTransaction's chargingProfile must be a TxProfile
  without transactionId (else Rejected, TC_060): it applies to the next transaction of
  the connector if that one is the remote start's idTag (else it is dropped).
- Same chargingProfileId, or same connector + purpose + stackLevel (+ transaction):
  the new profile replaces the old one.
- Limits (the keys tell them): MaxChargingProfilesInstalled profiles in all,
  ChargingScheduleMaxPeriods periods each, stackLevel 0..ChargeProfileMaxStackLevel,
  numberPhases 1..3; anything beyond: Rejected and nothing stored.  A malformed schedule
  (no periods, first startPeriod not 0, startPeriods not increasing, a negative limit,
  validTo not after validFrom, Recurring without recurrencyKind or startSchedule):
  Rejected.  Absolute without startSchedule starts when it is set.
- ClearChargingProfile: with `id`, that profile only; else every profile matching the
  fields given (connectorId 0 = the charger's own profiles).  Unknown if none matched.
- GetCompositeSchedule: from the request's arrival, `duration` s; connector 0 = the
  ChargePointMaxProfile; unit A unless W is asked.  Where no profile is in force the
  period shows the connector's maximum (board.max_a10, else 80 A); with no profile in
  force at all, no chargingSchedule.  It is cut short (its `duration` says where) when
  more periods would not fit the answer buffer.  Rejected while the clock is unset.
- The time: the OCPP clock (the central system's currentTime); before it is set after a
  power-on, the board's wall clock if it reads a plausible time (an RTC that kept
  running, NTP): so recurring profiles go on after a reboot without the central system.
  With neither: only Relative profiles without validFrom/validTo act (timed from the
  transaction's start), the others wait for the clock; limit() then gives `until` in
  board.seconds().
"""
from array import array
from micropython import const
from ocpp16 import schedule as S
from ocpp16.rpc import CallError, field, only
from ocpp16.clock import parse_iso, write_iso

PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
_KINDS = ("Absolute", "Recurring", "Relative")
_UNITS = ("A", "W")
_NO_CAP = const(800)        # 80 A: the top of the IEC 61851-1 pilot scale
_TOP = const(0x3FFFFFF)     # the largest limit (tenths) a packed period holds
_ROOM = const(96)           # answer bytes one more period and the end need


# -- parsing ------------------------------------------------------------------------------
def _opt(d, name, typ):
    # An optional field; JSON null counts as absent.
    if d.get(name) is None:
        return None
    return field(d, name, typ)


def _enum(d, name, values, required=True):
    s = field(d, name, str) if required else _opt(d, name, str)
    if s is None:
        return None
    try:
        return values.index(s)
    except ValueError:
        raise CallError("PropertyConstraintViolation", name)


def _time(d, name):
    s = _opt(d, name, str)
    if s is None:
        return None
    try:
        return parse_iso(s) - S.EPOCH
    except ValueError:
        raise CallError("PropertyConstraintViolation", name)


def _tenths(v):
    return int(v * 10 + (0.5 if v >= 0 else -0.5))


def parse(d, now, most):
    """A csChargingProfiles / chargingProfile dict -> a profile (schedule.py layout,
    CONN not set, TX = the transactionId given or None), or a str: why it is Rejected.
    Wrong types and enum values raise CallError."""
    if not isinstance(d, dict):
        raise CallError("TypeConstraintViolation", "chargingProfile")
    only(d, ("chargingProfileId", "transactionId", "stackLevel", "chargingProfilePurpose",
             "chargingProfileKind", "recurrencyKind", "validFrom", "validTo",
             "chargingSchedule"))
    s = field(d, "chargingSchedule", dict)
    only(s, ("duration", "startSchedule", "chargingRateUnit", "chargingSchedulePeriod",
             "minChargingRate"))
    # (Filled one by one: a long expression needs a large block to compile where the
    # code is not frozen, and the simulator's heap is as fragmented as a charger's.)
    p = [None] * (S.TX + 1)
    p[S.ID] = field(d, "chargingProfileId", int)
    p[S.PURP] = _enum(d, "chargingProfilePurpose", PURPOSES)
    p[S.STACK] = field(d, "stackLevel", int)
    p[S.KIND] = _enum(d, "chargingProfileKind", _KINDS)
    p[S.REC] = _enum(d, "recurrencyKind", ("Daily", "Weekly"), False)
    p[S.FROM] = _time(d, "validFrom")
    p[S.TO] = _time(d, "validTo")
    p[S.START] = _time(s, "startSchedule")
    p[S.DUR] = _opt(s, "duration", int)
    p[S.UNIT] = _enum(s, "chargingRateUnit", _UNITS)
    p[S.MIN] = _opt(s, "minChargingRate", float)
    p[S.TX] = _opt(d, "transactionId", int)
    per = _periods(field(s, "chargingSchedulePeriod", list), most)
    if isinstance(per, str):
        return per
    p[S.PER] = per
    p[S.CONN] = 0
    return _check(p, now) or p


def _periods(pl, most):
    # The periods as an array('i') [startPeriod, limit10 * 4 + phases, ...], or why not.
    if len(pl) > most:
        return "%d periods, ChargingScheduleMaxPeriods is %d" % (len(pl), most)
    per = array("i")
    for e in pl:
        if not isinstance(e, dict):
            raise CallError("TypeConstraintViolation", "chargingSchedulePeriod")
        only(e, ("startPeriod", "limit", "numberPhases"))
        sp = field(e, "startPeriod", int)
        lim = _tenths(field(e, "limit", float))
        ph = _opt(e, "numberPhases", int)
        if ph is not None and not 1 <= ph <= 3:
            return "numberPhases %d" % ph
        if not 0 <= lim <= _TOP:
            return "limit out of range"
        if (sp != 0 if not per else sp <= per[-2]) or sp > 0x7FFFFFFF:
            return "startPeriods must start at 0 and increase"
        per.append(sp)
        per.append(lim * 4 + (ph or 0))
    return per if per else "no chargingSchedulePeriod"


def _check(p, now):
    # The rules a schedule must follow (None: it does); REC holds recurrencyKind here.
    if p[S.STACK] < 0:
        return "stackLevel below 0"
    if p[S.DUR] is not None and p[S.DUR] < 0:
        return "negative duration"
    if p[S.FROM] is not None and p[S.TO] is not None and p[S.TO] <= p[S.FROM]:
        return "validTo not after validFrom"
    if p[S.MIN] is not None:
        p[S.MIN] = _tenths(p[S.MIN])
        if not 0 <= p[S.MIN] <= _TOP:
            return "minChargingRate out of range"
    k = p[S.KIND]
    rk = p[S.REC]
    p[S.REC] = 0
    if k == S.RECURRING:
        if rk is None or p[S.START] is None:
            return "Recurring needs recurrencyKind and startSchedule"
        p[S.REC] = 604800 if rk else 86400
    elif k == S.RELATIVE:
        p[S.START] = None
    elif p[S.START] is None:
        if now is None:
            return "Absolute without startSchedule while the clock is unset"
        p[S.START] = now - S.EPOCH    # Absolute: from when it is set
    return None


# -- handlers (chargepoint._PROFILES) --------------------------------------------------------
def set_charging_profile(cp, p):
    only(p, ("connectorId", "csChargingProfiles"))
    n = field(p, "connectorId", int)
    prof = parse(field(p, "csChargingProfiles", dict), cp.clock.now(),
                 cp.cfg.get("ChargingScheduleMaxPeriods"))
    return {"status": cp.part("smartcharging").set(n, prof)}


def clear_charging_profile(cp, p):
    only(p, ("id", "connectorId", "chargingProfilePurpose", "stackLevel"))
    pid = _opt(p, "id", int)
    n = _opt(p, "connectorId", int)
    purp = _enum(p, "chargingProfilePurpose", PURPOSES, False)
    stack = _opt(p, "stackLevel", int)
    sc = cp.part("smartcharging", False)
    ok = sc is not None and sc.clear(pid, n, purp, stack)
    return {"status": "Accepted" if ok else "Unknown"}


def get_composite_schedule(cp, p):
    only(p, ("connectorId", "duration", "chargingRateUnit"))
    n = field(p, "connectorId", int)
    dur = field(p, "duration", int)
    unit = _enum(p, "chargingRateUnit", _UNITS, False) or S.A
    sc = cp.part("smartcharging", False)
    now = sc.now() if sc else cp.clock.now()   # (no part: no profile, the clock will do)
    if not 0 <= n <= cp.connectors or dur < 0 or now is None:
        return {"status": "Rejected"}
    out = None
    if sc is not None and sc.p:
        t = now - S.EPOCH
        out = S.composite(sc.profiles(n, True), t, t + dur, sc.rel(n, now) - S.EPOCH,
                          cp.cfg.get("NominalVoltage"), unit)
        if max(out[1::2] or (-1,)) < 0:
            out = None                  # no profile in force in the whole window
    cap = 0
    if out:
        b = cp.board
        m = b.max_a10(n) if n and hasattr(b, "max_a10") else None
        cap = _NO_CAP if m is None else m
        if unit == S.W:
            cap *= cp.cfg.get("NominalVoltage") * (getattr(b, "phases", 3) or 3)
        cap *= 4

    # Written into the answer buffer: up to 72 periods would be dicts of KBs.
    return lambda w: _answer(w, n, now, unit, dur, out, cap)


def _answer(w, n, now, unit, dur, out, cap):
    w.raw(b'{"status":"Accepted","connectorId":')
    w.int(n)
    w.raw(b',"scheduleStart":')
    write_iso(w, now)
    if out:
        w.raw(b',"chargingSchedule":{"chargingRateUnit":')
        w.str(_UNITS[unit])
        w.raw(b',"startSchedule":')
        write_iso(w, now)
        w.raw(b',"chargingSchedulePeriod":[')
        dur = _periods_json(w, out, cap, dur)
        w.raw(b'],"duration":')
        w.int(dur)
        w.byte(125)
    w.byte(125)


def _periods_json(w, out, cap, dur):
    # The periods; returns the duration they cover (shorter when the rest did not fit).
    last = -1
    for k in range(0, len(out), 2):
        v = out[k + 1]
        if v < 0:
            v = cap                     # no profile in force: the connector's maximum
        if v == last:
            continue
        if w.cap - w.n < _ROOM:
            dur = out[k]                # the rest does not fit: a shorter schedule
            break
        if last >= 0:
            w.byte(44)
        last = v
        w.raw(b'{"startPeriod":')
        w.int(out[k])
        w.raw(b',"limit":')
        _tenth(w, v >> 2)
        if v & 3:
            w.raw(b',"numberPhases":')
            w.int(v & 3)
        w.byte(125)
    return dur


def _tenth(w, v):
    # v tenths as a JSON number with at most one decimal, no float
    w.int(v // 10)
    if v % 10:
        w.byte(46)
        w.byte(48 + v % 10)


def remote_profile(cp, d):
    """RemoteStartTransaction's chargingProfile: the profile, or None (Rejected: not a
    TxProfile, a transactionId given, or not valid)."""
    prof = parse(d, cp.clock.now(), cp.cfg.get("ChargingScheduleMaxPeriods"))
    if isinstance(prof, str) or prof[S.PURP] != S.TXP or prof[S.TX] is not None:
        cp.log("smartcharging: RemoteStartTransaction chargingProfile Rejected (%s)"
               % (prof if isinstance(prof, str) else "a TxProfile without transactionId "
                  "is required"))
        return None
    return prof
