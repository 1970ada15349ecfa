# firmware/crash.py: the crash log stays bounded, newest kept, copied in small pieces.
import gc
import crash
from ocpp16 import store
from fsutil import rmtree

_DIR = "/tmp/mpocpp-test-crashlog"


def test_log_is_bounded_and_keeps_the_newest():
    rmtree(_DIR)
    store.makedirs(_DIR)
    for i in range(60):
        try:
            raise ValueError("crash number %d " % i + "x" * 100)
        except ValueError as e:
            crash.record(_DIR, e, log=lambda s: None)
    text = store.read(_DIR + "/crash.log")
    assert len(text) <= crash.LOG_MAX, len(text)
    assert b"crash number 59 " in text and b"crash number 0 " not in text
    assert b"---- crash 60 in a row" in text
    # Trimming reads the old log in small pieces: it works on a heap cut into 512-byte
    # holes (no 1 KB block left anywhere), where reading the log whole would not.
    gc.collect()
    blocks = [None] * (gc.mem_free() // 512 + 64)
    fill = [None] * 64
    n = 0
    try:
        while True:
            blocks[n] = bytearray(512)
            n += 1
    except MemoryError:     # (a tuple of exceptions would need an allocation)
        pass
    # The tail left after the last 512-byte block (under 512 + its header) is filled
    # with small objects, so that no free run can reach 1 KB by joining it.
    k = 0
    try:
        while k < 64:
            fill[k] = bytearray(8)
            k += 1
    except MemoryError:
        pass
    for j in range(0, k, 8):    # a few scattered 32-byte holes: room for the loop below
        fill[j] = None
    gc.collect()
    for i in range(0, n, 2):
        blocks[i] = None
    gc.collect()
    try:
        bytearray(1024)
        fragmented = False
    except MemoryError:
        fragmented = True
    try:
        raise ValueError("tight")
    except ValueError as e:
        crash.record(_DIR, e, log=lambda s: None)
    blocks = None
    gc.collect()
    assert fragmented
    assert b"tight" in store.read(_DIR + "/crash.log")
