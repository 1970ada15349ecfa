# boards/esp32_s0 on the unix port, against the fake machine/esp32/network modules in
# tests/stubs: pulse counting, counter wrap, debounce, relay, RFID, watchdog, boot Wi-Fi.
#
# The board module is also called `board`, like the simulated board on MICROPYPATH, so it
# is imported with its directory first on sys.path and then taken out of sys.modules
# (with `pins` and `boot`); the stubs stay registered for this process, which runs only
# this test module.
import sys
import asyncio
import boardload
import micropython
from time import ticks_ms, ticks_add

_M = boardload.load("boards/esp32_s0", ("board", "pins", "boot"))
esp, boot = _M["board"], _M["boot"]
machine, esp32, network = _M["machine"], _M["esp32"], _M["network"]
Pin = machine.Pin
_PCNT = esp32.PCNT          # tests hide esp32.PCNT to emulate chips without one


class _Map:
    """A pin map like pins.py: one connector, no RFID, LED on 2."""

    def __init__(self, **over):
        self.VENDOR = "mpocpp"
        self.MODEL = "esp32-s0"
        self.S0 = (25,)
        self.S0_PULL_UP = True
        self.IMP_PER_KWH = 1000
        self.S0_FILTER_NS = 12000
        self.RELAY = (26,)
        self.RELAY_ACTIVE = 1
        self.PLUG = (27,)
        self.PLUG_ACTIVE = 0
        self.STOP = (32,)
        self.STOP_ACTIVE = 0
        self.RFID_UART = ()
        self.LED = 2
        self.LED_ACTIVE = 1
        self.WDT_MS = 0
        for k in over:
            setattr(self, k, over[k])


def _board(counter="auto", log=None, **over):
    machine.reset_stubs()
    _PCNT.units.clear()
    return esp.Board(pins=_Map(**over), counter=counter, log=log or (lambda s: None))


def _without_machine_counter(fn):
    # Emulates firmware older than 1.26 (or a port without machine.Counter).
    saved = machine.Counter
    machine.Counter = None
    try:
        return fn()
    finally:
        machine.Counter = saved


# -- pulse counting -----------------------------------------------------------------------

def test_board_module_is_the_esp32_one():
    assert esp.Board.name == "esp32_s0"
    assert esp.STATE == "/state"
    assert "board" not in sys.modules or sys.modules["board"] is not esp


def test_machine_counter_pulses_to_energy_wh():
    b = _board()
    assert b.counter_kind == "machine.Counter"
    c = machine.Counter.units[0]
    assert c.edge == machine.Counter.FALLING and 0 < c.filter_ns <= 12800
    assert c.src is Pin.pins[25] and Pin.pins[25].pull == Pin.PULL_UP
    assert b.energy_wh(1) == 0
    c.add(1499)
    assert b.energy_wh(1) == 1499
    c.add(1)
    assert b.energy_wh(1) == 1500 and b.pulses(1) == 1500
    assert b.energy_wh(1) == 1500        # reading twice does not count twice


def test_energy_with_other_meter_constants():
    b = _board(IMP_PER_KWH=800)
    machine.Counter.units[0].add(1000)
    assert b.energy_wh(1) == 1250
    b = _board(IMP_PER_KWH=10000)
    machine.Counter.units[0].add(9999)
    assert b.energy_wh(1) == 999         # floor: the register never runs ahead
    machine.Counter.units[0].add(1)
    assert b.energy_wh(1) == 1000


def test_pcnt_used_without_machine_counter_and_wrap_handled():
    b = _without_machine_counter(lambda: _board())
    assert b.counter_kind == "esp32.PCNT"
    u = esp32.PCNT.units[0]
    assert u.started
    assert u.conf["falling"] == esp32.PCNT.INCREMENT and u.conf["rising"] == esp32.PCNT.IGNORE
    top = u.conf["max"]
    assert 0 < u.conf["filter"] <= 1023
    u.add(top - 10)
    assert b.energy_wh(1) == top - 10
    u.add(25)                            # the unit passes max and restarts at 0
    assert u.value() == 15
    assert b.energy_wh(1) == top + 15
    for _ in range(5):                   # several wraps, each seen by a read
        u.add(top - 1)
        b.read_meters()
    assert b.pulses(1) == top + 15 + 5 * (top - 1)


