"""Power-loss-safe journal of transaction-related messages (StartTransaction,
StopTransaction, periodic/clock-aligned MeterValues).

Design notes follow as comments (not in this docstring: compiled from source on a
small fragmented heap, a long docstring is one large allocation).
"""
# The charge point logic hands over each message body (the JSON payload) before its
# first send; the journal keeps the bodies on flash, in order, until `remove(seq)`
# (CALLRESULT, or given up after TransactionMessageAttempts CALLERRORs).  A power cut at
# any instant loses nothing whose `append` returned, and a torn or corrupt record costs
# only itself: it is reported, copied or moved to `bad/`, and the scan goes on.
#
# Why segments and not one file per record
# -----------------------------------------
# littlefs keeps a file inline in its directory only below the cache size (128 B with
# MicroPython's defaults); anything larger takes a whole erase block.  One ~300 B record
# per file therefore fills a 1 MB filesystem after ~240 records.  Records are instead
# appended to *segment* files of at most one block (`seg_size`, by default the
# filesystem block size).  littlefs commits a file only on sync/close and copies the last
# block on write (copy-on-write), so an append either lands completely or not at all,
# and records already in the segment are never at risk.  On a plain POSIX filesystem
# (the unix port) a torn tail is possible; the CRC finds it.
#
# START/STOP records and METER records go to two separate segment streams, so that the
# oldest MeterValues can be dropped a whole block at a time when flash runs short,
# without ever rewriting a block that holds a START or STOP.  The global sequence number
# keeps chronological order across the two streams.
#
# Layout under `root`
# -------------------
#     q/t00000042      START/STOP segment; name = seq of its first record
#     q/m00000043      METER segment
#     q/t00000042.m    marks of that segment: append-only 4-byte entries
#     txids            transactionId log: append-only 12-byte entries (journaltxid.py)
#     tx/<tx>          transactionId of local transaction <tx> as decimal text: only a value
#                      beyond 32 bits (the previous version kept every one there)
#     seq              lower bound for the next seq (decimal text), see journalseg.py
#     bad/             quarantined files: corrupt segments (copies), leftovers
#
# Record format (version 1), little-endian, 24-byte header then the body:
#
#     off size
#      0   2   magic b"OJ"                            \
#      2   1   format version (1)                      | envelope: the same in every
#      3   1   header length (24)                      | version, so a later or older
#      4   4   CRC32 of bytes 0..3 and 8..end          | reader can check and skip any
#      8   4   body length                            /  record
#     12   4   seq
#     16   4   tx (local transaction number, 0 = none)
#     20   1   kind (START=1, STOP=2, METER=3)
#     21   1   reserved (0)
#     22   2   flags (the caller's business)
#     24   n   body
#
# Bytes written per append = 24 + len(body) of file data; per remove 4 bytes (a mark),
# or a file delete; per set_txid 12 bytes, per forget 12 bytes or none (see the
# transactionId log).  What littlefs makes of it (4096-byte blocks, MicroPython defaults,
# counted on a RAM block device by tests/device/test_journal.py::test_flash_cost_per_record):
#
#     record                  file bytes   programmed   erases     per remove
#     StartTransaction 187 B     211         ~2.1 KB     1.0       ~100 B, 0.05 erase
#     StopTransaction  467 B     491         ~2.3 KB     1.0       ~80 B
#     MeterValues      305 B     329         ~2.2 KB     1.0       ~90 B
#
# littlefs copies the segment's partly filled last block on every synced append, hence
# ~2 KB programmed; one file per record programs ~0.6 KB, but the erase count (what
# wears flash) is the same one block per append, and it fits 8x fewer records: a 1 MB
# filesystem holds ~2,800 records of ~330 B in segments, ~240 as single files.
#
# Marks entries (4 bytes): u16 seq - segment first seq, u8 op (1 = removed, 2 = one
# failed attempt), u8 check byte.  A remove therefore appends 4 bytes to a small inline
# file instead of rewriting the segment; when the last live record of a sealed segment
# goes, the segment and its marks file are deleted instead.  A torn or bad entry is
# ignored (at worst a delivered record is sent again; a record is never lost).
#
# The transactionId of each local transaction is kept in `txids`, a small append-only
# log (and, for a value beyond 32 bits, a tx/<tx> file): journaltxid.py.
#
# Sequence numbers strictly increase across reboots, also when segments are deleted
# (the `seq` file): journalseg.py.
#
# Recovery at open: a torn or corrupt record costs only itself (reported, copied to
# bad/, the segment rewritten with its good records); leftovers of interrupted writes
# are moved to bad/; recovery is idempotent: journalopen.py.
#
# Format versions: a segment holding a record with an intact envelope but an unknown
# version is left in place untouched (none of its records is queued), reported and
# counted in `unknown` (a later library wrote it; an older one never deletes it).
# Nothing is deleted on upgrade.  bad/ is never emptied by the journal.
#
# RAM: an index of 3 bytes per queued record, in chunks (journalindex.py).  No bodies,
# no offsets: read() finds a record by walking its segment's headers.
#
# Modules, by job:
#     journal.py       this overview; Journal: its state and the queue API (append,
#                      head, records, read, remove, failed)
#     journalseg.py    segment files: writing a record, marks, deleting a segment,
#                      quarantine, dropping METER records when flash runs short
#     journaltxid.py   the transactionId log (set_txid, txid, forget, ...)
#     journalindex.py  the index in RAM (_Index, _Col)
#     journalopen.py   opening: scan, repair, quarantine, migration of old files.  Runs
#                      at boot only; imported by Journal.__init__ and dropped after.

