# The offered current (lib/ocpp16/offer.py) inside the charge point, without a link:
# min(composite limit, board maximum, local limits, LocalPowerLimit under the contact),
# the pause below 6 A (SuspendedEVSE, transaction open), the relay with and without a
# pilot, the charger-wide share, when it is recomputed, and the lazy import.
import sys
from fsutil import rmtree
from fakews import FakeWS
from ocpp16 import config, store
from ocpp16 import chargepoint as C
from ocpp16.clock import parse_iso
import test_api

_DIR = "/tmp/mpocpp-test-offer"
_T0 = parse_iso("2026-11-23T10:00:00Z")


class PilotBoard(test_api.FakeBoard):
    """A board with a control pilot, a cable rating and a dimming contact."""
    phases = 3

    def __init__(self):
        super().__init__()
        self.offers = [0, 0, 0]
        self.calls = []              # (n, a10) as board.offer() was called
        self.max = [320, 320, 320]
        self.dim = [False, False, False]

    def offer(self, n, a10):
        self.offers[n] = a10
        self.calls.append((n, a10))

    def max_a10(self, n):
        return self.max[n]

    def local_limited(self, n):
        return self.dim[n]


class FakeSC:
    """Stands for smartcharging.Part: limit(n, now) -> (a10, until) or None."""

    def __init__(self):
        self.lim = None
        self.until = None
        self.asked = 0
        self.started = []
        self.ended = []

    def limit(self, n, now):
        self.asked += 1
        if self.lim is None:
            return None
        return self.lim, self.until

    def tx_started(self, n):
        self.started.append(n)

    def tx_ended(self, n):
        self.ended.append(n)


def _cp(board, clock=True):
    rmtree(_DIR)
    store.makedirs(_DIR)
    cfg = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    cp = C.ChargePoint(board, cfg, FakeWS(4096), _DIR, log=lambda s: None)
    if clock:
        cp.clock.set(_T0)
    return cp


def _start(cp, n, tag="TAG"):
    cp.board.plug[n] = True
    cp.plugged(n, True)
    assert cp.start_transaction(n, tag) == C.QUEUED
    cp.tx.active[n]["auth"] = "Accepted"     # as the StartTransaction answer would
    cp.sessions._charging_state(n)


def test_a_charger_without_pilot_or_limit_does_not_import_offer():
    sys.modules.pop("ocpp16.offer", None)
    cp = _cp(test_api.FakeBoard())
    _start(cp, 1)
    cp.sessions.tick()
    assert cp.status[1] == C.CHARGING and cp.board.relays[1]
    assert "ocpp16.offer" not in sys.modules
    assert cp.part("offer", False) is None
    cp.limits_changed()          # with a session running: the part is made to follow it
    assert cp.part("offer", False) is not None
    cp.sessions.tick()
    assert cp.status[1] == C.CHARGING and cp.board.relays[1]


def test_pilot_offers_the_board_maximum_and_zero_without_a_session():
    sys.modules.pop("ocpp16.offer", None)
    b = PilotBoard()
    cp = _cp(b)
    # A pilot board: nothing is loaded at boot (the pilot offers nothing without a
    # session); the component is made at the first session.
    assert "ocpp16.offer" not in sys.modules
    b.plug[1] = True
    cp.plugged(1, True)
    cp.sessions.tick()
    assert cp.part("offer", False) is None and b.calls == []
    _start(cp, 1)
    assert b.offers[1] == 320 and cp.status[1] == C.CHARGING and b.relays[1]
    assert b.offers[2] == 0
    cp.stop_transaction(1)
    assert b.offers[1] == 0 and not b.relays[1]


def test_local_limits_lower_wins_and_below_6_a_pauses_with_the_relay_kept():
    b = PilotBoard()
    cp = _cp(b)
    _start(cp, 1)
    cp.set_local_limit(1, 160)
    assert b.offers[1] == 160 and cp.status[1] == C.CHARGING
    b.max[1] = 130                          # a cable of 13 A
    cp.limits_changed()
    assert b.offers[1] == 160               # not at once: at the next tick
    cp.sessions.tick()
    assert b.offers[1] == 130
    cp.set_local_limit(1, 59)               # below 6 A: nothing offered, paused
    assert b.offers[1] == 0 and cp.status[1] == C.SUSPENDED_EVSE
    assert b.relays[1]                      # a pilot board keeps the relay as allowed
    assert cp.tx.active[1] is not None      # the transaction goes on
    cp.set_local_limit(1, 60)
    assert b.offers[1] == 60 and cp.status[1] == C.CHARGING
    cp.set_local_limit(1)
    assert b.offers[1] == 130
    try:
        cp.set_local_limit(3, 100)
        assert False, "connector 3 accepted"
    except ValueError:
        pass


def test_charger_wide_limit_is_shared_by_the_sessions():
    b = PilotBoard()
    cp = _cp(b)
    cp.set_local_limit(0, 200)
    _start(cp, 1)
    assert b.offers[1] == 200
    _start(cp, 2, "TAG2")
    assert b.offers[1] == 100 and b.offers[2] == 100
    cp.set_local_limit(0, 110)              # 5.5 A each: both pause
    assert b.offers[1] == b.offers[2] == 0
    assert cp.status[1] == cp.status[2] == C.SUSPENDED_EVSE
    cp.stop_transaction(2)                  # the other one gets it all again
    assert b.offers[1] == 110 and cp.status[1] == C.CHARGING and b.offers[2] == 0


