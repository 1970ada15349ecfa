# boot.py: runs on every reset, before main.py.
#
# Joins Wi-Fi with a bounded number of attempts, then returns so that main.py starts the
# charger even without a network: a charger must keep working (and journaling) offline,
# and the board's Wi-Fi task keeps retrying in the background.  On ESP32 `connect()`
# alone would retry forever, hence `reconnects` and our own attempt loop.
#
# Credentials: /state/wifi.json = {"ssid": "...", "password": "..."} (tools/deploy.py
# --wifi-ssid/--wifi-password writes it).  If /maintenance exists, Wi-Fi is skipped.
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


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _main():
    try:
        import machine
        if machine.reset_cause() == machine.WDT_RESET:
            print("boot: last reset was the watchdog")
    except (ImportError, AttributeError):
        pass
    if _exists(MAINTENANCE):
        print("boot: %s exists: maintenance mode, no Wi-Fi, no watchdog" % MAINTENANCE)
        return
    try:
        with open(WIFI_FILE) as f:
            creds = json.load(f)
    except (OSError, ValueError):
        print("boot: no %s; starting offline" % WIFI_FILE)
        return
    import network
    wlan = network.WLAN(network.STA_IF)
    wifi_connect(wlan, creds.get("ssid", ""), creds.get("password", ""))


_main()
gc.collect()
