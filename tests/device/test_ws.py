# The websocket client's pure parts and its allocation-free send path, on MicroPython.
import gc
import random
import socket
import micropython
import asyncio
from ocpp16 import ws, wsopen


def _ref_mask(b, i, n, k):
    for j in range(n):
        b[i + j] ^= b[k + (j & 3)]


def _unframe(buf):
    """Decode one client frame -> (fin, opcode, masked, payload bytes, frame length)."""
    n = buf[1] & 0x7F
    p = 2
    if n == 126:
        n = buf[2] << 8 | buf[3]
        p = 4
    elif n == 127:
        n = 0
        for k in range(2, 10):
            n = n << 8 | buf[k]
        p = 10
    masked = bool(buf[1] & 0x80)
    key = buf[p:p + 4]
    if masked:
        p += 4
    out = bytearray(buf[p:p + n])
    if masked:
        for j in range(n):
            out[j] ^= key[j & 3]
    return bool(buf[0] & 0x80), buf[0] & 0x0F, masked, bytes(out), p + n


def _framed(n, op=1, fill=b"x"):
    b = bytearray(ws.TX_HEADROOM + n)
    for j in range(n):
        b[ws.TX_HEADROOM + j] = fill[j % len(fill)]
    i = ws._frame(b, op, n)
    return b, i


def test_header_7_bit_length():
    for n in (0, 1, 125):
        b, i = _framed(n, fill=b"abc")
        assert i == 8
        assert b[8] == 0x81 and b[9] == 0x80 | n
        fin, op, masked, p, total = _unframe(b[i:])
        assert fin and op == 1 and masked and total == len(b) - i
        assert p == bytes(b"abc"[j % 3] for j in range(n))


def test_header_16_bit_length():
    for n in (126, 300, 65535):
        b, i = _framed(n, op=2)
        assert i == 6
        assert b[6] == 0x82 and b[7] == 0x80 | 126 and (b[8] << 8 | b[9]) == n
        fin, op, masked, p, total = _unframe(b[i:])
        assert op == 2 and masked and p == b"x" * n and total == len(b) - i


def test_header_64_bit_length():
    n = 0x18081
    b, i = _framed(n)
    assert i == 0
    assert b[0] == 0x81 and b[1] == 0xFF
    assert bytes(b[2:10]) == b"\x00\x00\x00\x00\x00\x01\x80\x81"
    fin, op, masked, p, total = _unframe(b)
    assert masked and p == b"x" * n and total == len(b)


def test_masks_differ_between_frames():
    keys = set()
    for _ in range(8):
        b, i = _framed(4)
        keys.add(bytes(b[10:14]))
    assert len(keys) > 1


def test_mask_matches_reference_and_round_trips():
    for n in (0, 1, 2, 3, 4, 5, 7, 8, 33, 1000):
        for off in (14, 15):
            src = bytearray(random.getrandbits(8) for _ in range(off + n))
            a = bytearray(src)
            r = bytearray(src)
            ws._mask(a, off, n, 3)
            _ref_mask(r, off, n, 3)
            assert a == r, (n, off)
            ws._mask(a, off, n, 3)
            assert a == src


def test_mask_is_native_when_viper_exists():
    # Where the native emitter exists (the unix port on x86-64, ESP32) the viper
    # version must have been taken: it is many times faster than the Python loop.
    try:
        exec("@micropython.viper\ndef f(x: int) -> int:\n    return x\n", {"micropython": micropython})
    except Exception:
        return  # no native emitter: the Python fallback is expected
    import time
    b = bytearray(2048)

    def best(f):  # the fastest of a few runs, so a stray context switch does not count
        t = 1 << 30
        for _ in range(5):
            t0 = time.ticks_us()
            f(b, 14, 2000, 10)
            t = min(t, time.ticks_diff(time.ticks_us(), t0))
        return t

    fast, slow = best(ws._mask), best(_ref_mask)
    assert fast * 4 < slow, (fast, slow)


def test_accept_key_rfc_example():
    # RFC 6455 section 1.3
    assert wsopen.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_url():
    assert wsopen.parse_url("ws://10.0.0.5:9000/steve/websocket/CentralSystemService", "CP1") == \
        (False, "10.0.0.5", 9000, "/steve/websocket/CentralSystemService/CP1")
    assert wsopen.parse_url("wss://csms.example.com/ocpp/", "CP1") == \
        (True, "csms.example.com", 443, "/ocpp/CP1")
    assert wsopen.parse_url("ws://host", "A") == (False, "host", 80, "/A")
    assert wsopen.parse_url("ws://[fe80::1]:8080/x", "A") == (False, "fe80::1", 8080, "/x/A")
    for bad in ("http://host/", "ws:///path", "ws://host:port/"):
        try:
            wsopen.parse_url(bad, "A")
            assert False, bad
        except ws.WSError:
            pass


def test_cp_id_is_percent_encoded():
    assert wsopen.parse_url("ws://h/ocpp", "CP 01/ä?#%")[3] == "/ocpp/CP%2001%2F%C3%A4%3F%23%25"
    assert wsopen.quote("Az09-._~") == "Az09-._~"


def _b64(b):
    import binascii
    return binascii.b2a_base64(b).decode().strip()


