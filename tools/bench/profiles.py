"""`make bench` section: what the profiles beyond Core cost (called from tools/bench.py).

- the heap of the 32-bit frozen build after boot, then after each profile was used once
  (TriggerMessage, SendLocalList + GetLocalListVersion, ReserveNow + CancelReservation),
  each measured after a collection: a profile costs nothing until its first use;
- the Local Authorization List with 1,000 and 5,000 entries on the same binary
  (tools/bench/locallist.py): lookup time and heap per lookup, build and update times.
"""
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import figures
from figures import ROOT, Csms, EnvSim, prepare_state, _heap

STEPS = (
    ("RemoteTrigger: TriggerMessage(Heartbeat)",
     (("TriggerMessage", {"requestedMessage": "Heartbeat"}),)),
    ("LocalAuthListManagement: SendLocalList (Full, 2 entries), GetLocalListVersion",
     (("SendLocalList", {"listVersion": 1, "updateType": "Full", "localAuthorizationList": [
         {"idTag": "LIST-A", "idTagInfo": {"status": "Accepted"}},
         {"idTag": "LIST-B", "idTagInfo": {"status": "Blocked"}}]}),
      ("GetLocalListVersion", {}))),
    ("SmartCharging: SetChargingProfile (TxDefaultProfile, 3 periods), GetCompositeSchedule",
     (("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": {
         "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
         "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
         "chargingSchedule": {
             "startSchedule": "2026-01-01T00:00:00Z",
             "chargingRateUnit": "A", "chargingSchedulePeriod": [
                 {"startPeriod": 0, "limit": 16}, {"startPeriod": 28800, "limit": 10},
                 {"startPeriod": 64800, "limit": 32}]}}}),
      ("GetCompositeSchedule", {"connectorId": 1, "duration": 3600}))),
    ("Reservation: ReserveNow, CancelReservation",
     (("ReserveNow", {"connectorId": 1, "expiryDate": "2099-01-01T00:00:00Z",
                      "idTag": "RES", "reservationId": 1}),
      ("CancelReservation", {"reservationId": 1}))),
)


def profile_heap(env):
    """[(label, heap in use after it)] starting with ("idle", ...)."""
    with tempfile.TemporaryDirectory() as tmp, \
            Csms("--heartbeat", "3600", "--ping-interval", "0") as cs:
        state = prepare_state(Path(tmp) / "state", figures.CONFIG)
        sim = EnvSim(cs.url, cp_id="PROF", state=state, connectors=2, env=env)
        try:
            sim.wait_line(r"boot: Accepted", timeout=60)
            time.sleep(1)
            out = [("idle after boot", _heap(sim))]
            for label, calls in STEPS:
                for action, payload in calls:
                    r = cs.call("PROF", action, payload)
                    if not r.get("ok"):
                        print(sim.tail(30))
                        raise SystemExit("bench: %s failed: %s" % (action, r))
                time.sleep(1.5)      # what a trigger sends, statuses, answered
                out.append((label, _heap(sim)))
            return out
        finally:
            sim.stop()


def run_script(binary, name, heap="1M"):
    """Run tools/bench/<name>.py on `binary` with the frozen code: (its JSON line, the
    other lines it printed)."""
    env = dict(os.environ, MICROPYPATH=".frozen")
    p = subprocess.run([binary, "-X", "heapsize=" + heap,
                        str(ROOT / "tools" / "bench" / (name + ".py"))],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode or not last.startswith("{"):
        print(p.stdout[-2000:])
        raise SystemExit("bench: tools/bench/%s.py failed" % name)
    return json.loads(last), [l for l in p.stdout.splitlines() if not l.startswith("{")]


def profiles():
    fz = figures.frozen_binary()
    env = {"MICROPYTHON": fz, "MPOCPP_CODE": "frozen"}
    print("Profiles beyond Core, 32-bit frozen build (heap in use after a collection):")
    steps = profile_heap(env)
    base = steps[0][1]
    rows = []
    for label, used in steps:
        d = used - base
        print("  %-78s %7.1f KB  %+6.1f KB" % (label, used / 1024, d / 1024))
        rows.append({"step": label, "heap": used, "delta": d})
    print()
    print("Local Authorization List on flash, 32-bit frozen build (tmpfs: flash writes on "
          "an ESP32 are slower):")
    ll, lines = run_script(fz, "locallist", "512K")
    ll = ll["locallist"]
    for l in lines:
        if re.match(r"locallist|SendLocalList", l):
            print("  " + l)
    print()
    sv = run_script(fz, "sigverify")[0]      # Ed25519 of an update bundle's digest
    garbage = sv.get("heap_allocated_per_verify_bytes")
    print("Update signature (Ed25519, pure MicroPython), 32-bit frozen build: %.1f ms per "
          "verification, %d yields, longest step %d us, module %d B resident, %s of "
          "garbage per verification" % (sv["verify_ms"], sv["yields"], sv["longest_step_us"],
                                        sv["heap_resident_bytes"], "-" if garbage is None
                                        else "%d KB" % (garbage // 1024)))
    sc = run_script(fz, "smartcharging")[0]["smartcharging"]   # 10 profiles, the limit
    print("SmartCharging, 32-bit frozen build: %d profiles of %d periods held in %d B "
          "(file %d B); the limit recomputed at a period boundary in %.0f us, %d B "
          "allocated; a day's composite in %.0f us, %d B" % (
              sc["profiles"], sc["periods"], sc["heap_held"], sc["file_bytes"],
              sc["limit_us"], sc["limit_alloc"], sc["composite_day_us"],
              sc["composite_day_alloc"]))
    return {"heap": rows, "locallist": ll, "sigverify": sv, "smartcharging": sc}


def table(res):
    """Markdown for the README."""
    t = ["| 32-bit frozen | heap in use | compared with idle |", "|---|---|---|"]
    for r in res["heap"]:
        t.append("| %s | %.1f KB | %+.1f KB |" % (r["step"], r["heap"] / 1024,
                                                 r["delta"] / 1024))
    t += ["", "| Local Authorization List, 32-bit frozen | lookup, hit / miss | heap per "
          "lookup, hit / miss | Differential of 20 on it | file |", "|---|---|---|---|---|"]
    for k in ("1000", "5000"):
        r = res["locallist"][k]
        t.append("| %s entries | %.3f / %.3f ms | %d / %d B | %.1f ms | %.1f KB |" % (
            "{:,}".format(r["entries"]), r["lookup_hit_ms"], r["lookup_miss_ms"],
            r["lookup_alloc_b"], r["lookup_miss_alloc_b"], r["diff20_ms"],
            r["file_bytes"] / 1024))
    sc = res.get("smartcharging")
    if sc:
        t += ["", "SmartCharging (32-bit frozen): %d stored profiles of %d periods hold %.1f KB "
              "of heap; recomputing the limit at a period boundary takes %.0f us and "
              "allocates %d B; a day's composite schedule %.1f ms, %d B." % (
                  sc["profiles"], sc["periods"], sc["heap_held"] / 1024, sc["limit_us"],
                  sc["limit_alloc"], sc["composite_day_us"] / 1000, sc["composite_day_alloc"])]
    sv = res.get("sigverify")
    if sv:
        t += ["", "Update signature check (Ed25519 in pure MicroPython, 32-bit frozen build on "
              "this host): %.1f ms per verification in %d slices (longest %.1f ms), %.1f KB "
              "resident once used." % (sv["verify_ms"], sv["yields"],
                                       sv["longest_step_us"] / 1000,
                                       sv["heap_resident_bytes"] / 1024)]
    return "\n".join(t)
