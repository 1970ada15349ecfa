# MicroPython side of `make bench`: the Local Authorization List on flash
# (lib/ocpp16/locallistfile.py) with 1,000 and 5,000 entries.
#
#   MICROPYPATH=lib $(tools/micropython | tail -n1) tools/bench/locallist.py
#
# The list is built as a central system must send it (SendLocalListMaxLength entries per
# SendLocalList): one Full, then Differentials, in a temporary directory.  Per size:
# build time (all updates), one Differential of 20 on the full list (ms), lookup time
# (hit and miss, mean over 200), heap allocated by one lookup (gc disabled), file size.
# Also the heap a SendLocalList frame of 20 entries (20-char tags, full idTagInfo) takes
# when parsed.  One JSON line at the end.
import sys
import gc
import os
import json
from time import ticks_us, ticks_diff

if ".frozen" not in sys.path:
    sys.path.append(".frozen")          # asyncio is frozen into the unix port
import asyncio
from ocpp16 import locallistfile as lf, store

SIZES = (1000, 5000)
PER_MSG = 20
LOOKUPS = 200
DIR = "/tmp/mpocpp-bench-locallist"


def tag(i):
    return "TAG%017d" % (i * 7919 % 1000003)      # 20 characters, not in order


def changes(lo, hi):
    return [(tag(i), lf.record(tag(i), 1, 1900000000, b"PARENT%014d" % (i % 50)))
            for i in range(lo, hi)]


def build(path, n):
    store.remove(path)
    lst = lf.LocalList(path, 5000, log=lambda s: None)
    t0 = ticks_us()
    v = 1
    assert asyncio.run(lst.update(True, v, changes(0, PER_MSG))) == "Accepted"
    for lo in range(PER_MSG, n, PER_MSG):
        v += 1
        assert asyncio.run(lst.update(False, v, changes(lo, min(n, lo + PER_MSG)))) == "Accepted"
    build_ms = ticks_diff(ticks_us(), t0) // 1000
    assert len(lst) == n and lst.version() == v
    # One more Differential on the full list: 10 replaced, 10 removed.
    ch = changes(0, 10) + [(tag(i), None) for i in range(10, 20)]
    t0 = ticks_us()
    assert asyncio.run(lst.update(False, v + 1, ch)) == "Accepted"
    diff_ms = ticks_diff(ticks_us(), t0) / 1000
    return lst, build_ms, diff_ms


def lookups(lst, hit):
    names = [tag(i * (len(lst) // LOOKUPS) + 20) if hit else "NOPE%016d" % i
             for i in range(LOOKUPS)]
    t0 = ticks_us()
    for t in names:
        s = lst.lookup(t, 1800000000)[0]
        assert (s == "Accepted") if hit else s is None, (t, s)
    return ticks_diff(ticks_us(), t0) / LOOKUPS / 1000


def alloc(lst, t):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    lst.lookup(t, 1800000000)
    b = gc.mem_alloc()
    gc.enable()
    return b - a


def frame_heap():
    e = {"idTag": "A" * 20, "idTagInfo": {"expiryDate": "2030-01-01T00:00:00.000Z",
                                          "parentIdTag": "P" * 20, "status": "Accepted"}}
    frame = json.dumps([2, "x" * 36, "SendLocalList",
                        {"listVersion": 2147483647, "updateType": "Differential",
                         "localAuthorizationList": [e] * PER_MSG}])
    gc.collect()
    a = gc.mem_alloc()
    msg = json.loads(frame)
    b = gc.mem_alloc()
    del msg
    return len(frame), b - a


def main():
    store.makedirs(DIR)
    out = {}
    for n in SIZES:
        path = "%s/list-%d.bin" % (DIR, n)
        lst, build_ms, diff_ms = build(path, n)
        hit = lookups(lst, True)
        miss = lookups(lst, False)
        out[str(n)] = r = {"entries": n, "entries_after_diff": len(lst), "build_ms": build_ms, "diff20_ms": diff_ms,
                           "lookup_hit_ms": round(hit, 3), "lookup_miss_ms": round(miss, 3),
                           "lookup_alloc_b": alloc(lst, tag(n // 2)),
                           "lookup_miss_alloc_b": alloc(lst, "NOPE"),
                           "file_bytes": os.stat(path)[6]}
        print("locallist %d entries: build %d ms (%d updates), Differential of 20 on it "
              "%.1f ms, lookup %.3f ms hit / %.3f ms miss, %d B allocated per lookup, "
              "file %d B" % (n, build_ms, (n + PER_MSG - 1) // PER_MSG, diff_ms, hit, miss,
                             r["lookup_alloc_b"], r["file_bytes"]))
        store.remove(path)
    size, heap = frame_heap()
    out["frame"] = {"entries": PER_MSG, "bytes": size, "parsed_heap_b": heap}
    print("SendLocalList frame of %d entries: %d bytes, %d B of heap parsed"
          % (PER_MSG, size, heap))
    print(json.dumps({"locallist": out}))


main()
