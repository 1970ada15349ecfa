# boards/esp32_cp on the unix port, against the fakes in tests/stubs: machine.PWM and
# machine.ADC, with a machine.Car on the pilot lines (the EVSE's +/-12 V through 1 kOhm,
# the EV's diode and resistors, the cable's PP resistor; each CP sample at a random
# point of the PWM period, with noise and slow edges).  The pilot module alone (duty
# formula, state detection, diode, PP), then the board (contactor rule and its timing,
# plug and fault events, the issue-13 board interface).
#
# Loaded with tests/device/boardload.py: the board module is also called `board`,
# so its directory goes first on sys.path for the import only.
import random
import boardload
import asyncio
from time import ticks_ms, ticks_diff

# pins and esp32_s0 too: the board imports them (its pins, the S0 board it builds on).
_M = boardload.load("boards/esp32_cp", ("board", "pilot", "pins", "esp32_s0"))
cpb, pilot, PINS, s0, machine = _M["board"], _M["pilot"], _M["pins"], _M["esp32_s0"], \
    _M["machine"]
from ocpp16 import states as C   # noqa: E402

Pin = machine.Pin
PWM = machine.PWM
ADC = machine.ADC
Car = machine.Car
FULL = 65535
UV_M12 = PINS.CP_UV_M12
UV_P12 = PINS.CP_UV_P12
A, B, CC, D, E, F = C.EV_A, C.EV_B, C.EV_C, C.EV_D, C.EV_E, C.EV_F


def _pct(d):
    return d * 100.0 / FULL


def _car(noise_mv=300, edge_us=10, pwm=4, sense=36, pp=39):
    return Car(pwm, sense, pp, uv_m12=UV_M12, uv_p12=UV_P12, noise_mv=noise_mv,
               edge_us=edge_us)


def _pilot(pp=None, max_a10=320, samples=100):
    return pilot.Pilot(4, 36, pp, uv_m12=UV_M12, uv_p12=UV_P12, samples=samples,
                       max_a10=max_a10)


def _settle(p, n=6):
    for _ in range(n):
        p.poll()
    return p.state


# -- the duty cycle (IEC 61851-1) -----------------------------------------------------------

def test_duty_formula_at_the_edges():
    want = ((60, 10.0), (160, 26.667), (320, 53.333), (510, 85.0), (520, 84.8),
            (800, 96.0), (630, 89.2))
    for a10, pct in want:
        got = _pct(pilot.duty_u16(a10))
        assert abs(got - pct) < 0.005, (a10, got, pct)
    for a10 in (0, 1, 50, 55, 59, -10):          # 0, 5.x A: nothing offered, 100 %
        assert pilot.duty_u16(a10) == FULL, a10
    for a10 in (801, 1000, 3200):                # above 80 A: 80 A
        assert pilot.duty_u16(a10) == pilot.duty_u16(800)


def test_no_5_percent_duty_ever():
    # Every offer from 0 to 120 A gives 100 % or 10..96 %: never the 5 % of digital
    # communication (nor anything from 3 to 7 %, where an EV would look for it).
    for a10 in range(0, 1201):
        d = _pct(pilot.duty_u16(a10))
        assert d == 100.0 or 9.99 <= d <= 96.01, (a10, d)
    # The same through a pilot, its cable and the installation maximum, as written.
    machine.reset_stubs()
    car = _car()
    car.plug("B", pp_ohm=100)
    p = _pilot(pp=39, max_a10=800)
    _settle(p)
    for a10 in range(0, 1001, 7):
        p.offer(a10)
    assert len(PWM.history) > 80
    for d in PWM.history:
        assert d == FULL or 9.99 <= _pct(d) <= 96.01, _pct(d)


def test_offer_capped_by_cable_and_installation():
    machine.reset_stubs()
    car = _car()
    p = _pilot(pp=39, max_a10=320)
    car.plug("B", pp_ohm=680)                    # a 20 A cable
    _settle(p)
    assert p.max_a10() == 200
    assert p.offer(320) == 200 and p.offered == 200
    assert abs(_pct(PWM.pwms[4].duty_u16()) - 33.333) < 0.01
    assert p.offer(55) == 0 and PWM.pwms[4].duty_u16() == FULL
    machine.reset_stubs()
    p = _pilot(pp=None, max_a10=160)             # tethered: the installation maximum
    assert p.max_a10() == 160 and p.offer(320) == 160


