"""Firmware entry point: build the board, configuration, websocket and charge point, run.

On the charger this runs at boot (main.py); in the simulator tools/sim passes options:
  --csms URL  --id ID  --state DIR  --connectors N  [--imp IMP_PER_KWH] [--ca CA.der]
  [--flash-kb N]  (simulated flash size: the state directory counted in littlefs blocks)
  [--healthy-ms N]  (how long a boot must run registered to reset the crash count)
Options override (and are saved to) the configuration in the state directory.

Whatever ends a power-on, every relay is opened first; a crash is counted and logged and
the charger restarts, and a crash loop ends in safe mode (firmware/crash.py).

A Reset from the central system ends the run with REBOOT: the device reboots for real;
the simulator restarts the firmware in the same process with fresh modules and RAM
state, reading everything back from the state directory, as after a reboot.

Before each power-on, select_slot() puts the application slot an update installed
(<state>/app/a or b, lib/ocpp16/firmware.py) first on sys.path, or rolls a slot on trial
back; without one the built-in code (frozen, or deployed at the root) runs.
"""
import sys
import asyncio
from micropython import const

_GC_MIN = const(4096)       # bytes allocated between collections, at least (see main)
_GC_SHARE = const(16)       # ... and 1/16 of the heap

_board = None       # the board of the running power-on: its relays open whatever happens
_log = print        # its log: the console and the diagnostics log on flash (diaglog.py)
_slot = None        # (directory, version) of the application slot this power-on runs
TRIAL_BOOTS = 2     # boots a new slot gets to reach BootNotification Accepted


def _write(path, text):
    # tmp + rename as store.atomic_write (the slot's store may be the broken part)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    import os
    os.rename(path + ".tmp", path)


def select_slot(root):
    """Boot code (kept tiny, no import from a slot): put the active application slot
    (lib/ocpp16/firmware.py installs them) first on sys.path.  A slot on trial gets
    TRIAL_BOOTS boots, then the previous one runs again; a slot that is not complete
    (no bundle.json) is skipped.  None: the built-in (frozen or checkout) code."""
    global _slot
    while sys.path and _slot and sys.path[0].startswith(_slot[0]):
        sys.path.pop(0)                 # the previous power-on's slot
    _slot = None
    import json
    try:
        with open(root + "/boot.json") as f:
            p = json.load(f)
        t = p.get("trial")
        if t is not None:
            if t >= TRIAL_BOOTS:
                print("boot: slot %s (%s) failed %d boots; back to %s"
                      % (p.get("active"), p.get("version"), t, p.get("prev") or "built-in"))
                p = {"active": p.get("prev"), "prev": None, "trial": None,
                     "version": p.get("was"), "failed": p.get("version")}
            else:
                p["trial"] = t + 1
            _write(root + "/boot.json", json.dumps(p))
    except Exception as e:      # no pointer (never updated) or a torn one
        if not isinstance(e, OSError):
            print("boot: slot pointer: %r; built-in code" % e)
        return None
    for s in (p.get("active"), p.get("prev")):
        if s:
            d = root + "/" + s
            try:
                with open(d + "/bundle.json") as f:
                    v = json.load(f)["version"]
            except Exception:   # an incomplete slot: the next choice
                print("boot: slot %s is not complete; skipped" % s)
                continue
            sys.path.insert(0, d)
            sys.path.insert(0, d + "/lib")
            _slot = (d, v)
            return _slot
    return None


def parse_args(argv):
    opts = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--") or i + 1 >= len(argv):
            print("usage: main.py [--csms URL] [--id ID] [--state DIR] [--connectors N] "
                  "[--imp N] [--ca FILE] [--flash-kb N]")
            raise SystemExit(2)
        opts[a[2:]] = argv[i + 1]
        i += 2
    return opts


def tls_context(path, log):
    """TLS context that verifies the central system against the CA bundle at `path` (DER)."""
    from ocpp16 import store
    der = store.read(path)
    if der is None:
        log("tls: no CA bundle at %s; wss:// will be refused" % path)
        return None
    import tls
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(der)
    return ctx


