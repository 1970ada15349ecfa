"""Smoke test of the 32-bit unix port with the firmware frozen in (tools/build-frozen):
the build a charger's figures are measured on (make bench), so freezing never breaks
unnoticed.  Boot, a session, a power cut in the middle of a second one, and after it the
interrupted transaction is closed and delivered: all from the frozen code alone (the
simulator's MICROPYPATH is `.frozen`, the checkout's sources are out of reach).
"""
import os
import subprocess

import pytest

from helpers import ROOT, run_tree
from csmsctl import Csms
from mp.txlog import EnvSim, prepare_state
from ocpp_steps import next_call, wait_calls, wait_status

CONFIG = {"MeterValueSampleInterval": 1,
          "StopTxnSampledData": "Energy.Active.Import.Register",
          "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1}


@pytest.fixture(scope="module")
def frozen():
    p = run_tree([str(ROOT / "tools" / "build-frozen")], timeout=900)
    assert p.returncode == 0, p.stdout[-3000:]
    path = p.stdout.strip().splitlines()[-1]
    out = subprocess.run([path, "-c", "import sys; print(sys.maxsize)"], stdout=subprocess.PIPE,
                         text=True, env={"MICROPYPATH": ".frozen"}, check=True).stdout
    assert out.split() == [str(2 ** 31 - 1)]        # a 32-bit build
    return path


def test_frozen_build_runs_a_session_and_survives_a_power_cut(frozen, tmp_path):
    env = {"MICROPYTHON": frozen, "MPOCPP_CODE": "frozen"}
    state = prepare_state(tmp_path / "state", CONFIG)
    with Csms("--heartbeat", "300") as cs:
        sim = EnvSim(cs.url, cp_id="FZ", state=state, env=env)
        try:
            sim.wait_line(r"boot: Accepted", timeout=60)
            for c in ("plug 1", "power 1 11000", "swipe 1 FROZEN1"):
                sim.send(c)
            wait_status(cs, 1, "Charging", cp="FZ")
            next_call(cs, "MeterValues", cp="FZ", timeout=10)
            sim.send("stop 1")
            stop = cs.wait_call("StopTransaction", cp="FZ", timeout=20)[3]
            assert stop["idTag"] == "FROZEN1"
            assert stop["transactionData"][0]["sampledValue"][0]["context"] == \
                "Transaction.Begin"
            sim.send("unplug 1")
            sim.send("plug 1")
            sim.send("swipe 1 FROZEN2")
            wait_calls(cs, "StartTransaction", 2, cp="FZ")
            sim.kill()                                      # the power cut
        finally:
            sim.stop()
        sim = EnvSim(cs.url, cp_id="FZ", state=state, env=env)
        try:
            stop = cs.wait_call("StopTransaction", cp="FZ", timeout=60, after=1)[3]
            assert stop["idTag"] == "FROZEN2" and stop["reason"] == "PowerLoss"
            # Nothing in the run came from the sources: MICROPYPATH held .frozen only.
            assert not any("Traceback" in l for l in sim.lines), sim.tail()
        finally:
            sim.stop()
