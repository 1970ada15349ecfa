"""IEC 61851-1 control pilot (CP) and proximity pilot (PP) of one connector.

The board (board.py) makes one Pilot per connector and polls it from one asyncio task;
this module has no task and no timing of its own, so a test can drive it alone.

PWM: 1 kHz on the CP line.  duty_u16() turns the offer into the IEC 61851-1 duty cycle:
6-51 A: I / 0.6 A %; 51-80 A: I / 2.5 A + 64 %; below 6 A: 100 % (connected, no current
offered); above 80 A: 80 A.  5 % (digital communication) is never produced: the
duties used are 100 % and 10-96 %.

Sampling: MicroPython cannot start an ADC conversion on a PWM edge (pin and timer
callbacks are scheduled on the ESP32), so a burst of `samples` unsynchronised read_uv()
calls, spread over a few PWM periods, keeps:
  - the maximum: the high level of the line (A 12 V, B 9 V, C 6 V, D 3 V, E 0 V);
  - the count of samples below -10 V (the -12 V low phase: the EV's diode is there) and
    between -10 V and -1.5 V (a low phase loaded by the EV's resistors: no diode).
All in ADC microvolts against thresholds converted once at construction: the burst
loop does integer compares only and allocates nothing.

Noise: (1) a level must pass a threshold by HYST_MV (0.4 V) to leave the state it is
in (hysteresis); (2) a new state must be measured in CONFIRM (2) consecutive bursts
before it is believed; (3) "no diode" needs at least 3 samples in the loaded band and
none at -12 V, in 3 bursts in a row (samples on the PWM's edges fall in that band too,
and at 96 % duty the low phase is only 40 us), and is only judged while the PWM runs (at
100 % there is no low phase).  The diode must have been seen (a -12 V
sample) before the contactor may close, as IEC 61851-1 asks (checked at least once
before closing).
"""
from micropython import const
from machine import Pin, PWM, ADC
from ocpp16 import states as C

FREQ = const(1000)
FULL = const(65535)            # duty_u16 of 100 %: +12 V DC
CONFIRM = const(2)             # bursts that must agree before a state change is believed
HYST_MV = const(400)           # a level must pass a threshold by this much to leave a state
_BAD_MIN = const(3)            # loaded-low samples in a burst that mean "no diode"...
_NODIODE = const(3)            # ...in this many bursts in a row (none at -12 V)
_PP_SAMPLES = const(8)         # PP is DC: the mean of a few reads
_PP_OPEN = const(2600)         # Ohm: above this the PP line is open (no cable)

# High-level thresholds in pilot mV, ascending: below the first F (-12 V), then E (0 V),
# D (3 V), C (6 V), B (9 V), A (12 V): midway between the nominal levels.
_LEVEL_MV = (-6000, 1500, 4500, 7500, 10500)
_STATES = (C.EV_F, C.EV_E, C.EV_D, C.EV_C, C.EV_B, C.EV_A)   # by band, low to high
_LOW_OK_MV = const(-10000)     # a low-phase sample below this: the diode blocks (-12 V)
_LOW_BAD_MV = const(-1500)     # between the two: the low phase is loaded (no diode)

# PP: (upper bound in Ohm, rating in tenths of A), IEC 61851-1 / IEC 62196-2 cable
# codes 100 Ohm 63 A, 220 Ohm 32 A, 680 Ohm 20 A, 1.5 kOhm 13 A; the bounds are the
# geometric means between them.  Below 50 Ohm the line is shorted: no rating.
_PP_BANDS = ((50, 0), (148, 630), (387, 320), (1010, 200), (_PP_OPEN, 130))


def duty_u16(a10):
    """The PWM duty_u16 that offers a10 tenths of A (IEC 61851-1 Table A.8)."""
    if a10 < C.MIN_OFFER_A10:
        return FULL                       # nothing offered: B1/C1, no PWM
    if a10 > 800:
        a10 = 800                         # the top of the PWM scale (96 %)
    if a10 <= 510:
        return (a10 * FULL + 300) // 600                  # I / 0.6 %, rounded
    return ((a10 + 1600) * FULL + 1250) // 2500           # I / 2.5 + 64 %, rounded


def pp_rating(mv, pullup, vref_mv):
    """The cable's rating in tenths of A from the PP voltage in mV; 0 = open or shorted."""
    if mv >= vref_mv:
        return 0
    ohm = pullup * mv // (vref_mv - mv)
    for top, a10 in _PP_BANDS:
        if ohm < top:
            return a10
    return 0


