"""Minimal stand-in for the ESP32 `machine` module, for tests on the unix port.

Only what boards/esp32_s0 and boards/esp32_cp use.  Test helpers (not in the real module) let a test play
the hardware: `Pin.drive()`/`Pin.pulse()` move an input and fire its IRQ,
`Counter.add()` counts pulses, `UART.inject()` delivers received bytes.  Instances are
kept in class-level registries (`Pin.pins`, `Counter.units`, `WDT.instances`) so a test
can reach the objects a board created; `reset_stubs()` clears them.

The control pilot (boards/esp32_cp): `PWM` and `ADC` are plain fakes; a `Car` placed on a
connector's pins models the pilot circuit behind them (the EVSE's +/-12 V source through
1 kOhm, the EV's diode and resistors, the cable's PP resistor), so `ADC.read_uv()` on the
CP sense pin returns the line voltage at a random point of the PWM period, with noise,
through the board's front end, as an unsynchronised ADC sees it.
"""
import io
import random

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


class PWM:
    """machine.PWM as on the ESP32 (LEDC): `PWM.pwms[pin]` is the last one made on a pin,
    `PWM.history` every duty_u16 written by any of them (a test checks the duties used)."""
    pwms = {}
    history = []

    def __init__(self, dest, *, freq=None, duty_u16=None, duty_ns=None, invert=False):
        self.pin = dest.id if isinstance(dest, Pin) else dest
        self._freq = freq
        self._duty = 0
        self.invert = invert
        self.running = True
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        PWM.pwms[self.pin] = self

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        if not 0 <= d <= 65535:
            raise ValueError("duty_u16 must be from 0 to 65535")
        self._duty = d
        PWM.history.append(d)

    def deinit(self):
        self.running = False

    def high_fraction(self):
        """Test helper: the share of the period the output is high (1.0 = DC high)."""
        if not self.running:
            return 0.0
        d = self._duty / 65535
        return 1.0 - d if self.invert else d


class ADC:
    """machine.ADC: read_uv() from a Car on the pin (`ADC.sources`), else `ADC.uv[pin]`
    (a constant a test sets, default 0)."""
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    adcs = {}
    sources = {}
    uv = {}

    def __init__(self, pin, *, atten=None):
        self.pin = pin.id if isinstance(pin, Pin) else pin
        self.atten = atten
        self.reads = 0
        ADC.adcs[self.pin] = self

    def read_uv(self):
        self.reads += 1
        src = ADC.sources.get(self.pin)
        return src() if src is not None else ADC.uv.get(self.pin, 0)

    def read_u16(self):
        return min(65535, self.read_uv() * 65535 // 3300000)


class Car:
    """An EV and its cable on one connector: a test helper of this fake, not in `machine`.

    state: "A" (nothing connected), "B" (connected, 2.74 kOhm), "C" (charging, 1.3 kOhm
    more), "D" (ventilation, 270 Ohm more), "E" (the pilot shorted to PE: 0 V), "F" (the
    line stuck at -12 V).  diode: the EV's diode (False: the low phase is loaded by the
    resistors instead of blocked).  follow: the car charges whenever current is offered
    (state C while the PWM runs below 100 %, B otherwise) once plugged (`plug()`).
    pp_ohm: the cable's PP resistor (None: no cable / open).  noise_mv: the peak of the
    noise added to each CP sample (pilot volts).  edge_us: rise and fall time (the
    samples on an edge get an intermediate voltage).  The front end maps -12..+12 V to
    uv_m12..uv_p12 at the ADC; the PP input is pulled up to pp_vref_uv by pp_pullup Ohm.
    """
    R_SRC = 1000
    R_EV = {"B": 2740, "C": 882, "D": 246}     # 2.74k, 2.74k || 1.3k, 2.74k || 270

    def __init__(self, pwm, sense, pp=None, *, uv_m12=0, uv_p12=3300000, noise_mv=0,
                 edge_us=0, pp_pullup=1000, pp_vref_uv=3300000):
        self.pwm = pwm
        self.state = "A"
        self.diode = True
        self.follow = False
        self.pp_ohm = None
        self.noise_mv = noise_mv
        self.edge_us = edge_us
        self.uv_m12 = uv_m12
        self.uv_p12 = uv_p12
        self.pp_pullup = pp_pullup
        self.pp_vref_uv = pp_vref_uv
        ADC.sources[sense] = self._cp_uv
        if pp is not None:
            ADC.sources[pp] = self._pp_uv

    def plug(self, state="B", pp_ohm=None):
        self.state = state
        if pp_ohm is not None:
            self.pp_ohm = pp_ohm

    def _high(self):
        out = PWM.pwms.get(self.pwm)
        return 1.0 if out is None else out.high_fraction()

    def effective(self):
        """The state the car presents now (follow mode resolves B/C from the PWM)."""
        s = self.state
        if self.follow and s in ("B", "C"):
            return "C" if self._high() < 1.0 else "B"
        return s

    def levels(self):
        """(high, low) line voltage in mV for the source at +12 V and at -12 V."""
        s = self.effective()
        if s == "A":
            return 12000, -12000
        if s == "E":
            return 0, 0
        if s == "F":
            return -12000, -12000
        r = self.R_EV[s]
        k = r / (r + self.R_SRC)
        high = int((12000 - 700) * k + 700)      # through the EV's diode (0.7 V)
        low = -12000 if self.diode else int(-12000 * k)
        return high, low

    def line_mv(self):
        """The line at a random point of the PWM period (an unsynchronised sample)."""
        high, low = self.levels()
        d = self._high()
        u = random.random()
        if d >= 1.0:
            v = high
        elif d <= 0.0:
            v = low
        else:
            v = high if u < d else low
            e = self.edge_us / 1000.0               # one period is 1000 us at 1 kHz
            if e:
                if u < e:                            # rising edge at the period start
                    v = low + (high - low) * u / e
                elif d <= u < d + e:                 # falling edge
                    v = high + (low - high) * (u - d) / e
        if self.noise_mv:
            v += (random.random() * 2 - 1) * self.noise_mv
        return v

    def _cp_uv(self):
        uv = self.uv_m12 + (self.line_mv() + 12000) * (self.uv_p12 - self.uv_m12) / 24000
        return max(0, min(3300000, int(uv)))

    def _pp_uv(self):
        r = self.pp_ohm
        if r is None:
            return self.pp_vref_uv
        return int(self.pp_vref_uv * r / (r + self.pp_pullup))


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
    PWM.pwms.clear()
    PWM.history.clear()
    ADC.adcs.clear()
    ADC.sources.clear()
    ADC.uv.clear()
