"""Charging sessions against tools/csms, in the style of the OCTT Core test cases."""
import time

from ocpp_steps import booted, wait_calls, next_call, Watch, statuses, wait_status, start_conf


def test_plug_in_first_session_meter_stop_equals_pulses(start_csms, start_sim):
    # TC_003: plug, Authorize, StartTransaction, Charging; stop by the same tag (TC_068).
    csms, sim = booted(start_csms, start_sim, extra=("--imp", "800"))
    w = Watch(csms).mark("Authorize", "StartTransaction", "StopTransaction")
    sim.send("pulses 1 400")            # before the session: the register is not rebased
    sim.wait_line(r"400 pulses on connector 1")
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    sim.send("swipe 1 TAG-A")
    start = w.wait("StartTransaction")[0][3]
    assert w.new("Authorize")[0][3] == {"idTag": "TAG-A"}
    assert start["idTag"] == "TAG-A" and start["connectorId"] == 1
    assert start["meterStart"] == 500                 # 400 imp at 800 imp/kWh = 500 Wh
    assert start["timestamp"].endswith("Z")
    wait_status(csms, 1, "Charging")
    sim.wait_line(r"relay 1 closed")
    sim.send("pulses 1 9871")                           # 9871 imp = 12338.75 Wh
    sim.wait_line(r"9871 pulses on connector 1")
    sim.send("swipe 1 TAG-A")
    stop = w.wait("StopTransaction")[0][3]
    assert len(w.new("Authorize")) == 1                # same tag: no second Authorize
    assert stop["meterStop"] == (400 + 9871) * 1000 // 800
    assert isinstance(stop["meterStop"], int)
    assert "reason" not in stop or stop["reason"] == "Local"
    assert stop["idTag"] == "TAG-A"
    conf = start_conf(csms)
    assert stop["transactionId"] == conf["transactionId"]
    sim.wait_line(r"relay 1 open")
    wait_status(csms, 1, "Finishing")
    sim.send("unplug 1")
    wait_status(csms, 1, "Available")
    assert csms.invalid() == []


def test_authorize_first_then_plug(start_csms, start_sim):
    # TC_004_1: swipe first, then plug.
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("StartTransaction", "Authorize")
    sim.send("swipe 1 TAG-B")
    w.wait("Authorize")
    wait_status(csms, 1, "Preparing")
    time.sleep(0.5)
    assert w.new("StartTransaction") == []
    sim.send("plug 1")
    assert w.wait("StartTransaction")[0][3]["idTag"] == "TAG-B"
    wait_status(csms, 1, "Charging")
    assert csms.invalid() == []


def test_connection_timeout_returns_to_available(start_csms, start_sim):
    # TC_004_2: authorised but never plugged in.
    csms, sim = booted(start_csms, start_sim, config=[("ConnectionTimeOut", "2")])
    sim.send("swipe 1 TAG-C")
    wait_status(csms, 1, "Preparing")
    t0 = time.monotonic()
    wait_status(csms, 1, "Available", timeout=10)
    assert time.monotonic() - t0 >= 1.5
    assert csms.calls("StartTransaction", cp="CP1") == []


def test_invalid_tag_starts_nothing(start_csms, start_sim):
    # TC_023: Authorize answered Invalid.
    csms, sim = booted(start_csms, start_sim, "--deny", "BAD")
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    w = Watch(csms).mark("Authorize")
    sim.send("swipe 1 BAD")
    w.wait("Authorize")
    sim.wait_line(r"card BAD refused \(Invalid\)")
    assert csms.calls("StartTransaction", cp="CP1") == []
    assert not any("relay 1 closed" in l for l in sim.lines)


def test_stop_by_parent_tag_and_not_by_stranger(start_csms, start_sim):
    # TC_068 / TC_069: a different tag stops only with the same parentIdTag.
    csms, sim = booted(start_csms, start_sim)
    csms.cmd("parent TAG-1 FLEET")
    csms.cmd("parent TAG-2 FLEET")
    sim.send("plug 1")
    sim.send("swipe 1 TAG-1")
    wait_status(csms, 1, "Charging")
    w = Watch(csms).mark("Authorize", "StopTransaction")
    sim.send("swipe 1 STRANGER")
    w.wait("Authorize")
    sim.wait_line(r"card STRANGER may not stop connector 1")
    assert w.new("StopTransaction") == []
    sim.send("swipe 1 TAG-2")
    stop = w.wait("StopTransaction")[0][3]
    assert stop["idTag"] == "TAG-2"
    assert [a[3]["idTag"] for a in w.new("Authorize")] == ["STRANGER", "TAG-2"]


