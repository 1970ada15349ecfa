"""The journal's segment files (journal.py): writing a record, marks, deleting a
segment, quarantine, making room.  A base class of journal.Journal."""
#
# The record format, the layout under the journal's root and why records go to segments
# are described in journal.py; what happens at open in journalopen.py.
#
# Sequence numbers strictly increase across reboots: at open the next seq is the
# largest of (the `seq` file, 1 + every seq still present in a segment, removed or not).
# Only deleting a segment can make a seq vanish, so the `seq` file is rewritten
# (tmp + rename) just before a segment is deleted that holds seqs at or above the value
# it holds (_delseg): at most once per deleted segment, never per append.  (The one
# exception: the newest record being damaged by the flash itself; its seq may then come
# again.)
#
# A record is allocated in RAM before it is written (_write): its index entry, flags and
# a new segment's column slots, so a MemoryError never leaves a record on flash that
# the index (journalindex.py) does not know, nor RAM half updated.

import os
import struct
from ocpp16 import store

try:
    from micropython import const
except ImportError:  # CPython tooling
    def const(x):
        return x

try:
    from binascii import crc32
except ImportError:
    # Ports built without binascii.crc32 (it comes with `deflate`): the same CRC-32
    # with a 1 KB table built on first use, ~10x faster than bit by bit.
    from array import array
    _table = None

    def crc32(data, crc=0):
        global _table
        if _table is None:
            _table = array("I", range(256))
            for i in range(256):
                c = i
                for _ in range(8):
                    c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
                _table[i] = c
        t = _table
        crc ^= 0xFFFFFFFF
        for b in data:
            crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

VERSION = const(1)      # record format version (journal.VERSION)
# The private constants below are compiled in (not shared between modules): journal.py
# and journalopen.py define the ones they need with the same values.
_HLEN = const(24)       # v1 header length
_M0 = const(0x4F)       # "O"
_M1 = const(0x4A)       # "J"
_SPAN = const(0xFFFF)   # marks store seq - first in 16 bits
_PACK = "<BBBBIIIIBBH"  # v1 header
_STREAMS = "tm"         # stream 0: START/STOP, stream 1: METER


def _step(path):
    # Kill-point hook shared with store.atomic_write: runs after every write step.
    h = store.write_hook
    if h:
        h(path)


def _bisect(a, x, lo, hi):
    # First index in a[lo:hi] whose value is >= x (a sorted).
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


