"""A loopback TCP proxy that breaks the link between a charger and its central system.

    proxy = ChaosProxy(upstream_port=csms.port, seed=1234).start()
    sim = start_sim("ws://127.0.0.1:%d/ocpp" % proxy.port, ...)
    ...                           # sessions run while the proxy cuts and stalls the link
    proxy.calm()                  # from now on: a clean link (stalls released, no cuts)
    print(proxy.summary())
    proxy.stop()

It sits below the websocket layer (CPython asyncio, in a thread of its own) and parses
just enough of each byte stream to know where units start and end: the HTTP upgrade head,
then websocket frames (client-to-server frames are unmasked to read the OCPP text).  Bytes
are passed on unit by unit (an incomplete unit is held until it is complete, which TCP
allows), so a cut can be placed exactly: inside the handshake, inside a frame, between a
CALL and its answer, right after an answer.

Each accepted connection gets a plan: its kind is dealt from a deck (DECK, reshuffled
every round by a random.Random seeded with `seed`), its details are drawn from a
random.Random seeded with (seed, connection number).  A given seed gives the same
sequence of plans; the timing of the processes around it still varies.

  clean            forward everything (until the lifetime timer, see below)
  handshake        cut inside the upgrade request or response (0..n-1 bytes passed)
  bytes            cut after N bytes in one direction, wherever that falls
  midframe         cut inside websocket frame #k of one direction
  answer_lost      forward the charger's k-th CALL (of chosen actions), then drop the
                   central system's answer to it (0..n-1 of its bytes passed) and cut
  answer_then_cut  forward that answer, let the charger read it, then cut
  reverse          forward a central-system CALL, drop the charger's answer and cut
  stall            hold one direction before a unit (the next transaction CALL or the
                   answer to one, the handshake head, or frame #k): short (< the
                   charger's MessageTimeout) then forward; medium (longer than the
                   response timeout, shorter than the dead-link detection) then forward;
                   long (beyond the dead-link detection) then cut or forward.  Bytes held
                   from the charger still reach the central system if the charger gave
                   up on that connection meanwhile (a middlebox delivering late), so the
                   central system may get a CALL after the charger reconnected.

On top of the plan: per-unit latency, "dribble" (a unit passed in small pieces with small
pauses), and a lifetime timer that cuts the connection at a random moment.  A cut is an
RST (SO_LINGER 0) or a FIN, chosen at random, on both sockets.

Everything it does is kept in `events` (dicts) and `log` (lines); `summary()` sums it up.
"""
import asyncio
import collections
import json
import random
import socket
import struct
import threading
import time

C2S = "c2s"      # charger -> central system
S2C = "s2c"      # central system -> charger

TX_ACTIONS = ("StartTransaction", "StopTransaction", "MeterValues")

# The plans are dealt from a deck, shuffled again for every round, so that any stretch of
# about a dozen connections sees each kind of trouble once: (kind, fixed details); the
# rest of the details are drawn per connection.
DECK = (("answer_lost", {"actions": ("StartTransaction",)}),
        ("answer_lost", {"actions": ("StopTransaction",)}),
        ("answer_lost", {"actions": TX_ACTIONS}),
        ("answer_lost", {"actions": None}),
        ("answer_then_cut", {}),
        ("reverse", {}),
        ("handshake", {}),
        ("bytes", {}),
        ("midframe", {}),
        ("stall", {"class": "medium", "dir": S2C, "at": "tx"}),
        ("stall", {"class": "medium", "dir": C2S, "at": "tx"}),
        ("stall", {"class": "long", "at": "tx"}),
        ("stall", {}),
        ("clean", {}))


class _Cut(Exception):
    """Raised inside a pump once the connection has been cut."""