def test_irq_fallback_counts_wraps_and_does_not_allocate():
    b = _board(counter="irq")
    assert b.counter_kind == "Pin.irq"
    s0 = Pin.pins[25]
    assert s0.trigger == Pin.IRQ_FALLING and s0.hard is False   # ESP32 refuses hard=
    s0.pulse(7)
    assert b.pulses(1) == 7
    src = b._src[1]
    handler = s0.handler
    # The handler must not allocate, including at its wrap point.
    src.count = src.modulus - 3
    b._raw[1] = src.count
    micropython.heap_lock()
    try:
        for _ in range(5):
            handler(s0)
    finally:
        micropython.heap_unlock()
    assert src.count == 2
    assert b.pulses(1) == 12


def test_irq_fallback_prefers_hard_irq_where_allowed():
    machine.reset_stubs()
    Pin.HARD_IRQ = True
    b = esp.Board(pins=_Map(), counter="irq", log=lambda s: None)
    assert Pin.pins[25].hard is True
    Pin.pins[25].pulse(3)
    assert b.energy_wh(1) == 3


def test_auto_falls_back_to_irq_without_pcnt():
    saved = esp32.PCNT
    esp32.PCNT = None
    try:
        b = _without_machine_counter(lambda: _board())
    finally:
        esp32.PCNT = saved
    assert b.counter_kind == "Pin.irq"


def test_power_estimated_from_pulse_rate():
    b = _board()
    c = machine.Counter.units[0]
    b.relay(1, True)
    t0 = ticks_ms()
    # 1 pulse per second at 1000 imp/kWh = 1 Wh/s = 3600 W.
    for i in range(7):
        c.add(1)
        b.read_meters(ticks_add(t0, i * 1000))
    assert b.power_w(1) == 3600, b.power_w(1)
    # No pulse for 10 s: the power must be below one pulse per 10 s (360 W).
    b.read_meters(ticks_add(t0, 6000 + 10000))
    assert b.power_w(1) == 360
    # Relay open: nothing flows, whatever the estimate.
    b.relay(1, False)
    assert b.power_w(1) == 0
    b.relay(1, True)
    b.read_meters(ticks_add(t0, 6000 + 300000))
    assert b.power_w(1) == 0


# -- inputs and outputs -------------------------------------------------------------------

def test_plug_debounce():
    b = _board()
    app = boardload.App()
    b.app = app
    plug = Pin.pins[27]
    assert plug.pull == Pin.PULL_UP and not b.is_plugged(1)
    plug.drive(0)
    b.scan_inputs()
    b.scan_inputs()
    assert app.events == [] and not b.is_plugged(1)
    plug.drive(1)                        # a bounce resets the count
    b.scan_inputs()
    plug.drive(0)
    b.scan_inputs()
    b.scan_inputs()
    assert app.events == []
    b.scan_inputs()
    assert app.events == [("plugged", 1, True)] and b.is_plugged(1)
    for _ in range(5):
        b.scan_inputs()
    assert len(app.events) == 1          # a steady level is reported once
    plug.drive(1)
    for _ in range(3):
        b.scan_inputs()
    assert app.events[-1] == ("plugged", 1, False) and not b.is_plugged(1)


def test_plug_active_high_and_plugged_at_boot():
    b = _board(PLUG_ACTIVE=1)
    app = boardload.App()
    b.app = app
    plug = Pin.pins[27]
    assert plug.pull == Pin.PULL_DOWN
    plug.drive(1)                        # a car already plugged at power-on is reported
    for _ in range(3):
        b.scan_inputs()
    assert app.events == [("plugged", 1, True)]


def test_stop_button_reports_presses_only():
    b = _board()
    app = boardload.App()
    b.app = app
    btn = Pin.pins[32]
    btn.drive(0)
    for _ in range(4):
        b.scan_inputs()
    btn.drive(1)
    for _ in range(4):
        b.scan_inputs()
    assert app.events == [("stop", 1, "Local")]


def test_no_stop_button():
    b = _board(STOP=(None,))
    b.app = boardload.App()
    b.scan_inputs()
    assert 32 not in Pin.pins


