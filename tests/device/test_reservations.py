# Reservations inside the charge point, without a link: lazy import, the start rules,
# the clock-less expiry bound at boot, and what the profile costs in RAM.
import gc
import sys
from fsutil import rmtree
from fakews import FakeWS
from ocpp16 import config, store
from ocpp16 import chargepoint as C
from ocpp16.clock import parse_iso
import test_api

_DIR = "/tmp/mpocpp-test-resv"
_T0 = parse_iso("2026-11-23T10:00:00Z")


def _cp(fresh=True, clock=True):
    if fresh:
        rmtree(_DIR)
    store.makedirs(_DIR)
    cfg = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    logs = []
    cp = C.ChargePoint(test_api.FakeBoard(), cfg, FakeWS(4096), _DIR, log=logs.append)
    if clock:
        cp.clock.set(_T0)
    return cp, logs


def _reserve(cp, rid, n, tag, parent=None, secs=600):
    from ocpp16 import reservations
    p = {"connectorId": n, "expiryDate": "2026-11-23T10:%02d:00Z" % (secs // 60),
         "idTag": tag, "reservationId": rid}
    if parent:
        p["parentIdTag"] = parent
    return reservations.reserve_now(cp, p)["status"]


def test_a_charger_without_reservations_does_not_import_the_profile():
    cp, _ = _cp()
    assert cp.reservations() == [] and cp.free_connector() == 1
    cp.sessions.tick()
    assert cp.part("reservations", False) is None
    assert "ocpp16.reservations" not in sys.modules


def test_ram_cost_of_the_profile():
    cp, _ = _cp()
    gc.collect()
    before = gc.mem_alloc()
    assert _reserve(cp, 1, 1, "A") == "Accepted"
    assert _reserve(cp, 2, 0, "B") == "Accepted"
    gc.collect()
    cost = gc.mem_alloc() - before
    # The state alone (the module's code is frozen in flash on a charger).
    cp, _ = _cp()
    gc.collect()
    before = gc.mem_alloc()
    assert _reserve(cp, 1, 1, "A") == "Accepted"
    assert _reserve(cp, 2, 0, "B") == "Accepted"
    gc.collect()
    state = gc.mem_alloc() - before
    print("@@FIGURE reservations: module compiled from source + state %d bytes; state "
          "(Part + 2 reservations) %d bytes" % (cost, state))
    assert cost < 40000 and state < 2000


def test_start_rules_parent_and_connector_zero():
    cp, logs = _cp()
    rv = cp.part("reservations")
    assert _reserve(cp, 7, 1, "OWNER", "FLEET") == "Accepted"
    assert cp.status[1] == C.RESERVED
    assert rv.admit(1, "STRANGER", None, True) is None      # its parent may still match
    assert rv.admit(1, "STRANGER", "OTHER") is False
    assert rv.admit(1, "CHILD", "FLEET") == 7
    assert rv.admit(1, "OWNER", None) == 7
    assert rv.admit(2, "STRANGER", None) is None             # connector 2 is free
    # One connector-0 reservation: connector 2 is now the last free one, kept for it.
    assert _reserve(cp, 8, 0, "ANY") == "Accepted"
    assert cp.status[2] == C.RESERVED
    assert rv.admit(2, "STRANGER", None, True) is False
    assert rv.admit(2, "ANY", None) == 8
    assert cp.start_transaction(2, "STRANGER") == C.NOT_AVAILABLE
    assert _reserve(cp, 9, 0, "MORE") == "Occupied"
    # The reserved tag starts: its reservation ends, the other one stays.
    cp.board.plug[1] = True
    cp.plugged(1, True)
    assert cp.status[1] == C.RESERVED           # a cable in does not end it
    assert cp.start_transaction(1, "OWNER") == C.QUEUED
    assert [r["reservationId"] for r in cp.reservations()] == [8]
    assert cp.status[1] == C.CHARGING
    # A replacement with the same id moves it; a cancel ends it; the file goes.
    assert _reserve(cp, 8, 2, "ANY") == "Accepted"
    assert [(r["reservationId"], r["connectorId"]) for r in cp.reservations()] == [(8, 2)]
    assert rv.cancel(8) and not rv.cancel(8)
    assert cp.status[2] == C.AVAILABLE
    assert not store.exists(_DIR + "/resv.json")


def test_kept_at_boot_and_expired_by_the_lower_bound_without_clock():
    cp, _ = _cp()
    assert _reserve(cp, 1, 1, "SOON", secs=120) == "Accepted"
    assert _reserve(cp, 2, 2, "LATER", secs=3000) == "Accepted"
    # Reboot with the clock unknown: the file says 10:00 had passed; the board has run
    # 100 s, so 10:01:40 has passed: nothing expired yet, both connectors Reserved.
    cp, logs = _cp(False, False)
    assert cp.clock.now() is None
    assert [r["reservationId"] for r in cp.reservations()] == [1, 2]
    assert cp.status[1] == C.RESERVED and cp.status[2] == C.RESERVED
    # A later known time (meter stamp, first clock of a boot) raises the bound: 10:02
    # passed before this boot, so reservation 1 (until 10:02) is over at the next one.
    store.atomic_write(_DIR + "/time/last", str(_T0 + 120))
    cp, logs = _cp(False, False)
    assert [r["reservationId"] for r in cp.reservations()] == [2]
    assert cp.status[1] == C.AVAILABLE and cp.status[2] == C.RESERVED
    assert "reservations: 1 expired" in logs
    # A damaged file is dropped, not fatal.
    store.atomic_write(_DIR + "/resv.json", b'{"t": 1, "r": [[1, "x"]]}')
    cp, logs = _cp(False, False)
    assert cp.reservations() == []
    with open(_DIR + "/resv.json", "w") as f:
        f.write("{torn")
    cp, logs = _cp(False, False)
    assert cp.reservations() == [] and any("unreadable" in s for s in logs)
    assert cp.status == [C.AVAILABLE] * 3
