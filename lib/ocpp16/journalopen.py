"""Opening the journal (journal.py): scan the segments, index them, repair, quarantine,
read the marks, the seq file and the transactionId log.  Boot only: Journal.__init__
imports this module, calls scan() and drops it from sys.modules (no reference to it is
kept), so its code costs no RAM while the charger runs."""
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
# Everything here works on the Journal `j` it is given (its state: see its __init__);
# what must also run after boot (deleting a segment, quarantining a record found damaged
# by read, rewriting the transactionId log) stays a method of the Journal.

import os
import struct
from ocpp16 import store
from ocpp16.journal import START, STOP, METER, VERSION
from ocpp16.journalseg import crc32, _step, _STREAMS
from ocpp16.journaltxid import _narrow

try:
    from micropython import const
except ImportError:  # CPython tooling
    def const(x):
        return x

# The same values as in journalseg.py and journaltxid.py.
_HLEN = const(24)       # v1 header length
_ENV = const(12)        # envelope (magic, version, hlen, crc, body length): every version
_M0 = const(0x4F)       # "O"
_M1 = const(0x4A)       # "J"
_SPAN = const(0xFFFF)   # marks store seq - first in 16 bits
_RM = const(1)
_FAIL = const(2)
_TXE = const(12)
_TSET = const(1)
_TDEL = const(2)
_TVER = const(1)


def _int(s):
    try:
        return int(s)
    except ValueError:
        return None


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


def scan(j, scratch):
    # The journal's queue, seq and transactionId map from what is on flash.
    q = j._q
    codes = []      # first * 2 + stream, for every segment name
    marks = []
    for name in os.listdir(q):
        if name.endswith(".tmp"):
            j.corrupt += 1
            if not j._quarantine(q + "/" + name, name, "leftover of an interrupted write"):
                store.remove(q + "/" + name)
        elif name.endswith(".m"):
            marks.append(name[:-2])
        else:
            s = _STREAMS.find(name[:1]) if name else -1
            v = _int(name[1:]) if s >= 0 else None
            if v is None or v < 0 or name != "%s%08d" % (name[0], v):
                j.log("journal: q/%s: not a journal file, left alone" % name)
            else:
                codes.append(v * 2 + s)
    codes.sort()
    top = 0                 # largest seq seen anywhere
    keep = []               # names whose marks files stay
    if not codes:
        buf = None
    elif scratch is not None and len(scratch) >= j._segsize:
        buf = scratch
    else:
        buf = bytearray(j._segsize)
    for code in codes:
        v = _load(j, code, buf, marks, keep)
        if v > top:
            top = v
    del buf
    # Marks files whose segment is gone (crash between the two deletes).
    for name in marks:
        if name not in keep:
            j.log("journal: q/%s.m: orphan marks removed" % name)
            store.remove(q + "/" + name + ".m")
    # Seq floor.
    v = store.read(j._seqf)
    if v is not None:
        v = _int(v)
        if v is None:
            j.log("journal: seq file unreadable, ignored")
        else:
            j._floor = v
    store.remove(j._seqf + ".tmp")
    j._next = max(j._floor, top, 1)
    # Fully removed segments that are not the newest of their stream.
    for s in (0, 1):
        k = 0
        while k < len(j._sf[s]) - 1:
            if j._sn[s][k] == 0:
                try:
                    j._delseg(s, k)
                    continue
                except OSError as e:    # flash full: they go at a later delete
                    j.log("journal: could not delete an emptied segment: %r" % e)
            k += 1
    _load_map(j)

def _load_map(j):
    # The transactionId log, then the tx/<tx> files (previous versions; values the
    # log cannot hold).  A file overrides the log: see set_txid.
    m = j._map
    d = store.read(j._txf)
    store.remove(j._txf + ".tmp")    # an interrupted rewrite: the log is intact
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
        j._tlen = n
        if bad:
            # Torn or damaged entries cost only themselves; the log is rewritten.
            j.corrupt += bad
            j._quarantine(j._txf, "txids", "%d damaged entries" % bad, d)
            j._tdirty = True
    mig = []
    for name in os.listdir(j._txd):
        p = j._txd + "/" + name
        if name.endswith(".tmp"):
            store.remove(p)
            continue
        tx = _int(name)
        v = store.read(p)
        v = _int(v) if v is not None else None
        if tx is None or v is None:
            j._quarantine(p, "tx" + name, "unreadable transaction id")
        else:
            m[tx] = v
            if _narrow(tx, v):
                mig.append(tx)
            else:
                j._wide.add(tx)
    if mig or j._tdirty:
        try:
            j._tcompact(-1, None)
        except OSError as e:
            # Flash full: the files stay authoritative (forget deletes them).
            j.log("journal: transactionId log not rewritten: %r" % e)
            for tx in mig:
                j._wide.add(tx)
            return
        for tx in mig:
            p = "%s/%d" % (j._txd, tx)
            store.remove(p)
            _step(p)
        if mig:
            j.log("journal: %d transactionId file(s) moved into the log" % len(mig))

