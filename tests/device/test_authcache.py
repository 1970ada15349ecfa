# Authorization cache: statuses, expiry, parent tags, persistence, bound, clear.
from ocpp16 import store
from ocpp16.authcache import AuthCache
from ocpp16.clock import parse_iso

_P = "/tmp/mpocpp-test-auth.json"


def _fresh():
    store.remove(_P)
    return AuthCache(_P, log=lambda s: None)


def test_lookup_expiry_and_parent():
    c = _fresh()
    now = parse_iso("2026-11-23T12:00:00Z")
    c.update("A", {"status": "Accepted", "expiryDate": "2026-11-23T13:00:00Z", "parentIdTag": "P"})
    c.update("B", {"status": "Blocked"})
    assert c.lookup("A", now) == ("Accepted", "P")
    assert c.lookup("A", now + 7200) == ("Expired", "P")
    assert c.lookup("B", now) == ("Blocked", None)
    assert c.lookup("X", now) == (None, None)


def test_persisted_and_cleared():
    c = _fresh()
    c.update("A", {"status": "Accepted"})
    assert AuthCache(_P).lookup("A", 0) == ("Accepted", None)
    c.clear()
    assert AuthCache(_P).lookup("A", 0) == (None, None)


def test_bounded_and_ignores_garbage():
    c = _fresh()
    for i in range(100):
        c.update("T%d" % i, {"status": "Accepted"})
    assert len(c) <= 64
    assert c.lookup("T99", 0) == ("Accepted", None)
    c.update("G", {"nostatus": 1})
    c.update("H", "junk")
    assert c.lookup("G", 0) == (None, None) and c.lookup("H", 0) == (None, None)
