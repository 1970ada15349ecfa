# What a hostile or sloppy central system sends: each frame costs that frame only.
# (Issue: robustness in the field, defects 1, 2 and 5.)
import json
import asyncio
from fakews import FakeWS
from ocpp16 import rpc, jsonvet


def _echo(ctx, p):
    return {"got": p}


def _mk():
    ws = FakeWS(tx_size=4096)
    logs = []
    r = rpc.Rpc(ws, {"Echo": _echo, "GetConfiguration": _echo}, log=logs.append, trace=False)
    r.connected()
    return ws, r, logs


async def _serve(frames, opcode=1):
    # Feed frames to a running receiver; -> (answers sent, rpc, ws, logs).
    ws, r, logs = _mk()
    t = asyncio.create_task(r.serve())
    for f in frames:
        ws.feed(f, opcode)
    for _ in range(200):
        await asyncio.sleep_ms(1)
        if not ws._in:
            break
    await asyncio.sleep_ms(5)
    alive = not t.done()
    ws.drop()
    await t
    return [json.loads(f) for f in ws.sent], r, ws, logs, alive


def _valid_utf8(b):
    try:
        str(b, "utf-8")
    except UnicodeError:
        return False
    return jsonvet.repair(bytearray(b), len(b)) == 0


async def test_deep_nesting_costs_the_frame_only():
    deep_key = '[2,"d1","GetConfiguration",{"key":' + "[" * 800 + "]" * 800 + "}]"
    out, r, ws, logs, alive = await _serve(["[" * 2500, deep_key, "[" * 20000,
                                            '[2,"ok","Echo",{"a":1}]'])
    assert alive and ws.close_code is None
    assert out[0][:3] == [4, "d1", "FormationViolation"], out
    assert out[1] == [3, "ok", {"got": {"a": 1}}]
    assert len(out) == 2 and r.ignored == 2


async def test_memory_error_in_one_frame_is_survived():
    def boom(ctx, p):
        raise MemoryError
    ws, r, logs = _mk()
    r.handlers["Boom"] = boom
    # The receive loop's own guard: the parse step runs out of memory.
    t = asyncio.create_task(r.serve())
    r._settle = lambda mv, flags: boom(None, None)
    ws.feed('[2,"m1","Echo",{}]')
    await asyncio.sleep_ms(5)
    del r._settle
    ws.feed('[2,"m2","Boom",{}]')
    ws.feed('[2,"m3","Echo",{}]')
    await asyncio.sleep_ms(10)
    assert not t.done() and r.ignored == 1
    out = [json.loads(f) for f in ws.sent]
    assert [f[:3] for f in out] == [[4, "m2", "InternalError"], [3, "m3", {"got": {}}]], out
    ws.drop()
    await t


async def test_frames_that_are_not_ocpp_j_are_ignored():
    frames = ["[]", "[{}]", "[2]", "[null]", '[2,null,"Echo",{}]', '[2,5,"GetConfiguration",{}]',
              '{"a":1}', '"text"', "not json", '[3]', '[3,"nobody"]', '[4,"x",5]',
              '[4,5,"GenericError","",{}]', '[3,"99",{}]', '[true,"t","Echo",{}]',
              '[2.0,"f","Echo",{}]', '[9,"z",{}]']
    out, r, ws, logs, alive = await _serve(frames + ['[2,"ok","Echo",{}]'])
    assert alive and ws.close_code is None
    assert out == [[3, "ok", {"got": {}}]], out
    # [3,"99",{}] and [4,"x",5] are answers to nobody: logged as such, not counted
    assert r.ignored == len(frames) - 2
    # Rate-limited: one line about ignored frames for the whole burst.
    assert len([x for x in logs if x.startswith("rpc: ignored")]) == 1, logs


async def test_binary_frame_is_ignored():
    out, r, ws, logs, alive = await _serve([b'[2,"b","Echo",{}]'], opcode=2)
    assert alive and out == [] and r.ignored == 1 and ws.close_code is None


async def test_callerror_only_to_a_call_uniqueid():
    out, r, ws, logs, alive = await _serve(['[2,"c1","Echo",{"a":', '[2, "c2" ,"Echo",',
                                            '[2,"c3","Echo"]', '[2,"c4","Echo",[]]',
                                            '{"a":[2,"c5","Echo",{}', '[3,"c6",{"a":',
                                            '[4,"c7","GenericError",'])
    assert [f[:3] for f in out] == [[4, "c1", "FormationViolation"],
                                    [4, "c2", "FormationViolation"],
                                    [4, "c3", "FormationViolation"],
                                    [4, "c4", "TypeConstraintViolation"]], out


async def test_surrogate_pairs_are_combined():
    # json.dumps writes an emoji as a surrogate pair; it must come back as one character.
    out, r, ws, logs, alive = await _serve(['[2,"s\\ud83d\\ude97","Echo",{"idTag":"EV\\ud83d\\ude97"}]'])
    assert alive
    assert all(_valid_utf8(f) for f in ws.sent)
    assert out == [[3, "s\U0001f697", {"got": {"idTag": "EV\U0001f697"}}]], out


