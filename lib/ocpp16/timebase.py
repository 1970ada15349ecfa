"""Timestamps that stay truthful across reboots, even when taken before the clock was set.

An event recorded while the clock is unset gets a relative stamp "~<boot>.<seconds since
power-on>" in its journal body.  When the clock is set during that boot, the offset is
persisted (`time/<boot>`), so the stamp resolves exactly, even after later reboots.  If
that boot never learnt the time, the stamp resolves to a lower bound: the last time known
before that boot started (`time/f<boot>`, from `time/last`) plus its uptime.  Never 1970.
"""
from ocpp16 import store
from ocpp16.clock import EARLIEST, write_iso

_KEEP = 32   # offsets of this many recent boots are kept


class TimeBase:
    def __init__(self, state_dir, clock, board_seconds, log=print):
        self.dir = state_dir + "/time"
        store.makedirs(self.dir)
        self.clock = clock
        self.src = board_seconds
        self.log = log
        raw = store.read(self.dir + "/boot")
        self.boot = (int(raw) if raw else 0) + 1
        store.atomic_write(self.dir + "/boot", str(self.boot))
        store.remove(self.dir + "/%d" % (self.boot - _KEEP))
        store.remove(self.dir + "/f%d" % (self.boot - _KEEP))
        raw = store.read(self.dir + "/last")
        self.last = int(raw) if raw else 0
        if self.last:
            store.atomic_write(self.dir + "/f%d" % self.boot, str(self.last))

    def clock_set(self):
        """Call after the clock was set: persists this boot's offset."""
        off = self.clock.now() - int(self.src())
        store.atomic_write(self.dir + "/%d" % self.boot, str(off))
        self.note_time()

    def note_time(self):
        """Persist the current time as the last known one (done with meter saves)."""
        t = self.clock.now()
        if t:
            store.atomic_write(self.dir + "/last", str(t))
            self.last = t

    def write(self, w, t, rel):
        """Write a stamp from stamp() as a JSON string: ISO time, or the relative form."""
        if t:
            write_iso(w, t)
        else:
            w.raw(b'"~')
            w.int(self.boot)
            w.byte(46)
            w.int(rel)
            w.byte(34)

    def stamp(self):
        """(unix_time, 0) when the clock is set, else (0, relative seconds) for this boot."""
        t = self.clock.now()
        if t:
            return t, 0
        return 0, int(self.src())

    def resolve(self, boot, secs):
        """Unix time for a relative stamp, or None while it cannot be known yet."""
        if boot == self.boot:
            t = self.clock.now()
            if t is None:
                return None
            return t - int(self.src()) + secs
        raw = store.read(self.dir + "/%d" % boot)
        if raw:
            return int(raw) + secs
        # That boot never learnt the time: the last time known before it is a lower bound.
        raw = store.read(self.dir + "/f%d" % boot)
        if raw and int(raw) >= EARLIEST:
            return int(raw) + secs
        # Nothing known before it (first boot ever, offline): now is an upper bound.
        return self.clock.now()
