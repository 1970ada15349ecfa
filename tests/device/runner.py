# Runs test functions of one MicroPython-side test module on the unix port.
#
#   micropython tests/device/runner.py tests/device/test_x.py test_a test_b ...
#
# Each test prints one line "@@RESULT <json>" with its name, outcome and traceback, so
# tests/conftest.py can report every test case as its own pytest result.  A test
# function may be a plain function or a coroutine (run on a fresh asyncio loop).
import sys, io, json, time

try:
    import asyncio
except ImportError:
    asyncio = None


def _tb(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    return s.getvalue()


def run(path, names):
    d = path.rsplit("/", 1)
    if len(d) == 2:
        sys.path.insert(0, d[0])
    modname = d[-1][:-3] if d[-1].endswith(".py") else d[-1]
    try:
        mod = __import__(modname)
    except Exception as e:
        for n in names:
            print("@@RESULT " + json.dumps({"name": n, "ok": False, "tb": "import failed:\n" + _tb(e)}))
        return
    for n in names:
        f = getattr(mod, n, None)
        t0 = time.ticks_ms()
        if f is None:
            print("@@RESULT " + json.dumps({"name": n, "ok": False, "tb": "no such test"}))
            continue
        try:
            r = f()
            if r is not None and hasattr(r, "send"):  # coroutine
                asyncio.new_event_loop()
                asyncio.run(r)
            res = {"name": n, "ok": True}
        except Exception as e:
            res = {"name": n, "ok": False, "tb": _tb(e)}
        res["ms"] = time.ticks_diff(time.ticks_ms(), t0)
        print("@@RESULT " + json.dumps(res))


run(sys.argv[1], sys.argv[2:])
