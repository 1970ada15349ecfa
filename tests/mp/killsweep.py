"""Power cuts at every write step of one operation, for a MicroPython script run with
MPOCPP_KILL_AFTER_WRITES (boards/unix_sim/powercut.py): tests/test_locallist_powercut.py,
tests/test_smartcharging_powercut.py.

The script takes (directory, phase, kind): phase "setup" and "update" do the work,
"check" opens the state as a reboot would and prints one line "STATE <json>".
"""
import json
import re
import shutil
import subprocess

from helpers import micropython, mp_env

_WRITE = re.compile(r"sim: write #(\d+) (\S+)")
_CUT = re.compile(r"sim: POWER CUT after write #(\d+) (\S+)")


def run(script, d, phase, kind, kill=None):
    """(exit code, output) of the script; kill=N cuts after the Nth write (0: none, every
    write step printed)."""
    env = mp_env()
    env.pop("MPOCPP_KILL_AFTER_WRITES", None)
    if kill is not None:
        env["MPOCPP_KILL_AFTER_WRITES"] = str(kill)
    p = subprocess.run([micropython(), str(script), str(d), phase, kind], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    return p.returncode, p.stdout


def state(script, d, kind):
    """What the "check" phase reads back from `d` (a reboot)."""
    rc, out = run(script, d, "check", kind)
    assert rc == 0, out
    return json.loads(out.split("STATE ", 1)[1])


def steps(out):
    """[(N, path)] of the write steps an uncut run (kill=0) printed."""
    return [(int(m.group(1)), m.group(2)) for m in _WRITE.finditer(out)]


def cut(script, base, d, kind, n):
    """A copy of `base` in `d`, the update cut after write n, then the state a reboot
    reads; `d` is removed after."""
    shutil.copytree(base, d)
    rc, out = run(script, d, "update", kind, kill=n)
    m = _CUT.search(out)
    assert m and int(m.group(1)) == n and rc != 0, (n, rc, out)
    after = state(script, d, kind)
    shutil.rmtree(d)
    return after
