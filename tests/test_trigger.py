"""RemoteTrigger profile: TriggerMessage (OCPP 1.6 §5.17; OCTT TC_054, TC_055; errata 3.35),
end to end against tools/csms (schema validation on)."""
import json
import re
import time

from ocpp_steps import booted, Watch, wait_status, start_conf, answer_to

MEASURANDS = "Energy.Active.Import.Register,Power.Active.Import,Voltage"


def _trigger(csms, what, n=None, cp="CP1"):
    p = {"requestedMessage": what}
    if n is not None:
        p["connectorId"] = n
    r = csms.call(cp, "TriggerMessage", p)
    assert r["ok"], r
    return r["result"]["status"]


def _sync(csms, w):
    # The sender sends queued messages in order: once a Heartbeat triggered now has come,
    # anything an earlier TriggerMessage had queued has come before it.
    w.mark("Heartbeat")
    assert _trigger(csms, "Heartbeat") == "Accepted"
    w.wait("Heartbeat")


def _uid(csms, action, cp="CP1"):
    return [f for f in csms.sent(cp) if f[0] == 2 and f[2] == action][-1][1]


def _recv_index(csms, pred, cp="CP1"):
    for i, e in enumerate(csms.events("recv", cp=cp)):
        f = e.get("frame")
        if isinstance(f, list) and pred(f):
            return i
    return None


def test_tc054_trigger_each_message(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, connectors=2,
                       config=[("MeterValuesSampledData", MEASURANDS)])
    w = Watch(csms).mark("MeterValues", "StatusNotification", "Heartbeat",
                         "DiagnosticsStatusNotification", "FirmwareStatusNotification")
    # MeterValues for connector 1: context Trigger, the sampled measurands, no transaction.
    assert _trigger(csms, "MeterValues", 1) == "Accepted"
    mv = w.wait("MeterValues")[0][3]
    assert mv["connectorId"] == 1 and "transactionId" not in mv
    assert len(mv["meterValue"]) == 1
    sv = mv["meterValue"][0]["sampledValue"]
    assert [s["measurand"] for s in sv] == MEASURANDS.split(",")
    assert {s["context"] for s in sv} == {"Trigger"}
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", mv["meterValue"][0]["timestamp"])
    # connectorId absent: one MeterValues per connector (not the main meter).
    w.mark("MeterValues")
    assert _trigger(csms, "MeterValues") == "Accepted"
    assert sorted(c[3]["connectorId"] for c in w.wait("MeterValues", 2)) == [1, 2]
    # Heartbeat
    assert _trigger(csms, "Heartbeat") == "Accepted"
    w.wait("Heartbeat")
    # StatusNotification for connector 1, then for all (0 included).
    assert _trigger(csms, "StatusNotification", 1) == "Accepted"
    st = w.wait("StatusNotification")
    assert [c[3]["connectorId"] for c in st] == [1] and st[0][3]["status"] == "Available"
    w.mark("StatusNotification")
    assert _trigger(csms, "StatusNotification") == "Accepted"
    st = w.wait("StatusNotification", 3)
    assert sorted(c[3]["connectorId"] for c in st) == [0, 1, 2]
    assert {c[3]["status"] for c in st} == {"Available"}
    # DiagnosticsStatusNotification and FirmwareStatusNotification: Idle.
    assert _trigger(csms, "DiagnosticsStatusNotification") == "Accepted"
    assert w.wait("DiagnosticsStatusNotification")[0][3] == {"status": "Idle"}
    assert _trigger(csms, "FirmwareStatusNotification") == "Accepted"
    assert w.wait("FirmwareStatusNotification")[0][3] == {"status": "Idle"}
    _sync(csms, w)
    assert len(w.new("StatusNotification")) == 3 and len(w.new("MeterValues")) == 2
    assert csms.invalid() == []


