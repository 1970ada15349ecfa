"""Ed25519 signature verification (RFC 8032, 5.1.7) in pure MicroPython.

A one-off check (an update bundle), so plain big-integer arithmetic modulo 2^255-19 is
enough; no secret is handled here (only public key, message, signature), so nothing
needs to run in constant time.  SHA-512 (which Ed25519 needs) is not in MicroPython's
hashlib on the unix or ESP32 port (sha256/sha1/md5 only): it is implemented below and
hashlib's is used where a port has one.

Cooperative: the work is a generator (`steps`) that yields after every small piece (a
point operation, a few squarings, 16 SHA-512 rounds).  `verify_async` runs it and gives
the loop a turn (await asyncio.sleep_ms(0)) each time `slice_ms` of work has passed, so
the watchdog feeder and the link keep running; `verify` runs it straight through.
`run` / `run_sync` drive any such generator (lib/ocpp16/bundle.py composes its own).

    ok = verify(pub32, msg, sig64)
    ok = await verify_async(pub32, msg, sig64)
"""
import binascii
from micropython import const
from time import ticks_ms, ticks_diff

try:
    from hashlib import sha512 as _hw_sha512
except ImportError:
    _hw_sha512 = None

SLICE_MS = const(5)     # longest stretch of work between two turns of the loop

# -- SHA-512 (FIPS 180-4) -----------------------------------------------------------------
# Constants as one bytes object (640 + 64 bytes): a tuple of 88 big ints would keep ~2.5 KB
# of heap objects alive on a 32-bit port while the module is imported.
_K = binascii.unhexlify(
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b538"
    "59f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118d807aa98a303024212835b0145706fbe"
    "243185be4ee4b28c550c7dc3d5ffb4e272be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235"
    "c19bf174cf692694e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5983e5152ee66dfab"
    "a831c66d2db43210b00327c898fb213fbf597fc7beef0ee4c6e00bf33da88fc2d5a79147930aa725"
    "06ca6351e003826f142929670a0e6e7027b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed"
    "53380d139d95b3df650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30d192e819d6ef5218"
    "d69906245565a910f40e35855771202a106aa07032bbd1b819a4c116b8d2d0c81e376c085141ab53"
    "2748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373"
    "682e6ff3d6b2b8a3748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532bca273eceea26619c"
    "d186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6"
    "113f9804bef90dae1b710b35131c471b28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc"
    "431d67c49c100d4c4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
    # initial hash value H(0)
    "6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1"
    "510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179")
_M64 = 0xFFFFFFFFFFFFFFFF


def _word(b, i):
    return int.from_bytes(b[i:i + 8], "big")


def sha512_steps(data):
    """Generator: SHA-512 of `data` (bytes in RAM: Ed25519 hashes R || A || message, and
    the message here is a digest).  Yields every 16 rounds; returns the 64-byte digest."""
    if _hw_sha512:
        return _hw_sha512(data).digest()
    M = _M64
    K = memoryview(_K)
    n = len(data)
    # padding: 0x80, zeros, then the length in bits as 128 bits: whole 128-byte blocks
    msg = memoryview(data + b"\x80" + bytes((111 - n) % 128) + (n * 8).to_bytes(16, "big"))
    h = [_word(K, 640 + 8 * i) for i in range(8)]
    w = [0] * 80
    for off in range(0, len(msg), 128):
        for t in range(16):
            w[t] = _word(msg, off + 8 * t)
        for t in range(16, 80):
            x = w[t - 15]
            s0 = ((x >> 1 | x << 63) ^ (x >> 8 | x << 56) ^ (x >> 7)) & M
            x = w[t - 2]
            s1 = ((x >> 19 | x << 45) ^ (x >> 61 | x << 3) ^ (x >> 6)) & M
            w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & M
        a, b, c, d, e, f, g, hh = h
        for t in range(80):
            # the bits shifted past 64 cancel in the final & M
            s1 = ((e >> 14 | e << 50) ^ (e >> 18 | e << 46) ^ (e >> 41 | e << 23)) & M
            t1 = hh + s1 + (g ^ (e & (f ^ g))) + _word(K, 8 * t) + w[t]
            s0 = ((a >> 28 | a << 36) ^ (a >> 34 | a << 30) ^ (a >> 39 | a << 25)) & M
            t2 = s0 + ((a & b) | (c & (a | b)))
            hh = g
            g = f
            f = e
            e = (d + t1) & M
            d = c
            c = b
            b = a
            a = (t1 + t2) & M
            if t & 15 == 15:
                yield
        for i, v in enumerate((a, b, c, d, e, f, g, hh)):
            h[i] = (h[i] + v) & M
    return b"".join(v.to_bytes(8, "big") for v in h)


# -- edwards25519 -------------------------------------------------------------------------
_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493     # group order
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_D2 = 2 * _D % _P
_SQRTM1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960


def _sq(x, n):
    """Generator: x^(2^n) mod p, yielding every 16 squarings."""
    p = _P
    for i in range(n):
        x = x * x % p
        if i & 15 == 15:
            yield
    return x


