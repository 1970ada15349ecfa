# Loading an ESP32 board package (boards/<name>/) on the unix port for the device tests,
# against the fake machine/esp32/network modules in tests/stubs.  The board module is
# also called `board`, like the simulated board on MICROPYPATH, so its directory goes
# first on sys.path for the import only, and its modules are taken out of sys.modules
# again; the stubs stay registered for this process, which runs one test module.
import sys

_STUBS = "tests/stubs"


def load(directory, names):
    """{name: module} for `names` of `directory` (imported in that order), and the stubs
    "machine", "esp32", "network"."""
    saved_path = list(sys.path)
    saved = {}
    for k in names:
        saved[k] = sys.modules.pop(k, None)
    sys.path.insert(0, directory)
    sys.path.insert(0, _STUBS)
    out = {}
    try:
        import machine, esp32, network   # noqa: E401 -- registered for the board
        out["machine"], out["esp32"], out["network"] = machine, esp32, network
        for k in names:
            out[k] = __import__(k)
    finally:
        sys.path.clear()
        sys.path.extend(saved_path)
        for k in names:
            sys.modules.pop(k, None)
            if saved[k] is not None:
                sys.modules[k] = saved[k]
    return out


class App:
    """What a board tells the application, recorded in `events` as tuples."""

    def __init__(self):
        self.events = []

    def plugged(self, n, yes):
        self.events.append(("plugged", n, yes))

    def swiped(self, n, tag):
        self.events.append(("swiped", n, tag))

    def stop_pressed(self, n, reason):
        self.events.append(("stop", n, reason))

    def fault(self, n, code, info=None):
        self.events.append(("fault", n, code))

    def clear_fault(self, n):
        self.events.append(("clear", n))