def test_inverting_driver():
    machine.reset_stubs()
    p = pilot.Pilot(4, 36, None, uv_m12=UV_M12, uv_p12=UV_P12, invert=True)
    assert PWM.pwms[4].duty_u16() == 0            # GPIO low: +12 V through the driver
    p.offer(160)
    assert PWM.pwms[4].duty_u16() == FULL - pilot.duty_u16(160)
    p.offer(0)
    assert PWM.pwms[4].duty_u16() == 0


# -- the state from the CP line ----------------------------------------------------------

def test_states_A_to_F_with_noise():
    random.seed(13)
    for offer in (0, 60, 160, 800):              # 100 %, 10 %, 26.7 %, 96 %
        for st, want in (("A", A), ("B", B), ("C", CC), ("D", D), ("E", E), ("F", F),
                         ("B", B), ("A", A)):
            machine.reset_stubs()
            car = _car(noise_mv=400, edge_us=13)
            car.plug(st, pp_ohm=100)
            p = _pilot(max_a10=800)
            p.offer(offer)
            for i in range(40):                  # never a wrong state once settled
                p.poll()
                if i >= 2:
                    assert p.state == want, (offer, st, i, p.state, p.mv(p.high_uv))
            if offer and st in "BCD":
                assert p.diode is True           # the -12 V low phase was seen


def test_state_change_takes_two_bursts():
    machine.reset_stubs()
    car = _car()
    car.plug("B")
    p = _pilot()
    p.offer(160)
    _settle(p)
    assert p.state == B
    car.state = "C"
    assert p.poll() is False and p.state == B    # one burst is not believed...
    assert p.poll() is True and p.state == CC    # ...two in a row are
    assert pilot.CONFIRM == 2


def test_one_odd_burst_is_ignored():
    machine.reset_stubs()
    car = _car()
    car.plug("C")
    p = _pilot()
    p.offer(160)
    _settle(p)
    for _ in range(10):
        car.state = "B"                          # a spike: one burst at another level
        p.poll()
        car.state = "C"
        p.poll()
        assert p.state == CC


def test_hysteresis_between_levels():
    machine.reset_stubs()
    level = [9000]
    p = _pilot()
    ADC.sources[36] = lambda: p.uv(level[0])
    _settle(p)
    assert p.state == B
    for mv in (7300, 7700, 7200, 7400):          # around the 7.5 V threshold: stays B
        level[0] = mv
        _settle(p, 4)
        assert p.state == B, mv
    level[0] = 7000                              # past it by more than 0.4 V: C
    _settle(p, 2)
    assert p.state == CC
    for mv in (7700, 7850, 7600):                # back up, inside the band: stays C
        level[0] = mv
        _settle(p, 4)
        assert p.state == CC, mv
    level[0] = 8000
    _settle(p, 2)
    assert p.state == B


def test_diode_missing_gives_F_only_while_the_pwm_runs():
    random.seed(5)
    machine.reset_stubs()
    car = _car()
    car.plug("B")
    car.diode = False
    p = _pilot()
    _settle(p)
    assert p.state == B and p.diode is None      # at 100 % there is no low phase
    p.offer(160)
    for _ in range(3):                           # 3 bursts to believe "no diode"...
        p.poll()
    assert p.state == B
    p.poll()                                     # ...then F is confirmed like any state
    assert p.state == F and p.diode is False
    assert not p.may_close()
    for st in ("C", "D"):                        # the loaded low phase of C and D too
        machine.reset_stubs()
        car = _car()
        car.plug(st)
        car.diode = False
        p = _pilot()
        p.offer(320)
        assert _settle(p) == F, st
    car.diode = True                             # repaired: the level counts again
    assert _settle(p) == D


