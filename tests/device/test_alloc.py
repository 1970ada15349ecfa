# Heap bytes per received message and per CALL cycle, through real loopback sockets: the
# figures of `make bench` (tools/bench/alloc_cycle.py), kept from creeping back.  Bounds
# are for the 64-bit unix port (GC blocks of 32 B) with a margin; before the receive path
# was reworked a small frame cost ~1250 B to receive and a CALL cycle ~2400 B.
import gc
import json
import time
import asyncio
from asyncio import core
from ocpp16 import rpc, ws
from test_ws import _loopback

N = 50


def _client():
    # A WebSocket on one end of a loopback pair, as connect() leaves it; s = the server end.
    w = ws.WebSocket()
    c, s = _loopback()
    c.setblocking(False)
    w._s, w._st = c, asyncio.StreamWriter(c)
    return w, c, s


def _server_frame(text):
    b = text.encode()
    return bytes((0x81, len(b))) + b  # servers do not mask


_ANSWER = _server_frame('[3,"12",{}]')


def _queue(s, n):
    # n answers into the client's socket, and time for loopback to deliver them all
    for _ in range(n):
        s.write(_ANSWER)
    time.sleep_ms(20)


async def _recv_cost(w):
    """Bytes allocated by N recv() calls (the GC off), and the last message."""
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(N):
        m = await w.recv()
    d = gc.mem_alloc() - a
    gc.enable()
    return d, m


async def test_recv_of_a_waiting_frame_allocates_nothing():
    # The frames are in the socket before recv(): no wait, the view of that length is reused.
    w, c, s = _client()
    try:
        _queue(s, 3)
        for _ in range(3):  # warm up: the first message of a length makes its view
            assert bytes(await w.recv()) == b'[3,"12",{}]'
        _queue(s, N)
        d, m = await _recv_cost(w)
        assert bytes(m) == b'[3,"12",{}]'
        assert d == 0, d / N
    finally:
        c.close()
        s.close()


async def test_recv_that_waits_for_the_frame_allocates_little():
    # The frame comes while recv() waits: asyncio's IOQueue entry for the wait (96 B here)
    # is all it costs.
    w, c, s = _client()

    async def peer():
        for _ in range(N + 3):
            while id(c) not in core._io_queue.map:  # until recv() waits for the socket
                await asyncio.sleep_ms(0)
            s.write(_ANSWER)
            await asyncio.sleep_ms(0)

    try:
        t = asyncio.create_task(peer())
        for _ in range(3):
            await w.recv()
        d, m = await _recv_cost(w)
        await t
        assert bytes(m) == b'[3,"12",{}]'
        assert d // N <= 160, d // N
    finally:
        c.close()
        s.close()


async def test_ping_then_message_still_cheap_afterwards():
    # A control frame takes the general path (a coroutine, a pong); the next messages are
    # back on the common path.
    w, c, s = _client()
    try:
        s.write(b"\x89\x02hi" + _ANSWER)
        assert bytes(await w.recv()) == b'[3,"12",{}]'
        got = bytearray(8)
        n = 0
        while n < 8:  # our pong: 2 header bytes, the mask key, "hi" masked
            n += s.readinto(memoryview(got)[n:])
        assert got[0] == 0x8A and got[1] == 0x82
        assert bytes(got[6 + i] ^ got[2 + i] for i in range(2)) == b"hi"
        _queue(s, N + 2)
        for _ in range(2):
            await w.recv()
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        for _ in range(N):
            await w.recv()
        d = gc.mem_alloc() - a
        gc.enable()
        assert d == 0, d / N
    finally:
        c.close()
        s.close()


class _Csms:
    # The server end of the loopback pair, answering each CALL with [3,"<id>",{}] and
    # allocating nothing itself: it reads the client's frame into a buffer, unmasks the
    # uniqueId in place and writes the answer from another buffer.  It polls with
    # sleep_ms(0), so it never puts an IOQueue entry of its own into the figures.
    def __init__(self, s):
        s.setblocking(False)
        self.s = s
        self.b = bytearray(512)
        self.v = (memoryview(self.b), memoryview(self.b)[2:])  # reads at offset 0 and 2
        self.a = bytearray(64)
        self.stop = False

    def _fill(self, i, j, k):
        # Read into b[i:j] (i = 0 or 2), k bytes of it already there -> the new k.  Plain
        # function, polled: a coroutine per read would show in the figures.
        v = self.v[i >> 1]
        while k < j - i:
            r = self.s.readinto(v, j - i) if not k else self.s.readinto(v[k:j - i])
            if r is None:
                if self.stop:
                    raise OSError(0)
                break
            if not r:
                raise OSError(0)  # the client closed
            k += r
        return k

    async def run(self):
        b, a = self.b, self.a
        try:
            while True:
                k = 0
                while k < 2:
                    k = self._fill(0, 2, k)
                    if k < 2:
                        await asyncio.sleep_ms(0)
                n = b[1] & 0x7F  # a small CALL: 7-bit length, masked
                k = 0
                while k < 4 + n:
                    k = self._fill(2, 6 + n, k)
                    if k < 4 + n:
                        await asyncio.sleep_ms(0)
                for i in range(n):
                    b[6 + i] ^= b[2 + (i & 3)]
                k = 2  # the answer: [3,"<the CALL's uniqueId>",{}]
                for c in b'[3,"':
                    a[k] = c
                    k += 1
                i = 10  # b[6:10] = [2,"
                while b[i] != 34:
                    a[k] = b[i]
                    k += 1
                    i += 1
                for c in b'",{}]':
                    a[k] = c
                    k += 1
                a[0] = 0x81
                a[1] = k - 2
                self.s.write(a, 0, k)
        except OSError:
            pass


async def test_call_cycle_allocates_little():
    # Rpc.call against the loopback server: encode, send, receive, json.loads, settle,
    # wake the caller, with the frame trace on (as in the firmware) into /dev/null.
    # Measured 288 B per cycle: the IOQueue entry of the wait (96) and json.loads of
    # [3,"<id>",{}] (192); call() itself allocates nothing (it was a coroutine, 128 B).
    w, c, s = _client()
    r = rpc.Rpc(w, {}, log=lambda m: None, trace=open("/dev/null", "wb"))
    r.connected()
    srv = _Csms(s)
    t = asyncio.create_task(srv.run())
    asyncio.create_task(r.serve())
    enc = lambda wr, arg: wr.raw(b"{}")  # noqa: E731
    try:
        for _ in range(5):
            assert await r.call(b"Heartbeat", enc) == rpc.RESULT
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        for _ in range(N):
            await r.call(b"Heartbeat", enc)
        d = gc.mem_alloc() - a
        gc.enable()
        assert r.outcome == rpc.RESULT and r.payload == {}
        # json.loads of the answer alone, for the record in a failure message
        j = gc.mem_alloc()
        json.loads(b'[3,"123",{}]')
        j = gc.mem_alloc() - j
        assert d // N <= 320, (d // N, "json.loads alone", j)
    finally:
        srv.stop = True
        c.close()
        await t
        s.close()
