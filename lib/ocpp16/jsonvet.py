"""Vetting frames on their way in and out, in place, before JSON or the socket sees them.

In (`vet`, run on every received text frame before `json.loads`):
- Nesting is bounded (MAX_DEPTH).  MicroPython's decoder keeps a stack per level on the
  heap: 2,000 levels end in a MemoryError, which no OCPP 1.6 payload needs (the deepest,
  SetChargingProfile, has 6).
- An escaped surrogate pair (`\\ud83d\\ude97`, how CPython's json.dumps writes an emoji) is
  combined into the character's 4-byte UTF-8.  MicroPython would decode each half into
  a 3-byte sequence of its own: a str that is not valid UTF-8, which the charger would
  then send back (an idTag in StartTransaction, a configuration value) and the central
  system would close the link with 1007 for it, at every reconnect.  An escaped lone
  surrogate becomes U+FFFD and is flagged (LONE): the caller refuses such a CALL.
- Brackets must balance outside strings (UNBALANCED otherwise): MicroPython's decoder
  takes `[2,"id","Reset",{"type":"Hard"}` without its last `]`, and a truncated CALL
  must not be carried out.
- The bytes must be UTF-8 (RFC 6455 8.1: else the connection fails with 1007).  Encoded
  surrogates (ED A0..BF) and overlong forms are refused too: MicroPython's own check
  lets them through.

Out (`repair`, run on every frame before it is sent): any byte that is not part of
valid UTF-8 becomes '?', in place.  The frames are built from our own strings, so this
never fires unless something slipped through (a journal record written by an older
version, say); it guarantees the central system never gets invalid UTF-8, which would
cost the link and block the message queue behind that frame.

Both run as viper where the port has it (one pass, no allocation; see ocpp16.native),
else as the same code in plain Python.
"""
from micropython import const
from ocpp16 import native

MAX_DEPTH = const(20)
DEEP = const(0x1000000)     # flags in the value vet() returns, above the length
LONE = const(0x2000000)
BAD_UTF8 = const(0x4000000)
UNBALANCED = const(0x8000000)
LENGTH = const(0xFFFFFF)

# One source for both: compiled as viper when the port has the native emitter, else as
# Python with ptr8 the identity (indexing a bytearray gives the same ints).
_SRC = """
def _hex4(b, i):
    v = 0
    for k in range(4):
        c = int(b[i + k])
        if 48 <= c <= 57:
            c -= 48
        elif 97 <= c <= 102:
            c -= 87
        elif 65 <= c <= 70:
            c -= 55
        else:
            return -1
        v = (v << 4) | c
    return v

@DECO
def _utf8_len(b: ptr8, i: int, n: int) -> int:
    # Length of the valid UTF-8 sequence at b[i] (its lead byte is >= 0x80), 0 if invalid.
    c = b[i]
    if c < 0xC2 or c > 0xF4:
        return 0
    k = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
    if i + k > n:
        return 0
    d = b[i + 1]
    lo = 0x80
    hi = 0xBF
    if c == 0xE0:
        lo = 0xA0
    elif c == 0xED:
        hi = 0x9F
    elif c == 0xF0:
        lo = 0x90
    elif c == 0xF4:
        hi = 0x8F
    if d < lo or d > hi:
        return 0
    j = 2
    while j < k:
        if (b[i + j] & 0xC0) != 0x80:
            return 0
        j += 1
    return k

@DECO
def vet(buf, n: int) -> int:
    b = ptr8(buf)
    i = 0
    o = 0
    depth = 0
    instr = 0
    flags = 0
    while i < n:
        c = b[i]
        if c >= 0x80:
            k = int(_utf8_len(buf, i, n))
            if k == 0:
                return n | 0x4000000
            while k > 0:
                b[o] = b[i]
                o += 1
                i += 1
                k -= 1
            continue
        if instr:
            if c == 34:
                instr = 0
            elif c == 92 and i + 1 < n:
                if b[i + 1] == 117 and i + 6 <= n:
                    h = int(_hex4(buf, i + 2))
                    if 0xD800 <= h <= 0xDFFF:
                        l = -1
                        if h < 0xDC00 and i + 12 <= n and b[i + 6] == 92 and b[i + 7] == 117:
                            l = int(_hex4(buf, i + 8))
                        if 0xDC00 <= l <= 0xDFFF:
                            u = 0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00)
                            b[o] = 0xF0 | (u >> 18)
                            b[o + 1] = 0x80 | ((u >> 12) & 63)
                            b[o + 2] = 0x80 | ((u >> 6) & 63)
                            b[o + 3] = 0x80 | (u & 63)
                            o += 4
                            i += 12
                        else:
                            b[o] = 0xEF
                            b[o + 1] = 0xBF
                            b[o + 2] = 0xBD
                            o += 3
                            i += 6
                            flags |= 0x2000000
                        continue
                b[o] = c
                b[o + 1] = b[i + 1]
                o += 2
                i += 2
                continue
        elif c == 34:
            instr = 1
        elif c == 91 or c == 123:
            depth += 1
            if depth > 20:
                flags |= 0x1000000
        elif c == 93 or c == 125:
            depth -= 1
        b[o] = c
        o += 1
        i += 1
    if depth != 0 or instr:
        flags |= 0x8000000
    return o | flags

@DECO
def repair(buf, n: int) -> int:
    b = ptr8(buf)
    i = 0
    bad = 0
    while i < n:
        if b[i] < 0x80:
            i += 1
            continue
        k = int(_utf8_len(buf, i, n))
        if k:
            i += k
        else:
            b[i] = 63
            bad += 1
            i += 1
    return bad
"""


def _build():
    fast = native.viper(_SRC.replace("@DECO", "@micropython.viper").replace(
        "def _hex4(b, i):", "@micropython.viper\ndef _hex4(b: ptr8, i: int) -> int:"),
        "vet", "repair")
    if fast:
        return fast
    g = {"ptr8": lambda b: b, "int": int}   # no native emitter: the same code as Python
    exec(_SRC.replace("@DECO\n", "").replace("b: ptr8", "b"), g)
    return g["vet"], g["repair"]


vet, repair = _build()
del _build, _SRC
