"""When the firmware crashes (issue: safe on the chip, part 3): every relay opens first,
the crash is counted and logged on flash, the charger restarts; a crash loop ends in safe
mode, still connected, reporting Faulted/InternalError; a boot that runs registered long
enough resets the count.  `crash` is the simulator's way of making the firmware fail as a
bug would (cp.fatal: run() raises out of main())."""
import json

from mp.txlog import prepare_state
from ocpp_steps import Watch, wait_calls, wait_status

CFG = {"MinimumStatusDuration": 0, "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1}


def test_a_crash_opens_the_relays_and_a_crash_loop_ends_in_safe_mode(start_csms, start_sim,
                                                                      tmp_path):
    csms = start_csms("--heartbeat", "300")
    state = prepare_state(tmp_path / "st", CFG)
    sim = start_sim(csms.url, state=state, extra=("--healthy-ms", "600000"))
    wait_calls(csms, "StatusNotification", 2)
    sim.send("plug 1")
    sim.send("swipe 1 CRASH")
    sim.send("power 1 7000")
    wait_status(csms, 1, "Charging")
    sim.wait_line("sim: relay 1 closed")
    for k in (1, 2, 3):
        i = len(sim.lines)
        w = Watch(csms).mark("BootNotification")
        sim.send("crash")
        j = sim.wait_line(r"crash: RuntimeError\('crash injected by the simulator',\) "
                          r"\(%d in a row\)" % k, start=i)
        if k == 1:
            # The relay opened before anything else went on: right after the crash.
            assert any("sim: relay 1 open" in ln for ln in sim.lines[i:j + 1]), sim.lines[i:]
        w.wait("BootNotification", timeout=20)
    assert json.loads((state / "crashes").read_text())["n"] == 3
    log = (state / "crash.log").read_text()
    assert log.count("---- crash") == 3 and "RuntimeError" in log
    # Safe mode: connected, every connector Faulted with InternalError and the reason.
    sim.wait_line(r"crash: SAFE MODE after 3 crashes in a row")
    faulted = csms.wait(lambda e: e.get("ev") == "recv" and e["frame"][2:3] ==
                        ["StatusNotification"] and e["frame"][3]["connectorId"] == 0
                        and e["frame"][3]["status"] == "Faulted", timeout=20)["frame"][3]
    assert faulted["errorCode"] == "InternalError" and "safe mode, 3 crashes" in faulted["info"]
    wait_status(csms, 1, "Faulted")
    # Nothing charges: the cable is in and a card is swiped, the relay stays open.
    n = len(sim.lines)
    sim.send("swipe 1 CRASH2")
    sim.wait_line(r"card CRASH2 at connector 1", start=n)
    assert not any("relay 1 closed" in ln for ln in sim.lines[n:])
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "R", "connectorId": 1})
    assert r["result"]["status"] == "Rejected"
    # The transaction that ran at the first crash was closed at the next boot (sent again
    # if a later crash came before its answer: the same message).
    stops = csms.calls("StopTransaction", cp="CP1")
    assert stops and len({json.dumps(f[3], sort_keys=True) for f in stops}) == 1, stops
    assert stops[0][3]["idTag"] == "CRASH" and stops[0][3]["reason"] == "PowerLoss"


def test_a_boot_that_runs_registered_resets_the_count(start_csms, start_sim, tmp_path):
    csms = start_csms("--heartbeat", "300")
    state = prepare_state(tmp_path / "st", CFG)
    (state / "crashes").write_text(json.dumps({"n": 3, "last": "RuntimeError('x')"}))
    sim = start_sim(csms.url, state=state, extra=("--healthy-ms", "1500"))
    sim.wait_line(r"crash: SAFE MODE after 3 crashes in a row \(last: RuntimeError\('x'\)\)")
    sim.wait_line(r"crash: ran 1 s registered: crash count reset", timeout=15)
    assert not (state / "crashes").exists()
    # The next restart is a normal one: no safe mode, the connector is Available.
    w = Watch(csms).mark("BootNotification")
    sim.send("reboot")
    w.wait("BootNotification", timeout=20)
    wait_status(csms, 0, "Available")
