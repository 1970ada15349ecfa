"""Power cuts at every write step while charging profiles are stored (smartcharging.py).

A MicroPython script (below) stores a set of profiles, then applies one change (a
SetChargingProfile that replaces one profile and adds another, or a ClearChargingProfile)
with MPOCPP_KILL_AFTER_WRITES=N (boards/unix_sim/powercut.py: SIGKILL right after the Nth
write step); a fresh process then loads the profiles as a reboot would.  For every N
the set read back is the old one or the new one, whole (every field of every profile),
the new one once the rename was done; no temporary file outlives the reboot; and the
limit it gives is the old or the new limit.
"""
import shutil

import pytest

from mp import killsweep

SCRIPT = r'''
import sys, os, json
from ocpp16 import store
from ocpp16 import smartcharging as sc, chargingprofile as cpf, schedule as S

d, phase, kind = sys.argv[1], sys.argv[2], sys.argv[3]
T0 = 1767268800     # 2026-01-01T12:00:00Z
CFG = {"ChargingScheduleMaxPeriods": 24, "MaxChargingProfilesInstalled": 10,
       "ChargeProfileMaxStackLevel": 8, "NominalVoltage": 230}


class Obj:
    pass


cp = Obj()
cp.state = d
cp.connectors = 2
cp.log = lambda s: None
cp.cfg = Obj()
cp.cfg.get = CFG.get
cp.tx = Obj()
cp.tx.active = [None, None, None]
cp.clock = Obj()
cp.clock.now = lambda: T0
cp.board = Obj()
cp.board.seconds = lambda: 100
cp.timebase = Obj()
cp.timebase.boot = 1


def prof(pid, purpose, stack, lims):
    return {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute", "validFrom": "2026-01-01T00:00:00Z",
            "chargingSchedule": {"chargingRateUnit": "A", "startSchedule":
                                 "2026-01-01T12:00:00Z", "minChargingRate": 6.1,
                                 "chargingSchedulePeriod": [
                {"startPeriod": i * 600, "limit": l, "numberPhases": 1 + i % 3}
                for i, l in enumerate(lims)]}}


def put(part, n, p):
    r = part.set(n, cpf.parse(p, T0, 24))
    assert r == "Accepted", r


if phase == "setup":
    part = sc.Part(cp)
    put(part, 0, prof(1, "ChargePointMaxProfile", 0, [32, 25.5, 20]))
    put(part, 0, prof(2, "TxDefaultProfile", 0, [16, 10, 8, 12.5]))
    put(part, 1, prof(3, "TxDefaultProfile", 1, [11, 7] * 10))
    print("SETUP", len(part.p))
elif phase == "update":
    if os.getenv("MPOCPP_KILL_AFTER_WRITES") is not None:
        import powercut
        powercut.install(store)
    part = sc.Part(cp)
    if kind == "set":
        put(part, 1, prof(3, "TxDefaultProfile", 1, [6.5, 9] * 12))     # replaces 3
        put(part, 2, prof(4, "TxDefaultProfile", 2, [13]))
        print("RESULT done")
    else:
        print("RESULT", part.clear(None, None, S.TXDEF, None))
else:
    part = sc.Part(cp)
    out = {"profiles": sorted([q[:S.PER] + [list(q[S.PER])] for q in part.p]),
           "limit": part.limit(1, T0 + 700), "files": sorted(os.listdir(d))}
    print("STATE " + json.dumps(out))
'''

@pytest.mark.parametrize("kind", ["set", "clear"])
def test_every_cut_leaves_the_old_or_the_new_profiles(tmp_path, kind):
    script = tmp_path / "sc_kill.py"
    script.write_text(SCRIPT)
    base = tmp_path / "base"
    base.mkdir()
    rc, out = killsweep.run(script, base, "setup", kind)
    assert rc == 0 and "SETUP 3" in out, out
    old = killsweep.state(script, base, kind)
    assert len(old["profiles"]) == 3 and old["limit"][0] == 70      # profile 3: 7 A
    ref = tmp_path / "ref"
    shutil.copytree(base, ref)
    rc, out = killsweep.run(script, ref, "update", kind, kill=0)
    assert rc == 0 and "RESULT" in out, out
    steps = killsweep.steps(out)
    new = killsweep.state(script, ref, kind)
    assert new["profiles"] != old["profiles"]
    if kind == "set":
        assert len(new["profiles"]) == 4 and new["limit"][0] == 90
    else:
        assert len(new["profiles"]) == 1 and new["limit"][0] == 255     # the CPMax alone
    renames = [k for k, path in steps if path.endswith("/chargingprofiles.json")]
    assert renames and renames[-1] == steps[-1][0], steps
    assert len(steps) >= (4 if kind == "set" else 2), steps
    # "set" makes two changes: after the first rename, the set of the first change.
    mid = None
    if kind == "set":
        assert len(renames) == 2
        mid = killsweep.cut(script, base, tmp_path / "mid", kind, renames[0])
        assert len(mid["profiles"]) == 3 and mid["limit"][0] == 90 and mid != new
    for n, path in steps:
        after = killsweep.cut(script, base, tmp_path / ("cut%d" % n), kind, n)   # + reboot
        assert after["files"] == ["chargingprofiles.json"], (n, after["files"])
        got = {k: after[k] for k in ("profiles", "limit")}
        done = [r for r in renames if r <= n]
        if not done:
            want = old
        elif len(done) == len(renames):
            want = new
        else:
            want = mid
        assert got == {k: want[k] for k in ("profiles", "limit")}, "cut after write %d (%s)" \
            % (n, path)