def test_contact_applies_local_power_limit_with_nominal_voltage():
    b = PilotBoard()
    cp = _cp(b)
    _start(cp, 1)
    b.dim[1] = True
    cp.sessions.tick()
    assert b.offers[1] == 4200 * 10 // (230 * 3)        # 60: 6.0 A on 3 phases
    assert cp.cfg.change("LocalPowerLimit", "7000") == "Accepted"
    cp.sessions.tick()
    assert b.offers[1] == 7000 * 10 // 690
    assert cp.cfg.change("NominalVoltage", "240") == "Accepted"
    cp.sessions.tick()
    assert b.offers[1] == 7000 * 10 // 720
    b.dim[1] = False
    b.dim[0] = True                         # the whole charger's contact
    cp.sessions.tick()
    assert b.offers[1] == 7000 * 10 // 720
    assert cp.cfg.change("LocalPowerLimit", "4000") == "Accepted"
    cp.sessions.tick()                      # 5.5 A: paused
    assert b.offers[1] == 0 and cp.status[1] == C.SUSPENDED_EVSE
    b.dim[0] = False
    cp.sessions.tick()
    assert b.offers[1] == 320 and cp.status[1] == C.CHARGING


def test_without_pilot_a_pause_opens_the_relay():
    cp = _cp(test_api.FakeBoard())
    _start(cp, 1)
    cp.set_local_limit(1, 0)
    assert cp.status[1] == C.SUSPENDED_EVSE and not cp.board.relays[1]
    assert cp.tx.active[1] is not None
    cp.set_local_limit(1, 100)              # no pilot: any limit >= 6 A lets it charge
    assert cp.status[1] == C.CHARGING and cp.board.relays[1]


def test_composite_limit_until_and_transaction_hooks():
    b = PilotBoard()
    cp = _cp(b)
    sc = FakeSC()
    cp._parts = {"smartcharging": sc}
    _start(cp, 1)
    assert sc.started == [1]
    assert b.offers[1] == 320
    sc.lim, sc.until = 100, _T0 + 60
    cp.limits_changed()
    cp.sessions.tick()
    assert b.offers[1] == 100
    asked = sc.asked
    for _ in range(5):                      # not recomputed at every tick
        cp.sessions.tick()
    assert sc.asked == asked
    sc.lim, sc.until = 0, None              # what the profile says after `until`
    cp.sessions.tick()
    assert b.offers[1] == 100               # `until` not reached yet
    cp.clock.set(_T0 + 60)
    cp.sessions.tick()
    assert b.offers[1] == 0 and cp.status[1] == C.SUSPENDED_EVSE
    assert cp.tx.active[1] is not None and b.relays[1]
    sc.lim = 500                            # above the board maximum: the board's wins
    cp.limits_changed()
    cp.sessions.tick()
    assert b.offers[1] == 320 and cp.status[1] == C.CHARGING
    cp.stop_transaction(1)
    assert sc.ended == [1] and b.offers[1] == 0


def test_fault_and_unplug_withdraw_the_offer():
    b = PilotBoard()
    cp = _cp(b)
    cp.cfg.change("StopTransactionOnEVSideDisconnect", "false")
    _start(cp, 1)
    assert b.offers[1] == 320
    cp.fault(1, "HighTemperature")
    cp.sessions.tick()
    assert b.offers[1] == 0 and not b.relays[1]
    cp.clear_fault(1)
    assert b.offers[1] == 320 and cp.status[1] == C.CHARGING
    b.plug[1] = False
    cp.plugged(1, False)
    cp.sessions.tick()
    assert b.offers[1] == 0 and cp.status[1] == C.SUSPENDED_EV
    b.plug[1] = True
    cp.plugged(1, True)
    assert b.offers[1] == 320 and cp.status[1] == C.CHARGING


def test_offer_changes_only_reach_the_board_when_they_change():
    b = PilotBoard()
    cp = _cp(b)
    _start(cp, 1)
    n = len(b.calls)
    for _ in range(10):
        cp.sessions.tick()
    cp.limits_changed()
    cp.sessions.tick()
    assert len(b.calls) == n


def test_without_the_clock_profiles_are_looked_at_every_second_and_when_it_is_set():
    b = PilotBoard()
    cp = _cp(b, clock=False)
    sc = FakeSC()
    cp._parts = {"smartcharging": sc}
    sc.lim = 100
    _start(cp, 1)
    assert b.offers[1] == 100 and cp.clock.now() is None
    asked = sc.asked
    sc.lim = 80
    for _ in range(3):
        cp.sessions.tick()
    assert sc.asked == asked and b.offers[1] == 100
    for _ in range(4):
        cp.sessions.tick()
    assert b.offers[1] == 80
    asked = sc.asked
    cp.clock.set(_T0)
    cp.sessions.tick()
    assert sc.asked > asked
