"""Full MicroPython images (lib/ocpp16/fwimage.py) through the updater (firmware.py), on
the unix port against the fake esp32.Partition of tests/stubs/esp32.py, which models the
OTA partitions and the bootloader's rollback (pending verify -> aborted -> previous).

The image is written to the next OTA partition, set_boot() makes it the next boot, and
mark_app_valid_cancel_rollback() is called only once BootNotification was Accepted; an
image that never registers or resets before that is rolled back and reported.
"""
import json
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from helpers import ROOT, load_module, micropython, mp_env

bt = load_module(ROOT / "tools" / "bundle.py", "bundle_tool_img")

DEVICE = r"""
import sys, os, json
import asyncio
from esp32 import Partition
from ocpp16 import firmware, store

state, scenario = sys.argv[1], sys.argv[2]
out = {"said": [], "reboots": 0}


class Obj:
    pass


class Cp:
    def __init__(self):
        self.state = state
        self.registered = False
        self.connectors = 1
        self.inoperative = [False, False]
        self.status = [0, 0]
        self._requests = []
        self.board = Obj()
        self.board.Partition = Partition     # what an ESP32 board module hands in
        self.clock = Obj()
        self.clock.valid = True
        self.clock.now = lambda: 0
        self.cfg = Obj()
        self.cfg.get = lambda k: 30
        self.tx = Obj()
        self.tx.active = [None, None]
        self.journal = []
        self.rpc = Obj()
        self.rpc.online = True
        self.sessions = Obj()
        self.sessions.plugged = [False, False]

    def log(self, m):
        print(m)

    def request(self, action, enc, status):
        out["said"].append(status)

    def set_status(self, n, s):
        self.status[n] = s

    def unavailable(self, n):
        return self.inoperative[0] or self.inoperative[n]

    def reboot(self):
        out["reboots"] += 1


def job():
    # One power-on's run of the job kept in fw.json (what chargepoint.run resumes).
    cp = Cp()
    p = firmware.Part(cp)
    return cp, p


async def cut_after_set_boot():
    # The power went after set_boot(), before fw.json said "trial": the new image boots
    # with the job still at "inst"; the partition it runs from tells what happened.
    Partition("ota_1").writeblocks(0, bytearray(4096))
    Partition("ota_1").set_boot()
    store.atomic_write(state + "/fw.json", json.dumps({"ph": "inst", "was": "ota_0",
                                                       "ver": "2.0.0-img"}))
    out["running"] = Partition.reset()
    cp, p = job()
    cp.registered = True
    await p._job()
    out["final"] = [Partition.running_label, Partition.state["ota_0"],
                    Partition.state["ota_1"]]
    out["fw_left"] = store.exists(state + "/fw.json")


async def main():
    if scenario == "cut":
        return await cut_after_set_boot()
    cp, p = job()
    if scenario == "nopart":
        del cp.board.Partition
    cp.registered = True
    await p._job()
    out["after_install"] = [Partition.boot_label, Partition.state["ota_1"],
                            Partition.running_label]
    out["fw"] = json.loads(store.read(state + "/fw.json") or "null")
    with open(state + "/image.bin", "rb") as f:
        img = f.read()
    out["written"] = bytes(Partition.data["ota_1"][:len(img)]) == img
    if scenario in ("refused", "nopart"):
        return
    if scenario == "crash":
        Partition.reset()           # the new image resets before it registered ...
    out["running"] = Partition.reset()
    out["state_at_boot"] = Partition.state[Partition.running_label]
    cp, p = job()
    t = asyncio.create_task(p._job())
    await asyncio.sleep_ms(600)
    out["before_accept"] = Partition.state[Partition.running_label]
    cp.registered = True
    await t
    out["after_accept"] = Partition.state[Partition.running_label]
    out["fw2"] = json.loads(store.read(state + "/fw.json") or "null")
    if scenario == "never":         # the rollback it asked for, then the old image says so
        out["running2"] = Partition.reset()
        cp, p = job()
        cp.registered = True
        await p._job()
    out["final"] = [Partition.running_label, Partition.state["ota_0"],
                    Partition.state["ota_1"]]
    out["fw_left"] = store.exists(state + "/fw.json")


asyncio.run(main())
print("@@OUT " + json.dumps(out))
"""


