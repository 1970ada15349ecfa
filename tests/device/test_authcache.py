# Authorization cache: statuses, expiry, parent tags, persistence, bound, clear.
from ocpp16 import store
from ocpp16.authcache import AuthCache
from ocpp16.clock import parse_iso

_P = "/tmp/mpocpp-test-auth.bin"


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


def test_full_cache_evicts_the_oldest_write_and_costs_no_ram():
    import gc
    c = _fresh()
    gc.collect()
    before = gc.mem_alloc()
    for i in range(64):
        c.update("T%02d" % i, {"status": "Accepted", "parentIdTag": "PARENT-%d" % i})
    c.update("T00", {"status": "Blocked"})          # rewritten: now the newest
    c.update("NEW", {"status": "Accepted"})         # full: the oldest write (T01) goes
    gc.collect()
    assert gc.mem_alloc() - before < 256            # nothing of the cache stays in RAM
    assert len(c) == 64
    assert c.lookup("T01", 0) == (None, None)
    assert c.lookup("T00", 0) == ("Blocked", None)
    assert c.lookup("T63", 0) == ("Accepted", "PARENT-63")
    assert c.lookup("NEW", 0) == ("Accepted", None)


def test_damaged_record_reads_as_empty_and_long_tags_are_not_cached():
    c = _fresh()
    c.update("A", {"status": "Accepted"})
    c.update("B", {"status": "Accepted"})
    with open(_P, "r+b") as f:                       # a bit flipped in A's record
        f.seek(12)
        f.write(b"\xff")
    assert c.lookup("A", 0) == (None, None)
    assert c.lookup("B", 0) == ("Accepted", None)
    c.update("X" * 27, {"status": "Accepted"})
    assert c.lookup("X" * 27, 0) == (None, None)
    c.update("C", {"status": "Accepted"})           # takes the damaged slot
    assert len(c) == 2


def test_earlier_auth_json_is_carried_over():
    import json
    old = "/tmp/mpocpp-test-auth.json"
    store.remove(_P)
    store.atomic_write(old, json.dumps({"OLD": ["Accepted", 0, "P"], "BAD": ["Blocked", 0, None]}))
    c = AuthCache(_P, log=lambda s: None)
    assert c.lookup("OLD", 0) == ("Accepted", "P")
    assert c.lookup("BAD", 0) == ("Blocked", None)
    assert not store.exists(old)
