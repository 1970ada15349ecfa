"""The toolchain and the harness themselves: which MicroPython is used, and how a
MicroPython-side test module is reported through pytest."""
import os
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT, micropython, run_tree

TOOL = str(ROOT / "tools" / "micropython")
CACHED = os.path.join(os.environ.get("MPOCPP_CACHE", os.path.expanduser("~/.cache/mpocpp")),
                      "micropython-1.25.0", "micropython")


def _fake(path, major, minor):
    """An executable that answers the version probe like a MicroPython of that version."""
    path.write_text("#!/bin/sh\necho '%d %d'\n" % (major, minor))
    path.chmod(0o755)
    return str(path)


def _which(env):
    return subprocess.run([TOOL], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)


def _env(path, **kw):
    env = {k: v for k, v in os.environ.items() if k != "MICROPYTHON"}
    env["PATH"] = path
    env.update(kw)
    return env


def test_micropython_env_is_used_and_checked(tmp_path):
    real = micropython()
    r = _which(_env("/usr/bin:/bin", MICROPYTHON=real))
    assert r.returncode == 0 and r.stdout.strip() == real
    old = _fake(tmp_path / "mp-1.24", 1, 24)
    r = _which(_env("/usr/bin:/bin", MICROPYTHON=old))
    assert r.returncode != 0
    assert "not a usable MicroPython >= 1.25" in r.stderr
    r = _which(_env("/usr/bin:/bin", MICROPYTHON=_fake(tmp_path / "mp-2.0", 2, 0)))
    assert r.returncode == 0 and r.stdout.strip().endswith("mp-2.0")


def test_micropython_on_path_is_used_when_new_enough(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "micropython").symlink_to(micropython())
    r = _which(_env("%s:/usr/bin:/bin" % bin_dir))
    assert r.returncode == 0 and r.stdout.strip() == str(bin_dir / "micropython")


@pytest.mark.skipif(not os.access(CACHED, os.X_OK),
                    reason="no cached build (a MicroPython on PATH is in use): would build one")
def test_old_micropython_on_path_falls_back_to_the_cached_build(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir / "micropython", 1, 19)
    r = _which(_env("%s:/usr/bin:/bin" % bin_dir))
    assert r.returncode == 0 and r.stdout.strip() == CACHED


def test_device_module_cases_are_reported_one_by_one_with_the_traceback(tmp_path):
    """A device module with a passing, a failing and an async failing test: pytest
    reports each on its own, and the failure carries MicroPython's traceback."""
    d = tmp_path / "dev"
    d.mkdir()
    (d / "test_selfcheck_mixed.py").write_text(textwrap.dedent('''\
        import sys

        def helper_that_fails(x):
            raise ValueError("bad value %d on %s" % (x, sys.implementation.name))

        def test_passes():
            assert sys.implementation.name == "micropython"

        def test_fails():
            helper_that_fails(42)

        async def test_async_fails():
            import asyncio
            await asyncio.sleep_ms(1)
            assert 1 == 2, "async assertion"
        '''))
    env = dict(os.environ, MPOCPP_EXTRA_DEVICE_DIR=str(d),
               PYTHONPATH=str(ROOT / "tests"))
    r = run_tree([sys.executable, "-m", "pytest", "-p", "conftest", "-rA", "-q",
                  "-p", "no:cacheprovider", "-c", str(ROOT / "pytest.ini"),
                  "--rootdir", str(tmp_path), str(d)], 120, cwd=str(tmp_path), env=env)
    out = r.stdout
    assert r.returncode == 1, out
    assert "1 passed" in out and "2 failed" in out, out
    assert "PASSED" in out and "test_selfcheck_mixed.py::test_passes" in out, out
    assert "FAILED" in out and "test_selfcheck_mixed.py::test_fails" in out, out
    # MicroPython's own traceback: its file/line format and the function names.
    assert "Traceback (most recent call last):" in out
    assert 'line 4, in helper_that_fails' in out, out
    assert "ValueError: bad value 42 on micropython" in out, out
    assert "AssertionError: async assertion" in out, out
