"""tools/deploy.py with the real mpremote, against a virtual MicroPython board.

The board is tests/mp/virtdev.py on the unix port behind a pty (tests/virtdev_host.py):
it speaks the raw REPL and raw-paste protocols as a board's firmware does, and its flash
is a folder.  After a deploy, the firmware is booted from that folder alone (main.py run
by the unix port with the flash as its only code: nothing from the checkout) against
tools/csms, as the board would run it.  The boards/unix_sim board is deployed: it is the
board whose hardware the unix port can stand in for.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import ROOT, load_module, micropython
from ocpp_steps import start_conf, wait_status
from simctl import Sim
from virtdev_host import VirtualDevice

DEPLOY = ROOT / "tools" / "deploy.py"
MPREMOTE = ROOT / ".venv" / "bin" / "mpremote"
BOARD = "unix_sim"
DEPLOY_TIMEOUT = 60

pytestmark = pytest.mark.skipif(not MPREMOTE.exists(), reason="needs mpremote in .venv")


deploy_mod = load_module(DEPLOY, "deploy_for_device_tests")


# -- helpers ------------------------------------------------------------------------------

def _deploy_cmd(port, *args, tree=ROOT):
    # --reset-wait: the virtual board is back at once after a reset (a real one: seconds).
    return [sys.executable, str(tree / "tools" / "deploy.py"), "--port", port, "--board", BOARD,
            "--reset-wait", "0.2"] + list(args)


def _env():
    return dict(os.environ, PYTHONUNBUFFERED="1")


def deploy(port, *args, tree=ROOT):
    """Run tools/deploy.py (`make deploy PORT=... BOARD=unix_sim` plus flags); the
    process group is killed if it outlives the timeout."""
    p = subprocess.Popen(_deploy_cmd(port, *args, tree=tree), cwd=str(tree), env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=DEPLOY_TIMEOUT)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return p.returncode, out


def _config(url, cp):
    return ("--config", "CentralSystemUrl=" + url, "--config", "ChargePointId=" + cp)


def _plan(tree=ROOT):
    """[(local, remote)] deploy.py copies for the board, from `tree`."""
    return [(tree / local.relative_to(ROOT), remote)
            for local, remote in deploy_mod.sources(BOARD)]


def _flash_path(flash, remote):
    return flash / remote.lstrip("/")


def _assert_flash_matches(flash, tree=ROOT):
    for local, remote in _plan(tree):
        on_board = _flash_path(flash, remote)
        assert on_board.is_file(), remote
        assert on_board.read_bytes() == local.read_bytes(), "%s differs" % remote


STAGE = deploy_mod.STAGE      # ".new": deploy.py copies each file to <path>.new first


def _copied(out):
    """The files deploy.py had mpremote write (its `cp` lines), by their final paths.
    Every copy must go to a temporary <path>.new, never to the final path itself."""
    cps = re.findall(r"^cp \S+ :(\S+)$", out, re.M)
    assert all(r.endswith(STAGE) for r in cps), cps
    assert not re.search(r"^Up to date: ", out, re.M)
    return [r[:-len(STAGE)] for r in cps]


def _unchanged(out):
    """The files deploy.py found already in place on the board."""
    return re.findall(r"^  same   (\S+)  \(unchanged on the device\)$", out, re.M)


def _staged(flash):
    """<path>.new files on the board's flash."""
    return sorted(str(p.relative_to(flash)) for p in flash.rglob("*" + STAGE))


def _ready(out):
    """The files deploy.py found copied whole under <path>.new by an earlier run."""
    return re.findall(r"^  ready  (\S+)  \(", out, re.M)


def _wait_boots(dev, n, timeout=10):
    # mpremote's `reset` does not wait for the board: the last boot comes a moment later.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        boots = dev.boots()
        if len(boots) >= n:
            return boots
        time.sleep(0.05)
    raise AssertionError("expected %d boots, got %r" % (n, dev.boots()))


def _checkout_copy(tmp_path):
    """The files deploy.py reads, copied to a tree of their own (so a test can change
    one): tools/deploy.py, lib/, firmware/, boards/unix_sim, and the venv."""
    tree = tmp_path / "checkout"
    skip = shutil.ignore_patterns("__pycache__")
    for d in ("lib", "firmware", "boards/" + BOARD):
        shutil.copytree(ROOT / d, tree / d, ignore=skip)
    (tree / "tools").mkdir()
    shutil.copy(DEPLOY, tree / "tools" / "deploy.py")
    (tree / ".venv").symlink_to(ROOT / ".venv")
    return tree


