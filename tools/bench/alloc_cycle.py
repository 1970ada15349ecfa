# MicroPython side of `make bench`: heap bytes allocated per steady-state message cycle
# (encode, mask, send, receive the CALLRESULT, parse, dispatch), with gc.mem_alloc() deltas.
#
# Two runs per message, on the same connection:
# - the breakdown: one task does what Rpc.call and Rpc.serve do between them, step by
#   step, with gc.mem_alloc() read between the steps: send (envelope + encode + mask +
#   socket write), recv (websocket receive of the CALLRESULT, waiting included) and
#   json.loads of it;
# - the cycle: Rpc.call with Rpc.serve running in its own task, as the firmware does.
#   "rest" = cycle - (send + recv + json): call's own coroutine, the wait for the
#   answer, dispatch and waking the caller.
import sys
import gc
import json
import asyncio
from time import ticks_us, ticks_diff
from ocpp16.ws import WebSocket
from ocpp16 import rpc, messages
from ocpp16.clock import write_iso

N = 200


class _Fake:
    # Just enough charge point for messages.status
    status = [0, 2]
    error_code = [b"NoError", b"NoError"]
    status_info = [None, None]
    status_time = [1800000000, 1800000000]


def meter_values(w, reg):
    # The shape delivery.py sends: transactionId + one sample with energy and power.
    w.raw(b'{"transactionId":')
    w.int(42)
    w.raw(b',"connectorId":1,"meterValue":[{"timestamp":')
    write_iso(w, 1800000000 + reg)
    w.raw(b',"sampledValue":[{"value":"')
    w.int(reg)
    w.raw(b'","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register",'
          b'"location":"Outlet","unit":"Wh"},{"value":"')
    w.int(11000)
    w.raw(b'","context":"Sample.Periodic","measurand":"Power.Active.Import",'
          b'"location":"Outlet","unit":"W"}]}]}')


def _frame(r, action, enc, arg):
    # The envelope Rpc.call writes, with the next uniqueId of r.
    r._id += 1
    w = r.w
    w.reset()
    w.raw(b'[2,"')
    w.int(r._id)
    w.raw(b'","')
    w.raw(action)
    w.raw(b'",')
    enc(w, arg)
    w.raw(b"]")
    return w.n


async def _steps(ws, r, action, enc, arg):
    # -> bytes per cycle for (send, recv, json.loads)
    ms = mr = mj = 0
    mem = gc.mem_alloc
    for i in range(N):
        a0 = mem()
        await ws.send(_frame(r, action, enc, arg))
        a1 = mem()
        mv = await ws.recv()
        a2 = mem()
        msg = json.loads(mv)
        a3 = mem()
        ms += a1 - a0
        mr += a2 - a1
        mj += a3 - a2
    assert msg[0] == 3 and msg[1] == str(r._id), msg
    return ms // N, mr // N, mj // N


async def main(url):
    ws = WebSocket()
    await ws.connect(url, "BENCH")
    # Frames traced as the firmware does by default (to a stream that discards them).
    r = rpc.Rpc(ws, {}, log=print, trace=open("/dev/null", "wb"))
    fake = _Fake()
    cases = (("Heartbeat", messages.HEARTBEAT, messages.heartbeat, None),
             ("StatusNotification", messages.STATUS, messages.status, (fake, 1)),
             ("MeterValues", b"MeterValues", meter_values, 1000))
    parts = []
    for name, action, enc, arg in cases:  # before Rpc.serve runs: it would take the answers
        await ws.send(_frame(r, action, enc, arg))  # warm up
        await ws.recv()
        gc.collect()
        gc.disable()
        parts.append(await _steps(ws, r, action, enc, arg))
        gc.enable()
    r.connected()
    asyncio.create_task(r.serve())
    assert await r.call(messages.BOOT, messages.boot, {"vendor": "bench", "model": "bench"}) == rpc.RESULT
    for (name, action, enc, arg), (s, rv, j) in zip(cases, parts):
        for i in range(20):     # warm up: first-use allocations are not steady state
            assert await r.call(action, enc, arg) == rpc.RESULT, r.error_code
        gc.collect()
        gc.disable()
        a0 = gc.mem_alloc()
        t0 = ticks_us()
        for i in range(N):
            await r.call(action, enc, arg)
        dt = ticks_diff(ticks_us(), t0)
        a1 = gc.mem_alloc()
        gc.enable()
        assert r.outcome == rpc.RESULT
        b = (a1 - a0) // N
        print("BENCH %s bytes_per_cycle=%d us_per_cycle=%d send=%d recv=%d json=%d rest=%d"
              % (name, b, dt // N, s, rv, j, b - s - rv - j))
    await ws.close()


asyncio.run(main(sys.argv[1]))
