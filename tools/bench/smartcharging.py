# MicroPython side of `make bench`: SmartCharging (lib/ocpp16/smartcharging.py,
# chargingprofile.py, schedule.py).
#
#   MICROPYPATH=lib:.frozen $(tools/micropython | tail -n1) tools/bench/smartcharging.py
#
# - the heap the component holds with 10 stored profiles (MaxChargingProfilesInstalled:
#   a ChargePointMaxProfile and 9 stacked TxDefaultProfiles of 24 periods each, the most
#   the keys allow), made as at boot from the flash file, after a collection;
# - one recomputation of the limit at a period boundary (Part.limit, what offer.py calls
#   at `until`): heap allocated (gc disabled) and time (mean over 200);
# - one GetCompositeSchedule computation over a day for the same set (time, heap).
# One JSON line at the end.
import sys
import gc
import os
import json
from time import ticks_us, ticks_diff

if ".frozen" not in sys.path:
    sys.path.append(".frozen")          # asyncio is frozen into the unix port
from ocpp16 import store

DIR = "/tmp/mpocpp-bench-sc"
T0 = 1767268800                         # 2026-01-01T12:00:00Z
RUNS = 200


class Obj:
    pass


def fake_cp():
    cp = Obj()
    cp.state = DIR
    cp.connectors = 2
    cp.log = lambda s: None
    cp.cfg = Obj()
    cp.cfg.get = {"ChargingScheduleMaxPeriods": 24, "MaxChargingProfilesInstalled": 10,
                  "ChargeProfileMaxStackLevel": 8, "NominalVoltage": 230}.get
    cp.tx = Obj()
    cp.tx.active = [None, {"tx": 1, "st": [T0 - 600, 1, 0]}, None]
    cp.clock = Obj()
    cp.clock.now = lambda: T0
    cp.board = Obj()
    cp.board.seconds = lambda: 0
    cp.timebase = Obj()
    cp.timebase.boot = 1
    return cp


def profile(pid, purpose, stack):
    return {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Recurring", "recurrencyKind": "Daily",
            "validFrom": "2026-01-01T00:00:00Z", "validTo": "2027-01-01T00:00:00Z",
            "chargingSchedule": {"chargingRateUnit": "W" if stack % 2 else "A",
                                 "startSchedule": "2026-01-01T00:00:00Z",
                                 "chargingSchedulePeriod": [
                {"startPeriod": i * 3600, "limit": (6 + (i + stack) % 20) *
                 (690 if stack % 2 else 1), "numberPhases": 3} for i in range(24)]}}


def main():
    try:
        os.mkdir(DIR)
    except OSError:
        pass
    store.remove(DIR + "/chargingprofiles.json")
    from ocpp16 import smartcharging as sc, chargingprofile as cpf, schedule as S
    cp = fake_cp()
    part = sc.Part(cp)
    assert part.set(0, cpf.parse(profile(1, "ChargePointMaxProfile", 0), T0, 24)) == "Accepted"
    for s in range(9):
        r = part.set(s % 2, cpf.parse(profile(10 + s, "TxDefaultProfile", s), T0, 24))
        assert r == "Accepted", r
    part = None
    gc.collect()
    before = gc.mem_alloc()
    part = sc.Part(cp)                  # as at boot: from the flash file
    gc.collect()
    held = gc.mem_alloc() - before
    assert len(part.p) == 10
    size = os.stat(DIR + "/chargingprofiles.json")[6]
    # A recomputation at a period boundary (13:00, the next one 14:00).
    t = T0 + 3600
    v = part.limit(1, t)
    assert v[1] == t + 3600, v
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    part.limit(1, t)
    alloc = gc.mem_alloc() - a
    gc.enable()
    gc.collect()
    t0 = ticks_us()
    for _ in range(RUNS):
        part.limit(1, t)
    us = ticks_diff(ticks_us(), t0) / RUNS
    # GetCompositeSchedule over a day.
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    t1 = ticks_us()
    t0 = T0 - S.EPOCH                   # as get_composite_schedule gives it
    out = S.composite(part.profiles(1, True), t0, t0 + 86400, part.rel(1, T0) - S.EPOCH,
                      230, S.A)
    cus = ticks_diff(ticks_us(), t1)
    calloc = gc.mem_alloc() - a
    gc.enable()
    store.remove(DIR + "/chargingprofiles.json")
    print("smartcharging: 10 profiles of 24 periods: %d B held, file %d B; limit at a "
          "boundary %.0f us, %d B allocated; composite of a day (%d periods) %d us, %d B"
          % (held, size, us, alloc, len(out) // 2, cus, calloc))
    print(json.dumps({"smartcharging": {"profiles": 10, "periods": 24, "heap_held": held,
                                        "file_bytes": size, "limit_us": round(us, 1),
                                        "limit_alloc": alloc, "composite_day_us": cus,
                                        "composite_day_alloc": calloc,
                                        "composite_day_periods": len(out) // 2}}))


main()
