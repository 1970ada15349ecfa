"""UTC wall clock for OCPP timestamps.

The charger has no trustworthy clock at power-on (an ESP32 RTC restarts at 2000-01-01,
the unix port's epoch is 1970).  The board supplies a monotonic seconds counter; the
clock becomes valid once the central system's `currentTime` (BootNotification,
Heartbeat) or another trusted source sets it.  Until then `now()` returns None, so
nothing can be stamped 1970.  Time is kept as Unix seconds (1970 epoch) on every port.
"""


def days_from_civil(y, m, d):
    # Proleptic Gregorian date -> days since 1970-01-01 (H. Hinnant's algorithm).
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """Days since 1970-01-01 -> (year, month, day)."""
    ymd = _ymd(z)
    return ymd // 10000, (ymd // 100) % 100, ymd % 100


def _ymd(z):
    # Packed as y*10000 + m*100 + d: a small int, so no tuple is allocated.
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return (yoe + era * 400 + (m <= 2)) * 10000 + m * 100 + d


def parse_iso(s):
    """Parse an ISO 8601 / RFC 3339 timestamp to Unix seconds (fractions dropped).

    Accepts `Z`, `+hh:mm`, `+hhmm`, `+hh`, and a missing offset (taken as UTC, as some
    central systems send it).  Raises ValueError on anything else.
    """
    try:
        if isinstance(s, (bytes, bytearray, memoryview)):
            s = str(s, "utf-8")
        y, mo, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
        if s[4] != "-" or s[7] != "-" or s[10] not in "Tt ":
            raise ValueError
        h, mi, se = int(s[11:13]), int(s[14:16]), int(s[17:19])
        i = 19
        if len(s) > i and s[i] in ".,":
            i += 1
            while i < len(s) and "0" <= s[i] <= "9":
                i += 1
        off = 0
        rest = s[i:]
        if rest in ("", "Z", "z"):
            pass
        elif rest[0] in "+-":
            oh = int(rest[1:3])
            om = int(rest[-2:]) if len(rest) > 3 else 0
            off = (oh * 3600 + om * 60) * (1 if rest[0] == "+" else -1)
        else:
            raise ValueError
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and se < 61):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError("bad timestamp: %r" % (s,))
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off


def _two(w, v):
    w.byte(48 + v // 10)
    w.byte(48 + v % 10)


def write_iso(w, t):
    """Write `"YYYY-MM-DDTHH:MM:SSZ"` (quoted) for Unix time `t` into Writer `w`; no heap."""
    days = t // 86400
    secs = t - days * 86400
    ymd = _ymd(days)
    w.byte(34)
    w.int(ymd // 10000)
    w.byte(45)
    _two(w, (ymd // 100) % 100)
    w.byte(45)
    _two(w, ymd % 100)
    w.byte(84)
    _two(w, secs // 3600)
    w.byte(58)
    _two(w, (secs // 60) % 60)
    w.byte(58)
    _two(w, secs % 60)
    w.raw(b'Z"')


def iso(t):
    """`YYYY-MM-DDTHH:MM:SSZ` as a str (for logs and rarely built payloads)."""
    days = t // 86400
    secs = t - days * 86400
    y, m, d = civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, secs // 3600, (secs // 60) % 60, secs % 60)


# Times before this are not believed (an unset RTC, a bad server answer).
EARLIEST = 1577836800  # 2020-01-01T00:00:00Z


class Clock:
    """Wall clock = board's monotonic seconds + an offset learnt from a trusted source."""

    def __init__(self, board_seconds):
        self._src = board_seconds
        self._offset = None

    @property
    def valid(self):
        return self._offset is not None

    def set(self, unix):
        """Set the clock from Unix seconds; implausible values (before 2020) are refused."""
        if unix < EARLIEST:
            return False
        self._offset = unix - int(self._src())
        return True

    def now(self):
        """Unix seconds, or None while the clock has never been set."""
        if self._offset is None:
            return None
        return int(self._src()) + self._offset
