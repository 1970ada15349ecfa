"""The Local Authorization List on flash: one file of fixed records sorted by tag.

Never loaded into RAM.  A lookup is a binary search by seek (13 reads of 48 bytes for
5,000 entries) into buffers made once.  An update streams the old file and the changes
of one SendLocalList (at most SendLocalListMaxLength entries, sorted in RAM) into a new
file under a temporary name, which then replaces the old one by a rename: littlefs
renames atomically across a power cut, so after a reboot the list is the old one or the
new one, whole, and the version (in the header) always belongs to its entries.

File: header _HDR bytes (magic, count u32, version i32, 0 u32), then `count` records of
_REC bytes in ascending key order:
  key[20]    the tag's UTF-8 with ASCII letters upper-cased (idTag is a case-insensitive
             CiString20), NUL-padded; a tag of more than 20 bytes (non-ASCII) or holding a
             NUL: the first 20 bytes of its SHA-256 instead
  status u8  1-5 = Accepted, Blocked, Expired, Invalid, ConcurrentTx
  expiry u32 Unix seconds, 0 = none
  plen u8, parent[22]   parentIdTag as UTF-8 (at most 22 bytes)
"""
import os
import struct
import asyncio
from micropython import const
from ocpp16 import store

MAGIC = b"OLL1"
_HDR = const(16)
_REC = const(48)
_KEY = const(20)
PARENT_MAX = const(22)
STATUS = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
_CHUNK = const(8)       # records per write of the merge (384 bytes)
_YIELD = const(8)       # chunks between two yields to the other tasks


def key(tag, out):
    """Fill `out` (bytearray(20)) with the search key of `tag` (str)."""
    b = tag.encode()
    if len(b) > _KEY or b"\0" in b:
        import hashlib
        b = hashlib.sha256(b.upper()).digest()
    n = len(b)
    for i in range(_KEY):
        c = b[i] if i < n else 0
        out[i] = c - 32 if 97 <= c <= 122 and n <= _KEY else c
    return out


def record(tag, code, expiry, parent):
    """A record (bytearray) for `tag`; parent: bytes (at most PARENT_MAX) or None."""
    r = bytearray(_REC)
    key(tag, r)
    r[20] = code
    struct.pack_into("<I", r, 21, expiry)
    if parent:
        r[25] = len(parent)
        r[26:26 + len(parent)] = parent
    return r