def test_basic_auth_hex_key_is_decoded():
    assert wsopen.basic_auth("CP1", "0011ff") == "Basic " + _b64(b"CP1:\x00\x11\xff")
    assert wsopen.basic_auth("CP1", "DEADbeef") == "Basic " + _b64(b"CP1:\xde\xad\xbe\xef")


def test_basic_auth_other_keys_are_used_as_given():
    assert wsopen.basic_auth("CP1", "abc") == "Basic " + _b64(b"CP1:abc")  # odd length
    assert wsopen.basic_auth("CP1", "s3cr3t!x") == "Basic " + _b64(b"CP1:s3cr3t!x")
    assert wsopen.basic_auth("CP1", "zz") == "Basic " + _b64(b"CP1:zz")


def test_wss_needs_a_context():
    w = ws.WebSocket()

    async def go():
        try:
            await w.connect("wss://127.0.0.1:1/x", "CP1")
            return None
        except ws.WSError as e:
            return str(e)

    asyncio.new_event_loop()
    msg = asyncio.run(go())
    assert msg and "ssl" in msg and w.closed


def test_buffers_and_headroom():
    w = ws.WebSocket()
    assert ws.TX_HEADROOM == 14
    assert len(w.tx) == 2048 and len(w._rb) == 4096
    w = ws.WebSocket(rx_size=100, tx_size=50)
    assert len(w.tx) == 50 and len(w._rb) == 100
    try:
        w.send(51)
        assert False
    except ValueError:
        pass


def _loopback():
    """A connected TCP pair on 127.0.0.1 (this port has no getsockname: probe ports)."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for _ in range(50):
        port = 20000 + random.getrandbits(14)
        try:
            ls.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            break
        except OSError:
            pass
    ls.listen(1)
    c = socket.socket()
    c.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    s, _ = ls.accept()
    ls.close()
    return c, s


# Sizes of real messages: Heartbeat, StatusNotification, MeterValues (3 sampled values),
# a big MeterValues (16-bit length) and a full tx buffer.
_SIZES = (22, 160, 420, 1500, 2048)


async def test_send_allocates_nothing():
    w = ws.WebSocket()
    c, s = _loopback()
    c.setblocking(False)
    w._s, w._st = c, asyncio.StreamWriter(c)
    rd = bytearray(4096)
    try:
        for n in _SIZES:
            body = (b'[2,"19223201","MeterValues",{"connectorId":1}]' * 50)[:n]
            for rep in range(3):
                w.tx[:n] = body
                gc.collect()
                micropython.heap_lock()
                try:
                    await w.send(n)
                finally:
                    micropython.heap_unlock()
                got = 0
                want = n + (2 if n < 126 else 4) + 4
                while got < want:  # blocking peer: read the frame out and check it
                    got += s.readinto(memoryview(rd)[got:want])
                fin, op, masked, p, total = _unframe(rd)
                assert fin and op == 1 and masked and total == want and p == body, n
    finally:
        c.close()
        s.close()


async def test_send_alloc_measured():
    # gc.mem_alloc() delta over many sends: must be exactly 0 bytes.
    w = ws.WebSocket()
    c, s = _loopback()
    c.setblocking(False)
    w._s, w._st = c, asyncio.StreamWriter(c)
    rd = bytearray(2048)
    try:
        for n in _SIZES[:3]:
            for j in range(n):
                w.tx[j] = 65
            gc.collect()
            gc.disable()
            a = gc.mem_alloc()
            for _ in range(20):
                await w.send(n)
            d = gc.mem_alloc() - a
            gc.enable()
            assert d == 0, (n, d)
            left = 20 * (n + (6 if n < 126 else 8))
            while left:
                left -= s.readinto(rd, min(left, len(rd)))
    finally:
        c.close()
        s.close()


async def test_ping_pong_close_frames_do_not_touch_tx():
    w = ws.WebSocket()
    c, s = _loopback()
    c.setblocking(False)
    w._s, w._st = c, asyncio.StreamWriter(c)
    try:
        w.tx[:5] = b"hello"
        await w.ping()
        await w._send_close(1001)
        assert bytes(w.tx[:5]) == b"hello"
        rd = bytearray(64)
        got = 0
        while got < 14:
            got += s.readinto(memoryview(rd)[got:14])
        assert _unframe(rd)[:4] == (True, 9, True, b"")
        assert _unframe(rd[6:])[:4] == (True, 8, True, b"\x03\xe9")
    finally:
        c.close()
        s.close()


def test_backoff_grows_caps_jitters_and_resets():
    from ocpp16.backoff import Backoff
    b = Backoff(1000, 8000)
    for d in (1000, 2000, 4000, 8000, 8000, 8000):
        x = b.next_ms()
        assert d // 2 <= x <= d, (d, x)
    seen = set(b.next_ms() for _ in range(20))
    assert len(seen) > 5 and min(seen) >= 4000 and max(seen) <= 8000  # jittered at the cap
    b.stable(29999)  # a short-lived connection does not reset
    assert b.next_ms() >= 4000
    b.stable(30000)
    assert b.next_ms() <= 1000
    b.reset()
    micropython.heap_lock()
    try:
        x = b.next_ms()
    finally:
        micropython.heap_unlock()
    assert 500 <= x <= 1000
