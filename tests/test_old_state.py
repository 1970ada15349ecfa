"""What an update finds on flash: the state an earlier release left is read by this one.

Each tests/fixtures/state-NAME was written by the release its SOURCE names, through one
scenario (tests/fixtures/make_state.py): a transaction started online (transactionId 100)
and stopped after the central system went away, a second one started and stopped offline
on connector 2, a third still running on connector 1 when the power was cut.

- `txidfiles`: a release before the transactionId log (one file per transaction under
  journal/tx/); `txidlog`: the journal format of this release, kept so that a later change
  of format is tested against it too.

This release boots on a copy of it, as after an update (the update leaves the state
directory alone: tests/test_update.py), and must deliver every queued message, in order,
with the transactionId the central system gave and the ones the new central system gives;
stop the transaction the power cut interrupted; keep the configuration and the
authorisation cache; and report no foreign, corrupt or unknown record.
"""
import shutil
from pathlib import Path

import pytest

from mp.txlog import parse_ts

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STATES = sorted(p.name[len("state-"):] for p in FIXTURES.glob("state-*"))
TXN = ("StartTransaction", "StopTransaction", "MeterValues")


def _tx_calls(cs):
    return [c for c in cs.calls(cp="CP1") if c[2] in TXN]


@pytest.mark.parametrize("name", STATES)
def test_state_of_an_earlier_release_is_read_and_delivered(name, start_csms, start_sim,
                                                           tmp_path):
    assert "txidfiles" in STATES, STATES        # the fixtures are in the checkout
    state = tmp_path / "st"
    shutil.copytree(FIXTURES / ("state-" + name), state)
    cs = start_csms("--heartbeat", "300", "--first-txid", "500")
    sim = start_sim(cs.url, state=state, connectors=2)
    sim.wait_line("boot: Accepted", timeout=30)
    sim.wait_line("delivery: queue empty", timeout=60)
    tx = _tx_calls(cs)
    kinds = [c[2] for c in tx]
    # 1: the samples taken offline, then its Stop, with the transactionId it had.
    s1 = kinds.index("StopTransaction")
    assert s1 >= 2 and kinds[:s1] == ["MeterValues"] * s1, kinds
    assert all(c[3]["transactionId"] == 100 for c in tx[:s1 + 1])
    assert tx[s1][3]["idTag"] == "TAG-A" and tx[s1][3]["meterStop"] > 0
    # 2: started offline on connector 2 -> 500 from this central system.
    assert kinds[s1 + 1] == "StartTransaction"
    st2 = tx[s1 + 1][3]
    assert st2["connectorId"] == 2 and st2["idTag"] == "TAG-A"
    s2 = kinds.index("StopTransaction", s1 + 1)
    assert set(kinds[s1 + 2:s2]) <= {"MeterValues"}
    assert all(c[3]["transactionId"] == 500 for c in tx[s1 + 2:s2 + 1])
    assert tx[s2][3]["meterStop"] >= st2["meterStart"]
    # 3: running at the power cut on connector 1: started, then stopped by this release.
    assert kinds[s2 + 1] == "StartTransaction" and tx[s2 + 1][3]["connectorId"] == 1
    s3 = kinds.index("StopTransaction", s2 + 1)
    assert s3 == len(kinds) - 1, kinds
    assert tx[s3][3]["transactionId"] == 501
    assert tx[s3][3]["reason"] == "PowerLoss", tx[s3][3]
    # Timestamps as they happened (before the update), in order.
    stamps = []
    for c in tx:
        p = c[3]
        stamps += ([parse_ts(v["timestamp"]) for v in p["meterValue"]] if c[2] == "MeterValues"
                   else [parse_ts(p["timestamp"])])
    assert stamps == sorted(stamps) and stamps[0] < stamps[-1]
    assert cs.invalid() == []
    bad = [ln for ln in sim.lines if "unknown format" in ln or "corrupt" in ln
           or "refused" in ln or "DROPPED" in ln]
    assert bad == [], bad
    # The configuration of the earlier release holds.
    r = cs.call("CP1", "GetConfiguration", {"key": ["ConnectionTimeOut"]})
    assert r["result"]["configurationKey"][0]["value"] == "77"
    # Its authorisation cache too: with the central system gone, TAG-A starts offline.
    cs.stop()
    sim.wait_line("link: connect failed", timeout=20)
    n = len(sim.lines)
    sim.send("swipe 2 TAG-A")
    sim.wait_line("tx: started local", start=n, timeout=10)
