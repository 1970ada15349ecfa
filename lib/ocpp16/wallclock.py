"""The board's wall clock, set before TLS needs it.

mbedTLS checks a certificate's validity dates against the system clock.  An ESP32 starts
at 2000-01-01, so every certificate "starts in the future" and the handshake fails, and
the only other time source, the central system's currentTime, comes over that very link.
So, before the first TLS handshake:
- NTP (`NtpServer`, host or host:port; UDP, bounded wait), retried before each attempt
  while the clock is unknown;
- else the last time this charger knew, saved on flash now and then (`clock.json`): a
  floor, never earlier than that (certificates are not issued with dates in the past);
- once online, every currentTime (Boot, Heartbeat) sets it too.
Certificate checking is never switched off.  The board provides `wall()` (Unix seconds)
and `set_wall(t)`; a board without them (tests) has nothing to set.
"""
import json
import socket
import asyncio
from time import ticks_ms, ticks_diff
from micropython import const
from ocpp16 import store

VALID_FROM = const(1735689600)   # 2025-01-01: a wall clock before this is not set
_SAVE_MS = const(600000)         # the floor on flash is renewed this often
_NTP_DELTA = const(2208988800)   # seconds from 1900 (NTP) to 1970 (Unix)
_POLL_MS = const(50)


async def ntp(server, timeout_ms=2000):
    """Unix time from the NTP server `server` ("host" or "host:port"), or None."""
    host, _, port = server.partition(":")
    try:
        addr = socket.getaddrinfo(host, int(port or 123), 0, socket.SOCK_DGRAM)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except (OSError, ValueError, IndexError):
        return None
    try:
        s.setblocking(False)
        q = bytearray(48)
        q[0] = 0x1B                  # client request, NTP version 3
        s.sendto(q, addr)
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < timeout_ms:
            try:
                r = s.recv(48)
            except OSError:
                r = None
            if r and len(r) >= 48:
                secs = int.from_bytes(r[40:44], "big")
                return secs - _NTP_DELTA if secs > _NTP_DELTA else None
            await asyncio.sleep_ms(_POLL_MS)
        return None
    except OSError:
        return None
    finally:
        s.close()


class WallClock:
    def __init__(self, board, state, cfg, log=print):
        self.board = board
        self.path = state + "/clock.json"
        self.cfg = cfg
        self.log = log
        self._saved = ticks_ms()

    def now(self):
        return self.board.wall() if hasattr(self.board, "wall") else None

    def known(self):
        t = self.now()
        return t is None or t >= VALID_FROM

    def set(self, t, source):
        """Set the board's clock to `t` (Unix seconds) and keep it as the floor."""
        if not hasattr(self.board, "set_wall"):
            return
        cur = self.now()
        if cur is None or abs(cur - t) > 2:
            self.board.set_wall(t)
            self.log("clock: wall clock set from %s" % source)
            self.save()
        else:
            self.tick()

    def save(self):
        t = self.now()
        if t is not None and t >= VALID_FROM:
            store.atomic_write(self.path, json.dumps({"t": t}))
        self._saved = ticks_ms()

    def tick(self):
        # From the ticker: renew the floor now and then.
        if ticks_diff(ticks_ms(), self._saved) >= _SAVE_MS:
            self.save()

    def floor(self):
        raw = store.read(self.path)
        try:
            t = json.loads(raw)["t"] if raw else 0
        except (ValueError, KeyError, TypeError):
            t = 0
        return t if isinstance(t, int) and t >= VALID_FROM else 0

    async def sync(self):
        """Make the wall clock known if it is not: NTP first, else the floor.  True when
        it is known afterwards."""
        if self.known():
            return True
        server = self.cfg.get("NtpServer")
        t = await ntp(server) if server else None
        if t and t >= VALID_FROM:
            self.set(t, "NTP " + server)
            return True
        t = self.floor()
        if t > (self.now() or 0):
            self.set(t, "the time saved on flash (a floor; NTP %s did not answer)" % server)
            return True
        self.log("clock: unknown (NTP %s did not answer, nothing saved on flash): TLS "
                 "waits for it, certificates cannot be checked against 2000-01-01" % server)
        return False