def test_relay_output():
    logs = []
    b = _board(log=logs.append)
    r = Pin.pins[26]
    assert r.mode == Pin.OUT and r.value() == 0      # contactor open from construction
    b.relay(1, True)
    assert r.value() == 1 and b.relay_on[1]
    b.relay(1, True)
    assert len([s for s in logs if "relay" in s]) == 1
    b.relay(1, False)
    assert r.value() == 0 and not b.relay_on[1]
    b = _board(RELAY_ACTIVE=0)                       # active-low driver
    r = Pin.pins[26]
    assert r.value() == 1
    b.relay(1, True)
    assert r.value() == 0


def test_led_modes():
    b = _board()
    led = Pin.pins[2]
    b.led(esp.LED_ON)
    b.scan_inputs(15)
    assert led.value() == 1
    b.led(esp.LED_OFF)
    b.scan_inputs(3)
    assert led.value() == 0
    b.led(esp.LED_SLOW)
    seen = []
    for t in range(20):
        b.scan_inputs(t)
        seen.append(led.value())
    assert seen == [1] * 10 + [0] * 10


def test_two_connectors():
    b = _board(S0=(25, 14), RELAY=(26, 13), PLUG=(27, 4), STOP=(32, None))
    assert b.connectors == 2
    machine.Counter.units[1].add(42)
    assert b.energy_wh(2) == 42 and b.energy_wh(1) == 0
    b.relay(2, True)
    assert Pin.pins[13].value() == 1 and Pin.pins[26].value() == 0


def test_fault_input_reports_fault_and_clear():
    b = _board(S0=(25, 14), RELAY=(26, 13), PLUG=(27, 4), STOP=(32, None),
               FAULT=(None, 33), FAULT_ACTIVE=0, FAULT_CODE="GroundFailure")
    app = boardload.App()
    b.app = app
    f = Pin.pins[33]
    assert f.pull == Pin.PULL_UP
    f.drive(0)
    b.scan_inputs()
    b.scan_inputs()
    assert app.events == []              # debounced like the other inputs
    b.scan_inputs()
    assert app.events == [("fault", 2, "GroundFailure")]
    for _ in range(4):
        b.scan_inputs()
    f.drive(1)
    for _ in range(3):
        b.scan_inputs()
    assert app.events == [("fault", 2, "GroundFailure"), ("clear", 2)]


def test_fault_input_optional_and_code_checked():
    b = _board()                         # a pin map without FAULT: no fault input
    b.app = boardload.App()
    b.scan_inputs()
    assert b._fault == [None, None]
    assert _board(FAULT=(33,)).fault_code == "OtherError"
    try:
        _board(FAULT=(33,), FAULT_CODE="NoError")
        assert False
    except ValueError:
        pass


# -- identity, clock, construction --------------------------------------------------------

def test_identity():
    b = _board()
    i = b.identity()
    assert i["serial"] == "240AC4123456"
    assert i["vendor"] == "mpocpp" and i["model"] == "esp32-s0"
    assert i["meter_type"] == "S0 1000 imp/kWh"
    assert len(i["vendor"]) <= 20 and len(i["model"]) <= 20 and len(i["serial"]) <= 25


def test_seconds_running_total():
    b = _board()
    assert b.seconds() == 0
    b._t_last = ticks_add(ticks_ms(), -600)
    assert b.seconds() == 0              # 600 ms: the remainder is kept...
    b._t_last = ticks_add(ticks_ms(), -600)
    assert b.seconds() == 1              # ...and adds up
    b._t_last = ticks_add(ticks_ms(), -3000)
    assert b.seconds() == 4


def test_from_args():
    machine.reset_stubs()
    b = esp.from_args({"state": "/tmp/st", "imp": "500", "wdt": "0", "counter": "pcnt"},
                      log=lambda s: None)
    assert b.state == "/tmp/st" and b.imp_per_kwh == 500 and b.wdt_ms == 0
    assert b.counter_kind == "esp32.PCNT" and b.connectors == len(b.pins.S0)
    machine.reset_stubs()
    b = esp.from_args({}, log=lambda s: None)
    assert b.state == "/state" and b.imp_per_kwh == b.pins.IMP_PER_KWH
    assert b.wdt_ms == b.pins.WDT_MS and b.wdt_ms >= 1000
    assert b.counter_kind == "machine.Counter"
    assert len(b.readers) == len(b.pins.RFID_UART)
    try:
        esp.from_args({"connectors": "3"}, log=lambda s: None)
        assert False, "more connectors than the pin map has"
    except ValueError:
        pass


