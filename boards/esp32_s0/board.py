"""ESP32 charger board: S0 energy meter, contactor relay, plug switch, stop button,
UART RFID reader, status LED and watchdog.

The pin map is pins.py; boards/README.md shows the wiring.  This is the only code of the
firmware that imports `machine`, `network` or `esp32`.

S0 pulses are counted in hardware where the chip has a pulse counter: `machine.Counter`
(MicroPython 1.26+), else `esp32.PCNT` directly (a build without the Counter wrapper),
else a `Pin.irq` handler that only bumps an integer (firmware before 1.26, ESP32-C3
without PCNT; on ESP32 pin IRQs are soft and can drop edges, so this is the last
resort).  A task reads the counter every 250 ms and folds the difference into a software
total: the hardware count is never reset, so no pulse is lost between a read and a
reset, and the 16-bit PCNT wrap is undone by modular arithmetic.

Options (from main.py, see `from_args`): connectors, imp (imp/kWh), counter
(auto|counter|pcnt|irq), wdt (ms, 0 = off), state.
"""
import asyncio
import json
from time import ticks_ms, ticks_diff
from micropython import const
import machine
from machine import Pin
import pins as _PINS
from ocpp16 import store
from ocpp16.health import Health

STATE = "/state"
# While this file exists the watchdog is not armed and boot.py skips Wi-Fi, so a REPL or
# tools/deploy.py session is not cut short by a reset (a started WDT cannot be stopped).
# boot.py counts it down by boots and removes it; the board ends it after
# Board.maintenance_ms of running (see Board._maintenance).
MAINTENANCE = "/maintenance"

# LED modes for `led()`
LED_OFF = const(0)
LED_ON = const(1)
LED_SLOW = const(2)      # the default: the loop is alive
LED_FAST = const(3)

_INPUT_MS = const(50)          # plug/stop/LED poll period
_STABLE = const(3)             # equal samples before an input change is believed
_METER_MS = const(250)         # counter read period (a wrap needs 32000 pulses: minutes)
_POWER_WINDOW_MS = const(5000)  # shortest span between pulse observations for a power value
_POWER_IDLE_MS = const(300000)  # no pulse for this long: power is 0
_WIFI_MS = const(10000)        # Wi-Fi link check period
_WIFI_RETRY = const(3)         # checks down before asking for a reconnect (30 s)
_TAG_MAX = const(20)           # IdToken is CiString20
_TAG_REPEAT_MS = const(2000)   # a card held on the reader repeats its id: report once
_PCNT_RANGE = const(32000)     # PCNT max; the unit resets to 0 when it reaches it
_IRQ_RANGE = const(0x20000000)  # the IRQ counter wraps here, well inside the small-int range


def _maintenance_boots():
    """None when this is not a maintenance boot, else the boots the flag still applies to
    after this one (boot.py has already counted this one)."""
    data = store.read(MAINTENANCE)
    if data is None:
        return None
    try:
        return int(data)
    except ValueError:
        return 0


# -- pulse counter sources: read() returns the raw count, modulus is its wrap (0: none) --

class _MachineCounter:
    """machine.Counter (1.26+): overflow already extended in software by MicroPython."""
    kind = "machine.Counter"
    modulus = 0

    def __init__(self, unit, pin, filter_ns):
        c = machine.Counter
        self._c = c(unit, pin, edge=c.FALLING, filter_ns=filter_ns)

    def read(self):
        return self._c.value()


