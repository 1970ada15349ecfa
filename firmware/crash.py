"""When the firmware crashes: relays open first, the crash is kept, a crash loop ends in
safe mode.

- main() runs each power-on inside try/finally: whatever ends it (an exception, a
  dead critical task through cp.fatal, Ctrl-C at the REPL) every relay is opened first.
- A crash (an exception out of the charge point) is counted in `<state>/crashes` and its
  traceback appended to `<state>/crash.log` (bounded to LOG_MAX bytes, newest kept); then
  the charger resets (the simulator restarts in the same process).
- After SAFE_AFTER crashes in a row the charger starts in safe mode: connector 0 is
  Faulted with InternalError and the reason (so every relay stays open and nothing
  starts), but it connects and reports, so a fleet operator sees it and can update it
  remotely instead of sending a technician.
- A boot that is registered (BootNotification Accepted) and keeps running for
  HEALTHY_MS resets the count: the next restart is a normal one.
"""
import os
import sys
import json
import asyncio
from micropython import const
from ocpp16 import store

SAFE_AFTER = const(3)
HEALTHY_MS = 600000      # 10 min: a crash that comes later each time still adds up
LOG_MAX = const(4096)


def count(state):
    """(crashes in a row, the last one's reason) from `<state>/crashes`."""
    raw = store.read(state + "/crashes")
    try:
        d = json.loads(raw) if raw else {}
        return int(d.get("n", 0)), str(d.get("last", ""))
    except (ValueError, TypeError, AttributeError):
        return 1, "crash record unreadable"


def _from(path, pos):
    buf = bytearray(128)
    with open(path, "rb") as f:
        f.seek(pos)
        while True:
            n = f.readinto(buf)
            if not n:
                return
            yield memoryview(buf)[:n]


def record(state, e, log=print):
    """Count crash `e` and append its traceback to `<state>/crash.log`."""
    n = count(state)[0] + 1
    reason = repr(e)[:80]
    try:
        store.atomic_write(state + "/crashes", json.dumps({"n": n, "last": reason}))
        path = state + "/crash.log"
        try:
            size = os.stat(path)[6]
        except OSError:
            size = 0
        if size > LOG_MAX // 2:
            # Keep the newest half, copied in small pieces: a crash may come with the
            # heap full or fragmented.
            store.atomic_write(path, _from(path, size - LOG_MAX // 2))
        with open(path, "a") as f:
            f.write("---- crash %d in a row\n" % n)
            sys.print_exception(e, f)
    except OSError as err:      # a full or broken flash must not hide the crash itself
        log("crash: could not record it on flash: %r" % err)
    log("crash: %s (%d in a row); relays open, restarting" % (reason, n))
    sys.print_exception(e)
    return n


def safe_mode(cp, state):
    """At boot: after SAFE_AFTER crashes in a row, fault the whole charger (relays open,
    no transaction) with the reason, and say so.  True when in safe mode."""
    n, last = count(state)
    if n < SAFE_AFTER:
        return False
    cp.log("crash: SAFE MODE after %d crashes in a row (last: %s): relays stay open; "
           "reporting Faulted/InternalError, waiting for a fix (e.g. a firmware update)"
           % (n, last))
    cp.fault(0, "InternalError", ("safe mode, %d crashes: %s" % (n, last))[:50])
    return True


async def healthy(cp, state, ms=HEALTHY_MS):
    """Reset the count once this boot is registered and has run for `ms`."""
    await asyncio.sleep_ms(ms)
    while not cp.registered:
        await asyncio.sleep_ms(1000)
    if store.exists(state + "/crashes"):
        store.remove(state + "/crashes")
        cp.log("crash: ran %d s registered: crash count reset" % (ms // 1000))