class DeployedCharger(Sim):
    """The firmware as the board would boot it: the deployed /main.py run by the unix port
    with the flash folder as cwd and its /lib as the only library path, no options (the
    central system and the id come from the deployed /state/config.json).  stdin drives
    the simulated hardware as with tools/sim."""

    def __init__(self, flash, cp_id):
        self.cp_id = cp_id
        self.state = str(flash / "state")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPOCPP_")}
        env["MICROPYPATH"] = "%s:.frozen" % (flash / "lib")
        self.proc = subprocess.Popen([micropython(), "-X", "heapsize=176wK",
                                      str(flash / "main.py")], cwd=str(flash), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, bufsize=0)
        self.lines = []
        self._cv = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()


def _boots_and_registers(csms, flash, cp):
    charger = DeployedCharger(flash, cp)
    try:
        boot = csms.wait_call("BootNotification", cp=cp, timeout=30)
        wait_status(csms, 1, "Available", cp=cp, timeout=30)
    except BaseException:
        print("---- deployed firmware, last lines ----\n" + charger.tail(60))
        charger.stop()
        raise
    assert boot[3]["chargePointVendor"] == "mpocpp"
    return charger


# -- the tests ----------------------------------------------------------------------------

def test_deploy_then_the_board_boots_and_charges(tmp_path, start_csms):
    """`make deploy` with the real mpremote puts the firmware on the board byte for byte,
    with its configuration, through the resets deploy.py plans; the board then boots
    what was deployed and runs a whole charging session against tools/csms."""
    csms = start_csms("--heartbeat", "300")
    flash = tmp_path / "flash"
    with VirtualDevice(flash, tmp_path / "boots.jsonl") as dev:
        t0 = time.monotonic()
        rc, out = deploy(dev.port, *_config(csms.url, "CPDEV"))
        took = time.monotonic() - t0
        assert rc == 0, out
        assert out.rstrip().endswith("deploy: done"), out
        _assert_flash_matches(flash)
        assert json.loads((flash / "state" / "config.json").read_text()) == \
            {"CentralSystemUrl": csms.url, "ChargePointId": "CPDEV"}
        assert not (flash / "maintenance").exists()
        written = _copied(out)
        assert sorted(written) == sorted([r for _, r in _plan()] + ["/state/config.json"])
        assert _staged(flash) == []         # every <path>.new renamed into place
        # The resets: power on; the maintenance reset; one soft reset per later mpremote
        # connection (reading the device, upload, last one), all in maintenance mode, the flag
        # holding exactly those boots; then the final reset, a normal boot.
        boots = _wait_boots(dev, 6)
        assert [b["boot"] for b in boots] == ["power", "hard", "soft", "soft", "soft", "hard"]
        flagged = [b["maintenance"] for b in boots[1:5]]
        assert flagged == [flagged[0]] * 4 and int(flagged[0]) == 4, boots
        assert boots[0]["maintenance"] is None and boots[5]["maintenance"] is None
        assert dev.alive(), dev.stderr()
    print("deploy took %.1f s" % took)

    charger = _boots_and_registers(csms, flash, "CPDEV")
    with charger:
        charger.send("plug 1")
        wait_status(csms, 1, "Preparing", cp="CPDEV")
        charger.send("swipe 1 TAG-DEV")
        start = csms.wait_call("StartTransaction", cp="CPDEV", timeout=20)[3]
        assert start["idTag"] == "TAG-DEV" and start["connectorId"] == 1
        conf = start_conf(csms, cp="CPDEV")
        assert conf["idTagInfo"]["status"] == "Accepted"
        wait_status(csms, 1, "Charging", cp="CPDEV")
        charger.wait_line(r"relay 1 closed")
        charger.send("pulses 1 250")                    # 250 Wh at 1000 imp/kWh
        charger.wait_line(r"250 pulses on connector 1")
        charger.send("unplug 1")
        stop = csms.wait_call("StopTransaction", cp="CPDEV", timeout=20)[3]
        assert stop["transactionId"] == conf["transactionId"]
        assert stop["meterStop"] - start["meterStart"] == 250
        assert stop.get("reason") == "EVDisconnected"
        wait_status(csms, 1, "Available", cp="CPDEV")
    # what ran was the deployed copy: its state is on the board's flash
    assert (flash / "state").is_dir() and len(list((flash / "state").iterdir())) > 1
    assert csms.invalid() == []


