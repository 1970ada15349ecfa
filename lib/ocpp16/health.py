"""Which long-lived tasks are alive, for the watchdog.

Each watched task checks in (`beat`) at least once per its period; the board feeds the
hardware watchdog only while every one has (`late()` is None).  A task that dies, hangs
or spins elsewhere stops checking in, the feeding stops, and the chip resets: a dead
input task can no longer leave a relay closed with the watchdog still fed.  A task
that dies with an exception is fatal at once as well (ChargePoint.run's exception
handler: relays open, crash recorded, reset).
"""
from time import ticks_ms, ticks_diff


class Health:
    def __init__(self):
        self._names = []
        self._period = []
        self._last = []

    def watch(self, name, period_ms):
        """From now on `name` must check in at least every `period_ms`."""
        if name in self._names:
            i = self._names.index(name)
            self._period[i] = period_ms
        else:
            self._names.append(name)
            self._period.append(period_ms)
            self._last.append(0)
            i = len(self._names) - 1
        self._last[i] = ticks_ms()

    def unwatch(self, name):
        """`name` need not check in any more (it may block for as long as it likes)."""
        if name in self._names:
            i = self._names.index(name)
            for lst in (self._names, self._period, self._last):
                lst.pop(i)

    def beat(self, name):
        """Task `name` is alive (nothing happens for a name not watched)."""
        names = self._names
        if name in names:
            self._last[names.index(name)] = ticks_ms()

    def late(self):
        """The first watched task that has not checked in within its period, or None."""
        now = ticks_ms()
        for i in range(len(self._names)):
            if ticks_diff(now, self._last[i]) > self._period[i]:
                return self._names[i]
        return None
