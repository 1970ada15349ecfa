"""The connector's cable lock against tools/csms, in the style of the OCTT Core cases:
the simulator's `cable N fixed/detachable`, `lock N ok/fail` and `unlock N ok/fail`."""
import time

from ocpp_steps import booted, Watch, statuses, wait_status, start_conf


def _unlock(csms, n=1):
    r = csms.call("CP1", "UnlockConnector", {"connectorId": n})
    assert r["ok"], r
    return r["result"]["status"]


def _charging(csms, sim, tag="TAG-L"):
    sim.send("plug 1")
    sim.send("swipe 1 " + tag)
    wait_status(csms, 1, "Charging")
    sim.wait_line(r"relay 1 closed")
    return start_conf(csms)["transactionId"]


def test_unlock_fixed_cable_without_session_is_not_supported(start_csms, start_sim):
    # TC_017_2: a fixed cable has no lock to release.
    csms, sim = booted(start_csms, start_sim)
    sim.send("cable 1 fixed")
    sim.wait_line(r"connector 1 has a fixed cable")
    assert _unlock(csms) == "NotSupported"
    assert not any("unlocked" in l or "unlock failed" in l for l in sim.lines)
    # Still true after a restart: the cable is hardware (sim-hardware.json).
    w = Watch(csms).mark("BootNotification")
    assert csms.call("CP1", "Reset", {"type": "Hard"})["result"]["status"] == "Accepted"
    w.wait("BootNotification", timeout=30)
    assert _unlock(csms) == "NotSupported"
    assert csms.invalid() == []


def test_unlock_fixed_cable_during_session_is_not_supported(start_csms, start_sim):
    # TC_018_2: NotSupported, and the transaction goes on.
    csms, sim = booted(start_csms, start_sim)
    sim.send("cable 1 fixed")
    sim.wait_line(r"connector 1 has a fixed cable")
    _charging(csms, sim)
    assert not any("connector 1 locked" in l for l in sim.lines)   # nothing to lock
    w = Watch(csms).mark("StopTransaction", "StatusNotification")
    assert _unlock(csms) == "NotSupported"
    time.sleep(1)
    assert w.new("StopTransaction") == []
    assert w.new("StatusNotification") == [] and statuses(csms, 1)[-1] == "Charging"
    assert not any("relay 1 open" in l for l in sim.lines)
    assert csms.invalid() == []


def test_lock_failure_faults_the_connector_and_starts_nothing(start_csms, start_sim):
    # TC_024: the lock fails at the start: Faulted/ConnectorLockFailure, no transaction.
    csms, sim = booted(start_csms, start_sim)
    sim.send("lock 1 fail")
    sim.wait_line(r"connector 1 lock will fail")
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    w = Watch(csms).mark("Authorize", "StatusNotification")
    sim.send("swipe 1 TAG-F")
    w.wait("Authorize")
    wait_status(csms, 1, "Faulted")
    faulted = [c[3] for c in w.new("StatusNotification") if c[3]["connectorId"] == 1]
    assert faulted[-1]["errorCode"] == "ConnectorLockFailure"
    sim.wait_line(r"connector 1 lock failed")
    time.sleep(0.5)
    assert csms.calls("StartTransaction", cp="CP1") == []
    assert not any("relay 1 closed" in l for l in sim.lines)
    # While Faulted nothing starts (TC_041), not even remotely.
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "TAG-F", "connectorId": 1})
    assert r["result"]["status"] == "Rejected"
    # Taking the cable out clears it; with a working lock the next session starts.
    sim.send("unplug 1")
    wait_status(csms, 1, "Available")
    assert csms.calls("StatusNotification", cp="CP1")[-1][3]["errorCode"] == "NoError"
    sim.send("lock 1 ok")
    sim.wait_line(r"connector 1 lock will work")
    _charging(csms, sim)
    sim.wait_line(r"connector 1 locked")
    assert len(csms.calls("StartTransaction", cp="CP1")) == 1
    assert csms.invalid() == []


def test_unlock_failure(start_csms, start_sim):
    # TC_030: the lock does not release -> UnlockFailed; a running transaction is still
    # stopped first (UnlockCommand), as the spec wants.
    csms, sim = booted(start_csms, start_sim)
    sim.send("unlock 1 fail")
    sim.wait_line(r"connector 1 unlock will fail")
    assert _unlock(csms) == "UnlockFailed"
    sim.wait_line(r"connector 1 unlock failed")
    txid = _charging(csms, sim)
    w = Watch(csms).mark("StopTransaction")
    assert _unlock(csms) == "UnlockFailed"
    stop = w.wait("StopTransaction")[0][3]
    assert stop["reason"] == "UnlockCommand" and stop["transactionId"] == txid
    wait_status(csms, 1, "Finishing")
    sim.send("unlock 1 ok")
    sim.wait_line(r"connector 1 unlock will work")
    assert _unlock(csms) == "Unlocked"
    assert csms.invalid() == []
