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
#     txids            transactionId log: append-only 12-byte entries, see below
#     tx/<tx>          transactionId of local transaction <tx> as decimal text: only a value
#                      beyond 32 bits (the previous version kept every one there)
#     seq              lower bound for the next seq (decimal text), see below
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
# transactionId log
# -----------------
# The central system's transactionId of each local transaction (set when its
# StartTransaction is answered, -1 when that was given up, forgotten once no record of
# the transaction is left) is kept in `txids`, a log of 12-byte entries, little-endian:
#
#     u32 tx, i32 transactionId, u8 op (1 = set, 2 = forget), u8 version (1),
#     u16 low half of the CRC32 of the first 10 bytes
#
# Replayed in order at open (the last entry of a tx wins).  set_txid appends one entry,
# forget appends one, except that the forget that leaves no mapping truncates the log
# instead (open "wb": committed at close on littlefs, O_TRUNC on POSIX; either way old or
# empty, and both mean the same then).  Replaying a queue, one transaction at a time, the
# log thus never holds more than one entry.  When transactions overlap (two connectors)
# and an append would take it past 96 bytes (or twice its live entries), the log is
# rewritten with its live entries (tmp + rename) instead: it stays an inline littlefs
# file, rewritten every few transactions.  Each write is one open/append/close: no
# fsync, no rename, no delete per transaction.  (The previous version wrote a file per
# transaction, tmp + flush + rename, and deleted it: on the unix port over ext4 ~180 us
# of CPU per transaction for set + forget, now ~30 us.)  A torn tail or a damaged entry
# costs only itself: reported, counted in `corrupt`, the log copied to bad/ and
# rewritten with the intact entries at open; a failed append makes the next write a
# rewrite (never an append after a partial entry).  Flash (RAM block device, 4096-byte
# blocks, tests/device/test_journal.py::test_flash_cost_of_the_txid_log), set + forget
# per transaction: ~130 B programmed, 0.03 erases in a replay; ~250 B, 0.06 erases with
# another mapping live; the previous version's files: ~225 B, 0.06-0.07 erases.
#
# A transactionId beyond 32 bits (the schema's integer is unbounded; no central system
# is known to send one) is kept as the previous version did, in tx/<tx>, and a file there
# wins over the log: set_txid writes the file before it forgets the tx in the log, and
# a later 32-bit value is logged before the file is deleted, so a cut in between leaves
# the old value or the new one.  At open the files of a previous version are moved into
# the log (one rewrite of the log, then the files are deleted; a cut in between repeats
# it at the next open); an unreadable one goes to bad/, a leftover .tmp is deleted.  An
# older library does not read `txids` (a downgrade loses the mappings of transactions
# not finished by then: their later messages carry -1).
#
# Sequence numbers strictly increase across reboots: at open the next seq is the
# largest of (the `seq` file, 1 + every seq still present in a segment, removed or not).
# Only deleting a segment can make a seq vanish, so the `seq` file is rewritten
# (tmp + rename) just before a segment is deleted that holds seqs at or above the value
# it holds: at most once per deleted segment, never per append.  (The one exception:
# the newest record being damaged by the flash itself; its seq may then come again.)
#
# Recovery at open, per segment: records are checked (envelope, CRC, seq order, kind);
# after damage the scan resynchronises on the next intact envelope, so a torn or
# flipped record costs only itself.  A damaged segment is copied to bad/ and rewritten
# with its good records (tmp + rename); an empty or all-bad one is moved to bad/; a
# leftover `.tmp` in q/ is moved to bad/.  Each is logged with its name and counted in
# `corrupt`.  Recovery is idempotent: a power cut during it is repaired at the next open.
#
# Format versions: a segment holding a record with an intact envelope but an unknown
# version is left in place untouched (none of its records is queued), reported and
# counted in `unknown` (a later library wrote it; an older one never deletes it).
# Nothing is deleted on upgrade.  bad/ is never emptied by the journal.
#
# Index in RAM, one per stream (each stream is in seq order on flash, so nothing is
# sorted at open): 6 bytes per queued record, seq and tx relative to per-chunk bases,
# offset, kind (see _Index); length and flags are read from the record's header (flags,
# rarely used, live in a small dict, like attempts).  Chunks of 64 records (one 392-byte
# array each), plus 10 bytes per segment in 128-byte column chunks: its first seq and
# live count (32 bits each), its last seq less the first (16 bits: a segment spans at
# most 65535 seqs); the size of the newest segment of each stream is one int (no other
# size is ever read).  Chunks, not growing arrays: on a fragmented heap (the
# simulator's, after loading its code, has no free block above ~3 KB) a long queue must
# never need one large block, nor a sort's n-item list at boot.  Chunks before the head
# are released as the queue is delivered (one is kept for reuse).  The index entry of
# the next record, its flags and a new segment's column slots are allocated before the
# record is written, so a MemoryError never leaves a record on flash that RAM does not
# know, nor RAM half updated.  Measured with
# 2,000 queued records (START 187 B / STOP 467 B, 4 KB segments, gc.mem_alloc before and
# after): ~7.8 B per record on the 32-bit port (index ~6.7, segment columns ~1.1), ~8.6 B
# on the 64-bit one (with four 32-bit columns: 8.5 and 9.3; the previous 12-byte entries
# in 16-record chunks: 15.0 and 16.5).
# No bodies in RAM.
#

