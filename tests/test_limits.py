"""The limit acts on the car (issue 13), end to end against tools/sim and tools/csms:
the simulated car follows the pilot, the meter follows the car; local limits, the
dimming contact, the cable rating and (once SmartCharging is in) a TxDefaultProfile cap
the energy; a limit below 6 A pauses the same transaction (SuspendedEVSE, MeterValues
go on) and a higher one resumes it; StopTransaction's meterStop matches the meter."""
import re
import time

import pytest

from helpers import ROOT
from ocpp_steps import booted, Watch, wait_status, start_conf, next_call

_MV = "Energy.Active.Import.Register,Power.Active.Import,Current.Offered,Power.Offered"
_SMART = (ROOT / "lib" / "ocpp16" / "smartcharging.py").exists()


def _register(sim, n=1):
    """The simulated meter's register of connector n now, in Wh (`pulses n 0`)."""
    i0 = len(sim.lines)
    sim.send("pulses %d 0" % n)
    i = sim.wait_line(r"sim: 0 pulses on connector %d, register \d+ Wh" % n, start=i0)
    return int(re.search(r"register (\d+) Wh", sim.lines[i]).group(1))


def _rate_w(sim, secs=6.0, n=1):
    """The power the meter counts, in W, over `secs` (1 Wh resolution: +-1 Wh)."""
    r0, t0 = _register(sim, n), time.monotonic()
    time.sleep(secs)
    r1, t1 = _register(sim, n), time.monotonic()
    return (r1 - r0) * 3600 / (t1 - t0)


def _values(mv):
    return {sv["measurand"]: sv["value"]
            for v in mv["meterValue"] for sv in v["sampledValue"]}


def _wait_values(csms, want, timeout=15):
    """The first MeterValues from now on whose values include `want` (a dict)."""
    w = Watch(csms).mark("MeterValues")
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        for c in w.new("MeterValues"):
            v = _values(c[3])
            if all(v.get(k) == x for k, x in want.items()):
                return c[3]
            seen.append(v)
        w.mark("MeterValues")
        time.sleep(0.1)
    raise AssertionError("no MeterValues with %s; saw %s" % (want, seen[-5:]))


def _pilot(sim, amps, start):
    return sim.wait_line(r"sim: pilot 1 offers %s A$" % amps, start=start)


def _charging(csms, sim, tag, watts=11000, config=()):
    sim.send("plug 1")
    sim.send("power 1 %d" % watts)
    sim.send("swipe 1 " + tag)
    wait_status(csms, 1, "Charging")
    return start_conf(csms)["transactionId"]


def test_local_limit_caps_the_energy_and_zero_pauses_the_same_transaction(start_csms,
                                                                          start_sim):
    csms, sim = booted(start_csms, start_sim, config=[
        ("MeterValueSampleInterval", "1"), ("MeterValuesSampledData", _MV)])
    txid = _charging(csms, sim, "TAG-L")
    i = _pilot(sim, 32, 0)                       # the installation's 32 A (--max-a)
    _wait_values(csms, {"Power.Active.Import": "11000", "Current.Offered": "32.0",
                        "Power.Offered": "22080"})
    # An application's local limit of 10 A: the car takes 10 A x 230 V x 3.
    sim.send("limit 1 10")
    i = _pilot(sim, 10, i)
    _wait_values(csms, {"Power.Active.Import": "6900", "Current.Offered": "10.0",
                        "Power.Offered": "6900"})
    rate = _rate_w(sim)
    assert 6900 * 0.75 < rate < 6900 * 1.25, rate
    # Limit 0: paused, not ended.
    w = Watch(csms).mark("StopTransaction", "MeterValues")
    sim.send("limit 1 0")
    i = _pilot(sim, 0, i)
    wait_status(csms, 1, "SuspendedEVSE")
    r0 = _register(sim)
    mvs = w.wait("MeterValues", 3, timeout=15)
    assert _register(sim) == r0                  # no energy
    assert all(m[3]["transactionId"] == txid for m in mvs)
    last = _values(mvs[-1][3])
    assert last["Power.Active.Import"] == "0" and last["Current.Offered"] == "0.0"
    assert int(last["Energy.Active.Import.Register"]) == r0
    assert w.new("StopTransaction") == []
    # The car has a pilot: the relay stays as the session allows.
    assert not any("relay 1 open" in l for l in sim.lines[i:])
    # The limit goes: charging again, the same transaction, at the car's 11 kW.
    sim.send("limit 1 off")
    _pilot(sim, 32, i)
    wait_status(csms, 1, "Charging")
    rate = _rate_w(sim)
    assert 11000 * 0.75 < rate < 11000 * 1.25, rate
    sim.send("swipe 1 TAG-L")
    stop = w.wait("StopTransaction")[0][3]
    assert stop["transactionId"] == txid
    assert stop["meterStop"] == _register(sim)
    assert len(csms.calls("StartTransaction", cp="CP1")) == 1
    assert csms.invalid() == []