def _pow_chain(z):
    """Generator: (z^(2^250-1), z^11), the common part of inversion and square root
    (the addition chain of the ref10 code: 254 squarings, 11 multiplications instead of
    pow()'s ~500 operations, and it can yield)."""
    p = _P
    z2 = z * z % p
    z9 = (yield from _sq(z2, 2)) * z % p
    z11 = z9 * z2 % p
    t = z11 * z11 % p * z9 % p                       # z^(2^5-1)
    t10 = (yield from _sq(t, 5)) * t % p             # 2^10-1
    t20 = (yield from _sq(t10, 10)) * t10 % p        # 2^20-1
    t40 = (yield from _sq(t20, 20)) * t20 % p        # 2^40-1
    t50 = (yield from _sq(t40, 10)) * t10 % p        # 2^50-1
    t100 = (yield from _sq(t50, 50)) * t50 % p       # 2^100-1
    t200 = (yield from _sq(t100, 100)) * t100 % p    # 2^200-1
    t250 = (yield from _sq(t200, 50)) * t50 % p      # 2^250-1
    return t250, z11


def _inv(z):
    """Generator: z^(p-2) = 1/z mod p."""
    t250, z11 = yield from _pow_chain(z)
    return (yield from _sq(t250, 5)) * z11 % _P


def _pow2523(z):
    """Generator: z^((p-5)/8) = z^(2^252-3)."""
    t250, _ = yield from _pow_chain(z)
    return (yield from _sq(t250, 2)) * z % _P


# Points in extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z (RFC 8032 5.1.4).

def _add(P, Q):
    p = _P
    x1, y1, z1, t1 = P
    x2, y2, z2, t2 = Q
    a = (y1 - x1) * (y2 - x2) % p
    b = (y1 + x1) * (y2 + x2) % p
    c = t1 * _D2 % p * t2 % p
    d = 2 * z1 * z2 % p
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _double(P):
    p = _P
    x1, y1, z1, _ = P
    a = x1 * x1 % p
    b = y1 * y1 % p
    c = 2 * z1 * z1 % p
    h = a + b
    s = x1 + y1
    e = h - s * s % p
    g = a - b
    f = c + g
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _decode(s):
    """Generator: the point encoded in the 32 bytes `s` (RFC 8032 5.1.3), or None."""
    p = _P
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= p:
        return None
    yy = y * y % p
    u = (yy - 1) % p
    v = (_D * yy + 1) % p
    v3 = v * v % p * v % p
    x = u * v3 % p * (yield from _pow2523(u * v3 % p * v3 % p * v % p)) % p
    vxx = v * x % p * x % p
    if vxx != u:
        if vxx != p - u:
            return None
        x = x * _SQRTM1 % p
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = p - x
    return (x, y, 1, x * y % p)


def _encode(P):
    """Generator: the 32-byte encoding of P (RFC 8032 5.1.2)."""
    p = _P
    x, y, z, _ = P
    zi = yield from _inv(z)
    x = x * zi % p
    y = y * zi % p
    return (y | (x & 1) << 255).to_bytes(32, "little")


def steps(pub, msg, sig):
    """Generator: True when `sig` is a valid Ed25519 signature of `msg` by `pub`.

    Cofactorless check [S]B = R + [k]A (RFC 8032 5.1.7 allows it), done as the encoding
    of [S]B - [k]A compared with R: a non-canonical R never matches.  Malformed input
    (lengths, S >= L, a public key off the curve) is False, never an exception."""
    if len(pub) != 32 or len(sig) != 64:
        return False
    sig = bytes(sig)
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:
        return False
    A = yield from _decode(pub)
    if A is None:
        return False
    k = int.from_bytes((yield from sha512_steps(sig[:32] + bytes(pub) + bytes(msg))),
                       "little") % _L
    p = _P
    nA = ((p - A[0]) % p, A[1], 1, (p - A[3]) % p)                 # -A
    B = (_BX, _BY, 1, _BX * _BY % p)
    table = (None, B, nA, _add(B, nA))
    Q = (0, 1, 1, 0)                                               # neutral element
    # Straus-Shamir: one doubling per bit for both scalars (s, k < L < 2^253)
    for i in range(252, -1, -1):
        Q = _double(Q)
        j = (s >> i & 1) | (k >> i & 1) << 1
        if j:
            Q = _add(Q, table[j])
        yield
    return (yield from _encode(Q)) == sig[:32]


def run_sync(gen):
    """Run a step generator to its end; its return value."""
    try:
        while True:
            next(gen)
    except StopIteration as e:
        return e.value


async def run(gen, slice_ms=SLICE_MS):
    """Run a step generator, giving the asyncio loop a turn every `slice_ms` of work."""
    import asyncio
    t = ticks_ms()
    try:
        while True:
            next(gen)
            if ticks_diff(ticks_ms(), t) >= slice_ms:
                await asyncio.sleep_ms(0)
                t = ticks_ms()
    except StopIteration as e:
        return e.value


def verify(pub, msg, sig):
    return run_sync(steps(pub, msg, sig))


async def verify_async(pub, msg, sig, slice_ms=SLICE_MS):
    return await run(steps(pub, msg, sig), slice_ms)