import os
import struct
from array import array
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

START = const(1)
STOP = const(2)
METER = const(3)
VERSION = const(1)

_HLEN = const(24)       # v1 header length
_ENV = const(12)        # envelope (magic, version, hlen, crc, body length): every version
_M0 = const(0x4F)       # "O"
_M1 = const(0x4A)       # "J"
_MAXBODY = const(0xFFFF)
_SPAN = const(0xFFFF)   # marks store seq - first in 16 bits
_RM = const(1)
_FAIL = const(2)
_ENOSPC = const(28)
_EIO = const(5)
_PACK = "<BBBBIIIIBBH"  # v1 header
_STREAMS = "tm"         # stream 0: START/STOP, stream 1: METER
# Index arrays and their item types (MicroPython arrays have no .typecode).
# Index chunks (see _Index).
_CB = const(6)          # 64 records per index chunk
_CN = const(64)
_CM = const(63)
_S0 = const(4)          # chunk words: seq base (2), tx base (2), then per slot:
_T0 = const(68)         #   seq - base; tx - base (14 bits) | kind << 14; offset
_O0 = const(132)
_CW = const(196)
_TX0 = const(0x2000)    # the 14-bit tx code of tx 0 (any base)
# transactionId log (see the header comment).
_TXE = const(12)        # entry size
# The log is rewritten (compacted) rather than grown past this many bytes: it stays an
# inline littlefs file.  Tests lower it to exercise the rewrites.
txlog_max = 96
_TSET = const(1)
_TDEL = const(2)
_TVER = const(1)


def _step(path):
    # Kill-point hook shared with store.atomic_write: runs after every write step.
    h = store.write_hook
    if h:
        h(path)


def _int(s):
    try:
        return int(s)
    except ValueError:
        return None


def _narrow(tx, v):
    # Fits a transactionId log entry: tx unsigned, v signed, 32 bits each.
    return 0 <= tx <= 0xFFFFFFFF and -0x80000000 <= v <= 0x7FFFFFFF


def _bisect(a, x, lo, hi):
    # First index in a[lo:hi] whose value is >= x (a sorted).
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _envelope(d, n, p):
    """Length of a CRC-valid record of any version at d[p:], else 0."""
    if n - p < _ENV or d[p] != _M0 or d[p + 1] != _M1:
        return 0
    hl = d[p + 3]
    if hl < _ENV:
        return 0
    end = p + hl + struct.unpack_from("<I", d, p + 8)[0]
    if end > n:
        return 0
    mv = memoryview(d)
    if crc32(mv[p + 8:end], crc32(mv[p:p + 4])) != struct.unpack_from("<I", d, p + 4)[0]:
        return 0
    return end - p


