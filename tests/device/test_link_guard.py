# The charge point's own loops when the link misbehaves: nothing spins, nothing dies, and
# no transaction message can block the queue by ending the link again and again.
import asyncio
from fakews import FakeWS
from test_api import FakeBoard
from fsutil import rmtree
from ocpp16 import config, store, rpc, link
from ocpp16 import chargepoint as C

_DIR = "/tmp/mpocpp-test-guard"


class DeadWS(FakeWS):
    # The socket is gone but the receiver has not noticed yet: every send fails at once.
    def __init__(self):
        super().__init__(4096)
        self.sends = 0

    def send(self, n, opcode=1):
        self.sends += 1
        if self.sends > 1000:
            raise RuntimeError("spinning")    # ends a spinning sender, so the test can tell
        raise OSError(32)


def _cp(ws, logs):
    rmtree(_DIR)
    store.makedirs(_DIR)
    cfg = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    cp = C.ChargePoint(FakeBoard(), cfg, ws, _DIR, log=logs.append)
    cp.rpc.trace = False
    link.take_time(cp, {"currentTime": "2026-11-23T10:00:00Z"})   # records need a clock
    return cp


async def test_a_lost_send_does_not_spin_the_sender():
    ws = DeadWS()
    cp = _cp(ws, [])
    cp.rpc.connected()
    t = asyncio.create_task(cp._sender())
    await asyncio.sleep_ms(300)
    assert ws.sends <= 2, ws.sends
    assert not cp.rpc.online and not t.done()
    t.cancel()


async def test_a_failing_task_restarts():
    logs = []
    cp = _cp(FakeWS(4096), logs)
    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("bug")
        await asyncio.sleep_ms(10000)
    t = asyncio.create_task(link.keep(cp, "ticker", lambda cp: flaky()))
    await asyncio.sleep_ms(1300)
    assert len(runs) == 2 and not t.done()
    assert any("task ticker failed: ValueError('bug',)" in x for x in logs), logs
    t.cancel()


def _dropping(cp, code):
    # rpc.call as seen when the link ends while the CALL is out; the server closed it
    # with `code` (None: no close frame at all).
    def call(action, enc, arg):
        cp.ws.close_code = code
        cp.rpc.dropped = True
        cp.rpc._finish(rpc.OFFLINE)
        return cp.rpc._answer
    cp.rpc.call = call


async def _sends_until_dropped(cp):
    for i in range(1, 100):
        cp.delivery._waiting = False
        await cp.delivery.send_head()
        if not len(cp.journal):
            return i
    return None


async def test_a_message_that_keeps_ending_the_link_counts_as_failed():
    logs = []
    cp = _cp(FakeWS(4096), logs)
    cp.sessions.plugged[1] = True
    assert cp.start_transaction(1, "T") == C.QUEUED
    _dropping(cp, 1007)
    # Server closes with an error code: 2 per failure, TransactionMessageAttempts = 3.
    assert await _sends_until_dropped(cp) == 6
    assert any("DROPPED StartTransaction local #1 (after 3 failures)" in x for x in logs), logs
    cp.sessions.stop(1, "Local")
    _dropping(cp, None)
    # A link that just dies with it out: 10 per failure.
    n = await _sends_until_dropped(cp)
    assert n == 30, (n, logs[-5:])


async def test_a_dropped_link_now_and_then_costs_nothing():
    logs = []
    cp = _cp(FakeWS(4096), logs)
    cp.sessions.plugged[1] = True
    cp.start_transaction(1, "T")
    _dropping(cp, None)
    for i in range(9):
        cp.delivery._waiting = False
        await cp.delivery.send_head()
    assert cp.journal.head()[3] == 0      # no failure counted yet


async def test_a_task_that_dies_is_fatal_and_opens_the_relays():
    # Issue "safe on the chip": a dead task (here one of the board's) ends run() with its
    # exception after every relay is opened; main() then records it and restarts.
    logs = []
    cp = _cp(FakeWS(4096), logs)
    cp.board.relays[1] = cp.board.relays[2] = True

    async def dies():
        await asyncio.sleep_ms(50)
        raise ValueError("input task died")
    asyncio.create_task(dies())
    try:
        await asyncio.wait_for_ms(cp.run(), 3000)
        assert False, "run() went on"
    except ValueError as e:
        assert "input task died" in str(e)
    assert cp.board.relays == [False, False, False]
    assert any(x.startswith("task died") for x in logs), logs


async def test_the_ticker_checks_in():
    cp = _cp(FakeWS(4096), [])
    cp.health.watch("ticker", 300)
    t = asyncio.create_task(cp._ticker())
    await asyncio.sleep_ms(700)
    assert cp.health.late() is None
    t.cancel()
    await asyncio.sleep_ms(400)
    assert cp.health.late() == "ticker"


async def test_the_sender_and_the_link_check_in():
    # Issue "safe on the chip", part 2: the sender checks in at every round (the ticker
    # wakes it every 2 s), the receiver at every frame; a dead one stops the feeding.
    cp = _cp(FakeWS(4096), [])                 # offline: the sender waits for the link
    tk = asyncio.create_task(cp._ticker())
    sd = asyncio.create_task(cp._sender())
    await asyncio.sleep_ms(50)
    cp.health.watch("sender", 3000)            # shorter than the real one, for the test
    await asyncio.sleep_ms(3500)
    assert cp.health.late() is None
    sd.cancel()
    await asyncio.sleep_ms(3300)
    assert cp.health.late() == "sender"
    tk.cancel()
    # The receiver: a frame is a check-in of the link task.
    cp.health.unwatch("sender")
    cp.health.unwatch("ticker")
    cp.health.watch("link", 100)
    await asyncio.sleep_ms(150)
    assert cp.health.late() == "link"
    rx = asyncio.create_task(cp.rpc.serve())
    cp.ws.feed('[3,"1",{}]')
    await asyncio.sleep_ms(20)
    assert cp.health.late() is None
    cp.ws.drop()
    await rx


async def test_a_task_that_keeps_failing_is_fatal():
    logs = []
    cp = _cp(FakeWS(4096), logs)

    async def always(cp):
        raise ValueError("bug")
    t = asyncio.create_task(link.keep(cp, "sender", always))
    await asyncio.sleep_ms(3500)            # failed 4 times, 1 s apart: restarted
    assert cp._fatal is None and not t.done()
    await asyncio.sleep_ms(1200)            # the 5th failure
    assert isinstance(cp._fatal, ValueError) and t.done(), (cp._fatal, logs)
    assert any("task sender failed 5 times in a row: fatal" in x for x in logs), logs
