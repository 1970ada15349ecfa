"""SmartCharging profile (lib/ocpp16/smartcharging.py, schedule.py) end to end against
tools/sim and tools/csms (schema validation on): OCTT TC_056..060, 066, 067, 072, 082,
null fields, the limits, a reboot, and recurring profiles after a reboot offline."""
import os
import time
from datetime import datetime, timezone

from ocpp_steps import booted, next_call, Watch, wait_status, start_conf, answer_to


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _unix(s):
    return int(datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
               .replace(tzinfo=timezone.utc).timestamp())


def _prof(pid, purpose, periods, stack=0, kind="Absolute", unit="A", duration=None,
          start=None, valid=None, txid=None, recur=None, minrate=None):
    """A chargingProfile; periods: (startPeriod, limit[, numberPhases]) tuples."""
    sched = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        dict({"startPeriod": p[0], "limit": p[1]}, **({"numberPhases": p[2]} if len(p) > 2
                                                      else {})) for p in periods]}
    if duration is not None:
        sched["duration"] = duration
    if start is not None:
        sched["startSchedule"] = _iso(start)
    if minrate is not None:
        sched["minChargingRate"] = minrate
    p = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind, "chargingSchedule": sched}
    if valid:
        p["validFrom"], p["validTo"] = _iso(valid[0]), _iso(valid[1])
    if txid is not None:
        p["transactionId"] = txid
    if recur:
        p["recurrencyKind"] = recur
    return p


def _set(csms, n, prof):
    r = csms.call("CP1", "SetChargingProfile", {"connectorId": n, "csChargingProfiles": prof})
    assert r["ok"], r
    return r["result"]["status"]


def _clear(csms, **kw):
    r = csms.call("CP1", "ClearChargingProfile", kw)
    assert r["ok"], r
    return r["result"]["status"]


def _composite(csms, n, dur, unit=None):
    p = {"connectorId": n, "duration": dur}
    if unit:
        p["chargingRateUnit"] = unit
    r = csms.call("CP1", "GetCompositeSchedule", p)
    assert r["ok"], r
    return r["result"]


def _periods(res):
    return [(p["startPeriod"], p["limit"]) + ((p["numberPhases"],) if "numberPhases" in p
                                              else ()) for p in
            res["chargingSchedule"]["chargingSchedulePeriod"]]


def _shifted(table, d, dur):
    """The period table of a schedule that began d s before the composite's start: what
    the composite over `dur` s must show (the request arrives d s after the start)."""
    out = []
    for s, lim in table:
        s = max(0, s - d)
        if s >= dur:
            break
        if out and out[-1][0] == s:
            out.pop()
        if not out or out[-1][1] != lim:
            out.append((s, lim))
    return out


def _check_table(res, t_start, table, dur, n=1):
    assert res["status"] == "Accepted" and res["connectorId"] == n, res
    t0 = _unix(res["scheduleStart"])
    sch = res["chargingSchedule"]
    assert _unix(sch["startSchedule"]) == t0 and sch["duration"] == dur
    d = t0 - t_start
    assert 0 <= d < 30, d
    assert _periods(res) == _shifted(table, d, dur), (d, _periods(res))


def _charging(csms, sim, tag="TAG1"):
    w = Watch(csms).mark("StartTransaction")
    sim.send("plug 1")
    sim.send("swipe 1 %s" % tag)
    w.wait("StartTransaction")
    wait_status(csms, 1, "Charging")
    return start_conf(csms)["transactionId"]


