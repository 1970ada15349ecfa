"""Timestamps that stay truthful across reboots, even when taken before the clock was set.

An event recorded while the clock is unset gets a relative stamp "~<boot>.<seconds since
power-on>" in its journal body.  It is resolved when the message is sent:

- exact, when that boot learnt the time: its offset (Unix time at its power-on) is
  persisted in `time/<boot>` when the clock is first set, and kept across reboots;
- otherwise a lower bound: the latest time known to have passed before that boot began
  (`time/f<boot>`, from `time/last`: the first clock set of an earlier boot, or the stamp
  of the last meter save before the power went, see advance()) plus the uptime;
- otherwise an upper bound: the power-on time of the first later boot that learnt the
  time (the event happened before that boot began);
- otherwise (nothing known, e.g. the current boot has no clock yet) None: the caller
  waits.  Never 1970.

Resolution depends only on files, never on when the message is sent, so a message sent
again after a power cut carries the same timestamps.  The files of the last `_KEEP`
boots are kept; older relative stamps fall back to the bounds above.
"""
import os
from ocpp16 import store
from ocpp16.clock import EARLIEST, write_iso

_KEEP = 32   # offsets of this many recent boots are kept


def _int(raw):
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


class TimeBase:
    def __init__(self, state_dir, clock, board_seconds, log=print):
        self.dir = state_dir + "/time"
        store.makedirs(self.dir)
        self.clock = clock
        self.src = board_seconds
        self.log = log
        self.offset = None      # Unix time at this power-on, once the clock is set
        last = _int(store.read(self.dir + "/boot"))
        if last is None:
            # Lost or damaged: never reuse a boot number a relative stamp may carry.
            last = 0
            for name in os.listdir(self.dir):
                v = _int(name[1:] if name[:1] == "f" else name)
                if v is not None and v > last:
                    last = v
            if last:
                log("time: boot counter unreadable; resuming after boot %d" % last)
        self.boot = last + 1
        store.atomic_write(self.dir + "/boot", str(self.boot))
        store.remove(self.dir + "/%d" % (self.boot - _KEEP))
        store.remove(self.dir + "/f%d" % (self.boot - _KEEP))
        self.last = _int(store.read(self.dir + "/last")) or 0
        if self.last:
            store.atomic_write(self.dir + "/f%d" % self.boot, str(self.last))

    def clock_set(self):
        """Call after the clock was set: persists this boot's offset."""
        off = self.clock.now() - int(self.src())
        store.atomic_write(self.dir + "/%d" % self.boot, str(off))
        self.offset = off
        self.note_time()

    def note_time(self):
        """Persist the current time as the last known one."""
        t = self.clock.now()
        if t:
            store.atomic_write(self.dir + "/last", str(t))
            self.last = t

    def advance(self, t):
        """`t` (Unix time) is known to have passed before this boot began (e.g. the stamp
        of the last meter save): raise this boot's lower bound to it."""
        if t and t >= EARLIEST and t > self.last and self.offset is None:
            store.atomic_write(self.dir + "/last", str(t))
            store.atomic_write(self.dir + "/f%d" % self.boot, str(t))
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

    def _offset(self, boot):
        # Unix time at the power-on of `boot`, if that boot learnt the time.
        if boot == self.boot:
            if self.offset is None and self.clock.valid:
                return self.clock.now() - int(self.src())
            return self.offset
        return _int(store.read(self.dir + "/%d" % boot))

    def resolve(self, boot, secs):
        """Unix time for a relative stamp, or None while it cannot be known yet."""
        off = self._offset(boot)
        if off is not None:
            return off + secs
        if boot < self.boot:
            # That boot never learnt the time: the last time known before it is a lower bound.
            low = _int(store.read(self.dir + "/f%d" % boot))
            if low is not None and low >= EARLIEST:
                return low + secs
            # Nothing known before it (e.g. the first boot ever, offline): it ended before
            # the first later boot that learnt the time began.
            for b in range(boot + 1, min(self.boot, boot + _KEEP) + 1):
                off = self._offset(b)
                if off is not None:
                    return off
        return None
