"""Simulated charger board for the MicroPython unix port.

Simulates what a real board wires to the firmware: an S0 energy meter per connector
(pulses at the power the EV draws; imp/kWh configurable), the cable plug, an RFID
reader, the relay, a control pilot and the car behind it (see offer, draw_w), and a
load-management / dimming contact (`dim`).  It is driven by commands on stdin, one per
line (see HELP).  `--state DIR` is the simulated flash; `--flash-kb N` gives it a size
(see flash_free), default unlimited (the host's free space, as statvfs reports it).
"""
import os
import sys
import json
import asyncio
from time import ticks_ms, ticks_diff

HELP = ("commands: plug N | unplug N | swipe N TAG | power N WATTS | phases N 1/3 | "
        "stop N [REASON] | pulses N COUNT | fault N CODE | clear N | "
        "cable N fixed/detachable/AMPS | dim N on/off | limit N AMPS/off | "
        "lock N ok/fail | unlock N ok/fail | storage | reservations | heap | reboot | crash | "
        "quit")

_METER_TICK_MS = 100
# sim-hardware.json: per connector, what survives a power cut
_HW_PLUGGED = 1
_HW_FIXED = 2
_HW_LOCK_FAILS = 4
_HW_UNLOCK_FAILS = 8
_HW_AMPS = 16       # and up: the cable's rating in A (0: none given)
_VOLTS = 230        # the simulated mains, per phase


