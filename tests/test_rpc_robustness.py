"""The firmware against a central system that misbehaves at the OCPP-J level.

Each bad input gets a CALLERROR per OCPP-J or is ignored, the link stays up, the firmware
keeps running, queued transaction data survives, and the next good exchange works.
"""
from ocpp_steps import answer_to, booted, next_call, Watch, wait_status, start_conf


def test_malformed_calls_get_the_right_callerror(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    cases = [
        ('[2,"e1","NoSuchAction",{}]', "NotImplemented"),
        ('[2,"e2","Reset",{"type":5}]', "TypeConstraintViolation"),
        ('[2,"e3","Reset",{}]', "OccurenceConstraintViolation"),
        ('[2,"e4","Reset",[1,2]]', "TypeConstraintViolation"),
        ('[2,"e5","Reset"]', "FormationViolation"),
        ('[2,"e6","Reset",{"type":"Soft"', "FormationViolation"),      # truncated JSON
        ('[2,"e7","ChangeAvailability",{"connectorId":"1","type":"Inoperative"}]',
         "TypeConstraintViolation"),
    ]
    for text, code in cases:
        csms.cmd("send CP1 " + text)
        uid = text.split('"')[1]
        f = answer_to(csms, uid)
        assert f[0] == 4 and f[2] == code, (text, f)
    # Unknown message type, garbage without a uniqueId: ignored, the link stays up.
    n = len(csms.events("connect", cp="CP1"))
    csms.cmd('send CP1 [9,"zz",{}]')
    sim.wait_line(r"rpc: ignored: message type 9")
    csms.cmd("send CP1 this is not json")
    r = csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert r["ok"] and r["result"]["configurationKey"][0]["key"] == "HeartbeatInterval"
    assert len(csms.events("connect", cp="CP1")) == n
    assert len(csms.calls("BootNotification", cp="CP1")) == 1


def test_crossing_calls_and_silent_server(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, "--call-timeout", "20",
                       config=[("MessageTimeout", "5")])
    # The server stops answering StartTransaction; meanwhile it sends its own CALL,
    # which the charger answers while its StartTransaction is outstanding.
    csms.cmd("silent StartTransaction 1")
    w = Watch(csms).mark("StartTransaction")
    sim.send("plug 1")
    sim.send("swipe 1 T1")
    w.wait("StartTransaction")
    r = csms.call("CP1", "GetConfiguration", {"key": ["MessageTimeout"]})
    assert r["ok"] and r["result"]["configurationKey"][0]["value"] == "5"
    # After the response timeout the StartTransaction is sent again (not dropped).
    sim.wait_line(r"no answer to CALL \d+ within 5000 ms", timeout=15)
    starts = w.wait("StartTransaction", 2, timeout=15)
    assert starts[0][3] == starts[1][3] and starts[0][1] != starts[1][1]
    sim.send("swipe 1 T1")
    stop = next_call(csms, "StopTransaction")
    conf = start_conf(csms)
    assert stop["transactionId"] == conf["transactionId"]
    assert csms.invalid() == []


def test_callerror_aliases_from_the_server_are_understood(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    csms.cmd("error Heartbeat FormatViolation 1")
    csms.cmd("error Authorize OccurrenceConstraintViolation 1")
    sim.send("swipe 1 T9")
    sim.wait_line(r"<< \[4,.*OccurrenceConstraintViolation")
    # The charger carried on: a status change still goes out.
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