def _stored(sim):
    path = os.path.join(sim.state, "chargingprofiles.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [ln for ln in f.read().splitlines() if ln]


# The OCTT TC_066 profiles (limits in A; the period table of the test document).
CPMAX_066 = [(0, 10)]
TXDEF_066 = [(0, 6), (60, 10), (120, 8), (180, 25), (260, 8)]
TX_066 = [(0, 8), (50, 11), (140, 16), (200, 6), (240, 12)]
TABLE_066 = [(0, 8), (50, 10), (200, 6), (240, 10), (260, 8), (300, 10)]


def test_tc056_txdefault_profile_and_its_schedule(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    t = int(time.time()) - 5
    prof = _prof(1, "TxDefaultProfile", [(0, 6), (60, 10), (120, 8)], duration=300, start=t,
                 valid=(t, t + 3 * 86400))
    assert _set(csms, 1, prof) == "Accepted"
    # After its duration (the request came a few seconds after its start): no profile,
    # the connector's maximum (the simulator's 32 A).
    _check_table(_composite(csms, 1, 300), t, [(0, 6), (60, 10), (120, 8), (300, 32)], 300)
    # The same in W: 6 A x 230 V x 3 phases.
    _check_table(_composite(csms, 1, 300, "W"), t,
                 [(0, 4140), (60, 6900), (120, 5520), (300, 22080)], 300)
    assert _stored(sim) and len(_stored(sim)) == 1
    assert csms.invalid() == []


def test_tc057_txprofile_on_a_running_transaction_ends_with_it(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    txid = _charging(csms, sim)
    t = int(time.time()) - 5
    prof = _prof(7, "TxProfile", [(0, 6)], start=t, txid=txid)
    assert _set(csms, 1, prof) == "Accepted"
    res = _composite(csms, 1, 120)
    assert _periods(res) == [(0, 6)]
    assert _stored(sim) is None                 # TxProfiles live with their transaction
    sim.send("swipe 1 TAG1")                    # stops it
    next_call(csms, "StopTransaction")
    sim.wait_line(r"smartcharging: TxProfile of connector 1 ended")
    assert "chargingSchedule" not in _composite(csms, 1, 120)
    assert csms.invalid() == []


def test_tc058_txprofile_without_or_with_another_transaction_rejected(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    t = int(time.time()) - 5
    # TC_058_1: no transaction.
    assert _set(csms, 1, _prof(8, "TxProfile", [(0, 6)], start=t)) == "Rejected"
    assert _set(csms, 1, _prof(8, "TxProfile", [(0, 6)], start=t, txid=1)) == "Rejected"
    txid = _charging(csms, sim)
    # TC_058_2: a transactionId that is not the connector's.
    assert _set(csms, 1, _prof(8, "TxProfile", [(0, 6)], start=t, txid=txid + 100)) \
        == "Rejected"
    assert _set(csms, 0, _prof(8, "TxProfile", [(0, 6)], start=t, txid=txid)) == "Rejected"
    assert "chargingSchedule" not in _composite(csms, 1, 60)
    assert _set(csms, 1, _prof(8, "TxProfile", [(0, 6)], start=t, txid=txid)) == "Accepted"
    assert _periods(_composite(csms, 1, 60)) == [(0, 6)]
    assert csms.invalid() == []


def test_tc059_remote_start_with_a_txprofile(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    w = Watch(csms).mark("StartTransaction")
    prof = _prof(9, "TxProfile", [(0, 6), (40, 16)], kind="Relative")
    r = csms.call("CP1", "RemoteStartTransaction",
                  {"connectorId": 1, "idTag": "REMOTE", "chargingProfile": prof})
    assert r["result"]["status"] == "Accepted", r
    w.wait("StartTransaction")
    sim.wait_line(r"smartcharging: profile 9 applies to local #\d+")
    wait_status(csms, 1, "Charging")
    # Relative: from the transaction's start (a few seconds ago).
    res = _composite(csms, 1, 100)
    p = _periods(res)
    assert p[0] == (0, 6) and p[1][1] == 16 and 30 <= p[1][0] <= 40, p
    assert csms.invalid() == []


def test_tc060_remote_start_with_another_purpose_rejected(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("StartTransaction", "Authorize")
    for prof in (_prof(10, "TxDefaultProfile", [(0, 6)], kind="Relative"),
                 _prof(10, "ChargePointMaxProfile", [(0, 6)], kind="Relative"),
                 _prof(10, "TxProfile", [(0, 6)], kind="Relative", txid=5)):
        r = csms.call("CP1", "RemoteStartTransaction",
                      {"connectorId": 1, "idTag": "REMOTE", "chargingProfile": prof})
        assert r["result"]["status"] == "Rejected", r
    sim.send("plug 1")
    time.sleep(1.5)
    assert w.new("StartTransaction") == [] and w.new("Authorize") == []
    assert csms.invalid() == []


def test_tc066_composite_of_the_three_purposes_is_the_documents_table(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    txid = _charging(csms, sim)
    t = int(time.time()) - 5
    v = (t, t + 3 * 86400)
    assert _set(csms, 0, _prof(1, "ChargePointMaxProfile", CPMAX_066, duration=86400,
                               start=t, valid=v)) == "Accepted"
    assert _set(csms, 1, _prof(2, "TxDefaultProfile", TXDEF_066, duration=300, start=t,
                               valid=v)) == "Accepted"
    assert _set(csms, 1, _prof(3, "TxProfile", TX_066, duration=260, start=t, valid=v,
                               txid=txid)) == "Accepted"
    _check_table(_composite(csms, 1, 400), t, TABLE_066, 400)
    # Connector 0: the ChargePointMaxProfile alone.
    _check_table(_composite(csms, 0, 400), t, CPMAX_066, 400, n=0)
    assert csms.invalid() == []


def test_tc067_clear_by_id_by_purpose_and_stack_and_all(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    t = int(time.time()) - 5
    assert _clear(csms) == "Unknown"                       # nothing to clear
    assert _set(csms, 1, _prof(1, "TxDefaultProfile", [(0, 6)], start=t)) == "Accepted"
    assert _set(csms, 1, _prof(2, "TxDefaultProfile", [(0, 7)], stack=1, start=t)) \
        == "Accepted"
    assert _set(csms, 0, _prof(3, "ChargePointMaxProfile", [(0, 16)], start=t)) == "Accepted"
    assert len(_stored(sim)) == 3
    assert _periods(_composite(csms, 1, 60)) == [(0, 7)]
    assert _clear(csms, id=2) == "Accepted"
    assert _clear(csms, id=2) == "Unknown"
    assert _periods(_composite(csms, 1, 60)) == [(0, 6)]
    assert _clear(csms, chargingProfilePurpose="TxDefaultProfile", stackLevel=1) == "Unknown"
    assert _clear(csms, chargingProfilePurpose="TxDefaultProfile", stackLevel=0) == "Accepted"
    assert _periods(_composite(csms, 1, 60)) == [(0, 16)]
    assert _clear(csms, connectorId=1) == "Unknown"        # the CPMax is connector 0's
    assert _clear(csms) == "Accepted"
    assert "chargingSchedule" not in _composite(csms, 1, 60)
    assert _stored(sim) is None
    assert csms.invalid() == []


def test_tc072_stacked_txdefault_profiles(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    t = int(time.time()) - 5
    v = (t, t + 3 * 86400)
    assert _set(csms, 1, _prof(1, "TxDefaultProfile", [(0, 6), (50, 5), (100, 8), (200, 10)],
                               duration=400, start=t, valid=v)) == "Accepted"
    assert _set(csms, 1, _prof(2, "TxDefaultProfile", [(0, 7), (100, 9)], stack=1,
                               duration=150, start=t, valid=v)) == "Accepted"
    _check_table(_composite(csms, 1, 350), t, [(0, 7), (100, 9), (150, 8), (200, 10)], 350)
    assert csms.invalid() == []


def test_tc082_txdefault_profile_during_a_transaction(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    _charging(csms, sim)
    t = int(time.time()) - 5
    assert _set(csms, 0, _prof(4, "TxDefaultProfile", [(0, 6), (60, 10), (120, 8)],
                               duration=300, start=t)) == "Accepted"    # every connector
    _check_table(_composite(csms, 1, 300), t, [(0, 6), (60, 10), (120, 8), (300, 32)], 300)
    # A connector's own TxDefaultProfile of the same stackLevel goes first.
    assert _set(csms, 1, _prof(5, "TxDefaultProfile", [(0, 12)], start=t)) == "Accepted"
    assert _periods(_composite(csms, 1, 60)) == [(0, 12)]
    assert csms.invalid() == []


def test_units_phases_and_min_charging_rate(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    t = int(time.time()) - 5
    # 11,040 W on 3 phases = 16 A; 3,680 W on 1 phase = 16 A too, shown with its phases.
    assert _set(csms, 1, _prof(1, "TxDefaultProfile", [(0, 11040), (100, 3680, 1)], unit="W",
                               start=t)) == "Accepted"
    p = _periods(_composite(csms, 1, 200, "A"))
    assert [x[1:] for x in p] == [(16,), (16, 1)], p
    p = _periods(_composite(csms, 1, 200, "W"))
    assert [x[1:] for x in p] == [(11040,), (3680, 1)], p
    # A ChargePointMaxProfile of 10 A caps it: compared per phase, shown in its own unit.
    assert _set(csms, 0, _prof(2, "ChargePointMaxProfile", [(0, 10)], start=t)) == "Accepted"
    assert [x[1:] for x in _periods(_composite(csms, 1, 200, "W"))] == [(6900,)]
    # Below the schedule's minChargingRate nothing is offered.
    assert _set(csms, 1, _prof(1, "TxDefaultProfile", [(0, 16)], start=t, minrate=12)) \
        == "Accepted"
    assert _periods(_composite(csms, 1, 60)) == [(0, 0)]
    assert csms.invalid() == []


def test_limits_rejected_and_nothing_stored(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    r = csms.call("CP1", "GetConfiguration", {"key": [
        "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit",
        "ChargingScheduleMaxPeriods", "MaxChargingProfilesInstalled",
        "ConnectorSwitch3to1PhaseSupported", "SupportedFeatureProfiles"]})
    keys = {k["key"]: k["value"] for k in r["result"]["configurationKey"]}
    assert keys["ChargeProfileMaxStackLevel"] == "8" and keys["ChargingScheduleMaxPeriods"] == "24"
    assert keys["MaxChargingProfilesInstalled"] == "10"
    assert keys["ChargingScheduleAllowedChargingRateUnit"] == "Current,Power"
    assert keys["ConnectorSwitch3to1PhaseSupported"] == "false"
    assert "SmartCharging" in keys["SupportedFeatureProfiles"].split(",")
    t = int(time.time()) - 5
    for s in range(9):                          # stack levels 0..8 on connector 1
        assert _set(csms, 1, _prof(100 + s, "TxDefaultProfile", [(0, 6 + s)], stack=s,
                                   start=t)) == "Accepted"
    assert _set(csms, 0, _prof(200, "ChargePointMaxProfile", [(0, 32)], start=t)) == "Accepted"
    before = _stored(sim)
    assert len(before) == 10
    # An 11th profile; stack level 9; 25 periods; 4 phases; a CPMax on a connector;
    # a first period not at 0: all Rejected, nothing stored.
    assert _set(csms, 0, _prof(300, "TxDefaultProfile", [(0, 6)], start=t)) == "Rejected"
    assert _set(csms, 1, _prof(108, "TxDefaultProfile", [(0, 6)], stack=9, start=t)) \
        == "Rejected"
    assert _set(csms, 1, _prof(108, "TxDefaultProfile", [(i * 10, 6) for i in range(25)],
                               stack=8, start=t)) == "Rejected"
    assert _set(csms, 1, _prof(108, "TxDefaultProfile", [(0, 6, 4)], stack=8, start=t)) \
        == "Rejected"
    assert _set(csms, 1, _prof(200, "ChargePointMaxProfile", [(0, 6)], start=t)) == "Rejected"
    assert _set(csms, 1, _prof(108, "TxDefaultProfile", [(5, 6)], stack=8, start=t)) \
        == "Rejected"
    assert _stored(sim) == before
    assert _periods(_composite(csms, 1, 60)) == [(0, 14)]
    # 24 periods fit; replacing (same id, or same stack level) is no 11th profile.
    assert _set(csms, 1, _prof(108, "TxDefaultProfile", [(i * 10, 6 + i) for i in range(24)],
                               stack=8, start=t)) == "Accepted"
    assert _set(csms, 1, _prof(999, "TxDefaultProfile", [(0, 9)], stack=7, start=t)) \
        == "Accepted"
    assert len(_stored(sim)) == 10
    assert csms.invalid() == []


def test_null_fields_are_absent_and_bad_payloads_are_callerrors(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    start = _iso(int(time.time()) - 5)
    csms.cmd('send CP1 [2,"n1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":'
             '{"chargingProfileId":1,"transactionId":null,"stackLevel":0,'
             '"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"Absolute",'
             '"recurrencyKind":null,"validFrom":null,"validTo":null,"chargingSchedule":'
             '{"duration":null,"startSchedule":"%s","chargingRateUnit":"A",'
             '"chargingSchedulePeriod":[{"startPeriod":0,"limit":6.5,"numberPhases":null}],'
             '"minChargingRate":null}}}]' % start)
    assert answer_to(csms, "n1") == [3, "n1", {"status": "Accepted"}]
    csms.cmd('send CP1 [2,"n2","GetCompositeSchedule",{"connectorId":1,"duration":60,'
             '"chargingRateUnit":null}]')
    f = answer_to(csms, "n2")
    assert f[0] == 3 and f[2]["chargingSchedule"]["chargingSchedulePeriod"] == \
        [{"startPeriod": 0, "limit": 6.5}], f
    csms.cmd('send CP1 [2,"n3","ClearChargingProfile",{"id":null,"connectorId":null,'
             '"chargingProfilePurpose":"TxDefaultProfile","stackLevel":null}]')
    assert answer_to(csms, "n3") == [3, "n3", {"status": "Accepted"}]
    csms.cmd('send CP1 [2,"n4","RemoteStartTransaction",{"idTag":"NUL","connectorId":null,'
             '"chargingProfile":null}]')
    assert answer_to(csms, "n4") == [3, "n4", {"status": "Accepted"}]
    bad = {
        "b1": ('"SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"chargingProfileId"'
               ':1,"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile",'
               '"chargingProfileKind":"Absolute","chargingSchedule":{"chargingRateUnit":"A",'
               '"chargingSchedulePeriod":[{"startPeriod":0,"limit":"6"}]}}}',
               "TypeConstraintViolation"),
        "b2": ('"SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"chargingProfileId"'
               ':1,"stackLevel":0,"chargingProfilePurpose":"Other",'
               '"chargingProfileKind":"Absolute","chargingSchedule":{"chargingRateUnit":"A",'
               '"chargingSchedulePeriod":[]}}}', "PropertyConstraintViolation"),
        "b3": ('"ClearChargingProfile",{"extra":1}', "FormationViolation"),
        "b4": ('"GetCompositeSchedule",{"connectorId":1}', "OccurenceConstraintViolation"),
        "b5": ('"SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"chargingProfileId"'
               ':1,"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile",'
               '"chargingProfileKind":"Absolute","validFrom":"soon","chargingSchedule":'
               '{"chargingRateUnit":"A","chargingSchedulePeriod":[{"startPeriod":0,"limit":6}]'
               '}}}', "PropertyConstraintViolation"),
    }
    for uid, (body, code) in bad.items():
        csms.cmd('send CP1 [2,"%s",%s]' % (uid, body))
        f = answer_to(csms, uid)
        assert f[0] == 4 and f[2] == code, (uid, f)
    assert _stored(sim) is None


def test_reboot_keeps_the_profiles_not_the_txprofile(start_csms, start_sim, tmp_path):
    csms, sim = booted(start_csms, start_sim)
    txid = _charging(csms, sim)
    t = int(time.time()) - 5
    assert _set(csms, 0, _prof(1, "ChargePointMaxProfile", [(0, 20)], start=t)) == "Accepted"
    assert _set(csms, 1, _prof(2, "TxDefaultProfile", [(0, 10), (3600, 12)], start=t - 60,
                               kind="Recurring", recur="Daily", duration=7200)) == "Accepted"
    assert _set(csms, 1, _prof(3, "TxProfile", [(0, 8)], start=t, txid=txid)) == "Accepted"
    assert _periods(_composite(csms, 1, 60)) == [(0, 8)]
    state = sim.state
    w = Watch(csms).mark("BootNotification", "StatusNotification")
    sim.stop()
    sim2 = start_sim(csms.url, state=state)
    sim2.wait_line(r"smartcharging: 2 profile\(s\) kept from flash")
    w.wait("BootNotification")
    w.wait("StatusNotification", 2)
    # Back: the ChargePointMaxProfile and the recurring TxDefaultProfile; the TxProfile
    # ended with its transaction (closed at boot).
    res = _composite(csms, 1, 86400)
    p = _periods(res)
    d = _unix(res["scheduleStart"]) - (t - 60)
    assert p[0] == (0, 10) and p[1] == (3600 - d, 12) and p[2] == (7200 - d, 20), p
    assert p[3] == (86400 - d, 10), p          # the next day again
    assert csms.invalid() == []


def test_recurring_profile_after_a_reboot_without_the_central_system(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim,
                       config=[("AllowOfflineTxForUnknownId", "true")])
    now = int(time.time())
    # Daily, begun 3 days ago an hour before this time of day: 7 A for its first two
    # hours, 16 A after.  (Taken as Absolute it would give 16 A now.)
    start = now - 3 * 86400 - 3600
    assert _set(csms, 1, _prof(1, "TxDefaultProfile", [(0, 7), (7200, 16)],
                               kind="Recurring", recur="Daily", start=start)) == "Accepted"
    state = sim.state
    sim.stop()
    url = csms.url
    csms.stop()                                 # no central system after the reboot
    sim2 = start_sim(url, state=state)
    sim2.wait_line(r"smartcharging: 1 profile\(s\) kept from flash")
    sim2.send("plug 1")
    sim2.send("swipe 1 OFFLINE1")
    sim2.wait_line(r"tx: started local")
    sim2.wait_line(r"sim: pilot 1 offers 7(\.0)? A")
