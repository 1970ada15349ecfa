# firmware/app.py: storage events are logged, per-sample ones at most once per quiet_ms.
import asyncio
from app import App


class FakeCp:
    on_storage = None

    def __init__(self):
        self.s = {"queued": 5, "dropped_meter": 0, "refused": 0, "free": 1234}

    def storage(self):
        return self.s


def _app():
    lines = []
    cp = FakeCp()
    a = App(cp, None, log=lines.append)
    assert cp.on_storage == a.storage
    return a, cp, lines


async def test_meter_events_are_rate_limited_start_stop_never():
    a, cp, lines = _app()
    a.quiet_ms = 200
    for i in range(3):
        cp.s["dropped_meter"] += 2
        a.storage("meter_dropped", 2)
    for i in range(3):
        cp.s["refused"] += 1
        a.storage("full", "MeterValues")
    a.storage("full", "StopTransaction")
    a.storage("full", "StartTransaction")
    assert len(lines) == 4, lines
    assert "2 MeterValues dropped" in lines[0] and "2 dropped since boot" in lines[0]
    assert "full, MeterValues refused; 1 refused since boot" in lines[1]
    assert "StopTransaction refused" in lines[2] and "StartTransaction refused" in lines[3]
    await asyncio.sleep_ms(250)
    cp.s["dropped_meter"] += 2
    a.storage("meter_dropped", 2)
    a.storage("full", "MeterValues")
    assert len(lines) == 6, lines
    assert "8 dropped since boot" in lines[4]
    assert "full, MeterValues refused" in lines[5]