class _PcntCounter:
    """esp32.PCNT unit counting falling edges; wraps to 0 at _PCNT_RANGE."""
    kind = "esp32.PCNT"
    modulus = _PCNT_RANGE

    def __init__(self, unit, pin, filter_ns):
        import esp32
        p = esp32.PCNT
        self._p = p(unit)
        self._p.init(channel=0, pin=pin, rising=p.IGNORE, falling=p.INCREMENT,
                     filter=min(filter_ns * 80 // 1000, 1023),
                     min=-_PCNT_RANGE, max=_PCNT_RANGE, value=0)
        self._p.start()

    def read(self):
        return self._p.value()


class _IrqCounter:
    """Fallback: a pin interrupt that only increments an integer (no allocation)."""
    kind = "Pin.irq"
    modulus = _IRQ_RANGE

    def __init__(self, unit, pin, filter_ns):
        self.count = 0
        handler = self._edge   # bind once here: creating a bound method in the IRQ allocates
        try:
            pin.irq(handler, Pin.IRQ_FALLING, hard=True)
        except TypeError:      # ESP32: every pin IRQ is soft, hard= is refused
            pin.irq(handler, Pin.IRQ_FALLING)

    def _edge(self, _pin):
        c = self.count
        self.count = c + 1 if c < _IRQ_RANGE - 1 else 0

    def read(self):
        return self.count


_SOURCES = {"counter": _MachineCounter, "pcnt": _PcntCounter, "irq": _IrqCounter}


def _auto_source():
    if getattr(machine, "Counter", None) is not None:
        return _MachineCounter
    try:
        import esp32
        if getattr(esp32, "PCNT", None) is not None:
            return _PcntCounter
    except ImportError:
        pass
    return _IrqCounter


class _Input:
    """A polled digital input, believed only after _STABLE equal samples (debounce)."""

    def __init__(self, num, active_level):
        self.pin = Pin(num, Pin.IN, Pin.PULL_UP if active_level == 0 else Pin.PULL_DOWN)
        self.level = active_level
        self.active = False
        self._run = 0

    def sample(self):
        """Take one sample; returns True when the debounced state has just changed."""
        if (self.pin.value() == self.level) == self.active:
            self._run = 0
            return False
        self._run += 1
        if self._run < _STABLE:
            return False
        self._run = 0
        self.active = not self.active
        return True


class UartReader:
    """RFID reader on a UART that sends each tag id as one line of printable ASCII.

    CR, LF, STX and ETX end a tag.  A line longer than 20 characters or with other bytes
    is dropped whole.  Any reader object with `async run(board)` that calls
    `board.swipe(connector, tag)` can take its place (e.g. a Wiegand decoder).
    """

    def __init__(self, connector, uart):
        self.connector = connector
        self.uart = uart
        self._buf = bytearray(_TAG_MAX)
        self._chunk = bytearray(16)
        self._len = 0
        self._bad = False

    def feed(self, data, n, emit):
        """Parse n bytes of `data`; calls emit(connector, tag) for each complete tag."""
        for i in range(n):
            c = data[i]
            if c == 10 or c == 13 or c == 2 or c == 3:
                if self._len and not self._bad:
                    emit(self.connector, bytes(self._buf[:self._len]).decode())
                self._len = 0
                self._bad = False
            elif 0x21 <= c <= 0x7E and self._len < _TAG_MAX:
                self._buf[self._len] = c
                self._len += 1
            else:
                self._bad = True

    async def run(self, board):
        s = asyncio.StreamReader(self.uart)
        while True:
            n = await s.readinto(self._chunk)
            if n:
                self.feed(self._chunk, n, board.swipe)
            else:
                await asyncio.sleep_ms(20)


class Board:
    """The esp32_s0 board.

    pins: pin map module or object (default pins.py); connectors: how many of the mapped
    connectors to use (default all); imp_per_kwh: meter constant (default from the map);
    counter: "auto", "counter", "pcnt" or "irq"; wdt_ms: watchdog timeout, 0 = off;
    state: the state directory; log: a print-like function.
    """
    name = "esp32_s0"
    try:
        # The OTA partitions, for full-image updates (lib/ocpp16/fwimage.py): handed in
        # by the board, as lib/ never imports esp32.  None on a build without them.
        from esp32 import Partition
    except ImportError:
        Partition = None
    maintenance = False        # this boot is in maintenance mode (set by start)
    maintenance_ms = 600000    # a running maintenance boot ends after this (10 min)

    def __init__(self, pins=None, connectors=None, imp_per_kwh=None, counter="auto",
                 wdt_ms=None, state=STATE, log=print):
        p = pins or _PINS
        self.pins = p
        mapped = len(p.S0)
        nc = mapped if connectors is None else connectors
        if not 1 <= nc <= mapped:
            raise ValueError("pins.py maps %d connector(s), not %d" % (mapped, nc))
        self.connectors = nc
        self.imp_per_kwh = imp_per_kwh or p.IMP_PER_KWH
        # Energy of one pulse in mJ: power in W is then mJ / ms, in small integers.
        self._mj = 3600000000 // self.imp_per_kwh
        self.wdt_ms = p.WDT_MS if wdt_ms is None else wdt_ms
        self.state = state
        self.log = log
        self.app = None
        self._quit = asyncio.Event()
        self._wdt = None
        src = _auto_source() if counter == "auto" else _SOURCES[counter]
        self.counter_kind = src.kind
        n = nc + 1
        self.relay_on = [False] * n
        self._relay = [None] * n
        self._plug = [None] * n
        self._stop = [None] * n
        self._fault = [None] * n   # optional fault inputs (pins.FAULT)
        self._src = [None] * n
        self._raw = [0] * n        # last hardware reading
        self._pulses = [0] * n     # software total since boot
        self._seen = [0] * n       # total at the meter task's last look
        self._power = [0] * n
        self._marked = [False] * n  # a power window is open
        self._mark_t = [0] * n
        self._mark_c = [0] * n
        self._last_t = [0] * n     # when pulses were last seen
        self._tag = [None] * n
        self._tag_t = [0] * n
        faults = getattr(p, "FAULT", None) or ()   # pin maps without it: no fault inputs
        self.fault_code = getattr(p, "FAULT_CODE", "OtherError")
        if any(f is not None for f in faults[:nc]):
            from ocpp16.chargepoint import ERROR_CODES
            if self.fault_code.encode() not in ERROR_CODES:
                raise ValueError("FAULT_CODE %s is not a ChargePointErrorCode" % self.fault_code)
        pull = Pin.PULL_UP if p.S0_PULL_UP else None
        for i in range(1, n):
            # The contactor is opened first thing: the relay output is driven inactive.
            self._relay[i] = Pin(p.RELAY[i - 1], Pin.OUT, value=1 - p.RELAY_ACTIVE)
            self._plug[i] = _Input(p.PLUG[i - 1], p.PLUG_ACTIVE)
            if p.STOP[i - 1] is not None:
                self._stop[i] = _Input(p.STOP[i - 1], p.STOP_ACTIVE)
            if i <= len(faults) and faults[i - 1] is not None:
                self._fault[i] = _Input(faults[i - 1], getattr(p, "FAULT_ACTIVE", 0))
            s0 = Pin(p.S0[i - 1], Pin.IN, pull)
            self._src[i] = src(i - 1, s0, p.S0_FILTER_NS)
            self._raw[i] = self._src[i].read()
        self._led = None if p.LED is None else Pin(p.LED, Pin.OUT, value=1 - p.LED_ACTIVE)
        self._led_mode = LED_SLOW
        self._led_lit = False
        self.readers = []
        for conn, uid, rx, tx, baud in p.RFID_UART:
            if conn <= nc:
                self.readers.append(
                    UartReader(conn, machine.UART(uid, baudrate=baud, rx=rx, tx=tx)))
        # seconds(): a running total, so the 2**30 ms wrap of ticks_ms never shows.
        self._t_last = ticks_ms()
        self._secs = 0
        self._ms = 0

    # -- what the firmware reads ----------------------------------------------------------
    def identity(self):
        """Vendor, model, serial (the chip's unique id in hex) and meter type."""
        from binascii import hexlify
        return {"vendor": self.pins.VENDOR, "model": self.pins.MODEL,
                "serial": hexlify(machine.unique_id()).decode().upper(),
                "meter_type": "S0 %d imp/kWh" % self.imp_per_kwh}

    def wall(self):
        """The chip's wall clock (the RTC that mbedTLS checks certificates against), as
        Unix seconds.  It starts at 2000-01-01: ocpp16.wallclock sets it before TLS."""
        from ocpp16.clock import days_from_civil
        y, mo, d, _, h, mi, s, _ = machine.RTC().datetime()
        return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s

    def set_wall(self, t):
        from ocpp16.clock import civil_from_days
        days = t // 86400
        y, mo, d = civil_from_days(days)
        s = t % 86400
        # weekday: 0 = Monday; 1970-01-01 was a Thursday
        machine.RTC().datetime((y, mo, d, (days + 3) % 7, s // 3600, s // 60 % 60, s % 60, 0))

    def seconds(self):
        """Monotonic seconds since power-on (no wrap; says nothing about UTC)."""
        now = ticks_ms()
        ms = self._ms + ticks_diff(now, self._t_last)
        self._t_last = now
        self._secs += ms // 1000
        self._ms = ms % 1000
        return self._secs

    def _sync(self, n):
        # Fold the hardware count into the software total.  Python's % is never negative,
        # so a reading that wrapped past the counter's range still gives the true delta.
        src = self._src[n]
        raw = src.read()
        d = raw - self._raw[n]
        self._raw[n] = raw
        if src.modulus:
            d %= src.modulus
        elif d < 0:
            d = 0      # counter re-initialised under us: keep what was counted
        total = self._pulses[n] + d
        self._pulses[n] = total
        return total

    def pulses(self, n):
        """S0 pulses of connector n since boot."""
        return self._sync(n)

    def energy_wh(self, n):
        """Meter register of connector n since boot, in Wh (integer, never goes back)."""
        return self._sync(n) * 1000 // self.imp_per_kwh

    def power_w(self, n):
        """Active power of connector n in W, estimated from the pulse rate."""
        return self._power[n] if self.relay_on[n] else 0

    def relay(self, n, on):
        """Close (on=True) or open the contactor of connector n."""
        on = bool(on)
        a = self.pins.RELAY_ACTIVE
        self._relay[n].value(a if on else 1 - a)
        if self.relay_on[n] != on:
            self.relay_on[n] = on
            self.log("board: relay %d %s" % (n, "closed" if on else "open"))

    def is_plugged(self, n):
        """Debounced plug state of connector n."""
        return self._plug[n].active

    def led(self, mode):
        """Status LED: LED_OFF, LED_ON, LED_SLOW (default) or LED_FAST."""
        self._led_mode = mode

    def swipe(self, n, tag):
        """A reader saw `tag` at connector n; repeats while the card stays are dropped."""
        now = ticks_ms()
        if tag == self._tag[n] and ticks_diff(now, self._tag_t[n]) < _TAG_REPEAT_MS:
            self._tag_t[n] = now
            return
        self._tag[n] = tag
        self._tag_t[n] = now
        self.log("board: card %s at connector %d" % (tag, n))
        if self.app:
            self.app.swiped(n, tag)

    # -- periodic work (sync, so tests can step it) ----------------------------------------
    def scan_inputs(self, tick=0):
        """One input poll: debounce plug, stop and fault inputs, drive the LED."""
        for n in range(1, self.connectors + 1):
            if self._plug[n].sample():
                yes = self._plug[n].active
                self.log("board: connector %d %s" % (n, "plugged" if yes else "unplugged"))
                if self.app:
                    self.app.plugged(n, yes)
            st = self._stop[n]
            if st is not None and st.sample() and st.active:
                self.log("board: stop button on connector %d" % n)
                if self.app:
                    self.app.stop_pressed(n, "Local")
            f = self._fault[n]
            if f is not None and f.sample():
                self.log("board: fault input of connector %d %s"
                         % (n, "active" if f.active else "cleared"))
                if self.app:
                    if f.active:
                        self.app.fault(n, self.fault_code)
                    else:
                        self.app.clear_fault(n)
        if self._led is not None:
            m = self._led_mode
            lit = m == LED_ON or (m == LED_SLOW and tick % 20 < 10) or (
                m == LED_FAST and tick % 4 < 2)
            if lit != self._led_lit:
                self._led_lit = lit
                a = self.pins.LED_ACTIVE
                self._led.value(a if lit else 1 - a)

    def read_meters(self, now=None):
        """One meter poll: update totals and the power estimate of every connector."""
        if now is None:
            now = ticks_ms()
        self.seconds()    # keeps the running total far from a ticks_ms wrap
        for n in range(1, self.connectors + 1):
            total = self._sync(n)
            if total != self._seen[n]:
                self._seen[n] = total
                self._last_t[n] = now
                if not self._marked[n]:
                    # First pulses after idle: open a window, no rate known yet.
                    self._marked[n] = True
                    self._mark_t[n] = now
                    self._mark_c[n] = total
                else:
                    span = ticks_diff(now, self._mark_t[n])
                    if span >= _POWER_WINDOW_MS:
                        self._power[n] = (total - self._mark_c[n]) * self._mj // span
                        self._mark_t[n] = now
                        self._mark_c[n] = total
            elif self._marked[n]:
                idle = ticks_diff(now, self._last_t[n])
                if idle >= _POWER_IDLE_MS:
                    self._power[n] = 0
                    self._marked[n] = False
                elif idle > 0:
                    # No pulse for `idle` ms: the power is below one pulse per idle.
                    cap = self._mj // idle
                    if cap < self._power[n]:
                        self._power[n] = cap

    # -- tasks ----------------------------------------------------------------------------
    async def _inputs(self):
        tick = 0
        while True:
            await asyncio.sleep_ms(_INPUT_MS)
            tick = tick + 1 if tick < 999 else 0
            self.scan_inputs(tick)
            self.health.beat("inputs")

    async def _meter(self):
        while True:
            await asyncio.sleep_ms(_METER_MS)
            self.read_meters()
            self.health.beat("meter")

    def _arm_watchdog(self):
        self._wdt = machine.WDT(timeout=self.wdt_ms)
        asyncio.create_task(self._watchdog())

    async def _maintenance(self, ssid, password):
        # Maintenance turned the watchdog off, so nothing would ever reset this charger
        # and use up the flag's boots: if the firmware is still running after
        # maintenance_ms (a deploy or a REPL stops it within seconds), end it here.
        await asyncio.sleep_ms(self.maintenance_ms)
        store.remove(MAINTENANCE)
        self.maintenance = False
        self.log("board: maintenance mode over after %d s of running: %s removed"
                 % (self.maintenance_ms // 1000, MAINTENANCE))
        if self.wdt_ms:
            self._arm_watchdog()
            self.log("board: watchdog on, %d ms" % self.wdt_ms)
        if ssid:
            # boot.py skipped Wi-Fi; the _wifi task keeps the link up from here.
            try:
                import network
                wlan = network.WLAN(network.STA_IF)
                wlan.active(True)
                wlan.connect(ssid, password)
                self.log("board: Wi-Fi %s, connecting" % ssid)
            except OSError as e:
                self.log("board: Wi-Fi start failed: %s" % e)

    async def _watchdog(self):
        # Fed only while every watched task (the board's inputs and meter, the charge
        # point's ticker) has checked in: a task that died or hangs stops the feeding,
        # and the chip resets.  A stalled loop stops it too.
        period = self.wdt_ms // 4
        said = None
        while True:
            late = self.health.late()
            if late is None:
                self._wdt.feed()
            elif late != said:
                self.log("board: task %s has not checked in: watchdog not fed" % late)
            said = late
            await asyncio.sleep_ms(period)

    def _wifi_credentials(self):
        try:
            with open(self.state + "/wifi.json") as f:
                c = json.load(f)
            return c.get("ssid"), c.get("password", "")
        except (OSError, ValueError):
            return None, None

    async def _wifi(self, ssid, password):
        # boot.py made the first, bounded attempt; this keeps the link up afterwards
        # without blocking the loop (WLAN.connect returns at once on ESP32).
        import network
        wlan = network.WLAN(network.STA_IF)
        down = 0
        while True:
            await asyncio.sleep_ms(_WIFI_MS)
            if self.maintenance:
                continue                 # no Wi-Fi in maintenance mode
            if wlan.isconnected():
                if down:
                    self.log("board: Wi-Fi up again")
                down = 0
                continue
            down = down + 1 if down < 1000 else _WIFI_RETRY
            if down == 1:
                self.log("board: Wi-Fi down")
            if down % _WIFI_RETRY == 0:
                try:
                    wlan.disconnect()
                    wlan.connect(ssid, password)
                except OSError as e:
                    self.log("board: Wi-Fi reconnect failed: %s" % e)

    def start(self, app):
        """Start the board's tasks; `app` gets plugged/swiped/stop_pressed/fault/
        clear_fault events."""
        self.app = app
        # The charge point's task register (its ticker checks in there too); a bare
        # application (tests) gets one of its own.
        cp = getattr(app, "cp", None)
        self.health = getattr(cp, "health", None) or Health()
        self.health.watch("inputs", _INPUT_MS * 20)
        self.health.watch("meter", _METER_MS * 8)
        asyncio.create_task(self._inputs())
        asyncio.create_task(self._meter())
        for r in self.readers:
            asyncio.create_task(r.run(self))
        ssid, password = self._wifi_credentials()
        left = _maintenance_boots()
        self.maintenance = left is not None
        if ssid:
            asyncio.create_task(self._wifi(ssid, password))
        if self.maintenance:
            self.log("board: MAINTENANCE MODE (%s): watchdog off, no Wi-Fi; it ends %s, "
                     "or in %d min if the firmware keeps running"
                     % (MAINTENANCE, "after %d more boot(s)" % left if left > 0
                        else "at the next boot", self.maintenance_ms // 60000))
            asyncio.create_task(self._maintenance(ssid, password))
        elif not self.wdt_ms:
            self.log("board: watchdog off")
        else:
            self._arm_watchdog()
        self.log("board: %s, %d connector(s), S0 via %s, %d imp/kWh"
                 % (self.name, self.connectors, self.counter_kind, self.imp_per_kwh))

    def quit(self):
        """End wait_quit (tests); on the charger nothing calls it."""
        self._quit.set()

    async def wait_quit(self):
        """Never returns on the charger: it runs until power-off or a reset."""
        await self._quit.wait()


def from_args(opts, log=print):
    """Build the board from main.py's options (on the charger usually just `state`)."""
    return Board(connectors=int(opts["connectors"]) if "connectors" in opts else None,
                 imp_per_kwh=int(opts.get("imp", 0)) or None,
                 counter=opts.get("counter", "auto"),
                 wdt_ms=int(opts["wdt"]) if "wdt" in opts else None,
                 state=opts.get("state", STATE), log=log)
