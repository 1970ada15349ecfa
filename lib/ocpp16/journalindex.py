"""The journal's index in RAM (journal.py): the queued records of each stream and the
segment columns, in chunks that never need a large block of RAM."""
#
# Index in RAM, one per stream (each stream is in seq order on flash, so nothing is
# sorted at open): 3 bytes per queued record, in chunks of 64 records (one 200-byte array
# each): the seq relative to the chunk's base (16 bits), and one byte of the kind (2
# bits) and the tx relative to the chunk's base (6 bits).  No offset: a record is found
# in its segment by walking the headers from the segment's start (journal.read; records
# are in seq order and follow each other).  Flags and attempts, rarely used, live in
# small dicts keyed by seq.  Plus 8 bytes per segment in 128-byte column chunks (_Col):
# its first seq (32 bits), its last seq less the first and its live count (16 bits
# each: a segment spans at most 65535 seqs); the size of the newest segment of each
# stream is one int (no other size is ever read).  Chunks, not growing arrays: on a
# fragmented heap (the simulator's, after loading its code, has no free block above
# ~3 KB) a long queue must never need one large block, nor a sort's n-item list at boot.
# Chunks before the head are released as the queue is delivered (one is kept for
# reuse).  The index entry of the next record, its flags and a new segment's column
# slots are allocated before the record is written (journalseg.py, _write), so a
# MemoryError never leaves a record on flash that RAM does not know, nor RAM half
# updated.  Measured with 2,000 queued records (START 187 B / STOP 467 B, 4 KB segments,
# gc.mem_alloc before and after; tests/device/test_journal.py prints it): see the
# README's figures.  (Previous layouts: 6 bytes per record with a 16-bit offset, ~7.8 B
# per record with the segment columns on the 32-bit port; 12-byte entries in 16-record
# chunks before that, ~15 B.)
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
_S0 = const(4)          # chunk words: seq base (2), tx base (2), then per slot seq - base
_T0 = const(68)         # then per slot one byte (two a word, low byte first): kind << 6
_CW = const(100)        #   | tx code (6 bits)
_TLO = const(16)        # tx code = tx - base + _TLO, 0..62: a chunk takes txs 16 below
_TMAX = const(62)       #   its base to 46 above (they mostly grow)
_TX0 = const(63)        # the tx code of tx 0 (any base)


def _tk(ch, j):
    # The kind/tx byte of slot j of chunk ch.
    w = ch[_T0 + (j >> 1)]
    return w >> 8 if j & 1 else w & 0xFF


def _set_tk(ch, j, v):
    k = _T0 + (j >> 1)
    ch[k] = (ch[k] & 0xFF) | v << 8 if j & 1 else (ch[k] & 0xFF00) | v


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
    """The queued records of one stream in seq order, 3 bytes each.

    Entry i is slot i & 63 of chunk i >> 6.  A chunk is one array("H") of _CW words:
    its base seq and base tx (two words each), then per slot the seq less the base seq,
    then per slot a byte: the kind in the top 2 bits (0 = removed) and the tx as a code
    relative to the base tx (_TLO, _TX0).  Attempts (after failures only) live in a
    small dict keyed by seq, dropped with the record.  Every chunk is the same small
    block (200 B), allocated once per 64 appends or less: a long queue never needs a
    larger contiguous block of RAM, and chunks fit the holes of a fragmented heap.  A
    record whose seq or tx the current chunk cannot express (seq more than 65535 above
    its base, tx outside base - 16 .. base + 46) starts the next chunk; the slots
    skipped are filled as removed entries that repeat the last seq, so seqs never
    decrease along the entries and lookups stay a bisection.  Removed entries are
    skipped, compacted lazily; chunks before the head are released (one is kept for
    reuse)."""

    def __init__(self):
        self.c = []         # chunks
        self.n = 0          # entries used (skipped slots included)
        self.h = 0          # first entry that may be live
        self.live = 0
        self.at = {}        # seq -> attempts, for records that failed at least once
        self.sp = None      # a released chunk, reused by the next reserve

    def seq(self, i):
        ch = self.c[i >> _CB]
        return (ch[0] | ch[1] << 16) + ch[_S0 + (i & _CM)]

    def tx(self, i):
        ch = self.c[i >> _CB]
        v = _tk(ch, i & _CM) & 0x3F
        if v == _TX0:
            return 0
        return (ch[2] | ch[3] << 16) + v - _TLO

    def kind(self, i):
        return _tk(self.c[i >> _CB], i & _CM) >> 6

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
        return not tx or not b or 0 <= tx - b + _TLO <= _TMAX

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

    def _put(self, i, seq, tx, kind):
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
        _set_tk(ch, j, kind << 6 | (tx - (ch[2] | ch[3] << 16) + _TLO if tx else _TX0))

    def _pad(self, i, k):
        # Slots i..k-1 (the rest of a chunk whose entry i-1 is in use): removed entries
        # repeating the seq of entry i-1.
        ch = self.c[i >> _CB]
        v = ch[_S0 + ((i - 1) & _CM)]
        for j in range(i & _CM, ((k - 1) & _CM) + 1):
            ch[_S0 + j] = v
            _set_tk(ch, j, _TX0)

    def push(self, seq, tx, kind, att):
        """Append an entry (seq above every entry's).  Allocation comes first (see
        reserve; after reserve(seq, tx), none unless att), then the entry is written: a
        MemoryError leaves the index as it was."""
        self.reserve(seq, tx)
        if att:
            self.at[seq] = att
        i = self._slot(seq, tx)
        if i != self.n:
            self._pad(self.n, i)
        self._put(i, seq, tx, kind)
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
        while i < n:
            w = c[i >> _CB][_T0 + ((i & _CM) >> 1)]
            if (w >> 14) if i & 1 else (w & 0xC0):
                break
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
        j = i & _CM
        q = (ch[0] | ch[1] << 16) + ch[_S0 + j]
        _set_tk(ch, j, _tk(ch, j) & 0x3F)
        self.live -= 1
        if self.at:
            self.at.pop(q, None)
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
            t = _tk(a, rj)
            if not t >> 6:
                continue
            if w == r:
                w += 1
                continue
            seq = (a[0] | a[1] << 16) + a[_S0 + rj]
            v = t & 0x3F
            tx = 0 if v == _TX0 else (a[2] | a[3] << 16) + v - _TLO
            if w & _CM and not self._fits(c[w >> _CB], seq, tx):
                k = (w | _CM) + 1
                self._pad(w, k)
                w = k
            if w >> _CB == r >> _CB:
                wj = w & _CM
                a[_S0 + wj] = a[_S0 + rj]
                _set_tk(a, wj, t)
            else:
                self._put(w, seq, tx, t >> 6)
            w += 1
        self.n = w
        del c[(w + _CM) >> _CB:]
