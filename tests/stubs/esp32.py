"""Minimal stand-in for the `esp32` module: the PCNT pulse counter unit.

Like the hardware, a unit counts up to `max` and then restarts at 0.  `add()` is a
test helper (n edges arrive); `PCNT.units` holds the singletons.
"""


class PCNT:
    IGNORE = 0
    INCREMENT = 1
    DECREMENT = 2
    HOLD = 3
    REVERSE = 4
    IRQ_ZERO = 1
    IRQ_MIN = 2
    IRQ_MAX = 4
    IRQ_THRESHOLD0 = 8
    IRQ_THRESHOLD1 = 16
    units = {}

    def __new__(cls, id, **kw):
        u = cls.units.get(id)
        if u is None:
            u = object.__new__(cls)
            u.id = id
            u.conf = {}
            u._v = 0
            u.started = False
            cls.units[id] = u
        return u

    def __init__(self, id, **kw):
        if kw:
            self.init(**kw)

    def init(self, **kw):
        if "filter" in kw and not 0 <= kw["filter"] <= 1023:
            raise ValueError("filter")
        if "max" in kw and not 1 <= kw["max"] <= 32767:
            raise ValueError("max")
        if "min" in kw and not -32768 <= kw["min"] <= -1:
            raise ValueError("min")
        self.conf.update(kw)
        if "value" in kw:
            self._v = kw["value"]

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def value(self, v=None):
        r = self._v
        if v is not None:
            self._v = v
        return r

    def add(self, n):
        """Test helper: n counted edges; the unit restarts at 0 when it reaches max."""
        if self.started:
            self._v = (self._v + n) % self.conf.get("max", 32767)
