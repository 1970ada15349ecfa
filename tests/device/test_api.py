# The application API: result codes at once, the central system's answer reported back
# through a callback or an awaitable, while the library journals and delivers.
import json
import asyncio
from fakews import FakeWS
from fsutil import rmtree
from ocpp16 import config, store, rpc
from ocpp16 import chargepoint as C

_DIR = "/tmp/mpocpp-test-api"


class FakeBoard:
    connectors = 2

    def __init__(self):
        self.wh = [0, 0, 0]
        self.relays = [False] * 3
        self.plug = [False] * 3

    def identity(self):
        return {"vendor": "test", "model": "fake"}

    def seconds(self):
        return 100

    def energy_wh(self, n):
        return self.wh[n]

    def relay(self, n, on):
        self.relays[n] = on

    def is_plugged(self, n):
        return self.plug[n]


def _cp():
    rmtree(_DIR)
    store.makedirs(_DIR)
    b = FakeBoard()
    cfg = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    ws = FakeWS(4096)
    cp = C.ChargePoint(b, cfg, ws, _DIR, log=lambda s: None)
    cp.rpc.trace = False
    return cp, ws, b


async def _server(ws, answers):
    # A scripted central system: answers each CALL by action.
    seen = 0
    while True:
        while len(ws.sent) <= seen:
            await asyncio.sleep_ms(2)
        f = json.loads(ws.sent[seen])
        seen += 1
        if f[0] == 2:
            ws.feed(json.dumps([3, f[1], answers(f[2], f[3])]))


def _answers(action, p):
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": "2026-11-23T10:00:00Z", "interval": 300}
    if action == "StartTransaction":
        return {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}
    if action == "StopTransaction":
        return {"idTagInfo": {"status": "Accepted", "parentIdTag": "P1"}}
    if action == "DataTransfer":
        return {"status": "Accepted", "data": "pong"}
    return {}


async def _running(cp, ws):
    asyncio.create_task(cp.rpc.serve())
    cp.rpc.connected()
    asyncio.create_task(cp._sender())
    asyncio.create_task(cp._ticker())
    asyncio.create_task(_server(ws, _answers))
    for _ in range(500):
        if cp.registered:
            return
        await asyncio.sleep_ms(5)
    raise AssertionError("never registered")


async def test_refusals_are_immediate_codes():
    cp, ws, b = _cp()
    assert cp.start_transaction(0, "T") == C.BAD_CONNECTOR
    assert cp.start_transaction(3, "T") == C.BAD_CONNECTOR
    assert cp.stop_transaction(1) == C.NO_TRANSACTION
    assert cp.start_transaction(1, "T") == C.QUEUED          # journaled even offline
    assert cp.start_transaction(1, "T") == C.BUSY
    assert len(cp.journal) == 1
    cp.change_availability(2, True)
    assert cp.start_transaction(2, "T") == C.NOT_AVAILABLE
    try:
        cp.stop_transaction(1, "NoSuchReason")
        assert False
    except ValueError:
        pass


async def test_start_and_stop_answers_reported_back():
    cp, ws, b = _cp()
    b.plug[1] = True
    cp.sessions.plugged[1] = True
    await _running(cp, ws)
    got = []
    assert cp.start_transaction(1, "TAG", on_result=lambda o, p: got.append((o, p))) == C.QUEUED
    assert b.relays[1]
    b.wh[1] = 4321
    a = C.Answer()
    for _ in range(400):
        if got:
            break
        await asyncio.sleep_ms(5)
    assert got == [(rpc.RESULT, {"transactionId": 77, "idTagInfo": {"status": "Accepted"}})]
    assert cp.stop_transaction(1, "EmergencyStop", on_result=a, meter_stop=4400) == C.QUEUED
    assert not b.relays[1]
    outcome, payload = await a.wait()
    assert outcome == rpc.RESULT and payload["idTagInfo"]["parentIdTag"] == "P1"
    stops = [json.loads(f) for f in ws.sent if b'"StopTransaction"' in f]
    assert stops[0][3]["transactionId"] == 77 and stops[0][3]["meterStop"] == 4400
    assert stops[0][3]["reason"] == "EmergencyStop"
    assert len(cp.journal) == 0


async def test_send_any_message_with_awaitable():
    cp, ws, b = _cp()
    await _running(cp, ws)
    a = C.Answer()
    assert cp.send("DataTransfer", {"vendorId": "mpocpp", "messageId": "ping"}, on_result=a) == C.QUEUED
    outcome, payload = await a.wait()
    assert outcome == rpc.RESULT and payload == {"status": "Accepted", "data": "pong"}
    dt = [json.loads(f) for f in ws.sent if b'"DataTransfer"' in f][0]
    assert dt[3] == {"vendorId": "mpocpp", "messageId": "ping"}


async def test_minimum_status_duration_suppresses_short_states():
    cp, ws, b = _cp()
    cp.cfg.change("MinimumStatusDuration", "1")
    await _running(cp, ws)
    await asyncio.sleep_ms(1200)
    n0 = len([f for f in ws.sent if b"StatusNotification" in f])
    cp.set_status(1, C.PREPARING)
    await asyncio.sleep_ms(300)
    cp.set_status(1, C.AVAILABLE)        # back before the minimum: nothing to report
    await asyncio.sleep_ms(1500)
    sent = [json.loads(f)[3] for f in ws.sent if b"StatusNotification" in f][n0:]
    assert [s["status"] for s in sent if s["connectorId"] == 1] == []
    cp.set_status(1, C.FAULTED, b"GroundFailure")
    await asyncio.sleep_ms(1500)
    sent = [json.loads(f)[3] for f in ws.sent if b"StatusNotification" in f][n0:]
    assert [(s["status"], s["errorCode"]) for s in sent] == [("Faulted", "GroundFailure")]


async def test_requests_fail_fast_when_the_link_drops():
    cp, ws, b = _cp()
    assert cp.send("DataTransfer", {"vendorId": "mpocpp"}) == C.OFFLINE   # no link yet
    asyncio.create_task(cp.rpc.serve())
    cp.rpc.connected()
    cp.registered = True
    got = []
    assert cp.send("Authorize", {"idTag": "T"}, on_result=lambda o, p: got.append(o)) == C.QUEUED
    assert cp.send("DataTransfer", {"vendorId": "x"}, on_result=lambda o, p: got.append(o)) == C.QUEUED
    snd = asyncio.create_task(cp._sender())
    while not ws.sent:
        await asyncio.sleep_ms(2)
    ws.drop()                      # the Authorize is in flight, the DataTransfer queued
    await asyncio.sleep_ms(20)
    cp._fail_requests()            # what the link task does after the receiver ends
    await asyncio.sleep_ms(20)
    assert got == [rpc.OFFLINE, rpc.OFFLINE]
    snd.cancel()