class _Col:
    """A list of unsigned ints (a segment column): array(t) chunks of 2**b items, 128
    bytes each (t "I" with b 5, or "H" with b 6): like a list, but it never asks for one
    large block as it grows (see _Index)."""

    def __init__(self, t="I", b=5):
        self.c = []
        self.n = 0
        self.t = t
        self.b = b
        self.m = (1 << b) - 1

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i < 0:
            i += self.n
        return self.c[i >> self.b][i & self.m]

    def __setitem__(self, i, v):
        if i < 0:
            i += self.n
        self.c[i >> self.b][i & self.m] = v

    def reserve(self):
        """Make room for one more append: the only allocation (append then cannot fail)."""
        if self.n >> self.b == len(self.c):
            self.c.append(array(self.t, bytes(128)))

    def append(self, v):
        self.reserve()
        i = self.n
        self.c[i >> self.b][i & self.m] = v
        self.n = i + 1

    def pop(self):
        self.n = i = self.n - 1
        v = self.c[i >> self.b][i & self.m]
        try:
            del self.c[(i + self.m) >> self.b:]     # spare chunks (housekeeping only)
        except MemoryError:
            pass
        return v

    def __delitem__(self, k):
        b = self.b
        m = self.m
        c = self.c
        for i in range(k, self.n - 1):
            c[i >> b][i & m] = c[(i + 1) >> b][(i + 1) & m]
        self.pop()