class _Segs:
    """Segment-file mechanics of journal.Journal (which holds the state: see its
    __init__)."""

    def _quarantine(self, path, name, why, data=None):
        # Keep `path` (moved) or `data` (copied) in bad/ under a name not taken yet.
        # Failing to do so (flash full) is logged, never fatal: the scan must go on.
        self.log("journal: %s: %s -> bad/" % (name, why))
        try:
            store.makedirs(self._bad)
            dst = self._bad + "/" + name
            i = 0
            while store.exists(dst):
                i += 1
                dst = "%s/%s.%d" % (self._bad, name, i)
            if data is None:
                os.rename(path, dst)
                _step(dst)
            else:
                store.atomic_write(dst, data)
                self.bytes_written += len(data)
            return True
        except OSError as e:
            self.log("journal: could not keep %s in bad/: %r" % (name, e))
            return False

    def _path(self, s, first):
        return "%s/%s%08d" % (self._q, _STREAMS[s], first)

    def _find(self, seq):
        """(stream, index entry) of a queued seq, or (0, -1)."""
        i = self._ix[0].find(seq)
        if i >= 0:
            return 0, i
        i = self._ix[1].find(seq)
        return (1, i) if i >= 0 else (0, -1)

    def _seg(self, s, seq):
        # Index of the segment of stream s holding seq: the last one with first <= seq.
        sf = self._sf[s]
        return _bisect(sf, seq + 1, 0, len(sf)) - 1

    def _last(self, s, k):
        # Last seq of segment k of stream s (removed or not).
        return self._sf[s][k] + self._sl[s][k]

    def _mark(self, s, k, seq, op):
        dl = seq - self._sf[s][k]
        struct.pack_into("<HBB", self._mk, 0, dl, op, (dl ^ (dl >> 8) ^ op ^ 0xA5) & 0xFF)
        path = self._path(s, self._sf[s][k]) + ".m"
        with open(path, "ab") as f:
            f.write(self._mk)
        self.bytes_written += 4
        _step(path)

    def _seqfile(self, v):
        b = b"%d" % v
        store.atomic_write(self._seqf, b)
        self.bytes_written += len(b)
        self._floor = v

    def _delseg(self, s, k):
        # Delete segment k of stream s (no live record left in it).  The seq file is
        # brought up to date first, so that deleting the newest seq never lets it recur.
        v = 0
        last = self._last(s, k)
        if last >= self._floor:
            v = max(self._next, last + 1)
            try:
                self._seqfile(v)
                v = 0
            except OSError as e:
                # Flash too full even for that: free the segment first, then retry
                # (a cut in between could only repeat a seq, never lose a record).
                self.log("journal: seq file not written before delete: %r" % e)
        path = self._path(s, self._sf[s][k])
        try:
            os.remove(path)
        except OSError as e:
            self.log("journal: could not delete %s: %r" % (path, e))
        _step(path)
        if v:
            try:
                self._seqfile(v)
            except OSError as e:
                self.log("journal: seq file not written: %r" % e)
        store.remove(path + ".m")   # a leftover is an orphan, cleaned at the next open
        _step(path + ".m")
        for a in (self._sf, self._sl, self._sn):
            del a[s][k]
        if k == len(self._sf[s]):
            # The segment before it may end in a failed write: start a new one.  (Its
            # size was not kept: _sz is read only while the last segment is unsealed.)
            self._sealed[s] = True

    def _free(self):
        st = os.statvfs(self.root)
        return (st[1] or st[0]) * st[4]

    def _drop_meter(self):
        """Drop the oldest METER segment (all its records); False if there is none."""
        if not self._sf[1]:
            return False
        last = self._last(1, 0)
        ix = self._ix[1]
        todo = []
        i = ix.next_live(ix.h)
        while i < ix.n and ix.seq(i) <= last:
            todo.append(ix.seq(i))
            i = ix.next_live(i + 1)
        for seq in todo:
            self.log("journal: flash short, dropped MeterValues seq %d" % seq)
        self._delseg(1, 0)
        for seq in todo:
            ix.kill(ix.find(seq))
            self._flags.pop(seq, None)
            self.dropped_meter += 1
        if todo:
            self._event("meter_dropped", len(todo))
        return True

    def _event(self, event, detail):
        if event == "full":
            self.refused += 1
        fn = self.on_space
        if fn:
            try:
                fn(event, detail)
            except Exception as e:  # the application's bug must not break the journal
                self.log("journal: on_space(%s) failed: %r" % (event, e))

    def _write(self, s, seq, kind, tx, body, n, flags):
        rl = _HLEN + n
        sf = self._sf[s]
        new = (not sf or self._sealed[s] or self._sz[s] + rl > self._segsize
               or seq - sf[-1] > _SPAN)
        first = seq if new else sf[-1]
        path = self._path(s, first)
        h = self._hdr
        struct.pack_into(_PACK, h, 0, _M0, _M1, VERSION, _HLEN, 0, n, seq, tx, kind, 0, flags)
        c = crc32(body, crc32(self._hv[8:], crc32(self._hv[:4])))
        struct.pack_into("<I", h, 4, c)
        # RAM first: a record on flash must be in the index, so whatever can run out of
        # memory happens before the write (a MemoryError then queues nothing and leaves
        # the index and the segment columns as they were).  After the write nothing
        # allocates until the record is indexed.
        ix = self._ix[s]
        ix.reserve(seq, tx)
        lists = (sf, self._sl[s], self._sn[s])
        if new:
            for a in lists:
                a.reserve()
        if flags:
            self._flags[seq] = flags
        if new:
            for a in lists:
                a.append(0)     # reserved: cannot fail
        try:
            f = open(path, "ab")
            try:
                f.write(h)
                _step(path)     # not durable: a kill here leaves a torn record (POSIX)
                f.write(body)
            finally:
                f.close()
        except BaseException:
            # The file may now end in a partial record: never append after it.  A new
            # segment holds nothing else, so it goes (best effort; else the next open
            # reports it).
            if flags:
                self._flags.pop(seq, None)
            if new:
                for a in lists:
                    a.pop()
                store.remove(path)
            else:
                self._sealed[s] = True
            raise
        # (_sz is set only now: after a failed write the previous segment, last again
        # if it was, keeps its own size.)
        if new:
            sf[-1] = seq
            self._sl[s][-1] = 0
            self._sn[s][-1] = 1
            off = 0
            self._sealed[s] = False
        else:
            self._sl[s][-1] = seq - sf[-1]     # <= _SPAN, else a new segment
            self._sn[s][-1] += 1
            off = self._sz[s]
        self._sz[s] = off + rl
        ix.push(seq, tx, kind, 0)
        # The record is durable and indexed: from here on nothing may raise.
        self.bytes_written += rl
        _step(path)
        if new and len(sf) > 1 and self._sn[s][-2] == 0:
            try:
                self._delseg(s, len(sf) - 2)
            except Exception as e:
                try:
                    self.log("journal: could not delete an emptied segment: %r" % e)
                except Exception:
                    pass
