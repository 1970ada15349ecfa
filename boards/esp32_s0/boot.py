# boot.py: runs on every reset, before main.py.
#
# Joins Wi-Fi with a bounded number of attempts, then returns so that main.py starts the
# charger even without a network: a charger must keep working (and journaling) offline,
# and the board's Wi-Fi task keeps retrying in the background.  On ESP32 `connect()`
# alone would retry forever, hence `reconnects` and our own attempt loop.
#
# Credentials: /state/wifi.json = {"ssid": "...", "password": "..."} (tools/deploy.py
# --wifi-ssid/--wifi-password writes it).
#
# Maintenance mode: /maintenance holds the number of boots it still applies to (empty, as
# `mpremote fs touch` leaves it: this boot only).  Each run of this file uses one and
# rewrites the count, and removes the file once it reads 0, so a flag left by an
# interrupted deploy expires instead of keeping the charger offline for good.  Every
# run counts, mpremote's soft resets included (they run boot.py, not main.py): the
# deploy writes enough boots for its own connections.  While it applies, Wi-Fi is
# skipped here (a raw-REPL soft reset must end within mpremote's 10 s) and board.py
# does not arm the watchdog; the board also ends it after some minutes of running.
import gc
import json
import os
import time
import micropython
from micropython import const

# Lets an error inside an IRQ handler be reported (the unix port has no such buffer).
if hasattr(micropython, "alloc_emergency_exception_buf"):
    micropython.alloc_emergency_exception_buf(100)

WIFI_FILE = "/state/wifi.json"
MAINTENANCE = "/maintenance"
_MAINT_MAX = const(10)       # boots; a larger count is cut to this
_ATTEMPTS = const(3)
_POLL_MS = const(250)
_WAIT_MS = const(15000)      # per attempt


def wifi_connect(wlan, ssid, password, attempts=_ATTEMPTS, wait_ms=_WAIT_MS,
                 sleep_ms=time.sleep_ms, log=print):
    """Connect `wlan` to `ssid`; at most `attempts` tries of `wait_ms` each.  Returns
    True when connected.  Bounded by poll counts, not wall time, so it always ends."""
    wlan.active(True)
    try:
        wlan.config(reconnects=2)        # the IDF's own retries, per connect() call
    except (ValueError, TypeError, OSError):
        pass
    try:
        wlan.config(pm=wlan.PM_NONE)     # power save adds latency and missed frames
    except (AttributeError, ValueError, TypeError, OSError):
        pass
    idle = getattr(wlan, "STAT_IDLE", None)
    if idle is None:
        import network
        idle = network.STAT_IDLE
    for attempt in range(1, attempts + 1):
        if wlan.isconnected():
            return True
        log("boot: Wi-Fi %s, attempt %d/%d" % (ssid, attempt, attempts))
        try:
            wlan.connect(ssid, password)
        except OSError as e:
            log("boot: connect: %s" % e)
        for _ in range(wait_ms // _POLL_MS):
            sleep_ms(_POLL_MS)
            if wlan.isconnected():
                log("boot: Wi-Fi up, address %s" % wlan.ifconfig()[0])
                return True
            # On ESP32 a status below STAT_IDLE is a failure reason (no AP, bad key...):
            # waiting longer will not help this attempt.
            if wlan.status() < idle:
                log("boot: Wi-Fi failed, status %d" % wlan.status())
                break
        try:
            wlan.disconnect()
        except OSError:
            pass
        if attempt < attempts:
            sleep_ms(1000 * attempt)
    log("boot: no Wi-Fi; the charger starts offline and keeps retrying")
    return False


def maintenance(path, log=print):
    """Use one boot of the maintenance flag at `path`.  Returns None for a normal boot,
    else how many more boots it applies to after this one (0: this is the last)."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None                      # no flag: the normal case
    try:
        n = int(text) if text else 1     # empty: an older deploy's `fs touch`, one boot
    except ValueError:
        n = 1                            # torn by a power cut: end soon
    n = min(n, _MAINT_MAX) - 1
    if n >= 0:
        try:
            with open(path, "w") as f:
                f.write(str(n))
        except OSError as e:
            # A count that cannot go down must not stay: this boot is a normal one.
            log("boot: cannot rewrite %s: %s" % (path, e))
            n = -1
    if n < 0:
        try:
            os.remove(path)
        except OSError:
            pass
        log("boot: %s used up: removed; normal boot (Wi-Fi, watchdog)" % path)
        return None
    log("boot: ************************************************************")
    log("boot: MAINTENANCE MODE (%s): no Wi-Fi, no watchdog" % path)
    if n:
        log("boot: maintenance applies to %d more boot(s), then it is removed" % n)
    else:
        log("boot: last maintenance boot: the next boot is normal")
    log("boot: ************************************************************")
    return n


def _main(log=print):
    try:
        import machine
        if machine.reset_cause() == machine.WDT_RESET:
            log("boot: last reset was the watchdog")
    except (ImportError, AttributeError):
        pass
    if maintenance(MAINTENANCE, log) is not None:
        return
    try:
        with open(WIFI_FILE) as f:
            creds = json.load(f)
    except (OSError, ValueError):
        log("boot: no %s; starting offline" % WIFI_FILE)
        return
    import network
    wlan = network.WLAN(network.STA_IF)
    wifi_connect(wlan, creds.get("ssid", ""), creds.get("password", ""), log=log)


_main()
gc.collect()
