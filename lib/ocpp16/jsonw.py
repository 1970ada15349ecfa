"""A JSON writer into a preallocated buffer.

OCPP frames are written token by token into the websocket transmit buffer: integers as
digits, known keys as `bytes` constants, strings copied with JSON escaping.  Nothing on
the hot path allocates (checked under `micropython.heap_lock()` in tests/device).

    w = Writer(ws.tx)
    w.raw(b'{"connectorId":'); w.int(1); w.raw(b',"status":'); w.str("Available"); w.raw(b"}")
    await ws.send(w.n)
"""
from ocpp16 import native

# Raised when a frame does not fit; preallocated so raising it needs no heap.
OVERFLOW = ValueError("frame does not fit the transmit buffer")

# Plain Python versions, for a port without a native emitter; the viper ones below
# replace them where there is one (see ocpp16.native).
def _copy(dst, pos, cap, src, n):
    if pos + n > cap:
        return -1
    for i in range(n):
        dst[pos + i] = src[i]
    return pos + n


def _copy_esc(dst, pos, cap, src, n):
    for c in bytes(src, "utf-8") if isinstance(src, str) else src:
        if c == 34 or c == 92:
            if pos + 2 > cap:
                return -1
            dst[pos] = 92
            dst[pos + 1] = c
            pos += 2
        elif c < 32:
            if pos + 6 > cap:
                return -1
            for k, v in enumerate(b"\\u%04x" % c):
                dst[pos + k] = v
            pos += 6
        else:
            if pos >= cap:
                return -1
            dst[pos] = c
            pos += 1
    return pos


def _utf8_bytes(src, nchars):
    return len(src.encode())


_VIPER = r'''
@micropython.viper
def _copy(dst, pos: int, cap: int, src, n: int) -> int:
    # Copy n bytes of src into dst at pos; -1 when it would pass cap.
    if pos + n > cap:
        return -1
    d = ptr8(dst)
    s = ptr8(src)
    i = 0
    while i < n:
        d[pos + i] = s[i]
        i += 1
    return pos + n

@micropython.viper
def _copy_esc(dst, pos: int, cap: int, src, n: int) -> int:
    # Copy a UTF-8 string body with JSON escaping of '"', '\\' and control bytes.
    d = ptr8(dst)
    s = ptr8(src)
    hexd = ptr8(b"0123456789abcdef")
    i = 0
    while i < n:
        c = s[i]
        if c == 34 or c == 92:
            if pos + 2 > cap:
                return -1
            d[pos] = 92
            d[pos + 1] = c
            pos += 2
        elif c < 32:
            if pos + 6 > cap:
                return -1
            d[pos] = 92
            d[pos + 1] = 117  # \u00XX
            d[pos + 2] = 48
            d[pos + 3] = 48
            d[pos + 4] = hexd[c >> 4]
            d[pos + 5] = hexd[c & 15]
            pos += 6
        else:
            if pos >= cap:
                return -1
            d[pos] = c
            pos += 1
        i += 1
    return pos

@micropython.viper
def _utf8_bytes(src, nchars: int) -> int:
    # Byte length of a str holding nchars characters, read from its UTF-8 data in
    # place: iterating a str would create one-character strings on the heap.
    s = ptr8(src)
    i = 0
    while nchars > 0:
        c = s[i]
        i += 1 if c < 0x80 else 2 if c < 0xE0 else 3 if c < 0xF0 else 4
        nchars -= 1
    return i
'''
_fast = native.viper(_VIPER, "_copy", "_copy_esc", "_utf8_bytes")
if _fast:
    _copy, _copy_esc, _utf8_bytes = _fast
del _VIPER, _fast


class Writer:
    """Writes JSON tokens into `buf` (bytearray or memoryview) from offset 0.

    `n` is the number of bytes written so far.  Every method raises `OVERFLOW` when the
    buffer is full; the caller then drops or shortens the frame.
    """

    def __init__(self, buf):
        self.buf = buf
        self.cap = len(buf)
        self.n = 0

    def reset(self):
        self.n = 0

    def raw(self, b):
        """Append bytes (or an ASCII str) exactly as given: keys, punctuation, literals."""
        p = _copy(self.buf, self.n, self.cap, b, len(b))
        if p < 0:
            raise OVERFLOW
        self.n = p

    def byte(self, c):
        if self.n >= self.cap:
            raise OVERFLOW
        self.buf[self.n] = c
        self.n += 1

    def str(self, s):
        """Append a JSON string (quoted, escaped); `s` is str or bytes (UTF-8)."""
        self.byte(34)
        # len() of a str counts characters; the copy needs its UTF-8 byte length.
        n = len(s) if not isinstance(s, str) else _utf8_bytes(s, len(s))
        p = _copy_esc(self.buf, self.n, self.cap, s, n)
        if p < 0:
            raise OVERFLOW
        self.n = p
        self.byte(34)

    def int(self, v):
        """Append an integer as decimal digits, without building a string."""
        if v < 0:
            self.byte(45)
            v = -v
        if v == 0:
            self.byte(48)
            return
        # Count digits, then fill right to left.
        d = 0
        t = v
        while t:
            t //= 10
            d += 1
        if self.n + d > self.cap:
            raise OVERFLOW
        i = self.n + d - 1
        buf = self.buf
        while v:
            buf[i] = 48 + v % 10
            v //= 10
            i -= 1
        self.n += d

    def bool(self, v):
        self.raw(b"true" if v else b"false")

    def value(self, v):
        """Append any JSON value (dict, list, str, int, float, bool, None).

        Used for rarely sent payloads (CALLRESULTs to the central system); it walks
        the object, so it allocates iterators, but never a whole string.
        """
        if v is None:
            self.raw(b"null")
        elif v is True or v is False:
            self.bool(v)
        elif isinstance(v, int):
            self.int(v)
        elif isinstance(v, float):
            self.raw(repr(v))
        elif isinstance(v, (str, bytes)):
            self.str(v)
        elif isinstance(v, dict):
            self.byte(123)
            first = True
            for k in v:
                if not first:
                    self.byte(44)
                first = False
                self.str(k)
                self.byte(58)
                self.value(v[k])
            self.byte(125)
        elif isinstance(v, (list, tuple)):
            self.byte(91)
            for i in range(len(v)):
                if i:
                    self.byte(44)
                self.value(v[i])
            self.byte(93)
        else:
            raise TypeError("not JSON serialisable")

