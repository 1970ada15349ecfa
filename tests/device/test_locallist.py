# Local Authorization List file (ocpp16.locallistfile): lookups by binary search on
# flash, Full/Differential merges against a model, 1,000+ entries, persistence, limits,
# littlefs (rename, out of space), heap per lookup.
import gc
import os
import vfs
import asyncio
from ocpp16 import store
from ocpp16 import locallistfile as lf
from ocpp16.clock import parse_iso

_P = "/tmp/mpocpp-test-locallist.bin"
_MNT = "/lllfs"


def _quiet(s):
    pass


def _fresh(path=_P, most=5000):
    store.remove(path)
    return lf.LocalList(path, most, log=_quiet)


def _rec(tag, status="Accepted", exp=0, parent=None):
    return (tag, lf.record(tag, lf.STATUS.index(status) + 1, exp, parent))


def _run(coro):
    return asyncio.run(coro)


class _Rand:
    # A small LCG: the same sequence on every run.
    def __init__(self, seed):
        self.x = seed

    def __call__(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return self.x % n


def test_full_then_differential_lookups_and_version():
    ll = _fresh()
    assert ll.version() == 0 and ll.lookup("A", 0) == (None, None)
    now = parse_iso("2030-01-01T00:00:00Z")
    assert _run(ll.update(True, 3, [_rec("A"), _rec("B", "Blocked"),
                                     _rec("C", "Accepted", now - 1, b"GRP"),
                                     _rec("D", "Accepted", now + 60, b"GRP")])) == "Accepted"
    assert ll.version() == 3 and len(ll) == 4
    assert ll.lookup("A", now) == ("Accepted", None)
    assert ll.lookup("B", now) == ("Blocked", None)
    assert ll.lookup("C", now) == ("Expired", "GRP")       # past its expiryDate
    assert ll.lookup("C", 0) == ("Accepted", "GRP")        # clock not set: not checked
    assert ll.lookup("D", now) == ("Accepted", "GRP")
    # Differential: replace B, remove A, add E, remove an unknown tag (no effect).
    assert _run(ll.update(False, 4, [_rec("B"), ("A", None), _rec("E", "Invalid"),
                                     ("ZZ", None)])) == "Accepted"
    assert ll.version() == 4 and len(ll) == 4
    assert ll.lookup("A", now) == (None, None)
    assert ll.lookup("B", now) == ("Accepted", None)
    assert ll.lookup("E", now) == ("Invalid", None)
    # Persisted: a reopen (reboot) reads the same list and version.
    again = lf.LocalList(_P, 5000, log=_quiet)
    assert again.version() == 4 and len(again) == 4
    assert again.lookup("D", now) == ("Accepted", "GRP")
    # A Full without entries empties it: version 0 (OCTT TC_042_2).
    assert _run(ll.update(True, 5, [])) == "Accepted"
    assert ll.version() == 0 and len(ll) == 0 and ll.lookup("B", now) == (None, None)
    assert lf.LocalList(_P, 5000, log=_quiet).version() == 0


def test_tags_are_case_insensitive_and_long_tags_hashed():
    ll = _fresh()
    long1 = "\u00e9" * 20          # 40 bytes of UTF-8: a hashed key
    long2 = "\u00e9" * 19 + "x"
    assert _run(ll.update(True, 1, [_rec("abc123"), _rec(long1, "Blocked")])) == "Accepted"
    assert ll.lookup("ABC123", 0) == ("Accepted", None)
    assert ll.lookup("aBc123", 0) == ("Accepted", None)
    assert ll.lookup(long1, 0) == ("Blocked", None)
    assert ll.lookup(long2, 0) == (None, None)
    # Duplicates in one message (equal ignoring case): the last one counts.
    assert _run(ll.update(False, 2, [_rec("X", "Blocked"), _rec("x")])) == "Accepted"
    assert ll.lookup("X", 0) == ("Accepted", None) and len(ll) == 3


def test_random_differentials_match_a_model():
    ll = _fresh(most=400)
    rnd = _Rand(7)
    model = {}
    statuses = lf.STATUS
    v = 1
    assert _run(ll.update(True, v, [])) == "Accepted"
    for _ in range(60):
        ch = []
        for _ in range(rnd(21)):
            t = "T%03d" % rnd(300)
            if rnd(4) == 0:
                ch.append((t, None))
            else:
                ch.append(_rec(t, statuses[rnd(5)], 0, b"P%d" % rnd(3) if rnd(2) else None))
        v += 1
        assert _run(ll.update(False, v, ch)) == "Accepted"
        for t, r in ch:
            if r is None:
                model.pop(t, None)
            else:
                p = r[25]
                model[t] = (statuses[r[20] - 1], bytes(r[26:26 + p]).decode() if p else None)
        assert len(ll) == len(model)
    for i in range(300):
        t = "T%03d" % i
        assert ll.lookup(t, 0) == model.get(t, (None, None)), t
    # Sorted, as the binary search needs.
    with open(_P, "rb") as f:
        f.seek(16)
        prev = b""
        for _ in range(len(ll)):
            k = f.read(48)[:20]
            assert k > prev
            prev = k


def test_max_length_failed_nothing_changed():
    ll = _fresh(most=30)
    assert _run(ll.update(True, 1, [_rec("A%02d" % i) for i in range(20)])) == "Accepted"
    before = store.read(_P)
    # 10 more fit exactly; 11 new do not (replacing and removing count correctly).
    assert _run(ll.update(False, 2, [_rec("B%02d" % i) for i in range(11)])) == "Failed"
    assert store.read(_P) == before and ll.version() == 1 and len(ll) == 20
    ch = [_rec("B%02d" % i) for i in range(11)] + [("A00", None), _rec("A01", "Blocked")]
    assert _run(ll.update(False, 2, ch)) == "Accepted"
    assert len(ll) == 30 and ll.lookup("A01", 0) == ("Blocked", None)
    assert _run(ll.update(True, 3, [_rec("C%02d" % i) for i in range(31)])) == "Failed"
    assert len(ll) == 30 and ll.version() == 2


def test_thousands_of_entries_stored_and_found():
    # Built as a central system must send it: a Full of 20, then Differentials of 20.
    ll = _fresh()
    n = 1500
    v = 1
    assert _run(ll.update(True, v, [_rec("CARD%06d" % (i * 7 % n)) for i in range(20)])) \
        == "Accepted"
    for lo in range(20, n, 20):
        v += 1
        ch = [_rec("CARD%06d" % (i * 7 % n), "Accepted", 0, b"FLEET") for i in range(lo, lo + 20)]
        assert _run(ll.update(False, v, ch)) == "Accepted"
    assert len(ll) == n and ll.version() == v
    assert os.stat(_P)[6] == 16 + 48 * n
    again = lf.LocalList(_P, 5000, log=_quiet)
    for i in range(0, n, 7):
        assert again.lookup("CARD%06d" % i, 0)[0] == "Accepted", i
        assert again.lookup("CARD%06dX" % i, 0) == (None, None)
    assert again.lookup("CARD%06d" % (n - 1), 0) == ("Accepted", "FLEET")
    # A lookup allocates a little (file object, the tag's bytes), nothing that grows.
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    again.lookup("CARD000700", 0)
    again.lookup("NOPE", 0)
    used = gc.mem_alloc() - a
    gc.enable()
    assert used < 1024, used


def test_damaged_file_reads_as_empty_and_leftover_tmp_removed():
    ll = _fresh()
    assert _run(ll.update(True, 9, [_rec("A"), _rec("B")])) == "Accepted"
    with open(_P, "ab") as f:
        f.write(b"xx")                       # not a whole record: not ours any more
    with open(_P + ".tmp", "wb") as f:
        f.write(b"half an update")
    lines = []
    again = lf.LocalList(_P, 5000, log=lines.append)
    assert again.version() == 0 and again.lookup("A", 0) == (None, None)
    assert lines and "unreadable" in lines[0]
    assert not store.exists(_P + ".tmp")
    # A Differential on it starts from nothing; a Full replaces it.
    assert _run(again.update(True, 10, [_rec("C")])) == "Accepted"
    assert lf.LocalList(_P, 5000, log=_quiet).lookup("C", 0) == ("Accepted", None)


class _RAMBlockDev:
    def __init__(self, block_size, num_blocks):
        self.bs = block_size
        self.data = bytearray(block_size * num_blocks)

    def readblocks(self, n, buf, off=0):
        a = n * self.bs + off
        buf[:] = memoryview(self.data)[a:a + len(buf)]

    def writeblocks(self, n, buf, off=None):
        if off is None:
            off = 0
        a = n * self.bs + off
        memoryview(self.data)[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.bs
        if op == 5:
            return self.bs
        if op == 6:
            a = arg * self.bs
            memoryview(self.data)[a:a + self.bs] = b"\xff" * self.bs
            return 0


def _mount(bd, fresh):
    try:
        vfs.umount(_MNT)
    except OSError:
        pass
    if fresh:
        vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), _MNT)


