"""Boot sequence of the simulated charger against tools/csms (OCTT TC_001/TC_002 style)."""
import json
import os
import re

from helpers import ROOT, micropython
from ocpp_steps import wait_calls as _wait_calls


def _call_times(csms, action, cp="CP1"):
    return [e["t"] for e in csms.events("recv", cp=cp)
            if e["frame"][0] == 2 and e["frame"][2] == action]


def test_boot_pending_then_accepted_statuses_and_heartbeat(start_csms, start_sim):
    csms = start_csms("--boot", "pending", "--heartbeat", "1")
    sim = start_sim(csms.url, connectors=2)
    first = _wait_calls(csms, "BootNotification", 1)[0]
    p = first[3]
    assert p["chargePointVendor"] and p["chargePointModel"]
    assert len(p["chargePointVendor"]) <= 20 and len(p["chargePointModel"]) <= 20
    # While Pending the charger re-sends Boot after the interval and sends nothing else.
    _wait_calls(csms, "BootNotification", 2, timeout=10)
    assert [c[2] for c in csms.calls(cp="CP1")] == ["BootNotification"] * 2
    csms.cmd("boot accepted 2")
    _wait_calls(csms, "StatusNotification", 3, timeout=15)
    actions = [c[2] for c in csms.calls(cp="CP1")]
    boots = [i for i, a in enumerate(actions) if a == "BootNotification"]
    assert all(a == "BootNotification" for a in actions[:boots[-1] + 1])
    status = [c[3] for c in csms.calls("StatusNotification", cp="CP1")]
    assert sorted(s["connectorId"] for s in status[:3]) == [0, 1, 2]
    assert all(s["status"] == "Available" and s["errorCode"] == "NoError" for s in status[:3])
    assert all(s["timestamp"].endswith("Z") and not s["timestamp"].startswith("19")
               for s in status[:3])
    # Heartbeats at the interval from BootNotification.conf (2 s).
    _wait_calls(csms, "Heartbeat", 3, timeout=15)
    t = _call_times(csms, "Heartbeat")
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert all(1.5 <= g <= 3.0 for g in gaps), gaps
    assert csms.invalid() == []
    assert sim.alive()


def test_boot_rejected_waits_for_interval(start_csms, start_sim):
    csms = start_csms("--boot", "rejected", "--heartbeat", "2")
    start_sim(csms.url)
    _wait_calls(csms, "BootNotification", 2, timeout=10)
    t = _call_times(csms, "BootNotification")
    assert t[1] - t[0] >= 1.8, t
    assert {c[2] for c in csms.calls(cp="CP1")} == {"BootNotification"}
    csms.cmd("boot accepted 30")
    _wait_calls(csms, "StatusNotification", 2, timeout=10)
    assert csms.invalid() == []


def test_reconnect_after_server_drops(start_csms, start_sim):
    csms = start_csms("--heartbeat", "30")
    sim = start_sim(csms.url)
    _wait_calls(csms, "StatusNotification", 2)
    assert len(csms.events("connect", cp="CP1")) == 1
    csms.cmd("drop CP1")
    csms.wait(lambda e: e["ev"] == "connect" and e["cp"] == "CP1"
              and len(csms.events("connect", cp="CP1")) >= 2, timeout=20)
    # An abrupt TCP reset is survived too.
    csms.cmd("drop CP1 abort")
    csms.wait(lambda e: e["ev"] == "connect" and len(csms.events("connect", cp="CP1")) >= 3,
              timeout=20)
    # Registered already: a reconnect is not a reboot, no second BootNotification.
    assert len(csms.calls("BootNotification", cp="CP1")) == 1
    # The link is usable after reconnecting: a CS-initiated call is answered.
    r = csms.cmd('call CP1 Heartbeat {}', timeout=20)
    assert "reply" == r["ev"]
    assert sim.alive()


