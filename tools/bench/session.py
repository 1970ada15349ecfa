"""Heap in use by the whole firmware after a charging session (simulator, tools/sim's heap)."""
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from csmsctl import Csms  # noqa: E402
from simctl import Sim  # noqa: E402
from ocpp_steps import wait_status, next_call  # noqa: E402


def session_heap():
    with Csms("--heartbeat", "300") as cs:
        sim = Sim(cs.url, cp_id="BENCH", state=tempfile.mkdtemp(prefix="mpocpp-bench-"),
                  connectors=2)
        try:
            sim.wait_line(r"boot: Accepted", timeout=60)
            for cmd in ("plug 1", "power 1 11000", "swipe 1 BENCH-1", "plug 2", "swipe 2 BENCH-2"):
                sim.send(cmd)
            wait_status(cs, 2, "Charging", cp="BENCH")
            time.sleep(2)
            sim.send("swipe 1 BENCH-1")
            next_call(cs, "StopTransaction", cp="BENCH")
            sim.send("quit")
            i = sim.wait_line(r"^heap: ", timeout=20)
            line = sim.lines[i]
        finally:
            sim.stop()
    m = re.search(r"heap: (\d+) bytes in use, (\d+) free", line)
    used, free = int(m.group(1)), int(m.group(2))
    code = code_heap()
    print("Firmware heap after a session, 2 connectors, one transaction still running")
    print("(unix port, 64-bit, tools/sim's -X heapsize=176wK; 32-bit ESP32 objects are about half):")
    print("  in use: %d bytes, free: %d bytes" % (used, free))
    print("  of which the library's code loaded from .py/.mpy: %d bytes" % code)
    print("  runtime objects (what stays in RAM when the code is frozen): %d bytes"
          % (used - code))
    return used


def code_heap():
    """Heap taken by importing the library (bytecode, constants, qstrs)."""
    import subprocess
    from helpers import micropython, mp_env
    snippet = ("import gc, asyncio\n"
               "for n in ('StreamReader','Lock','Event','ThreadSafeFlag','wait_for_ms'): getattr(asyncio, n)\n"
               "gc.collect(); a = gc.mem_alloc()\n"
               "from ocpp16 import chargepoint, ws, rpc, jsonw, config, journal, transactions, "
               "sessions, delivery, handlers, meter, timebase, authcache, messages, clock, store, backoff\n"
               "import app, board\n"
               "gc.collect(); print(gc.mem_alloc() - a)\n")
    out = subprocess.run([micropython(), "-X", "heapsize=176wK", "-c", snippet], env=mp_env(),
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(out.split()[-1])


if __name__ == "__main__":
    session_heap()
