# The journal's RAM index (lib/ocpp16/journalindex.py, _Index): per-stream chunks of 64
# records, 3 bytes each (seq and tx relative to per-chunk bases, the kind; no offsets:
# journal.read walks the segment).  Checked against a plain model through many chunks, removals at the head and
# in the middle (compaction), attempts, flags, re-opens; chunks are released as the
# queue drains; running out of RAM never leaves a record on flash the index lacks.
# The segment columns (first seq, last seq less the first in 16 bits, live count; the
# newest segment's size per stream) are checked against the files on flash.
import os
import struct
from ocpp16 import journal, journalindex, store
from ocpp16.journal import START, STOP, METER
from fsutil import rmtree

_BASE = "/tmp/mpocpp-test-jindex"




def _fresh(name):
    d = _BASE + "/" + name
    store.makedirs(_BASE)
    rmtree(d)
    return d


def _open(d):
    return journal.Journal(d, log=lambda s: None, min_free=0, seg_size=1024)


class Rng:
    def __init__(self, seed):
        self.x = seed

    def __call__(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return self.x % n


def _body(kind, i):
    return b'{"k":%d,"i":%d,"pad":"%s"}' % (kind, i, b"x" * (i % 90))


def _check(j, model):
    got = list(j.records())
    exp = [(seq,) + model[seq][:4] for seq in sorted(model)]
    assert got == exp, (got[:5], exp[:5])
    assert len(j) == len(model)
    h = j.head()
    assert h == (exp[0] if exp else None)
    buf = bytearray(200)
    for seq in sorted(model):
        n = j.read(seq, buf)
        assert bytes(buf[:n]) == model[seq][4]


def test_index_matches_model_through_chunks_and_reopens():
    d = _fresh("model")
    j = _open(d)
    rnd = Rng(7)
    model = {}          # seq -> (kind, tx, attempts, flags, body)
    for step in range(900):
        op = rnd(10)
        if op < 6 or not model:
            kind = (START, STOP, METER, METER)[rnd(4)]
            tx = 1 + rnd(40)
            flags = rnd(4) * 1000 if rnd(5) == 0 else 0
            b = _body(kind, step)
            seq = j.append(kind, tx, b, flags)
            model[seq] = (kind, tx, 0, flags, b)
        elif op < 8:
            seq = min(model)                    # delivery: the head
            j.remove(seq)
            del model[seq]
        elif op < 9:
            seqs = sorted(model)
            seq = seqs[rnd(len(seqs))]          # anywhere (a dropped MeterValues, ...)
            j.remove(seq)
            del model[seq]
        else:
            seqs = sorted(model)
            seq = seqs[rnd(len(seqs))]
            k, tx, att, fl, b = model[seq]
            assert j.failed(seq) == att + 1
            model[seq] = (k, tx, att + 1, fl, b)
        if step % 97 == 0:
            _check(j, model)
        if step % 233 == 0:
            j = _open(d)                        # reboot
            _check(j, model)
    _check(j, model)
    j = _open(d)
    _check(j, model)
    assert j.corrupt == 0


def test_chunks_are_released_as_the_queue_drains():
    d = _fresh("drain")
    j = _open(d)
    seqs = [j.append(METER if i % 3 else START, i // 8 + 1, _body(1, i)) for i in range(400)]
    ix0, ix1 = j._ix
    full = len(ix0.c) + len(ix1.c)
    assert full == 3 + 5, (len(ix0.c), len(ix1.c))     # 134 and 266 entries, no skips
    for s in seqs[:390]:
        j.remove(s)
    assert len(ix0.c) + len(ix1.c) <= 2, (len(ix0.c), len(ix1.c))
    assert ix0.sp is not None and ix1.sp is not None    # one kept for reuse
    assert [r[0] for r in j.records()] == seqs[390:]
    # Removals in the middle: compacted, order kept.
    more = [j.append(STOP, 7, _body(2, i)) for i in range(300)]
    for s in more[::2] + more[1:200:2]:
        j.remove(s)
    assert [r[0] for r in j.records()] == seqs[390:] + more[201::2]
    assert len(ix0.c) <= 3, len(ix0.c)


def test_out_of_memory_before_the_write_queues_nothing():
    d = _fresh("oom")
    j = _open(d)
    a = j.append(START, 1, b"{}")
    ix = j._ix[1]

    def no_ram(seq, tx):
        raise MemoryError
    ix.reserve = no_ram
    try:
        j.append(METER, 1, b'{"x":1}')
        assert False, "no MemoryError"
    except MemoryError:
        pass
    del ix.reserve
    assert [r[0] for r in j.records()] == [a]
    j = _open(d)                                # nothing of it reached flash
    assert [r[0] for r in j.records()] == [a] and j.corrupt == 0
    b = j.append(METER, 1, b'{"x":2}')
    assert b > a and [r[0] for r in _open(d).records()] == [a, b]


def test_stop_may_use_half_the_reserve():
    # Flash short: a StartTransaction is refused below min_free, but the Stop of a
    # transaction that did start still finds room (down to half of min_free).
    d = _fresh("reserve")
    j = journal.Journal(d, log=lambda s: None, min_free=16384, seg_size=1024)
    free = [12000]
    j._free = lambda: free[0]
    for kind in (START, METER):
        try:
            j.append(kind, 1, b"{}")
            assert False, "no ENOSPC"
        except OSError as e:
            assert e.args[0] == 28
    seq = j.append(STOP, 1, b'{"meterStop":1}')
    assert [r[0] for r in j.records()] == [seq]
    free[0] = 7000                          # below half the reserve: refused too
    j._slack = -1
    try:
        j.append(STOP, 2, b"{}")
        assert False, "no ENOSPC"
    except OSError as e:
        assert e.args[0] == 28


def test_free_callable_asked_rarely_and_events():
    # `free=` replaces statvfs (the simulator's --flash-kb); it is asked only when the
    # estimate (each append may take a fresh segment) nears min_free, never per write.
    # `on_space` hears of dropped MeterValues and of refused appends; `refused` counts.
    d = _fresh("freefn")
    free = [1 << 20]
    calls = [0]
    events = []

    def fn():
        calls[0] += 1
        return free[0]

    j = journal.Journal(d, log=lambda s: None, min_free=16384, seg_size=1024, free=fn,
                        on_space=lambda e, x: events.append((e, x)))
    for i in range(400):
        j.append(METER if i % 3 else START, 1, _body(1, i))
    # ~1 MB above min_free, ~1.1 KB assumed per append: asked about once per 900.
    assert calls[0] <= 2, calls
    assert events == [] and j.refused == 0
    meters = sum(1 for r in j.records() if r[1] == METER)
    free[0] = 16000                 # short: every append asks, METER segments go first
    j._slack = -1
    c0 = calls[0]
    try:
        j.append(START, 2, b"{}")
        assert False, "no ENOSPC"
    except OSError as e:
        assert e.args[0] == 28
    assert calls[0] > c0
    dropped = [x for e, x in events if e == "meter_dropped"]
    assert sum(dropped) == meters == j.dropped_meter and len(dropped) > 1
    assert events[-1] == ("full", START) and j.refused == 1
    assert all(r[1] == START for r in j.records())
    # A failing callback is logged, never breaks the journal.
    logged = []
    j.log = logged.append
    j.on_space = lambda e, x: 1 // 0
    try:
        j.append(METER, 2, b"{}")
        assert False, "no ENOSPC"
    except OSError as e:
        assert e.args[0] == 28
    assert j.refused == 2 and logged and "on_space" in logged[0]


def test_open_reads_segments_into_a_lent_buffer():
    # The charge point lends an idle buffer (the websocket's transmit buffer) for the
    # scan at open; a damaged segment is repaired through it as well.
    d = _fresh("scratch")
    j = _open(d)
    seqs = [j.append(STOP if i % 2 else START, i + 1, _body(1, i)) for i in range(30)]
    name = sorted(n for n in os.listdir(d + "/q") if n.startswith("t") and "." not in n)[1]
    data = bytearray(store.read(d + "/q/" + name))
    data[40] ^= 0xFF                            # damage the first record of that segment
    with open(d + "/q/" + name, "wb") as f:
        f.write(data)
    lent = memoryview(bytearray(1100))[50:1074]     # 1024 bytes, like ws.tx
    j = journal.Journal(d, log=lambda s: None, min_free=0, seg_size=1024, scratch=lent)
    assert j.corrupt == 1
    got = [r[0] for r in j.records()]
    assert len(got) == 29 and set(got) < set(seqs)
    buf = bytearray(200)
    for r in j.records():
        n = j.read(r[0], buf)
        assert bytes(buf[:n]) == _body(1, seqs.index(r[0]))
    assert [r[0] for r in _open(d).records()] == got


# ---------------------------------------------------------------- _Index itself
# Driven directly (the journal's appends never make some of these cases, e.g. seq gaps
# of 65536), and checked after every step against a plain model.

def _ix_check(ix, model):
    # model: seq -> [tx, kind, attempts], the live entries.
    live = sorted(model)
    assert ix.live == len(live), (ix.live, len(live))
    got = []
    i = ix.next_live(ix.h)
    prev = -1
    while i < ix.n:
        q = ix.seq(i)
        assert q > prev
        prev = q
        got.append(q)
        assert [ix.tx(i), ix.kind(i), ix.att(i)] == model[q], (q, model[q])
        assert ix.find(q) == i
        i = ix.next_live(i + 1)
    assert got == live, (got[:4], live[:4])
    for k in range(ix.h + 1, ix.n):         # seqs never decrease along the entries
        assert ix.seq(k - 1) <= ix.seq(k)
    for q in live:
        assert ix.find(q + 1) < 0 or q + 1 in model
        assert ix.lower(q) == ix.find(q)
    assert ix.n <= len(ix.c) * 64
    assert set(ix.at) == set(q for q in live if model[q][2])


def _push(ix, model, seq, tx, kind=START, att=0):
    ix.reserve(seq, tx)
    c = len(ix.c)
    ix.push(seq, tx, kind, att)
    assert len(ix.c) == c                   # reserve made all the room push needs
    model[seq] = [tx, kind, att]


def _kill(ix, model, seq):
    ix.kill(ix.find(seq))
    del model[seq]


def test_index_seq_delta_boundary_starts_a_chunk():
    ix = journal._Index()
    m = {}
    _push(ix, m, 10, 1)
    _push(ix, m, 10 + 0xFFFF, 1)            # the largest delta: same chunk
    assert ix.n == 2 and len(ix.c) == 1
    _push(ix, m, 11 + 0xFFFF, 1)            # one more: the next chunk, skipped slots
    assert ix.n == 65 and len(ix.c) == 2 and ix.live == 3
    assert ix.last() == 11 + 0xFFFF
    _ix_check(ix, m)
    assert ix.lower(11 + 0xFFFF) == 64 and ix.lower(10 + 0xFFFF) == 1
    assert ix.lower(11) == 1 and ix.lower(0) == 0
    # Seqs beyond 16 bits and beyond 2**30 (bases take two words).
    for q in (0x12345678, 0x40000005, 0xFFFFFFF0):
        _push(ix, m, q, 3, STOP)
    _ix_check(ix, m)


def test_index_tx_far_from_the_base():
    ix = journal._Index()
    m = {}
    _push(ix, m, 1, 10000)
    _push(ix, m, 2, 10000 + 46)             # the widest deltas either way: same chunk
    _push(ix, m, 3, 10000 - 16)
    _push(ix, m, 4, 0)                      # tx 0 fits any chunk
    assert ix.n == 4
    _push(ix, m, 5, 10000 + 47)             # above: next chunk
    assert ix.n == 65 and len(ix.c) == 2
    _push(ix, m, 6, 10000 + 47 - 17)        # 17 below the new base: next one
    assert ix.n == 129 and len(ix.c) == 3
    _push(ix, m, 7, 0xFFFFFFFF)             # the largest tx: next one
    _push(ix, m, 8, 0xFFFFFFFF - 16)
    _push(ix, m, 9, 0)
    assert ix.n == 195
    _ix_check(ix, m)
    # Transactions one after another (START, STOP of each): 32 a chunk, no slot skipped.
    ix = journal._Index()
    m = {}
    for t in range(1, 101):
        _push(ix, m, 2 * t, 1000 + t)
        _push(ix, m, 2 * t + 1, 1000 + t, STOP)
    assert len(ix.c) == 4 and ix.n == 200
    _ix_check(ix, m)
    # A chunk that starts with tx 0 takes its base from its first other tx.
    ix = journal._Index()
    m = {}
    _push(ix, m, 1, 0)
    _push(ix, m, 2, 0)
    _push(ix, m, 3, 500000)
    _push(ix, m, 4, 0)
    _push(ix, m, 5, 500000 - 16)
    assert ix.n == 5
    _ix_check(ix, m)
    _push(ix, m, 6, 500000 - 17)           # but its base holds from then on
    assert ix.n == 65
    _ix_check(ix, m)
    # Meter records of a transaction and outside one (tx 0) never split chunks.
    ix = journal._Index()
    m = {}
    for q in range(1, 200):
        _push(ix, m, q, 0 if q % 3 else 123456, METER)
    assert ix.n == 199 and len(ix.c) == 4
    _ix_check(ix, m)


def test_index_attempts():
    ix = journal._Index()
    m = {}
    _push(ix, m, 1, 5, START, 3)            # attempts from the marks at open
    _push(ix, m, 2, 5)
    _push(ix, m, 3, 5)
    _push(ix, m, 4, 5, STOP, 1)
    assert set(ix.at) == {1, 4}
    _ix_check(ix, m)
    i = ix.find(2)
    ix.set_att(i, 1)
    m[2][2] = 1
    ix.set_att(i, 2)
    m[2][2] = 2
    ix.set_att(ix.find(1), 0)
    m[1][2] = 0
    _ix_check(ix, m)
    for q in (1, 2, 3, 4):
        _kill(ix, m, q)
        _ix_check(ix, m)
    assert not ix.at                       # dropped with their records


def test_index_model_with_compaction_and_skips():
    # Random pushes (seq gaps up to past 16 bits, tx near, far and 0), removals at the
    # head and in the middle (compaction, also across chunks with other bases),
    # attempts: against the model after every step.
    rnd = Rng(11)
    ix = journal._Index()
    m = {}
    seq = 1
    tx = 50000
    compactions = [0]
    orig = ix._compact

    def counted():
        compactions[0] += 1
        orig()
    ix._compact = counted
    for step in range(3000):
        op = rnd(20)
        if op < 11 or not m:
            r = rnd(100)
            seq += 1 if r < 80 else (1 + rnd(300) if r < 97 else 0xFFF0 + rnd(40))
            r = rnd(100)
            tx += 0 if r < 70 else (1 if r < 90 else rnd(20000) - 10000)
            t = 0 if rnd(6) == 0 else max(1, tx)
            _push(ix, m, seq, t, (START, STOP, METER)[rnd(3)], 1 + rnd(4) if rnd(15) == 0 else 0)
        elif op < 14:
            _kill(ix, m, min(m))
        elif op < 19:
            live = sorted(m)
            _kill(ix, m, live[rnd(len(live))])
        else:
            live = sorted(m)
            q = live[rnd(len(live))]
            a = rnd(3)
            ix.set_att(ix.find(q), a)
            m[q][2] = a
        if step % 50 == 0 or step > 2900:
            _ix_check(ix, m)
    _ix_check(ix, m)
    assert compactions[0] > 5, compactions[0]
    while m:
        _kill(ix, m, min(m))
    _ix_check(ix, m)
    assert len(ix.c) <= 1 and not ix.at


def test_index_compaction_keeps_order_across_bases():
    # Chunks with far-apart bases: entries moved down into a chunk that cannot express
    # them skip to the next one, never out of order.
    ix = journal._Index()
    m = {}
    q = 0
    for blk in range(6):
        q += 0x10000 + 5                    # each block a fresh chunk (seq too far)
        for k in range(40):
            _push(ix, m, q + k, 1000 * blk if k % 2 else 0)
    assert len(ix.c) == 6
    for blk in range(6):                    # most of each block goes
        for k in range(2, 40):
            _kill(ix, m, (blk + 1) * (0x10000 + 5) + k)
        _ix_check(ix, m)
    assert ix.n <= 6 * 64 and ix.live == 12
    _push(ix, m, q + 1000, 5)
    _ix_check(ix, m)


def test_index_memory_error_changes_nothing():
    # reserve is the one allocation of a push; when it fails the index is as it was.
    ix = journal._Index()
    m = {}
    for q in range(1, 64):
        _push(ix, m, q, 7)
    real = journalindex.array

    def no_ram(*a):
        raise MemoryError
    journalindex.array = no_ram
    try:
        try:
            ix.push(64 + 0x10000, 7, START, 0)          # would need a chunk
            assert False, "no MemoryError"
        except MemoryError:
            pass
        _push(ix, m, 64, 7)                 # still room in the chunk
        try:
            ix.reserve(65, 7)
            assert False, "no MemoryError"
        except MemoryError:
            pass
        _ix_check(ix, m)
    finally:
        journalindex.array = real
    _push(ix, m, 65, 7)
    _ix_check(ix, m)
    # Attempts at open need a dict slot: a failure there adds nothing.
    d = ix.at
    ix.at = _NoRoomDict(d)
    try:
        ix.push(66, 7, START, 2)
        assert False, "no MemoryError"
    except MemoryError:
        pass
    ix.at = d
    _ix_check(ix, m)


class _NoRoomDict(dict):
    def __setitem__(self, k, v):
        raise MemoryError


def _seg_files(d, s):
    # [(first seq, size, [seq of every record])] of stream s's segments, in order.
    q = d + "/q"
    out = []
    for name in sorted(os.listdir(q)):
        if name[:1] != "tm"[s] or name.endswith(".m"):
            continue
        with open(q + "/" + name, "rb") as f:
            data = f.read()
        seqs = []
        p = 0
        while p < len(data):
            seqs.append(struct.unpack_from("<I", data, p + 12)[0])
            p += 24 + struct.unpack_from("<I", data, p + 8)[0]
        assert p == len(data), name
        out.append((int(name[1:]), len(data), seqs))
    return out


def _consistent(j, d):
    # The index and the segment columns agree with flash (a reopen) and with themselves.
    got = list(j.records())
    again = list(_open(d).records())
    assert got == again, (got[-3:], again[-3:])
    for s in (0, 1):
        n = len(j._sf[s])
        assert len(j._sl[s]) == n and len(j._sn[s]) == n
        # Each segment's first and last seq (the last one kept relative to the first,
        # in 16 bits), and the newest segment's size while it takes appends.
        segs = _seg_files(d, s)
        assert [(j._sf[s][k], j._last(s, k)) for k in range(n)] == \
            [(f, q[-1]) for f, _, q in segs], s
        if n and not j._sealed[s]:
            assert j._sz[s] == segs[-1][1]
    buf = bytearray(1024)
    for r in got:
        j.read(r[0], buf)
    return got


def _append_failing_nth_alloc(j, n, *args):
    # j.append(*args) with the n-th array() it asks for failing with MemoryError.
    # Returns the number of array() calls made (the append succeeded if < n).
    real = journalindex.array
    calls = [0]

    def nth(*a):
        calls[0] += 1
        if calls[0] == n:
            raise MemoryError
        return real(*a)
    journalindex.array = nth
    try:
        j.append(*args)
    except MemoryError:
        assert calls[0] == n
    finally:
        journalindex.array = real
    return calls[0]


def test_no_column_left_half_appended_when_ram_runs_out():
    # A new segment appends to three columns (first seq: 32 bits, 32 per 128-byte chunk;
    # last seq and live count: 16 bits, 64 per chunk): whichever chunk cannot be had,
    # no column may have grown (the IndexError seen later in sessions.tick came from
    # such a half-append) and nothing reaches flash.
    d = _fresh("cols")
    j = _open(d)
    for i in range(3):
        j.append(METER, 1, _body(3, i))
    for mult, cols in ((64, 3), (32, 1), (64, 3)):
        # Fill stream 0 up to a chunk boundary of the wanted columns.
        while len(j._sf[0]) % mult or (mult == 32 and not len(j._sf[0]) % 64):
            j.append(STOP, 2, b"x" * 900)      # one per 1024-byte segment
        before = _consistent(j, d)
        segs = len(j._sf[0])
        fails = 0
        while _append_failing_nth_alloc(j, fails + 1, START, 3, b"x" * 900) == fails + 1:
            fails += 1
            assert _consistent(j, d) == before and len(j._sf[0]) == segs
        # Every chunk a column needed failed once (the index may have needed one too).
        assert cols <= fails <= cols + 1, (mult, fails)
        got = _consistent(j, d)
        assert len(got) == len(before) + 1 and got[-1][1] == START
        assert len(j._sf[0]) == segs + 1
    for r in got:
        j.remove(r[0])
    assert len(j) == 0 and _consistent(j, d) == []


def test_segment_last_seq_kept_in_16_bits_up_to_the_span():
    # A segment spans at most 65535 seqs; its last seq is kept relative to its first.
    # Seqs above 65535 and an offset of exactly 65535: dropping the segment must drop
    # both records, and (it held the newest seq) must keep that seq from coming back.
    d = _fresh("span")
    store.makedirs(d)
    store.atomic_write(d + "/seq", b"70000")
    j = _open(d)
    a = j.append(METER, 1, b"m0")
    assert a == 70000
    store.atomic_write(d + "/seq", b"135535")       # the next boot starts there
    j = _open(d)
    b = j.append(METER, 2, b"m1")
    assert b == 135535 and sorted(os.listdir(d + "/q")) == ["m00070000"]
    assert j._last(1, 0) == b
    assert [r[0] for r in _consistent(j, d)] == [a, b]
    j = _open(d)                                    # the same, as read at open
    assert j._last(1, 0) == b and [r[0] for r in j.records()] == [a, b]
    j.min_free = 1 << 60                            # "flash is full": METERs go
    try:
        j.append(START, 1, b"s")
        assert False, "no ENOSPC"
    except OSError as e:
        assert e.args[0] == 28
    assert j.dropped_meter == 2 and len(j) == 0 and list(j.records()) == []
    assert os.listdir(d + "/q") == []
    j = _open(d)
    assert j.append(START, 1, b"s") == b + 1
    # The span exactly: the same segment; one more: a new one.
    store.atomic_write(d + "/seq", b"201071")       # 135536 + 65535
    j = _open(d)
    assert j.append(START, 1, b"t") == 201071
    assert j.append(START, 1, b"u") == 201072
    assert sorted(os.listdir(d + "/q")) == ["t00135536", "t00201072"]
    assert [r[0] for r in _consistent(j, d)] == [135536, 201071, 201072]
    assert j._last(0, 0) == 201071 and j._last(0, 1) == 201072


def _check_filled(d, seg):
    # Every segment is at most seg bytes, and a segment was started only when the
    # record would not fit the one before it (nothing here seals a segment).
    for s in (0, 1):
        segs = _seg_files(d, s)
        for k in range(len(segs)):
            f, size, seqs = segs[k]
            assert size <= seg, (s, f, size)
            if k + 1 < len(segs):
                nf = segs[k + 1][0]
                with open("%s/q/%s%08d" % (d, "tm"[s], nf), "rb") as fh:
                    h = fh.read(12)
                assert size + 24 + struct.unpack_from("<I", h, 8)[0] > seg, (s, f, size)


def test_segments_fill_up_to_their_size_across_streams_and_reopens():
    # The size of each stream's newest segment (all that is kept of segment sizes) is
    # right after appends to both streams, reopens, and head segments deleted.
    d = _fresh("fill")
    rnd = Rng(11)
    model = {}
    for boot in range(12):
        j = _open(d)
        for i in range(100):
            kind = (START, STOP, METER)[rnd(3)]
            body = b"b" * (20 + rnd(170))
            tx = 1 + rnd(5)
            model[j.append(kind, tx, body)] = (kind, tx, 0, 0, body)
            if rnd(4) == 0:
                q = j.head()[0]
                j.remove(q)
                del model[q]
        _check_filled(d, 1024)
        _check(j, model)
        _consistent(j, d)
    assert len(_seg_files(d, 0)) > 64       # u16 column over several chunks


def test_failed_write_of_a_new_segment_leaves_the_previous_one_as_it_was():
    # A write that fails in a new segment removes it; the previous segment, the newest
    # again, keeps its own size: the next record must still not overfill it.
    d = _fresh("failnew")
    j = _open(d)
    for i in range(3):
        j.append(START, 1, b"a" * 276)            # 3 x 300 B: 900 B
    seen = []

    def hook(path):
        seen.append(path)
        if path.endswith("/q/t00000004"):
            raise OSError(5)
    store.write_hook = hook
    try:
        j.append(STOP, 1, b"b" * 500)             # 524 B: needs a new segment
        assert False, "no OSError"
    except OSError as e:
        assert e.args[0] == 5
    finally:
        store.write_hook = None
    assert seen and sorted(os.listdir(d + "/q")) == ["t00000001"]
    seq = j.append(STOP, 1, b"c" * 150)           # 174 B: does not fit 900 B either
    assert seq == 5 and sorted(os.listdir(d + "/q")) == ["t00000001", "t00000005"]
    _check_filled(d, 1024)
    assert [r[0] for r in _consistent(j, d)] == [1, 2, 3, 5]
    # Appends go on in the newest segment, with the size it really has.
    j.append(START, 1, b"d")
    assert sorted(os.listdir(d + "/q")) == ["t00000001", "t00000005"]
    _check_filled(d, 1024)


def test_journal_under_real_memory_pressure():
    # Fill the heap, leave a little room, and run appends, failures and removals until
    # they fail with MemoryError: whatever failed, the journal stays consistent with
    # flash and usable, nothing raises anything but MemoryError.
    import gc
    d = _fresh("pressure")
    j = _open(d)
    rnd = Rng(5)
    for room in (0, 64, 200, 500, 900, 1600):
        gc.collect()
        hog = []
        size = 1 << 16
        while size >= 16:
            try:
                hog.append(bytearray(size))
            except MemoryError:
                size >>= 1
        for _ in range(room // 16):
            if hog:
                hog.pop()
        gc.collect()
        fails = 0
        for step in range(300):
            try:
                op = rnd(6)
                if op < 4 or not len(j):
                    j.append((START, STOP, METER)[rnd(3)], 1 + rnd(30), _body(1, step), rnd(2) * 5)
                elif op < 5:
                    j.failed(j.head()[0])
                else:
                    j.remove(j.head()[0])
            except MemoryError:
                fails += 1
        hog = None
        gc.collect()
        _consistent(j, d)
        assert fails > 0 or room, room
