"""The link and the sender: the two tasks that talk to the central system.

- link: connects the websocket (backoff with jitter), runs the receiver (rpc.serve) until
  the link drops, then reconnects; `cp.link_state` tells the rest of the charge point
  whether it is online, making a first attempt, or offline;
- sender: the only task that sends CALLs, one at a time, in this order of priority:
  BootNotification until Accepted (nothing else before), StatusNotifications the central
  system has not seen, the application's requests (Authorize, DataTransfer, ...), the
  journal of transaction messages (delivery.py), Heartbeat when due;
- keep: runs a task so that it never dies unnoticed (a failure is logged, the task
  starts over).

Functions of the charge point `cp` (chargepoint.ChargePoint), which holds the state.
"""
import sys
import asyncio
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const
from ocpp16 import rpc, messages
from ocpp16.clock import parse_iso, iso
from ocpp16.states import VERSION, LINK_DOWN, LINK_CONNECTING, LINK_UP

_BOOT_RETRY_DEFAULT = const(30)   # s, when the central system gives no interval
_STABLE_MS = const(60000)         # a link up this long resets the reconnect backoff
_RESTART_MS = const(1000)         # a long-lived task that failed starts over after this
_GIVE_UP = const(5)               # failures in a row (each within _STEADY_MS) are fatal
_STEADY_MS = const(60000)


async def keep(cp, name, fn):
    # No task of the charge point may die unnoticed: a failure is logged with its
    # traceback and the task starts over after a pause (never a tight loop).  One that
    # keeps failing is fatal (cp.fatal: relays open, crash recorded, restart).
    fails = 0
    while True:
        t0 = ticks_ms()
        try:
            await fn(cp)
        except Exception as e:
            fails = fails + 1 if ticks_diff(ticks_ms(), t0) < _STEADY_MS else 1
            if fails >= _GIVE_UP:
                cp.log("task %s failed %d times in a row: fatal" % (name, fails))
                cp.fatal(e)
                return
            cp.log("task %s failed: %r; restarting it in %d ms" % (name, e, _RESTART_MS))
            sys.print_exception(e)
            if name == "link":
                cp.link_state = LINK_DOWN
                cp.rpc.disconnected()
                cp._fail_requests()
            await asyncio.sleep_ms(_RESTART_MS)


def _watch_link(cp, up):
    # The link task checks in at each step.  Down, a step is at most a backoff, a connect
    # and an NTP query; up, it is the receiver, which hears a frame at least every
    # ping interval (the pong) -- without pings it may be silent for hours, unwatched.
    cfg = cp.cfg
    h = cp.health
    ping = cfg.get("WebSocketPingInterval")
    if up and not ping:
        h.unwatch("link")
        return
    s = (ping if up else cfg.get("ReconnectMaxSeconds")) + 2 * cfg.get("MessageTimeout")
    h.watch("link", (s + 10) * 1000)


async def link(cp):
    ws = cp.ws
    failed = False      # the last attempt failed: the charger is offline until one works
    while True:
        _watch_link(cp, False)
        url = cp.cfg.get("CentralSystemUrl")
        cp_id = cp.cfg.get("ChargePointId")
        key = cp.cfg.get("AuthorizationKey") or None
        if not failed:
            cp.link_state = LINK_CONNECTING
        if cp.ssl is not None and url.startswith("wss:") and not await cp.wallclock.sync():
            # TLS against a clock at 2000-01-01 fails for every certificate: wait for a
            # clock (NTP is asked again each round) rather than fail the handshake.
            failed = True
            cp.link_state = LINK_DOWN
            delay = cp._backoff.next_ms()
            cp.log("link: no wall clock yet; TLS waits, retry in %d ms" % delay)
            await asyncio.sleep_ms(delay)
            continue
        try:
            cp.log("link: connecting to %s as %s" % (url, cp_id))
            await ws.connect(url, cp_id, auth_key=key, ssl=cp.ssl,
                             timeout_ms=cp.cfg.get("MessageTimeout") * 1000)
        except Exception as e:  # WSError, OSError, TLS errors: all mean "try later"
            failed = True
            cp.link_state = LINK_DOWN
            delay = cp._backoff.next_ms()
            cp.log("link: connect failed: %s; retry in %d ms" % (e, delay))
            await asyncio.sleep_ms(delay)
            continue
        failed = False
        cp.connects += 1
        up = ticks_ms()
        cp.log("link: connected")
        cp.link_state = LINK_UP
        cp.rpc.connected()
        cp._wake.set()
        ka = asyncio.create_task(ws.keepalive(cp.cfg.get("WebSocketPingInterval"),
                                              cp.cfg.get("MessageTimeout")))
        _watch_link(cp, True)
        try:
            await cp.rpc.serve()
        finally:
            ka.cancel()
            cp.link_state = LINK_DOWN
            cp.rpc.disconnected()
            cp._fail_requests()
        await ws.close()
        cp.log("link: disconnected (code %s)" % ws.close_code)
        if ticks_diff(ticks_ms(), up) > _STABLE_MS:
            cp._backoff.reset()
        delay = cp._backoff.next_ms()
        cp.log("link: reconnect in %d ms" % delay)
        await asyncio.sleep_ms(delay)


