"""The composite schedule of charging profiles (OCPP 1.6 §3.13): pure functions.

A profile is a list made by smartcharging.py (layout below); its periods are one
array('i') [startPeriod, limit10 * 4 + numberPhases, ...] (limit10: the limit in tenths
of the schedule's unit, numberPhases 0 = not given), so 24 periods cost 192 bytes.

The rules at a time t, for one connector (the caller passes the profiles that may apply
to it: the ChargePointMaxProfiles, the TxDefaultProfiles of connector 0 and of the
connector, the TxProfiles of its running transaction):
- a profile is in force while validFrom <= t < validTo and its schedule runs:
  start <= t < start + duration, start = startSchedule (Absolute), `rel` (Relative: the
  transaction's start), or the last startSchedule + k days (weeks) <= t (Recurring:
  startSchedule gives the time of day / week, validFrom the first day);
- per purpose the highest stackLevel in force wins (two TxDefaultProfiles of the same
  level: the connector's own before connector 0's);
- a TxProfile in force overrides the TxDefaultProfile; the ChargePointMaxProfile caps it:
  the lower limit wins, compared as amperes per phase (W / (V * phases); phases: the
  period's numberPhases, else 3; V = NominalVoltage);
- below the minChargingRate of the Tx/TxDefault schedule in force the limit is 0.
A limit is a packed int: value10 * 4 + numberPhases of the period that won (0 = not
given), value10 in tenths of the asked unit (W -> A rounded down); -1: no profile.
"""
from micropython import const

# The profiles' times in RAM (FROM, TO, START) and the times these functions are given
# count from 2020-01-01T00:00:00Z, not from 1970: small ints on a 32-bit port until 2054.
# In Unix seconds (past 2**30) every sum and difference would be a new long int on the
# heap (a day's composite allocated 62 KB on the 32-bit build).  smartcharging.py and
# chargingprofile.py convert at the edges; the file on flash keeps Unix seconds.
EPOCH = 1577836800

# Profile layout (smartcharging.py builds and stores them)
ID = const(0)
CONN = const(1)
PURP = const(2)
STACK = const(3)
KIND = const(4)
REC = const(5)          # Recurring: 86400 or 604800
FROM = const(6)         # validFrom (s from EPOCH) or None
TO = const(7)           # validTo or None
START = const(8)        # startSchedule or None
DUR = const(9)          # duration or None
UNIT = const(10)
MIN = const(11)         # minChargingRate in tenths of the unit, or None
PER = const(12)         # array('i')
TX = const(13)          # TxProfile: the local transaction it belongs to (-1: the next one)

CPMAX = const(0)        # purposes
TXDEF = const(1)
TXP = const(2)
ABSOLUTE = const(0)     # kinds
RECURRING = const(1)
RELATIVE = const(2)
A = const(0)            # units
W = const(1)


def _start(p, t, rel):
    k = p[KIND]
    if k == RELATIVE:
        return rel
    s = p[START]
    if k == RECURRING:
        r = p[REC]
        s += (t - s) // r * r
    return s


def _at(p, t, rel):
    # The index of p's period in force at t, or -1.
    v = p[FROM]
    if v is not None and t < v:
        return -1
    v = p[TO]
    if v is not None and t >= v:
        return -1
    off = t - _start(p, t, rel)
    d = p[DUR]
    if off < 0 or (d is not None and off >= d):
        return -1
    per = p[PER]
    i = len(per) - 2
    while i >= 0 and per[i] > off:
        i -= 2
    return i


def _next(p, t, rel):
    # The first time after t at which p's period in force may change, or None.
    b = None
    v = p[FROM]
    if v is not None and v > t:
        b = v
    v = p[TO]
    if v is not None and v > t and (b is None or v < b):
        b = v
    s = _start(p, t, rel)
    if s > t:
        v = s
    else:
        off = t - s
        d = p[DUR]
        v = None
        if d is None or off < d:
            per = p[PER]
            for i in range(0, len(per), 2):
                if per[i] > off:
                    v = s + per[i]
                    break
            if d is not None and (v is None or s + d < v):
                v = s + d
        if p[KIND] == RECURRING and (v is None or s + p[REC] < v):
            v = s + p[REC]
    if v is not None and (b is None or v < b):
        b = v
    return b


def _key(p, i, volts):
    # The limit of period i as comparable amperes per phase (x 10 x V x 6, exact ints).
    x = p[PER][i + 1]
    if p[UNIT] == A:
        return (x >> 2) * volts * 6
    return (x >> 2) * (6 // ((x & 3) or 3))


def at(profs, t, rel, volts, unit):
    """The composite limit at t (packed, see above), -1 when no profile is in force."""
    b0 = b1 = b2 = None
    i0 = i1 = i2 = 0
    for p in profs:
        i = _at(p, t, rel)
        if i < 0:
            continue
        u = p[PURP]
        if u == CPMAX:
            if b0 is None or p[STACK] > b0[STACK]:
                b0 = p
                i0 = i
        elif u == TXDEF:
            if b1 is None or p[STACK] > b1[STACK] \
                    or (p[STACK] == b1[STACK] and p[CONN] and not b1[CONN]):
                b1 = p
                i1 = i
        elif b2 is None or p[STACK] > b2[STACK]:
            b2 = p
            i2 = i
    if b2 is not None:          # the TxProfile overrides the TxDefaultProfile
        b1 = b2
        i1 = i2
    if b1 is None:
        if b0 is None:
            return -1
        p = b0
        i = i0
        k = 0
    else:
        p = b1
        i = i1
        k = _key(p, i, volts)
        if b0 is not None and _key(b0, i0, volts) < k:
            p = b0
            i = i0
            k = _key(p, i, volts)
    x = p[PER][i + 1]
    ph = x & 3
    v = x >> 2
    if b1 is not None and b1[MIN] is not None:
        m = b1[PER][i1 + 1]
        if k < b1[MIN] * (volts * 6 if b1[UNIT] == A else 6 // ((m & 3) or 3)):
            v = 0               # below what the EV charges at: nothing
    if v and p[UNIT] != unit:
        n = ph or 3
        v = v // (volts * n) if unit == A else v * volts * n
    return v * 4 + ph


def step(profs, t, rel):
    """The first time after t at which the composite may change, or None."""
    b = None
    for p in profs:
        v = _next(p, t, rel)
        if v is not None and (b is None or v < b):
            b = v
    return b


def composite(profs, t0, t1, rel, volts, unit):
    """The composite over [t0, t1): a list [offset, packed limit, ...] (offset from t0;
    packed -1 where no profile is in force), merged where equal."""
    out = []
    t = t0
    last = -2
    while t < t1:
        v = at(profs, t, rel, volts, unit)
        if v != last:
            out.append(t - t0)
            out.append(v)
            last = v
        t = step(profs, t, rel)
        if t is None:
            break
    return out


def limit(profs, now, rel, volts, steps=32):
    """(packed limit in A at `now`, the time it next changes or None).  After `steps`
    boundaries without a change: the last one looked at (the caller asks again then)."""
    v = at(profs, now, rel, volts, A)
    t = now
    for _ in range(steps):
        t = step(profs, t, rel)
        if t is None or at(profs, t, rel, volts, A) != v:
            break
    return v, t
