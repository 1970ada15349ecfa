"""Board fault inputs: cp.fault / cp.clear_fault through the simulator's `fault N CODE`
and `clear N` commands, against tools/csms."""
import re
import time

from ocpp_steps import booted, Watch, wait_status, start_conf


def _notes(csms, connector, cp="CP1", after=0):
    """(status, errorCode) of connector's StatusNotifications, from the after-th on."""
    return [(c[3]["status"], c[3]["errorCode"])
            for c in csms.calls("StatusNotification", cp=cp)[after:]
            if c[3]["connectorId"] == connector]


def _wait_note(csms, connector, status, code, cp="CP1", timeout=20):
    """Wait until connector's latest StatusNotification is (status, code)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = _notes(csms, connector, cp)
        if s and s[-1] == (status, code):
            return s
        time.sleep(0.05)
    raise AssertionError("connector %d never reported %s/%s (saw %s); log:\n%s"
                         % (connector, status, code, _notes(csms, connector, cp),
                            csms.log_text(60)))


def _register(sim, n, start):
    """The simulated meter register of connector n now (Wh), read with `pulses n 0`."""
    sim.send("pulses %d 0" % n)
    i = sim.wait_line(r"sim: 0 pulses on connector %d, register \d+ Wh" % n, start=start)
    return int(re.search(r"register (\d+) Wh", sim.lines[i]).group(1)), i


def test_fault_on_idle_connector_blocks_starts_until_cleared(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    # NoError and unknown codes are refused (ValueError in cp.fault).
    sim.send("fault 1 NoError")
    sim.wait_line(r"bad command 'fault 1 NoError'")
    sim.send("fault 1 Bogus")
    sim.wait_line(r"bad command 'fault 1 Bogus'")
    assert _notes(csms, 1)[-1] == ("Available", "NoError")
    base = len(csms.calls("StatusNotification", cp="CP1"))
    w = Watch(csms).mark("Authorize", "StartTransaction")
    sim.send("fault 1 GroundFailure")
    _wait_note(csms, 1, "Faulted", "GroundFailure")
    # A card starts nothing: not even an Authorize.
    sim.send("swipe 1 TAG-F")
    sim.wait_line(r"connector 1 cannot charge now")
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "REM-F", "connectorId": 1})
    assert r["result"]["status"] == "Rejected"
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "REM-F"})
    assert r["result"]["status"] == "Rejected"          # no free connector either
    # Plug and unplug while faulted: the reported status stays Faulted.
    sim.send("plug 1")
    sim.wait_line(r"connector 1 plugged")
    sim.send("unplug 1")
    sim.wait_line(r"connector 1 unplugged")
    time.sleep(0.5)
    assert _notes(csms, 1, after=base) == [("Faulted", "GroundFailure")]
    sim.send("clear 1")
    _wait_note(csms, 1, "Available", "NoError")
    assert _notes(csms, 1, after=base) == [("Faulted", "GroundFailure"), ("Available", "NoError")]
    assert w.new("Authorize") == [] and w.new("StartTransaction") == []
    assert not any("relay 1 closed" in l for l in sim.lines)
    # Cleared: a session starts again.
    sim.send("plug 1")
    sim.send("swipe 1 TAG-F")
    assert w.wait("StartTransaction")[0][3]["idTag"] == "TAG-F"
    wait_status(csms, 1, "Charging")
    assert csms.invalid() == []


def test_fault_during_transaction_suspends_energy_not_the_transaction(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    sim.send("plug 1")
    sim.send("swipe 1 TAG-H")
    wait_status(csms, 1, "Charging")
    closed = sim.wait_line(r"relay 1 closed")
    sim.send("pulses 1 1000")
    sim.wait_line(r"1000 pulses on connector 1, register 1000 Wh")
    w = Watch(csms).mark("StopTransaction")
    sim.send("fault 1 HighTemperature")
    opened = sim.wait_line(r"sim: relay 1 open", start=closed)
    _wait_note(csms, 1, "Faulted", "HighTemperature")
    # The EV would draw 10 Wh/s; with the relay open the meter stands still.
    sim.send("power 1 36000")
    sim.wait_line(r"EV on connector 1 draws 36000 W", start=opened)
    time.sleep(1.5)
    reg, i = _register(sim, 1, opened)
    assert reg == 1000
    assert w.new("StopTransaction") == []
    assert not any("relay 1 closed" in l for l in sim.lines[opened:])
    sim.send("clear 1")
    _wait_note(csms, 1, "Charging", "NoError")
    sim.wait_line(r"sim: relay 1 closed", start=opened)
    # Energy flows again, and the StopTransaction carries the register.
    end = time.monotonic() + 10
    while reg <= 1000 and time.monotonic() < end:
        time.sleep(0.3)
        reg, i = _register(sim, 1, i + 1)
    assert reg > 1000
    sim.send("power 1 0")
    i = sim.wait_line(r"EV on connector 1 draws 0 W", start=i)
    reg, i = _register(sim, 1, i)
    sim.send("swipe 1 TAG-H")
    stop = w.wait("StopTransaction")[0][3]
    assert len(w.new("StopTransaction")) == 1
    assert stop["meterStop"] == reg
    assert stop["transactionId"] == start_conf(csms)["transactionId"]
    assert stop.get("reason", "Local") == "Local"
    wait_status(csms, 1, "Finishing")
    assert csms.invalid() == []


def test_application_stops_during_fault_then_clear_gives_finishing(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    sim.send("plug 1")
    sim.send("swipe 1 TAG-S")
    wait_status(csms, 1, "Charging")
    base = len(csms.calls("StatusNotification", cp="CP1"))
    w = Watch(csms).mark("StopTransaction")
    sim.send("fault 1 OverCurrentFailure")
    _wait_note(csms, 1, "Faulted", "OverCurrentFailure")
    sim.send("stop 1 EmergencyStop")
    stop = w.wait("StopTransaction")[0][3]
    assert stop["reason"] == "EmergencyStop"
    time.sleep(0.5)
    assert _notes(csms, 1, after=base) == [("Faulted", "OverCurrentFailure")]
    sim.send("clear 1")
    _wait_note(csms, 1, "Finishing", "NoError")        # cable still in after the stop
    sim.send("unplug 1")
    _wait_note(csms, 1, "Available", "NoError")
    assert csms.invalid() == []


def test_fault_on_connector_0_stops_energy_on_every_connector(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, connectors=2)
    sim.send("plug 1")
    sim.send("swipe 1 TAG-1")
    wait_status(csms, 1, "Charging")
    closed = sim.wait_line(r"relay 1 closed")
    start_conf(csms)    # the status goes before the journal: the Start may still be coming
    w = Watch(csms).mark("StopTransaction", "StartTransaction", "Authorize")
    sim.send("fault 0 UnderVoltage")
    opened = sim.wait_line(r"sim: relay 1 open", start=closed)
    for n in (0, 1, 2):
        _wait_note(csms, n, "Faulted", "UnderVoltage")
    # Nothing starts anywhere; the running transaction goes on.
    sim.send("plug 2")
    sim.send("swipe 2 TAG-2")
    sim.wait_line(r"connector 2 cannot charge now")
    for p in ({"idTag": "REM-2", "connectorId": 2}, {"idTag": "REM-2"}):
        r = csms.call("CP1", "RemoteStartTransaction", p)
        assert r["result"]["status"] == "Rejected"
    # A connector's own fault while the charge point is faulted: its own code.
    sim.send("fault 2 GroundFailure")
    _wait_note(csms, 2, "Faulted", "GroundFailure")
    base = len(csms.calls("StatusNotification", cp="CP1"))
    sim.send("clear 0")
    _wait_note(csms, 0, "Available", "NoError")
    _wait_note(csms, 1, "Charging", "NoError")
    sim.wait_line(r"sim: relay 1 closed", start=opened)
    time.sleep(0.5)
    assert _notes(csms, 2, after=base) == []              # still Faulted, GroundFailure
    assert _notes(csms, 2)[-1] == ("Faulted", "GroundFailure")
    assert not any("relay 2 closed" in l for l in sim.lines)
    sim.send("clear 2")
    _wait_note(csms, 2, "Preparing", "NoError")           # plugged during the fault
    assert w.new("StopTransaction") == [] and w.new("StartTransaction") == []
    assert w.new("Authorize") == []
    assert csms.invalid() == []


def test_replug_during_fault_keeps_relay_open(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim,
                       config=[("StopTransactionOnEVSideDisconnect", "false")])
    sim.send("plug 1")
    sim.send("swipe 1 TAG-R")
    wait_status(csms, 1, "Charging")
    closed = sim.wait_line(r"relay 1 closed")
    base = len(csms.calls("StatusNotification", cp="CP1"))
    sim.send("fault 1 PowerSwitchFailure")
    opened = sim.wait_line(r"sim: relay 1 open", start=closed)
    _wait_note(csms, 1, "Faulted", "PowerSwitchFailure")
    sim.send("unplug 1")
    sim.wait_line(r"connector 1 unplugged", start=opened)
    sim.send("plug 1")
    i = sim.wait_line(r"connector 1 plugged", start=opened)
    sim.send("pulses 1 0")                 # a later line: the plug event has been handled
    sim.wait_line(r"0 pulses on connector 1", start=i)
    assert not any("relay 1 closed" in l for l in sim.lines[opened:])
    assert _notes(csms, 1, after=base) == [("Faulted", "PowerSwitchFailure")]
    sim.send("clear 1")
    _wait_note(csms, 1, "Charging", "NoError")
    sim.wait_line(r"sim: relay 1 closed", start=opened)
    assert csms.calls("StopTransaction", cp="CP1") == []


def test_fault_while_card_is_being_authorised_starts_nothing(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim,
                       config=[("AllowOfflineTxForUnknownId", "true")])
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    w = Watch(csms).mark("Authorize", "StartTransaction")
    csms.cmd("silent Authorize 1")
    sim.send("swipe 1 TAG-X")
    w.wait("Authorize")
    sim.send("fault 1 InternalError")
    sim.wait_line(r"fault: connector 1 InternalError")
    # The link drops before the answer: the offline rules accept the unknown tag,
    # but the connector is faulted by now.
    csms.cmd("drop CP1")
    sim.wait_line(r"connector 1 is faulted; no transaction for TAG-X")
    _wait_note(csms, 1, "Faulted", "InternalError", timeout=30)
    sim.send("clear 1")
    _wait_note(csms, 1, "Preparing", "NoError")
    assert w.new("StartTransaction") == []
    assert not any("relay 1 closed" in l for l in sim.lines)