class _Index:
    """The queued records of one stream in seq order, 6 bytes each.

    Entry i is slot i & 63 of chunk i >> 6.  A chunk is one array("H") of _CW words:
    its base seq and base tx (two words each), then per slot the seq less the base seq,
    the tx relative to the base tx in 14 bits with the kind in the top 2 (0 = removed),
    and the offset of the record in its segment.  The length and flags are in the
    record's header on flash; attempts (after failures only) and offsets beyond 16 bits
    (segments over 64 KB) live in small dicts keyed by seq, dropped with the record.
    Every chunk is the same small block (392 B), allocated once per 64 appends or less:
    a long queue never needs a larger contiguous block of RAM, and chunks fit the holes
    of a fragmented heap.  A record whose seq or tx the current chunk cannot express
    (seq more than 65535 above its base, tx more than 8191 off its base) starts the
    next chunk; the slots skipped are filled as removed entries that repeat the last
    seq, so seqs never decrease along the entries and lookups stay a bisection.
    Removed entries are skipped, compacted lazily; chunks before the head are released
    (one is kept for reuse)."""

    def __init__(self):
        self.c = []         # chunks
        self.n = 0          # entries used (skipped slots included)
        self.h = 0          # first entry that may be live
        self.live = 0
        self.at = {}        # seq -> attempts, for records that failed at least once
        self.bo = {}        # seq -> offset, for offsets that do not fit 16 bits
        self.sp = None      # a released chunk, reused by the next reserve

    def seq(self, i):
        ch = self.c[i >> _CB]
        return (ch[0] | ch[1] << 16) + ch[_S0 + (i & _CM)]

    def tx(self, i):
        ch = self.c[i >> _CB]
        v = ch[_T0 + (i & _CM)] & 0x3FFF
        if v == _TX0:
            return 0
        return (ch[2] | ch[3] << 16) + (v - 0x4000 if v & 0x2000 else v)

    def off(self, i):
        v = self.c[i >> _CB][_O0 + (i & _CM)]
        return self.bo[self.seq(i)] if v == 0xFFFF else v

    def kind(self, i):
        return self.c[i >> _CB][_T0 + (i & _CM)] >> 14

    def att(self, i):
        return self.at.get(self.seq(i), 0) if self.at else 0

    def set_att(self, i, a):
        """May raise MemoryError (a record's first failure); the index stays whole."""
        q = self.seq(i)
        if a:
            self.at[q] = a
        else:
            self.at.pop(q, None)

    @staticmethod
    def _fits(ch, seq, tx):
        # Can chunk ch (holding entries) express (seq, tx)?
        d = seq - (ch[0] | ch[1] << 16)
        if not 0 <= d <= 0xFFFF:
            return False
        b = ch[2] | ch[3] << 16
        return not tx or not b or -0x1FFF <= tx - b <= 0x1FFF

    def _slot(self, seq, tx):
        # The entry push(seq, tx) will take: the next one, or the start of the next
        # chunk when the current one cannot express it.
        i = self.n
        if i & _CM and not self._fits(self.c[i >> _CB], seq, tx):
            i = (i | _CM) + 1
        return i

    def reserve(self, seq, tx):
        """Make room for push(seq, tx, ...): the only allocation of a push.  A
        MemoryError here changes nothing that matters (a spare chunk at most)."""
        k = self._slot(seq, tx) >> _CB
        if k == len(self.c):
            ch = self.sp
            if ch is None:
                ch = array("H", bytes(2 * _CW))
            self.c.append(ch)
            self.sp = None

    def _put(self, i, seq, tx, off, kind):
        # Store an entry at i (a slot _slot() chose, its chunk present).
        ch = self.c[i >> _CB]
        j = i & _CM
        if not j:
            ch[0] = seq & 0xFFFF
            ch[1] = seq >> 16
            ch[2] = tx & 0xFFFF
            ch[3] = tx >> 16
        elif tx and not (ch[2] or ch[3]):
            # Only tx 0 so far in this chunk (no base needed): tx becomes the base.
            ch[2] = tx & 0xFFFF
            ch[3] = tx >> 16
        ch[_S0 + j] = seq - (ch[0] | ch[1] << 16)
        ch[_T0 + j] = kind << 14 | ((tx - (ch[2] | ch[3] << 16)) & 0x3FFF if tx else _TX0)
        ch[_O0 + j] = off if off < 0xFFFF else 0xFFFF

    def _pad(self, i, k):
        # Slots i..k-1 (the rest of a chunk whose entry i-1 is in use): removed entries
        # repeating the seq of entry i-1.
        ch = self.c[i >> _CB]
        v = ch[_S0 + ((i - 1) & _CM)]
        for j in range(i & _CM, ((k - 1) & _CM) + 1):
            ch[_S0 + j] = v
            ch[_T0 + j] = _TX0

    def push(self, seq, tx, off, kind, att):
        """Append an entry (seq above every entry's).  Allocation comes first (see
        reserve; after reserve(seq, tx), none unless att or a 16-bit overflowing
        offset), then the entry is written: a MemoryError leaves the index as it was."""
        self.reserve(seq, tx)
        if off >= 0xFFFF:
            self.bo[seq] = off
        if att:
            try:
                self.at[seq] = att
            except MemoryError:
                self.bo.pop(seq, None)
                raise
        i = self._slot(seq, tx)
        if i != self.n:
            self._pad(self.n, i)
        self._put(i, seq, tx, off, kind)
        self.n = i + 1
        self.live += 1

    def last(self):
        """Seq of the newest entry (removed or not), -1 if none."""
        return self.seq(self.n - 1) if self.n else -1

    def lower(self, x):
        """First entry at or after the head whose seq is >= x."""
        c = self.c
        lo = self.h
        hi = self.n
        while lo < hi:
            mid = (lo + hi) >> 1
            ch = c[mid >> _CB]
            if (ch[0] | ch[1] << 16) + ch[_S0 + (mid & _CM)] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def next_live(self, i):
        n = self.n
        c = self.c
        while i < n and not c[i >> _CB][_T0 + (i & _CM)] >> 14:
            i += 1
        return i

    def find(self, seq):
        i = self.lower(seq)
        if i < self.n and self.seq(i) == seq and self.kind(i):
            return i
        return -1

    def kill(self, i):
        """Remove entry i (live).  Never raises: what follows the removal itself
        (releasing chunks, compaction) is housekeeping, skipped when RAM is short."""
        ch = self.c[i >> _CB]
        j = _T0 + (i & _CM)
        q = (ch[0] | ch[1] << 16) + ch[_S0 + (i & _CM)]
        ch[j] &= 0x3FFF
        self.live -= 1
        if self.at:
            self.at.pop(q, None)
        if self.bo:
            self.bo.pop(q, None)
        self.h = h = self.next_live(self.h)
        try:
            if h >= _CN:
                # Whole chunks before the head: release them (keep one for reuse).
                d = h >> _CB
                c = self.c
                sp = c[d - 1]
                del c[:d]
                self.h = h - (d << _CB)
                self.n -= d << _CB
                if self.sp is None:
                    self.sp = sp
            dead = self.n - self.h - self.live
            if dead > 64 and dead > self.live:
                self._compact()
        except MemoryError:
            pass

    def _compact(self):
        # Removed entries in the middle: move the live ones down, in place and in order,
        # then release the chunks left empty.  Entry r goes to slot w <= r: in the same
        # chunk as written (same bases), or at the start of an earlier chunk whose
        # entries are all read by then (its bases are reset), else after the current
        # chunk is filled up with skipped slots.  Allocation-free with small ints.
        c = self.c
        w = self.h
        for r in range(self.h, self.n):
            a = c[r >> _CB]
            rj = r & _CM
            t = a[_T0 + rj]
            if not t >> 14:
                continue
            if w == r:
                w += 1
                continue
            seq = (a[0] | a[1] << 16) + a[_S0 + rj]
            v = t & 0x3FFF
            tx = 0 if v == _TX0 else (a[2] | a[3] << 16) + (v - 0x4000 if v & 0x2000 else v)
            if w & _CM and not self._fits(c[w >> _CB], seq, tx):
                k = (w | _CM) + 1
                self._pad(w, k)
                w = k
            if w >> _CB == r >> _CB:
                b = a
                wj = w & _CM
                b[_S0 + wj] = a[_S0 + rj]
                b[_T0 + wj] = t
                b[_O0 + wj] = a[_O0 + rj]
            else:
                self._put(w, seq, tx, a[_O0 + rj], t >> 14)
            w += 1
        self.n = w
        del c[(w + _CM) >> _CB:]


