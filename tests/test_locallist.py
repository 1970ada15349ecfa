"""LocalAuthListManagement end to end: SendLocalList / GetLocalListVersion (OCTT TC_042,
TC_043), and the list in the authorisation (TC_008, priority over the cache, offline,
LocalPreAuthorize, expiry), across a reboot."""
import json

import pytest

from ocpp_steps import booted, next_call, Watch, wait_status, answer_to

FAST_RECONNECT = [("ReconnectMinSeconds", "1"), ("ReconnectMaxSeconds", "1")]
PAST = "2020-01-01T00:00:00Z"
FUTURE = "2099-01-01T00:00:00Z"


def _send(csms, typ, version, entries=None, cp="CP1"):
    p = {"listVersion": version, "updateType": typ}
    if entries is not None:
        p["localAuthorizationList"] = entries
    r = csms.call(cp, "SendLocalList", p)
    assert r["ok"], r
    return r["result"]["status"]


def _version(csms, cp="CP1"):
    r = csms.call(cp, "GetLocalListVersion", {})
    assert r["ok"], r
    return r["result"]["listVersion"]


def _e(tag, status="Accepted", **kw):
    info = {"status": status}
    info.update(kw)
    return {"idTag": tag, "idTagInfo": info}


def _go_offline(csms, sim):
    n = len(sim.lines)
    csms.cmd("refuse 1000")
    csms.cmd("drop CP1")
    sim.wait_line(r"link: disconnected", start=n)


def _come_back(csms):
    n = len(csms.events("connect", cp="CP1"))
    csms.cmd("refuse 0")
    csms.wait(lambda e: len(csms.events("connect", cp="CP1")) > n, timeout=20)


def _refused(sim, tag, status, start=0):
    sim.wait_line(r"card %s refused \(%s\)" % (tag, status), start=start)


@pytest.mark.skip(reason="TC_042_1 is for a charger without the profile (-1 / NotSupported)")
def test_tc042_1_not_supported():
    pass