async def test_lone_surrogate_in_a_call_is_refused():
    out, r, ws, logs, alive = await _serve(['[2,"l1","Echo",{"idTag":"EV\\ud83d"}]',
                                            '[2,"l2","Echo",{"idTag":"\\ude97x"}]'])
    assert [f[:3] for f in out] == [[4, "l1", "PropertyConstraintViolation"],
                                    [4, "l2", "PropertyConstraintViolation"]], out
    assert all(_valid_utf8(f) for f in ws.sent)


async def test_invalid_utf8_closes_1007():
    out, r, ws, logs, alive = await _serve([b'[2,"u1","Echo",{"idTag":"\xed\xa0\xbd"}]'])
    assert ws.close_code == 1007 and out == [] and not alive


async def test_outgoing_frames_are_repaired():
    ws, r, logs = _mk()
    def enc(w, arg):
        w.raw(b'{"idTag":"EV\xed\xa0\xbd\xed\xba\x97"}')   # written by an older version
    t = asyncio.create_task(r.serve())

    async def caller():
        return await r.call(b"Authorize", enc)
    c = asyncio.create_task(caller())
    while not ws.sent:
        await asyncio.sleep_ms(1)
    sent = ws.sent[0]
    assert _valid_utf8(sent) and b'"EV??????"' in sent, sent
    assert r.repaired == 1
    ws.feed('[3,"%s",{}]' % json.loads(sent)[1])
    assert await c == rpc.RESULT
    ws.drop()
    await t


async def test_late_answer_reaches_who_asked_for_it():
    ws, r, logs = _mk()
    r.timeout_ms = 20
    t = asyncio.create_task(r.serve())
    got = []

    def hb(w, arg):
        w.raw(b"{}")

    async def ticker():
        while True:
            await asyncio.sleep_ms(5)
            r.tick()
    tk = asyncio.create_task(ticker())
    assert await r.call(b"Heartbeat", hb) == rpc.TIMEOUT
    uid = r.last_id
    r.expect_late(uid, lambda out, p: got.append((out, p)))
    ws.feed('[3,"%d",{"currentTime":"late"}]' % uid)
    await asyncio.sleep_ms(5)
    assert got == [(rpc.RESULT, {"currentTime": "late"})]
    # Expiry: told TIMEOUT once the wait is over.
    r.expect_late(12345, lambda out, p: got.append((out, p)), wait_ms=1)
    await asyncio.sleep_ms(20)
    assert got[-1] == (rpc.TIMEOUT, None) and len(got) == 2
    tk.cancel()
    ws.drop()
    await t


async def test_a_message_too_big_for_the_buffer():
    # The websocket hands out its start marked TRUNCATED: a CALL gets a CALLERROR (the
    # central system learns why), anything else is ignored; the link stays.
    big = '[2,"big","DataTransfer",{"vendorId":"x","data":"' + "y" * 4000
    out, r, ws, logs, alive = await _serve([big], opcode=0x81)
    assert alive and ws.close_code is None
    assert out[0][:3] == [4, "big", "GenericError"], out
    out, r, ws, logs, alive = await _serve(['[3,"7",{"a":"' + "y" * 4000], opcode=0x81)
    assert alive and out == [] and r.ignored == 1


async def test_a_call_without_its_last_bracket_is_not_carried_out():
    # MicroPython's json.loads takes it; found by the fuzzer.
    out, r, ws, logs, alive = await _serve(['[2,"t1","Echo",{"a":1}', '[2,"t2","Echo",{"a":"]"}]'])
    assert [f[:3] for f in out] == [[4, "t1", "FormationViolation"], [3, "t2", {"got": {"a": "]"}}]]


async def test_a_uniqueid_with_a_lone_surrogate_is_not_answered():
    # Its answer could not name it (found by the fuzzer).
    out, r, ws, logs, alive = await _serve(['[2,"\\ud83du","Echo",{}]', '[2,"\\ud83dx","Ec',
                                            '[2,"ok\\ud83d\\ude97","Echo",{}]'])
    assert out == [[3, "ok\U0001f697", {"got": {}}]], out
    assert r.ignored == 2


async def test_extra_fields_and_long_strings_are_refused():
    from ocpp16.chargepoint import _CORE
    ws, r, logs = _mk()
    r.handlers = {a: ("ocpp16.handlers", f) for a, f in _CORE}
    r.ctx = None
    t = asyncio.create_task(r.serve())
    for f in ('[2,"x1","ClearCache",{"x":1}]', '[2,"x2","Reset",{"type":"Soft","connectorId":true}]',
              '[2,"x3","GetConfiguration",{"key":["' + "k" * 51 + '"]}]',
              '[2,"x4","DataTransfer",{"vendorId":"v","messageId":"' + "m" * 51 + '"}]',
              '[2,"x5","ChangeConfiguration",{"key":"' + "k" * 51 + '","value":"1"}]'):
        ws.feed(f)
    await asyncio.sleep_ms(20)
    out = [json.loads(f)[:3] for f in ws.sent]
    assert out == [[4, "x1", "FormationViolation"], [4, "x2", "FormationViolation"],
                   [4, "x3", "PropertyConstraintViolation"],
                   [4, "x4", "PropertyConstraintViolation"],
                   [4, "x5", "PropertyConstraintViolation"]], out
    ws.drop()
    await t