def test_ev_disconnect_stops_with_reason(start_csms, start_sim):
    # TC_005_1
    csms, sim = booted(start_csms, start_sim)
    sim.send("plug 1")
    sim.send("swipe 1 TAG-D")
    wait_status(csms, 1, "Charging")
    sim.send("unplug 1")
    stop = next_call(csms, "StopTransaction")
    assert stop["reason"] == "EVDisconnected"
    wait_status(csms, 1, "Available")


def test_ev_disconnect_without_stop_suspends(start_csms, start_sim):
    # TC_005_3: StopTransactionOnEVSideDisconnect=false, then a remote stop.
    csms, sim = booted(start_csms, start_sim,
                       config=[("StopTransactionOnEVSideDisconnect", "false")])
    sim.send("plug 1")
    sim.send("swipe 1 TAG-E")
    wait_status(csms, 1, "Charging")
    sim.send("unplug 1")
    wait_status(csms, 1, "SuspendedEV")
    assert csms.calls("StopTransaction", cp="CP1") == []
    conf = start_conf(csms)
    r = csms.call("CP1", "RemoteStopTransaction", {"transactionId": conf["transactionId"]})
    assert r["result"]["status"] == "Accepted"
    stop = next_call(csms, "StopTransaction")
    assert stop["reason"] == "Remote" and stop["transactionId"] == conf["transactionId"]


def test_remote_start_with_and_without_authorize(start_csms, start_sim):
    # TC_011_1 (AuthorizeRemoteTxRequests=true) and TC_010 (false, cable first)
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("Authorize", "StartTransaction")
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "REM-1", "connectorId": 1})
    assert r["result"]["status"] == "Accepted"
    assert w.wait("Authorize")[0][3]["idTag"] == "REM-1"
    wait_status(csms, 1, "Preparing")
    sim.send("plug 1")
    assert w.wait("StartTransaction")[0][3]["idTag"] == "REM-1"
    # Busy connector: rejected (TC_026); connector 0: rejected (TC_027)
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "REM-2", "connectorId": 1})
    assert r["result"]["status"] == "Rejected"
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "REM-2", "connectorId": 0})
    assert r["result"]["status"] == "Rejected"
    # Unknown transaction id: rejected (TC_028); known one: Remote stop (TC_012)
    r = csms.call("CP1", "RemoteStopTransaction", {"transactionId": 999999})
    assert r["result"]["status"] == "Rejected"
    conf = start_conf(csms)
    r = csms.call("CP1", "RemoteStopTransaction", {"transactionId": conf["transactionId"]})
    assert r["result"]["status"] == "Accepted"
    assert next_call(csms, "StopTransaction")["reason"] == "Remote"
    sim.send("unplug 1")
    wait_status(csms, 1, "Available")
    # Without AuthorizeRemoteTxRequests: no Authorize, cable plugged first.
    r = csms.call("CP1", "ChangeConfiguration", {"key": "AuthorizeRemoteTxRequests", "value": "false"})
    assert r["result"]["status"] == "Accepted"
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    w.mark("Authorize", "StartTransaction")
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "REM-3"})
    assert r["result"]["status"] == "Accepted"
    assert w.wait("StartTransaction")[0][3]["idTag"] == "REM-3"
    assert w.new("Authorize") == []
    assert csms.invalid() == []


def test_start_answered_invalid_deauthorizes(start_csms, start_sim):
    # TC_037_3 style: StartTransaction.conf Invalid with StopTransactionOnInvalidId=true.
    csms, sim = booted(start_csms, start_sim, "--deny", "GONE",
                       config=[("AuthorizeRemoteTxRequests", "false")])
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    csms.call("CP1", "RemoteStartTransaction", {"idTag": "GONE", "connectorId": 1})
    start = next_call(csms, "StartTransaction")
    assert start["idTag"] == "GONE"
    stop = next_call(csms, "StopTransaction")
    assert stop["reason"] == "DeAuthorized"
    sim.wait_line(r"relay 1 open")


