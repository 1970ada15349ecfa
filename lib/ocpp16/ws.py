"""A lean RFC 6455 websocket client for MicroPython asyncio (OCPP-J transport).

    ws = WebSocket(rx_size=4096, tx_size=2048, log=print)
    await ws.connect("wss://csms.example/ocpp", "CP-1", auth_key=key, ssl=ctx)
    n = writer_that_fills(ws.tx)         # the message, written straight into ws.tx[0:n]
    await ws.send(n)                     # frames, masks in place, one socket write, 0 bytes
    msg = await ws.recv()                # memoryview of one whole message, or None = gone

Buffers are allocated once, in the constructor:
- receive: `rx_size` bytes (default 4096), the largest message accepted after
  reassembly.  OCPP answers are small, but a CALLERROR may carry ~2 KB of details and a
  full GetConfiguration.conf approaches 4 KB.  Of a bigger message only the first
  rx_size bytes are kept and the rest is read and dropped; it is handed out marked
  (`opcode` | TRUNCATED) and counted in `rx_oversize`, never as if it were whole.  The
  link stays up: a central system that sends one too big a CALL gets an answer (the
  OCPP layer's CALLERROR), not a reconnect it might answer with the same frame.
- transmit: `tx_size` payload bytes (default 2048, enough for any message a charge point
  sends) with `TX_HEADROOM` bytes in front of it for the frame header and the mask key.
- 139 bytes for outgoing control frames, so a pong or close never clobbers `tx`.

The transmit path allocates nothing (checked under `micropython.heap_lock()`): `send()`
builds the header in the headroom, masks in place (viper where available) and hands the
socket one `write(buf, off, len)`.  Only when the socket cannot take the whole frame at
once does it fall back to the asyncio stream's buffer (which copies the rest).

The receive path reads the socket without waiting into the preallocated buffers and
returns a memoryview that is reused while messages keep the same length; `recv()` hands
back an awaitable made once per connection object.  A data message already in the socket
costs nothing; one that has to be waited for costs asyncio's IOQueue entry for the wait
(96 B on 64-bit).  Control frames, fragments and errors take a slower, general path.

One task should call `recv()` all the time (it answers pings and sees the server's
close); other tasks may `send()`, `ping()` and `close()` concurrently.  `opcode` tells a
text message (1) from a binary one (2).  Text is not checked for valid UTF-8 here: the
OCPP layer does that before parsing (jsonvet) and closes with 1007; extensions are
neither offered nor accepted.
"""
import asyncio
from asyncio import core
from ocpp16 import native
from errno import ENOTCONN, ETIMEDOUT
from micropython import const
from random import getrandbits
from time import ticks_diff, ticks_ms

TX_HEADROOM = const(14)  # 2 header + 8 extended length + 4 mask key
_CTRL_MAX = const(125)  # RFC 6455 5.5: control payloads are at most 125 bytes
_CLOSE_WAIT_MS = const(1000)  # how long close() waits for the server's close frame
_BUSY_POLL_MS = const(2)
TRUNCATED = const(0x80)  # in `opcode`: the message did not fit; its start is in the view


class WSError(Exception):
    """Handshake refused or protocol violation; str() is a one-line reason."""


# XOR the payload b[i:i+n] with the 4-byte key at b[k:k+4], in place.  The viper version
# replaces it where the port has a native emitter (ocpp16.native); this loop is ~30x
# slower.
def _mask(b, i, n, k):
    for j in range(n):  # a for-range loop is compiled without allocating
        b[i + j] ^= b[k + (j & 3)]


_fast = native.viper(
    "@micropython.viper\n"
    "def _mask(b, i: int, n: int, k: int):\n"
    "    p = ptr8(b)\n"
    "    j = 0\n"
    "    while j < n:\n"
    "        p[i + j] ^= p[k + (j & 3)]\n"
    "        j += 1\n", "_mask")
if _fast:
    _mask = _fast[0]
del _fast