class Journal:
    """The queue of transaction-related messages, durable on flash.

    `root` is created if missing.  Opening scans it (see the module docstring) and
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
        self._sn = (_Col(), _Col())
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
        self._scan(scratch)

    # ------------------------------------------------------------------ open
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

    def _scan(self, scratch):
        q = self._q
        codes = []      # first * 2 + stream, for every segment name
        marks = []
        for name in os.listdir(q):
            if name.endswith(".tmp"):
                self.corrupt += 1
                if not self._quarantine(q + "/" + name, name, "leftover of an interrupted write"):
                    store.remove(q + "/" + name)
            elif name.endswith(".m"):
                marks.append(name[:-2])
            else:
                s = _STREAMS.find(name[:1]) if name else -1
                v = _int(name[1:]) if s >= 0 else None
                if v is None or v < 0 or name != "%s%08d" % (name[0], v):
                    self.log("journal: q/%s: not a journal file, left alone" % name)
                else:
                    codes.append(v * 2 + s)
        codes.sort()
        top = 0                 # largest seq seen anywhere
        keep = []               # names whose marks files stay
        if not codes:
            buf = None
        elif scratch is not None and len(scratch) >= self._segsize:
            buf = scratch
        else:
            buf = bytearray(self._segsize)
        for code in codes:
            v = self._load(code, buf, marks, keep)
            if v > top:
                top = v
        del buf
        # Marks files whose segment is gone (crash between the two deletes).
        for name in marks:
            if name not in keep:
                self.log("journal: q/%s.m: orphan marks removed" % name)
                store.remove(q + "/" + name + ".m")
        # Seq floor.
        v = store.read(self._seqf)
        if v is not None:
            v = _int(v)
            if v is None:
                self.log("journal: seq file unreadable, ignored")
            else:
                self._floor = v
        store.remove(self._seqf + ".tmp")
        self._next = max(self._floor, top, 1)
        # Fully removed segments that are not the newest of their stream.
        for s in (0, 1):
            k = 0
            while k < len(self._sf[s]) - 1:
                if self._sn[s][k] == 0:
                    try:
                        self._delseg(s, k)
                        continue
                    except OSError as e:    # flash full: they go at a later delete
                        self.log("journal: could not delete an emptied segment: %r" % e)
                k += 1
        self._load_map()

    def _load_map(self):
        # The transactionId log, then the tx/<tx> files (previous versions; values the
        # log cannot hold).  A file overrides the log: see set_txid.
        m = self._map
        d = store.read(self._txf)
        store.remove(self._txf + ".tmp")    # an interrupted rewrite: the log is intact
        if d:
            n = len(d)
            mv = memoryview(d)
            bad = 0
            for p in range(0, n - _TXE + 1, _TXE):
                tx, v, op, ver, chk = struct.unpack_from("<IiBBH", d, p)
                if ver != _TVER or chk != crc32(mv[p:p + 10]) & 0xFFFF:
                    bad += 1
                elif op == _TSET:
                    m[tx] = v
                elif op == _TDEL:
                    m.pop(tx, None)
                else:
                    bad += 1
            if n % _TXE:
                bad += 1
            self._tlen = n
            if bad:
                # Torn or damaged entries cost only themselves; the log is rewritten.
                self.corrupt += bad
                self._quarantine(self._txf, "txids", "%d damaged entries" % bad, d)
                self._tdirty = True
        mig = []
        for name in os.listdir(self._txd):
            p = self._txd + "/" + name
            if name.endswith(".tmp"):
                store.remove(p)
                continue
            tx = _int(name)
            v = store.read(p)
            v = _int(v) if v is not None else None
            if tx is None or v is None:
                self._quarantine(p, "tx" + name, "unreadable transaction id")
            else:
                m[tx] = v
                if _narrow(tx, v):
                    mig.append(tx)
                else:
                    self._wide.add(tx)
        if mig or self._tdirty:
            try:
                self._tcompact(-1, None)
            except OSError as e:
                # Flash full: the files stay authoritative (forget deletes them).
                self.log("journal: transactionId log not rewritten: %r" % e)
                for tx in mig:
                    self._wide.add(tx)
                return
            for tx in mig:
                p = "%s/%d" % (self._txd, tx)
                store.remove(p)
                _step(p)
            if mig:
                self.log("journal: %d transactionId file(s) moved into the log" % len(mig))

    def _load(self, code, buf, marks, keep):
        """Index one segment; returns a lower bound for the next seq (0: none)."""
        q = self._q
        s = code & 1
        first = code >> 1
        name = "%s%08d" % (_STREAMS[s], first)
        path = q + "/" + name
        try:
            n = os.stat(path)[6]
            d = bytearray(n) if n > len(buf) else buf
            if n:
                with open(path, "rb") as f:
                    n = f.readinto(d, n)
        except (OSError, MemoryError) as e:
            # Unreadable (a directory, an I/O error): left alone, its name never reused.
            self.log("journal: q/%s: unreadable, left alone: %r" % (name, e))
            keep.append(name)
            return first + 1
        offs, bad, foreign = self._parse(d, n, first, s)
        if foreign:
            self.unknown += 1
            keep.append(name)
            self.log("journal: q/%s: unknown format version %d, left in place" % (name, foreign))
            return first + 1
        if not offs:
            self.corrupt += 1
            why = "empty (interrupted create)" if n == 0 else "no valid record (%d bytes)" % n
            if self._quarantine(path, name, why):
                store.remove(path + ".m")
                return 0
            return first + 1    # still in q/: its name must never be reused
        sealed = False
        if bad:
            d, n, sealed = self._repair(path, name, d, n, offs, bad)
        # Records of this segment, less those its marks say are removed.
        rm = fails = None
        if name in marks:
            keep.append(name)
            rm, fails = self._marks(path + ".m")
        live = 0
        ix = self._ix[s]
        for p in offs:
            seq, tx, kind, _, flags = struct.unpack_from("<IIBBH", d, p + 12)
            dl = seq - first
            if rm and dl in rm:
                continue
            if seq <= ix.last():    # only if files were copied around by hand
                self.log("journal: q/%s: seq %d out of order, ignored" % (name, seq))
                continue
            ix.push(seq, tx, p, kind, min(255, fails.get(dl, 0)) if fails else 0)
            if flags:
                self._flags[seq] = flags
            live += 1
        last = struct.unpack_from("<I", d, offs[-1] + 12)[0]
        self._sf[s].append(first)
        self._sl[s].append(last - first)   # 0.._SPAN (_parse)
        self._sn[s].append(live)
        self._sz[s] = n
        self._sealed[s] = sealed
        return last + 1

    def _repair(self, path, name, d, n, offs, bad):
        # Keep the original in bad/, rewrite the segment with its good records only.
        self.corrupt += len(bad) >> 1
        for i in range(0, len(bad), 2):
            self.log("journal: q/%s: torn/corrupt bytes %d..%d" % (name, bad[i], bad[i + 1]))
        mv = memoryview(d)
        self._quarantine(path, name, "original kept", mv[:n])
        clean = bytearray()
        for p in offs:
            clean.extend(mv[p:p + _HLEN + struct.unpack_from("<I", d, p + 8)[0]])
        try:
            store.atomic_write(path, clean)
        except OSError as e:
            # Keep indexing the original offsets; never append after the damage.
            self.log("journal: q/%s: could not rewrite: %r" % (name, e))
            return d, n, True
        self.bytes_written += len(clean)
        p = 0
        for i in range(len(offs)):
            offs[i] = p
            p += _HLEN + struct.unpack_from("<I", clean, p + 8)[0]
        return clean, len(clean), False

    def _parse(self, d, n, first, s):
        """Valid v1 record offsets, bad byte ranges (flat start, end pairs), foreign version."""
        offs = []
        bad = []
        p = 0
        prev = first - 1
        while p < n:
            ln = _envelope(d, n, p)
            if ln:
                ver = d[p + 2]
                if ver != VERSION:
                    return offs, bad, ver
                seq = struct.unpack_from("<I", d, p + 12)[0]
                kind = d[p + 20]
                if (d[p + 3] == _HLEN and prev < seq <= first + _SPAN
                        and ((kind == METER) if s else (kind == START or kind == STOP))):
                    offs.append(p)
                    prev = seq
                    p += ln
                    continue
            # Damage: resynchronise on the next intact envelope.
            q = p + 1
            while q < n and not _envelope(d, n, q):
                q += 1
            bad.append(p)
            bad.append(q)
            p = q
        return offs, bad, 0

    def _marks(self, path):
        """Read a marks file: (set of removed seq offsets, {seq offset: failures})."""
        m = store.read(path)
        rm = set()
        fails = {}
        if m:
            for p in range(0, len(m) - 3, 4):
                dl, op, chk = struct.unpack_from("<HBB", m, p)
                if chk != (dl ^ (dl >> 8) ^ op ^ 0xA5) & 0xFF:
                    self.log("journal: %s: bad mark at %d ignored" % (path, p))
                elif op == _RM:
                    rm.add(dl)
                elif op == _FAIL:
                    fails[dl] = fails.get(dl, 0) + 1
        return rm, fails

    # --------------------------------------------------------------- helpers
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
        ix.push(seq, tx, off, kind, 0)
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
            f.seek(ix.off(i))
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

    # ------------------------------------------------ transactionId log
    def _entry(self, tx, v):
        # One log entry: set tx -> v, or forget tx (v None).
        e = self._te
        struct.pack_into("<IiBB", e, 0, tx, 0 if v is None else v,
                         _TDEL if v is None else _TSET, _TVER)
        struct.pack_into("<H", e, 10, crc32(memoryview(e)[:10]) & 0xFFFF)
        return e

    def _tcompact(self, tx, v):
        # Rewrite the log with the live mappings (the one of `tx` as `v`; tx -1: none
        # changed), tmp + rename; an empty one is truncated.
        out = []
        for t in self._map:
            if t != tx and t not in self._wide:
                out.append(bytes(self._entry(t, self._map[t])))
        if v is not None:
            out.append(bytes(self._entry(tx, v)))
        if not out:
            self._ttrunc()
            return
        store.atomic_write(self._txf, out)
        self._tlen = n = _TXE * len(out)
        self.bytes_written += n
        self._tdirty = False

    def _ttrunc(self):
        # Truncate the log (no mapping left): one open, atomic on littlefs (committed at
        # close) and on POSIX (O_TRUNC).
        open(self._txf, "wb").close()
        self._tlen = 0
        self._tdirty = False
        _step(self._txf)

    def _tlog(self, tx, v):
        """Make `tx -> v` (v None: tx forgotten) durable in the log; tx is narrow."""
        live = len(self._map) - len(self._wide)     # log entries that stay live
        if tx in self._map and tx not in self._wide:
            live -= 1
        if v is not None:
            live += 1
        if not live:
            self._ttrunc()
        elif self._tdirty or self._tlen + _TXE > max(txlog_max, 2 * _TXE * live):
            self._tcompact(tx, v)
        else:
            e = self._entry(tx, v)
            try:
                with open(self._txf, "ab") as f:
                    f.write(e)
            except Exception:
                self._tdirty = True     # may end in part of an entry: never append after it
                raise
            self._tlen += _TXE
            self.bytes_written += _TXE
            _step(self._txf)

    def set_txid(self, tx, txid):
        """Persist local transaction `tx` -> central-system transactionId (durable on return)."""
        m = self._map
        if tx in m and m[tx] == txid:
            return
        if _narrow(tx, txid):
            self._tlog(tx, txid)
            if tx in self._wide:
                try:
                    self._rmtx(tx)
                except OSError:
                    # The file (older value) still wins at open; the log must not keep
                    # a live entry for it: rewritten before its next change.
                    self._tdirty = True
                    raise
                self._wide.discard(tx)
            m[tx] = txid
            return
        # Beyond the log's 32 bits: a tx/<tx> file, which overrides the log at open.
        b = b"%d" % txid
        store.atomic_write("%s/%d" % (self._txd, tx), b)
        self.bytes_written += len(b)
        if tx in m and tx not in self._wide:
            # Its older value in the log goes (until then the file wins).
            try:
                self._tlog(tx, None)
            except OSError as e:
                self.log("journal: transactionId log not updated: %r" % e)
                self._tdirty = True
        self._wide.add(tx)
        m[tx] = txid

    def _rmtx(self, tx):
        p = "%s/%d" % (self._txd, tx)
        try:
            os.remove(p)
        except OSError as e:
            if e.args[0] != 2:      # ENOENT
                raise
        _step(p)

    def mapped(self):
        """Local transactions with a known transactionId (a list)."""
        return list(self._map)

    def txid(self, tx):
        """The transactionId of `tx`, -1 if its START was given up, None if not known yet."""
        return self._map.get(tx)

    def give_up_start(self, tx):
        """The START of `tx` was dropped after its attempts: later messages use -1."""
        self.set_txid(tx, -1)

    def forget(self, tx):
        """No record refers to `tx` any more: delete its mapping (durable on return)."""
        m = self._map
        if tx not in m:
            return
        if tx in self._wide:
            if self._tdirty:
                self._tcompact(-1, None)    # the log must not hold an older value of tx
            self._rmtx(tx)
            self._wide.discard(tx)
        else:
            self._tlog(tx, None)
        del m[tx]