def _load(j, code, buf, marks, keep):
    """Index one segment; returns a lower bound for the next seq (0: none)."""
    q = j._q
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
        j.log("journal: q/%s: unreadable, left alone: %r" % (name, e))
        keep.append(name)
        return first + 1
    offs, bad, foreign = _parse(d, n, first, s)
    if foreign:
        j.unknown += 1
        keep.append(name)
        j.log("journal: q/%s: unknown format version %d, left in place" % (name, foreign))
        return first + 1
    if not offs:
        j.corrupt += 1
        why = "empty (interrupted create)" if n == 0 else "no valid record (%d bytes)" % n
        if j._quarantine(path, name, why):
            store.remove(path + ".m")
            return 0
        return first + 1    # still in q/: its name must never be reused
    sealed = False
    if bad:
        d, n, sealed = _repair(j, path, name, d, n, offs, bad)
    # Records of this segment, less those its marks say are removed.
    rm = fails = None
    if name in marks:
        keep.append(name)
        rm, fails = _marks(j, path + ".m")
    live = 0
    ix = j._ix[s]
    for p in offs:
        seq, tx, kind, _, flags = struct.unpack_from("<IIBBH", d, p + 12)
        dl = seq - first
        if rm and dl in rm:
            continue
        if seq <= ix.last():    # only if files were copied around by hand
            j.log("journal: q/%s: seq %d out of order, ignored" % (name, seq))
            continue
        ix.push(seq, tx, kind, min(255, fails.get(dl, 0)) if fails else 0)
        if flags:
            j._flags[seq] = flags
        live += 1
    last = struct.unpack_from("<I", d, offs[-1] + 12)[0]
    j._sf[s].append(first)
    j._sl[s].append(last - first)   # 0.._SPAN (_parse)
    j._sn[s].append(live)
    j._sz[s] = n
    j._sealed[s] = sealed
    return last + 1

def _repair(j, path, name, d, n, offs, bad):
    # Keep the original in bad/, rewrite the segment with its good records only.
    j.corrupt += len(bad) >> 1
    for i in range(0, len(bad), 2):
        j.log("journal: q/%s: torn/corrupt bytes %d..%d" % (name, bad[i], bad[i + 1]))
    mv = memoryview(d)
    j._quarantine(path, name, "original kept", mv[:n])
    clean = bytearray()
    for p in offs:
        clean.extend(mv[p:p + _HLEN + struct.unpack_from("<I", d, p + 8)[0]])
    try:
        store.atomic_write(path, clean)
    except OSError as e:
        # Keep indexing the original offsets; never append after the damage.
        j.log("journal: q/%s: could not rewrite: %r" % (name, e))
        return d, n, True
    j.bytes_written += len(clean)
    p = 0
    for i in range(len(offs)):
        offs[i] = p
        p += _HLEN + struct.unpack_from("<I", clean, p + 8)[0]
    return clean, len(clean), False

def _parse(d, n, first, s):
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

def _marks(j, path):
    """Read a marks file: (set of removed seq offsets, {seq offset: failures})."""
    m = store.read(path)
    rm = set()
    fails = {}
    if m:
        for p in range(0, len(m) - 3, 4):
            dl, op, chk = struct.unpack_from("<HBB", m, p)
            if chk != (dl ^ (dl >> 8) ^ op ^ 0xA5) & 0xFF:
                j.log("journal: %s: bad mark at %d ignored" % (path, p))
            elif op == _RM:
                rm.add(dl)
            elif op == _FAIL:
                fails[dl] = fails.get(dl, 0) + 1
    return rm, fails