def test_littlefs_rename_and_out_of_space():
    # 96 KB of littlefs: a list of 600 (28.8 KB) and its next version fit; then filled.
    bd = _RAMBlockDev(4096, 24)
    _mount(bd, True)
    path = _MNT + "/locallist.bin"
    try:
        ll = lf.LocalList(path, 5000, log=_quiet)
        v = 1
        assert _run(ll.update(True, v, [_rec("T%04d" % i) for i in range(20)])) == "Accepted"
        while len(ll) < 600:
            v += 1
            lo = len(ll)
            assert _run(ll.update(False, v, [_rec("T%04d" % i) for i in range(lo, lo + 20)])) \
                == "Accepted", len(ll)
        # Remount (a reboot): the same list.
        _mount(bd, False)
        ll = lf.LocalList(path, 5000, log=_quiet)
        assert len(ll) == 600 and ll.version() == v
        # Fill the flash so the next update has no room for its new file.
        try:
            with open(_MNT + "/filler", "wb") as f:
                for _ in range(96):
                    f.write(b"\0" * 1024)
                    f.flush()
        except OSError:
            pass
        assert _run(ll.update(False, v + 1, [_rec("NEW%02d" % i) for i in range(20)])) == "Failed"
        assert len(ll) == 600 and ll.version() == v and ll.lookup("T0599", 0)[0] == "Accepted"
        assert "locallist.bin.tmp" not in os.listdir(_MNT)
        os.remove(_MNT + "/filler")
        assert _run(ll.update(False, v + 1, [_rec("NEW%02d" % i) for i in range(20)])) \
            == "Accepted"
        _mount(bd, False)
        ll = lf.LocalList(path, 5000, log=_quiet)
        assert len(ll) == 620 and ll.lookup("NEW19", 0)[0] == "Accepted"
    finally:
        try:
            vfs.umount(_MNT)
        except OSError:
            pass