class StreamParser:
    """Splits one direction's byte stream into units: the HTTP head, then websocket
    frames.  Returns (bytes, info) per complete unit."""

    def __init__(self):
        self.buf = bytearray()
        self.head_done = False
        self.frames = 0

    def feed(self, data):
        self.buf += data

    def next_unit(self):
        buf = self.buf
        if not self.head_done:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > 65536:         # not HTTP: pass it on as one raw unit
                    data = bytes(buf)
                    del buf[:]
                    return data, {"kind": "raw"}
                return None
            data = bytes(buf[:i + 4])
            del buf[:i + 4]
            self.head_done = True
            first = data.split(b"\r\n", 1)[0].decode("latin-1")
            return data, {"kind": "head", "text": first}
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        op = b0 & 0x0F
        masked = b1 & 0x80
        n = b1 & 0x7F
        p = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack(">H", bytes(buf[2:4]))[0]
            p = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack(">Q", bytes(buf[2:10]))[0]
            p = 10
        key = None
        if masked:
            if len(buf) < p + 4:
                return None
            key = bytes(buf[p:p + 4])
            p += 4
        if len(buf) < p + n:
            return None
        payload = bytes(buf[p:p + n])
        if key:
            payload = bytes(c ^ key[i & 3] for i, c in enumerate(payload))
        data = bytes(buf[:p + n])
        del buf[:p + n]
        info = {"kind": "frame", "op": op, "index": self.frames, "len": n}
        self.frames += 1
        if op == 1:
            info["text"] = payload.decode("utf-8", "replace")
            try:
                msg = json.loads(info["text"])
            except ValueError:
                msg = None
            if isinstance(msg, list) and len(msg) >= 3 and isinstance(msg[1], str):
                info["msg"] = msg
        return data, info


def describe(info):
    """Short text for a unit: 'frame #3 MeterValues CALL uid 17' and the like."""
    if info["kind"] == "head":
        return "handshake head (%s)" % info["text"]
    if info["kind"] != "frame":
        return info["kind"]
    names = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
    msg = info.get("msg")
    if msg:
        t = msg[0]
        if t == 2 and len(msg) >= 3:
            what = "%s CALL uid %s" % (msg[2], msg[1])
        elif t == 3:
            what = "CALLRESULT uid %s" % msg[1]
        elif t == 4:
            what = "CALLERROR uid %s" % msg[1]
        else:
            what = "message type %r" % t
    else:
        what = names.get(info["op"], "op %d" % info["op"])
    return "frame #%d %s" % (info["index"], what)


