# Delivery and the transactions share one body buffer (delivery.py's docstring): a
# message built while a record's CALL waits for the transmit lock must not change what
# goes out, nor the idTag the answer is about.
import asyncio
import json
from fakews import FakeWS
from test_api import FakeBoard
from fsutil import rmtree
from ocpp16 import config, store, link
from ocpp16 import meter as mt
from ocpp16 import chargepoint as C

_DIR = "/tmp/mpocpp-test-body"


async def test_record_is_read_again_when_the_buffer_was_used_meanwhile():
    rmtree(_DIR)
    store.makedirs(_DIR)
    cfg = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    ws = FakeWS(4096)
    cp = C.ChargePoint(FakeBoard(), cfg, ws, _DIR, log=lambda s: None)
    cp.rpc.trace = False
    link.take_time(cp, {"currentTime": "2026-11-23T10:00:00Z"})
    cp.rpc.connected()
    cp.tx.begin(1, "FIRST-TAG")
    await cp.rpc._lock.acquire()          # an answer to the central system is going out
    t = asyncio.create_task(cp.delivery.send_head())
    await asyncio.sleep_ms(5)             # the head is read, its CALL waits for the lock
    assert ws.sent == []
    cp.tx.begin(2, "SECOND-TAG")          # built in the same buffer meanwhile
    cp.rpc._lock.release()
    while not ws.sent:
        await asyncio.sleep_ms(1)
    sent = json.loads(ws.sent[0])
    assert sent[2] == "StartTransaction" and sent[3]["idTag"] == "FIRST-TAG", sent
    assert sent[3]["connectorId"] == 1
    cp.tx.sample(2, mt.PERIODIC)          # and again while the answer is awaited
    ws.feed('[3,"%s",{"transactionId":7,"idTagInfo":{"status":"Blocked"}}]' % sent[1])
    await cp.rpc.handle(await ws.recv())
    await t
    # The answer's idTagInfo went to the right tag's cache entry.
    assert cp.cache.lookup("FIRST-TAG", 0)[0] == "Blocked"
    assert cp.cache.lookup("SECOND-TAG", 0)[0] is None
