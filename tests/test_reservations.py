"""Reservation profile: ReserveNow / CancelReservation (OCTT TC_046..TC_053), end to end."""
import os
import time

from ocpp_steps import booted, next_call, Watch, wait_status, statuses, answer_to


def _iso(secs):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + secs))


def _reserve(csms, n, tag, rid, secs=300, parent=None, cp="CP1"):
    p = {"connectorId": n, "expiryDate": _iso(secs), "idTag": tag, "reservationId": rid}
    if parent:
        p["parentIdTag"] = parent
    r = csms.call(cp, "ReserveNow", p)
    assert r["ok"], r
    return r["result"]["status"]


def _listed(sim):
    """The `reservations` sim command: (lines about reservations, count)."""
    n = len(sim.lines)
    sim.send("reservations")
    i = sim.wait_line(r"sim: reservations \d+$", start=n)
    rows = [ln for ln in sim.lines[n:i] if "sim: reservation " in ln]
    return rows, int(sim.lines[i].rsplit(" ", 1)[1])


def _refused(sim, tag, n, start=0):
    sim.wait_line(r"reservations: %s refused on connector %d" % (tag, n), start=start)


def test_tc046_1_reserve_then_local_start_with_reservation_id(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    assert _reserve(csms, 1, "RES-TAG", 11) == "Accepted"
    wait_status(csms, 1, "Reserved")
    rows, count = _listed(sim)
    assert count == 1 and "reservation 11 connector 1 idTag RES-TAG parentIdTag -" in rows[0]
    # A second reservation of the same connector: Occupied (§5.13).
    assert _reserve(csms, 1, "RES-TAG", 12) == "Occupied"
    # Another tag is refused at once (no parentIdTag to learn: no Authorize); a cable
    # plugged in does not end the reservation.
    w = Watch(csms).mark("Authorize", "StartTransaction", "StatusNotification")
    sim.send("plug 1")
    k = len(sim.lines)
    sim.send("swipe 1 OTHER")
    _refused(sim, "OTHER", 1, k)
    time.sleep(1.5)
    assert w.new("Authorize") == [] and w.new("StartTransaction") == []
    assert statuses(csms, 1)[-1] == "Reserved"
    sim.send("swipe 1 RES-TAG")
    start = w.wait("StartTransaction")[0][3]
    assert start["idTag"] == "RES-TAG" and start["reservationId"] == 11
    wait_status(csms, 1, "Charging")
    assert _listed(sim)[1] == 0                 # used: the reservation ended
    assert not os.path.exists(os.path.join(sim.state, "resv.json"))
    assert csms.invalid() == []


def test_tc046_2_remote_start_uses_the_reserved_connector(start_csms, start_sim):
    # Two connectors; connector 2 reserved.  RemoteStart without connectorId for the
    # reserved tag starts there; a replacement (same id) moves the reservation.
    csms, sim = booted(start_csms, start_sim, connectors=2)
    assert _reserve(csms, 1, "REMOTE", 21) == "Accepted"
    wait_status(csms, 1, "Reserved")
    assert _reserve(csms, 2, "REMOTE", 21) == "Accepted"     # replaces reservation 21
    wait_status(csms, 2, "Reserved")
    wait_status(csms, 1, "Available")
    assert _listed(sim)[1] == 1
    w = Watch(csms).mark("StartTransaction")
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "REMOTE"})
    assert r["result"]["status"] == "Accepted"
    wait_status(csms, 2, "Preparing")
    sim.send("plug 2")
    start = w.wait("StartTransaction")[0][3]
    assert start["connectorId"] == 2 and start["idTag"] == "REMOTE"
    assert start["reservationId"] == 21
    wait_status(csms, 2, "Charging")
    assert statuses(csms, 1)[-1] == "Available"
    assert csms.invalid() == []


