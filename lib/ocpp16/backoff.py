"""Reconnect delays: exponential from min_ms, capped at max_ms, with jitter.

    b = Backoff(1000, 60000)
    while True:
        t0 = ticks_ms()
        try:
            await ws.connect(...); ...run until the link drops...
        except (OSError, WSError):
            pass
        b.stable(ticks_diff(ticks_ms(), t0))   # a link that stayed up resets the delay
        await asyncio.sleep_ms(b.next_ms())

Jitter spreads a fleet of chargers that lost the same central system so they do not all
come back in the same second.  next_ms() allocates nothing.
"""
from random import getrandbits


class Backoff:
    def __init__(self, min_ms=1000, max_ms=60000, stable_ms=30000):
        self.min_ms = min_ms
        self.max_ms = max_ms
        #: a connection that stayed up this long counts as good: stable() resets
        self.stable_ms = stable_ms
        self._cur = min_ms

    def next_ms(self):
        """The next delay: uniform in [d/2, d] where d doubles each call up to max_ms."""
        d = self._cur
        self._cur = min(d * 2, self.max_ms)
        h = d // 2
        return d - h + getrandbits(30) % (h + 1)  # 30 bits: a small int on 32-bit ports

    def reset(self):
        self._cur = self.min_ms

    def stable(self, connected_ms):
        """Call when a connection ends, with how long it was up; resets if long enough."""
        if connected_ms >= self.stable_ms:
            self.reset()
