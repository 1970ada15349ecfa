# Timestamps taken before the clock was set (lib/ocpp16/timebase.py): exact when their
# power-on learnt the time, bounded otherwise, the same after every reboot, never 1970.
import os
from ocpp16 import store
from ocpp16.clock import Clock, EARLIEST
from ocpp16.timebase import TimeBase

_BASE = "/tmp/mpocpp-test-timebase"
T = 1800000000          # 2027-01-15


def _fresh(name):
    d = _BASE + "/" + name
    store.makedirs(d + "/time")
    for n in os.listdir(d + "/time"):
        os.remove(d + "/time/" + n)
    return d


class Board:
    """The board's seconds since power-on."""

    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def _power_on(d):
    src = Board()
    clock = Clock(src)
    return src, clock, TimeBase(d, clock, src, log=lambda s: None)


def test_stamp_is_relative_until_the_clock_is_set():
    d = _fresh("rel")
    src, clock, tb = _power_on(d)
    src.t = 12
    assert tb.stamp() == (0, 12)
    assert tb.resolve(tb.boot, 12) is None          # nothing known: wait, never 1970
    clock.set(T)
    tb.clock_set()
    assert tb.stamp() == (T, 0)


def test_exact_in_the_same_and_every_later_power_on():
    d = _fresh("exact")
    src, clock, tb = _power_on(d)
    b1 = tb.boot
    src.t = 10                          # event at 10 s after power-on, clock unset
    src.t = 25
    clock.set(T)                        # learnt at 25 s
    tb.clock_set()
    assert tb.resolve(b1, 10) == T - 15
    clock.set(T + 100)                  # a later correction (Heartbeat) changes nothing
    assert tb.resolve(b1, 10) == T - 15
    for _ in range(3):                  # reboots, online or not
        src, clock, tb = _power_on(d)
        assert tb.resolve(b1, 10) == T - 15
        clock.set(T + 5000)
        tb.clock_set()
        assert tb.resolve(b1, 10) == T - 15


def test_power_on_without_clock_gets_the_last_known_time_as_lower_bound():
    d = _fresh("lower")
    src, clock, tb = _power_on(d)
    src.t = 3
    clock.set(T)
    tb.clock_set()                      # last known time: T
    src, clock, tb = _power_on(d)       # offline power-on
    b2 = tb.boot
    src, clock, tb = _power_on(d)
    clock.set(T + 9999)
    tb.clock_set()
    assert tb.resolve(b2, 40) == T + 40
    assert tb.resolve(b2, 41) - tb.resolve(b2, 40) == 1     # spacing kept


def test_advance_raises_the_lower_bound():
    # The last meter save of the previous power-on (after the clock was set) is later
    # than the moment the clock was set: events of an offline power-on come after it.
    d = _fresh("advance")
    src, clock, tb = _power_on(d)
    clock.set(T)
    tb.clock_set()
    src, clock, tb = _power_on(d)
    tb.advance(T + 3600)                # a save one hour after the clock was set
    tb.advance(T + 60)                  # older: ignored
    tb.advance(1000)                    # implausible: ignored
    b2 = tb.boot
    src, clock, tb = _power_on(d)
    assert tb.resolve(b2, 5) == T + 3605
    clock.set(T + 7200)
    tb.clock_set()
    tb.advance(T + 9000)                # once the clock is set it needs no bound
    assert tb.resolve(tb.boot, 5) == T + 7200 + 5


def test_first_power_on_ever_offline_resolves_to_the_next_known_power_on():
    # Nothing known before it: it happened before the first later power-on that learnt
    # the time began.  The same answer in every later power-on (a resend after a cut
    # carries the same timestamp).
    d = _fresh("upper")
    src, clock, tb = _power_on(d)
    b1 = tb.boot
    src, clock, tb = _power_on(d)       # offline as well
    b2 = tb.boot
    src, clock, tb = _power_on(d)
    src.t = 30
    assert tb.resolve(b1, 7) is None    # this power-on has no clock yet either
    clock.set(T)
    tb.clock_set()                      # this power-on began at T - 30
    assert tb.resolve(b1, 7) == T - 30 and tb.resolve(b2, 99) == T - 30
    for _ in range(2):
        src, clock, tb = _power_on(d)
        assert tb.resolve(b1, 7) == T - 30
    assert tb.resolve(b1, 7) >= EARLIEST


def test_damaged_boot_counter_never_reuses_a_boot_number():
    d = _fresh("counter")
    for _ in range(4):
        src, clock, tb = _power_on(d)
        clock.set(T)
        tb.clock_set()
    last = tb.boot
    store.atomic_write(d + "/time/boot", b"garbage")
    src, clock, tb = _power_on(d)
    assert tb.boot > last
    os.remove(d + "/time/boot")
    b = tb.boot
    src, clock, tb = _power_on(d)
    assert tb.boot > b