def test_tc047_reservation_expires_then_tag_starts_without_reservation(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    assert _reserve(csms, 1, "LATE", 31, secs=4) == "Accepted"
    wait_status(csms, 1, "Reserved")
    wait_status(csms, 1, "Available", timeout=15)
    sim.wait_line(r"reservations: 31 expired")
    assert _listed(sim)[1] == 0
    w = Watch(csms).mark("StartTransaction")
    sim.send("plug 1")
    sim.send("swipe 1 SOMEONE")                  # anyone may charge again
    start = w.wait("StartTransaction")[0][3]
    assert start["idTag"] == "SOMEONE" and "reservationId" not in start
    assert csms.invalid() == []


def test_tc048_1_faulted(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    sim.send("fault 1 GroundFailure")
    wait_status(csms, 1, "Faulted")
    assert _reserve(csms, 1, "T", 41) == "Faulted"
    sim.send("clear 1")
    wait_status(csms, 1, "Available")
    assert _reserve(csms, 1, "T", 41) == "Accepted"
    wait_status(csms, 1, "Reserved")
    # A connector that becomes Faulted ends its reservation (§5.13).
    sim.send("fault 1 GroundFailure")
    sim.wait_line(r"reservations: 41 ended: connector faulted")
    sim.send("clear 1")
    wait_status(csms, 1, "Available")
    assert _listed(sim)[1] == 0


def test_tc048_2_occupied(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    assert _reserve(csms, 1, "T", 42) == "Occupied"    # a cable in (OCTT: Preparing)
    sim.send("swipe 1 DRIVER")
    wait_status(csms, 1, "Charging")
    assert _reserve(csms, 1, "T", 42) == "Occupied"
    assert _listed(sim)[1] == 0


def test_tc048_3_unavailable(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, connectors=2)
    r = csms.call("CP1", "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert r["result"]["status"] == "Accepted"
    wait_status(csms, 1, "Unavailable")
    assert _reserve(csms, 1, "T", 43) == "Unavailable"
    # Made Unavailable while reserved: the reservation ends (§5.13).
    assert _reserve(csms, 2, "T", 44) == "Accepted"
    wait_status(csms, 2, "Reserved")
    csms.call("CP1", "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})
    sim.wait_line(r"reservations: 44 ended: connector unavailable")
    csms.call("CP1", "ChangeAvailability", {"connectorId": 2, "type": "Operative"})
    wait_status(csms, 2, "Available")


def test_tc048_4_rejected(start_csms, start_sim):
    # The profile is supported (TC_048_4's "not configured for reservations" does not
    # apply): Rejected for a connector that does not exist or an expiryDate passed.
    csms, sim = booted(start_csms, start_sim)
    assert _reserve(csms, 2, "T", 45) == "Rejected"
    assert _reserve(csms, 1, "T", 45, secs=-60) == "Rejected"
    r = csms.call("CP1", "GetConfiguration", {"key": ["ReserveConnectorZeroSupported",
                                                      "SupportedFeatureProfiles"]})
    keys = {k["key"]: k["value"] for k in r["result"]["configurationKey"]}
    assert keys["ReserveConnectorZeroSupported"] == "true"
    assert "Reservation" in keys["SupportedFeatureProfiles"].split(",")
    assert _listed(sim)[1] == 0
    # Optional fields sent as null are absent; a bad expiryDate is a CALLERROR (raw
    # frames: the dev central system validates what it sends).
    csms.cmd('send CP1 [2,"null","ReserveNow",{"connectorId":1,"expiryDate":"%s",'
             '"idTag":"T","parentIdTag":null,"reservationId":46}]' % _iso(300))
    assert answer_to(csms, "null") == [3, "null", {"status": "Accepted"}]
    csms.cmd('send CP1 [2,"bad","ReserveNow",{"connectorId":1,"expiryDate":"soon",'
             '"idTag":"T","reservationId":47}]')
    f = answer_to(csms, "bad")
    assert f[0] == 4 and f[2] == "PropertyConstraintViolation"
    rows, count = _listed(sim)
    assert count == 1 and "reservation 46 connector 1 idTag T parentIdTag -" in rows[0]


def test_tc049_connector_zero_reserves_the_charge_point(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    assert _reserve(csms, 0, "ANY-CONN", 51) == "Accepted"
    wait_status(csms, 1, "Reserved")             # the one connector is kept for the tag
    k = len(sim.lines)
    sim.send("plug 1")
    sim.send("swipe 1 STRANGER")
    _refused(sim, "STRANGER", 1, k)
    w = Watch(csms).mark("StartTransaction")
    sim.send("swipe 1 ANY-CONN")
    start = w.wait("StartTransaction")[0][3]
    assert start["reservationId"] == 51 and start["connectorId"] == 1
    assert _listed(sim)[1] == 0
    assert csms.invalid() == []


def test_connector_zero_keeps_one_free_connector(start_csms, start_sim):
    # §5.13: with 2 connectors and one connector-0 reservation, a first other tag
    # charges; then the last free connector is kept (Reserved) for the reserved tag.
    csms, sim = booted(start_csms, start_sim, connectors=2)
    assert _reserve(csms, 0, "HOLDER", 52) == "Accepted"
    assert _reserve(csms, 0, "HOLDER2", 53) == "Accepted"    # one per free connector
    assert _reserve(csms, 0, "HOLDER3", 54) == "Occupied"
    wait_status(csms, 1, "Reserved")
    wait_status(csms, 2, "Reserved")
    assert csms.call("CP1", "CancelReservation", {"reservationId": 53})["result"]["status"] \
        == "Accepted"
    wait_status(csms, 1, "Available")
    wait_status(csms, 2, "Available")
    # A connector of its own for another tag: connector 1 is then kept for 52.
    assert _reserve(csms, 2, "T", 55) == "Accepted"
    wait_status(csms, 2, "Reserved")
    wait_status(csms, 1, "Reserved")
    assert _reserve(csms, 1, "T2", 56) == "Occupied"     # would leave none for 52
    assert csms.call("CP1", "CancelReservation", {"reservationId": 55})["result"]["status"] \
        == "Accepted"
    wait_status(csms, 1, "Available")
    wait_status(csms, 2, "Available")
    w = Watch(csms).mark("StartTransaction")
    sim.send("plug 1")
    sim.send("swipe 1 FIRST")
    assert "reservationId" not in w.wait("StartTransaction")[0][3]
    wait_status(csms, 2, "Reserved")
    k = len(sim.lines)
    sim.send("plug 2")
    sim.send("swipe 2 SECOND")
    _refused(sim, "SECOND", 2, k)
    assert statuses(csms, 2)[-1] == "Reserved"
    sim.send("swipe 2 HOLDER")
    start = w.wait("StartTransaction", 2)[-1][3]
    assert start["idTag"] == "HOLDER" and start["connectorId"] == 2
    assert start["reservationId"] == 52
    assert csms.invalid() == []


def test_tc050_connector_zero_refusals(start_csms, start_sim):
    # TC_050_1..3 (TC_050_4 "not supported" does not apply: supported).
    csms, sim = booted(start_csms, start_sim)
    sim.send("fault 0 UnderVoltage")
    wait_status(csms, 0, "Faulted")
    assert _reserve(csms, 0, "T", 61) == "Faulted"
    sim.send("clear 0")
    wait_status(csms, 0, "Available")
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    assert _reserve(csms, 0, "T", 62) == "Occupied"
    sim.send("swipe 1 DRIVER")
    wait_status(csms, 1, "Charging")
    assert _reserve(csms, 0, "T", 62) == "Occupied"
    r = csms.call("CP1", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert r["result"]["status"] == "Scheduled"
    sim.send("swipe 1 DRIVER")
    next_call(csms, "StopTransaction")
    wait_status(csms, 0, "Unavailable")
    assert _reserve(csms, 0, "T", 63) == "Unavailable"
    assert _listed(sim)[1] == 0


def test_tc051_cancel_then_start_without_reservation_and_tc052_unknown(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    r = csms.call("CP1", "CancelReservation", {"reservationId": 999})
    assert r["result"]["status"] == "Rejected"            # TC_052, nothing imported yet
    assert _reserve(csms, 1, "CANCELLED", 71) == "Accepted"
    wait_status(csms, 1, "Reserved")
    assert csms.call("CP1", "CancelReservation", {"reservationId": 72})["result"]["status"] \
        == "Rejected"                                     # TC_052
    assert csms.call("CP1", "CancelReservation", {"reservationId": 71})["result"]["status"] \
        == "Accepted"
    wait_status(csms, 1, "Available")
    w = Watch(csms).mark("StartTransaction")
    sim.send("plug 1")
    sim.send("swipe 1 CANCELLED")
    start = w.wait("StartTransaction")[0][3]
    assert start["idTag"] == "CANCELLED" and "reservationId" not in start
    assert csms.invalid() == []


def test_tc053_parent_id_tag_reservation_used_by_a_child_tag(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    csms.cmd("parent CHILD FLEET")
    csms.cmd("parent OUTSIDER OTHERFLEET")
    assert _reserve(csms, 1, "OWNER", 81, parent="FLEET") == "Accepted"
    wait_status(csms, 1, "Reserved")
    sim.send("plug 1")
    w = Watch(csms).mark("Authorize", "StartTransaction")
    k = len(sim.lines)
    sim.send("swipe 1 OUTSIDER")      # its parent must be learnt: Authorize, then refused
    _refused(sim, "OUTSIDER", 1, k)
    assert [c[3]["idTag"] for c in w.new("Authorize")] == ["OUTSIDER"]
    assert w.new("StartTransaction") == []
    sim.send("swipe 1 CHILD")
    start = w.wait("StartTransaction")[0][3]
    assert start["idTag"] == "CHILD" and start["reservationId"] == 81
    assert csms.invalid() == []


def test_reservation_survives_reboot_and_power_cut(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    assert _reserve(csms, 1, "KEPT", 91) == "Accepted"
    wait_status(csms, 1, "Reserved")
    w = Watch(csms).mark("BootNotification", "StatusNotification", "StartTransaction")
    sim.send("reboot")                               # the application restarts
    w.wait("BootNotification", timeout=30)
    sim.wait_line(r"reservations: 1 kept from flash")
    wait_status(csms, 1, "Reserved")
    sim.kill()                                       # power cut
    w.mark("BootNotification", "StatusNotification")
    sim = start_sim(csms.url, state=sim.state)
    w.wait("BootNotification", timeout=30)
    sim.wait_line(r"reservations: 1 kept from flash")
    w.wait("StatusNotification", 2)
    time.sleep(1.5)
    # Reserved from the first StatusNotification on (never Available in between).
    assert [c[3]["status"] for c in w.new("StatusNotification")
            if c[3]["connectorId"] == 1] == ["Reserved"]
    rows, count = _listed(sim)
    assert count == 1 and "reservation 91 connector 1 idTag KEPT" in rows[0]
    k = len(sim.lines)
    sim.send("plug 1")
    sim.send("swipe 1 INTRUDER")
    _refused(sim, "INTRUDER", 1, k)
    sim.send("swipe 1 KEPT")
    start = w.wait("StartTransaction")[0][3]
    assert start["idTag"] == "KEPT" and start["reservationId"] == 91
    assert csms.invalid() == []


def test_reservation_expires_while_the_charger_is_off(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    assert _reserve(csms, 1, "GONE", 95, secs=5) == "Accepted"
    wait_status(csms, 1, "Reserved")
    sim.kill()                                       # off before the expiryDate
    time.sleep(6)
    w = Watch(csms).mark("BootNotification", "StartTransaction")
    sim = start_sim(csms.url, state=sim.state)
    w.wait("BootNotification", timeout=30)
    sim.wait_line(r"reservations: 95 expired")
    wait_status(csms, 1, "Available")
    assert _listed(sim)[1] == 0
    assert not os.path.exists(os.path.join(sim.state, "resv.json"))
    sim.send("plug 1")
    sim.send("swipe 1 ANYONE")
    start = w.wait("StartTransaction")[0][3]
    assert start["idTag"] == "ANYONE" and "reservationId" not in start


def test_remote_start_for_another_tag_on_a_reserved_connector_is_rejected(start_csms, start_sim):
    # RemoteStartTransaction names the reserved connector for a tag that is not the
    # reserved one (and the reservation has no parentIdTag to learn): Rejected at once,
    # not Accepted and then silently dropped.  Without connectorId it goes elsewhere.
    csms, sim = booted(start_csms, start_sim, connectors=2)
    assert _reserve(csms, 1, "OWNER", 61) == "Accepted"
    wait_status(csms, 1, "Reserved")
    w = Watch(csms).mark("Authorize", "StartTransaction")
    r = csms.call("CP1", "RemoteStartTransaction", {"connectorId": 1, "idTag": "INTRUDER"})
    assert r["result"]["status"] == "Rejected"
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "INTRUDER"})
    assert r["result"]["status"] == "Accepted"
    wait_status(csms, 2, "Preparing")
    assert statuses(csms, 1)[-1] == "Reserved"
    assert w.new("StartTransaction") == []
    assert csms.invalid() == []