def _frame(b, op, n):
    """Write a FIN frame header and a fresh mask in front of b[14:14+n] and mask the
    payload in place; return the offset where the frame starts.  Allocates nothing."""
    if n < 126:
        i = 8
        b[9] = 0x80 | n
    elif n < 0x10000:
        i = 6
        b[7] = 0xFE
        b[8] = n >> 8
        b[9] = n & 0xFF
    else:
        i = 0
        b[1] = 0xFF
        for j in range(8):
            b[9 - j] = (n >> (8 * j)) & 0xFF
    b[i] = 0x80 | op
    r = getrandbits(16)  # two 16-bit draws: a 32-bit int is not small on a 32-bit MCU
    b[10] = r >> 8
    b[11] = r & 0xFF
    r = getrandbits(16)
    b[12] = r >> 8
    b[13] = r & 0xFF
    _mask(b, TX_HEADROOM, n, 10)
    return i


def _done():
    yield


# An exhausted generator: awaiting it returns None at once without allocating, which
# lets send() be a plain function whose fast path creates no coroutine object.
_DONE = _done()
for _ in _DONE:
    pass
#: what send() returns when the socket took the whole frame at once (nothing to await)
SENT = _DONE


class _Recv:
    """What recv() returns: an awaitable made once per WebSocket.  It takes whole data
    frames off the socket, lets the loop run once per message and waits only when the
    socket is empty; anything else (control frames, errors, a lost link) goes on in the
    coroutine WebSocket._recv, which it then drives.  The message travels back in a
    StopIteration kept with its view, so that too is made only when the view changes."""

    def __init__(self, ws):
        self.ws = ws
        self.co = None  # WebSocket._recv, once the common case is left
        self.ready = False  # a message is complete: handed out at the next step
        self.yielded = False  # this recv() has let the other tasks run
        self.view = None
        self.stop = None  # StopIteration(self.view)

    def __iter__(self):
        return self

    def send(self, _=None):
        co = self.co
        if co is not None:
            return co.send(None)
        ws = self.ws
        if not self.ready:
            try:
                r = ws._pull()
            except OSError as e:
                r = e
            if r is None:
                self.yielded = True
                core._io_queue.queue_read(ws._s)  # resume when readable (as Stream does)
                return None
            if r != 0:
                self.co = ws._recv(r)
                return self.send(None)
            if not self.yielded:  # as sleep_ms(0): a flood must not starve the others
                self.ready = self.yielded = True
                core._task_queue.push(core.cur_task)
                return None
        self.ready = self.yielded = False
        ws._reading = False
        v = ws._view
        if v is not self.view:
            self.view = v
            self.stop = StopIteration(v)
        e = self.stop
        e.__traceback__ = None  # else each raise would add to it
        raise e

    def throw(self, e):  # the task was cancelled (Task.cancel took it off the IOQueue)
        co = self.co
        self.ready = self.yielded = False
        if co is not None:
            return co.throw(e)
        self.ws._reading = False
        raise e

    __next__ = send