def test_diode_present_never_F_at_any_duty():
    # Slow edges put samples between the levels; with the diode present that must never
    # read as "no diode", even at 96 % where the low phase is 40 us of every 1000.
    random.seed(99)
    for a10 in (60, 320, 510, 520, 800):
        for st in ("B", "C", "D"):
            machine.reset_stubs()
            car = _car(noise_mv=400, edge_us=20)
            car.plug(st)
            p = _pilot(max_a10=800)
            p.offer(a10)
            for _ in range(400 if a10 == 800 else 40):
                p.poll()
                assert p.state != F, (a10, st)
            assert p.diode is True


def test_no_contactor_before_the_diode_was_seen():
    # The PWM runs but no sample ever reaches -12 V (a driver without its negative
    # rail): C is read, the diode is not known, the pilot does not allow closing.
    machine.reset_stubs()
    p = _pilot()
    ADC.sources[36] = lambda: p.uv(6000)
    p.offer(160)
    assert _settle(p) == CC and p.diode is None and not p.may_close()
    ADC.sources[36] = lambda: p.uv(6000 if random.random() < 0.5 else -12000)
    _settle(p, 1)
    assert p.diode is True and p.may_close()


def test_pp_ratings():
    rating = pilot.pp_rating
    for ohm, a10 in ((1500, 130), (680, 200), (220, 320), (100, 630), (20, 0),
                     (1200, 130), (2200, 130), (470, 200), (330, 320), (120, 630)):
        mv = 3300 * ohm // (ohm + 1000)
        assert rating(mv, 1000, 3300) == a10, (ohm, a10)
    assert rating(3300, 1000, 3300) == 0         # open: no cable
    assert rating(2450, 1000, 3300) == 0         # the ADC's top (ESP32, 12 dB) is open too
    machine.reset_stubs()
    car = _car()
    p = _pilot(pp=39, max_a10=800)
    for ohm, a10 in ((1500, 130), (680, 200), (220, 320), (100, 630), (None, 0)):
        car.pp_ohm = ohm
        _settle(p, 3)
        assert p.cable == a10 and p.max_a10() == a10, (ohm, p.cable)
    car.pp_ohm = 100
    _settle(p, 3)
    p.install_a10 = 160                          # the installation caps the cable
    assert p.max_a10() == 160


def test_cable_rating_lowers_a_running_offer():
    machine.reset_stubs()
    car = _car()
    car.plug("C", pp_ohm=220)
    p = _pilot(pp=39, max_a10=800)
    _settle(p)
    assert p.offer(320) == 320
    car.pp_ohm = 1500
    _settle(p, 2)
    assert p.offered == 130 and abs(_pct(PWM.pwms[4].duty_u16()) - 21.667) < 0.01


# -- the board ------------------------------------------------------------------------------

class _Map:
    """pins.py of esp32_cp, with test overrides (no RFID reader, no watchdog)."""

    def __init__(self, **over):
        for k in dir(PINS):
            if not k.startswith("_"):
                setattr(self, k, getattr(PINS, k))
        self.RFID_UART = ()
        self.WDT_MS = 0
        for k in over:
            setattr(self, k, over[k])


def _board(logs=None, **over):
    machine.reset_stubs()
    car = _car()
    b = cpb.Board(pins=_Map(**over), log=(logs.append if logs is not None else
                                          (lambda s: None)))
    app = boardload.App()
    b.app = app
    return b, car, app


def _poll(b, n=4):
    for _ in range(n):
        b.poll_pilots()


def _relay_pin():
    return Pin.pins[26].value()


def test_board_is_esp32_s0_with_a_pilot():
    b, car, app = _board()
    assert isinstance(b, s0.Board) and b.name == "esp32_cp"
    assert cpb.STATE == "/state" and b.connectors == 1
    assert PWM.pwms[4].freq() == 1000 and PWM.pwms[4].duty_u16() == FULL   # +12 V
    assert ADC.adcs[36].atten == ADC.ATTN_11DB
    assert _relay_pin() == 0 and not b.is_plugged(1)
    assert b.identity()["model"] == "esp32-cp"
    assert b.phases == 3 and b.ev_state(1) == A