def test_redeploy_copies_only_what_changed(tmp_path, start_csms):
    """A second deploy after one module changed writes that module alone (deploy.py
    compares hashes with the board's files at their final paths); nothing else on the
    flash is touched, and the board boots the changed code."""
    csms = start_csms("--heartbeat", "300")
    tree = _checkout_copy(tmp_path)
    flash = tmp_path / "flash"
    with VirtualDevice(flash, tmp_path / "boots.jsonl") as dev:
        rc, out = deploy(dev.port, *_config(csms.url, "CPRE"), tree=tree)
        assert rc == 0, out
        _assert_flash_matches(flash, tree)
        before = {p: p.stat().st_mtime_ns for p in flash.rglob("*") if p.is_file()}
        time.sleep(0.05)        # a rewrite would show in the mtimes

        app = tree / "firmware" / "app.py"
        app.write_text(app.read_text() + "\nprint('app: build 2 from the re-deploy')\n")
        rc, out = deploy(dev.port, *_config(csms.url, "CPRE"), tree=tree)
        assert rc == 0, out
        assert _copied(out) == ["/app.py"], out
        # every other file was checked and found in place (+ config)
        assert sorted(_unchanged(out)) == sorted(
            [r for _, r in _plan(tree) if r != "/app.py"] + ["/state/config.json"]), out
        _assert_flash_matches(flash, tree)
        after = {p: p.stat().st_mtime_ns for p in flash.rglob("*") if p.is_file()}
        changed = sorted(str(p.relative_to(flash)) for p in after if after[p] != before.get(p))
        assert changed == ["app.py"]

    charger = _boots_and_registers(csms, flash, "CPRE")
    with charger:
        charger.wait_line(r"app: build 2 from the re-deploy")
    assert csms.invalid() == []


