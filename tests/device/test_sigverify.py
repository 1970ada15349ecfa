# Ed25519 verification (lib/ocpp16/sigverify.py): RFC 8032 7.1 test vectors, refusals,
# the pure SHA-512, and the cooperative run (the loop keeps turning while it verifies).
import asyncio
from binascii import unhexlify as u
from time import ticks_ms, ticks_diff
from ocpp16 import sigverify as S

# RFC 8032 section 7.1: (public key, message, signature); TEST 1, 2, 3 and SHA(abc).
VECTORS = (
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
     "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
     "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
     "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a8"
     "36ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ec"
     "fdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
)
# A 300-byte message (3 SHA-512 blocks: 0x00..0xff then 0x00..0x2b) signed by the
# `cryptography` package with the TEST 1 secret key.
LONG_SIG = ("b17c42832c88facb5fa322b53293dbef809d7fb0b454175df9d65e9adb96579"
            "046c75c05e51f32760cec24755c66f393431bab2905a4f387216976ceef57780f")


def _vec(i):
    pub, msg, sig = VECTORS[i]
    return u(pub), u(msg), u(sig)


def _flip(b, i, bit=1):
    b = bytearray(b)
    b[i] ^= bit
    return bytes(b)


def test_rfc8032_vectors_verify():
    for i in range(len(VECTORS)):
        pub, msg, sig = _vec(i)
        assert S.verify(pub, msg, sig), i
    long_msg = bytes(range(256)) + bytes(range(44))
    assert S.verify(_vec(0)[0], long_msg, u(LONG_SIG))
    assert not S.verify(_vec(0)[0], long_msg[:-1] + b"\x00", u(LONG_SIG))


def test_wrong_key_is_refused():
    pub1, msg, sig = _vec(1)
    pub2 = _vec(2)[0]
    assert not S.verify(pub2, msg, sig)
    assert not S.verify(pub1, _vec(2)[1], sig)       # another message


def test_flipped_bit_in_signature_or_message_is_refused():
    pub, msg, sig = _vec(3)
    for i in (0, 17, 31, 32, 50, 63):                 # R and S halves
        for bit in (1, 0x80):
            assert not S.verify(pub, msg, _flip(sig, i, bit)), (i, bit)
    for i in (0, 31, 63):
        assert not S.verify(pub, _flip(msg, i), sig), i
    assert not S.verify(pub, msg + b"\x00", sig)
    assert not S.verify(pub, msg[:-1], sig)


def test_malformed_input_is_false_not_an_exception():
    pub, msg, sig = _vec(1)
    L = 2 ** 252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little")
    # S + L is the same scalar mod L: RFC 8032 requires refusing S >= L (malleability)
    big = sig[:32] + (s + L).to_bytes(32, "little")
    assert not S.verify(pub, msg, big)
    assert not S.verify(pub, msg, sig[:63])
    assert not S.verify(pub[:31], msg, sig)
    assert not S.verify(b"\xff" * 32, msg, sig)       # y >= p: not a point
    assert not S.verify(bytes(32), msg, bytes(64))    # all zero
    # A public key whose x would be 0 with the sign bit set: refused by decoding
    one = (1 | 1 << 255).to_bytes(32, "little")
    assert not S.verify(one, msg, sig)


def test_sha512_pure_matches_known_digests():
    cases = ((b"", "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                   "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"),
             (b"abc", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
             # 112 bytes: the padding spills into a second block
             (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
              b"jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
              "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
              "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"))
    for msg, want in cases:
        assert S.run_sync(S.sha512_steps(msg)) == u(want), msg


def test_async_verify_gives_the_loop_turns_at_a_bounded_gap():
    pub, msg, sig = _vec(3)
    rounds = 8
    state = {"done": False, "ticks": 0, "gap": 0, "results": []}

    async def ticker():
        last = ticks_ms()
        while not state["done"]:
            await asyncio.sleep_ms(0)
            now = ticks_ms()
            state["gap"] = max(state["gap"], ticks_diff(now, last))
            state["ticks"] += 1
            last = now

    async def verifier():
        await asyncio.sleep_ms(0)                    # let the ticker start
        for _ in range(rounds):
            state["results"].append(await S.verify_async(pub, msg, sig, slice_ms=2))
        state["done"] = True

    async def main():
        t = asyncio.create_task(ticker())
        t0 = ticks_ms()
        await verifier()
        await t
        return ticks_diff(ticks_ms(), t0)

    total = asyncio.run(main())
    assert state["results"] == [True] * rounds
    # Without the yields the ticker would wait for all `rounds` verifications at once
    # (one gap of `total`); with them it runs many times per verification.
    assert state["ticks"] >= 2 * rounds, state
    # (relative: a loaded test machine may deschedule the process for tens of ms)
    assert state["gap"] * 4 < total, (state, total)


def test_steps_yield_often():
    # Every yield marks at most a point operation or 16 squarings/SHA-512 rounds: the
    # slice a charger's loop waits for is bounded by the work between two yields.
    pub, msg, sig = _vec(0)
    g = S.steps(pub, msg, sig)
    n = 0
    longest = 0
    t = ticks_ms()
    try:
        while True:
            next(g)
            now = ticks_ms()
            longest = max(longest, ticks_diff(now, t))
            t = now
            n += 1
    except StopIteration as e:
        assert e.value is True
    assert n >= 253, n                               # one per bit of the scalars at least
    assert longest <= 200, longest                   # loose: wall time on a shared machine