def test_dimming_contact_caps_at_local_power_limit(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, config=[
        ("MeterValueSampleInterval", "1"),
        ("MeterValuesSampledData", "Power.Active.Import,Current.Offered")])
    _charging(csms, sim, "TAG-D")
    i = _pilot(sim, 32, 0)
    # LocalPowerLimit 4200 W (the default) at 230 V on 3 phases: 6.0 A.
    sim.send("dim 1 on")
    i = _pilot(sim, 6, i)
    _wait_values(csms, {"Power.Active.Import": "4140", "Current.Offered": "6.0"})
    rate = _rate_w(sim)
    assert 4140 * 0.75 < rate < 4140 * 1.25, rate
    r = csms.call("CP1", "ChangeConfiguration", {"key": "LocalPowerLimit", "value": "9000"})
    assert r["result"]["status"] == "Accepted"
    i = _pilot(sim, 13, i)                       # 9000 / 690 = 13.0 A
    _wait_values(csms, {"Power.Active.Import": "8970"})
    # The charger's own contact (connector 0) caps it the same way.
    sim.send("dim 0 on")
    sim.send("dim 1 off")
    time.sleep(1)
    assert not any(re.search(r"pilot 1 offers", l) for l in sim.lines[i + 1:])
    r = csms.call("CP1", "ChangeConfiguration", {"key": "LocalPowerLimit", "value": "3000"})
    assert r["result"]["status"] == "Accepted"
    i = _pilot(sim, 0, i)                        # 4.3 A: below 6 A, paused
    wait_status(csms, 1, "SuspendedEVSE")
    sim.send("dim 0 off")
    _pilot(sim, 32, i)
    wait_status(csms, 1, "Charging")
    assert len(csms.calls("StopTransaction", cp="CP1")) == 0
    assert csms.invalid() == []


def test_cable_rating_installation_maximum_and_a_one_phase_car(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, config=[
        ("MeterValueSampleInterval", "1"),
        ("MeterValuesSampledData", "Power.Active.Import,Current.Import,Current.Offered")],
        extra=("--max-a", "20"))
    _charging(csms, sim, "TAG-C")
    i = _pilot(sim, 20, 0)
    _wait_values(csms, {"Power.Active.Import": "11000", "Current.Offered": "20.0"})
    sim.send("cable 1 16")
    i = _pilot(sim, 16, i)
    # A 1-phase car on it: 16 A x 230 V.
    sim.send("phases 1 1")
    _wait_values(csms, {"Power.Active.Import": "3680", "Current.Import": "16.0"})
    rate = _rate_w(sim)
    assert 3680 * 0.75 < rate < 3680 * 1.25, rate
    assert csms.invalid() == []


def test_a_car_that_stops_drawing_is_suspended_ev_and_a_pause_is_suspended_evse(start_csms,
                                                                                start_sim):
    csms, sim = booted(start_csms, start_sim)
    _charging(csms, sim, "TAG-E", watts=7000)
    i = _pilot(sim, 32, 0)
    end = time.monotonic() + 10
    while _register(sim) < 2 and time.monotonic() < end:    # it has drawn
        time.sleep(0.2)
    sim.send("power 1 0")
    wait_status(csms, 1, "SuspendedEV")
    sim.send("power 1 7000")
    wait_status(csms, 1, "Charging")
    sim.send("limit 0 5")                        # the whole charger: 5 A, below 6 A
    _pilot(sim, 0, i)
    wait_status(csms, 1, "SuspendedEVSE")
    sim.send("limit 0 off")
    wait_status(csms, 1, "Charging")
    assert len(csms.calls("StopTransaction", cp="CP1")) == 0
    assert csms.invalid() == []


def _tx_default(limit, pid=1):
    return {"connectorId": 0, "csChargingProfiles": {
        "chargingProfileId": pid, "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
        "chargingSchedule": {"startSchedule": "2020-01-01T00:00:00Z", "chargingRateUnit": "A",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit,
                                                         "numberPhases": 3}]}}}


@pytest.mark.skipif(not _SMART, reason="needs lib/ocpp16/smartcharging.py (SC)")
def test_tx_default_profile_6_a_meters_at_its_rate_0_pauses_and_raising_resumes(start_csms,
                                                                                start_sim):
    csms, sim = booted(start_csms, start_sim, config=[
        ("MeterValueSampleInterval", "1"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Power.Active.Import,"
                                   "Current.Offered,Power.Offered")])
    r = csms.call("CP1", "SetChargingProfile", _tx_default(6.0))
    assert r["result"]["status"] == "Accepted", r
    txid = _charging(csms, sim, "TAG-S")          # a car of 11 kW
    i = _pilot(sim, 6, 0)
    _wait_values(csms, {"Power.Active.Import": "4140", "Current.Offered": "6.0",
                        "Power.Offered": "4140"})
    rate = _rate_w(sim, 8)
    assert 4140 * 0.8 < rate < 4140 * 1.2, rate   # 6 A x 230 V x 3
    # Limit 0: SuspendedEVSE, no energy, the same transaction, MeterValues go on.
    w = Watch(csms).mark("MeterValues", "StopTransaction")
    r = csms.call("CP1", "SetChargingProfile", _tx_default(0.0))
    assert r["result"]["status"] == "Accepted", r
    i = _pilot(sim, 0, i)
    wait_status(csms, 1, "SuspendedEVSE")
    r0 = _register(sim)
    mvs = w.wait("MeterValues", 3, timeout=15)
    assert _register(sim) == r0
    assert all(m[3]["transactionId"] == txid for m in mvs)
    # Raised: charging resumes.
    r = csms.call("CP1", "SetChargingProfile", _tx_default(16.0))
    assert r["result"]["status"] == "Accepted", r
    _pilot(sim, 16, i)
    wait_status(csms, 1, "Charging")
    rate = _rate_w(sim)
    assert 11000 * 0.75 < rate < 11000 * 1.25, rate
    sim.send("swipe 1 TAG-S")
    stop = w.wait("StopTransaction")[0][3]
    assert stop["transactionId"] == txid and stop["meterStop"] == _register(sim)
    assert w.new("StopTransaction")[0][3]["meterStop"] > r0
    assert csms.invalid() == []