def _documented_commands():
    """Command names as the board's HELP, the README and tools/sim's header list them."""
    board = (ROOT / "boards" / "unix_sim" / "board.py").read_text()
    help_text = "".join(re.findall(r'"([^"]*)"', re.search(r"HELP = \((.*?)\)\n", board, re.S).group(1)))
    from_help = [c.split()[0] for c in help_text.split("commands:")[1].split("|")]
    readme = (ROOT / "README.md").read_text()
    para = readme[readme.index("Commands on stdin"):]
    para = para[:para.index("\n\n")]
    from_readme = re.findall(r"`([a-z]+)[ `]", para)
    sim = [l.lstrip("# ") for l in (ROOT / "tools" / "sim").read_text().splitlines()
           if l.startswith("#") and " | " in l]
    from_sim = [c.split()[0] for c in " ".join(sim).split("stdin:")[1].split("|")]
    return from_help, from_readme, from_sim


def test_help_readme_and_launcher_document_the_same_commands():
    from_help, from_readme, from_sim = _documented_commands()
    assert len(from_help) >= 12 and len(set(from_help)) == len(from_help), from_help
    assert set(from_readme) == set(from_help), (from_readme, from_help)
    assert set(from_sim) == set(from_help), (from_sim, from_help)


def test_sim_accepts_every_documented_command(start_csms, start_sim):
    csms = start_csms("--heartbeat", "30")
    sim = start_sim(csms.url, connectors=2)
    _wait_calls(csms, "StatusNotification", 3)
    n0 = len(sim.lines)
    tested = set()
    for cmd, expect, then in (
            ("plug 1", r"connector 1 plugged", None),
            ("swipe 1 TAG1", r"card TAG1 at connector 1", "StartTransaction"),
            ("power 1 11000", r"connector 1 draws 11000 W", None),
            ("phases 1 1", r"EV on connector 1 charges on 1 phase\(s\)", None),
            ("limit 1 16", r"sim: local limit 1 16 A", None),
            ("dim 0 on", r"sim: dimming contact 0 on", None),
            ("pulses 2 500", r"500 pulses on connector 2, register 500 Wh", None),
            ("stop 1 EmergencyStop", r"stop button on connector 1 \(EmergencyStop\)",
             "StopTransaction"),
            ("stop 2", r"stop button on connector 2 \(Local\)", None),
            ("unplug 1", r"connector 1 unplugged", None),
            ("storage", r"sim: storage queued=\d+ dropped_meter=0 refused=0 free=", None),
            ("heap", r"sim: heap used=\d+ free=\d+ largest_free_block=\d+", None),
            ("reservations", r"sim: reservations 0$", None),
            ("cable 2 detachable", r"connector 2 has a detachable cable", None),
            ("lock 2 ok", r"connector 2 lock will work", None),
            ("unlock 2 ok", r"connector 2 unlock will work", None),
            ("fault 2 GroundFailure", r"sim: fault GroundFailure on connector 2", None)):
        sim.send(cmd)
        sim.wait_line(expect, start=n0, timeout=10)
        if then:    # what the command does reaches the central system
            _wait_calls(csms, then, 1)
        tested.add(cmd.split()[0])
    assert csms.calls("StopTransaction", cp="CP1")[0][3]["reason"] == "EmergencyStop"
    # fault / clear: the connector reports Faulted with the code, then Available again.
    csms.wait(lambda e: e["ev"] == "recv" and e["frame"][2:3] == ["StatusNotification"]
              and e["frame"][3] == {**e["frame"][3], "connectorId": 2, "status": "Faulted",
                                    "errorCode": "GroundFailure"}, timeout=10)
    sim.send("clear 2")
    sim.wait_line(r"sim: fault on connector 2 cleared", start=n0, timeout=10)
    tested.add("clear")
    csms.wait(lambda e: e["ev"] == "recv" and e["frame"][2:3] == ["StatusNotification"]
              and e["frame"][3]["connectorId"] == 2 and e["frame"][3]["status"] == "Available",
              timeout=10)
    # reboot: the firmware restarts in the same process and boots again.
    sim.send("reboot")
    sim.wait_line(r"sim: ---- reboot ----", start=n0, timeout=20)
    tested.add("reboot")
    _wait_calls(csms, "BootNotification", 2, timeout=20)
    # crash: fails as a bug would, is counted, and the firmware starts again.
    sim.send("crash")
    sim.wait_line(r"crash: RuntimeError\('crash injected by the simulator',\) \(1 in a row\)",
                  start=n0, timeout=10)
    tested.add("crash")
    _wait_calls(csms, "BootNotification", 3, timeout=20)
    n0 = len(sim.lines)
    sim.send("frobnicate 7")
    sim.wait_line(r"unknown command 'frobnicate 7'.*commands: plug N", start=n0, timeout=10)
    sim.send("plug 9")
    sim.wait_line(r"bad command 'plug 9': no connector 9", start=n0, timeout=10)
    # Still alive and talking: plug produces a StatusNotification after the bad commands.
    k = len(csms.calls("StatusNotification", cp="CP1"))
    sim.send("plug 2")
    _wait_calls(csms, "StatusNotification", k + 1)
    assert csms.calls("StatusNotification", cp="CP1")[-1][3]["status"] == "Preparing"
    sim.send("quit")
    sim.proc.wait(timeout=10)
    assert sim.proc.returncode == 0
    tested.add("quit")
    assert tested == set(_documented_commands()[0])


