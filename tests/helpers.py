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
