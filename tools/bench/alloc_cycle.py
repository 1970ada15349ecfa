# MicroPython side of `make bench`: heap bytes allocated per steady-state message cycle
# (encode, mask, send, receive the CALLRESULT, parse, dispatch), with gc.mem_alloc() deltas.
import sys
import gc
import asyncio
from time import ticks_us, ticks_diff
from ocpp16.ws import WebSocket
from ocpp16 import rpc, messages
from ocpp16.clock import write_iso

N = 50


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


async def main(url):
    ws = WebSocket()
    await ws.connect(url, "BENCH")
    r = rpc.Rpc(ws, {}, log=print, trace=False)
    r.connected()
    asyncio.create_task(r.serve())
    assert await r.call(messages.BOOT, messages.boot, {"vendor": "bench", "model": "bench"}) == rpc.RESULT
    fake = _Fake()
    cases = (("Heartbeat", messages.HEARTBEAT, messages.heartbeat, None),
             ("StatusNotification", messages.STATUS, messages.status, (fake, 1)),
             ("MeterValues", b"MeterValues", meter_values, 1000))
    for name, action, enc, arg in cases:
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
        print("BENCH %s bytes_per_cycle=%d us_per_cycle=%d" % (name, (a1 - a0) // N, dt // N))
    await ws.close()


asyncio.run(main(sys.argv[1]))
