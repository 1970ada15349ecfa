"""Central-system operations: Reset, UnlockConnector, ChangeAvailability (OCTT Core)."""
import time

from ocpp_steps import booted, next_call, Watch, wait_status, wait_calls, start_conf


def _charging(csms, sim, tag="TAG-R"):
    sim.send("plug 1")
    sim.send("swipe 1 " + tag)
    wait_status(csms, 1, "Charging")
    return start_conf(csms)["transactionId"]


def test_soft_reset_during_transaction(start_csms, start_sim):
    # TC_016: StopTransaction SoftReset before the reset, then a new boot.
    csms, sim = booted(start_csms, start_sim)
    txid = _charging(csms, sim)
    w = Watch(csms).mark("StopTransaction", "BootNotification")
    assert csms.call("CP1", "Reset", {"type": "Soft"})["result"]["status"] == "Accepted"
    stop = w.wait("StopTransaction")[0][3]
    assert stop["reason"] == "SoftReset" and stop["transactionId"] == txid
    w.wait("BootNotification", timeout=30)
    sim.wait_line(r"---- reboot ----")
    assert len(csms.calls("StopTransaction", cp="CP1")) == 1
    assert csms.invalid() == []


def test_hard_reset_during_transaction(start_csms, start_sim):
    # TC_015: StopTransaction HardReset (after the reboot is allowed), sent once.
    csms, sim = booted(start_csms, start_sim)
    txid = _charging(csms, sim)
    sim.send("pulses 1 1234")
    sim.wait_line(r"1234 pulses")
    w = Watch(csms).mark("StopTransaction", "BootNotification")
    assert csms.call("CP1", "Reset", {"type": "Hard"})["result"]["status"] == "Accepted"
    w.wait("BootNotification", timeout=30)
    stop = w.wait("StopTransaction", timeout=30)[0][3]
    assert stop["reason"] == "HardReset" and stop["transactionId"] == txid
    assert stop["meterStop"] >= 1234 - 1     # the register saved before the restart
    wait_calls(csms, "StatusNotification", 1)
    assert len(csms.calls("StopTransaction", cp="CP1")) == 1


def test_unlock_during_transaction_and_unknown_connector(start_csms, start_sim):
    # TC_018_1, TC_031, TC_017_1
    csms, sim = booted(start_csms, start_sim)
    assert csms.call("CP1", "UnlockConnector", {"connectorId": 1})["result"]["status"] == "Unlocked"
    assert csms.call("CP1", "UnlockConnector", {"connectorId": 7})["result"]["status"] == "NotSupported"
    _charging(csms, sim)
    assert csms.call("CP1", "UnlockConnector", {"connectorId": 1})["result"]["status"] == "Unlocked"
    assert next_call(csms, "StopTransaction")["reason"] == "UnlockCommand"


def test_change_availability_during_transaction_is_scheduled_and_persisted(start_csms, start_sim, tmp_path):
    # TC_034 style: Inoperative scheduled while charging, applied after the stop,
    # still Unavailable after a reboot; Operative again afterwards.
    csms, sim = booted(start_csms, start_sim)
    _charging(csms, sim)
    r = csms.call("CP1", "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert r["result"]["status"] == "Scheduled"
    sim.send("swipe 1 TAG-R")
    next_call(csms, "StopTransaction")
    wait_status(csms, 1, "Unavailable")
    # No new transaction on an unavailable connector
    w = Watch(csms).mark("StartTransaction")
    sim.send("swipe 1 TAG-R")
    sim.wait_line(r"connector 1 cannot charge now")
    assert w.new("StartTransaction") == []
    # Survives a reboot
    w.mark("BootNotification")
    assert csms.call("CP1", "Reset", {"type": "Hard"})["result"]["status"] == "Accepted"
    w.wait("BootNotification", timeout=30)
    wait_status(csms, 1, "Unavailable")
    r = csms.call("CP1", "ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    assert r["result"]["status"] == "Accepted"
    wait_status(csms, 1, "Preparing")     # the cable is still plugged in
    assert csms.invalid() == []


def test_application_reboot_stops_with_reason_reboot(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    _charging(csms, sim)
    w = Watch(csms).mark("StopTransaction", "BootNotification")
    sim.send("reboot")
    assert w.wait("StopTransaction")[0][3]["reason"] == "Reboot"
    w.wait("BootNotification", timeout=30)


def test_max_energy_on_invalid_id(start_csms, start_sim):
    # StopTransactionOnInvalidId=false with MaxEnergyOnInvalidId: energy flows up to the cap.
    csms, sim = booted(start_csms, start_sim, "--deny", "GONE", config=[
        ("AuthorizeRemoteTxRequests", "false"), ("StopTransactionOnInvalidId", "false"),
        ("MaxEnergyOnInvalidId", "100")])
    sim.send("plug 1")
    csms.call("CP1", "RemoteStartTransaction", {"idTag": "GONE", "connectorId": 1})
    next_call(csms, "StartTransaction")
    sim.wait_line(r"relay 1 closed")
    time.sleep(1)
    assert not any("relay 1 open" in l for l in sim.lines)   # still within the allowance
    sim.send("pulses 1 150")
    sim.wait_line(r"MaxEnergyOnInvalidId reached on connector 1")
    sim.wait_line(r"relay 1 open")
    wait_status(csms, 1, "SuspendedEVSE")
    assert csms.calls("StopTransaction", cp="CP1") == []


def test_unlock_on_ev_side_disconnect(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    _charging(csms, sim)
    sim.send("unplug 1")
    assert next_call(csms, "StopTransaction")["reason"] == "EVDisconnected"
    sim.wait_line(r"connector 1 unlocked")