class _Conn:
    def __init__(self, proxy, no, creader, cwriter):
        self.proxy = proxy
        self.no = no
        self.rng = random.Random("%s/%d" % (proxy.seed, no))
        self.creader, self.cwriter = creader, cwriter
        self.sreader = self.swriter = None
        self.closed = False
        self.t0 = time.monotonic()
        self.pos = {C2S: 0, S2C: 0}
        self.frames = {C2S: 0, S2C: 0}
        self.calls = {}            # uid -> action of the charger's CALLs
        self.cs_calls = {}         # uid -> action of the central system's CALLs
        self.matched = 0           # charger CALLs matching the plan's actions so far
        self.lose_uid = None       # s2c: the answer to drop (answer_lost)
        self.cut_after_uid = None  # s2c: cut right after this answer (answer_then_cut)
        self.plan = proxy.plan_for(self.rng) if not proxy.calmed else {"kind": "calm"}
        self.tasks = []

    # -- logging ---------------------------------------------------------------------------
    def note(self, ev, text, **kw):
        self.proxy.record(self.no, ev, text, **kw)

    # -- cutting ---------------------------------------------------------------------------
    def cut(self, kind, where):
        if self.closed:
            raise _Cut()
        self.closed = True
        how = self.rng.choice(("rst", "fin"))
        self.note("cut", "CUT %s: %s (%s)" % (kind, where, how), kind=kind, how=how)
        for w in (self.cwriter, self.swriter):
            if w is None:
                continue
            try:
                if how == "rst":
                    sock = w.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    w.transport.abort()
                else:
                    w.transport.close()
            except OSError:
                pass
        raise _Cut()

    def close_quietly(self, why):
        if self.closed:
            return
        self.closed = True
        self.note("closed", "closed: %s" % why, kind=why)
        for w in (self.cwriter, self.swriter):
            if w is not None:
                try:
                    w.transport.close()
                except OSError:
                    pass

    # -- running ---------------------------------------------------------------------------
    async def run(self, upstream_port):
        p = self.plan
        self.note("connect", "connection, plan %s" % _plan_text(p), plan=p.get("kind"))
        try:
            self.sreader, self.swriter = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError as e:
            self.close_quietly("upstream connect failed: %s" % e)
            return
        self.tasks = [asyncio.ensure_future(self.pump(C2S, self.creader, self.swriter)),
                      asyncio.ensure_future(self.pump(S2C, self.sreader, self.cwriter))]
        if p.get("lifetime"):
            self.tasks.append(asyncio.ensure_future(self.timer(p["lifetime"])))
        await asyncio.wait(self.tasks[:2], return_when=asyncio.ALL_COMPLETED)
        for t in self.tasks[2:]:
            t.cancel()
        self.note("end", "connection over after %.1f s: %d bytes c2s (%d frames), %d bytes "
                  "s2c (%d frames)" % (time.monotonic() - self.t0, self.pos[C2S],
                                       self.frames[C2S], self.pos[S2C], self.frames[S2C]))

    async def timer(self, seconds):
        try:
            await asyncio.wait_for(self.proxy.calm_event.wait(), seconds)
            return                                    # calm: no more cuts
        except asyncio.TimeoutError:
            pass
        if self.closed:
            return
        try:
            self.cut("timer", "lifetime of %.1f s over (c2s %d bytes, s2c %d bytes sent)"
                     % (seconds, self.pos[C2S], self.pos[S2C]))
        except _Cut:
            pass

    async def pump(self, d, reader, writer):
        parser = StreamParser()
        other = "central system" if d == S2C else "charger"
        try:
            while not self.closed:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError) as e:
                    self.close_quietly("%s side reset (%s)" % (other, e.__class__.__name__))
                    return
                if not data:
                    self.close_quietly("%s closed (EOF)" % other)
                    return
                parser.feed(data)
                while not self.closed:
                    u = parser.next_unit()
                    if u is None:
                        break
                    await self.unit(d, u[0], u[1], writer)
        except _Cut:
            return
        except (ConnectionError, OSError) as e:
            self.close_quietly("write to the %s failed (%s)"
                               % ("charger" if d == S2C else "central system",
                                  e.__class__.__name__))

    async def write(self, d, writer, data):
        if not data:
            return
        dribble = self.plan.get("dribble") and not self.proxy.calmed
        if dribble:
            i = 0
            while i < len(data):
                if self.closed:
                    raise _Cut()
                k = self.rng.randint(1, 48)
                writer.write(data[i:i + k])
                await writer.drain()
                i += k
                await asyncio.sleep(self.rng.uniform(0, 0.015))
        else:
            writer.write(data)
            await writer.drain()
        self.pos[d] += len(data)

    async def unit(self, d, data, info, writer):
        p = self.plan
        kind = p["kind"]
        msg = info.get("msg")
        where = "%s %s" % (d, describe(info))
        if self.proxy.calmed or kind == "calm":
            self.before(d, msg, chaos=False)
            await self.write(d, writer, data)
            self.after(d, info, msg, chaos=False)
            return
        # Stalls hold this direction before the chosen unit.
        if kind == "stall" and d == p["dir"] and not p.get("done") and self._stall_here(info, msg):
            p["done"] = True
            t = time.monotonic()
            self.note("stall", "STALL %s %.1f s before %s" % (p["class"], p["secs"], where),
                      kind=p["class"])
            try:
                await asyncio.wait_for(self.proxy.calm_event.wait(), p["secs"])
                released = "released early by calm()"
            except asyncio.TimeoutError:
                released = None
            if self.closed:
                raise _Cut()
            held = time.monotonic() - t
            if p["then"] == "cut" and not released:
                self.cut("stall", "after holding %s for %.1f s" % (where, held))
            self.note("stall_end", "stall of %s over after %.1f s: forwarding%s"
                      % (d, held, " (%s)" % released if released else ""), kind=p["class"])
        if p.get("latency"):
            await asyncio.sleep(self.rng.uniform(0, p["latency"]))
        if self.closed:
            raise _Cut()
        # Cuts placed inside this unit.
        if kind == "handshake" and d == p["dir"] and info["kind"] == "head":
            k = self.rng.randint(0, len(data) - 1)
            await self.write(d, writer, data[:k])
            self.cut("handshake", "inside %s after %d/%d bytes" % (where, k, len(data)))
        if kind == "midframe" and d == p["dir"] and info["kind"] == "frame" \
                and info["index"] >= p["frame"] and len(data) >= 2:
            k = self.rng.randint(1, len(data) - 1)
            await self.write(d, writer, data[:k])
            self.cut("midframe", "inside %s after %d/%d bytes" % (where, k, len(data)))
        if kind == "bytes" and d == p["dir"] and self.pos[d] < p["n"] <= self.pos[d] + len(data):
            k = p["n"] - self.pos[d]
            await self.write(d, writer, data[:k])
            self.cut("bytes", "%s byte %d, inside %s after %d/%d bytes"
                     % (d, p["n"], describe(info), k, len(data)))
        if msg and msg[0] in (3, 4):
            if d == S2C and msg[1] == self.lose_uid:
                k = self.rng.choice((0, self.rng.randint(0, len(data) - 1)))
                await self.write(d, writer, data[:k])
                self.cut("answer_lost", "answer to the charger's %s CALL uid %s dropped "
                         "(%d/%d bytes passed)" % (self.calls.get(msg[1]), msg[1], k, len(data)))
            if d == C2S and kind == "reverse" and msg[1] in self.cs_calls:
                k = self.rng.choice((0, self.rng.randint(0, len(data) - 1)))
                await self.write(d, writer, data[:k])
                self.cut("reverse", "charger's answer to the central system's %s CALL uid %s "
                         "dropped (%d/%d bytes passed)"
                         % (self.cs_calls[msg[1]], msg[1], k, len(data)))
        self.before(d, msg, chaos=True)
        await self.write(d, writer, data)
        if msg and msg[0] in (3, 4) and d == S2C and msg[1] == self.cut_after_uid:
            # Let the answer leave our socket and be read, then cut: an RST can make the
            # peer's kernel discard data not read yet.
            for _ in range(50):
                if writer.transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        self.after(d, info, msg, chaos=True)

    def _stall_here(self, info, msg):
        at = self.plan["at"]
        if at == "tx":        # a transaction CALL (c2s) or the answer to one (s2c)
            if not msg:
                return False
            if self.plan["dir"] == C2S:
                return msg[0] == 2 and msg[2] in TX_ACTIONS
            return msg[0] in (3, 4) and self.calls.get(msg[1]) in TX_ACTIONS
        if at < 0:
            return info["kind"] == "head"
        return info["kind"] == "frame" and info["index"] >= at

    def before(self, d, msg, chaos):
        """A CALL about to be passed on whole: note it, and arm an answer cut on it (before
        the write: the answer may come back before this pump runs again)."""
        if not msg or msg[0] != 2 or len(msg) < 3:
            return
        p = self.plan
        if d == S2C:
            self.cs_calls[msg[1]] = msg[2]
            return
        self.calls[msg[1]] = msg[2]
        if chaos and p["kind"] in ("answer_lost", "answer_then_cut") \
                and (p["actions"] is None or msg[2] in p["actions"]):
            if self.matched == p["index"]:
                if p["kind"] == "answer_lost":
                    self.lose_uid = msg[1]
                else:
                    self.cut_after_uid = msg[1]
                self.note("armed", "%s armed on %s CALL uid %s" % (p["kind"], msg[2], msg[1]))
            self.matched += 1

    def after(self, d, info, msg, chaos):
        """Bookkeeping once a unit went through, and the cut that follows an answer."""
        if info["kind"] == "frame":
            self.frames[d] += 1
            if info["op"] == 8:
                self.note("close_frame", "%s close frame passed" % d)
        if msg and msg[0] in (3, 4) and d == S2C and chaos and msg[1] == self.cut_after_uid:
            self.cut("answer_then_cut", "right after the answer to %s CALL uid %s was passed"
                     % (self.calls.get(msg[1]), msg[1]))