def heap_figures():
    """After a collection: bytes in use, free, and the largest free block (what the next
    big allocation can get on a fragmented heap), found by bisection: allocation only."""
    import gc
    gc.collect()
    used, free = gc.mem_alloc(), gc.mem_free()
    lo, hi = 0, free
    while hi - lo > 64:
        mid = (lo + hi) // 2
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return "used=%d free=%d largest_free_block=%d" % (used, free, lo)
def _amps(a10):
    return "%d" % (a10 // 10) if a10 % 10 == 0 else "%d.%d" % (a10 // 10, a10 % 10)


_BLOCK = 4096       # littlefs block size on the ESP32 boards
_INLINE = 128       # littlefs keeps a file this small inside its directory's metadata


class Board:
    name = "unix_sim"

    def __init__(self, connectors=1, imp_per_kwh=1000, state="state", log=print, phases=3,
                 flash_kb=0, max_a=32):
        self.connectors = connectors
        self.phases = phases         # the phases each connector supplies
        self.max_a = max_a           # the installation's breaker setting (--max-a)
        self.imp_per_kwh = imp_per_kwh
        self.state = state
        self.log = log
        n = connectors + 1
        self.pulses = [0] * n        # S0 pulse counters (the "interrupt" only counts)
        self._frac = [0.0] * n       # sub-pulse remainder of the simulated flow
        self.load_w = [0] * n        # what the EV would draw at most (`power`)
        self.ev_phases = [3] * n     # the car's phases (`phases`): a 1-phase car takes less
        self.offer_a10 = [0] * n     # what the pilot offers (board.offer), tenths of A
        self.dimmed = [False] * n    # the load-management / dimming contact (`dim`)
        self.cable_a = [0] * n       # the cable's rating (proximity pilot), 0: none
        self.relay_on = [False] * n
        self.plugged = [False] * n
        self._drew = [False] * n     # the EV drew power since it was plugged in
        # Cable and lock (`cable`, `lock`, `unlock` commands): a socket with a working
        # lock by default.
        self.fixed = [False] * n     # a fixed (tethered) cable: no lock to work
        self.lock_ok = [True] * n    # the lock engages when a transaction starts
        self.unlock_ok = [True] * n  # the lock releases on request
        self.app = None
        self._t0 = ticks_ms()
        if flash_kb > 0:
            # Only then: without it the journal asks statvfs of the host, as before.
            self.flash_bytes = flash_kb * 1024
            self.flash_free = self._flash_free
        # The physical world survives a reboot or power cut: a plugged cable stays plugged,
        # a fixed cable stays fixed, a broken lock stays broken.  One small int per
        # connector (_HW_* bits; an older file holds plugged booleans, read the same).
        self._hw = state + "/sim-hardware.json"
        try:
            with open(self._hw) as f:
                saved = json.loads(f.read())
            for i in range(min(n, len(saved))):
                b = int(saved[i])
                self.plugged[i] = bool(b & _HW_PLUGGED)
                self.fixed[i] = bool(b & _HW_FIXED)
                self.lock_ok[i] = not b & _HW_LOCK_FAILS
                self.unlock_ok[i] = not b & _HW_UNLOCK_FAILS
                self.cable_a[i] = b // _HW_AMPS
        except (OSError, ValueError):
            pass

    # -- what the firmware reads ----------------------------------------------------------
    def identity(self):
        return {"vendor": "mpocpp", "model": "unix-sim", "serial": "SIM-0001",
                "meter_type": "S0 %d imp/kWh" % self.imp_per_kwh}

    def seconds(self):
        """Monotonic seconds since power-on: like an unset RTC, it says nothing about UTC."""
        return ticks_diff(ticks_ms(), self._t0) // 1000

    def wall(self):
        """The wall clock TLS checks certificates against (Unix seconds): the host's, or
        a cold one (2000-01-01, as an ESP32 starts) under tests/mp/coldclock.c."""
        import time
        return int(time.time())

    def set_wall(self, t):
        """Set the wall clock.  The host's is not ours to set; under the cold-clock shim
        its offset file is (MPOCPP_CLOCK_FILE)."""
        path = os.getenv("MPOCPP_CLOCK_FILE")
        if not path:
            return
        try:
            with open(path) as f:
                off = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            off = 0
        off += t - self.wall()          # before the file is opened for writing: the shim
        with open(path, "w") as f:      # reads it on every clock reading
            f.write("%d\n" % off)
        self.log("sim: wall clock set")

    def energy_wh(self, n):
        """Energy register of connector n's meter, in Wh (never goes backwards)."""
        return self.pulses[n] * 1000 // self.imp_per_kwh

    def draw_w(self, n):
        """What the car draws: nothing unless the relay is closed and the pilot offers at
        least 6 A; then what it wants (`power`), at most offered A x 230 V x its phases."""
        a10 = self.offer_a10[n]
        if not (self.relay_on[n] and self.plugged[n]) or a10 < 60:
            return 0
        return min(self.load_w[n], a10 * _VOLTS * self.ev_phases[n] // 10)

    def power_w(self, n):
        return self.draw_w(n)

    def current_a10(self, n):
        """Current per phase in tenths of amperes (230 V phases, the car's phases)."""
        return self.draw_w(n) * 10 // (_VOLTS * self.ev_phases[n])

    def voltage_v(self, n):
        return _VOLTS

    def offer(self, n, a10):
        """The control pilot: offer the car a10 tenths of A (0: connected, no current)."""
        if self.offer_a10[n] != a10:
            self.offer_a10[n] = a10
            self.log("sim: pilot %d offers %s A" % (n, _amps(a10)))

    def offered_a10(self, n):
        return self.offer_a10[n]

    def offered_w(self, n):
        return self.offer_a10[n] * _VOLTS * self.phases // 10

    def max_a10(self, n):
        """The cable's rating (`cable N AMPS`) capped by the breaker setting (--max-a)."""
        a = self.max_a
        if self.cable_a[n] and self.cable_a[n] < a:
            a = self.cable_a[n]
        return a * 10

    def local_limited(self, n):
        return self.dimmed[n]

    def ev_state(self, n):
        """IEC 61851-1 as the pilot reads it: A unplugged, C drawing, else B."""
        if not self.plugged[n]:
            return 0                        # EV_A
        return 2 if self.draw_w(n) else 1  # EV_C, EV_B

    def ev_suspended(self, n):
        """The EV drew power earlier in this session and now wants nothing: it paused."""
        if self.draw_w(n) > 0:
            self._drew[n] = True
        return self.relay_on[n] and self.plugged[n] and self._drew[n] and self.load_w[n] == 0

    def relay(self, n, on):
        if self.relay_on[n] != on:
            self.relay_on[n] = on
            self.log("sim: relay %d %s" % (n, "closed" if on else "open"))

    def is_plugged(self, n):
        return self.plugged[n]

    def fixed_cable(self, n):
        """True when connector n has a fixed cable: UnlockConnector is NotSupported."""
        return self.fixed[n]

    def lock(self, n):
        """Lock the cable in connector n's socket before a transaction starts; False when
        the lock failed (no transaction then: ConnectorLockFailure).  A fixed cable has
        nothing to lock."""
        if self.fixed[n]:
            return True
        self.log("sim: connector %d %s" % (n, "locked" if self.lock_ok[n] else "lock failed"))
        return self.lock_ok[n]

    def _flash_free(self):
        """Free bytes of a littlefs of `flash_bytes` that holds only the state directory,
        counted the way littlefs allocates (4096-byte blocks): every directory, the state
        directory included (it stands for the root, whose pair also holds the
        superblock), takes a metadata pair of 2 blocks; a file of up to 128 bytes is
        inline in its directory's pair (0 blocks); a larger file takes ceil(size / 4096)
        blocks.  Ignored: CTZ skip-list pointers in files of more than one block (a few
        bytes a block) and directories whose metadata outgrows one pair (hundreds of
        entries).  It walks the state directory: the journal asks rarely (only when
        its estimate says it may be near its reserve), never per write."""
        blocks = 0
        todo = [self.state]
        while todo:
            d = todo.pop()
            blocks += 2
            for e in os.ilistdir(d):
                p = d + "/" + e[0]
                try:
                    st = os.stat(p)
                except OSError:
                    continue    # removed meanwhile
                if st[0] & 0x4000:
                    todo.append(p)
                elif st[6] > _INLINE:
                    blocks += (st[6] + _BLOCK - 1) // _BLOCK
        return max(0, self.flash_bytes - blocks * _BLOCK)

    # -- simulation -----------------------------------------------------------------------
    async def _meter(self):
        # Pulses accrue at the power drawn while the relay is closed.
        last = ticks_ms()
        while True:
            await asyncio.sleep_ms(_METER_TICK_MS)
            now = ticks_ms()
            dt = ticks_diff(now, last) / 1000
            last = now
            for n in range(1, self.connectors + 1):
                w = self.draw_w(n)
                if w > 0:
                    self._drew[n] = True
                    f = self._frac[n] + w * self.imp_per_kwh * dt / 3600000
                    whole = int(f)
                    self.pulses[n] += whole
                    self._frac[n] = f - whole

    def _save_hw(self):
        hw = [(_HW_PLUGGED if self.plugged[i] else 0) | (_HW_FIXED if self.fixed[i] else 0)
              | (0 if self.lock_ok[i] else _HW_LOCK_FAILS)
              | (0 if self.unlock_ok[i] else _HW_UNLOCK_FAILS) | self.cable_a[i] * _HW_AMPS
              for i in range(len(self.plugged))]
        with open(self._hw, "w") as f:
            f.write(json.dumps(hw))

    def _conn(self, arg, zero=False):
        n = int(arg)
        if not (0 if zero else 1) <= n <= self.connectors:
            raise ValueError("no connector %d" % n)
        return n

    def command(self, line):
        """Execute one stdin command; returns False on quit."""
        w = line.split()
        if not w:
            return True
        c = w[0]
        try:
            if c == "quit":
                return False
            elif c == "reboot" and len(w) == 1:
                self.log("sim: reboot requested by the application")
                self.app.cp.reboot()
            elif c == "crash" and len(w) == 1:
                # As a bug would: this task dies with an exception, which is fatal
                # (ChargePoint.run's exception handler); main() opens the relays, counts
                # the crash and restarts (firmware/crash.py).
                self.log("sim: crash injected")
                raise RuntimeError("crash injected by the simulator")
            elif c == "plug" and len(w) == 2:
                n = self._conn(w[1])
                self.plugged[n] = True
                self._save_hw()
                self.log("sim: connector %d plugged" % n)
                self.app.plugged(n, True)
            elif c == "unplug" and len(w) == 2:
                n = self._conn(w[1])
                self.plugged[n] = False
                self._drew[n] = False
                self._save_hw()
                self.log("sim: connector %d unplugged" % n)
                self.app.plugged(n, False)
                f = self.app.cp.faults[n]
                if f is not None and f[0] == b"ConnectorLockFailure":
                    # Nothing left to lock: the lock's fault input goes quiet, as a
                    # board's lock feedback would report it (after the unplug, so the
                    # connector comes back Available, not Preparing).
                    self.log("sim: lock fault on connector %d cleared (cable out)" % n)
                    self.app.clear_fault(n)
            elif c == "swipe" and len(w) == 3:
                n = self._conn(w[1])
                self.log("sim: card %s at connector %d" % (w[2], n))
                self.app.swiped(n, w[2])
            elif c == "power" and len(w) == 3:
                # What the car would draw at most; it takes what the pilot allows.
                n = self._conn(w[1])
                self.load_w[n] = max(0, int(w[2]))
                self.log("sim: EV on connector %d draws %d W" % (n, self.load_w[n]))
            elif c == "phases" and len(w) == 3 and w[2] in ("1", "3"):
                n = self._conn(w[1])
                self.ev_phases[n] = int(w[2])
                self.log("sim: EV on connector %d charges on %s phase(s)" % (n, w[2]))
            elif c == "limit" and len(w) == 3:
                # The application's local maximum (cp.set_local_limit; 0: the charger),
                # e.g. from a load manager; `off` clears it.
                n = self._conn(w[1], True)
                a = None if w[2] == "off" else int(float(w[2]) * 10)
                if a is not None and a < 0:
                    raise ValueError("AMPS >= 0")
                self.app.cp.set_local_limit(n, a)
                self.log("sim: local limit %d %s" % (n, w[2] if a is None else _amps(a) + " A"))
            elif c == "dim" and len(w) == 3 and w[2] in ("on", "off"):
                # The load-management / dimming contact (0: the whole charger): while on,
                # LocalPowerLimit W applies (read by the firmware at its next tick).
                n = self._conn(w[1], True)
                self.dimmed[n] = w[2] == "on"
                self.log("sim: dimming contact %d %s" % (n, w[2]))
            elif c == "stop" and len(w) in (2, 3):
                n = self._conn(w[1])
                reason = w[2] if len(w) == 3 else "Local"
                self.log("sim: stop button on connector %d (%s)" % (n, reason))
                self.app.stop_pressed(n, reason)
            elif c == "storage" and len(w) == 1:
                s = self.app.cp.storage()
                self.log("sim: storage queued=%d dropped_meter=%d refused=%d free=%s"
                         % (s["queued"], s["dropped_meter"], s["refused"], s["free"]))
            elif c == "reservations" and len(w) == 1:
                # The reservations in force (ReserveNow), one line each, then the count.
                rs = self.app.cp.reservations()
                for r in rs:
                    self.log("sim: reservation %d connector %d idTag %s parentIdTag %s "
                             "expiryDate %s" % (r["reservationId"], r["connectorId"], r["idTag"],
                                                r["parentIdTag"] or "-", r["expiryDate"]))
                self.log("sim: reservations %d" % len(rs))
            elif c == "heap" and len(w) == 1:
                self.log("sim: heap " + heap_figures())
            elif c == "heap" and w[1:] == ["map"]:
                # The heap block by block, then the modules loaded (what stays resident).
                import gc, micropython, sys
                gc.collect()
                micropython.mem_info(1)
                self.log("sim: modules " + " ".join(sorted(sys.modules)))
                self.log("sim: heap map end")
            elif c == "pulses" and len(w) == 3:
                n = self._conn(w[1])
                self.pulses[n] += max(0, int(w[2]))
                self.log("sim: %s pulses on connector %d, register %d Wh"
                         % (w[2], n, self.energy_wh(n)))
            elif c == "fault" and len(w) == 3:
                # A fault input (0: the whole charger); CODE is a ChargePointErrorCode.
                n = self._conn(w[1], True)
                self.log("sim: fault %s on connector %d" % (w[2], n))
                self.app.fault(n, w[2])
            elif c == "clear" and len(w) == 2:
                n = self._conn(w[1], True)
                self.log("sim: fault on connector %d cleared" % n)
                self.app.clear_fault(n)
            elif c == "cable" and len(w) == 3 and w[2] in ("fixed", "detachable"):
                n = self._conn(w[1])
                self.fixed[n] = w[2] == "fixed"
                self._save_hw()
                self.log("sim: connector %d has a %s cable" % (n, w[2]))
            elif c == "cable" and len(w) == 3:
                # The cable's current rating as its proximity resistor tells (0: none).
                n = self._conn(w[1])
                a = int(w[2])
                if not 0 <= a <= 80:
                    raise ValueError("AMPS 0..80")
                self.cable_a[n] = a
                self._save_hw()
                self.log("sim: connector %d cable rated %d A" % (n, a))
                self.app.cp.limits_changed()
            elif c in ("lock", "unlock") and len(w) == 3 and w[2] in ("ok", "fail"):
                # How the lock behaves from now on, at the next transaction start
                # (lock) or UnlockConnector / EV-side disconnect (unlock).
                n = self._conn(w[1])
                (self.lock_ok if c == "lock" else self.unlock_ok)[n] = w[2] == "ok"
                self._save_hw()
                self.log("sim: connector %d %s will %s"
                         % (n, c, "work" if w[2] == "ok" else "fail"))
            else:
                self.log("sim: unknown command %r; %s" % (line.strip(), HELP))
        except ValueError as e:
            self.log("sim: bad command %r: %s; %s" % (line.strip(), e, HELP))
        return True

    async def _stdin(self):
        r = asyncio.StreamReader(sys.stdin)
        while True:
            line = await r.readline()
            if not line:
                # stdin closed: keep running (a charger has no console), just stop reading.
                return
            if not self.command(line.decode()):
                self.app.quit()
                return

    def unlock(self, n):
        """Release the cable lock (a detachable-cable socket); True when it opened."""
        if self.fixed[n]:
            return False    # no lock (the handler answers NotSupported before asking)
        if not self.unlock_ok[n]:
            self.log("sim: connector %d unlock failed" % n)
            return False
        self.log("sim: connector %d unlocked" % n)
        return True

    def start(self, app):
        """Start the simulation tasks; `app` receives plugged/swiped/stop_pressed/fault/
        clear_fault/quit."""
        self.app = app
        asyncio.create_task(self._meter())
        asyncio.create_task(self._stdin())


def from_args(opts, log=print):
    """Build the board from command-line options (tools/sim)."""
    return Board(connectors=int(opts.get("connectors", 1)),
                 imp_per_kwh=int(opts.get("imp", 1000)),
                 state=opts.get("state", "state"), log=log,
                 flash_kb=int(opts.get("flash-kb", 0)), max_a=int(opts.get("max-a", 32)))
