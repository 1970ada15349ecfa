# TriggerMessage (lib/ocpp16/trigger.py) inside MicroPython: loaded only at the first
# TriggerMessage, what it queues, and the cases an end-to-end run cannot reach (no clock).
import sys
import json
from time import ticks_ms, ticks_diff
from fakews import FakeWS
from fsutil import rmtree
from ocpp16 import config, store, messages
from ocpp16 import chargepoint as C

_DIR = "/tmp/mpocpp-test-trigger"


class FakeBoard:
    connectors = 2

    def identity(self):
        return {"vendor": "test", "model": "fake"}

    def seconds(self):
        return 100

    def energy_wh(self, n):
        return 0

    def relay(self, n, on):
        pass

    def is_plugged(self, n):
        return False


def _cp():
    rmtree(_DIR)
    store.makedirs(_DIR)
    cfg = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    ws = FakeWS(4096)
    cp = C.ChargePoint(FakeBoard(), cfg, ws, _DIR, log=lambda s: None)
    cp.rpc.trace = False
    return cp, ws


def _registered():
    cp, ws = _cp()
    cp.registered = True
    cp.boot_status = "Accepted"
    return cp


def _trigger(cp, what, n=None):
    from ocpp16.trigger import trigger_message
    p = {"requestedMessage": what}
    if n is not None:
        p["connectorId"] = n
    return trigger_message(cp, p)["status"]


async def test_loaded_only_at_the_first_trigger():
    cp, ws = _cp()
    assert "ocpp16.trigger" not in sys.modules
    cp.rpc.connected()
    await cp.rpc.handle(memoryview(b'[2,"u1","TriggerMessage",{"requestedMessage":"Heartbeat"}]'))
    assert "ocpp16.trigger" in sys.modules
    # Not registered yet (no answer to the boot): Rejected, nothing queued.
    assert json.loads(ws.sent[-1]) == [3, "u1", {"status": "Rejected"}]
    assert cp._requests == []


def test_meter_values_need_the_clock():
    cp = _registered()
    assert not cp.clock.valid
    assert _trigger(cp, "MeterValues", 1) == "Rejected"     # never stamped 1970
    assert cp._requests == []
    cp.clock.set(1800000000)
    assert _trigger(cp, "MeterValues", 1) == "Accepted"
    assert [r[0] for r in cp._requests] == [b"MeterValues"]


def test_repeated_triggers_do_not_grow_the_queue():
    cp = _registered()
    for _ in range(5):
        assert _trigger(cp, "StatusNotification") == "Accepted"
        assert _trigger(cp, "Heartbeat") == "Accepted"
    # Connectors 0, 1, 2 and a Heartbeat, plus at most one more of the head's kind
    # (the head may be on the wire already, sent before the later triggers).
    assert len(cp._requests) == 5, len(cp._requests)
    assert sorted(r[2][1] for r in cp._requests if r[0] == messages.STATUS) == [0, 0, 1, 2]


def test_boot_before_and_after_acceptance():
    cp, ws = _cp()
    cp._boot_at = ticks_ms() + 60000
    assert _trigger(cp, "BootNotification") == "Accepted"       # no answer yet: sent now
    assert ticks_diff(ticks_ms(), cp._boot_at) >= 0
    cp.boot_status = "Pending"
    assert _trigger(cp, "StatusNotification", 0) == "Accepted"  # triggered while Pending
    cp.boot_status = "Rejected"
    assert _trigger(cp, "BootNotification") == "Rejected"
    assert _trigger(cp, "Heartbeat") == "Rejected"
    cp.registered = True
    cp.boot_status = "Accepted"
    assert _trigger(cp, "BootNotification") == "Rejected"       # errata 3.35


class _Firmware:
    def firmware_status(self):
        return "Downloading"


def test_firmware_component_reports_its_state():
    cp = _registered()
    assert _trigger(cp, "FirmwareStatusNotification") == "Accepted"
    cp._parts = {"firmware": _Firmware()}     # as part("firmware") would hold it
    assert _trigger(cp, "FirmwareStatusNotification") == "Accepted"
    assert _trigger(cp, "DiagnosticsStatusNotification") == "Accepted"
    assert [(r[0], r[2]) for r in cp._requests] == [
        (messages.FIRMWARE_STATUS, "Idle"), (messages.FIRMWARE_STATUS, "Downloading"),
        (messages.DIAGNOSTICS_STATUS, "Idle")]
