# OCPP-J RPC: framing, one outstanding CALL, crossing CALLs, error codes, timeouts.
import json
import asyncio
from fakews import FakeWS
from ocpp16 import rpc


def _hb(w, arg):
    w.raw(b"{}")


def _mk(handlers=None, timeout_ms=30000):
    ws = FakeWS()
    r = rpc.Rpc(ws, handlers or {}, log=lambda s: None, trace=False, timeout_ms=timeout_ms)
    r.connected()
    return ws, r


async def _answer_when_sent(ws, make, n=1):
    while len(ws.sent) < n:
        await asyncio.sleep_ms(1)
    ws.feed(make(json.loads(ws.sent[n - 1])))


async def test_call_result():
    ws, r = _mk()
    t = asyncio.create_task(r.serve())
    asyncio.create_task(_answer_when_sent(ws, lambda m: '[3,"%s",{"currentTime":"x"}]' % m[1]))
    out = await r.call(b"Heartbeat", _hb)
    assert out == rpc.RESULT and r.payload == {"currentTime": "x"}
    m = json.loads(ws.sent[0])
    assert m[0] == 2 and m[2] == "Heartbeat" and m[3] == {} and len(m[1]) <= 36
    ws.drop()
    await t


async def test_unique_ids_differ():
    ws, r = _mk()
    asyncio.create_task(r.serve())
    for i in range(3):
        asyncio.create_task(_answer_when_sent(ws, lambda m: '[3,"%s",{}]' % m[1], i + 1))
        assert await r.call(b"Heartbeat", _hb) == rpc.RESULT
    ids = [json.loads(f)[1] for f in ws.sent]
    assert len(set(ids)) == 3
    ws.drop()


async def test_callerror_reported_with_alias_normalised():
    ws, r = _mk()
    asyncio.create_task(r.serve())
    asyncio.create_task(_answer_when_sent(
        ws, lambda m: '[4,"%s","FormatViolation","bad",{}]' % m[1]))
    assert await r.call(b"StopTransaction", _hb) == rpc.CALLERROR
    assert r.error_code == "FormationViolation" and r.error_description == "bad"
    ws.drop()


async def test_timeout_frees_the_slot():
    ws, r = _mk(timeout_ms=50)

    async def ticker():
        while True:
            await asyncio.sleep_ms(10)
            r.tick()
    tk = asyncio.create_task(ticker())
    assert await r.call(b"Heartbeat", _hb) == rpc.TIMEOUT
    # A late answer for the old id is ignored and the next call works.
    asyncio.create_task(r.serve())
    ws.feed('[3,"1",{}]')
    asyncio.create_task(_answer_when_sent(ws, lambda m: '[3,"%s",{}]' % m[1], 2))
    assert await r.call(b"Heartbeat", _hb) == rpc.RESULT
    tk.cancel()
    ws.drop()


async def test_disconnect_is_offline_not_failure():
    ws, r = _mk()
    asyncio.create_task(r.serve())

    async def dropper():
        while not ws.sent:
            await asyncio.sleep_ms(1)
        ws.drop()
    asyncio.create_task(dropper())
    assert await r.call(b"StopTransaction", _hb) == rpc.OFFLINE
    assert await r.call(b"StopTransaction", _hb) == rpc.OFFLINE  # not online now
    assert len(ws.sent) == 1


async def test_crossing_call_served_while_waiting():
    seen = []

    def get_config(ctx, p):
        seen.append(p)
        return {"configurationKey": [], "unknownKey": ["x"]}
    ws, r = _mk({"GetConfiguration": get_config})
    asyncio.create_task(r.serve())

    async def server():
        while not ws.sent:
            await asyncio.sleep_ms(1)
        ws.feed('[2,"cs-1","GetConfiguration",{"key":["x"]}]')   # crosses our CALL
        while len(ws.sent) < 2:
            await asyncio.sleep_ms(1)
        ws.feed('[3,"%s",{}]' % json.loads(ws.sent[0])[1])
    asyncio.create_task(server())
    assert await r.call(b"StartTransaction", _hb) == rpc.RESULT
    assert seen == [{"key": ["x"]}]
    assert json.loads(ws.sent[1]) == [3, "cs-1", {"configurationKey": [], "unknownKey": ["x"]}]
    ws.drop()


async def _serve_one(handlers, frame):
    ws, r = _mk(handlers)
    ok = await r.handle(memoryview(bytearray(frame.encode())))
    return ok, [json.loads(f) for f in ws.sent]


