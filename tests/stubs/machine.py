"""Minimal stand-in for the ESP32 `machine` module, for tests on the unix port.

Only what boards/esp32_s0 uses.  Test helpers (not in the real module) let a test play
the hardware: `Pin.drive()`/`Pin.pulse()` move an input and fire its IRQ,
`Counter.add()` counts pulses, `UART.inject()` delivers received bytes.  Instances are
kept in class-level registries (`Pin.pins`, `Counter.units`, `WDT.instances`) so a test
can reach the objects a board created; `reset_stubs()` clears them.
"""
import io

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_UID = b"\x24\x0a\xc4\x12\x34\x56"
_cause = PWRON_RESET


def unique_id():
    return _UID


def reset_cause():
    return _cause


def reset():
    raise SystemExit("machine.reset()")


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    # False emulates ESP32, whose Pin.irq refuses hard=True with TypeError.
    HARD_IRQ = False
    pins = {}

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        if value is not None:
            self._v = 1 if value else 0
        else:
            self._v = 1 if pull == Pin.PULL_UP else 0
        self.handler = None
        self.trigger = 0
        self.hard = False
        Pin.pins[id] = self

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0

    def irq(self, handler=None, trigger=3, **kw):
        if "hard" in kw and not Pin.HARD_IRQ:
            raise TypeError("extra keyword arguments given")
        self.hard = kw.get("hard", False)
        self.handler = handler
        self.trigger = trigger

    # -- test helpers ---------------------------------------------------------------------
    def drive(self, v):
        """Set an input level from outside; a matching edge calls the IRQ handler."""
        old = self._v
        self._v = 1 if v else 0
        if self.handler is not None and old != self._v:
            if (self._v == 0 and self.trigger & Pin.IRQ_FALLING) or (
                    self._v == 1 and self.trigger & Pin.IRQ_RISING):
                self.handler(self)

    def pulse(self, count=1):
        """`count` low-going pulses (an S0 output pulling an input with pull-up low)."""
        for _ in range(count):
            self.drive(0)
            self.drive(1)


class Counter:
    RISING = 1
    FALLING = 2
    UP = 1
    DOWN = -1
    units = {}

    def __init__(self, id, src=None, *, edge=RISING, direction=UP, filter_ns=0):
        self.id = id
        self.src = src
        self.edge = edge
        self.direction = direction
        self.filter_ns = filter_ns
        self._v = 0
        Counter.units[id] = self

    def value(self, v=None):
        r = self._v
        if v is not None:
            self._v = v
        return r

    def add(self, n):
        """Test helper: n pulses arrive."""
        self._v += n


class WDT:
    instances = []

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDT.instances.append(self)

    def feed(self):
        self.feeds += 1


class UART(io.IOBase):
    """Pollable by asyncio (ioctl MP_STREAM_POLL) like the real UART."""
    units = {}

    def __init__(self, id, baudrate=9600, **kw):
        self.id = id
        self.baudrate = baudrate
        self.kw = kw
        self._rx = bytearray()
        UART.units[id] = self

    def ioctl(self, req, arg):
        if req == 3:   # MP_STREAM_POLL
            return arg & 1 if self._rx else 0
        return -1      # no file descriptor: asyncio polls through ioctl

    def readinto(self, buf):
        n = min(len(buf), len(self._rx))
        if not n:
            return None
        buf[:n] = self._rx[:n]
        self._rx = self._rx[n:]
        return n

    def write(self, buf):
        return len(buf)

    def inject(self, data):
        """Test helper: bytes arrive on RX."""
        self._rx.extend(data)


# A test may hide `Counter` (machine.Counter = None) to emulate older firmware.
_Counter = Counter


class RTC:
    """The chip's real-time clock: starts at 2000-01-01 00:00:00, as an ESP32 does."""
    now = (2000, 1, 1, 5, 0, 0, 0, 0)   # (y, m, d, weekday, h, min, s, subseconds)
    sets = []

    def datetime(self, dt=None):
        if dt is None:
            return RTC.now
        RTC.now = tuple(dt)
        RTC.sets.append(tuple(dt))


def reset_stubs():
    """Forget every stub instance (call at the start of a test)."""
    RTC.now = (2000, 1, 1, 5, 0, 0, 0, 0)
    RTC.sets = []
    Pin.pins.clear()
    Pin.HARD_IRQ = False
    _Counter.units.clear()
    WDT.instances.clear()
    UART.units.clear()