def test_start_answered_invalid_suspends_when_configured(start_csms, start_sim):
    # TC_037_2: StopTransactionOnInvalidId=false -> SuspendedEVSE, transaction continues.
    csms, sim = booted(start_csms, start_sim, "--deny", "GONE",
                       config=[("AuthorizeRemoteTxRequests", "false"),
                               ("StopTransactionOnInvalidId", "false")])
    sim.send("plug 1")
    csms.call("CP1", "RemoteStartTransaction", {"idTag": "GONE", "connectorId": 1})
    next_call(csms, "StartTransaction")
    wait_status(csms, 1, "SuspendedEVSE")
    assert csms.calls("StopTransaction", cp="CP1") == []
    # Energy delivery stops: the relay, closed at the start, is open again.
    closed = sim.wait_line(r"relay 1 closed")
    sim.wait_line(r"relay 1 open", start=closed)


def test_get_and_change_configuration(start_csms, start_sim):
    # TC_019, TC_021, TC_040_1, TC_040_2
    csms, sim = booted(start_csms, start_sim)
    r = csms.call("CP1", "GetConfiguration", {})
    keys = {k["key"]: k for k in r["result"]["configurationKey"]}
    for k in ("HeartbeatInterval", "MeterValueSampleInterval", "NumberOfConnectors",
              "TransactionMessageAttempts", "AuthorizeRemoteTxRequests"):
        assert k in keys
    assert "AuthorizationKey" not in keys
    assert keys["NumberOfConnectors"]["readonly"] is True
    r = csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval", "Testing"]})
    assert [k["key"] for k in r["result"]["configurationKey"]] == ["HeartbeatInterval"]
    assert r["result"]["unknownKey"] == ["Testing"]
    assert csms.call("CP1", "ChangeConfiguration", {"key": "Testing", "value": "1"})["result"]["status"] == "NotSupported"
    assert csms.call("CP1", "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "-1"})["result"]["status"] == "Rejected"
    assert csms.call("CP1", "ChangeConfiguration", {"key": "NumberOfConnectors", "value": "5"})["result"]["status"] == "Rejected"
    assert csms.call("CP1", "ChangeConfiguration", {"key": "MeterValuesSampledData", "value": "Energy.Active.Import.Register,Bogus"})["result"]["status"] == "Rejected"
    assert csms.call("CP1", "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "17"})["result"]["status"] == "Accepted"
    r = csms.call("CP1", "GetConfiguration", {"key": ["MeterValueSampleInterval", "MeterValuesSampledData"]})
    vals = {k["key"]: k["value"] for k in r["result"]["configurationKey"]}
    assert vals == {"MeterValueSampleInterval": "17",
                    "MeterValuesSampledData": "Energy.Active.Import.Register"}
    assert csms.invalid() == []


def test_datatransfer_and_clear_cache(start_csms, start_sim):
    # TC_062, TC_061
    csms, sim = booted(start_csms, start_sim)
    r = csms.call("CP1", "DataTransfer", {"vendorId": "SomeoneElse", "messageId": "x"})
    assert r["result"]["status"] == "UnknownVendorId"
    assert csms.call("CP1", "ClearCache", {})["result"]["status"] == "Accepted"
    assert csms.invalid() == []


def test_periodic_and_clock_aligned_meter_values(start_csms, start_sim):
    # TC_070 (sampled) and TC_071 (clock-aligned, timestamps on the boundaries)
    csms, sim = booted(start_csms, start_sim, config=[
        ("MeterValueSampleInterval", "2"), ("ClockAlignedDataInterval", "3"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Power.Active.Import"),
        ("StopTxnSampledData", "Energy.Active.Import.Register")])
    sim.send("plug 1")
    sim.send("power 1 7200")
    sim.send("swipe 1 TAG-M")
    wait_status(csms, 1, "Charging")
    w = Watch(csms).mark("MeterValues")
    mvs = w.wait("MeterValues", 6, timeout=30)
    conf = start_conf(csms)
    periodic, aligned = [], []
    for m in mvs:
        p = m[3]
        assert p["transactionId"] == conf["transactionId"]
        for mv in p["meterValue"]:
            for sv in mv["sampledValue"]:
                assert isinstance(sv["value"], str)
            ctx = mv["sampledValue"][0]["context"]
            (periodic if ctx == "Sample.Periodic" else aligned).append(mv)
    assert len(periodic) >= 2 and len(aligned) >= 2
    from datetime import datetime
    def ts(mv):
        return datetime.strptime(mv["timestamp"], "%Y-%m-%dT%H:%M:%SZ").timestamp()
    assert all(int(ts(mv)) % 3 == 0 for mv in aligned), [mv["timestamp"] for mv in aligned]
    gaps = [ts(b) - ts(a) for a, b in zip(periodic, periodic[1:])]
    assert all(1 <= g <= 3 for g in gaps), gaps
    regs = [int(sv["value"]) for mv in periodic for sv in mv["sampledValue"]
            if sv["measurand"] == "Energy.Active.Import.Register"]
    assert regs == sorted(regs) and regs[-1] > regs[0]
    sim.send("swipe 1 TAG-M")
    stop = next_call(csms, "StopTransaction")
    ctx = [mv["sampledValue"][0]["context"] for mv in stop["transactionData"]]
    assert ctx[0] == "Transaction.Begin" and ctx[-1] == "Transaction.End"
    assert csms.invalid() == []


def test_ev_pausing_is_suspended_ev(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, config=[
        ("MeterValueSampleInterval", "1"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Current.Import,Voltage")])
    sim.send("plug 1")
    sim.send("power 1 11040")
    sim.send("swipe 1 TAG-P")
    wait_status(csms, 1, "Charging")
    mv = next_call(csms, "MeterValues")["meterValue"][0]["sampledValue"]
    by = {sv["measurand"]: sv for sv in mv}
    assert by["Current.Import"]["value"] == "16.0" and by["Current.Import"]["unit"] == "A"
    assert by["Voltage"]["value"] == "230" and by["Voltage"]["unit"] == "V"
    sim.send("power 1 0")
    wait_status(csms, 1, "SuspendedEV")
    sim.send("power 1 7000")
    wait_status(csms, 1, "Charging")


def test_stop_transaction_carries_intermediate_transaction_data(start_csms, start_sim):
    # StopTxnSampledData every MeterValueSampleInterval and StopTxnAlignedData at each
    # clock-aligned boundary go into the StopTransaction's transactionData (between
    # Transaction.Begin and Transaction.End), even with no MeterValues configured.
    csms, sim = booted(start_csms, start_sim, config=[
        ("MeterValueSampleInterval", "2"), ("ClockAlignedDataInterval", "2"),
        ("MeterValuesSampledData", ""), ("MeterValuesAlignedData", ""),
        ("StopTxnSampledData", "Energy.Active.Import.Register"),
        ("StopTxnAlignedData", "Energy.Active.Import.Register")])
    w = Watch(csms).mark("MeterValues")
    sim.send("plug 1")
    sim.send("power 1 7200")
    sim.send("swipe 1 TAG-D")
    wait_status(csms, 1, "Charging")
    time.sleep(5)
    sim.send("swipe 1 TAG-D")
    stop = next_call(csms, "StopTransaction")
    assert w.new("MeterValues") == []
    td = stop["transactionData"]
    ctx = [mv["sampledValue"][0]["context"] for mv in td]
    assert ctx[0] == "Transaction.Begin" and ctx[-1] == "Transaction.End", ctx
    assert "Sample.Periodic" in ctx[1:-1] and "Sample.Clock" in ctx[1:-1], ctx
    stamps = [mv["timestamp"] for mv in td]
    assert stamps == sorted(stamps), stamps
    from datetime import datetime
    for mv, c in zip(td, ctx):
        if c == "Sample.Clock":
            t = datetime.strptime(mv["timestamp"], "%Y-%m-%dT%H:%M:%SZ").timestamp()
            assert int(t) % 2 == 0, mv["timestamp"]
    regs = [int(mv["sampledValue"][0]["value"]) for mv in td]
    assert regs == sorted(regs) and regs[-1] == stop["meterStop"] > regs[0], regs
    assert csms.invalid() == []