class WebSocket:
    """One client connection at a time; the object (and its buffers) is reused across
    reconnects."""

    def __init__(self, rx_size=4096, tx_size=2048, log=None):
        self._rb = bytearray(rx_size)
        self._rv = memoryview(self._rb)
        self._tb = bytearray(TX_HEADROOM + tx_size)
        self._tv = memoryview(self._tb)
        #: where the caller writes the payload of the next message (tx_size bytes)
        self.tx = self._tv[TX_HEADROOM:]
        #: where an answer to a received message is written (send(n, reply=True)): the
        #: receive buffer, free from when the message has been parsed until the receiver
        #: asks for the next one, which it does only once the answer is sent.  So the
        #: transmit buffer need not hold the largest answer (a full GetConfiguration).
        self.reply = self._rv[TX_HEADROOM:]
        self._cb = bytearray(TX_HEADROOM + _CTRL_MAX)  # outgoing ping / pong / close
        self._cv = memoryview(self._cb)
        self._hb = bytearray(10)  # incoming frame header
        self._hv = memoryview(self._hb)
        self._h16 = memoryview(self._hb)[2:4]
        self._h64 = memoryview(self._hb)[2:10]
        self._ib = bytearray(_CTRL_MAX)  # incoming control payload
        self._iv = memoryview(self._ib)
        self._code = bytearray(2)  # the status code of our close frame
        self._log = log
        #: messages cut short (see TRUNCATED) because they did not fit the receive buffer
        self.rx_oversize = 0
        #: close code the server sent, or None
        self.close_code = None
        self._st = None  # asyncio stream, None when closed
        self._s = None  # the socket under it
        self._gen = 0  # connection number, so a keepalive task ends with its connection
        self._busy = False  # a frame is being drained: other writers wait
        self._lock = asyncio.Lock()  # the queue of writers that had to wait
        self._reading = False  # a recv() owns the read side of the socket
        self._close_sent = False
        self._lingering = False  # close() is reading the server's last frames
        self._last_rx = 0
        # The frame reader (_pull): stage 0 = the 2 header bytes, 1 = the extended
        # length, 2 = the payload; _have = bytes of the stage read so far (for a data
        # payload: its end in _rb so far); _got = bytes of the message reassembled so far;
        # _msg = its opcode (0 = none); _n = payload length of the current frame.
        self._stage = self._have = self._got = self._msg = self._n = 0
        self._skip = 0  # bytes of a refused frame still on the wire
        self._over = 0  # bytes of the current data frame that do not fit: read and dropped
        self._trunc = False  # the message being reassembled lost bytes that way
        self._rx = _Recv(self)
        # The last message _pull() completed: _rb[:_vn].  Consecutive messages often have
        # the same length (answers to one kind of CALL): the view is reused then.
        self._view = None
        self._vn = -1
        #: opcode of the last message recv() returned: 1 text, 2 binary; | TRUNCATED
        self.opcode = 1

    @property
    def closed(self):
        return self._st is None

    def _say(self, msg):
        if self._log:
            self._log(msg)

    def _abort(self):
        s = self._s
        self._s = self._st = None
        self._stage = self._have = self._got = self._msg = self._over = 0  # a new frame
        self._trunc = False
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    # ---- handshake

    async def connect(self, url, cp_id, *, subprotocol="ocpp1.6", auth_key=None, ssl=None,
                      timeout_ms=10000):
        """Open the connection and do the upgrade handshake within `timeout_ms`.

        `url` is ws://host[:port]/path or wss://...; `cp_id` becomes the last path
        segment.  `auth_key` (str) adds HTTP Basic auth (user = cp_id).  `ssl` is a
        verifying tls.SSLContext, required for wss.  Raises WSError (refused, bad
        answer) or OSError (network, timeout) after closing the socket."""
        # The handshake's code is in wsopen.py, imported for it and dropped after: it
        # costs RAM only while connecting (as journalopen does at boot).
        import sys
        import ocpp16
        from ocpp16 import wsopen
        self._abort()
        try:
            tls, host, port, path = wsopen.parse_url(url, cp_id)
            if tls and ssl is None:
                raise WSError("wss needs an ssl context (never connecting unverified)")
            self._gen += 1
            self.close_code = None
            self._close_sent = self._busy = False
            self._say("ws: connecting to %s:%d%s" % (host, port, path))
            await asyncio.wait_for_ms(
                wsopen.handshake(self, host, port, path, cp_id, subprotocol, auth_key,
                                 ssl if tls else None), timeout_ms)
        except asyncio.TimeoutError:
            self._abort()
            raise OSError(ETIMEDOUT)
        except ValueError as e:  # mbedTLS reports a refused certificate this way
            self._abort()
            e = WSError("TLS: " + " ".join(str(e).split()))
            self._say("ws: connect failed: %s" % e)
            raise e
        except BaseException as e:
            self._abort()
            self._say("ws: connect failed: %r" % (e,))
            raise
        finally:
            wsopen = None
            sys.modules.pop("ocpp16.wsopen", None)
            try:
                delattr(ocpp16, "wsopen")
            except AttributeError:
                pass
        self._last_rx = ticks_ms()
        self._say("ws: connected")

    # ---- sending

    def send(self, n, opcode=1, reply=False):
        """Send tx[0:n] (reply: reply[0:n]) as one frame (1 = text, 2 = binary).  Masks
        the buffer in place, so the content is gone afterwards.  Returns an awaitable:
        `await ws.send(n)`, and await it before writing the next message into tx.
        Allocates nothing when the socket takes the frame at once.  Raises OSError when
        the connection is down."""
        if reply:           # (no tuple: this path allocates nothing)
            b = self._rb
            mv = self._rv
        else:
            b = self._tb
            mv = self._tv
        if n > len(b) - TX_HEADROOM:
            raise ValueError
        i = _frame(b, opcode, n)
        if self._busy or self._lock.locked():
            return self._queued(mv, i, TX_HEADROOM + n)
        return self._put(mv, i, TX_HEADROOM + n)

    def _put(self, mv, i, j):
        # Called with no other frame in flight.  Hand the socket the whole frame; if it
        # takes only part, the stream copies the rest and _drain() waits for it.
        s = self._s
        if s is None:
            raise OSError(ENOTCONN)
        try:
            r = s.write(mv, i, j - i)
        except OSError:
            self._abort()
            raise
        if r == j - i:
            return _DONE
        st = self._st
        st.write(mv[i + (r or 0) : j])
        self._busy = True
        return self._drain(st)

    async def _drain(self, st):
        try:
            await st.drain()
        except BaseException:  # failed or cancelled with half a frame out: unusable
            if st is self._st:
                self._abort()
            raise
        finally:
            self._busy = False

    async def _queued(self, mv, i, j):
        # Writers that must wait line up on the lock (first come, first served), so a
        # busy sender cannot starve a ping or a close; the one at the front then waits
        # for the drain in progress (it ends: it completes or fails on a closed socket).
        async with self._lock:
            while self._busy:
                await asyncio.sleep_ms(_BUSY_POLL_MS)
            await self._put(mv, i, j)

    async def _ctrl(self, op, src, n):
        # The payload is copied only once this writer has the socket, so concurrent
        # control frames (pong from recv, ping from keepalive, close) cannot mix.
        async with self._lock:
            while self._busy:
                await asyncio.sleep_ms(_BUSY_POLL_MS)
            b = self._cb
            for k in range(n):
                b[TX_HEADROOM + k] = src[k]
            await self._put(self._cv, _frame(b, op, n), TX_HEADROOM + n)

    async def _send_close(self, code):
        self._close_sent = True
        c = self._code
        if code is None:
            await self._ctrl(8, c, 0)
        else:
            c[0] = code >> 8
            c[1] = code & 0xFF
            await self._ctrl(8, c, 2)

    async def ping(self):
        """Send a ping with an empty payload."""
        await self._ctrl(9, None, 0)

    # ---- receiving
    #
    # recv() reads the socket without waiting (_pull) and waits for it to become
    # readable only when it is empty.  The common case (whole data frames) runs in _Recv,
    # an awaitable made once per WebSocket: a coroutine per message, a chain of them per
    # read, memoryview slices and asyncio's Stream.readinto cost ~1.2 KB per message on
    # 64-bit; this costs the IOQueue registration of the wait.  Control frames, protocol
    # errors and a lost link go to the coroutine _recv().

    def recv(self):
        """Return the next data message as a memoryview into the receive buffer (valid
        until the next recv), or None once the connection is closed or lost.  Pings are
        answered, fragments reassembled, protocol errors closed with 1002; of a message
        larger than rx_size the start comes, marked in `opcode` (TRUNCATED).  Returns an
        awaitable: `msg = await ws.recv()`."""
        rx = self._rx
        rx.co = None
        rx.ready = rx.yielded = False
        if self._lingering or self._st is None:
            rx.co = self._recv(None)
        else:
            self._reading = True
        return rx

    async def _recv(self, r):
        # recv() beyond whole data frames; `r` is what _pull() last returned (None: no
        # read yet, an OSError: the read failed).
        while self._lingering:  # close() reads the socket now; it will be gone shortly
            await asyncio.sleep_ms(10)
        if self._st is None:
            return None
        self._reading = True
        try:
            while True:
                if r is None:
                    r = self._pull()
                    if r is None:
                        yield core._io_queue.queue_read(self._s)
                        continue
                if isinstance(r, OSError):
                    raise r
                if r == 0:
                    return self._view
                if r < 0:
                    return await self._fail(-r, self._skip)
                n = self._n  # a control frame; its payload is in _ib[:n]
                if r == 9:
                    await self._ctrl(10, self._ib, n)
                elif r == 8:
                    if n == 1:
                        return await self._fail(1002, 0)
                    return await self._closing(self._ib, n)
                r = None
        except OSError as e:
            if self._st is not None:
                self._say("ws: connection lost: %r" % (e,))
            self._abort()
            return None
        finally:
            self._reading = False

    def _get(self, mv, i, j):
        # Read what the socket has now into mv[i:j] -> the new i (j = complete).  A read at
        # offset 0 passes a length instead of a slice, so the common case allocates nothing.
        s = self._s
        if s is None:
            raise OSError(ENOTCONN)
        while i < j:
            r = s.readinto(mv, j) if i == 0 else s.readinto(mv[i:j])
            if r is None:
                break
            if not r:
                raise OSError(ENOTCONN)  # EOF
            i += r
        return i

    def _pull(self):
        # Advance the frame reader with what the socket has now, never waiting.
        # -> None: wants more bytes; 0: a whole message, in _view; 8, 9, 10: a control
        # frame, its payload in _ib[:_n]; -1002: close with that code, _skip bytes of
        # the frame unread.  EOF and socket errors raise OSError.
        hb = self._hb
        while True:
            st = self._stage
            if st >= 2:
                if st == 2:
                    n = self._n
                    if hb[0] & 0x08:  # control frame
                        k = self._get(self._iv, self._have, n)
                        if k < n:
                            self._have = k
                            return None
                        self._stage = self._have = 0
                        return hb[0] & 0x0F
                    n += self._got
                    k = self._get(self._rv, self._have, n)
                    if k < n:
                        self._have = k
                        return None
                    if self._over:  # the rest of the frame does not fit: stage 3
                        self._got = n
                        self._stage = 3
                        continue
                else:
                    while self._over:  # read and drop, through the control buffer
                        k = self._get(self._iv, 0, min(self._over, _CTRL_MAX))
                        if not k:
                            return None
                        self._over -= k
                    n = self._got
                self._stage = self._have = 0
                if hb[0] & 0x80:  # FIN: the message is complete
                    if n != self._vn:
                        self._view = self._rv[:n]
                        self._vn = n
                    self.opcode = self._msg | (TRUNCATED if self._trunc else 0)
                    self._got = self._msg = 0
                    self._trunc = False
                    return 0
                self._got = n
                continue
            if st == 0:
                k = self._get(self._hv, self._have, 2)
                if k < 2:
                    self._have = k
                    return None
                self._last_rx = ticks_ms()
                n = hb[1] & 0x7F
                if n >= 126:
                    self._stage = 1
                    self._have = 0
                    continue
            else:
                v = self._h16 if hb[1] & 0x7F == 126 else self._h64
                m = len(v)
                k = self._get(v, self._have, m)
                if k < m:
                    self._have = k
                    return None
                n = 0
                for k in range(m):
                    n = n << 8 | v[k]
            # a whole header: vet it
            h0 = hb[0]
            op = h0 & 0x0F
            err = None
            if hb[1] & 0x80:
                err = "masked frame from server"
                n += 4
            elif h0 & 0x70:
                err = "reserved bits set"
            elif op >= 8:
                if not h0 & 0x80 or n > _CTRL_MAX:
                    err = "bad control frame"
                elif op > 10:
                    err = "unknown opcode %d" % op
            elif op == 0:
                if not self._msg:
                    err = "continuation without a message"
            elif op > 2:
                err = "unknown opcode %d" % op
            elif self._msg:
                err = "new message inside a fragmented one"
            self._skip = n
            if err:
                self._say("ws: protocol error: " + err)
                return -1002
            if op < 8:
                room = len(self._rb) - self._got
                if n > room:
                    if not self._trunc:
                        self._trunc = True
                        self.rx_oversize += 1
                        self._say("ws: message over %d bytes: its start kept, the rest "
                                  "dropped" % len(self._rb))
                    self._over = n - room
                    n = room
                if op:
                    self._msg = op
            self._n = n
            self._stage = 2
            self._have = 0 if op >= 8 else self._got

    async def _closing(self, p, n):
        # The server's close: echo it unless it answers ours, then drop the socket.
        code = p[0] << 8 | p[1] if n >= 2 else None
        self.close_code = code
        self._say("ws: server closed (%s)" % code)
        if not self._close_sent:
            try:
                await self._send_close(code)
            except OSError:
                pass
        self._abort()
        return None

    async def _fail(self, code, skip):
        # Tell the server why, then let it answer: closing a socket with unread data
        # turns the FIN into a RST and the server might lose our close frame.
        self._stage = self._have = self._got = self._msg = 0  # after the refused frame
        try:
            await self._send_close(code)
            await asyncio.wait_for_ms(self._linger(skip), _CLOSE_WAIT_MS)
        except (OSError, asyncio.TimeoutError):
            pass
        self._abort()
        return None

    async def _linger(self, skip):
        # Discard whatever still comes until the server's close frame (or EOF): the
        # `skip` unread bytes of a refused frame first, then whole frames.
        while True:
            if skip:
                k = self._get(self._rv, 0, min(skip, len(self._rb)))
                skip -= k
                if k:
                    continue
            else:
                r = self._pull()
                if r == 8:
                    if self._n >= 2:
                        self.close_code = self._ib[0] << 8 | self._ib[1]
                    return
                if r is not None:
                    if r < 0:  # refused: its payload is not read
                        skip = self._skip
                        self._stage = self._have = self._got = self._msg = 0
                    continue
            yield core._io_queue.queue_read(self._s)

    # ---- keepalive and close

    async def keepalive(self, interval_s, timeout_s):
        """Run for the lifetime of the connection (returns when it closes).  With
        interval_s > 0: ping after interval_s without receiving anything; if nothing at
        all arrives within timeout_s (<= 0: interval_s) after that, the link is dead:
        the socket is closed, so recv() returns None.  Needs a task calling recv()."""
        gen = self._gen
        iv = int(interval_s * 1000)
        to = int((timeout_s if timeout_s > 0 else interval_s) * 1000)
        while self._st is not None and self._gen == gen:
            if iv <= 0:
                await asyncio.sleep_ms(1000)
                continue
            idle = ticks_diff(ticks_ms(), self._last_rx)
            if idle < iv:
                await asyncio.sleep_ms(min(iv - idle, 1000))
                continue
            t0 = ticks_ms()
            try:  # a link whose send buffer stays full cannot even take the ping
                await asyncio.wait_for_ms(self.ping(), to)
            except asyncio.TimeoutError:
                return self._dead(gen, "could not send a ping")
            except OSError:
                continue  # the link is already gone; the loop condition ends us
            t1 = ticks_ms()
            while self._st is not None and self._gen == gen and \
                    ticks_diff(self._last_rx, t0) < 0:
                left = to - ticks_diff(ticks_ms(), t1)
                if left <= 0:
                    return self._dead(gen, "no answer to ping")
                await asyncio.sleep_ms(min(left, 200))

    def _dead(self, gen, why):
        if self._gen == gen and self._st is not None:
            self._say("ws: %s, dropping the link" % why)
            self._abort()

    async def close(self, code=1000):
        """Close handshake: send close(code), wait up to 1 s for the server's close,
        then close the socket.  Idempotent; never raises for a dead link."""
        if self._st is None:
            return
        gen = self._gen
        try:
            if not self._close_sent:
                await self._send_close(code)
            if self._reading:
                # recv() owns the read side; it drops the socket when the answer comes.
                t0 = ticks_ms()
                while self._st is not None and ticks_diff(ticks_ms(), t0) < _CLOSE_WAIT_MS:
                    await asyncio.sleep_ms(10)
            else:
                self._lingering = True
                await asyncio.wait_for_ms(self._linger(0), _CLOSE_WAIT_MS)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            self._lingering = False
        if self._gen == gen:
            self._abort()
