# A scripted websocket client for the host tests (runs on MicroPython).
#
#   micropython tests/mp/ws_client.py BASE_URL < steps.json
#
# (The steps come on stdin: this unix port dies on a command-line argument of 256 bytes
# or more, since it interns argv strings as qstrs.)
# Steps run in order; every outcome is printed as one JSON line (a dict with "ev").
# After a successful connect a receiver task runs recv() in a loop and prints each
# message ("msg") and the end of the connection ("gone").
#   {"do": "new", "rx": 4096, "tx": 2048}             fresh WebSocket object
#   {"do": "connect", "path": "/good/", "id": "CP1", "sub": "ocpp1.6", "auth": KEY,
#    "url": FULL_URL, "ca": DER_FILE, "ms": 5000}
#   {"do": "send", "text": "..."} or {"do": "send", "len": N, "op": 2}   (pattern a..z)
#   {"do": "expect", "n": COUNT, "ms": 5000}          wait until COUNT messages arrived
#   {"do": "gone", "ms": 5000}                        wait until recv() returned None
#   {"do": "keepalive", "interval": 1, "timeout": 1}
#   {"do": "ping"}  {"do": "sleep", "ms": 100}  {"do": "close", "code": 1000}
#   {"do": "flood", "count": N, "len": L}  N messages "%06d" % seq + pattern, back to back
# "connect" with "norx": true starts no receiver task (close() then reads by itself);
# with "sndbuf": BYTES it shrinks the socket's send buffer.
import sys
import json
import socket
import time
import asyncio
from ocpp16 import ws


def out(**kw):
    print(json.dumps(kw))


class Client:
    def __init__(self, base):
        self.base = base
        self.new(4096, 2048)
        self.rx = None
        self.msgs = 0
        self.t0 = 0

    def new(self, rx, tx):
        self.ws = ws.WebSocket(rx, tx, log=lambda m: out(ev="log", msg=m))

    async def receiver(self, w):
        while True:
            m = await w.recv()
            if m is None:
                out(ev="gone", close_code=w.close_code, oversize=w.rx_oversize,
                    closed=w.closed, ms=time.ticks_diff(time.ticks_ms(), self.t0))
                return
            self.msgs += 1
            s = 0
            for b in m:
                s += b
            out(ev="msg", len=len(m), sum=s, head=str(bytes(m[:80]), "utf-8"), op=w.opcode)

    async def wait(self, cond, ms):
        t = time.ticks_ms()
        while not cond():
            if time.ticks_diff(time.ticks_ms(), t) > ms:
                return False
            await asyncio.sleep_ms(10)
        return True

    async def step(self, st):
        do = st["do"]
        w = self.ws
        if do == "new":
            self.new(st.get("rx", 4096), st.get("tx", 2048))
        elif do == "connect":
            if self.rx and not self.rx.done():
                self.rx.cancel()
            ctx = None
            if "ca" in st:
                import tls
                ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
                ctx.verify_mode = tls.CERT_REQUIRED
                with open(st["ca"], "rb") as f:
                    ctx.load_verify_locations(f.read())
            url = st.get("url") or self.base + st.get("path", "/good/")
            try:
                await w.connect(url, st.get("id", "CP1"), subprotocol=st.get("sub", "ocpp1.6"),
                                auth_key=st.get("auth"), ssl=ctx, timeout_ms=st.get("ms", 5000))
            except Exception as e:
                out(ev="connect", ok=False, err=type(e).__name__, msg=str(e), closed=w.closed)
                return
            if "sndbuf" in st:  # a small send buffer makes writes queue up (SO_SNDBUF)
                w._s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_SNDBUF", 7), st["sndbuf"])
            out(ev="connect", ok=True)
            self.msgs = 0
            self.t0 = time.ticks_ms()
            if not st.get("norx"):
                self.rx = asyncio.create_task(self.receiver(w))
        elif do == "send":
            if "text" in st:
                b = st["text"].encode()
                n = len(b)
                w.tx[:n] = b
            else:
                n = st["len"]
                tx = w.tx
                for i in range(n):
                    tx[i] = 97 + i % 26
            try:
                await w.send(n, st.get("op", 1))
                out(ev="sent", n=n)
            except OSError as e:
                out(ev="sent", n=n, err=str(e))
        elif do == "expect":
            n = st.get("n", 1)
            out(ev="expect", ok=await self.wait(lambda: self.msgs >= n, st.get("ms", 5000)))
        elif do == "gone":
            ok = await self.wait(lambda: self.rx is None or self.rx.done(), st.get("ms", 5000))
            out(ev="waited", ok=ok)
        elif do == "flood":
            n = st["len"]
            body = bytes(97 + i % 26 for i in range(n))
            worst = 0
            for k in range(st["count"]):
                w.tx[:n] = body
                w.tx[:6] = b"%06d" % k
                t = time.ticks_ms()
                try:
                    await w.send(n)
                except OSError as e:
                    out(ev="flood", sent=k, err=str(e))
                    return
                worst = max(worst, time.ticks_diff(time.ticks_ms(), t))
            out(ev="flood", sent=st["count"], worst_ms=worst)
        elif do == "keepalive":
            asyncio.create_task(w.keepalive(st["interval"], st["timeout"]))
        elif do == "ping":
            await w.ping()
        elif do == "sleep":
            await asyncio.sleep_ms(st["ms"])
        elif do == "close":
            t = time.ticks_ms()
            await w.close(st.get("code", 1000))
            out(ev="close", ms=time.ticks_diff(time.ticks_ms(), t), closed=w.closed,
                close_code=w.close_code)
            await self.wait(lambda: self.rx is None or self.rx.done(), 2000)

    async def run(self, steps):
        for st in steps:
            await self.step(st)
        if self.rx and not self.rx.done():
            self.rx.cancel()
        out(ev="end")


asyncio.run(Client(sys.argv[1]).run(json.loads(sys.stdin.read())))