def _wait_partial(path, timeout):
    """Until `path` is being written (there, not empty), at most `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if path.stat().st_size > 0:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.002)


def _largest_module():
    return max(((local, remote) for local, remote in _plan() if remote.startswith("/lib/")),
               key=lambda f: f[0].stat().st_size)


def test_interrupted_deploys_then_a_rerun_boots(tmp_path, start_csms):
    """Two interruptions of a first deploy, then a complete one:
    1. the board loses power in the middle of a module (torn at a byte count): deploy
       fails and says the copy is incomplete; nothing is in place yet (every file so far
       went to its <path>.new), so the half-deployed firmware cannot start;
    2. on the powered-up board, deploy is killed (with its mpremote) mid-copy;
    3. the next deploy gets the board back (Ctrl-C), rewrites the torn <path>.new, keeps
       those copied whole, renames everything into place, and the board boots it."""
    csms = start_csms("--heartbeat", "300")
    flash = tmp_path / "flash"
    log = tmp_path / "boots.jsonl"
    big_local, big_remote = _largest_module()
    size = big_local.stat().st_size
    cut = 20 * 256 + 100            # inside mpremote's 21st 256-byte write of that file
    assert size > cut + 1000

    # 1. power cut while the board writes the largest module
    with VirtualDevice(flash, log, cut_at=(big_remote + STAGE, cut)) as dev:
        rc, out = deploy(dev.port, *_config(csms.url, "CPINT"))
        assert rc == 1, out
        assert "The copy is incomplete: run the deploy again" in out
        dev.proc.wait(timeout=10)
        assert "power cut while writing %s" % (big_remote + STAGE) in dev.stderr()
    torn = _flash_path(flash, big_remote + STAGE)
    assert torn.stat().st_size == cut
    assert torn.read_bytes() == big_local.read_bytes()[:cut]
    for _, remote in _plan():                       # nothing renamed into place
        assert not _flash_path(flash, remote).exists(), remote
    assert (flash / "maintenance").exists()          # kept for the next attempt

    with VirtualDevice(flash, log) as dev:
        # 2. deploy (and its mpremote) killed while mpremote writes the 2nd module after
        # the torn one: the board is left wherever mpremote was, most likely inside a
        # raw-paste transfer
        names = [r for _, r in _plan()]
        target = names[names.index(big_remote) + 2]
        p = subprocess.Popen(_deploy_cmd(dev.port, *_config(csms.url, "CPINT")), cwd=str(ROOT),
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
        watchdog = threading.Timer(DEPLOY_TIMEOUT, os.killpg, (p.pid, signal.SIGKILL))
        watchdog.start()
        lines = []
        try:
            for line in p.stdout:
                lines.append(line)
                if line.startswith("cp ") and line.rstrip().endswith(":" + target + STAGE):
                    _wait_partial(_flash_path(flash, target + STAGE), timeout=2)
                    break
        finally:
            watchdog.cancel()
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        assert any(line.startswith("cp ") and line.rstrip().endswith(":" + target + STAGE)
                   for line in lines), "".join(lines)
        assert not (flash / "main.py").exists()
        assert _flash_path(flash, big_remote + STAGE).read_bytes() == big_local.read_bytes()

        # 3. a complete deploy on the same board, without a power cycle
        rc, out = deploy(dev.port, *_config(csms.url, "CPINT"))
        assert rc == 0, out
        written = _copied(out)
        assert big_remote not in written             # rewritten by the killed run already
        assert "/lib/ocpp16/__init__.py" not in written
        assert target in written and "/main.py" in written
        assert re.search(r"^  ready  %s " % re.escape(big_remote), out, re.M), out
        _assert_flash_matches(flash)
        assert _staged(flash) == []
        assert not (flash / "maintenance").exists()
        assert dev.alive(), dev.stderr()

    charger = _boots_and_registers(csms, flash, "CPINT")
    charger.stop()
    assert csms.invalid() == []


def test_interrupted_redeploy_leaves_no_torn_module(tmp_path):
    """The property a deploy over a working charger needs: a power cut in the middle of
    the copy leaves every module whole (the design's rule for flash writes: temporary
    file, then rename).  The old main.py is still there and runs at the next boot, with
    the old modules it was deployed with.  The next deploy then puts the new firmware in
    place and leaves no temporary file behind."""
    tree = _checkout_copy(tmp_path)
    flash = tmp_path / "flash"
    log = tmp_path / "boots.jsonl"
    url = "ws://127.0.0.1:9/ocpp"       # never booted here
    big_local, big_remote = _largest_module()
    big = tree / big_local.relative_to(ROOT)
    old = big.read_bytes()
    with VirtualDevice(flash, log) as dev:
        rc, out = deploy(dev.port, *_config(url, "CPOLD"), tree=tree)
        assert rc == 0, out
    deployed = {str(p.relative_to(flash)): p.read_bytes()
                for p in flash.rglob("*") if p.is_file()}
    big.write_bytes(old.replace(b"\n", b"\n# new version of this line\n", 40))
    new = big.read_bytes()
    assert len(new) > 4000 and new != old
    # The cut comes at 4000 bytes of that module, under whatever name the deploy writes
    # it (the path itself, or a temporary name beside it: "/lib/ocpp16/x.py*").
    with VirtualDevice(flash, log, cut_at=(big_remote + "*", 4000)) as dev:
        rc, out = deploy(dev.port, *_config(url, "CPOLD"), tree=tree)
        assert rc == 1 and "The copy is incomplete" in out, out
        dev.proc.wait(timeout=10)
        assert "virtdev: power cut while writing %s" % big_remote in dev.stderr()
    # Apart from the deploy's own files (the maintenance flag, temporary <path>.new
    # copies, which nothing imports), the flash is what the first deploy left.
    assert _flash_path(flash, big_remote).read_bytes() == old
    assert (flash / "main.py").read_bytes() == deployed["main.py"]
    now = {str(p.relative_to(flash)): p.read_bytes() for p in flash.rglob("*")
           if p.is_file() and p.name != "maintenance" and not p.name.endswith(STAGE)}
    assert now == deployed

    with VirtualDevice(flash, log) as dev:
        rc, out = deploy(dev.port, *_config(url, "CPOLD"), tree=tree)
        assert rc == 0, out
        assert _copied(out) == [big_remote]
        assert dev.alive(), dev.stderr()
    assert _flash_path(flash, big_remote).read_bytes() == new
    _assert_flash_matches(flash, tree)
    assert _staged(flash) == [] and not (flash / "maintenance").exists()


def test_power_cut_in_the_renames_is_repaired_by_the_next_deploy(tmp_path, start_csms):
    """The renames at the end of a deploy are the one window where old and new files
    mix on the board.  A power cut there (before the 2nd of 3 renames: the library
    module is new, app.py and main.py still old) is repaired by the next deploy: it
    finds the renamed module in place and the other two copied whole under <path>.new,
    so it copies nothing, renames those two, removes a stray <path>.new, and the board
    boots the new firmware."""
    csms = start_csms("--heartbeat", "300")
    tree = _checkout_copy(tmp_path)
    flash = tmp_path / "flash"
    log = tmp_path / "boots.jsonl"
    with VirtualDevice(flash, log) as dev:
        rc, out = deploy(dev.port, *_config(csms.url, "CPREN"), tree=tree)
        assert rc == 0, out
    old = {remote: _flash_path(flash, remote).read_bytes() for _, remote in _plan(tree)}
    big_local, big_remote = _largest_module()
    changed = {big_remote: tree / big_local.relative_to(ROOT),
               "/app.py": tree / "firmware" / "app.py",
               "/main.py": tree / "firmware" / "main.py"}
    for remote, path in changed.items():
        extra = (b"\nprint('app: build 2, renamed into place')\n" if remote == "/app.py"
                 else b"\n# build 2\n")
        path.write_bytes(path.read_bytes() + extra)
    new = {remote: path.read_bytes() for remote, path in changed.items()}

    with VirtualDevice(flash, log, cut_rename=2) as dev:
        rc, out = deploy(dev.port, *_config(csms.url, "CPREN"), tree=tree)
        assert rc == 1 and "The copy is incomplete" in out, out
        assert sorted(_copied(out)) == sorted(changed)
        dev.proc.wait(timeout=10)
        assert "virtdev: power cut at rename" in dev.stderr()
    assert _flash_path(flash, big_remote).read_bytes() == new[big_remote]
    for remote in ("/app.py", "/main.py"):                  # main.py goes last
        assert _flash_path(flash, remote).read_bytes() == old[remote]
        assert _flash_path(flash, remote + STAGE).read_bytes() == new[remote]
    for remote in old:
        if remote not in changed:
            assert _flash_path(flash, remote).read_bytes() == old[remote], remote
    stray = "/lib/ocpp16/__init__.py" + STAGE
    _flash_path(flash, stray).write_bytes(b"# torn by some earlier deploy")

    with VirtualDevice(flash, log) as dev:
        rc, out = deploy(dev.port, *_config(csms.url, "CPREN"), tree=tree)
        assert rc == 0, out
        assert _copied(out) == []
        assert sorted(_ready(out)) == ["/app.py", "/main.py"]
        assert big_remote in _unchanged(out) and "/lib/ocpp16/__init__.py" in _unchanged(out)
        assert dev.alive(), dev.stderr()
    _assert_flash_matches(flash, tree)
    assert _staged(flash) == [] and not (flash / "maintenance").exists()

    charger = _boots_and_registers(csms, flash, "CPREN")
    with charger:
        charger.wait_line(r"app: build 2, renamed into place")
    assert csms.invalid() == []


def test_virtual_board_protocol_with_mpremote(tmp_path):
    """The virtual board against mpremote's own commands: exec output and exit codes,
    tracebacks, soft reset clearing RAM, resume keeping it, and the standard raw REPL
    when the board has no raw-paste."""
    for raw_paste in (True, False):
        flash = tmp_path / ("flash-%d" % raw_paste)
        with VirtualDevice(flash, tmp_path / ("boots-%d.jsonl" % raw_paste),
                           raw_paste=raw_paste) as dev:
            def mpr(*args):
                p = subprocess.run([str(MPREMOTE), "connect", dev.port] + list(args),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=30)
                return p.returncode, p.stdout

            rc, out = mpr("exec", "x = 6 * 7\nprint(x, 'kept')", "+", "resume", "exec",
                          "print(x + 1)")
            assert rc == 0 and out.split() == ["42", "kept", "43"], out
            rc, out = mpr("exec", "print(x)")           # a new connection soft-resets
            assert rc == 1 and "NameError" in out, out
            rc, out = mpr("exec", "import os\nos.mkdir('/lib')\n"
                          "open('/lib/a.txt', 'w').write('A' * 1000)\nprint(os.listdir('lib'))")
            assert rc == 0 and "['a.txt']" in out, out
            assert (flash / "lib" / "a.txt").read_text() == "A" * 1000
            rc, out = mpr("exec", "import os\nos.rename('/lib/a.txt', '/lib/b.txt')\n"
                          "print(os.listdir('/lib'))")
            assert rc == 0 and "['b.txt']" in out, out
            assert (flash / "lib" / "b.txt").read_text() == "A" * 1000
            rc, out = mpr("fs", "cp", str(DEPLOY), ":/lib/deploy.py", "+", "fs", "cat",
                          ":/lib/deploy.py")
            assert rc == 0 and (flash / "lib" / "deploy.py").read_bytes() == DEPLOY.read_bytes()
            assert DEPLOY.read_text().splitlines()[-1] in out
            rc, out = mpr("exec", "open('/nope')")
            assert rc == 1 and "OSError: [Errno 2] ENOENT" in out, out
            rc, out = mpr("exec", "import machine; print(machine.reset_cause())", "+", "reset")
            assert rc == 0 and out.split() == ["1"], out    # power-on
            boots = _wait_boots(dev, 9)
            assert [b["boot"] for b in boots] == ["power"] + ["soft"] * 7 + ["hard"]
            rc, out = mpr("resume", "exec", "import machine; print(machine.reset_cause())")
            assert rc == 0 and out.split() == ["5"], out    # machine.reset(): SOFT_RESET
