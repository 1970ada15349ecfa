"""Authorization cache: idTagInfo from Authorize / StartTransaction / StopTransaction answers.

On flash only (`auth.bin` in the state directory), so offline authorisation survives a
reboot and the cache costs no RAM: _SLOTS fixed records of _REC bytes, read one at a
time into a 64-byte buffer and rewritten in place.  When full, the entry written longest
ago goes.  A record is checked by a check byte: a damaged one reads as an empty slot
(a cache may forget, never invent).

Record: check, status (1-5, 0 = empty), expiry (u32 Unix, 0 = none), age (u32, the
write counter), tag length + 26 bytes, parentIdTag length + 26 bytes.  A tag longer
than 26 bytes of UTF-8 (idTag is CiString20) is not cached.
"""
from micropython import const
from ocpp16 import store
from ocpp16.clock import parse_iso

_SLOTS = const(64)
_REC = const(64)
_FIELD = const(26)
_STATUS = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")


def _check(b):
    s = 0x5A
    for i in range(1, _REC):
        s = (s + b[i]) & 0xFF
    return s


def _u32(b, i):
    return b[i] | b[i + 1] << 8 | b[i + 2] << 16 | b[i + 3] << 24


def _put32(b, i, v):
    for k in range(4):
        b[i + k] = (v >> (8 * k)) & 0xFF


class AuthCache:
    def __init__(self, path, log=print):
        self.path = path                 # auth.bin
        self.log = log
        self._b = bytearray(_REC)
        old = path[:path.rfind(".")] + ".json"
        if old != path and store.exists(old):
            self._migrate(old)

    def _migrate(self, old):
        # auth.json of earlier versions (a dict held in RAM): read once, then gone.
        import json
        try:
            d = json.loads(store.read(old))
            for tag in d:
                e = d[tag]
                self._write(tag, e[0], e[1], e[2])
        except (ValueError, TypeError, IndexError, KeyError, OSError):
            self.log("auth cache: %s unreadable, not carried over" % old)
        store.remove(old)

    def _open(self):
        try:
            return open(self.path, "rb")
        except OSError:
            return None

    def _valid(self):
        b = self._b
        return b[1] and b[0] == _check(b)

    def _tag_is(self, tb):
        b = self._b
        n = b[10]
        return n == len(tb) and (not n or b.find(tb, 11, 11 + n) == 11)

    def update(self, tag, info):
        """Store an idTagInfo dict (status, expiryDate, parentIdTag) for `tag`."""
        if not isinstance(info, dict) or info.get("status") not in _STATUS:
            return
        exp = 0
        if isinstance(info.get("expiryDate"), str):
            try:
                exp = parse_iso(info["expiryDate"])
            except ValueError:
                pass
        parent = info.get("parentIdTag") if isinstance(info.get("parentIdTag"), str) else None
        self._write(tag, info["status"], exp, parent)

    def _write(self, tag, status, exp, parent):
        tb = tag.encode()
        pb = parent.encode() if parent else b""
        if len(tb) > _FIELD or len(pb) > _FIELD or status not in _STATUS:
            return
        code = _STATUS.index(status) + 1
        slot = free = oldest = None
        age = low = 0
        b = self._b
        same = False
        end = 0                                     # records in the file
        f = self._open()
        if f:
            # Every record is read (no early exit), one at a time.
            with f:
                for i in range(_SLOTS):
                    if f.readinto(b) != _REC:
                        break
                    end = i + 1
                    if not self._valid():
                        free = i if free is None else free
                        continue
                    a = _u32(b, 6)
                    age = max(age, a)
                    if self._tag_is(tb):
                        slot = i
                        same = b[1] == code and _u32(b, 2) == exp and b[37] == len(pb) \
                            and (not pb or b.find(pb, 38, 38 + len(pb)) == 38)
                    elif oldest is None or a < low:
                        oldest, low = i, a
        if same:
            return                                  # unchanged: no flash write
        if slot is None:
            slot = free if free is not None else end if end < _SLOTS else oldest
        for k in range(_REC):
            b[k] = 0
        b[1] = code
        _put32(b, 2, exp)
        _put32(b, 6, age + 1)
        b[10] = len(tb)
        b[11:11 + len(tb)] = tb
        b[37] = len(pb)
        b[38:38 + len(pb)] = pb
        b[0] = _check(b)
        # Not flushed: a cache entry lost to a power cut is only a cache miss.
        mode = "r+b" if store.exists(self.path) else "wb"
        with open(self.path, mode) as f:
            f.seek(slot * _REC)
            f.write(b)
        if store.write_hook:
            store.write_hook(self.path)

    def lookup(self, tag, now):
        """(status, parentIdTag) for a cached tag; an expired Accepted entry reads Expired."""
        tb = tag.encode()
        b = self._b
        f = self._open()
        if not f:
            return None, None
        with f:
            for _ in range(_SLOTS):
                if f.readinto(b) != _REC:
                    break
                if self._valid() and self._tag_is(tb):
                    status = _STATUS[b[1] - 1] if b[1] <= len(_STATUS) else "Invalid"
                    exp = _u32(b, 2)
                    if status == "Accepted" and exp and now and now > exp:
                        status = "Expired"
                    return status, bytes(b[38:38 + b[37]]).decode() if b[37] else None
        return None, None

    def clear(self):
        store.remove(self.path)

    def __len__(self):
        n = 0
        f = self._open()
        if f:
            with f:
                for _ in range(_SLOTS):
                    if f.readinto(self._b) != _REC:
                        break
                    n += 1 if self._valid() else 0
        return n
