"""Shared host-side helpers for the tests: paths, the MicroPython binary, processes."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
FIRMWARE = ROOT / "firmware"
BOARD_SIM = ROOT / "boards" / "unix_sim"

_mp = None


def micropython():
    """Path of the MicroPython unix-port binary (built and cached on first use)."""
    global _mp
    if _mp is None:
        out = subprocess.run([str(ROOT / "tools" / "micropython")], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
        _mp = out[-1]
    return _mp


def micropath(*extra):
    """MICROPYPATH for device code: lib, firmware, the simulated board, plus extras."""
    parts = [str(p) for p in extra] + [str(LIB), str(FIRMWARE), str(BOARD_SIM), ".frozen"]
    return ":".join(parts)


def mp_env(*extra):
    env = dict(os.environ)
    env["MICROPYPATH"] = micropath(*extra)
    return env


def run_tree(cmd, timeout, **kw):
    """subprocess.run for a command that starts processes of its own (make, pytest): it
    runs in its own process group, and the whole group is killed if the test gives up on
    it (timeout, failure, interrupt), so nothing it started outlives the test."""
    import signal
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, **kw)
    try:
        out, _ = p.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, None)


def load_module(path, name):
    """A module from a file that is not on sys.path (tools/deploy.py in the tests)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