async def test_error_codes_for_bad_input():
    def needs_int(ctx, p):
        rpc.field(p, "connectorId", int)
        rpc.field(p, "type", str)
        return {"status": "Accepted"}

    def boom(ctx, p):
        raise RuntimeError("bug")
    h = {"Reset": needs_int, "Boom": boom}
    ok, out = await _serve_one(h, '[2,"a","Nope",{}]')
    assert out[0][:3] == [4, "a", "NotImplemented"]
    ok, out = await _serve_one(h, '[2,"b","Reset",{"connectorId":"1","type":"Soft"}]')
    assert out[0][:3] == [4, "b", "TypeConstraintViolation"]
    ok, out = await _serve_one(h, '[2,"c","Reset",{"connectorId":1}]')
    assert out[0][:3] == [4, "c", "OccurenceConstraintViolation"]
    ok, out = await _serve_one(h, '[2,"d","Boom",{}]')
    assert out[0][:3] == [4, "d", "InternalError"]
    ok, out = await _serve_one(h, '[2,"e","Reset",{"connectorId":1,"type":"Soft"}]')
    assert out[0] == [3, "e", {"status": "Accepted"}]
    ok, out = await _serve_one(h, '[2,"f","Reset",{"connectorId":1,')   # truncated JSON
    assert ok and out[0][:3] == [4, "f", "FormationViolation"]
    ok, out = await _serve_one(h, '[2,"g","Reset"]')
    assert out[0][:3] == [4, "g", "FormationViolation"]
    ok, out = await _serve_one(h, '[2,"h","Reset",[1]]')
    assert out[0][:3] == [4, "h", "TypeConstraintViolation"]
    ok, out = await _serve_one(h, 'garbage')                        # no uniqueId: ignored
    assert ok and out == []
    ok, out = await _serve_one(h, '[7,"z",{}]')                     # unknown type: ignored
    assert ok and out == []


async def test_answer_too_big_becomes_callerror():
    def huge(ctx, p):
        return {"data": "x" * 5000}
    ws = FakeWS(tx_size=1024, rx_size=1024)
    r = rpc.Rpc(ws, {"Big": huge}, log=lambda s: None, trace=False)
    r.connected()
    assert await r.handle(memoryview(bytearray(b'[2,"q","Big",{}]')))
    assert [json.loads(f)[:3] for f in ws.sent] == [[4, "q", "GenericError"]]


async def test_call_waits_while_a_reply_holds_the_transmit_buffer():
    # The lock is held (an answer to the central system is being written): call() must
    # not write into the buffer until it is free, then proceed as usual.
    ws, r = _mk()
    asyncio.create_task(r.serve())
    await r._lock.acquire()
    t = asyncio.create_task(r.call(b"Heartbeat", _hb))
    await asyncio.sleep_ms(5)
    assert ws.sent == []
    r._lock.release()
    asyncio.create_task(_answer_when_sent(ws, lambda m: '[3,"%s",{}]' % m[1]))
    assert await t == rpc.RESULT
    assert json.loads(ws.sent[0])[2] == "Heartbeat"
    ws.drop()


class _Lines:
    # A binary stream collecting what the trace writes.
    def __init__(self):
        self.b = bytearray()

    def write(self, b, off=0, n=-1):
        self.b += bytes(b)[off:] if n < 0 else bytes(b)[off:off + n]


async def test_trace_logs_frames_but_never_the_authorization_key():
    out = _Lines()
    ws = FakeWS()
    r = rpc.Rpc(ws, {"ChangeConfiguration": lambda ctx, p: {"status": "Accepted"}},
                log=lambda s: None, trace=out)
    r.connected()
    ws.feed('[2,"a1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]')
    ws.feed('[2,"a2","ChangeConfiguration",{"key":"AuthorizationKey","value":"5365637265743132"}]')
    t = asyncio.create_task(r.serve())
    while len(ws.sent) < 2:
        await asyncio.sleep_ms(1)
    ws.drop()
    await t
    text = bytes(out.b)
    assert b'<< [2,"a1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]' in text
    assert b'>> [3,"a1",{"status":"Accepted"}]' in text
    assert b"5365637265743132" not in text
    assert b"<< (frame about AuthorizationKey, not logged)" in text
    assert len(ws.sent) == 2  # handled all the same
