"""Authorisation: cache, local pre-authorisation, offline rules, status after offline."""
import time

from ocpp_steps import booted, next_call, Watch, wait_status, statuses

FAST_RECONNECT = [("ReconnectMinSeconds", "1"), ("ReconnectMaxSeconds", "1")]


def _go_offline(csms, sim):
    n = len(sim.lines)
    csms.cmd("refuse 1000")
    csms.cmd("drop CP1")
    sim.wait_line(r"link: disconnected", start=n)


def _come_back(csms):
    n = len(csms.events("connect", cp="CP1"))
    csms.cmd("refuse 0")
    csms.wait(lambda e: len(csms.events("connect", cp="CP1")) > n, timeout=20)


def test_cached_tag_starts_without_authorize_then_clear_cache(start_csms, start_sim):
    # TC_007 (cache + LocalPreAuthorize) and TC_061 (ClearCache)
    csms, sim = booted(start_csms, start_sim, config=[("LocalPreAuthorize", "true")])
    sim.send("plug 1")
    sim.send("swipe 1 CACHED")
    wait_status(csms, 1, "Charging")
    sim.send("swipe 1 CACHED")
    next_call(csms, "StopTransaction")
    sim.send("unplug 1")
    wait_status(csms, 1, "Available")
    w = Watch(csms).mark("Authorize", "StartTransaction")
    r = csms.call("CP1", "RemoteStartTransaction", {"idTag": "CACHED", "connectorId": 1})
    assert r["result"]["status"] == "Accepted"
    sim.send("plug 1")
    assert w.wait("StartTransaction")[0][3]["idTag"] == "CACHED"
    assert w.new("Authorize") == []          # answered from the cache
    sim.send("swipe 1 CACHED")
    next_call(csms, "StopTransaction")
    # The StopTransaction.conf's idTagInfo updates the cache too: clear it after that.
    sim.wait_line("delivery: queue empty", start=sim.wait_line(r'^>> .*"StopTransaction"'
                                                               r'.*"transactionId":2,'))
    assert csms.call("CP1", "ClearCache", {})["result"]["status"] == "Accepted"
    w.mark("Authorize")
    sim.send("swipe 1 CACHED")
    assert w.wait("Authorize")[0][3]["idTag"] == "CACHED"


def test_offline_cached_tag_charges_unknown_tag_refused_then_queue_delivered(start_csms, start_sim):
    # LocalAuthorizeOffline with the cache; AllowOfflineTxForUnknownId; TC_037_1
    csms, sim = booted(start_csms, start_sim, connectors=2, config=FAST_RECONNECT)
    sim.send("plug 1")
    sim.send("swipe 1 KNOWN")                # Authorize online: cached
    wait_status(csms, 1, "Charging")
    sim.send("swipe 1 KNOWN")
    next_call(csms, "StopTransaction")
    w = Watch(csms).mark("StartTransaction", "StopTransaction")
    _go_offline(csms, sim)
    sim.send("plug 2")
    sim.send("swipe 2 STRANGER")
    sim.wait_line(r"card STRANGER refused \(Invalid\)")
    sim.send("swipe 2 KNOWN")
    sim.wait_line(r"tx: started local #\d+ on connector 2 for KNOWN")
    sim.wait_line(r"relay 2 closed")
    _come_back(csms)
    start = w.wait("StartTransaction", timeout=20)[0][3]
    assert start["idTag"] == "KNOWN" and start["connectorId"] == 2
    # Now allow unknown tags offline
    r = csms.call("CP1", "ChangeConfiguration", {"key": "AllowOfflineTxForUnknownId", "value": "true"})
    assert r["result"]["status"] == "Accepted"
    sim.send("swipe 2 KNOWN")
    w.wait("StopTransaction")
    _go_offline(csms, sim)
    sim.send("swipe 1 NEWBIE")
    sim.wait_line(r"tx: started local #\d+ on connector 1 for NEWBIE")
    _come_back(csms)
    assert w.wait("StartTransaction", 2, timeout=20)[-1][3]["idTag"] == "NEWBIE"
    assert csms.invalid() == []


def test_after_offline_only_current_status_is_sent(start_csms, start_sim):
    # OCPP 1.6 §4.9: no replay of historical states after an offline period.
    csms, sim = booted(start_csms, start_sim, config=FAST_RECONNECT)
    before = len(statuses(csms, 1))
    _go_offline(csms, sim)
    for cmd in ("plug 1", "unplug 1", "plug 1"):
        sim.send(cmd)
        time.sleep(0.2)
    _come_back(csms)
    wait_status(csms, 1, "Preparing")
    time.sleep(1)
    assert statuses(csms, 1)[before:] == ["Preparing"]