class LocalList:
    def __init__(self, path, max_len, log=print, room=None):
        self.path = path
        self.max_len = max_len
        self.log = log
        self.room = room                   # room(bytes) -> False: no space for a new file
        self.count = 0
        self.ver = 0
        self._r = bytearray(_REC)          # lookups: one record, its key, the tag's key
        self._kv = memoryview(self._r)[:_KEY]
        self._k = bytearray(_KEY)
        store.remove(path + ".tmp")        # an update a power cut interrupted
        try:
            with open(path, "rb") as f:
                h = f.read(_HDR)
            size = os.stat(path)[6]
        except OSError:
            return
        if len(h) == _HDR and h[:4] == MAGIC:
            count, ver = struct.unpack_from("<Ii", h, 4)
            if size == _HDR + count * _REC:
                self.count, self.ver = count, ver
                return
        # Not ours or damaged (flash fault): an empty list, version 0; the central system
        # sees that and sends the list again.
        log("locallist: %s unreadable (%d bytes), taken as empty" % (path, size))

    def version(self):
        """GetLocalListVersion: 0 for an empty list (also after a Full without entries)."""
        return self.ver if self.count else 0

    def __len__(self):
        return self.count

    def _find(self, f, k):
        # Binary search for key `k`: True with the record in self._r.
        r = self._r
        kv = self._kv
        lo = 0
        hi = self.count - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            f.seek(_HDR + mid * _REC)
            if f.readinto(r) != _REC:
                return False
            if kv < k:
                lo = mid + 1
            elif kv == k:
                return True
            else:
                hi = mid - 1
        return False

    def _open(self):
        if not self.count:
            return None
        try:
            return open(self.path, "rb")
        except OSError:
            return None

    def lookup(self, tag, now):
        """(status, parentIdTag) of `tag`, or (None, None) when it is not listed.  An
        Accepted entry past its expiryDate reads Expired (now: Unix seconds, 0 = the
        clock is not set, expiry not checked)."""
        f = self._open()
        if f is None:
            return None, None
        with f:
            if not self._find(f, key(tag, self._k)):
                return None, None
        r = self._r
        status = STATUS[r[20] - 1] if 1 <= r[20] <= 5 else "Invalid"
        exp = r[21] | r[22] << 8 | r[23] << 16 | r[24] << 24
        if status == "Accepted" and exp and now and now > exp:
            status = "Expired"
        n = r[25]
        return status, bytes(r[26:26 + n]).decode() if 0 < n <= PARENT_MAX else None

    async def update(self, full, version, changes):
        """Apply one SendLocalList.  changes: [(tag, record or None)] in message order
        (None: remove, Differential only).  Returns "Accepted", or "Failed" with
        nothing changed (the list would pass max_len, or flash failed)."""
        # Sorted by key, the last of duplicates kept (the message's order decides).
        ch = []
        for i in range(len(changes)):
            tag, rec = changes[i]
            if rec is None and full:
                continue                  # nothing to remove from a new list
            k = bytes(rec[:_KEY]) if rec is not None else bytes(key(tag, bytearray(_KEY)))
            ch.append((k, i, rec))
        ch.sort()
        ch = [c for j, c in enumerate(ch) if j + 1 == len(ch) or ch[j + 1][0] != c[0]]
        count = len(ch) if full else self.count
        if not full and ch:
            f = self._open()
            keep = []
            for c in ch:
                there = f is not None and self._find(f, c[0])
                if c[2] is None and not there:
                    continue              # removing a tag that is not listed: no change
                count += (c[2] is not None) - there
                keep.append(c)
            if f:
                f.close()
            ch = keep
        if count > self.max_len:
            self.log("locallist: %d entries would pass LocalAuthListMaxLength %d: Failed"
                     % (count, self.max_len))
            return "Failed"
        need = _HDR + count * _REC
        if self.room is not None and not self.room(need):
            self.log("locallist: no room on flash for a new list of %d bytes: Failed" % need)
            return "Failed"
        tmp = self.path + ".tmp"
        try:
            await self._write(tmp, ch, count, version, full)
        except OSError as e:
            store.remove(tmp)
            self.log("locallist: update not stored (%r): Failed" % e)
            return "Failed"
        os.rename(tmp, self.path)
        # No await since the rename: lookups never see the new file with the old count.
        self.count = count
        self.ver = version
        if store.write_hook:
            store.write_hook(self.path)
        return "Accepted"

    async def _write(self, tmp, ch, count, version, full):
        hook = store.write_hook
        src = None if full else self._open()
        try:
            with open(tmp, "wb") as f:
                f.write(struct.pack("<4sIiI", MAGIC, count, version, 0))
                if src is not None:
                    await self._merge(src, f, ch, tmp)
                else:
                    for c in ch:
                        f.write(c[2])
                        if hook:
                            hook(tmp)
                f.flush()
        finally:
            if src is not None:
                src.close()
        if hook:
            hook(tmp)

    async def _merge(self, src, f, ch, tmp):
        # Old records are read straight into a chunk buffer and written by the chunk; a
        # change goes out between them (what precedes it in the chunk is written first).
        # No allocation per old record: the 5,000 records of a big list pass through.
        hook = store.write_hook
        out = bytearray(_CHUNK * _REC)
        mv = memoryview(out)
        slots = [mv[i * _REC:(i + 1) * _REC] for i in range(_CHUNK)]
        keys = [s[:_KEY] for s in slots]
        s = k = j = chunks = 0            # unwritten records: slots s..k-1; next change j
        nch = len(ch)
        src.seek(_HDR)
        for _ in range(self.count):
            if src.readinto(slots[k]) != _REC:
                raise OSError(5)          # EIO: the old file is shorter than its header says
            kv = keys[k]
            if j < nch and ch[j][0] <= kv:
                if k > s:
                    f.write(mv[s * _REC:k * _REC])
                while j < nch and ch[j][0] < kv:
                    if ch[j][2] is not None:
                        f.write(ch[j][2])  # an addition before this old record
                    j += 1
                s = k
                if j < nch and ch[j][0] == kv:
                    if ch[j][2] is not None:
                        f.write(ch[j][2])  # replaced; else removed
                    j += 1
                    continue              # the old record is dropped: slot k is free again
            k += 1
            if k == _CHUNK:
                f.write(out if not s else mv[s * _REC:])
                s = k = 0
                if hook:
                    hook(tmp)
                chunks += 1
                if not chunks % _YIELD:
                    await asyncio.sleep_ms(0)   # the ticker and the board run meanwhile
        if k > s:
            f.write(mv[s * _REC:k * _REC])
        while j < nch:
            if ch[j][2] is not None:
                f.write(ch[j][2])
            j += 1
        if hook:
            hook(tmp)