def test_plug_events_from_the_pilot():
    b, car, app = _board()
    car.plug("B", pp_ohm=220)
    _poll(b)
    assert app.events == [("plugged", 1, True)] and b.is_plugged(1)
    assert b.max_a10(1) == 160                   # 32 A cable, 16 A installation
    car.state = "C"
    _poll(b)
    car.state = "A"
    _poll(b)
    assert app.events == [("plugged", 1, True), ("plugged", 1, False)]
    assert not b.is_plugged(1) and b.ev_state(1) == A
    b.scan_inputs()                              # esp32_s0's input poll adds nothing
    assert len(app.events) == 2


def test_contactor_needs_permission_state_C_and_current():
    b, car, app = _board()
    car.follow = True                            # the car charges when offered current
    car.plug("B", pp_ohm=220)
    _poll(b)
    b.relay(1, True)                             # permission, but nothing offered: B
    _poll(b)
    assert b.ev_state(1) == B and _relay_pin() == 0 and not b.relay_on[1]
    b.offer(1, 160)
    assert _relay_pin() == 0                     # the car is not in C yet
    _poll(b)
    assert b.ev_state(1) == CC and _relay_pin() == 1 and b.relay_on[1]
    b.relay(1, False)                            # permission withdrawn: open at once
    assert _relay_pin() == 0
    b.relay(1, True)
    assert _relay_pin() == 1
    b.offer(1, 50)                               # 5 A: nothing offered, open at once
    assert _relay_pin() == 0 and b.offered_a10(1) == 0
    assert PWM.pwms[4].duty_u16() == FULL
    _poll(b)
    assert b.ev_state(1) == B and _relay_pin() == 0   # the car follows: back to B
    b.offer(1, 160)
    _poll(b)
    assert _relay_pin() == 1
    b.offer(1, 0)
    assert _relay_pin() == 0


def test_contactor_in_D_and_not_without_the_diode():
    b, car, app = _board()
    car.plug("D", pp_ohm=220)
    b.relay(1, True)
    b.offer(1, 160)
    _poll(b)
    assert b.ev_state(1) == D and _relay_pin() == 1
    b, car, app = _board()
    car.plug("C", pp_ohm=220)
    car.diode = False
    b.relay(1, True)
    b.offer(1, 160)
    _poll(b, 8)
    assert b.ev_state(1) == F and _relay_pin() == 0
    assert ("fault", 1, "EVCommunicationError") in app.events


def test_car_stops_drawing_suspended_ev_and_contactor_opens():
    b, car, app = _board()
    car.plug("C", pp_ohm=220)
    b.relay(1, True)
    b.offer(1, 160)
    _poll(b)
    assert _relay_pin() == 1 and not b.ev_suspended(1)
    car.state = "B"                              # the car pauses itself
    b.poll_pilots()
    assert _relay_pin() == 1                     # one burst: not yet believed
    b.poll_pilots()
    assert _relay_pin() == 0 and b.ev_suspended(1)
    assert b.offered_a10(1) == 160               # still offered: the car may resume
    car.state = "C"
    _poll(b, 2)
    assert _relay_pin() == 1 and not b.ev_suspended(1)
    b.offer(1, 0)
    car.state = "B"
    _poll(b)
    assert not b.ev_suspended(1)                 # nothing offered: not the car's pause


def test_shorted_pilot_E_faults_opens_and_clears():
    logs = []
    b, car, app = _board(logs)
    car.plug("C", pp_ohm=220)
    b.relay(1, True)
    b.offer(1, 160)
    _poll(b)
    assert _relay_pin() == 1
    car.state = "E"
    _poll(b, 2)
    assert _relay_pin() == 0 and b.ev_state(1) == E
    assert app.events[-1] == ("fault", 1, "EVCommunicationError")
    assert any("pilot E" in s for s in logs)
    assert b.is_plugged(1)                       # a fault is not an unplug
    _poll(b, 10)
    assert app.events.count(("fault", 1, "EVCommunicationError")) == 1
    car.state = "C"
    _poll(b, 2)
    assert app.events[-1] == ("clear", 1) and _relay_pin() == 1