class Pilot:
    """One connector's pilot.  pwm, sense, pp: GPIO numbers (pp None: tethered cable);
    uv_m12 / uv_p12: the ADC's reading at -12 V / +12 V on the line; max_a10: the
    installation maximum."""

    def __init__(self, pwm, sense, pp=None, uv_m12=262000, uv_p12=2356000, samples=100,
                 max_a10=160, invert=False, pp_pullup=1000, pp_vref_uv=3300000):
        self.invert = invert
        self._duty = self._out(FULL)
        # +12 V from the first instant: A1/B1, no current offered.
        self._pwm = PWM(Pin(pwm), freq=FREQ, duty_u16=self._duty)
        self._read = ADC(Pin(sense), atten=ADC.ATTN_11DB).read_uv   # bound once
        self._pp = None if pp is None else ADC(Pin(pp), atten=ADC.ATTN_11DB).read_uv
        self.samples = samples
        self.install_a10 = max_a10
        self.pp_pullup = pp_pullup
        self.pp_vref_mv = pp_vref_uv // 1000
        self._uv_m12 = uv_m12
        self._span = uv_p12 - uv_m12
        if self._span < 24000:
            raise ValueError("CP front end: uv_p12 must be above uv_m12")
        uv = self.uv
        self._level = tuple(uv(mv) for mv in _LEVEL_MV)
        self._hyst = uv(HYST_MV) - uv(0)
        self._low_ok = uv(_LOW_OK_MV)
        self._low_bad = uv(_LOW_BAD_MV)
        self.state = C.EV_A          # believed state (after CONFIRM bursts)
        self._band = 5               # its band index in _STATES
        self._cand = -1              # band measured last, not yet believed
        self._seen = 0
        self.diode = None            # None: not checked yet; True seen; False missing
        self._nodiode = 0            # bursts in a row that looked like "no diode"
        self.wanted = 0              # the firmware's offer (tenths of A)
        self.offered = 0             # what the PWM offers now (0 or 60..800)
        self.cable = None if pp is None else 0     # PP rating, tenths of A (0: no cable)
        self._pp_cand = 0
        self.high_uv = 0             # the last burst (burst())
        self.low_uv = 0
        self.ok = 0
        self.bad = 0
        self.bursts = 0

    # -- scaling ------------------------------------------------------------------------
    def uv(self, mv):
        """ADC microvolts for a line voltage in mV (construction time only)."""
        return self._uv_m12 + (mv + 12000) * self._span // 24000

    def mv(self, uv):
        """Line voltage in mV for an ADC reading (small-int arithmetic on a 32-bit port)."""
        return -12000 + (uv - self._uv_m12) * 240 // (self._span // 100)

    # -- offer --------------------------------------------------------------------------
    def _out(self, d):
        return FULL - d if self.invert else d

    def max_a10(self):
        """The cable's rating (PP) capped by the installation maximum."""
        c = self.cable
        return self.install_a10 if c is None else min(c, self.install_a10)

    def offer(self, a10):
        """The firmware's offer in tenths of A; the PWM offers it within max_a10()."""
        self.wanted = a10 if a10 > 0 else 0
        return self._apply()

    def _apply(self):
        a = min(self.wanted, self.max_a10(), 800)
        if a < C.MIN_OFFER_A10:
            a = 0
        self.offered = a
        d = self._out(duty_u16(a))
        if d != self._duty:          # a rewrite restarts the LEDC period: only on change
            self._duty = d
            self._pwm.duty_u16(d)
        return a

    def pwm_running(self):
        return self.offered > 0

    # -- measuring ----------------------------------------------------------------------
    def burst(self):
        """One burst: the max and min in ADC uV (high_uv, low_uv) and the samples in the
        -12 V band and in the loaded-low band (ok, bad).  Integer compares only; the
        results go to attributes (a returned tuple would allocate)."""
        read = self._read
        ok_uv = self._low_ok
        bad_uv = self._low_bad
        hi = -1
        lo = 1 << 29
        ok = 0
        bad = 0
        for _ in range(self.samples):
            v = read()
            if v > hi:
                hi = v
            if v < lo:
                lo = v
            if v < ok_uv:
                ok += 1
            elif v < bad_uv:
                bad += 1
        self.high_uv = hi
        self.low_uv = lo
        self.ok = ok
        self.bad = bad

    def _band_of(self, hi):
        t = self._level
        b = 0
        while b < 5 and hi >= t[b]:
            b += 1
        cur = self._band
        # Hysteresis: next to the current band, the threshold moves away by HYST.
        if b == cur + 1 and hi < t[cur] + self._hyst:
            b = cur
        elif b == cur - 1 and hi > t[b] - self._hyst:
            b = cur
        return b

    def poll(self):
        """Measure once (a burst, and the PP line); returns True when the believed state
        changed.  The diode verdict and the cable rating are updated on the way."""
        self.burst()
        self.bursts += 1
        b = self._band_of(self.high_uv)
        if 2 <= b <= 4 and self.offered:        # B, C, D with a low phase to look at
            if self.ok:
                self.diode = True
                self._nodiode = 0
            elif self.bad >= _BAD_MIN:
                # At 96 % the low phase is 40 us: a burst may catch only its edges.
                # Several bursts in a row without a -12 V sample are needed.
                self._nodiode += 1
                if self._nodiode >= _NODIODE:
                    self._nodiode = _NODIODE
                    self.diode = False
                    b = 0                       # F: the EV's diode is missing
        if self._pp is not None:
            self._read_pp()
        if b == self._band:
            self._seen = 0
            return False
        if b != self._cand:
            self._cand = b
            self._seen = 0
        self._seen += 1
        if self._seen < CONFIRM:
            return False
        self._band = b
        self._cand = -1
        self._seen = 0
        self.state = _STATES[b]
        if self.state in (C.EV_A, C.EV_E):
            self.diode = None                   # another car, or none: check again
        return True

    def _read_pp(self):
        read = self._pp
        s = 0
        for _ in range(_PP_SAMPLES):
            s += read()
        r = pp_rating(s // _PP_SAMPLES // 1000, self.pp_pullup, self.pp_vref_mv)
        # Two equal readings in a row before a new rating is believed, like the CP.
        if r != self.cable and r == self._pp_cand:
            self.cable = r
            self._apply()                       # a lower rating lowers the PWM at once
        self._pp_cand = r

    def may_close(self):
        """The pilot's part of the contactor rule: C or D, current offered, diode seen."""
        return (self.state == C.EV_C or self.state == C.EV_D) and \
            self.offered >= C.MIN_OFFER_A10 and self.diode is True