def test_tc054_meter_values_of_connector_0(start_csms, start_sim):
    # Connector 0 only when asked for: the main meter's energy register.
    csms, sim = booted(start_csms, start_sim, connectors=2,
                       config=[("MeterValuesSampledData", MEASURANDS)])
    w = Watch(csms).mark("MeterValues")
    assert _trigger(csms, "MeterValues", 0) == "Accepted"
    mv = w.wait("MeterValues")[0][3]
    assert mv["connectorId"] == 0
    sv = mv["meterValue"][0]["sampledValue"]
    assert [(s["measurand"], s["context"]) for s in sv] == \
        [("Energy.Active.Import.Register", "Trigger")]
    assert csms.invalid() == []


def test_tc055_connector_out_of_range_is_rejected(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, connectors=2)
    w = Watch(csms).mark("MeterValues", "StatusNotification")
    for what in ("MeterValues", "StatusNotification", "Heartbeat"):
        assert _trigger(csms, what, 3) == "Rejected"       # NumberOfConnectors + 1
        assert _trigger(csms, what, -1) == "Rejected"
    _sync(csms, w)
    assert len(w.new("Heartbeat")) == 1          # only the one of _sync
    assert w.new("MeterValues") == [] and w.new("StatusNotification") == []
    assert csms.invalid() == []


def test_conf_precedes_the_triggered_call(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms)
    for what, n in (("Heartbeat", None), ("StatusNotification", 1), ("MeterValues", 1),
                    ("FirmwareStatusNotification", None)):
        w.mark(what)
        assert _trigger(csms, what, n) == "Accepted"
        call = w.wait(what)[0]
        uid = _uid(csms, "TriggerMessage")
        conf = _recv_index(csms, lambda f: f[0] == 3 and f[1] == uid)
        sent = _recv_index(csms, lambda f: f[0] == 2 and f[1] == call[1] and f[2] == what)
        assert conf is not None and sent is not None and conf < sent, (what, conf, sent)
        # The charger's own trace shows the same order.
        out = sim.frames(">>")
        i = next(k for k, f in enumerate(out) if f[0] == 3 and f[1] == uid)
        j = next(k for k, f in enumerate(out) if f[0] == 2 and f[1] == call[1])
        assert i < j, (what, i, j)
    assert csms.invalid() == []


def test_boot_trigger_after_accepted_is_rejected(start_csms, start_sim):
    # Errata 3.35: once Accepted, TriggerMessage(BootNotification) is Rejected.
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("BootNotification")
    assert _trigger(csms, "BootNotification") == "Rejected"
    _sync(csms, w)
    assert w.new("BootNotification") == []
    assert csms.invalid() == []


def test_triggers_while_pending(start_csms, start_sim):
    # Spec 4.2: while Pending the charger sends only what is triggered; a triggered
    # BootNotification goes at once (not after the interval of 300 s).
    csms = start_csms("--boot", "pending", "--heartbeat", "300")
    sim = start_sim(csms.url, connectors=1)
    csms.wait_call("BootNotification", cp="CP1", timeout=30)
    sim.wait_line(r"boot: Pending")
    w = Watch(csms).mark("StatusNotification", "Heartbeat", "BootNotification", "MeterValues")
    assert csms.calls("StatusNotification", cp="CP1") == []
    assert _trigger(csms, "StatusNotification", 1) == "Accepted"
    st = w.wait("StatusNotification")
    assert st[0][3]["connectorId"] == 1
    assert _trigger(csms, "MeterValues", 1) == "Accepted"
    assert w.wait("MeterValues")[0][3]["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    assert _trigger(csms, "Heartbeat") == "Accepted"
    w.wait("Heartbeat")
    assert len(w.new("StatusNotification")) == 1     # nothing but what was triggered
    assert w.new("BootNotification") == []
    assert csms.cmd("boot accepted 300")["ok"]
    assert _trigger(csms, "BootNotification") == "Accepted"
    w.wait("BootNotification", timeout=10)
    sim.wait_line(r"boot: Accepted")
    wait_status(csms, 0, "Available")                # registered: the statuses follow
    w.mark("BootNotification")
    assert _trigger(csms, "BootNotification") == "Rejected"
    _sync(csms, w)
    assert w.new("BootNotification") == []
    assert csms.invalid() == []


def test_triggers_while_rejected_are_rejected(start_csms, start_sim):
    # Spec 4.2: after Rejected the charger sends nothing until the interval has passed.
    csms = start_csms("--boot", "rejected", "--heartbeat", "300")
    sim = start_sim(csms.url, connectors=1)
    csms.wait_call("BootNotification", cp="CP1", timeout=30)
    sim.wait_line(r"boot: Rejected")
    for what in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
                 "DiagnosticsStatusNotification", "FirmwareStatusNotification"):
        assert _trigger(csms, what) == "Rejected", what
    time.sleep(1.0)      # (nothing to wait for: the charger must stay silent)
    assert len(csms.calls(cp="CP1")) == 1            # the one BootNotification
    assert csms.invalid() == []