def test_offered_current_and_power():
    b, car, app = _board()
    car.plug("B", pp_ohm=220)
    _poll(b)
    b.offer(1, 320)
    assert b.offered_a10(1) == 160               # the installation's 16 A
    assert b.offered_w(1) == 16 * 230 * 3
    b, car, app = _board(MAX_A10=(320,))
    car.plug("B", pp_ohm=1500)
    _poll(b)
    b.offer(1, 320)
    assert b.offered_a10(1) == 130 and b.max_a10(1) == 130


def test_two_connectors():
    b, car, app = _board(S0=(25, 14), RELAY=(26, 13), STOP=(32, None), PLUG=(None, None),
                         CP_PWM=(4, 5), CP_SENSE=(36, 34), PP=(39, None), MAX_A10=(160, 320))
    car2 = Car(5, 34, None, uv_m12=UV_M12, uv_p12=UV_P12, noise_mv=300, edge_us=10)
    car2.plug("C")
    b.relay(2, True)
    b.offer(2, 320)
    _poll(b)
    assert b.ev_state(1) == A and b.ev_state(2) == CC
    assert b.max_a10(2) == 320 and b.max_a10(1) == 0   # a socket without a cable
    assert Pin.pins[13].value() == 1 and _relay_pin() == 0
    assert app.events == [("plugged", 2, True)]


async def test_car_leaves_C_contactor_opens_within_the_bound():
    """The running board: the pilot task sees the car leave C and opens the contactor
    within 100 ms (IEC 61851-1); the same for a shorted pilot."""
    random.seed(3)
    machine.reset_stubs()
    car = _car()
    b = cpb.Board(pins=_Map(), log=lambda s: None)
    app = boardload.App()
    car.plug("C", pp_ohm=220)
    b.start(app)
    b.relay(1, True)
    b.offer(1, 160)
    t0 = ticks_ms()
    while _relay_pin() == 0 and ticks_diff(ticks_ms(), t0) < 1000:
        await asyncio.sleep_ms(1)
    assert _relay_pin() == 1
    worst = 0
    for leave in ("B", "A", "E", "B"):
        car.state = "C"
        t0 = ticks_ms()
        while _relay_pin() == 0 and ticks_diff(ticks_ms(), t0) < 1000:
            await asyncio.sleep_ms(1)
        assert _relay_pin() == 1, leave
        await asyncio.sleep_ms(7)                # anywhere in the poll period
        car.state = leave
        t0 = ticks_ms()
        while _relay_pin() == 1 and ticks_diff(ticks_ms(), t0) < 1000:
            await asyncio.sleep_ms(1)
        took = ticks_diff(ticks_ms(), t0)
        assert _relay_pin() == 0 and took < 100, (leave, took)
        worst = max(worst, took)
    assert b.late_count == 0 and b.late_ms < 100
    assert b.health.late() is None               # the pilot task checks in
    print("pilot: contactor opened at worst %d ms after the car left C; longest poll "
          "gap %d ms" % (worst, b.late_ms))
    b.quit()
    await b.wait_quit()


def test_from_args():
    machine.reset_stubs()
    b = cpb.from_args({"state": "/tmp/st", "wdt": "0", "max": "32"}, log=lambda s: None)
    assert b.state == "/tmp/st" and b.pilots[1].install_a10 == 320
    machine.reset_stubs()
    b = cpb.from_args({}, log=lambda s: None)
    assert b.pilots[1].install_a10 == PINS.MAX_A10[0] and b.wdt_ms == PINS.WDT_MS


def test_burst_does_not_allocate():
    import micropython
    machine.reset_stubs()
    p = _pilot()
    ADC.sources[36] = ADC(Pin(99)).read_uv     # a constant source: no fake allocation
    ADC.uv[99] = p.uv(9000)
    burst = p.burst
    micropython.heap_lock()
    try:
        for _ in range(10):
            p._read()
        for _ in range(3):
            burst()
    finally:
        micropython.heap_unlock()
    assert p.high_uv == p.low_uv == p.uv(9000) and p.ok == p.bad == 0