# -- tasks --------------------------------------------------------------------------------

def test_rfid_uart_reader_parsing():
    r = esp.UartReader(1, None)
    got = []

    def emit(n, tag):
        got.append((n, tag))

    data = b"04A1B2C3\r\n\x02DEADBEEF\x03" + b"X" * 30 + b"\nBAD TAG\n\n0011"
    r.feed(data, len(data), emit)
    assert got == [(1, "04A1B2C3"), (1, "DEADBEEF")]
    r.feed(b"22\n", 3, emit)            # a tag split across reads
    assert got[-1] == (1, "001122")


async def test_started_board_reports_events_and_feeds_watchdog():
    machine.reset_stubs()
    app = boardload.App()
    b = esp.Board(pins=_Map(WDT_MS=1000, RFID_UART=((1, 2, 16, 17, 9600),)),
                  log=lambda s: None)
    b.start(app)
    wdt = machine.WDT.instances[0]
    assert wdt.timeout == 1000
    uart = machine.UART.units[2]
    assert uart.baudrate == 9600
    Pin.pins[27].drive(0)
    uart.inject(b"04A1B2C3\r\n")
    await asyncio.sleep_ms(300)
    uart.inject(b"04A1B2C3\r\n")         # card still held: not reported again
    machine.Counter.units[0].add(12)
    await asyncio.sleep_ms(400)
    assert ("plugged", 1, True) in app.events
    assert [e for e in app.events if e[0] == "swiped"] == [("swiped", 1, "04A1B2C3")]
    assert b._seen[1] == 12              # the meter task read the counter
    assert wdt.feeds >= 2
    b.quit()
    await b.wait_quit()


async def test_watchdog_off_when_disabled():
    machine.reset_stubs()
    logs = []
    b = esp.Board(pins=_Map(WDT_MS=0), log=logs.append)
    b.start(boardload.App())
    await asyncio.sleep_ms(10)
    assert machine.WDT.instances == []
    assert "board: watchdog off" in logs


# -- boot.py ------------------------------------------------------------------------------

def _wlan(script):
    network.WLAN.script = script
    w = network.WLAN(network.STA_IF)
    w.reset()
    return w


def test_boot_wifi_connects():
    w = _wlan((3, network.STAT_GOT_IP))
    sleeps = []
    assert boot.wifi_connect(w, "home", "secret", sleep_ms=sleeps.append, log=lambda s: None)
    assert w.connects == [("home", "secret")] and w.active()
    assert w.conf.get("reconnects") is not None
    assert len(sleeps) == 4


def test_boot_wifi_gives_up_after_bounded_attempts():
    w = _wlan((None, network.STAT_NO_AP_FOUND))
    sleeps = []
    ok = boot.wifi_connect(w, "gone", "x", attempts=3, sleep_ms=sleeps.append,
                           log=lambda s: None)
    assert not ok
    assert len(w.connects) == 3 and w.disconnects == 3
    # each attempt stopped at the failure status instead of waiting out its time
    assert sum(sleeps) < 3 * 15000