def test_configuration_from_the_state_directory_and_flags_override(start_csms, start_sim,
                                                                    tmp_path):
    csms = start_csms("--heartbeat", "30")
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps(
        {"CentralSystemUrl": csms.base + "/site1", "ChargePointId": "CPFILE",
         "MeterValueSampleInterval": 7}))
    # No --csms, no --id: the central system, the id and the OCPP keys come from the file.
    sim = start_sim(None, cp_id=None, state=flash)
    _wait_calls(csms, "StatusNotification", 2, cp="CPFILE")
    assert csms.events("connect", cp="CPFILE")[0]["path"] == "/site1/CPFILE"
    r = csms.call("CPFILE", "GetConfiguration", {"key": ["MeterValueSampleInterval"]})
    assert r["result"]["configurationKey"][0]["value"] == "7"
    assert sim.stop() == 0
    # Flags override the file and are saved to it; the other keys are kept.
    start_sim(csms.base + "/site2", cp_id="CPFLAG", state=flash)
    _wait_calls(csms, "StatusNotification", 2, cp="CPFLAG")
    assert csms.events("connect", cp="CPFLAG")[0]["path"] == "/site2/CPFLAG"
    saved = json.loads((flash / "config.json").read_text())
    assert saved["ChargePointId"] == "CPFLAG"
    assert saved["CentralSystemUrl"] == csms.base + "/site2"
    assert saved["MeterValueSampleInterval"] == 7


def test_sim_leaves_the_micropython_process_itself(start_csms, start_sim):
    """tools/sim execs MicroPython: the pid a caller holds is the firmware's, so SIGKILL
    on it is a power cut (tests/test_powercut.py relies on it)."""
    csms = start_csms("--heartbeat", "30")
    sim = start_sim(csms.url)
    _wait_calls(csms, "StatusNotification", 2)
    exe = os.path.realpath("/proc/%d/exe" % sim.proc.pid)
    assert exe == os.path.realpath(micropython()), exe
    assert "firmware/main.py" in open("/proc/%d/cmdline" % sim.proc.pid).read()
    sim.kill()
    assert sim.proc.returncode == -9
    csms.wait(lambda e: e["ev"] == "disconnect" and e["cp"] == "CP1", timeout=20)


def test_clock_is_taken_from_the_central_system(start_csms, start_sim):
    """The charger's timestamps follow BootNotification.conf's currentTime, not the host's
    clock: a central system 3 days and 5 minutes ahead moves them all."""
    import datetime
    offset = 3 * 86400 + 300
    csms = start_csms("--heartbeat", "2", "--clock-offset", str(offset))
    start_sim(csms.url)
    _wait_calls(csms, "StatusNotification", 2)
    boot_time = csms.events("recv", cp="CP1")[0]["t"]
    ahead = datetime.datetime.fromtimestamp(boot_time + offset, datetime.timezone.utc)
    for s in csms.calls("StatusNotification", cp="CP1"):
        t = datetime.datetime.strptime(s[3]["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
        assert abs((t - ahead).total_seconds()) < 5, (s[3]["timestamp"], ahead)