def test_tc042_2_empty_list_reports_version_0(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    assert _version(csms) == 0                      # never had a list
    assert _send(csms, "Full", 1, []) == "Accepted"
    assert _version(csms) == 0                      # TC_042_2: empty list -> 0
    assert _send(csms, "Full", 3, [_e("A")]) == "Accepted"
    assert _version(csms) == 3
    # A Differential that removes the last entry empties it: 0 again.
    assert _send(csms, "Differential", 4, [{"idTag": "A"}]) == "Accepted"
    assert _version(csms) == 0
    assert csms.invalid() == []


def test_tc043_full_differential_version_mismatch_and_failed(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    r = csms.call("CP1", "GetConfiguration", {"key": [
        "LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength"]})
    keys = {k["key"]: (k["readonly"], k["value"]) for k in r["result"]["configurationKey"]}
    assert keys == {"LocalAuthListEnabled": (False, "true"),
                    "LocalAuthListMaxLength": (True, "5000"),
                    "SendLocalListMaxLength": (True, "20")}
    # TC_043 / TC_043_2: Full v2, Differential v5, then Differential v4 -> VersionMismatch.
    assert _send(csms, "Full", 2, [_e("A"), _e("B")]) == "Accepted"
    assert _version(csms) == 2
    assert _send(csms, "Differential", 5, [_e("C")]) == "Accepted"
    assert _version(csms) == 5
    assert _send(csms, "Differential", 4, [_e("D")]) == "VersionMismatch"
    assert _send(csms, "Differential", 5, [_e("D")]) == "VersionMismatch"   # not higher
    assert _version(csms) == 5
    # TC_043_3: more entries than SendLocalListMaxLength -> Failed, nothing changed.
    many = [_e("M%02d" % i) for i in range(21)]
    assert _send(csms, "Differential", 6, many) == "Failed"
    assert _send(csms, "Full", 6, many) == "Failed"
    assert _version(csms) == 5
    assert _send(csms, "Differential", 6, many[:20]) == "Accepted"
    assert _version(csms) == 6
    # A Full may go back to a lower version (it replaces everything).
    assert _send(csms, "Full", 1, [_e("Z")]) == "Accepted"
    assert _version(csms) == 1
    assert csms.invalid() == []


def test_bad_payloads_and_null_fields(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    assert _send(csms, "Full", 2, [_e("A"), _e("B", parentIdTag="G")]) == "Accepted"
    # Optional fields sent as JSON null count as absent: idTagInfo null = remove.
    frame = [2, "ll-null", "SendLocalList",
             {"listVersion": 3, "updateType": "Differential", "localAuthorizationList": [
                 {"idTag": "A", "idTagInfo": None},
                 {"idTag": "C", "idTagInfo": {"status": "Accepted", "expiryDate": None,
                                              "parentIdTag": None}}]}]
    csms.cmd("send CP1 " + json.dumps(frame))
    assert answer_to(csms, "ll-null") == [3, "ll-null", {"status": "Accepted"}]
    assert _version(csms) == 3
    for uid, payload, code in (
            ("ll-1", {"listVersion": 4, "updateType": "Sometimes"}, "PropertyConstraintViolation"),
            ("ll-2", {"listVersion": "4", "updateType": "Full"}, "TypeConstraintViolation"),
            ("ll-3", {"listVersion": 4, "updateType": "Full", "localAuthorizationList": [
                {"idTag": "A", "idTagInfo": {"status": "Great"}}]}, "PropertyConstraintViolation"),
            ("ll-4", {"listVersion": 4, "updateType": "Full", "localAuthorizationList": [
                {"idTag": "A" * 21}]}, "PropertyConstraintViolation"),
            ("ll-5", {"updateType": "Full"}, "OccurenceConstraintViolation")):
        csms.cmd("send CP1 " + json.dumps([2, uid, "SendLocalList", payload]))
        f = answer_to(csms, uid)
        assert f[0] == 4 and f[2] == code, f
    assert _version(csms) == 3                      # none of them changed the list


def test_tc008_listed_tag_starts_without_authorize(start_csms, start_sim):
    # LocalPreAuthorize: a tag Accepted in the list starts at once, on a RemoteStart
    # (AuthorizeRemoteTxRequests true) and on a card, with no Authorize.req.
    csms, sim = booted(start_csms, start_sim, config=[("LocalPreAuthorize", "true")])
    assert _send(csms, "Full", 1, [_e("LISTED", expiryDate=FUTURE)]) == "Accepted"
    w = Watch(csms).mark("Authorize", "StartTransaction")
    sim.send("plug 1")
    wait_status(csms, 1, "Preparing")
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "LISTED", "connectorId": 1})
    assert r["result"]["status"] == "Accepted"
    assert w.wait("StartTransaction")[0][3]["idTag"] == "LISTED"
    wait_status(csms, 1, "Charging")
    sim.send("swipe 1 LISTED")
    next_call(csms, "StopTransaction")
    sim.send("unplug 1")
    wait_status(csms, 1, "Available")
    sim.send("plug 1")
    sim.send("swipe 1 listed")                      # idTag is case-insensitive
    assert w.wait("StartTransaction", 2)[1][3]["idTag"] == "listed"
    assert w.new("Authorize") == []
    # A tag that is not listed is asked about.
    sim.send("swipe 1 listed")
    next_call(csms, "StopTransaction")
    sim.send("swipe 1 OTHER")
    assert w.wait("Authorize")[0][3]["idTag"] == "OTHER"


def test_list_before_cache_and_never_cached(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim,
                       config=[("LocalPreAuthorize", "true")] + FAST_RECONNECT)
    # CACHED becomes an Accepted cache entry (Authorize + Start/Stop answers).
    sim.send("plug 1")
    sim.send("swipe 1 CACHED")
    wait_status(csms, 1, "Charging")
    sim.send("swipe 1 CACHED")
    next_call(csms, "StopTransaction")
    sim.wait_line("delivery: queue empty", start=sim.wait_line(r'^>> .*"StopTransaction"'))
    # The list says Blocked: it wins over the cache, so no start from the cache (an
    # Authorize.req goes out instead), and offline the card is refused.
    assert _send(csms, "Full", 1, [_e("CACHED", "Blocked"), _e("BLOCKED", "Blocked")]) \
        == "Accepted"
    w = Watch(csms).mark("Authorize", "StartTransaction")
    sim.send("swipe 1 CACHED")
    assert w.wait("Authorize")[0][3]["idTag"] == "CACHED"
    wait_status(csms, 1, "Charging")                # the central system said Accepted
    sim.send("swipe 1 CACHED")
    next_call(csms, "StopTransaction")
    # BLOCKED: listed Blocked, the central system says Accepted; that answer must not go
    # into the cache (§3.5.1).  Charge with it online, then remove it from the list.
    sim.send("swipe 1 BLOCKED")
    assert w.wait("Authorize", 2)[1][3]["idTag"] == "BLOCKED"
    wait_status(csms, 1, "Charging")
    sim.send("swipe 1 BLOCKED")
    next_call(csms, "StopTransaction")
    sim.wait_line("delivery: queue empty", start=sim.wait_line(r'^>> .*"StopTransaction".*BLOCKED'))
    n = len(sim.lines)
    _go_offline(csms, sim)
    sim.send("swipe 1 CACHED")
    _refused(sim, "CACHED", "Blocked", n)           # the list, not the cache's Accepted
    _come_back(csms)
    assert _send(csms, "Differential", 2, [{"idTag": "BLOCKED"}]) == "Accepted"
    n = len(sim.lines)
    _go_offline(csms, sim)
    sim.send("swipe 1 BLOCKED")
    _refused(sim, "BLOCKED", "Invalid", n)          # unknown offline: it was never cached


def test_offline_list_entries_local_authorize_offline_and_expiry(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim, connectors=2,
                       config=[("AllowOfflineTxForUnknownId", "true")] + FAST_RECONNECT)
    assert _send(csms, "Full", 7, [_e("GOOD", expiryDate=FUTURE, parentIdTag="FLEET"),
                                   _e("OLD", expiryDate=PAST), _e("BAD", "Blocked")]) \
        == "Accepted"
    n = len(sim.lines)
    _go_offline(csms, sim)
    sim.send("plug 1")
    # Listed but not Accepted, or expired: refused even with AllowOfflineTxForUnknownId.
    sim.send("swipe 1 OLD")
    _refused(sim, "OLD", "Expired", n)
    sim.send("swipe 1 BAD")
    _refused(sim, "BAD", "Blocked", n)
    # LocalAuthorizeOffline (default true): a listed Accepted tag charges offline.
    sim.send("swipe 1 GOOD")
    sim.wait_line(r"tx: started local #\d+ on connector 1 for GOOD", start=n)
    _come_back(csms)
    start = next_call(csms, "StartTransaction")
    assert start["idTag"] == "GOOD"
    # LocalAuthorizeOffline false: list entries are not used offline.
    r = csms.call("CP1", "ChangeConfiguration", {"key": "LocalAuthorizeOffline", "value": "false"})
    assert r["result"]["status"] == "Accepted"
    n = len(sim.lines)
    _go_offline(csms, sim)
    sim.send("plug 2")
    sim.send("swipe 2 GOOD")
    sim.wait_line(r"card GOOD refused", start=n)
    _come_back(csms)
    assert csms.invalid() == []


def test_disabled_list_is_kept_but_not_used_and_survives_reboot(start_csms, start_sim, tmp_path):
    state = tmp_path / "state-CP1"
    csms, sim = booted(start_csms, start_sim, state=state,
                       config=[("LocalPreAuthorize", "true")])
    assert _send(csms, "Full", 4, [_e("KEEP")]) == "Accepted"
    r = csms.call("CP1", "ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "false"})
    assert r["result"]["status"] == "Accepted"
    # Still stored and versioned while disabled; lookups ignore it (Authorize is sent).
    assert _send(csms, "Differential", 5, [_e("KEEP2")]) == "Accepted"
    assert _version(csms) == 5
    w = Watch(csms).mark("Authorize")
    sim.send("plug 1")
    sim.send("swipe 1 KEEP2")
    assert w.wait("Authorize")[0][3]["idTag"] == "KEEP2"
    wait_status(csms, 1, "Charging")
    sim.send("swipe 1 KEEP2")
    next_call(csms, "StopTransaction")
    r = csms.call("CP1", "ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "true"})
    assert r["result"]["status"] == "Accepted"
    sim.send("unplug 1")
    wait_status(csms, 1, "Available")
    sim.stop()
    # Reboot on the same flash: the list and its version are back.
    n = len(csms.calls("BootNotification", cp="CP1"))
    sim2 = start_sim(csms.url, state=state)
    csms.wait_call("BootNotification", cp="CP1", after=n, timeout=30)
    wait_status(csms, 1, "Available")
    assert _version(csms) == 5
    w.mark("Authorize", "StartTransaction")
    sim2.send("plug 1")
    sim2.send("swipe 1 KEEP")
    assert w.wait("StartTransaction")[0][3]["idTag"] == "KEEP"
    assert w.new("Authorize") == []


def test_local_list_conflict_reported_until_the_next_list(start_csms, start_sim):
    # §3.5.3: the central system's idTagInfo for a listed tag differs from the list:
    # StatusNotification of connector 0 with errorCode LocalListConflict.  An agreeing
    # answer reports nothing; the next accepted list ends it (NoError again).
    csms, sim = booted(start_csms, start_sim)
    assert _send(csms, "Full", 1, [_e("AGREE"), _e("CLASH")]) == "Accepted"
    csms.cmd("deny CLASH")                          # the central system says Invalid
    w = Watch(csms).mark("Authorize", "StatusNotification")
    sim.send("swipe 1 CLASH")
    assert w.wait("Authorize")[0][3]["idTag"] == "CLASH"
    sim.wait_line(r"CLASH is Accepted in the local list, Invalid for the central system")
    _refused(sim, "CLASH", "Invalid")               # the central system's answer counts
    st = [c[3] for c in w.wait("StatusNotification", 1)]
    assert [(s["connectorId"], s["status"], s["errorCode"]) for s in st] == \
        [(0, "Available", "LocalListConflict")], st
    w.mark("StatusNotification")
    sim.send("swipe 1 AGREE")
    assert w.wait("Authorize", 2)[1][3]["idTag"] == "AGREE"
    st = [c[3] for c in w.wait("StatusNotification", 1)]
    assert [(s["connectorId"], s["status"], s["errorCode"]) for s in st] == \
        [(1, "Preparing", "NoError")], st          # no conflict for AGREE
    w.mark("StatusNotification")
    assert _send(csms, "Differential", 2, [_e("CLASH", "Invalid")]) == "Accepted"
    st = [c[3] for c in w.wait("StatusNotification", 1)]
    assert [(s["connectorId"], s["status"], s["errorCode"]) for s in st] == \
        [(0, "Available", "NoError")], st
    assert not any("LocalListConflict" in ln for ln in sim.lines
                   if "AGREE" in ln)
    assert csms.invalid() == []
