"""The journal's index in RAM (journal.py): the queued records of each stream and the
segment columns, in chunks that never need a large block of RAM."""
#
# Index in RAM, one per stream (each stream is in seq order on flash, so nothing is
# sorted at open): 6 bytes per queued record, seq and tx relative to per-chunk bases,
# offset, kind (see _Index); length and flags are read from the record's header (flags,
# rarely used, live in a small dict, like attempts).  Chunks of 64
# records (one 392-byte array each), plus 10 bytes per segment in 128-byte column chunks
# (_Col): its first seq and live count (32 bits each), its last seq less the first (16
# bits: a segment spans at most 65535 seqs); the size of the newest segment of each
# stream is one int (no other size is ever read).  Chunks, not growing arrays: on a
# fragmented heap (the simulator's, after loading its code, has no free block above
# ~3 KB) a long queue must never need one large block, nor a sort's n-item list at boot.
# Chunks before the head are released as the queue is delivered (one is kept for
# reuse).  The index entry of the next record, its flags and a new segment's column
# slots are allocated before the record is written (journalseg.py, _write), so a
# MemoryError never leaves a record on flash that RAM does not know, nor RAM half
# updated.  Measured with 2,000 queued records (START 187 B / STOP 467 B, 4 KB segments,
# gc.mem_alloc before and after): ~7.8 B per record on the 32-bit port (index ~6.7,
# segment columns ~1.1), ~8.6 B on the 64-bit one (with four 32-bit columns: 8.5 and
# 9.3; the previous 12-byte entries in 16-record chunks: 15.0 and 16.5).
# No bodies in RAM.

from array import array

try:
    from micropython import const
except ImportError:  # CPython tooling
    def const(x):
        return x

# Index chunks (see _Index).
_CB = const(6)          # 64 records per index chunk
_CN = const(64)
_CM = const(63)
_S0 = const(4)          # chunk words: seq base (2), tx base (2), then per slot:
_T0 = const(68)         #   seq - base; tx - base (14 bits) | kind << 14; offset
_O0 = const(132)
_CW = const(196)
_TX0 = const(0x2000)    # the 14-bit tx code of tx 0 (any base)


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
