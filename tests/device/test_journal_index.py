# The journal's RAM index (lib/ocpp16/journal.py, _Index): per-stream chunks of 16
# records.  Checked against a plain model through many chunks, removals at the head and
# in the middle (compaction), attempts, flags, re-opens; chunks are released as the
# queue drains; running out of RAM never leaves a record on flash the index lacks.
import os
from ocpp16 import journal, store
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
    seqs = [j.append(METER if i % 3 else START, i + 1, _body(1, i)) for i in range(400)]
    ix0, ix1 = j._ix
    full = len(ix0.c) + len(ix1.c)
    assert full >= 400 // 16
    for s in seqs[:390]:
        j.remove(s)
    assert len(ix0.c) + len(ix1.c) <= 4, (len(ix0.c), len(ix1.c))
    assert [r[0] for r in j.records()] == seqs[390:]
    # Removals in the middle: compacted, order kept.
    more = [j.append(STOP, 7, _body(2, i)) for i in range(300)]
    for s in more[::2] + more[1:200:2]:
        j.remove(s)
    assert [r[0] for r in j.records()] == seqs[390:] + more[201::2]
    assert len(ix0.c) <= 8


def test_out_of_memory_before_the_write_queues_nothing():
    d = _fresh("oom")
    j = _open(d)
    a = j.append(START, 1, b"{}")
    ix = j._ix[1]

    def no_ram():
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
