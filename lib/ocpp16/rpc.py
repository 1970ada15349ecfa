"""OCPP-J RPC over the websocket: CALL, CALLRESULT, CALLERROR.

- One outstanding CALL from the charger at a time (`call()`); incoming CALLs are served
  by the receiver while it waits, so crossing CALLs never deadlock.
- Outgoing frames are written by a payload encoder straight into the websocket transmit
  buffer (see jsonw); incoming frames are parsed with `json.loads` on the receive buffer.
- Incoming CALLs are dispatched through a table: action -> handler(ctx, payload) returning
  the response payload (dict) or raising `CallError`; `ctx` is the charge point.  A table value may also be a
  ("module", "function") pair, imported on first use, for rarely used handlers.
- The outcome of a CALL is reported distinctly: RESULT, CALLERROR, TIMEOUT (link up but no
  answer in time) or OFFLINE (no link, or it dropped before the answer).  The journal
  needs that distinction for the OCPP retry rules.
- An answer that comes after the timeout is not lost: whoever made the CALL may ask for
  it (`expect_late`), e.g. delivery for every earlier attempt of a journaled message.
- What a central system sends that is not OCPP-J costs that frame only, never the link:
  it is logged (rate-limited), counted and ignored; a CALLERROR goes only to a uniqueId
  read from `[2,"<id>",...`, and an answer is never answered.  Frames are vetted before
  parsing (jsonvet: nesting, surrogates, UTF-8) and every frame sent is checked to be
  UTF-8.  Only invalid UTF-8 closes the link (1007), as RFC 6455 requires.
"""
import json
import sys
import asyncio
from asyncio import core
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const
from ocpp16.jsonw import Writer
from ocpp16.ws import SENT, TRUNCATED
from ocpp16 import jsonvet, native

RESULT = const(0)
CALLERROR = const(1)
TIMEOUT = const(2)
OFFLINE = const(3)
OUTCOME = ("RESULT", "CALLERROR", "TIMEOUT", "OFFLINE")