def _plan_text(p):
    k = p["kind"]
    extra = []
    if k in ("handshake", "bytes", "midframe", "stall"):
        extra.append(p["dir"])
    if k == "bytes":
        extra.append("at byte %d" % p["n"])
    if k == "midframe":
        extra.append("frame #%d" % p["frame"])
    if k in ("answer_lost", "answer_then_cut"):
        extra.append("CALL #%d of %s" % (p["index"], "/".join(p["actions"]) if p["actions"]
                                          else "any action"))
    if k == "stall":
        extra.append("%s %.1f s before %s, then %s"
                     % (p["class"], p["secs"], "a transaction message" if p["at"] == "tx" else
                        "the head" if p["at"] < 0 else "frame #%d" % p["at"],
                        p["then"]))
    if p.get("latency"):
        extra.append("latency <= %.2f s" % p["latency"])
    if p.get("dribble"):
        extra.append("dribble")
    if p.get("lifetime"):
        extra.append("lifetime %.1f s" % p["lifetime"])
    return k + (" (" + ", ".join(extra) + ")" if extra else "")


class ChaosProxy:
    def __init__(self, upstream_port, seed, host="127.0.0.1", stall_short=(0.3, 3.0),
                 stall_medium=(5.5, 9.0), stall_long=(10.0, 16.0), lifetime=(3.0, 10.0),
                 lifetime_clean=(1.5, 8.0)):
        self.upstream_port = upstream_port
        self.seed = seed
        self.host = host
        self.stall_short, self.stall_medium, self.stall_long = stall_short, stall_medium, stall_long
        self.lifetime, self.lifetime_clean = lifetime, lifetime_clean
        self.port = None
        self.calmed = False
        self.events = []
        self.log = []
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._server = None
        self._conns = []
        self._nconn = 0
        self._deck = []
        self._deck_rng = random.Random("deck/%s" % seed)
        self.t0 = time.monotonic()
        self.calm_event = None

    # -- plans -----------------------------------------------------------------------------
    def plan_for(self, rng):
        if not self._deck:
            self._deck = list(DECK)
            self._deck_rng.shuffle(self._deck)
        kind, fixed = self._deck.pop(0)
        p = {"kind": kind, "dir": rng.choice((C2S, S2C))}
        if kind == "bytes":
            p["n"] = rng.randint(1, 4000 if p["dir"] == C2S else 1500)
        elif kind == "midframe":
            p["frame"] = rng.randint(0, 8)
        elif kind in ("answer_lost", "answer_then_cut"):
            p["actions"] = rng.choice((TX_ACTIONS, ("StartTransaction",), ("StopTransaction",),
                                       ("MeterValues",)))
            p["index"] = rng.randint(0, 1)
        elif kind == "stall":
            cls = fixed.get("class") or rng.choice(("short", "short", "medium", "long"))
            lo, hi = getattr(self, "stall_" + cls)
            p.update({"class": cls, "secs": rng.uniform(lo, hi),
                      "at": rng.choice(("tx", -1) + tuple(range(0, 6))),
                      "then": "cut" if cls == "long" and rng.random() < 0.5 else "forward"})
        p.update(fixed)
        if rng.random() < 0.3:
            p["latency"] = rng.uniform(0.02, 0.3)
        if rng.random() < 0.15:
            p["dribble"] = True
        # Every connection ends by a timer cut at the latest: soon for a clean one, later
        # for one whose trigger has to come first.
        lo, hi = self.lifetime_clean if kind == "clean" else self.lifetime
        p["lifetime"] = rng.uniform(lo, hi) + (p["secs"] if kind == "stall" else 0)
        return p

    # -- records ---------------------------------------------------------------------------
    def record(self, conn, ev, text, **kw):
        t = time.monotonic() - self.t0
        with self._lock:
            self.events.append(dict(kw, t=round(t, 3), conn=conn, ev=ev, text=text))
            self.log.append("%8.3f #%d %s" % (t, conn, text))

    # -- lifetime --------------------------------------------------------------------------
    def start(self):
        ready = threading.Event()
        err = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self.calm_event = asyncio.Event()
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, self.host, 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except Exception as e:      # noqa: BLE001 - reported to the starter
                err.append(e)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=5))
                loop.close()

        self._thread = threading.Thread(target=run, name="chaosproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("chaos proxy did not start")
        if err:
            raise err[0]
        self.record(0, "start", "proxy 127.0.0.1:%d -> 127.0.0.1:%d, seed %s"
                    % (self.port, self.upstream_port, self.seed))
        return self

    async def _accept(self, reader, writer):
        self._nconn += 1
        c = _Conn(self, self._nconn, reader, writer)
        self._conns.append(c)
        try:
            await c.run(self.upstream_port)
        except Exception as e:       # noqa: BLE001 - a proxy bug must show, not hang
            self.record(c.no, "error", "proxy error: %r" % e)
            c.close_quietly("proxy error")

    def calm(self):
        """No more chaos: held traffic goes on at once, nothing is cut any more."""
        if self.calmed:
            return
        self.calmed = True
        self.record(0, "calm", "calm: chaos stopped, the link runs clean from now on")
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.calm_event.set)

    def stop(self):
        if self._loop is None:
            return

        async def shut():
            self._server.close()
            for c in self._conns:
                c.close_quietly("proxy stopped")
            await asyncio.sleep(0.05)

        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        except Exception:           # noqa: BLE001
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- summary ---------------------------------------------------------------------------
    def counts(self):
        with self._lock:
            ev = list(self.events)
        c = collections.Counter()
        for e in ev:
            if e["ev"] == "connect":
                c["connections"] += 1
            elif e["ev"] == "cut":
                c["cut:" + e["kind"]] += 1
                c["cuts"] += 1
            elif e["ev"] == "stall":
                c["stall:" + e["kind"]] += 1
            elif e["ev"] == "closed":
                k = e["kind"]
                c["closed:" + ("charger" if "charger" in k else
                               "central system" if "central system" in k else k)] += 1
        return c

    def summary(self, last=0):
        c = self.counts()
        with self._lock:
            ev = list(self.events)
            log = list(self.log)
        lost = collections.Counter()
        for e in ev:
            if e["ev"] == "cut" and e["kind"] == "answer_lost":
                lost[e["text"].split("charger's ", 1)[-1].split(" CALL", 1)[0]] += 1
        cuts = ", ".join("%s %d" % (k[4:], v) for k, v in sorted(c.items()) if k.startswith("cut:"))
        stalls = ", ".join("%s %d" % (k[6:], v) for k, v in sorted(c.items())
                           if k.startswith("stall:"))
        closed = ", ".join("%s %d" % (k[7:], v) for k, v in sorted(c.items())
                           if k.startswith("closed:"))
        lines = ["chaos proxy, seed %s: %d connections, %d cuts (%s); stalls: %s; "
                 "closed by the other side: %s" % (self.seed, c["connections"], c["cuts"],
                                                   cuts or "none", stalls or "none",
                                                   closed or "none")]
        if lost:
            lines.append("  answers lost (cut between CALL and CALLRESULT): " +
                         ", ".join("%s %d" % kv for kv in sorted(lost.items())))
        if last:
            lines.append("  last %d proxy events:" % min(last, len(log)))
            lines += ["  " + ln for ln in log[-last:]]
        return "\n".join(lines)
