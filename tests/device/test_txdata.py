# transactionData of StopTransaction: intermediate StopTxnSampledData / StopTxnAlignedData
# samples kept on flash (tx/<n>.d), bounded, evenly thinned, fitted into the message.
import json
from ocpp16 import journal, store
from ocpp16 import meter as mt
from test_api import _cp, _DIR


def _setup(sampled="Energy.Active.Import.Register", aligned=""):
    cp, ws, b = _cp()
    cp.clock.set(1800000000)
    cp.cfg.put("MeterValuesSampledData", "")
    cp.cfg.put("MeterValuesAlignedData", "")
    cp.cfg.put("StopTxnSampledData", sampled)
    cp.cfg.put("StopTxnAlignedData", aligned)
    return cp, b


def _stop_body(cp):
    buf = bytearray(2048)
    for rec in cp.journal.records():
        if rec[1] == journal.STOP:
            n = cp.journal.read(rec[0], buf)
            return bytes(buf[:n])
    raise AssertionError("no StopTransaction queued")


def _energy(mv):
    for sv in mv["sampledValue"]:
        if sv["measurand"] == "Energy.Active.Import.Register":
            return int(sv["value"])


def test_samples_between_begin_and_end_without_meter_values():
    # MeterValuesSampledData empty: no MeterValues queued, the samples are still kept.
    cp, b = _setup(aligned="Energy.Active.Import.Register")
    cp.tx.begin(1, "TAG")
    for i in range(3):
        b.wh[1] += 100
        cp.tx.sample(1, mt.PERIODIC)
    cp.tx.sample(1, mt.CLOCK, 1800000900)
    cp.tx.end(1, "Local")
    assert [r[1] for r in cp.journal.records()] == [journal.START, journal.STOP]
    td = json.loads(_stop_body(cp))["transactionData"]
    ctx = [mv["sampledValue"][0]["context"] for mv in td]
    assert ctx == ["Transaction.Begin", "Sample.Periodic", "Sample.Periodic",
                   "Sample.Periodic", "Sample.Clock", "Transaction.End"], ctx
    assert [_energy(mv) for mv in td] == [0, 100, 200, 300, 300, 300]
    assert td[4]["timestamp"] == "2027-01-15T08:15:00Z"   # the boundary it belongs to
    assert not store.exists(_DIR + "/tx/1.d")


def test_aligned_only_has_no_begin_end():
    cp, b = _setup(sampled="", aligned="Energy.Active.Import.Register")
    cp.tx.begin(1, "TAG")
    cp.tx.sample(1, mt.PERIODIC)                  # StopTxnSampledData empty: not kept
    cp.tx.sample(1, mt.CLOCK, 1800000900)
    cp.tx.end(1, "Local")
    td = json.loads(_stop_body(cp))["transactionData"]
    assert [mv["sampledValue"][0]["context"] for mv in td] == ["Sample.Clock"]


def test_long_session_is_bounded_and_evenly_thinned():
    cp, b = _setup()
    cp.tx.begin(1, "TAG")
    for i in range(200):
        b.wh[1] += 10
        cp.tx.sample(1, mt.PERIODIC)
        assert len(store.read(_DIR + "/tx/1.d")) <= 4096     # _DATA_CAP
    assert cp.tx.active[1]["k"] >= 4
    kept = [_energy(json.loads(x)) for x in cp.tx._lines(1)]
    steps = [b_ - a for a, b_ in zip(kept, kept[1:])]
    assert len(set(steps)) == 1, steps              # evenly spread over the session
    cp.tx.end(1, "Local")
    body = _stop_body(cp)
    assert len(body) <= 1536                      # _BODY_SIZE
    td = json.loads(body)["transactionData"]
    regs = [_energy(mv) for mv in td]
    assert td[0]["sampledValue"][0]["context"] == "Transaction.Begin"
    assert td[-1]["sampledValue"][0]["context"] == "Transaction.End"
    mid = regs[1:-1]
    assert len(mid) >= 3 and mid[-1] == kept[-1]    # the newest kept one is there
    steps = [b_ - a for a, b_ in zip(mid, mid[1:])]
    assert len(set(steps)) == 1, steps
    assert regs[-1] == 2000


def test_damaged_and_torn_lines_are_left_out():
    cp, b = _setup()
    cp.tx.begin(1, "TAG")
    for i in range(3):
        b.wh[1] += 100
        cp.tx.sample(1, mt.PERIODIC)
    path = _DIR + "/tx/1.d"
    lines = store.read(path).split(b"\n")
    lines[1] = lines[1][:20] + b"\xff#" + lines[1][22:]   # flipped bytes in the middle one
    store.atomic_write(path, b"\n".join(lines) + b'{"timestamp":"2027-01-')  # torn tail
    cp.tx.end(1, "Local")
    td = json.loads(_stop_body(cp))["transactionData"]
    assert [_energy(mv) for mv in td] == [0, 100, 300, 300]


def test_samples_survive_a_restart_into_the_powerloss_stop():
    cp, b = _setup()
    cp.tx.begin(1, "TAG")
    for i in range(2):
        b.wh[1] += 100
        cp.tx.sample(1, mt.PERIODIC)
    # Power cut: a new charge point on the same flash closes the transaction.
    from ocpp16 import config
    from ocpp16 import chargepoint as C
    from fakews import FakeWS
    from test_api import FakeBoard
    cfg = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    cp2 = C.ChargePoint(FakeBoard(), cfg, FakeWS(4096), _DIR, log=lambda s: None)
    cp2.tx.recover()
    stop = json.loads(_stop_body(cp2))
    assert stop["reason"] == "PowerLoss"
    ctx = [mv["sampledValue"][0]["context"] for mv in stop["transactionData"]]
    assert ctx == ["Transaction.Begin", "Sample.Periodic", "Sample.Periodic",
                   "Transaction.End"], ctx
    assert not store.exists(_DIR + "/tx/1.d")