import os
import struct
from ocpp16 import store
from ocpp16.journalindex import _Col, _Index
from ocpp16.journalseg import _Segs, crc32, _STREAMS, VERSION  # noqa: F401 (VERSION)
from ocpp16.journaltxid import _Txids

try:
    from micropython import const
except ImportError:  # CPython tooling
    def const(x):
        return x

START = const(1)
STOP = const(2)
METER = const(3)

# The same values as in journalseg.py (compiled in, not shared).
_HLEN = const(24)       # v1 header length
_M0 = const(0x4F)       # "O"
_M1 = const(0x4A)       # "J"
_MAXBODY = const(0xFFFF)
_RM = const(1)          # marks: removed
_FAIL = const(2)        # marks: one failed attempt
_ENOSPC = const(28)
_EIO = const(5)
_TXE = const(12)        # transactionId log entry size



class Journal(_Segs, _Txids):
    """The queue of transaction-related messages, durable on flash.

    `root` is created if missing.  Opening scans it (journalopen.py) and
    logs every torn/corrupt record it finds by name; such records are moved or copied
    to `root/bad/` and counted in `corrupt`, the rest form the queue.
    `min_free`: bytes of filesystem space the journal leaves to others; below it the
    oldest METER records are dropped, then appends fail with ENOSPC.
    `seg_size`: segment size in bytes, default the filesystem block size (tests use
    small ones to exercise many segments).
    `scratch`: a writable buffer of at least `seg_size` bytes that is idle while the
    journal opens (the charge point lends the websocket's transmit buffer): segments are
    read into it, so opening needs no segment-sized block from a fragmented heap.
    `free`: a callable returning the free bytes of the filesystem (default: statvfs of
    `root`; the simulator passes its simulated flash, board.flash_free).  Asked rarely
    (see append), never per write.
    `on_space`: fn(event, detail), told when space runs short: "meter_dropped" with the
    number of METER records just dropped, "full" with the kind (START, STOP, METER) of
    an append refused with ENOSPC.  Called inside append: it must not append.
    """

    def __init__(self, root, log=print, min_free=16384, seg_size=0, scratch=None,
                 free=None, on_space=None):
        root = root.rstrip("/") or "/"
        self.root = root
        base = "" if root == "/" else root
        self._q = base + "/q"
        self._txd = base + "/tx"
        self._bad = base + "/bad"
        self._seqf = base + "/seq"
        self.log = log
        self.min_free = min_free
        self.corrupt = 0        # torn/corrupt records and leftovers found (and quarantined)
        self.unknown = 0        # segments of an unknown format version, left in place
        self.dropped_meter = 0  # METER records dropped for lack of space
        self.refused = 0        # appends refused with ENOSPC
        self.on_space = on_space
        if free is not None:
            self._free = free   # shadows the statvfs method
        self.bytes_written = 0  # file bytes this instance wrote
        store.makedirs(self._q)
        store.makedirs(self._txd)
        if not seg_size:
            try:
                seg_size = os.statvfs(root)[0]
            except OSError:
                seg_size = 0
            if not 512 <= seg_size <= 32768:
                seg_size = 4096
        self._segsize = seg_size
        self._hdr = bytearray(_HLEN)
        self._hv = memoryview(self._hdr)
        self._mk = bytearray(4)
        # Record index per stream (START/STOP, METER), each in seq order.
        self._ix = (_Index(), _Index())
        self._flags = {}        # seq -> flags, for the (rare) records with flags
        # Segments per stream, in seq order: first seq, last seq less the first (16 bits:
        # a segment spans at most _SPAN seqs), live records.  Only the last segment's
        # size is ever needed (to know whether the next record fits): one int per stream,
        # meaningful while that segment is not sealed (deleting the last segment seals).
        self._sf = (_Col(), _Col())
        self._sl = (_Col("H", 6), _Col("H", 6))
        self._sn = (_Col("H", 6), _Col("H", 6))    # a segment holds < 1,400 records
        self._sz = [0, 0]
        self._sealed = [False, False]   # last segment of the stream takes no more appends
        self._map = {}                  # tx -> transactionId (few live transactions)
        self._txf = base + "/txids"     # the transactionId log
        self._tlen = 0                  # its length in bytes
        self._tdirty = False            # rewrite it before the next entry (damage, failed write)
        self._wide = set()              # txs whose mapping lives in a tx/<tx> file instead
        self._te = bytearray(_TXE)
        self._floor = 0                 # value in the seq file
        self._slack = -1                # estimated free bytes above min_free (-1: ask)
        self._next = 1
        # Open: journalopen.py, imported for this and dropped from sys.modules after
        # (nor kept by the package): its code costs RAM only while it runs, at boot.
        import sys
        import ocpp16
        from ocpp16 import journalopen
        try:
            journalopen.scan(self, scratch)
        finally:
            sys.modules.pop("ocpp16.journalopen", None)
            try:
                delattr(ocpp16, "journalopen")
            except AttributeError:
                pass

    # ------------------------------------------------------------ public API
    def append(self, kind, tx, body, flags=0):
        """Queue one message body (bytes-like, at most 65535 bytes); durable when it
        returns.  `tx`: 0..2**32-1; `flags`: 0..65535, stored with the record.

        Returns its seq (strictly increasing, also across reboots).  When free space
        is below `min_free`, the oldest METER records are dropped first (logged,
        counted in `dropped_meter`, told to `on_space`); START/STOP never are.  If that
        is not enough, raises OSError(ENOSPC) and queues nothing (counted in `refused`,
        told to `on_space`).  A STOP may use the lower half of `min_free`: a
        transaction that could start must be able to end.
        """
        if kind != START and kind != STOP and kind != METER:
            raise ValueError("kind")
        n = len(body)
        if n > _MAXBODY or not 0 <= tx <= 0xFFFFFFFF or not 0 <= flags <= 0xFFFF:
            raise ValueError("too large")
        s = 1 if kind == METER else 0
        if self.min_free > 0:
            # statvfs on littlefs walks the whole filesystem, so it is asked only when
            # a conservative estimate (each append may take a fresh block) says we may
            # be near min_free.  Writes by others in between are not seen; a real
            # ENOSPC from the write is handled below the same way.
            need = self._segsize + _HLEN + n
            if self._slack < need:
                floor = self.min_free // 2 if kind == STOP else self.min_free
                f = self._free()
                while f < floor + need:
                    if not self._drop_meter():
                        if f >= floor:
                            break
                        self._slack = -1
                        self._event("full", kind)
                        raise OSError(_ENOSPC)
                    f = self._free()
                self._slack = f - self.min_free
            self._slack -= need
        while True:
            seq = self._next
            # Burnt even if the write fails: a failed file is never appended to again.
            self._next = seq + 1
            try:
                self._write(s, seq, kind, tx, body, n, flags)
                return seq
            except OSError as e:
                self._slack = -1
                if e.args[0] != _ENOSPC or not self._drop_meter():
                    if e.args[0] == _ENOSPC:
                        self._event("full", kind)
                    raise

    def __len__(self):
        return self._ix[0].live + self._ix[1].live

    def _tuple(self, s, i):
        ix = self._ix[s]
        seq = ix.seq(i)
        return (seq, ix.kind(i), ix.tx(i), ix.att(i), self._flags.get(seq, 0))

    def _first_from(self, nxt):
        # (stream, entry) of the first queued record with seq >= nxt, or (-1, 0).
        bs = -1
        bi = bq = 0
        for s in (0, 1):
            ix = self._ix[s]
            i = ix.next_live(ix.lower(nxt))
            if i < ix.n:
                q = ix.seq(i)
                if bs < 0 or q < bq:
                    bs, bi, bq = s, i, q
        return bs, bi

    def head(self):
        """The oldest record as (seq, kind, tx, attempts, flags), or None."""
        s, i = self._first_from(0)
        return None if s < 0 else self._tuple(s, i)

    def records(self):
        """Iterate (seq, kind, tx, attempts, flags) in order.  Removing while iterating
        is allowed (each step looks the position up again)."""
        nxt = 0
        while True:
            s, i = self._first_from(nxt)
            if s < 0:
                return
            r = self._tuple(s, i)
            nxt = r[0] + 1
            yield r

    def read(self, seq, buf):
        """Read the body of `seq` into `buf` (bytearray/memoryview); returns its length.

        ValueError if it does not fit, KeyError if seq is not queued.  If the record
        fails its CRC now (flash damaged since open), it is logged, copied to bad/,
        removed from the queue, counted in `corrupt`, and OSError(EIO) is raised.
        """
        s, i = self._find(seq)
        if i < 0:
            raise KeyError(seq)
        ix = self._ix[s]
        k = self._seg(s, seq)
        path = self._path(s, self._sf[s][k])
        h = self._hdr
        with open(path, "rb") as f:
            f.seek(self._locate(f, seq, buf))
            ok = (f.readinto(h) == _HLEN and h[0] == _M0 and h[1] == _M1
                  and struct.unpack_from("<I", h, 12)[0] == seq)
            n = struct.unpack_from("<I", h, 8)[0] if ok else 0
            if ok and n > len(buf) and n <= _MAXBODY:
                raise ValueError("body is %d bytes" % n)
            ok = ok and n <= _MAXBODY and (n == 0 or f.readinto(buf, n) == n)
        if ok:
            c = crc32(self._hv[8:], crc32(self._hv[:4]))
            if n:
                c = crc32(buf if n == len(buf) else memoryview(buf)[:n], c)
            ok = (c == struct.unpack_from("<I", h, 4)[0] and h[0] == _M0 and h[1] == _M1
                  and struct.unpack_from("<I", h, 12)[0] == seq)
        if ok:
            return n
        self.corrupt += 1
        name = "%s%08d" % (_STREAMS[s], self._sf[s][k])
        d = store.read(path)
        if d is None:
            self.log("journal: q/%s: vanished (seq %d)" % (name, seq))
        else:
            self._quarantine(path, name, "seq %d damaged since open" % seq, d)
        self.remove(seq)
        raise OSError(_EIO)

    def _locate(self, f, seq, buf):
        # The offset of record `seq` in the segment open in f (0 if it is not found:
        # read then fails its checks).  The records follow each other from offset 0 in
        # seq order: walk the headers.  A header the walk cannot trust (flash damaged
        # since open, or a segment that could not be rewritten after a repair) ends the
        # walk, and a scan for the record's own header takes over (in `buf`), so damage
        # costs only the damaged record.  A body is JSON text, which has no control
        # bytes: the header's length byte (24) is never found inside one.
        h = self._hdr
        p = 0
        while True:
            f.seek(p)
            if (f.readinto(h) != _HLEN or h[0] != _M0 or h[1] != _M1 or h[3] != _HLEN):
                break
            q = struct.unpack_from("<I", h, 12)[0]
            if q == seq:
                return p
            if q > seq:
                break
            p += _HLEN + struct.unpack_from("<I", h, 8)[0]
        w = len(buf)
        if w < 32:
            return 0
        p = 0
        while True:
            f.seek(p)
            n = f.readinto(buf)
            if not n or n < _HLEN:
                return 0
            for i in range(n - 15):
                if (buf[i] == _M0 and buf[i + 1] == _M1 and buf[i + 3] == _HLEN
                        and struct.unpack_from("<I", buf, i + 12)[0] == seq):
                    return p + i
            if n < w:
                return 0
            p += n - 15

    def remove(self, seq):
        """Forget a delivered (or given-up) record.  Unknown seq: no-op."""
        s, i = self._find(seq)
        if i < 0:
            return
        k = self._seg(s, seq)
        sn = self._sn[s]
        active = k == len(sn) - 1 and not self._sealed[s]
        done = False
        if sn[k] == 1 and not active:
            try:
                self._delseg(s, k)
                done = True
            except OSError as e:   # e.g. no room for the seq file: a mark does as well
                self.log("journal: could not delete segment: %r" % e)
        if not done:
            self._mark(s, k, seq, _RM)
            sn[k] -= 1
        self._ix[s].kill(i)
        self._flags.pop(seq, None)

    def failed(self, seq):
        """Count one CALLERROR for `seq` (persisted); returns the attempts so far.
        Unknown seq (already removed or dropped): returns 0."""
        s, i = self._find(seq)
        if i < 0:
            return 0
        ix = self._ix[s]
        a = ix.att(i)
        if a < 255:
            # RAM first (a first failure takes a dict slot): a MemoryError then leaves
            # flash and index agreeing; a failed mark puts the count back.
            ix.set_att(i, a + 1)
            try:
                self._mark(s, self._seg(s, seq), seq, _FAIL)
            except BaseException:
                ix.set_att(i, a)
                raise
            return a + 1
        self._mark(s, self._seg(s, seq), seq, _FAIL)
        return a
