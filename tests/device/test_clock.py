# UTC clock: ISO parsing/formatting round trips, no timestamps before the clock is set.
import micropython
from ocpp16 import clock
from ocpp16.jsonw import Writer


def test_parse_variants():
    base = clock.parse_iso("2026-11-23T12:34:56Z")
    assert clock.iso(base) == "2026-11-23T12:34:56Z"
    assert clock.parse_iso("2026-11-23T12:34:56.789Z") == base
    assert clock.parse_iso("2026-11-23T12:34:56.123456+00:00") == base
    assert clock.parse_iso("2026-11-23T14:34:56+02:00") == base
    assert clock.parse_iso("2026-11-23T14:34:56+0200") == base
    assert clock.parse_iso("2026-11-23T10:34:56-02:00") == base
    assert clock.parse_iso("2026-11-23T12:34:56") == base  # no offset: UTC
    assert clock.parse_iso(b"2026-11-23T12:34:56Z") == base


def test_parse_rejects_garbage():
    for bad in ("", "x", "2026-13-01T00:00:00Z", "2026/11/23T12:00:00Z", "2026-11-23T12:00:00Q"):
        try:
            clock.parse_iso(bad)
            assert False, bad
        except ValueError:
            pass


def test_known_epochs():
    assert clock.parse_iso("1970-01-01T00:00:00Z") == 0
    assert clock.parse_iso("2000-01-01T00:00:00Z") == 946684800
    assert clock.iso(951782400) == "2000-02-29T00:00:00Z"   # leap day
    assert clock.iso(4102444799) == "2099-12-31T23:59:59Z"


def test_write_iso_without_heap():
    buf = bytearray(64)
    w = Writer(buf)
    t = clock.parse_iso("2031-07-04T05:06:07Z")
    micropython.heap_lock()
    try:
        clock.write_iso(w, t)
    finally:
        micropython.heap_unlock()
    assert bytes(buf[:w.n]) == b'"2031-07-04T05:06:07Z"'


def test_clock_unset_until_trusted_time():
    ticks = [1000]
    c = clock.Clock(lambda: ticks[0])
    assert not c.valid and c.now() is None
    assert not c.set(0)            # 1970 refused
    assert c.set(1800000000)
    ticks[0] += 5
    assert c.now() == 1800000005
