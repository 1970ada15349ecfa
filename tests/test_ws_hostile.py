"""lib/ocpp16/ws.py on MicroPython against a deliberately hostile websocket server.

The server is raw asyncio on 127.0.0.1 (in a thread), so it can break the protocol on
purpose; the first path segment picks its behaviour.  The client is tests/mp/ws_client.py
on the unix port, driven by a list of steps.  Every hostile case is followed, in the same
client process, by a good connection that must echo.
"""
import asyncio
import base64
import hashlib
import json
import socket
import struct
import subprocess
import threading
import time

import pytest

from helpers import ROOT, micropython, mp_env

CLIENT = ROOT / "tests" / "mp" / "ws_client.py"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(op, payload=b"", fin=True, mask=None, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        h = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        h = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        h = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        payload = xor(payload, mask)
        h += mask
    return h + payload


def xor(p, mask):
    n = len(p)
    k = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(p, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def pattern(n):
    return bytes(97 + i % 26 for i in range(n))


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class Conn:
    """What the server saw on one connection."""

    def __init__(self, path, headers):
        self.path = path
        self.headers = headers
        self.frames = []  # (op, fin, masked, payload) as received from the client
        self.events = []  # server-side notes: ("eof", t), ("close_sent", t), ...

    def ops(self, op):
        return [f for f in self.frames if f[0] == op]


class Server:
    def __init__(self):
        self.conns = []
        self.writers = []       # every connection's writer, for stop()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.srv = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self.srv.sockets[0].getsockname()[1]
            # A second listener with a small receive buffer (set before listen, so the
            # window stays small): a client flooding it soon has to wait.
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            ls.bind(("127.0.0.1", 0))
            self.srv2 = await asyncio.start_server(self._handle, sock=ls)
            self.small_port = ls.getsockname()[1]

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()
        # Closed here, in its own thread once stopped: an unclosed loop leaks its
        # self-pipe sockets (ResourceWarning at interpreter exit).
        self.loop.close()

    def stop(self):
        async def shutdown():
            self.srv.close()
            self.srv2.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            # Cancelling only requests it: the handlers must get to run their `finally`
            # (w.close()) before the loop stops, or they are destroyed pending and their
            # sockets leak.
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.srv.wait_closed()
            await self.srv2.wait_closed()
            for w in self.writers:
                # close() waits to flush what a peer never read; abort() drops it (and
                # is a no-op on a transport already closed).
                w.transport.abort()
            await asyncio.sleep(0)      # transports drop their sockets on the next turn

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def conn(self, prefix):
        found = [c for c in self.conns if c.path.startswith(prefix)]
        assert found, "no connection to %s; saw %s" % (prefix, [c.path for c in self.conns])
        return found[-1]

    # ---- protocol pieces

    async def read_frame(self, r, c):
        h = await r.readexactly(2)
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await r.readexactly(8))[0]
        mask = await r.readexactly(4) if h[1] & 0x80 else None
        p = await r.readexactly(n)
        if mask:
            p = xor(p, mask)
        f = (h[0] & 0x0F, bool(h[0] & 0x80), mask is not None, p)
        c.frames.append(f)
        return f

    async def _handle(self, r, w):
        self.writers.append(w)
        try:
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            c = Conn(path, headers)
            self.conns.append(c)
            case = path.split("/")[1]
            await asyncio.wait_for(getattr(self, "case_" + case)(r, w, c), 20)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError,
                asyncio.CancelledError):
            pass
        finally:
            w.close()

    def upgrade(self, w, c, accept=None, sub="ocpp1.6", extra=""):
        key = c.headers["sec-websocket-key"].encode()
        acc = accept or base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n" % acc)
        if sub:
            resp += "Sec-WebSocket-Protocol: %s\r\n" % sub
        w.write((resp + extra + "\r\n").encode())

    async def echo(self, r, w, c, close_delay=0, data=True):
        """The well-behaved part: echo data (if `data`), answer pings, answer close."""
        parts, mop = [], 0
        while True:
            op, fin, masked, p = await self.read_frame(r, c)
            if op == 9:
                w.write(frame(10, p))
            elif op == 8:
                if close_delay:
                    try:
                        await asyncio.wait_for(r.read(1), close_delay)
                        c.events.append("eof_before_close_reply")
                    except asyncio.TimeoutError:
                        pass
                w.write(frame(8, p[:2]))
                c.events.append("close_replied")
                await w.drain()
                return
            elif op in (0, 1, 2):
                mop = mop or op
                parts.append(p)
                if fin and data:
                    w.write(frame(mop, b"".join(parts)))
                if fin:
                    parts, mop = [], 0
            await w.drain()

    async def wait_client_close(self, r, w, c):
        """After provoking the client: record its close frame, then check the client
        keeps the socket open until our answer (closing it at once with unread data
        would reset the connection, and a slower server would lose the close frame)."""
        while True:
            op, fin, masked, p = await self.read_frame(r, c)
            if op == 8:
                try:
                    await asyncio.wait_for(r.read(1), 0.2)
                    c.events.append("eof_before_close_reply")
                    return
                except asyncio.TimeoutError:
                    pass
                w.write(frame(8, p[:2]))
                await w.drain()
                c.events.append("close_replied")
                return

    # ---- behaviours, picked by the first path segment

    async def case_good(self, r, w, c):
        self.upgrade(w, c)
        await self.echo(r, w, c)

    async def case_slowclose(self, r, w, c):
        self.upgrade(w, c)
        await self.echo(r, w, c, close_delay=0.3)

    async def case_badaccept(self, r, w, c):
        self.upgrade(w, c, accept=base64.b64encode(b"x" * 20).decode())
        await r.read(100)

    async def case_nosub(self, r, w, c):
        self.upgrade(w, c, sub=None)
        await r.read(100)

    async def case_othersub(self, r, w, c):
        self.upgrade(w, c, sub="ocpp2.0.1")
        await r.read(100)

    async def case_longhead(self, r, w, c):
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nX-Junk: " + b"j" * 20000 + b"\r\n\r\n")
        await w.drain()
        await r.read(100)

    async def case_binhead(self, r, w, c):
        w.write(b"HTTP/1.1 101 \xff\xfe\r\n\r\n")
        await w.drain()
        await r.read(100)

    async def case_401(self, r, w, c):
        w.write(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"ocpp\"\r\n"
                b"Content-Length: 0\r\n\r\n")
        await w.drain()

    async def case_404(self, r, w, c):
        w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
        await w.drain()

    async def case_talkfirst(self, r, w, c):
        # the upgrade response and the first message in one segment
        self.upgrade(w, c)
        w.write(frame(1, b'[2,"1","Hello",{}]'))
        await self.echo(r, w, c)

    async def case_frag(self, r, w, c):
        self.upgrade(w, c)
        w.write(frame(1, b'[2,"7","Data', fin=False))
        w.write(frame(9, b"p1"))
        w.write(frame(0, b'Transfer",', fin=False))
        w.write(frame(9, b"p2"))
        w.write(frame(10, b"unsolicited"))
        w.write(frame(0, b"{}]", fin=True))
        await self.echo(r, w, c)

    async def case_lengths(self, r, w, c):
        self.upgrade(w, c)
        w.write(frame(1, pattern(125)))
        w.write(frame(1, pattern(126)))
        w.write(frame(1, pattern(65535)))
        w.write(frame(2, pattern(65536)))
        w.write(frame(2, pattern(0x18080)))  # a 64-bit length with high bits in its bytes
        await self.echo(r, w, c)

    async def case_oversize(self, r, w, c):
        self.upgrade(w, c)
        w.write(frame(1, pattern(5000)))
        w.write(frame(1, b"after"))
        await self.echo(r, w, c)

    async def case_oversizefrag(self, r, w, c):
        self.upgrade(w, c)
        w.write(frame(1, pattern(3000), fin=False))
        w.write(frame(9, b"mid"))                    # a ping between the fragments
        w.write(frame(0, pattern(3000), fin=False))
        w.write(frame(0, pattern(70000), fin=True))
        w.write(frame(1, b"after"))
        await self.echo(r, w, c)

    async def case_masked(self, r, w, c):
        self.upgrade(w, c)
        w.write(frame(1, b"masked!", mask=b"\x01\x02\x03\x04"))
        await self.wait_client_close(r, w, c)

    async def case_badframe(self, r, w, c):
        kind = c.path.split("/")[2]
        self.upgrade(w, c)
        if kind == "cont":  # continuation with no message started
            w.write(frame(0, b"orphan"))
        elif kind == "rsv":
            w.write(frame(1, b"rsv", rsv=0x40))
        elif kind == "opcode":
            w.write(frame(3, b"op3"))
        elif kind == "bigping":
            w.write(frame(9, b"x" * 126))
        await self.wait_client_close(r, w, c)

    async def case_close(self, r, w, c):
        code = int(c.path.split("/")[2])
        self.upgrade(w, c)
        w.write(frame(8, struct.pack("!H", code) + b"bye"))
        c.events.append("close_sent")
        await w.drain()
        await self.read_frame(r, c)
        if await r.read(1) == b"":
            c.events.append("eof")

    async def case_drop(self, r, w, c):
        self.upgrade(w, c)
        await w.drain()
        await asyncio.sleep(0.2)
        w.transport.abort()

    async def case_slowreader(self, r, w, c):
        # reads nothing for a while, so the client's socket fills and writes queue up
        self.upgrade(w, c)
        await w.drain()
        await asyncio.sleep(1.0)
        await self.echo(r, w, c, data=False)

    async def case_blackhole(self, r, w, c):
        # answers the upgrade, then neither reads nor writes: the client's writes block
        self.upgrade(w, c)
        await w.drain()
        await asyncio.sleep(15)

    async def case_silent(self, r, w, c):
        while await r.read(4096):
            pass

    async def case_mute(self, r, w, c):
        # answers the upgrade, then nothing ever again (reads and records, stays open)
        self.upgrade(w, c)
        await w.drain()
        while True:
            await self.read_frame(r, c)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def run_client(server, steps, timeout=60):
    """Run the MicroPython client; return its events (dicts) in order."""
    mp = micropython()
    p = subprocess.run([mp, str(CLIENT), "ws://127.0.0.1:%d" % server.port],
                       input=json.dumps(steps), env=mp_env(), cwd=str(ROOT), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    evs = []
    for ln in p.stdout.splitlines():
        if ln.startswith("{"):
            evs.append(json.loads(ln))
    assert evs and evs[-1]["ev"] == "end", "client did not finish:\n" + p.stdout[-3000:]
    return evs


def only(evs, name):
    return [e for e in evs if e["ev"] == name]


def then_good(tag):
    """Steps that make a fresh good connection and check it echoes."""
    text = '[2,"%s","Heartbeat",{}]' % tag
    return [{"do": "connect", "path": "/good/"}, {"do": "send", "text": text},
            {"do": "expect", "n": 1}, {"do": "close"}]


def assert_good_after(evs, tag):
    """The last connection worked: connected, echoed the text, closed cleanly."""
    con = only(evs, "connect")[-1]
    assert con["ok"], con
    msg = only(evs, "msg")[-1]
    assert msg["head"] == '[2,"%s","Heartbeat",{}]' % tag
    assert only(evs, "close")[-1]["closed"]


def msum(b):
    return sum(b)


# ---- tests


def test_good_handshake_and_echo(server):
    evs = run_client(server, [
        {"do": "connect", "path": "/good/", "id": "CP 1/é"},
        {"do": "send", "text": '[2,"1","BootNotification",{}]'},
        {"do": "expect", "n": 1},
        {"do": "send", "len": 300, "op": 2},
        {"do": "expect", "n": 2},
        {"do": "close"},
    ])
    assert only(evs, "connect")[0]["ok"]
    m = only(evs, "msg")
    assert m[0]["head"] == '[2,"1","BootNotification",{}]'
    assert m[1]["len"] == 300 and m[1]["sum"] == msum(pattern(300))
    c = server.conn("/good/CP%201%2F%C3%A9")
    h = c.headers
    assert h["upgrade"].lower() == "websocket" and "upgrade" in h["connection"].lower()
    assert h["sec-websocket-version"] == "13"
    assert h["sec-websocket-protocol"] == "ocpp1.6"
    assert len(base64.b64decode(h["sec-websocket-key"])) == 16
    assert h["host"] == "127.0.0.1:%d" % server.port
    assert "authorization" not in h
    data = [f for f in c.frames if f[0] in (1, 2)]
    assert all(f[2] for f in c.frames), "every client frame must be masked"
    assert data[0][3] == b'[2,"1","BootNotification",{}]' and data[1][3] == pattern(300)
    assert data[1][0] == 2
    close = c.ops(8)[0]
    assert close_code(close[3]) == 1000


def test_keys_are_random(server):
    run_client(server, then_good("a") + then_good("b"))
    keys = [c.headers["sec-websocket-key"] for c in server.conns if c.path.startswith("/good/")]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("case,msg", [
    ("badaccept", "bad Sec-WebSocket-Accept"),
    ("nosub", "server did not agree to subprotocol ocpp1.6"),
    ("othersub", "server did not agree to subprotocol ocpp1.6"),
    ("longhead", "response header too long"),
    ("binhead", "response header is not text"),
    ("401", "HTTP/1.1 401 Unauthorized"),
    ("404", "HTTP/1.1 404 Not Found"),
])
def test_refused_handshakes(server, case, msg):
    evs = run_client(server, [{"do": "connect", "path": "/%s/" % case}] + then_good(case))
    con = only(evs, "connect")[0]
    assert not con["ok"] and con["err"] == "WSError" and con["msg"] == msg, con
    assert con["closed"]
    assert not only(evs, "gone")[:-1]  # no receiver ran on the refused connection
    assert_good_after(evs, case)


def test_connection_refused_and_timeout(server):
    # A closed port -> OSError; a server that never answers -> OSError(ETIMEDOUT).
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    evs = run_client(server, [
        {"do": "connect", "url": "ws://127.0.0.1:%d/x/" % dead},
        {"do": "connect", "path": "/silent/", "ms": 300},  # never answers the upgrade
    ] + then_good("after-refused"))
    cons = only(evs, "connect")
    assert cons[0]["err"] == "OSError" and not cons[0]["ok"]
    assert cons[1]["err"] == "OSError" and cons[1]["closed"]
    assert_good_after(evs, "after-refused")


def test_wss_without_context_is_refused(server):
    evs = run_client(server, [{"do": "connect", "url": "wss://127.0.0.1:%d/good/" % server.port}]
                     + then_good("nossl"))
    con = only(evs, "connect")[0]
    assert con["err"] == "WSError" and "ssl" in con["msg"]
    assert_good_after(evs, "nossl")


def test_server_talks_first(server):
    evs = run_client(server, [{"do": "connect", "path": "/talkfirst/"},
                              {"do": "expect", "n": 1}] + then_good("tf"))
    assert only(evs, "msg")[0]["head"] == '[2,"1","Hello",{}]'
    assert_good_after(evs, "tf")


def test_fragments_with_pings_between(server):
    evs = run_client(server, [{"do": "connect", "path": "/frag/"}, {"do": "expect", "n": 1},
                              {"do": "send", "text": "after"}, {"do": "expect", "n": 2},
                              {"do": "close"}] + then_good("frag"))
    m = only(evs, "msg")
    assert m[0]["head"] == '[2,"7","DataTransfer",{}]' and m[0]["len"] == 25
    assert m[1]["head"] == "after"
    c = server.conn("/frag/")
    pongs = c.ops(10)
    assert [p[3] for p in pongs] == [b"p1", b"p2"], pongs
    assert all(p[2] for p in pongs)  # masked too
    assert_good_after(evs, "frag")


def test_16_and_64_bit_lengths(server):
    big = 0x18080
    evs = run_client(server, [
        {"do": "new", "rx": 100000, "tx": 100000},
        {"do": "connect", "path": "/lengths/"},
        {"do": "expect", "n": 5, "ms": 10000},
        {"do": "send", "len": 126}, {"do": "send", "len": 65535},
        {"do": "send", "len": 65536, "op": 2}, {"do": "send", "len": big, "op": 2},
        {"do": "expect", "n": 9, "ms": 10000},
        {"do": "close"},
    ] + then_good("len"))
    m = only(evs, "msg")
    sizes = [125, 126, 65535, 65536, big, 126, 65535, 65536, big]
    assert [x["len"] for x in m[:9]] == sizes
    assert all(x["sum"] == msum(pattern(x["len"])) for x in m[:9])
    c = server.conn("/lengths/")
    got = [len(f[3]) for f in c.frames if f[0] in (1, 2)]
    assert got == [126, 65535, 65536, big]
    assert all(f[3] == pattern(len(f[3])) for f in c.frames if f[0] in (1, 2))
    assert_good_after(evs, "len")


@pytest.mark.parametrize("case", ["oversize", "oversizefrag"])
def test_oversize_message_is_cut_short_and_the_link_stays(server, case):
    # Its start is handed out marked TRUNCATED (the OCPP layer answers a CALL with a
    # CALLERROR), the rest is dropped, and the next message comes as usual.
    evs = run_client(server, [{"do": "connect", "path": "/%s/" % case},
                              {"do": "expect", "n": 2}, {"do": "close"}] + then_good(case))
    m = only(evs, "msg")
    assert m[0]["len"] == 4096 and m[0]["op"] == 0x81, m[0]
    assert m[0]["head"] == str(pattern(80), "ascii")
    assert m[1]["head"] == "after" and m[1]["op"] == 1
    assert only(evs, "close")[0]["closed"]
    c = server.conn("/%s/" % case)
    assert close_code(c.ops(8)[0][3]) == 1000
    if case == "oversizefrag":
        assert [f[3] for f in c.ops(10)] == [b"mid"]      # the ping was answered
    assert_good_after(evs, case)


@pytest.mark.parametrize("case", ["masked/x", "badframe/cont", "badframe/rsv",
                                  "badframe/opcode", "badframe/bigping"])
def test_protocol_errors_close_1002(server, case):
    evs = run_client(server, [{"do": "connect", "path": "/%s/" % case},
                              {"do": "gone"}] + then_good("pe"))
    g = only(evs, "gone")[0]
    assert g["closed"] and g["oversize"] == 0
    assert not only(evs, "msg")[:-1]  # nothing from the bad connection was delivered
    c = server.conn("/%s/" % case)
    assert close_code(c.ops(8)[0][3]) == 1002
    assert c.events == ["close_replied"], c.events
    assert_good_after(evs, "pe")


@pytest.mark.parametrize("code", [1000, 1001, 1011, 4001])
def test_server_close_is_echoed(server, code):
    evs = run_client(server, [{"do": "connect", "path": "/close/%d/" % code},
                              {"do": "gone"}] + then_good("sc"))
    g = only(evs, "gone")[0]
    assert g["close_code"] == code and g["closed"]
    c = server.conn("/close/%d/" % code)
    echo = c.ops(8)[0]
    assert close_code(echo[3]) == code and echo[2]
    assert "eof" in c.events  # and the client closed the socket afterwards
    assert_good_after(evs, "sc")


def test_client_close_sends_1000_and_waits(server):
    evs = run_client(server, [{"do": "connect", "path": "/slowclose/"}, {"do": "close"},
                              {"do": "connect", "path": "/slowclose/"},
                              {"do": "close", "code": 4000},
                              {"do": "close"}] + then_good("cc"))
    cl = only(evs, "close")
    assert cl[0]["closed"] and cl[0]["ms"] >= 250, cl  # waited for the server's reply
    assert cl[0]["close_code"] == 1000  # the server's answer
    assert cl[1]["close_code"] == 4000
    assert cl[2]["ms"] < 50  # idempotent
    for c in [x for x in server.conns if x.path.startswith("/slowclose/")][-2:]:
        assert "eof_before_close_reply" not in c.events
        assert "close_replied" in c.events
    codes = [close_code(c.ops(8)[0][3]) for c in server.conns if c.path.startswith("/slowclose/")]
    assert codes[-2:] == [1000, 4000]
    assert_good_after(evs, "cc")


def test_keepalive_pings_an_idle_link(server):
    evs = run_client(server, [{"do": "connect", "path": "/good/ka/"},
                              {"do": "keepalive", "interval": 1, "timeout": 2},
                              {"do": "sleep", "ms": 3600},
                              {"do": "send", "text": "still here"}, {"do": "expect", "n": 1},
                              {"do": "close"}])
    assert not only(evs, "gone")[:-1]
    assert only(evs, "msg")[0]["head"] == "still here"
    c = server.conn("/good/ka/")
    assert 2 <= len(c.ops(9)) <= 4, c.ops(9)
    assert all(f[2] for f in c.ops(9))


def test_keepalive_detects_a_dead_link(server):
    t = time.monotonic()
    evs = run_client(server, [{"do": "connect", "path": "/mute/"},
                              {"do": "keepalive", "interval": 1, "timeout": 1},
                              {"do": "gone", "ms": 8000}] + then_good("dead"))
    g = only(evs, "gone")[0]
    assert g["closed"] and 1500 <= g["ms"] <= 4000, g
    assert len(server.conn("/mute/").ops(9)) == 1
    assert_good_after(evs, "dead")
    assert time.monotonic() - t < 30


def test_keepalive_detects_a_dead_link_with_full_buffers(server):
    # The peer reads nothing: a big send blocks, and the ping cannot even be sent.
    # keepalive still drops the link, which also ends the blocked send with an error.
    url = "ws://127.0.0.1:%d/blackhole/" % server.small_port
    evs = run_client(server, [{"do": "connect", "url": url, "sndbuf": 4096},
                              {"do": "keepalive", "interval": 1, "timeout": 1},
                              {"do": "flood", "count": 500, "len": 2000},
                              {"do": "gone", "ms": 8000}] + then_good("bh"))
    f = only(evs, "flood")[0]
    assert 0 < f["sent"] < 500 and "err" in f, f
    g = only(evs, "gone")[0]
    assert g["closed"] and g["ms"] <= 5000, g
    assert any("could not send a ping" in e.get("msg", "") for e in only(evs, "log"))
    assert_good_after(evs, "bh")


def test_basic_auth_header_as_the_server_sees_it(server):
    hexkey = "00112233445566778899aabbccddeeff0a0b0c0d"
    evs = run_client(server, [
        {"do": "connect", "path": "/good/hex/", "auth": hexkey, "id": "CP-7"}, {"do": "close"},
        {"do": "connect", "path": "/good/plain/", "auth": "pass:word é"}, {"do": "close"},
        {"do": "connect", "path": "/good/oddhex/", "auth": "abc"}, {"do": "close"},
    ])
    assert all(e["ok"] for e in only(evs, "connect"))
    want = {
        "/good/hex/": b"CP-7:" + bytes.fromhex(hexkey),
        "/good/plain/": "CP1:pass:word é".encode(),
        "/good/oddhex/": b"CP1:abc",
    }
    for prefix, cred in want.items():
        h = server.conn(prefix).headers["authorization"]
        assert h == "Basic " + base64.b64encode(cred).decode(), (prefix, h)
    text = json.dumps(evs)
    assert hexkey not in text and "Basic" not in text and "pass:word" not in text


def test_norx_close_reads_the_answer_itself(server):
    evs = run_client(server, [{"do": "connect", "path": "/slowclose/norx/", "norx": True},
                              {"do": "close"}] + then_good("norx"))
    cl = only(evs, "close")[0]
    assert cl["closed"] and cl["close_code"] == 1000 and cl["ms"] >= 250, cl
    c = server.conn("/slowclose/norx/")
    assert "eof_before_close_reply" not in c.events and "close_replied" in c.events
    assert_good_after(evs, "norx")


def test_abrupt_drop_ends_recv(server):
    evs = run_client(server, [{"do": "connect", "path": "/drop/"}, {"do": "gone"},
                              {"do": "close"}] + then_good("drop"))
    g = only(evs, "gone")[0]
    assert g["closed"] and g["close_code"] is None and g["ms"] < 2000, g
    assert only(evs, "close")[0]["closed"]
    assert_good_after(evs, "drop")


def test_writers_are_serialised_when_the_socket_is_full(server):
    # 200 x 2 KB against a server that reads nothing for 1 s: sends must wait (slow
    # path), keepalive pings wait their turn, and every frame arrives intact and in order.
    count = 200
    url = "ws://127.0.0.1:%d/slowreader/" % server.small_port
    evs = run_client(server, [{"do": "connect", "url": url, "sndbuf": 4096},
                              {"do": "keepalive", "interval": 0.2, "timeout": 5},
                              {"do": "flood", "count": count, "len": 2000},
                              {"do": "close"}] + then_good("flood"))
    f = only(evs, "flood")[0]
    assert f["sent"] == count and f["worst_ms"] >= 300, f
    c = server.conn("/slowreader/")
    data = [x for x in c.frames if x[0] == 1]
    assert [int(d[3][:6]) for d in data] == list(range(count))
    assert all(d[3][6:] == pattern(2000)[6:] for d in data)
    ops = [x[0] for x in c.frames]
    assert 9 in ops[:ops.index(1) + count - 1], "a ping must get its turn during the flood"
    assert close_code(c.ops(8)[0][3]) == 1000
    assert_good_after(evs, "flood")