def boot_once(opts):
    """One power-on: returns the charge point's exit code."""
    global _board, _log
    if _slot:
        from ocpp16 import states
        states.VERSION = _slot[1]       # the bundle's version, in BootNotification
    import board
    import crash
    from ocpp16 import config, store
    import os
    if getattr(os, "getenv", lambda k: None)("MPOCPP_KILL_AFTER_WRITES") is not None:
        import powercut     # simulator only (boards/unix_sim): tests/test_powercut.py
        powercut.install(store)
    # The code first, while the heap is whole (compiling a .py or loading a .mpy needs
    # large blocks for a moment).
    from ocpp16.ws import WebSocket
    from ocpp16.chargepoint import ChargePoint
    from app import App
    state = opts.get("state", getattr(board, "STATE", "state"))
    opts["state"] = state
    store.makedirs(state)
    # Every log line is printed and kept on flash for GetDiagnostics: buffered, a flash
    # write per 512 bytes of lines (or a minute), flushed at a reboot or crash below.
    from ocpp16.diaglog import DiagLog
    log = _log = DiagLog(state + "/diag")
    b = _board = board.from_args(opts, log=log)
    from ocpp16.meter import supported
    cfg = config.Config(state + "/config.json", connectors=b.connectors,
                        measurands=supported(b))
    if "csms" in opts:
        cfg.put("CentralSystemUrl", opts["csms"])
    if "id" in opts:
        cfg.put("ChargePointId", opts["id"])
    ssl = None
    if cfg.get("CentralSystemUrl").startswith("wss:"):
        ssl = tls_context(opts.get("ca", state + "/ca.der"), log)
    # Receive: the largest message taken in, and where answers are written (a full
    # GetConfiguration answer is about 3.3 KB).  Transmit: our own CALLs only, the largest
    # a StopTransaction with transactionData (1,536 B body, see transactions.py).
    cp = ChargePoint(b, cfg, WebSocket(rx_size=4096, tx_size=2048), state, log=log, ssl=ssl)
    log.attach(cp)
    asyncio.new_event_loop()
    return asyncio.run(_run(App(cp, b, log), cp, state, int(opts.get("healthy-ms",
                                                                    crash.HEALTHY_MS))))


async def _run(app, cp, state, healthy_ms):
    import crash
    crash.safe_mode(cp, state)
    asyncio.create_task(crash.healthy(cp, state, healthy_ms))
    return await app.run()


def _relays_open():
    global _board
    b = _board
    _board = None       # it holds the whole charge point: the next boot must not keep it
    for n in range(1, getattr(b, "connectors", 0) + 1):
        try:
            b.relay(n, False)
        except Exception:   # one broken output must not keep the others closed
            pass


def _flush_log():
    global _log
    fl = getattr(_log, "flush", None)
    _log = print        # the next boot makes its own
    if fl:
        fl()


def _pause_after_crash():
    # On the charger the reset follows; the simulator restarts in this process, and a
    # crash at every boot must not become a hot loop.
    import time
    time.sleep_ms(1000)


def main(argv=None):
    # Collect after every 1/16 of the heap allocated (at least 4 KB), not only when the
    # heap is full: objects that live on (a journal index chunk, a transaction's state,
    # the link's streams) are then placed in the holes at the bottom rather than above a
    # pile of garbage, where they would cut the free space in pieces.  Measured on the
    # 32-bit frozen build at idle with a 56 KB heap: largest free block 0.8 KB without,
    # 6.4 KB with (8.7 KB free).  A share, not a fixed size: a collection's cost grows
    # with the heap (with 4 KB on the simulator's 3 MB heap a replay took 2.7x the CPU).
    import gc
    gc.collect()
    gc.threshold(max(_GC_MIN, (gc.mem_free() + gc.mem_alloc()) // _GC_SHARE))
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    # asyncio imports its submodules on first use; load them now, at the bottom of the
    # heap, so objects that live forever are not scattered through it (fragmentation).
    for name in ("StreamReader", "Lock", "Event", "ThreadSafeFlag", "wait_for_ms"):
        getattr(asyncio, name)
    while True:
        try:
            # <state>/app (firmware.slots); the board, whose STATE is the default state
            # directory, is not imported yet (it may come from the slot): its defaults.
            select_slot(opts.get("state", "state" if sys.platform == "linux" else "/state")
                        .rstrip("/") + "/app")
            code = boot_once(opts)
        except Exception as e:
            try:
                import crash
                crash.record(opts.get("state", "state"), e, log=_log)
            except Exception as e2:     # a slot whose crash.py is broken too
                print("crash: %r, then %r" % (e, e2))
            e = None        # its traceback holds the whole charge point: let it go
            code = 75
            _pause_after_crash()
        finally:
            _relays_open()
            _flush_log()
        if code != 75:     # chargepoint.REBOOT
            return code
        if hasattr(sys, "platform") and sys.platform != "linux":
            import machine
            machine.reset()
        # Simulator: forget every module and all RAM state, then boot again.  A fresh
        # event loop drops the old tasks, and with them the old objects.
        asyncio.new_event_loop()
        for name in list(sys.modules):
            if name.startswith("ocpp16") or name in ("board", "app", "crash"):
                del sys.modules[name]
        import gc
        gc.collect()
        print("sim: ---- reboot ---- (heap: %d bytes used, %d free)"
              % (gc.mem_alloc(), gc.mem_free()))


main()
