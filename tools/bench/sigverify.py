# MicroPython side of `make bench`: Ed25519 verification of an update bundle's digest
# (lib/ocpp16/sigverify.py), on this port.
#
#   MICROPYPATH=lib $(tools/micropython | tail -n1) tools/bench/sigverify.py
#   MICROPYPATH=lib ~/.cache/mpocpp/frozen32/micropython -X heapsize=4M \
#       tools/bench/sigverify.py                   (32-bit: a charger's integer sizes)
#
# Figures: ms per verification (best of RUNS, sync), the pure SHA-512 of one block, the
# longest stretch of work between two yields of the step generator (what the loop waits
# for at most, beyond the slice), the longest gap a ticker task saw while verify_async
# ran with the default slice, the heap the module keeps once imported and the bytes one
# verification allocates (garbage, collected as it goes).  One JSON line.
import sys
import gc
import json
from time import ticks_ms, ticks_us, ticks_diff

if ".frozen" not in sys.path:
    sys.path.append(".frozen")          # asyncio is frozen into the unix port
import asyncio
from binascii import unhexlify as u

RUNS = 5
# RFC 8032 7.1 TEST SHA(abc): a 64-byte message, like the 32-byte digest of a bundle
PUB = u("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
MSG = u("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
SIG = u("dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704")

gc.collect()
before = gc.mem_alloc()
from ocpp16 import sigverify as S      # noqa: E402
gc.collect()
resident = gc.mem_alloc() - before


def best_ms(fn, runs=RUNS):
    best = None
    for _ in range(runs):
        t = ticks_us()
        r = fn()
        d = ticks_diff(ticks_us(), t)
        best = d if best is None or d < best else best
    return r, best / 1000


ok, verify_ms = best_ms(lambda: S.verify(PUB, MSG, SIG))
assert ok
_, sha_ms = best_ms(lambda: S.run_sync(S.sha512_steps(MSG)))

# the longest piece of work between two yields, and how many there are
g = S.steps(PUB, MSG, SIG)
steps = 0
longest = 0
t = ticks_us()
try:
    while True:
        next(g)
        now = ticks_us()
        longest = max(longest, ticks_diff(now, t))
        t = now
        steps += 1
except StopIteration:
    pass

# bytes one verification allocates (gc off: what the GC would have to reclaim)
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
try:
    S.verify(PUB, MSG, SIG)
    allocated = gc.mem_alloc() - a0
except MemoryError:                     # a small heap (-X heapsize): not measured
    allocated = None
gc.enable()
gc.collect()

# a ticker next to verify_async with the default slice: its longest wait
st = {"done": False, "gap": 0, "ticks": 0}


async def ticker():
    last = ticks_us()
    while not st["done"]:
        await asyncio.sleep_ms(0)
        now = ticks_us()
        st["gap"] = max(st["gap"], ticks_diff(now, last))
        st["ticks"] += 1
        last = now


async def main():
    tk = asyncio.create_task(ticker())
    await asyncio.sleep_ms(0)
    assert await S.verify_async(PUB, MSG, SIG)
    st["done"] = True
    await tk

asyncio.run(main())

print(json.dumps({
    "port": sys.implementation._machine if hasattr(sys.implementation, "_machine") else sys.platform,
    "bits": 64 if sys.maxsize > 2 ** 32 else 32,
    "hashlib_sha512": S._hw_sha512 is not None,
    "verify_ms": int(verify_ms * 10 + 0.5) / 10,
    "sha512_block_us": int(sha_ms * 1000),
    "yields": steps,
    "longest_step_us": longest,
    "slice_ms": S.SLICE_MS,
    "ticker_longest_gap_us": st["gap"],
    "ticker_ticks": st["ticks"],
    "heap_resident_bytes": resident,
    "heap_allocated_per_verify_bytes": allocated,
}))
