# Filesystem helpers shared by the device tests.
import os
from ocpp16 import store


def rmtree(p):
    """Remove file or directory `p` and everything below it; a missing path is fine."""
    try:
        names = os.listdir(p)
    except OSError:
        store.remove(p)
        return
    for n in names:
        q = p + "/" + n
        if os.stat(q)[0] & 0x4000:
            rmtree(q)
        else:
            os.remove(q)
    os.rmdir(p)