def test_triggered_meter_values_in_a_transaction_are_not_journaled(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim,
                       config=[("MeterValueSampleInterval", "0"), ("MessageTimeout", "5")])
    sim.send("plug 1")
    sim.send("swipe 1 TAG-T")
    wait_status(csms, 1, "Charging")
    txid = start_conf(csms)["transactionId"]
    sim.send("power 1 7000")
    w = Watch(csms).mark("MeterValues")
    assert _trigger(csms, "MeterValues", 1) == "Accepted"
    mv = w.wait("MeterValues")[0][3]
    assert mv["transactionId"] == txid
    assert {s["context"] for s in mv["meterValue"][0]["sampledValue"]} == {"Trigger"}
    # Unanswered and the link lost: a journaled message would be sent again after the
    # reconnect; a triggered one is not, and it never counted as queued.
    assert csms.cmd("silent MeterValues 1")["ok"]
    w.mark("MeterValues")
    assert _trigger(csms, "MeterValues", 1) == "Accepted"
    w.wait("MeterValues")
    w.mark("MeterValues")
    k = len(sim.lines)
    sim.send("storage")
    assert re.search(r"queued=0 ", sim.lines[sim.wait_line(r"sim: storage queued=", start=k)])
    mark = csms.mark()
    assert csms.cmd("drop CP1")["ok"]
    csms.wait(lambda e: e.get("ev") == "connect" and e.get("cp") == "CP1", timeout=30,
              after=mark)
    _sync(csms, w)
    assert w.new("MeterValues") == []
    k = len(sim.lines)
    sim.send("storage")
    assert re.search(r"queued=0 ", sim.lines[sim.wait_line(r"sim: storage queued=", start=k)])
    assert csms.invalid() == []


def _raw(csms, uid, payload, cp="CP1"):
    assert csms.cmd("send %s %s" % (cp, json.dumps([2, uid, "TriggerMessage", payload])))["ok"]
    return answer_to(csms, uid, cp)


def test_payload_checks(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("StatusNotification")
    # null connectorId: absent (every connector and the charge point).
    f = _raw(csms, "t1", {"requestedMessage": "StatusNotification", "connectorId": None})
    assert f == [3, "t1", {"status": "Accepted"}]
    assert sorted(c[3]["connectorId"] for c in w.wait("StatusNotification", 2)) == [0, 1]
    # Not in the schema's enum: PropertyConstraintViolation; wrong type: TypeConstraint.
    f = _raw(csms, "t2", {"requestedMessage": "SignChargePointCertificate"})
    assert f[:3] == [4, "t2", "PropertyConstraintViolation"]
    f = _raw(csms, "t3", {"requestedMessage": 7})
    assert f[:3] == [4, "t3", "TypeConstraintViolation"]
    f = _raw(csms, "t4", {"requestedMessage": "Heartbeat", "connectorId": "1"})
    assert f[:3] == [4, "t4", "TypeConstraintViolation"]
    f = _raw(csms, "t5", {})
    assert f[:3] == [4, "t5", "OccurenceConstraintViolation"]
    f = _raw(csms, "t6", {"requestedMessage": "Heartbeat", "extra": 1})
    assert f[:3] == [4, "t6", "FormationViolation"]
    assert csms.invalid() == []
