"""pytest plumbing.

MicroPython-side test modules live in tests/device/test_*.py.  They are collected here:
each `test_*` function becomes one pytest item; the module runs once on the unix port
(through tests/device/runner.py) and each item reports its own outcome, with the
MicroPython traceback on failure.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import ROOT, micropython, mp_env  # noqa: E402

DEVICE_DIR = Path(__file__).resolve().parent / "device"
RUNNER = DEVICE_DIR / "runner.py"
DEVICE_TIMEOUT = 300


# One more folder of device modules, for the harness's own test (tests/test_toolchain.py).
_EXTRA_DIR = os.environ.get("MPOCPP_EXTRA_DEVICE_DIR")


def _is_device_module(path):
    return ((path.parent == DEVICE_DIR or (_EXTRA_DIR and str(path.parent) == _EXTRA_DIR))
            and path.name.startswith("test_") and path.suffix == ".py")


def pytest_collect_file(parent, file_path):
    # A path named on the command line goes through pytest_pycollect_makemodule instead.
    if _is_device_module(file_path) and not parent.session.isinitpath(file_path):
        return DeviceModule.from_parent(parent, path=file_path)


def pytest_pycollect_makemodule(module_path, parent):
    # Never let CPython import a device module: it is MicroPython code.
    if _is_device_module(module_path):
        return DeviceModule.from_parent(parent, path=module_path)


class DeviceModule(pytest.File):
    """A MicroPython test module: test names are read with `ast`, never imported."""

    def collect(self):
        tree = ast.parse(self.path.read_text())
        names = [n.name for n in tree.body
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name.startswith("test_")]
        self._names = names
        self._results = None
        for n in names:
            yield DeviceItem.from_parent(self, name=n)

    def results(self):
        if self._results is None:
            self._results = {}
            cmd = [micropython(), "-X", "heapsize=4M", str(RUNNER), str(self.path)] + self._names
            try:
                p = subprocess.run(cmd, env=mp_env(DEVICE_DIR), cwd=str(ROOT),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=DEVICE_TIMEOUT)
                out = p.stdout
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                out += "\n[timed out after %ds]" % DEVICE_TIMEOUT
            self._output = out
            for line in out.splitlines():
                if line.startswith("@@RESULT "):
                    r = json.loads(line[9:])
                    self._results[r["name"]] = r
        return self._results


class DeviceFailure(Exception):
    pass


class DeviceItem(pytest.Item):
    def runtest(self):
        r = self.parent.results().get(self.name)
        if r is None:
            raise DeviceFailure("no result from MicroPython for %s; output:\n%s"
                                % (self.name, self.parent._output[-4000:]))
        if not r["ok"]:
            raise DeviceFailure(r.get("tb", "failed"))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, DeviceFailure):
            return "MicroPython: %s\n%s" % (self.name, excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, "%s::%s [micropython]" % (self.path.name, self.name)


# -- fixtures for integration tests -----------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run the long optional tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long run: use make test-long (--run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def start_csms():
    """Factory: start tools/csms on an ephemeral loopback port; all stopped at teardown."""
    from csmsctl import Csms
    started = []

    def start(*args):
        c = Csms(*args)
        started.append(c)
        return c
    yield start
    for c in started:
        c.stop()


@pytest.fixture
def start_sim(tmp_path):
    """Factory: start tools/sim against a URL; every simulator is stopped at teardown."""
    from simctl import Sim
    started = []

    def start(url, cp_id="CP1", state=None, **kw):
        s = Sim(url, cp_id=cp_id, state=state or (tmp_path / ("state-%s" % cp_id)), **kw)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()
        # Shown by pytest only when the test failed.
        print("---- simulator %s, last lines ----\n%s" % (s.cp_id, s.tail(60)))
