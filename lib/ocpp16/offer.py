"""The current offered to the car, per connector (issue 13: the limit acts on the car).

offered(n) = min(the SmartCharging composite limit (smartcharging.py, when a profile was
ever stored), the cable / installation maximum (board.max_a10), the application's local
limits (cp.set_local_limit, connector n and the whole charger), LocalPowerLimit W while
a load-management / dimming contact is active (board.local_limited)), in tenths of A.
Below MIN_OFFER_A10 (6 A) nothing is offered: the connector pauses (SuspendedEVSE, the
transaction stays open, MeterValues go on) until the limit rises again.

Only a connector whose session lets energy flow is offered current (sessions tells:
session()); every other one gets 0 (pilot at 100 %: connected, no current).  Limits of
the whole charger (connector 0: set_local_limit(0, ..), local_limited(0)) are shared
equally by the connectors that are offered current.

Recomputed when a limit changed (cp.limits_changed(), set_local(), a contact input, the
two config keys), at the composite's next change (`until` from smartcharging), when the
clock becomes known, and when a session starts or stops; not at every tick.

A component (cp.part("offer")): sessions makes it at the first transaction on a board
with a pilot (offer()) or a contact (local_limited()), or once a profile or a local limit
exists; a charger with none of them never imports this module.
"""
from micropython import const
from ocpp16 import states as C

_CAP = const(800)       # 80 A: the top of the IEC 61851-1 PWM scale (no board maximum)
_UNSET_TICKS = const(5)  # without the clock the profiles are looked at every second


class Part:
    def __init__(self, cp):
        self.cp = cp
        n = cp.connectors + 1
        b = cp.board
        self._local = [None] * n     # set_local(): tenths of A, None = no local limit
        self._lim = [0] * n          # the computed limit (0 when below 6 A)
        self._sent = [0] * n         # what board.offer() was told (a board starts at 0)
        self._on = [False] * n       # the session lets connector n draw energy
        self._ok = [False] * n       # what session() last told sessions (>= 6 A offered)
        self._dim = [False] * n      # the contact inputs as last read
        self._dirty = True
        self._busy = False
        self._until = None           # Unix time of the composite's next change
        self._unset = 0              # computed with profiles but no clock: ticks since
        # Bound methods once: getattr per tick would allocate.
        self._offer = getattr(b, "offer", None)
        self._max = getattr(b, "max_a10", None)
        self._contact = getattr(b, "local_limited", None)
        cp.cfg.on_change(self._config)
        # Made while sessions may run (a limit came mid-session): the limits now, and
        # update() asks sessions which of them may draw before the first offer.
        self._fresh = True
        self._compute()

    # -- API (chargepoint, sessions) ----------------------------------------------------
    def set_local(self, n, a10):
        """cp.set_local_limit: connector n's (0: the charger's) local maximum in tenths of
        A, None clears it.  Applied at once."""
        if not 0 <= n <= self.cp.connectors:
            raise ValueError("connector")
        if a10 is not None and (not isinstance(a10, int) or a10 < 0):
            raise ValueError("a10")
        self._local[n] = a10
        self.changed()
        self.update()

    def changed(self):
        """A limit changed: recomputed at the next tick."""
        self._dirty = True

    def limit(self, n):
        """Connector n's limit as last computed, tenths of A (0: below 6 A)."""
        return self._lim[n]

    def offered(self, n):
        """What connector n offers the car now, tenths of A (0 while no session draws)."""
        return self._sent[n]

    def session(self, n, on):
        """From sessions._charging_state: whether connector n's session lets energy flow.
        Returns True when it does and at least 6 A is offered."""
        if self._on[n] != on:
            self._on[n] = on
            self._dirty = True       # the charger-wide share changes with the sessions
        self.update(n)
        ok = self._ok[n] = on and self._lim[n] > 0
        return ok

    def tick(self):
        """From sessions.tick (every 200 ms): the contacts, the clock, `until`."""
        fn = self._contact
        if fn is not None:
            for i in range(len(self._dim)):
                v = bool(fn(i))
                if v != self._dim[i]:
                    self._dim[i] = v
                    self._dirty = True
        if self._unset:
            # Computed without the clock: the profiles' `until` is then on a timeline of
            # smartcharging's choosing; every second, and at once when the clock is set.
            self._unset += 1
            if self._unset > _UNSET_TICKS or self.cp.clock.now() is not None:
                self._dirty = True
        elif self._until is not None:
            now = self.cp.clock.now()
            if now is not None and now >= self._until:
                self._dirty = True
        self.update()     # recomputes only when dirty; the offers follow unplug and faults

    def update(self, skip=0):
        """Recompute (when a limit changed) and tell the board; a session that pauses or
        resumes gets its status and relay again (sessions._charging_state), except `skip`
        (the caller, which is doing just that)."""
        if self._busy:
            return                   # from a _charging_state below: the loop goes on
        self._busy = True
        try:
            if self._fresh:
                self._fresh = False
                for i in range(1, len(self._lim)):
                    if i != skip and self.cp.tx.active[i] is not None:
                        self.cp.sessions._charging_state(i)     # calls session(i, ..)
            again = True
            while again:
                if self._dirty:
                    self._dirty = False
                    self._compute()
                for i in range(1, len(self._lim)):
                    self._apply(i)
                    if i != skip and self.cp.tx.active[i] is not None \
                            and (self._on[i] and self._lim[i] > 0) != self._ok[i]:
                        self.cp.sessions._charging_state(i)     # paused / resumed
                again = self._dirty
        finally:
            self._busy = False

    # -- computation --------------------------------------------------------------------
    def _apply(self, n):
        # What the board offers: the limit while the session lets energy flow.
        cp = self.cp
        a = self._lim[n] if self._on[n] and cp.tx.active[n] is not None \
            and cp.sessions.plugged[n] and not cp.faulted(n) else 0
        if a != self._sent[n]:
            self._sent[n] = a
            if self._offer is not None:
                self._offer(n, a)

    def _compute(self):
        cp = self.cp
        now = cp.clock.now()
        sc = cp.part("smartcharging", False)
        self._unset = 1 if now is None and sc is not None else 0
        volts = cp.cfg.get("NominalVoltage")
        phases = getattr(cp.board, "phases", 3) or 3
        # Connectors that share the charger-wide limits: those offered current.
        k = 0
        for i in range(1, len(self._lim)):
            if self._on[i] and cp.tx.active[i] is not None:
                k += 1
        k = k or 1
        w_cap = cp.cfg.get("LocalPowerLimit") * 10 // (volts * phases)   # W -> tenths of A
        dim0 = self._contact is not None and self._contact(0)
        until = None
        for n in range(1, len(self._lim)):
            a = _CAP
            if self._max is not None:
                m = self._max(n)
                if m is not None and m < a:
                    a = m
            if sc is not None:
                r = sc.limit(n, now)
                if r is not None:
                    if r[0] is not None and r[0] < a:
                        a = r[0]
                    u = r[1]
                    if u is not None and (now is None or u > now) \
                            and (until is None or u < until):
                        until = u
            loc = self._local[n]
            if loc is not None and loc < a:
                a = loc
            loc = self._local[0]
            if loc is not None and loc // k < a:
                a = loc // k
            if self._contact is not None and self._contact(n) and w_cap < a:
                a = w_cap
            if dim0 and w_cap // k < a:
                a = w_cap // k
            self._lim[n] = a if a >= C.MIN_OFFER_A10 else 0
        self._until = until

    def _config(self, name, value):
        if name == "NominalVoltage" or name == "LocalPowerLimit":
            self._dirty = True
