# cp.fault / cp.clear_fault without a link: validation, relays, held states, connector 0.
from ocpp16 import chargepoint as C
import test_api


def _cp():
    cp, ws, b = test_api._cp()     # a charge point on a fake board, no link
    return cp, b


def _raises(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


def test_codes_and_connectors_are_checked():
    cp, b = _cp()
    assert _raises(cp.fault, 1, "NoError")
    assert _raises(cp.fault, 1, "Bogus")
    assert _raises(cp.fault, 3, "OtherError")
    assert _raises(cp.clear_fault, -1)
    assert cp.status == [C.AVAILABLE] * 3 and cp.faults == [None] * 3
    for code in C.ERROR_CODES:
        cp.fault(1, code.decode())
        assert cp.error_code[1] is code
    cp.fault(2, b"WeakSignal", "RSSI -95 dBm")
    assert (cp.status[2], cp.error_code[2], cp.status_info[2]) == \
        (C.FAULTED, b"WeakSignal", "RSSI -95 dBm")


def test_start_refused_and_transaction_kept_without_energy():
    cp, b = _cp()
    b.plug[1] = True
    cp.plugged(1, True)
    assert cp.start_transaction(1, "TAG") == C.QUEUED and b.relays[1]
    cp.fault(1, "HighTemperature")
    assert not b.relays[1] and cp.tx.active[1] is not None
    assert cp.status[1] == C.FAULTED and cp.error_code[1] == b"HighTemperature"
    cp.set_status(1, C.SUSPENDED_EV)                 # held back while faulted
    assert cp.status[1] == C.FAULTED
    cp.plugged(1, True)
    assert not b.relays[1]
    assert cp.start_transaction(2, "TAG") == C.QUEUED
    cp.clear_fault(1)
    assert b.relays[1] and cp.status[1] == C.CHARGING and cp.error_code[1] == b"NoError"
    cp.clear_fault(1)                                # no fault: nothing happens
    assert cp.status[1] == C.CHARGING


def test_connector_0_fault_covers_every_connector():
    cp, b = _cp()
    cp.fault(0, "UnderVoltage")
    assert cp.status == [C.FAULTED] * 3 and cp.error_code == [b"UnderVoltage"] * 3
    assert cp.faulted(1) and cp.faulted(2)
    assert cp.start_transaction(2, "TAG") == C.NOT_AVAILABLE
    assert cp.free_connector() is None
    cp.fault(1, "GroundFailure")
    cp.clear_fault(1)                                # connector 0's fault remains
    assert cp.status[1] == C.FAULTED and cp.error_code[1] == b"UnderVoltage"
    cp.fault(2, "GroundFailure")
    cp.change_availability(1, True)                  # applied when the fault clears
    assert cp.status[1] == C.FAULTED
    cp.clear_fault(0)
    assert cp.status == [C.AVAILABLE, C.UNAVAILABLE, C.FAULTED]
    assert cp.error_code == [b"NoError", b"NoError", b"GroundFailure"]
    cp.clear_fault(2)
    assert cp.status[2] == C.AVAILABLE and cp.free_connector() == 2
