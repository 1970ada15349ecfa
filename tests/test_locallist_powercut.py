"""Power cuts at every write step of a SendLocalList update (lib/ocpp16/locallistfile.py).

A MicroPython script (below) builds a list, then applies one update with
MPOCPP_KILL_AFTER_WRITES=N (boards/unix_sim/powercut.py: SIGKILL right after the Nth
write step: every chunk of the new file, the file closed, the rename); a fresh process
then opens the list as a reboot would.  For every N the list read back (version and
every entry) is the old one or the new one, whole; once the rename was done, the new one;
no temporary file outlives the reboot.
"""
import shutil

import pytest

from mp import killsweep

SCRIPT = r'''
import sys, os, json
import asyncio
from ocpp16 import store
from ocpp16 import locallistfile as lf

d, phase, kind = sys.argv[1], sys.argv[2], sys.argv[3]
P = d + "/locallist.bin"
TAGS = ["T%03d" % i for i in range(120)]


def rec(t, status, parent=None):
    return (t, lf.record(t, lf.STATUS.index(status) + 1, 0, parent))


def run(c):
    return asyncio.run(c)


if phase == "setup":
    ll = lf.LocalList(P, 5000, log=print)
    assert run(ll.update(True, 1, [rec(TAGS[i], "Accepted") for i in range(0, 20)])) == "Accepted"
    for lo in range(20, 100, 20):
        ch = [rec(TAGS[i], "Accepted", b"G%d" % (i % 3)) for i in range(lo, lo + 20)]
        assert run(ll.update(False, 1 + lo // 20, ch)) == "Accepted"
    print("SETUP", ll.version(), len(ll))
elif phase == "update":
    if os.getenv("MPOCPP_KILL_AFTER_WRITES") is not None:
        import powercut
        powercut.install(store)
    ll = lf.LocalList(P, 5000, log=print)
    if kind == "diff":
        # 6 replaced, 6 removed, 8 added, spread over the whole file.
        ch = [rec(TAGS[i], "Blocked") for i in (0, 17, 33, 50, 71, 99)]
        ch += [(TAGS[i], None) for i in (1, 2, 40, 41, 80, 98)]
        ch += [rec(TAGS[i], "Invalid", b"NEW") for i in range(100, 108)]
        print("RESULT", run(ll.update(False, 9, ch)))
    else:
        print("RESULT", run(ll.update(True, 9, [rec(TAGS[i], "Expired") for i in range(50, 70)])))
else:
    ll = lf.LocalList(P, 5000, log=print)
    out = {"version": ll.version(), "count": len(ll),
           "tags": {t: ll.lookup(t, 0) for t in TAGS if ll.lookup(t, 0)[0]},
           "files": sorted(os.listdir(d))}
    print("STATE " + json.dumps(out))
'''

def _tuples(s):
    # A state as JSON gave it back, its (status, parent) pairs as tuples.
    s["tags"] = {k: tuple(v) for k, v in s["tags"].items()}
    return s


def _state(script, d, kind):
    return _tuples(killsweep.state(script, d, kind))


@pytest.mark.parametrize("kind", ["diff", "full"])
def test_every_cut_leaves_the_old_or_the_new_list(tmp_path, kind):
    script = tmp_path / "ll_kill.py"
    script.write_text(SCRIPT)
    base = tmp_path / "base"
    base.mkdir()
    rc, out = killsweep.run(script, base, "setup", kind)
    assert rc == 0 and "SETUP 5 100" in out, out
    old = _state(script, base, kind)
    # The update once without a cut, every write step printed (N=0).
    ref = tmp_path / "ref"
    shutil.copytree(base, ref)
    rc, out = killsweep.run(script, ref, "update", kind, kill=0)
    assert rc == 0 and "RESULT Accepted" in out, out
    steps = killsweep.steps(out)
    new = _state(script, ref, kind)
    assert new["version"] == 9 and new != old
    if kind == "diff":
        assert new["count"] == 100 - 6 + 8 and new["tags"]["T017"] == ("Blocked", None)
        assert "T040" not in new["tags"] and new["tags"]["T104"] == ("Invalid", "NEW")
        assert new["tags"]["T018"] == old["tags"]["T018"]
    else:
        assert new["count"] == 20 and new["tags"]["T050"] == ("Expired", None)
    renamed = [k for k, path in steps if path.endswith("/locallist.bin")]
    assert len(renamed) == 1 and renamed[0] == steps[-1][0]
    chunks = [k for k, path in steps if path.endswith(".tmp")]
    assert len(chunks) >= (3 if kind == "diff" else 2), steps   # cuts inside the new file
    for n, path in steps:
        after = _tuples(killsweep.cut(script, base, tmp_path / ("cut%d" % n), kind, n))
        assert after["files"] == ["locallist.bin"], (n, after["files"])
        got = {k: after[k] for k in ("version", "count", "tags")}
        want_old = {k: old[k] for k in ("version", "count", "tags")}
        want_new = {k: new[k] for k in ("version", "count", "tags")}
        if n >= renamed[0]:
            assert got == want_new, "cut after write %d (%s)" % (n, path)
        else:
            assert got == want_old, "cut after write %d (%s)" % (n, path)