def test_boot_wifi_times_out_when_stuck_connecting():
    w = _wlan((10 ** 6, network.STAT_CONNECTING))
    sleeps = []
    assert not boot.wifi_connect(w, "slow", "x", attempts=2, wait_ms=1000,
                                 sleep_ms=sleeps.append, log=lambda s: None)
    assert len(w.connects) == 2
    assert len(sleeps) == 2 * (1000 // 250) + 1


# -- maintenance mode ---------------------------------------------------------------------
# /maintenance (tools/deploy.py writes it) turns Wi-Fi and the watchdog off; it must not
# outlive the deploy that wrote it: boot.py counts it down by boots, the board ends it
# after some time of running.

_MDIR = "/tmp/mpocpp-test-esp32-maint"
_MFLAG = _MDIR + "/maintenance"


def _flag(text):
    import os
    try:
        os.mkdir(_MDIR)
    except OSError:
        pass
    if text is None:
        try:
            os.remove(_MFLAG)
        except OSError:
            pass
        return
    with open(_MFLAG, "w") as f:
        f.write(text)


def _flag_text():
    try:
        with open(_MFLAG) as f:
            return f.read()
    except OSError:
        return None


def test_boot_leftover_empty_maintenance_flag_expires():
    # An older deploy interrupted between `fs touch :/maintenance` and its removal: the
    # empty flag gives one maintenance boot, then boots are normal again (Wi-Fi joined).
    _flag("")
    with open(_MDIR + "/wifi.json", "w") as f:
        f.write('{"ssid": "depot", "password": "pw"}')
    w = _wlan((0, network.STAT_GOT_IP))
    saved = boot.MAINTENANCE, boot.WIFI_FILE
    boot.MAINTENANCE, boot.WIFI_FILE = _MFLAG, _MDIR + "/wifi.json"
    try:
        boot._main()
        assert w.connects == []              # the maintenance boot: no Wi-Fi
        boot._main()
        assert w.connects == [("depot", "pw")], "the flag still applies"
        assert _flag_text() is None          # used up and removed
        boot._main()
        assert len(w.connects) == 1          # still joined: no second connect
    finally:
        boot.MAINTENANCE, boot.WIFI_FILE = saved
        _flag(None)


def test_boot_maintenance_counts_boots_down_loudly():
    logs = []
    _flag("3")
    try:
        assert boot.maintenance(_MFLAG, logs.append) == 2
        assert _flag_text() == "2"
        assert any("MAINTENANCE MODE" in s and "no Wi-Fi, no watchdog" in s for s in logs)
        assert any("2 more boot(s)" in s for s in logs)
        assert boot.maintenance(_MFLAG, logs.append) == 1
        del logs[:]
        assert boot.maintenance(_MFLAG, logs.append) == 0     # the last one, said so
        assert _flag_text() == "0" and any("last maintenance boot" in s for s in logs)
        del logs[:]
        assert boot.maintenance(_MFLAG, logs.append) is None  # a normal boot
        assert _flag_text() is None and any("removed" in s for s in logs)
        del logs[:]
        assert boot.maintenance(_MFLAG, logs.append) is None and logs == []
        _flag("1000000")                     # capped: still expires in a few boots
        n = boot.maintenance(_MFLAG, logs.append)
        assert 0 < n < 20
        _flag("garbage")                     # e.g. torn by a power cut: this boot only
        assert boot.maintenance(_MFLAG, logs.append) == 0
        assert boot.maintenance(_MFLAG, logs.append) is None
        _flag("-4")
        assert boot.maintenance(_MFLAG, logs.append) is None and _flag_text() is None
    finally:
        _flag(None)


def _maint_board(logs, flag, **over):
    machine.reset_stubs()
    _flag(flag)
    with open(_MDIR + "/wifi.json", "w") as f:
        f.write('{"ssid": "depot", "password": "pw"}')
    b = esp.Board(pins=_Map(**over), state=_MDIR, log=logs.append)
    b.maintenance_ms = 200
    return b


async def test_board_maintenance_boot_ends_by_itself():
    # A maintenance boot has no watchdog, so nothing would ever reboot it to use up the
    # flag: left running, the board ends maintenance itself (flag removed, watchdog on,
    # Wi-Fi started).
    logs = []
    saved = esp.MAINTENANCE
    esp.MAINTENANCE = _MFLAG
    w = _wlan((0, network.STAT_GOT_IP))
    try:
        b = _maint_board(logs, "2", WDT_MS=1000)
        b.start(boardload.App())
        await asyncio.sleep_ms(50)
        assert machine.WDT.instances == [] and w.connects == []
        await asyncio.sleep_ms(400)
        assert _flag_text() is None, "maintenance did not end"
        assert any("MAINTENANCE MODE" in s and "2 more boot(s)" in s for s in logs), logs
        assert not b.maintenance
        assert len(machine.WDT.instances) == 1 and machine.WDT.instances[0].timeout == 1000
        assert machine.WDT.instances[0].feeds >= 1
        assert w.active() and w.connects == [("depot", "pw")]
        assert any("maintenance mode over" in s for s in logs), logs
        b.quit()
        await b.wait_quit()
    finally:
        esp.MAINTENANCE = saved
        _flag(None)


async def test_board_normal_boot_arms_watchdog_at_once():
    logs = []
    saved = esp.MAINTENANCE
    esp.MAINTENANCE = _MFLAG
    try:
        b = _maint_board(logs, None, WDT_MS=1000)
        b.start(boardload.App())
        await asyncio.sleep_ms(10)
        assert not b.maintenance and len(machine.WDT.instances) == 1
        assert not any("MAINTENANCE" in s for s in logs)
        b = _maint_board(logs, "0", WDT_MS=1000)    # boot.py's last maintenance boot
        b.start(boardload.App())
        await asyncio.sleep_ms(10)
        assert b.maintenance and machine.WDT.instances == []
        assert any("at the next boot" in s for s in logs), logs
    finally:
        esp.MAINTENANCE = saved
        _flag(None)


async def test_watchdog_not_fed_once_a_task_stops_checking_in():
    # Issue "safe on the chip", part 2: the input task dies (a bug in a fault input); the
    # watchdog is no longer fed, so the chip resets, instead of a closed relay with
    # nothing watching the inputs.
    machine.reset_stubs()
    logs = []
    b = esp.Board(pins=_Map(WDT_MS=400), log=logs.append)
    b.start(boardload.App())
    wdt = machine.WDT.instances[0]
    await asyncio.sleep_ms(500)
    fed = wdt.feeds
    assert fed >= 3
    real = b.scan_inputs

    def broken(tick=0):
        raise OSError("input read failed")
    b.scan_inputs = broken
    await asyncio.sleep_ms(1500)            # inputs must check in every 1 s
    stalled = wdt.feeds
    await asyncio.sleep_ms(600)
    assert wdt.feeds == stalled, (fed, stalled, wdt.feeds)
    assert any("task inputs has not checked in" in s for s in logs), logs
    b.scan_inputs = real
    b.quit()
    await b.wait_quit()


async def test_a_dead_board_task_opens_the_relay_and_stops_the_watchdog():
    # Issue "safe on the chip", proof: the whole firmware on the esp32_s0 board (fakes):
    # a transaction charges, then the input task dies.  run() ends with its exception
    # after the relay opened (main() then records the crash and resets), and the
    # watchdog is no longer fed.
    from fakews import FakeWS
    from fsutil import rmtree
    from ocpp16 import config, store
    from ocpp16.chargepoint import ChargePoint, QUEUED
    from app import App
    machine.reset_stubs()
    d = "/tmp/mpocpp-test-esp32-dead"
    rmtree(d)
    store.makedirs(d)
    b = esp.Board(pins=_Map(WDT_MS=400), state=d, log=lambda s: None)
    cfg = config.Config(d + "/config.json", connectors=1, log=lambda s: None)
    cp = ChargePoint(b, cfg, FakeWS(4096), d, log=lambda s: None)
    cp.rpc.trace = False
    Pin.pins[27].drive(0)                       # cable in
    run = asyncio.create_task(App(cp, b, log=lambda s: None).run())
    await asyncio.sleep_ms(400)
    assert cp.start_transaction(1, "T") == QUEUED
    assert b.relay_on[1] and Pin.pins[26].value() == 1
    wdt = machine.WDT.instances[0]
    fed = wdt.feeds
    assert fed >= 2

    def broken(tick=0):
        raise OSError("input read failed")
    b.scan_inputs = broken
    try:
        await asyncio.wait_for_ms(run, 3000)
        assert False, "the firmware ran on with a dead input task"
    except OSError as e:
        assert "input read failed" in str(e)
    assert not b.relay_on[1] and Pin.pins[26].value() == 0
    await asyncio.sleep_ms(1200)                # the inputs' period (1 s) runs out
    stalled = wdt.feeds
    await asyncio.sleep_ms(600)
    assert wdt.feeds == stalled
    b.quit()


def test_wall_clock_is_the_rtc():
    # Issue "safe on the chip", part 1: what mbedTLS checks certificates against is the
    # RTC; it starts at 2000-01-01 and ocpp16.wallclock sets it through the board.
    from ocpp16.wallclock import VALID_FROM
    b = _board()
    assert b.wall() == 946684800 and b.wall() < VALID_FROM
    b.set_wall(1764633600 + 3723)                  # 2025-12-02 01:02:03 UTC, a Tuesday
    assert machine.RTC.sets[-1] == (2025, 12, 2, 1, 1, 2, 3, 0)
    assert b.wall() == 1764633600 + 3723