async def test_update_lets_other_tasks_run():
    # A Differential over a big list yields while it streams: the ticker is not starved.
    ll = _fresh()
    _run_big = [_rec("K%05d" % i) for i in range(20)]
    assert await ll.update(True, 1, _run_big) == "Accepted"
    v = 1
    for lo in range(20, 2000, 20):
        v += 1
        assert await ll.update(False, v, [_rec("K%05d" % i) for i in range(lo, lo + 20)]) \
            == "Accepted"
    ticks = [0]

    async def ticker():
        while True:
            ticks[0] += 1
            await asyncio.sleep_ms(0)
    t = asyncio.create_task(ticker())
    await asyncio.sleep_ms(0)
    before = ticks[0]
    assert await ll.update(False, v + 1, [_rec("K00000", "Blocked")]) == "Accepted"
    t.cancel()
    assert ticks[0] - before >= 2000 // (8 * 8) - 2, ticks[0] - before
    assert ll.lookup("K00000", 0) == ("Blocked", None) and len(ll) == 2000


class _Cfg:
    def __init__(self, **kw):
        self.v = {"LocalAuthListEnabled": True, "AuthorizationCacheEnabled": True,
                  "LocalAuthListMaxLength": 5000}
        self.v.update(kw)

    def get(self, k):
        return self.v[k]


class _Clock:
    def now(self):
        return 0


class _Cache:
    def lookup(self, tag, now):
        return ("Accepted", "FROM-CACHE") if tag == "C" else (None, None)


class _CP:
    # Just what Sessions._cached and cp.part need.
    def __init__(self, state, **cfg):
        self.state = state
        self.cfg = _Cfg(**cfg)
        self.clock = _Clock()
        self.cache = _Cache()
        self.log = _quiet
        self._parts = {}

    def part(self, name, make=True):
        p = self._parts.get(name)
        if p is None and make:
            mod = __import__("ocpp16." + name, None, None, ("Part",))
            p = self._parts[name] = mod.Part(self)
        return p


class _S:
    def __init__(self, cp):
        self.cp = cp
        self._list_looked = False       # as Sessions at boot


def test_sessions_lookup_order_and_no_import_without_a_list():
    import sys
    from ocpp16.sessions import Sessions
    from fsutil import rmtree
    d = "/tmp/mpocpp-test-ll-state"
    rmtree(d)
    os.mkdir(d)
    cp = _CP(d)
    s = _S(cp)
    sys.modules.pop("ocpp16.locallist", None)
    assert Sessions._cached(s, "C") == ("Accepted", "FROM-CACHE")
    assert Sessions._cached(s, "X") == (None, None)
    assert "ocpp16.locallist" not in sys.modules and cp.part("locallist", False) is None
    # A list on flash (as after a reboot): loaded at the first lookup, before the cache.
    ll = lf.LocalList(d + "/locallist.bin", 5000, log=_quiet)
    assert _run(ll.update(True, 1, [_rec("C", "Blocked"), _rec("L", "Accepted", 0, b"G")])) \
        == "Accepted"
    s = _S(cp)                  # the reboot: the file is looked for once per boot
    assert Sessions._cached(s, "C") == ("Blocked", None)
    assert "ocpp16.locallist" in sys.modules
    assert Sessions._cached(s, "L") == ("Accepted", "G")
    assert Sessions._cached(s, "C", False) == ("Blocked", None)
    assert Sessions._cached(s, "X", False) == (None, None)     # not listed: may be cached
    # Disabled: the list is not consulted; the cache answers again.
    cp.cfg.v["LocalAuthListEnabled"] = False
    assert Sessions._cached(s, "C") == ("Accepted", "FROM-CACHE")
    assert Sessions._cached(s, "L") == (None, None)
    rmtree(d)


def test_no_room_for_the_new_file_fails_before_writing():
    asked = []

    def room(need):
        asked.append(need)
        return need <= 16 + 48 * 25
    ll = _fresh()
    ll.room = room
    assert _run(ll.update(True, 1, [_rec("A%02d" % i) for i in range(20)])) == "Accepted"
    before = store.read(_P)
    assert _run(ll.update(False, 2, [_rec("B%02d" % i) for i in range(6)])) == "Failed"
    assert asked == [16 + 48 * 20, 16 + 48 * 26]
    assert store.read(_P) == before and ll.version() == 1 and not store.exists(_P + ".tmp")