# The spec's own spellings stay ("Do not fix", OCPP-J errata 5.1-5.2); aliases a central
# system may send are mapped onto them.
_ALIASES = {"FormatViolation": "FormationViolation",
            "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}

_MAX_ID = const(36)
_LATE_MAX = const(6)          # earlier CALLs whose late answers are still wanted
_QUIET_MS = const(10000)      # at most one line per this about ignored frames
_TOO_BIG = const(0x10000000)  # with jsonvet's flags: the websocket cut the message short


class CallError(Exception):
    """Raised by a handler to answer with a CALLERROR."""

    def __init__(self, code, description=""):
        super().__init__(code)
        self.code = code
        self.description = description


def field(p, name, typ, required=True, maxlen=0):
    """Fetch `p[name]` checking presence and JSON type (OCPP-J error codes on failure).

    `typ` is int, str, bool, dict, list or float (float accepts ints too); `maxlen`: the
    most characters a str may have (CiStringN), 0 = no limit.
    """
    if name not in p:
        if required:
            raise CallError("OccurenceConstraintViolation", "missing " + name)
        return None
    v = p[name]
    if v is None and not required:
        return None     # an optional field sent as null is absent (central systems do it)
    if typ is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif typ is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    else:
        ok = isinstance(v, typ)
    if not ok:
        raise CallError("TypeConstraintViolation", name + " has the wrong type")
    if maxlen and len(v) > maxlen:
        raise CallError("PropertyConstraintViolation", "%s longer than %d" % (name, maxlen))
    return v


def only(p, names):
    """The payload `p` has no field but `names` (the schemas forbid any other)."""
    for k in p:
        if k not in names:
            raise CallError("FormationViolation", "unknown field " + k[:40])


def _is_id(s, n):
    # s == str(n) (n > 0) without making str(n), 64 B.  int() also takes " 12", "+12",
    # "012" or "1_2", but such a spelling of as many characters as n has digits has
    # fewer significant digits, so its value is below n.
    k = 1
    m = n
    while m >= 10:
        m //= 10
        k += 1
    if len(s) != k:
        return False
    try:
        return int(s) == n
    except ValueError:
        return False


# What `await rpc.call(...)` returns, one preallocated StopIteration per outcome.
_DONE = tuple(StopIteration(i) for i in range(4))


class _Answer(asyncio.Event):
    """What call() returns: awaiting it waits until the CALL is settled and gives the
    outcome.  A coroutine would cost 128 B per CALL (Event.wait() is one, and
    ThreadSafeFlag.wait() one plus an IOQueue entry); this puts the task on the event's
    queue as wait() does, so set() wakes it and cancel() takes it off."""

    def __init__(self, rpc):
        super().__init__()
        self.rpc = rpc

    def __iter__(self):
        return self

    def __next__(self):
        if not self.state:
            self.waiting.push(core.cur_task)
            core.cur_task.data = self.waiting
            return None
        e = _DONE[self.rpc.outcome]
        e.__traceback__ = None  # else each raise would add to it
        raise e


_SECRET = b"AuthorizationKey"

def _contains(buf, n, pat, m):
    return pat[:m] in bytes(buf[:n])


_VIPER = r'''
@micropython.viper
def _contains(buf, n: int, pat, m: int) -> int:
    # 1 when pat[:m] occurs in buf[:n]: the trace checks each frame without a copy.
    b = ptr8(buf)
    p = ptr8(pat)
    c0 = p[0]
    i = 0
    while i <= n - m:
        if b[i] == c0:
            j = 1
            while j < m and b[i + j] == p[j]:
                j += 1
            if j == m:
                return 1
        i += 1
    return 0
'''
_fast = native.viper(_VIPER, "_contains")
if _fast:
    _contains = _fast[0]
del _VIPER, _fast


def _peek_id(mv):
    # The uniqueId of a CALL json.loads refused, read only from `[2,"<id>"` at the start
    # (whitespace allowed): anything else has no uniqueId we could answer to.
    b = bytes(mv[:48])
    i = 0
    for want in b"[2,":
        while i < len(b) and b[i] in b" \t\r\n":
            i += 1
        if i >= len(b) or b[i] != want:
            return None
        i += 1
    while i < len(b) and b[i] in b" \t\r\n":
        i += 1
    if i >= len(b) or b[i] != 34:
        return None
    j = b.find(b'"', i + 1)
    if j < 0 or j - i - 1 > _MAX_ID or b.find(b"\\", i + 1, j) >= 0:
        return None
    try:
        return b[i + 1:j].decode()
    except UnicodeError:
        return None


class Rpc:
    """The OCPP-J endpoint of one charge point (survives reconnects; `ws` is reused)."""

    def __init__(self, ws, handlers, log=print, trace=True, timeout_ms=30000, ctx=None):
        """`trace`: True logs every frame to stdout (">> " sent, "<< " received), False
        not at all; or a binary stream to write them to."""
        self.ws = ws
        self.ctx = ctx
        self.w = Writer(ws.tx)          # our CALLs
        self.wr = Writer(ws.reply)      # answers to the central system's (ws.reply)
        self.handlers = handlers
        self.log = log
        if trace is True:
            trace = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
        self.trace = trace or None
        self.timeout_ms = timeout_ms
        self.online = False
        self._id = 0          # last uniqueId sent (digits); unique per connection and beyond
        self._pending = 0     # uniqueId of the outstanding CALL, 0 = none
        self._deadline = 0
        self._answer = _Answer(self)
        self._aw = None       # a send still under way (see _put)
        self._lock = asyncio.Lock()
        # Outcome of the last call()
        self.outcome = OFFLINE
        self.payload = None
        self.error_code = None
        self.error_description = None
        self.errors_sent = 0  # CALLERRORs we answered (malformed input from the server)
        self.ignored = 0      # frames that were not OCPP-J, ignored (logged rate-limited)
        self.repaired = 0     # frames sent with invalid UTF-8 replaced (see jsonvet)
        self.last_id = 0      # uniqueId of the last CALL sent (for expect_late)
        self.dropped = False  # the last OFFLINE came from a link lost with the CALL out
        self._said_at = None  # ticks_ms of the last "ignored" line
        self._late = []       # [uniqueId, fn(outcome, payload), deadline or None]
        self.health = None    # a health.Health the receiver checks in with

    # -- output ---------------------------------------------------------------------------
    def _trace(self, arrow, buf, n):
        out = self.trace
        if out:
            out.write(arrow)
            if _contains(buf, n, _SECRET, 16):
                # Never log the security profile password (ChangeConfiguration).
                out.write(b"(frame about AuthorizationKey, not logged)")
            else:
                out.write(buf, 0, n)
            out.write(b"\n")

    def _check(self, w):
        # The frame in `w` is about to go out: never as invalid UTF-8.
        bad = jsonvet.repair(w.buf, w.n)
        if bad:
            self.repaired += 1
            self.log("rpc: %d byte(s) of invalid UTF-8 in an outgoing frame replaced by '?'"
                     % bad)

    async def _send(self):
        # An answer (wr), lock held.
        w = self.wr
        self._check(w)
        self._trace(b">> ", w.buf, w.n)
        await self.ws.send(w.n, 1, True)

    def call(self, action, encode, arg=None):
        """Send CALL `action` (bytes) with payload written by `encode(writer, arg)`.

        Returns an awaitable: `out = await rpc.call(...)` gives RESULT, CALLERROR, TIMEOUT
        or OFFLINE once the CALL is settled; the answer is then in `self.payload` (dict) or
        `self.error_code` / `self.error_description`.  One task makes the calls (the charge
        point's sender): the next call() comes after the last one was awaited.
        """
        # Not a coroutine: on the common path (link up, transmit buffer free, the socket
        # takes the frame at once) the frame is sent here and the reusable _Answer is
        # returned, so a CALL allocates nothing of its own.
        if not self.online:
            self._finish(OFFLINE)
            return self._answer
        self.payload = self.error_code = self.error_description = None
        # A free lock is taken as acquire() would, without the coroutine acquire() costs
        # (asyncio.Lock.state: 0 = free, 1 = held, a Task = being handed over).
        if self._lock.state != 0:
            return self._call_locked(action, encode, arg)  # _reply or _error is sending
        self._lock.state = 1
        if self._put(action, encode, arg):
            return self._call_sending()
        return self._answer  # settled at once when the send failed (OFFLINE)

    async def _call_locked(self, action, encode, arg):
        await self._lock.acquire()
        if self._put(action, encode, arg):
            await self._sent()
        return await self._answer

    async def _call_sending(self):
        await self._sent()
        return await self._answer

    def _put(self, action, encode, arg):
        # call() with the lock held: write the CALL and hand it to the websocket.  True when
        # the send is still under way (call() then awaits _sent()); else the lock is
        # released, and a failed send has ended the call OFFLINE.
        w = self.w
        try:
            self._id += 1
            w.reset()
            w.raw(b'[2,"')
            w.int(self._id)
            w.raw(b'","')
            w.raw(action)
            w.raw(b'",')
            encode(w, arg)
            w.raw(b"]")
            self._pending = self.last_id = self._id
            self._deadline = ticks_add(ticks_ms(), self.timeout_ms)
            self._answer.clear()
            self.dropped = False
            self._check(w)
            self._trace(b">> ", w.buf, w.n)
            try:
                aw = self.ws.send(w.n)
            except OSError:
                self._lost()
                aw = SENT
        except BaseException:
            self._lock.release()
            raise
        if aw is SENT:
            self._lock.release()
            return False
        self._aw = aw
        return True

    async def _sent(self):
        # The rest of a send the socket did not take at once (or any other websocket's
        # send), with the lock held until it is done.
        aw = self._aw
        self._aw = None
        try:
            await aw
        except OSError:
            self._lost()
        finally:
            self._lock.release()

    def _finish(self, outcome):
        self._pending = 0
        self.outcome = outcome
        self._answer.set()

    def tick(self):
        """Called periodically by the supervisor: frees the slot after the response timeout."""
        now = ticks_ms()
        if self._pending and ticks_diff(now, self._deadline) > 0:
            self.log("rpc: no answer to CALL %d within %d ms" % (self._pending, self.timeout_ms))
            self._finish(TIMEOUT)
        late = self._late
        for e in late:
            if e[2] is not None and ticks_diff(now, e[2]) > 0:
                late.remove(e)
                e[1](TIMEOUT, None)
                break   # the list changed under the loop; the rest wait for the next tick

    def expect_late(self, uid, fn, wait_ms=None):
        """After a TIMEOUT: an answer to CALL `uid` that still comes calls fn(outcome,
        payload) (RESULT with the payload, or CALLERROR); after wait_ms (None = until
        forget_late(fn)) fn(TIMEOUT, None) is called instead.  At most a few are kept:
        the oldest is forgotten (its fn is told TIMEOUT)."""
        if len(self._late) >= _LATE_MAX:
            e = self._late.pop(0)
            e[1](TIMEOUT, None)
        self._late.append([uid, fn, None if wait_ms is None
                           else ticks_add(ticks_ms(), wait_ms)])

    def forget_late(self, fn):
        """No late answer is wanted any more by fn."""
        self._late = [e for e in self._late if e[1] is not fn]

    def settle(self, outcome, payload):
        """Settle the outstanding CALL with an answer that came another way (a late answer
        to an earlier attempt of the same message)."""
        if self._pending:
            self.payload = payload
            self._finish(outcome)

    def connected(self):
        self.online = True

    def disconnected(self):
        """The link dropped: an outstanding CALL ends OFFLINE (it is not a failure)."""
        self.online = False
        if self._pending:
            self.dropped = True
            self._finish(OFFLINE)
        # No answer comes over a link that is gone: those still waiting are told now.
        late = self._late
        self._late = []
        for e in late:
            e[1](TIMEOUT, None)

    def _lost(self):
        # A send failed: the socket is gone (ws closed it).  Offline until the receiver
        # has seen the end and the link is made again: no caller may spin on OFFLINE.
        self.online = False
        self._finish(OFFLINE)

    def _answer_head(self, start, uid):
        # The start of an answer frame, `[3,"<uid>",` or `[4,"<uid>",`, lock held.
        w = self.wr
        w.reset()
        w.raw(start)
        w.str(uid)
        w.byte(44)
        return w

    async def _reply(self, uid, payload):
        await self._lock.acquire()
        try:
            w = self._answer_head(b"[3,", uid)
            try:
                if callable(payload):
                    payload(w)          # a handler's own encoder (a long answer, no dicts)
                else:
                    w.value(payload)
                w.raw(b"]")
            except (ValueError, TypeError):
                too_big = True
            else:
                too_big = False
                await self._send()
        finally:
            self._lock.release()
        if too_big:
            # The answer does not fit the transmit buffer: say so rather than go silent.
            self.log("rpc: answer to %s does not fit the answer buffer" % uid)
            await self._error(uid, "GenericError", "response too large for the charger")

    async def _error(self, uid, code, description=""):
        self.errors_sent += 1
        await self._lock.acquire()
        try:
            w = self._answer_head(b"[4,", uid)
            w.str(code)
            w.byte(44)
            w.str(description[:255])
            w.raw(b",{}]")
            await self._send()
        finally:
            self._lock.release()

    # -- input ----------------------------------------------------------------------------
    async def serve(self):
        """Receive and dispatch frames until the connection closes (returns then).

        Whatever one frame does (a decoder out of memory, a handler's bug, a send that
        fails), it costs that frame only: this loop ends only with the link."""
        ws = self.ws
        try:
            while True:
                mv = await ws.recv()
                if mv is None:
                    break
                if self.health:
                    self.health.beat("link")    # the receiver is the link task's body
                try:
                    # Answers to our CALLs, most of the traffic, end here without a coroutine.
                    work = self._take(mv)
                    if work is not True and not await self._work(work):
                        break
                except Exception as e:      # MemoryError, a bug: that frame is lost
                    self._ignore("frame not handled (%r)" % (e,))
        finally:
            self.disconnected()

    async def handle(self, mv):
        """Handle one received message; False when the link must close (it is closed)."""
        work = self._take(mv)
        return work is True or await self._work(work)

    def _take(self, mv):
        # The part of handling a frame that needs no coroutine: True when it is done with
        # (an answer, an ignored frame); else what _work() does: [mv, msg or None, flags],
        # or None when the frame is not UTF-8.
        n = len(mv)
        self._trace(b"<< ", mv, n)
        op = getattr(self.ws, "opcode", 1)
        if op & 0x7F != 1:
            self._ignore("binary frame")
            return True
        if op & TRUNCATED:
            return [mv, None, _TOO_BIG]     # a CALLERROR if it starts as a CALL
        r = jsonvet.vet(mv, n)
        if r & jsonvet.BAD_UTF8:
            return None
        if r & jsonvet.LENGTH != n:
            mv = mv[:r & jsonvet.LENGTH]    # surrogate pairs were combined in place
        msg = self._settle(mv, r)
        return True if msg is True else [mv, msg, r]

    async def _work(self, work):
        if work is None:
            self.log("rpc: text frame is not UTF-8; closing (1007, RFC 6455 8.1)")
            await self.ws.close(1007)
            return False
        await self._handle(work[0], work[1], work[2])
        return True

    def _ignore(self, what):
        # A frame that is not OCPP-J: counted, and said at most once per _QUIET_MS.
        self.ignored += 1
        now = ticks_ms()
        if self._said_at is None or ticks_diff(now, self._said_at) >= _QUIET_MS:
            self._said_at = now
            self.log("rpc: ignored: %s (%d frame(s) ignored so far)" % (what, self.ignored))

    def _settle(self, mv, flags):
        # Parse a frame.  An answer (CALLRESULT, CALLERROR) settles the outstanding CALL,
        # and anything that is neither an answer nor a CALL is ignored: -> True.  A CALL
        # -> the frame; unparsable -> None.
        if flags & (jsonvet.DEEP | jsonvet.UNBALANCED):
            return None     # not decoded: a CALLERROR if it starts as a CALL
        try:
            msg = json.loads(mv)
        except Exception:       # ValueError, UnicodeError, MemoryError
            return None
        if not isinstance(msg, list) or not msg or type(msg[0]) is not int:
            self._ignore("not an OCPP-J message")
            return True
        t = msg[0]
        if t == 2:
            return msg
        if (t != 3 and t != 4) or len(msg) < 3 or not isinstance(msg[1], str):
            self._ignore("message type %d" % t if t != 3 and t != 4 else "broken answer")
            return True
        uid = msg[1]
        if t == 3:
            payload = msg[2] if isinstance(msg[2], dict) else {}
        else:
            code = msg[2] if isinstance(msg[2], str) else "GenericError"
            payload = None
        if not self._pending or not _is_id(uid, self._pending):
            for e in self._late:
                if _is_id(uid, e[0]):
                    self._late.remove(e)
                    self.log("rpc: late answer to CALL %s taken" % uid)
                    e[1](RESULT if t == 3 else CALLERROR, payload)
                    return True
            self.log("rpc: answer to unknown uniqueId %s ignored" % uid)
        elif t == 3:
            self.payload = payload
            self._finish(RESULT)
        else:
            self.error_code = _ALIASES.get(code, code)
            self.error_description = msg[3] if len(msg) > 3 and isinstance(msg[3], str) else ""
            self._finish(CALLERROR)
        return True

    async def _handle(self, mv, msg, flags):
        # handle() for CALLs and frames json.loads refused (msg None).
        if msg is None:
            uid = _peek_id(mv)
            if uid is not None and flags & jsonvet.LONE and "\ufffd" in uid:
                uid = None      # not the id the central system sent: no answer names it
            if uid is None:
                self._ignore("frame over %d bytes" % len(mv) if flags & _TOO_BIG
                             else "frame nested too deep" if flags & jsonvet.DEEP
                             else "unreadable frame")
            elif flags & _TOO_BIG:
                await self._error(uid, "GenericError", "message larger than the charger's "
                                  "receive buffer (%d bytes)" % len(mv))
            else:
                await self._error(uid, "FormationViolation",
                                  "nested deeper than %d" % jsonvet.MAX_DEPTH
                                  if flags & jsonvet.DEEP else "not an OCPP-J message")
            return
        uid = msg[1] if len(msg) > 1 else None
        if not isinstance(uid, str):
            self._ignore("CALL without a string uniqueId")
        elif flags & jsonvet.LONE and "\ufffd" in uid:
            self._ignore("uniqueId with a lone surrogate (no answer could name it)")
        elif len(msg) != 4 or not isinstance(msg[2], str):
            await self._error(uid, "FormationViolation", "CALL needs [2,id,action,payload]")
        elif not isinstance(msg[3], dict):
            await self._error(uid, "TypeConstraintViolation", "payload must be an object")
        elif flags & jsonvet.LONE:
            await self._error(uid, "PropertyConstraintViolation",
                              "a string holds a lone surrogate (not a character)")
        else:
            await self._dispatch(uid, msg[2], msg[3])

    async def _dispatch(self, uid, action, payload):
        h = self.handlers.get(action)
        if h is None:
            # The profiles beyond Core: (action, module, function) rows of the context,
            # a constant table (no RAM until one is used).
            for a, m, f in getattr(self.ctx, "PROFILES", ()):
                if a == action:
                    h = (m, f)
        if h is None:
            await self._error(uid, "NotImplemented", "unknown action " + action)
            return
        if isinstance(h, tuple):  # lazy import of a rarely used handler
            try:
                mod = __import__(h[0], None, None, (h[1],))
            except ImportError:
                # A build that left the profile's module out: it is not implemented.
                await self._error(uid, "NotImplemented", action + " not in this build")
                return
            h = self.handlers[action] = getattr(mod, h[1])
        try:
            res = h(self.ctx, payload)
            if res is not None and hasattr(res, "send"):
                res = await res
        except CallError as e:
            await self._error(uid, e.code, e.description)
            return
        except Exception as e:  # a bug in a handler must not take the link down
            self.log("rpc: handler %s failed: %r" % (action, e))
            sys.print_exception(e)
            await self._error(uid, "InternalError", "handler failed")
            return
        await self._reply(uid, res if res is not None else {})
