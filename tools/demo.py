#!/usr/bin/env python3
"""`make run`: the development central system and one simulated charger, a scripted session.

Starts tools/csms on a free loopback port and tools/sim against it, then plays: plug in,
swipe a card, charge at 11 kW for a few seconds, unplug.  Both sides' logs are printed,
interleaved.  Each step is checked at the central system: a step that does not happen
is reported as FAILED (and the exit code is 1), never faked.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
lock = threading.Lock()
seen = []


def show(prefix, line):
    with lock:
        seen.append((prefix, line))
        print("%s | %s" % (prefix, line), flush=True)


def pump(prefix, stream):
    for raw in iter(stream.readline, b""):
        show(prefix, raw.decode(errors="replace").rstrip())


def wait_for(pattern, prefix, timeout):
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    i = 0
    while time.monotonic() < end:
        with lock:
            items = seen[i:]
            i = len(seen)
        for p, line in items:
            if p == prefix and rx.search(line):
                return True
        time.sleep(0.1)
    return False


def step(msg):
    show("demo", msg)


def frames(prefix, action):
    """Payloads of the CALLs named `action` that `prefix`'s side received ("<-")."""
    import json
    out = []
    with lock:
        items = list(seen)
    for p, line in items:
        i = line.find(" <- [2,")
        if p == prefix and i >= 0:
            try:
                f = json.loads(line[i + 4:])
            except ValueError:
                continue
            if f[2] == action:
                out.append(f[3])
    return out


CHARGE_S = 6
POWER_W = 11000


def main():
    state = tempfile.mkdtemp(prefix="mpocpp-demo-")
    # Meter values every 2 s, so the session shows them (the default is off).
    with open(os.path.join(state, "config.json"), "w") as f:
        f.write('{"MeterValueSampleInterval": 2}')
    csms = subprocess.Popen([str(ROOT / "tools" / "csms"), "--port", "0", "--heartbeat", "10"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(ROOT))
    procs = [csms]
    failed = []

    def expect(pattern, what, timeout=10):
        if wait_for(pattern, "csms", timeout):
            return True
        step("FAILED: %s did not reach the central system" % what)
        failed.append(what)
        return False

    try:
        first = csms.stdout.readline().decode().strip()
        if not first.startswith("LISTENING "):
            step("central system did not start: %r" % first)
            return 1
        url = first.split()[1] + "/ocpp"
        threading.Thread(target=pump, args=("csms", csms.stderr), daemon=True).start()
        threading.Thread(target=pump, args=("csms", csms.stdout), daemon=True).start()
        step("central system listening at %s" % url)
        sim = subprocess.Popen([str(ROOT / "tools" / "sim"), "--csms", url, "--id", "CP001",
                                "--state", state, "--connectors", "1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, cwd=str(ROOT))
        procs.append(sim)
        threading.Thread(target=pump, args=("cp  ", sim.stdout), daemon=True).start()

        def cmd(line):
            step("> " + line)
            sim.stdin.write((line + "\n").encode())
            sim.stdin.flush()

        if not expect(r'"StatusNotification"', "the boot (BootNotification, status)", 120):
            return 1
        time.sleep(1)
        cmd("plug 1")
        expect(r'"Preparing"', "the plug-in (StatusNotification Preparing)")
        cmd("swipe 1 DEMO-TAG")
        cmd("power 1 %d" % POWER_W)
        if expect(r'"StartTransaction"', "StartTransaction"):
            step("charging at %d kW for %d s (meter values every 2 s)"
                 % (POWER_W // 1000, CHARGE_S))
            time.sleep(CHARGE_S)
        cmd("unplug 1")
        expect(r'"StopTransaction"', "StopTransaction")
        expect(r'"Available"', "the unplug (StatusNotification Available)")
        time.sleep(1)
        cmd("quit")
        sim.wait(timeout=10)
        starts, stops = frames("csms", "StartTransaction"), frames("csms", "StopTransaction")
        if starts and stops:
            wh = stops[-1]["meterStop"] - starts[-1]["meterStart"]
            step("transaction %s: %d Wh charged (%d kW for about %d s is %.1f Wh), "
                 "%d MeterValues, reason %s"
                 % (stops[-1]["transactionId"], wh, POWER_W // 1000, CHARGE_S,
                    POWER_W * CHARGE_S / 3600, len(frames("csms", "MeterValues")),
                    stops[-1].get("reason", "Local")))
        step("session over; the charger exited with code %s" % sim.returncode)
        if sim.returncode != 0:
            failed.append("exit code %s" % sim.returncode)
        if failed:
            step("FAILED: %s" % "; ".join(failed))
            return 1
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                try:
                    p.stdin.write(b"quit\n")
                    p.stdin.flush()
                    p.wait(timeout=5)
                except Exception:
                    p.kill()
                    p.wait()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
