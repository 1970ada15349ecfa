"""`make run`, the README's first command: central system + simulated charger, a session."""
import re

from helpers import ROOT, run_tree


def test_make_run_plays_a_session_and_exits_cleanly():
    p = run_tree(["make", "--no-print-directory", "run"], 240, cwd=str(ROOT))
    out = p.stdout
    assert p.returncode == 0, out[-4000:]
    lines = out.splitlines()
    # Both sides and the script, interleaved and labelled.
    for prefix in ("csms | ", "cp   | ", "demo | "):
        assert any(l.startswith(prefix) for l in lines), prefix
    received = [l for l in lines if l.startswith("csms | ") and " <- [2," in l]
    actions = [re.search(r'<- \[2,"[^"]*","(\w+)"', l).group(1) for l in received]
    assert actions[0] == "BootNotification"
    for a in ("StatusNotification", "Authorize", "StartTransaction", "MeterValues",
              "StopTransaction"):
        assert a in actions, (a, actions)
    assert actions.index("StartTransaction") < actions.index("MeterValues") \
        < actions.index("StopTransaction")
    # The firmware's frames and log lines are shown too.
    assert any(l.startswith("cp   | >> [2,") for l in lines)
    assert any(l.startswith("cp   | tx: stopped") for l in lines)
    m = re.search(r"demo \| transaction \d+: (\d+) Wh charged", out)
    assert m, out[-3000:]
    assert 10 <= int(m.group(1)) <= 40    # 11 kW for about 6 s: 18 Wh
    assert "demo | session over; the charger exited with code 0" in out
    assert "FAILED" not in out and "INVALID" not in out and "Traceback" not in out
    assert "csms stopping" in out