def due(cp):
    now = ticks_ms()
    if not cp.registered:
        return ticks_diff(now, cp._boot_at) >= 0
    return cp.delivery.due() or ticks_diff(now, cp._hb_at) >= 0 or bool(cp._requests) \
        or unreported(cp) >= 0


async def sender(cp):
    # Checks in at every round; the ticker wakes it at least every 2 s, and a round is at
    # most one CALL (MessageTimeout).
    cp.health.watch("sender", (cp.cfg.get("MessageTimeout") + 10) * 1000)
    while True:
        cp.health.beat("sender")
        if not cp.rpc.online:
            await cp._wake.wait()
            continue
        if not cp.registered:
            if ticks_diff(ticks_ms(), cp._boot_at) >= 0:
                await send_boot(cp)
            elif cp._requests and cp.boot_status == "Pending":
                # While Pending only what a TriggerMessage asked for goes out (spec 4.2);
                # nothing else is queued before the boot is Accepted (cp.send refuses).
                await send_request(cp)
            else:
                await cp._wake.wait()
            continue
        n = unreported(cp)
        if n >= 0:
            await send_status(cp, n)
        elif cp._requests:
            await send_request(cp)
        elif cp.delivery.due():
            await cp.delivery.send_head()
        elif ticks_diff(ticks_ms(), cp._hb_at) >= 0:
            await send_heartbeat(cp)
        else:
            await cp._wake.wait()


async def send_request(cp):
    req = cp._requests[0]
    out = await cp.rpc.call(req[0], req[1], req[2])
    if cp._requests and cp._requests[0] is req:
        cp._requests.pop(0)
        if req[3] and out == rpc.TIMEOUT:
            # A late answer still decides (an Authorize answered after
            # MessageTimeout is not lost); else TIMEOUT after one more.
            cp.rpc.expect_late(cp.rpc.last_id, req[3],
                               cp.cfg.get("MessageTimeout") * 1000)
        elif req[3]:
            req[3](out, cp.rpc.payload)


def unreported(cp):
    # A state must last MinimumStatusDuration before it is reported; one that changes
    # sooner is never sent (after an offline period, only the current state goes).
    hold = cp.cfg.get("MinimumStatusDuration") * 1000
    now = ticks_ms()
    for n in range(cp.connectors + 1):
        if (cp.reported[n] != cp.status[n]
                or cp._reported_error[n] != cp.error_code[n]) and \
                (not hold or ticks_diff(now, cp._changed_ms[n]) >= hold):
            return n
    return -1


def take_time(cp, p):
    t = p.get("currentTime") if p else None
    if isinstance(t, str):
        try:
            first = not cp.clock.valid
            if cp.clock.set(parse_iso(t)):
                if first:
                    cp.timebase.clock_set()
                cp.wallclock.set(cp.clock.now(), "currentTime")
                return
        except ValueError:
            pass
        cp.log("clock: ignored implausible currentTime %r" % t)


async def send_boot(cp):
    info = cp.board.identity()
    info["firmware"] = VERSION
    out = await cp.rpc.call(messages.BOOT, messages.boot, info)
    if out != rpc.RESULT:
        if out != rpc.OFFLINE:
            cp.log("boot: %s, retrying in %d s" % (rpc.OUTCOME[out], _BOOT_RETRY_DEFAULT))
            cp._boot_at = ticks_add(ticks_ms(), _BOOT_RETRY_DEFAULT * 1000)
        return
    p = cp.rpc.payload
    take_time(cp, p)
    status = p.get("status")
    interval = p.get("interval")
    interval = interval if isinstance(interval, int) and interval > 0 else 0
    cp.boot_status = status
    cp.log("boot: %s, interval %d, clock %s"
           % (status, interval, iso(cp.clock.now()) if cp.clock.valid else "unset"))
    if status == "Accepted":
        cp.registered = True
        if interval:
            cp.cfg.put("HeartbeatInterval", interval)
        cp._hb_at = ticks_add(ticks_ms(), cp.cfg.get("HeartbeatInterval") * 1000)
        now = cp.clock.now() or 0
        for i in range(cp.connectors + 1):
            if not cp.status_time[i]:
                cp.status_time[i] = now
        return
    # Pending or Rejected: nothing else may be sent until the interval has passed.
    cp._boot_at = ticks_add(ticks_ms(), (interval or _BOOT_RETRY_DEFAULT) * 1000)


async def send_status(cp, n):
    sent = cp.status[n]
    err = cp.error_code[n]
    if not cp.status_time[n]:
        cp.status_time[n] = cp.clock.now() or 0
    out = await cp.rpc.call(messages.STATUS, messages.status, (cp, n))
    if out == rpc.RESULT or out == rpc.CALLERROR:
        # A CALLERROR will not get better by repeating the same state; log and move on.
        if out == rpc.CALLERROR:
            cp.log("status: connector %d refused: %s" % (n, cp.rpc.error_code))
        cp.reported[n] = sent
        cp._reported_error[n] = err


async def send_heartbeat(cp):
    out = await cp.rpc.call(messages.HEARTBEAT, messages.heartbeat)
    if out == rpc.RESULT:
        take_time(cp, cp.rpc.payload)
    if out != rpc.OFFLINE:
        cp._hb_at = ticks_add(ticks_ms(), cp.cfg.get("HeartbeatInterval") * 1000)
