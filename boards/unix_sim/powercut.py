"""Simulator only: power cuts at chosen flash writes, for tests/test_powercut.py.

MPOCPP_KILL_AFTER_WRITES=N: right after the Nth write step (journal appends, marks and
deletes, every store.atomic_write: tmp written, renamed; see store.write_hook), the
process SIGKILLs itself, which for the simulator is a power cut.  The count goes on
across in-process reboots (firmware/main.py installs the hook at every boot).  N=0 only
prints every write step ("sim: write #k PATH").
"""
import os

_writes = [0]


def install(store):
    n = int(os.getenv("MPOCPP_KILL_AFTER_WRITES"))

    def hook(path):
        _writes[0] += 1
        if not n:
            print("sim: write #%d %s" % (_writes[0], path))
        elif _writes[0] >= n:
            print("sim: POWER CUT after write #%d %s" % (_writes[0], path))
            os.system("kill -9 $PPID")
            while True:     # never returns: the signal is on its way
                pass
    store.write_hook = hook
