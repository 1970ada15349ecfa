"""Robustness in the field: what a hostile, slow or sloppy central system does to the
charger.  One test per defect found against an independent central system; each failed
on the code before the fix.

- a deeply nested frame costs that frame only (the link, the queue, the board live on);
- characters outside the BMP, escaped as surrogate pairs, travel as real characters and
  never come back as invalid UTF-8;
- a late StartTransaction.conf settles it (no duplicate transaction, no -1);
- a card or a remote start before the boot is Accepted is neither refused nor forgotten;
- StartTransaction.conf's parentIdTag and StopTransaction.conf's idTagInfo count; a late
  Authorize.conf decides;
- Operative cancels a scheduled Inoperative;
- Finishing after an EV-side disconnect and after a hard reset with the cable in.
"""
import time

import pytest

from mp.txlog import prepare_state
from ocpp_steps import (Watch, answer_to, booted, next_call, start_conf, statuses,
                        wait_calls, wait_status)

CAR = "EV\U0001f697"          # json.dumps writes it as "EV\ud83d\ude97"


def _connects(csms):
    return len(csms.events("connect", cp="CP1"))


def _cfg(**kw):
    c = {"MessageTimeout": 5, "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1,
         "MeterValueSampleInterval": 0, "MinimumStatusDuration": 0}
    c.update(kw)
    return c


def _started(start_csms, start_sim, tmp_path, **cfg):
    # A charger with configuration `cfg` on flash from the start, booted.
    csms = start_csms("--heartbeat", "300")
    sim = start_sim(csms.url, state=prepare_state(tmp_path / "st", _cfg(**cfg)))
    wait_calls(csms, "StatusNotification", 2)
    return csms, sim


def test_deeply_nested_frames_cost_the_frame_only(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    n = _connects(csms)
    sim.send("plug 1")
    sim.send("swipe 1 DEEP")
    wait_status(csms, 1, "Charging")
    csms.cmd("send CP1 " + "[" * 2500)
    key = "[" * 800 + "]" * 800
    csms.cmd('send CP1 [2,"deep","GetConfiguration",{"key":%s}]' % key)
    f = answer_to(csms, "deep")
    assert f[0] == 4 and f[2] == "FormationViolation", f
    # The board's events are still handled, the Stop goes out on the same link.
    sim.send("swipe 1 DEEP")
    stop = next_call(csms, "StopTransaction")
    assert stop["transactionId"] == start_conf(csms)["transactionId"]
    r = csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert r["ok"], r
    assert _connects(csms) == n
    assert not any("Task exception" in ln or "MemoryError" in ln for ln in sim.lines)


def test_non_bmp_characters_travel_as_characters(start_csms, start_sim, tmp_path):
    csms, sim = _started(start_csms, start_sim, tmp_path, AuthorizeRemoteTxRequests=False)
    n = _connects(csms)
    sim.send("plug 1")
    # csmsctl and the ocpp package write the emoji as a surrogate pair (ensure_ascii).
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": CAR, "connectorId": 1})
    assert r["ok"] and r["result"]["status"] == "Accepted", r
    start = wait_calls(csms, "StartTransaction", 1)[0][3]
    assert start["idTag"] == CAR
    r = csms.call("CP1", "ChangeConfiguration", {"key": "ConnectorPhaseRotation",
                                                 "value": "1.RST " + CAR})
    assert r["ok"] and r["result"]["status"] == "Accepted", r
    r = csms.call("CP1", "GetConfiguration", {})          # the whole table, with that value
    assert r["ok"], r
    assert {"key": "ConnectorPhaseRotation", "readonly": False,
            "value": "1.RST " + CAR} in r["result"]["configurationKey"]
    csms.cmd('send CP1 [2,"id\\ud83d\\ude97","GetConfiguration",{"key":["X"]}]')
    assert answer_to(csms, "id" + "\U0001f697")[0] == 3
    # A lone surrogate is not a character: refused, not stored.
    csms.cmd('send CP1 [2,"lone","RemoteStartTransaction",{"idTag":"EV\\ud83d"}]')
    assert answer_to(csms, "lone")[2] == "PropertyConstraintViolation"
    sim.send("stop 1")
    stop = next_call(csms, "StopTransaction")
    assert stop["idTag"] == CAR and stop["transactionId"] == start_conf(csms)["transactionId"]
    assert csms.invalid() == [] and _connects(csms) == n
    assert not [e for e in csms.events("disconnect", cp="CP1") if e.get("code") == 1007]


@pytest.mark.parametrize("delay,sends", [(7, 1), (12, 2)])
def test_late_start_conf_settles_the_transaction(start_csms, start_sim, tmp_path, delay, sends):
    # MessageTimeout 5 s: answered 7 s late, before the resend (which waits one more
    # MessageTimeout); 12 s late, while the resend is out: the late answer settles it.
    csms, sim = _started(start_csms, start_sim, tmp_path)
    csms.cmd("delay StartTransaction %d 1" % delay)
    sim.send("plug 1")
    sim.send("swipe 1 SLOW")
    sim.wait_line(r"no answer to CALL \d+ within 5000 ms", timeout=15)
    sim.wait_line(r"late answer to CALL \d+ taken", timeout=20)
    time.sleep(1)
    sim.send("stop 1")
    stop = next_call(csms, "StopTransaction", timeout=20)
    starts = csms.calls("StartTransaction", cp="CP1")
    first = [f for f in csms.sent("CP1") if f[0] == 3 and f[1] == starts[0][1]][0][2]
    # The first answer decides; -1 is only for a Start never answered at all.
    assert stop["transactionId"] == first["transactionId"] != -1
    assert len(starts) == sends, starts
    assert not any("unanswered" in ln for ln in sim.lines)


@pytest.mark.parametrize("boot", ["pending", "unanswered"])
def test_card_before_the_boot_is_accepted_waits_for_it(start_csms, start_sim, tmp_path, boot):
    if boot == "pending":
        csms = start_csms("--heartbeat", "300", "--boot", "pending")
        csms.cmd("boot pending 3")
    else:
        csms = start_csms("--heartbeat", "300")
        csms.cmd("delay BootNotification 4 1")
    sim = start_sim(csms.url, state=prepare_state(tmp_path / "st", _cfg(MessageTimeout=20)))
    if boot == "pending":
        sim.wait_line("boot: Pending")
        r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "EARLY2", "connectorId": 1})
        assert r["ok"] and r["result"]["status"] == "Rejected", r  # not Accepted and dropped
    else:
        wait_calls(csms, "BootNotification", 1)     # out, its answer 4 s away
    sim.send("plug 1")
    sim.send("swipe 1 EARLY")
    if boot == "pending":
        time.sleep(0.5)
        csms.cmd("boot accepted 300")
    sim.wait_line("boot: Accepted", timeout=15)
    auth = wait_calls(csms, "Authorize", 1, timeout=10)[0][3]
    assert auth["idTag"] == "EARLY"
    assert wait_calls(csms, "StartTransaction", 1)[0][3]["idTag"] == "EARLY"
    assert not any("refused" in ln for ln in sim.lines)