def _raw(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def _run(tmp_path, scenario, corrupt=False, trial_s=None):
    key = Ed25519PrivateKey.generate()
    st = tmp_path / "state"
    (st / "app").mkdir(parents=True)
    (st / "update.pub").write_bytes(_raw(key))
    img = os.urandom(3 * 4096 + 123)
    (st / "image.bin").write_bytes(img)
    data = bytearray(bt.build([(st / "image.bin", "micropython.bin")], "2.0.0-img", "esp32_s0",
                              key))
    if corrupt:
        data[-200] ^= 1
    (st / "app" / "new.bin").write_bytes(bytes(data))
    (st / "fw.json").write_text(json.dumps({"ph": "dl", "url": "http://x/y", "at": 0,
                                            "tries": 1, "iv": 1}))
    (tmp_path / "dev.py").write_text(DEVICE)
    env = mp_env(ROOT / "tests" / "stubs")
    env.pop("MPOCPP_TRIAL_S", None)
    if trial_s is not None:
        env["MPOCPP_TRIAL_S"] = str(trial_s)
    p = subprocess.run([micropython(), str(tmp_path / "dev.py"), str(st), scenario],
                       cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("@@OUT ")]
    assert p.returncode == 0 and lines, p.stdout
    return json.loads(lines[-1][6:]), p.stdout


def test_image_is_confirmed_only_after_boot_accepted(tmp_path):
    out, log = _run(tmp_path, "ok")
    assert out["said"] == ["Installing", "Installed"], log
    assert out["written"] and out["reboots"] == 1
    assert out["after_install"] == ["ota_1", "new", "ota_0"]
    assert out["fw"]["ph"] == "trial" and out["fw"]["image"] == "ota_1"
    assert out["running"] == "ota_1" and out["state_at_boot"] == "pending"
    assert out["before_accept"] == "pending"        # not confirmed while unregistered
    assert out["after_accept"] == "valid"
    assert out["final"] == ["ota_1", "valid", "valid"] and not out["fw_left"]


def test_image_that_resets_before_registering_is_rolled_back(tmp_path):
    out, log = _run(tmp_path, "crash")
    assert out["running"] == "ota_0"                # the bootloader went back
    assert out["said"] == ["Installing", "InstallationFailed"], log
    assert out["final"] == ["ota_0", "valid", "aborted"] and not out["fw_left"]


def test_image_that_never_registers_is_rolled_back(tmp_path):
    out, log = _run(tmp_path, "never", trial_s=0)
    # registered only after the trial: it asked for the old partition and a reboot
    assert out["after_accept"] == "pending" and out["reboots"] == 2, log
    assert out["fw2"]["ph"] == "fail"
    assert out["running2"] == "ota_0"
    assert out["said"] == ["Installing", "InstallationFailed"], log
    assert out["final"][0] == "ota_0" and not out["fw_left"]


def test_board_without_partitions_refuses_images(tmp_path):
    out, log = _run(tmp_path, "nopart")
    assert out["said"] == ["Installing", "InstallationFailed"], log
    assert "this board has no OTA partitions" in log
    assert out["after_install"] == ["ota_0", "empty", "ota_0"] and not out["written"]
    assert out["fw"] is None


def test_corrupted_image_bundle_is_refused_before_any_write(tmp_path):
    out, log = _run(tmp_path, "refused", corrupt=True)
    assert out["said"] == ["InstallationFailed"], log
    assert "firmware: bundle refused: corrupt" in log
    assert out["after_install"] == ["ota_0", "empty", "ota_0"] and not out["written"]
    assert out["fw"] is None


def test_power_cut_after_set_boot_goes_on_as_the_trial(tmp_path):
    out, log = _run(tmp_path, "cut")
    assert out["running"] == "ota_1"
    assert out["said"] == ["Installed"], log
    assert out["final"] == ["ota_1", "valid", "valid"] and not out["fw_left"]