def test_parent_from_start_conf_and_cache_from_stop_conf(start_csms, start_sim, tmp_path):
    csms, sim = _started(start_csms, start_sim, tmp_path, AuthorizeRemoteTxRequests=False)
    # TC_069 with AuthorizeRemoteTxRequests false: the group comes with the Start's answer.
    csms.cmd("parent OWNER FLEET")
    csms.cmd("parent DRIVER FLEET")
    sim.send("plug 1")
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "OWNER", "connectorId": 1})
    assert r["result"]["status"] == "Accepted"
    assert start_conf(csms)["idTagInfo"]["parentIdTag"] == "FLEET"
    sim.send("swipe 1 DRIVER")
    stop = next_call(csms, "StopTransaction")
    assert stop["idTag"] == "DRIVER"
    # The Stop's answer updates the cache: a tag refused there does not start offline.
    sim.send("unplug 1")
    sim.send("plug 1")
    sim.send("swipe 1 GONE")
    wait_calls(csms, "StartTransaction", 2)
    csms.cmd("deny GONE")
    sim.send("swipe 1 GONE")
    stop = next_call(csms, "StopTransaction")
    sim.wait_line("delivery: queue empty", start=sim.wait_line(r'^>> .*"StopTransaction".*GONE'))
    csms.cmd("drop CP1 abort")
    csms.cmd("refuse 1000")
    sim.wait_line("link: connect failed", timeout=15)
    i = len(sim.lines)
    sim.send("swipe 1 GONE")
    sim.wait_line(r"card GONE refused \(Invalid\)", start=i, timeout=10)


def test_late_authorize_conf_decides(start_csms, start_sim, tmp_path):
    csms, sim = _started(start_csms, start_sim, tmp_path, AllowOfflineTxForUnknownId=False)
    csms.cmd("delay Authorize 7 1")
    sim.send("plug 1")
    sim.send("swipe 1 PATIENT")
    sim.wait_line(r"no answer to CALL \d+ within 5000 ms", timeout=15)
    start = wait_calls(csms, "StartTransaction", 1, timeout=15)[0][3]
    assert start["idTag"] == "PATIENT"
    assert not any("refused" in ln for ln in sim.lines)


def test_operative_cancels_a_scheduled_inoperative(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, connectors=2)
    sim.send("plug 1")
    sim.send("swipe 1 BUSY")
    wait_status(csms, 1, "Charging")
    r = csms.call("CP1", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert r["result"]["status"] == "Scheduled"
    r = csms.call("CP1", "ChangeAvailability", {"connectorId": 0, "type": "Operative"})
    assert r["result"]["status"] == "Accepted"
    sim.send("unplug 1")
    next_call(csms, "StopTransaction")
    wait_status(csms, 1, "Available")
    time.sleep(1)
    assert "Unavailable" not in statuses(csms, 1) + statuses(csms, 0) + statuses(csms, 2)
    sim.send("reboot")
    wait_calls(csms, "BootNotification", 2)
    time.sleep(1.5)
    assert "Unavailable" not in statuses(csms, 1) + statuses(csms, 0) + statuses(csms, 2)


def test_finishing_after_ev_side_disconnect_and_hard_reset(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    # TC_005_1: StopTransactionOnEVSideDisconnect (default true).
    sim.send("plug 1")
    sim.send("swipe 1 EV1")
    wait_status(csms, 1, "Charging")
    sim.send("unplug 1")
    assert next_call(csms, "StopTransaction")["reason"] == "EVDisconnected"
    s = wait_status(csms, 1, "Available")
    assert s[-3:] == ["Charging", "Finishing", "Available"], s
    # TC_015: a hard reset with the cable in: Finishing after the reboot.
    sim.send("plug 1")
    sim.send("swipe 1 EV2")
    wait_status(csms, 1, "Charging")
    w = Watch(csms).mark("BootNotification", "StatusNotification", "StopTransaction")
    assert csms.call("CP1", "Reset", {"type": "Hard"})["result"]["status"] == "Accepted"
    w.wait("BootNotification", timeout=20)
    assert w.wait("StopTransaction")[0][3]["reason"] == "HardReset"
    s = wait_status(csms, 1, "Finishing")
    assert "Preparing" not in [c[3]["status"] for c in w.new("StatusNotification")
                               if c[3]["connectorId"] == 1]
    sim.send("unplug 1")
    wait_status(csms, 1, "Available")
