"""Reservation profile: ReserveNow and CancelReservation (OCPP 1.6 §3.13, §5.3, §5.13).

A reservation is [reservationId, connectorId, expiry (Unix s), idTag, parentIdTag|None].
- connectorId n > 0: connector n shows Reserved; only the idTag, or a tag whose parent
  is the reservation's parentIdTag, may start there (the parent comes from the cache or
  an Authorize.req); its StartTransaction carries reservationId and ends the reservation.
- connectorId 0 (ReserveConnectorZeroSupported): no connector is reserved, but while
  the free connectors are no more than the connector-0 reservations, no other tag may
  start on them and they show Reserved.
A reservation ends when used, cancelled, at expiryDate, or when its connector (the
charge point for connector 0) becomes Faulted or Unavailable (§5.13).

At most one reservation per connector plus one per free connector for connector 0, so
the list is bounded by NumberOfConnectors.  It is kept on flash (`resv.json`, replaced
atomically on each change, removed when empty: chargepoint imports this module at boot
only if the file exists).  After a reboot the clock is unknown until the central system
gives the time: until then a reservation expires only once a lower bound of the time (the
last time known before this boot, plus the uptime) passes its expiryDate.
"""
import json
from micropython import const
from ocpp16 import store
from ocpp16 import states as C
from ocpp16.rpc import CallError, field, only
from ocpp16.clock import parse_iso, iso, EARLIEST

_ID = const(0)
_CONN = const(1)
_EXP = const(2)
_TAG = const(3)
_PARENT = const(4)
_CHECK_EVERY = const(5)     # sessions.tick runs every 200 ms: expiry checked every second


# -- handlers (chargepoint._PROFILES) --------------------------------------------------------
def reserve_now(cp, p):
    only(p, ("connectorId", "expiryDate", "idTag", "parentIdTag", "reservationId"))
    n = field(p, "connectorId", int)
    exp = field(p, "expiryDate", str, maxlen=40)
    tag = field(p, "idTag", str, maxlen=20)
    parent = None
    if p.get("parentIdTag") is not None:      # JSON null = absent
        parent = field(p, "parentIdTag", str, maxlen=20) or None
    rid = field(p, "reservationId", int)
    if not tag:
        raise CallError("PropertyConstraintViolation", "idTag is empty")
    try:
        t = parse_iso(exp)
    except ValueError:
        raise CallError("PropertyConstraintViolation", "expiryDate")
    return {"status": cp.part("reservations").reserve(rid, n, t, tag, parent)}


def cancel_reservation(cp, p):
    only(p, ("reservationId",))
    rid = field(p, "reservationId", int)
    return {"status": "Accepted" if cp.part("reservations").cancel(rid) else "Rejected"}


def _valid(e):
    return isinstance(e, list) and len(e) == 5 and isinstance(e[_ID], int) \
        and isinstance(e[_CONN], int) and isinstance(e[_EXP], int) \
        and isinstance(e[_TAG], str) and (e[_PARENT] is None or isinstance(e[_PARENT], str))


def _match(e, tag, parent):
    # §5.13: the idTag itself, or a tag of the reservation's group (parentIdTag).
    return tag == e[_TAG] or (e[_PARENT] is not None and parent == e[_PARENT])


class Part:
    """The reservations of the charge point (cp.part("reservations"))."""

    def __init__(self, cp):
        self.cp = cp
        self.path = cp.state + "/resv.json"
        self.r = []
        self._seen = 0          # a Unix time known to have passed before the last write
        self._ticks = 0
        self._picked = False    # free_connector() chose the connector of a RemoteStart
        raw = store.read(self.path)
        if raw:
            try:
                d = json.loads(raw)
                t = d.get("t")
                self._seen = t if isinstance(t, int) else 0
                for e in d["r"]:
                    if _valid(e) and 0 <= e[_CONN] <= cp.connectors:
                        self.r.append(e)
            except (ValueError, KeyError, TypeError, AttributeError):
                cp.log("reservations: %s unreadable; none kept" % self.path)
        if self.r:
            cp.log("reservations: %d kept from flash" % len(self.r))

    # -- queries --------------------------------------------------------------------------
    def _now(self):
        # Unix time, or a lower bound of it while the clock is unset (0: nothing known).
        cp = self.cp
        t = cp.clock.now()
        if t:
            return t
        low = max(self._seen, cp.timebase.last)
        return low + int(cp.board.seconds()) if low >= EARLIEST else 0

    def _find(self, rid):
        for e in self.r:
            if e[_ID] == rid:
                return e
        return None

    def _on(self, n):
        # The reservation of connector n (n > 0), or None.
        for e in self.r:
            if e[_CONN] == n:
                return e
        return None

    def _zero(self):
        z = 0
        for e in self.r:
            if not e[_CONN]:
                z += 1
        return z

    def _free(self, skip=0, strict=False):
        # Connectors another tag could start on now (a connector-0 reservation may need
        # them); strict: also without a cable in or a session finishing.
        cp = self.cp
        f = 0
        for i in range(1, cp.connectors + 1):
            if i == skip or cp.tx.active[i] is not None or cp.sessions.authorized[i] \
                    is not None or cp.faulted(i) or cp.unavailable(i) or self._on(i):
                continue
            if strict and C.PREPARING <= cp.status[i] <= C.FINISHING:
                continue
            f += 1
        return f

    def reserved(self, n):
        """True when connector n (> 0) shows Reserved: its own reservation, or it is one of
        the last free connectors kept for connector-0 reservations."""
        if self._on(n):
            return True
        z = self._zero()
        if not z:
            return False
        cp = self.cp
        if cp.tx.active[n] is not None or cp.sessions.authorized[n] is not None:
            return False
        return self._free() <= z

    def admit(self, n, tag, parent, early=False):
        """May `tag` (of group `parent`) start on connector n?  The reservationId it uses,
        None (no reservation), or False (refused).  early: the parent is not known yet
        (refused only where no parent could change that)."""
        e = self._on(n)
        if e is not None:
            if _match(e, tag, parent):
                return e[_ID]
            if early and e[_PARENT] is not None:
                return None
            return self._refuse(n, tag, e[_ID])
        z = 0
        maybe = False
        for e in self.r:
            if not e[_CONN]:
                if _match(e, tag, parent):
                    return e[_ID]
                z += 1
                maybe = maybe or (early and e[_PARENT] is not None)
        if z and not maybe and self._free(n) < z:
            return self._refuse(n, tag, None)
        return None

    def _refuse(self, n, tag, rid):
        self.cp.log("reservations: %s refused on connector %d (%s)"
                    % (tag, n, "reservation %d" % rid if rid is not None
                       else "kept free for connector-0 reservations"))
        return False

    def list(self):
        """The reservations in force: dicts with the ReserveNow fields (expiryDate ISO)."""
        return [{"reservationId": e[_ID], "connectorId": e[_CONN], "expiryDate": iso(e[_EXP]),
                 "idTag": e[_TAG], "parentIdTag": e[_PARENT]} for e in self.r]

    # -- changes --------------------------------------------------------------------------
    def _status(self, n):
        cp = self.cp
        if n:
            if cp.faulted(n):
                return "Faulted"
            if cp.unavailable(n):
                return "Unavailable"
            if cp.tx.active[n] is not None or cp.sessions.authorized[n] is not None \
                    or C.PREPARING <= cp.status[n] <= C.FINISHING or self._on(n) \
                    or self._free(n) < self._zero():
                return "Occupied"
            return "Accepted"
        if cp.faults[0] is not None:
            return "Faulted"
        if cp.inoperative[0]:
            return "Unavailable"
        if self._free(0, True) > self._zero():
            return "Accepted"
        f = u = 0
        for i in range(1, cp.connectors + 1):
            if cp.faulted(i):
                f += 1
            elif cp.unavailable(i):
                u += 1
        if f == cp.connectors:
            return "Faulted"
        return "Unavailable" if f + u == cp.connectors else "Occupied"

    def reserve(self, rid, n, t, tag, parent):
        """ReserveNow: the status to answer.  The same reservationId replaces the old
        reservation (which stays if the new one cannot be made)."""
        cp = self.cp
        if n < 0 or n > cp.connectors \
                or (not n and not cp.cfg.get("ReserveConnectorZeroSupported")):
            return "Rejected"
        now = self._now()
        if now and t <= now:
            cp.log("reservations: %d expires in the past: Rejected" % rid)
            return "Rejected"
        old = self._find(rid)
        if old:
            self.r.remove(old)
        st = self._status(n)
        if st != "Accepted":
            if old:
                self.r.append(old)
            return st
        self.r.append([rid, n, t, tag, parent])
        cp.log("reservations: %d %s connector %d for %s until %s"
               % (rid, "replaced:" if old else "on", n, tag, iso(t)))
        self._changed()
        return st

    def cancel(self, rid):
        e = self._find(rid)
        if e is None:
            return False
        self.r.remove(e)
        self.cp.log("reservations: %d cancelled" % rid)
        self._changed()
        return True

    def used(self, rid):
        """A transaction started with reservation rid: it ends (§5.13)."""
        e = self._find(rid)
        if e is not None:
            self.r.remove(e)
            self.cp.log("reservations: %d used" % rid)
            self._changed()

    def _changed(self):
        cp = self.cp
        if self.r:
            self._seen = cp.clock.now() or self._seen
            store.atomic_write(self.path, json.dumps({"t": self._seen, "r": self.r}))
        else:
            store.remove(self.path)     # the next boot does not import this module
        self.refresh()

    def refresh(self):
        """Show Reserved / Available / Preparing on the idle connectors as they are now."""
        cp = self.cp
        s = cp.sessions
        for i in range(1, cp.connectors + 1):
            st = cp.status[i]
            if cp.tx.active[i] is None and s.authorized[i] is None and not cp.faulted(i) \
                    and (st == C.AVAILABLE or st == C.PREPARING or st == C.RESERVED):
                want = s._available_state(i)
                if want != st:
                    cp.set_status(i, want)

    # -- from sessions.tick -----------------------------------------------------------------
    def tick(self, now=False):
        """Ends reservations past their expiryDate, or whose connector (the charge point
        for connector 0) is Faulted or Unavailable; keeps the statuses up to date.
        now: at once (at boot: expired while off, as far as known; Reserved again)."""
        self._ticks += 1
        if not self.r or (self._ticks % _CHECK_EVERY and not now):
            if now:
                self.refresh()
            return
        cp = self.cp
        t = self._now()
        gone = False
        i = len(self.r)
        while i:
            i -= 1
            e = self.r[i]
            n = e[_CONN]
            why = "expired" if t and t >= e[_EXP] else \
                "ended: connector faulted" if cp.faulted(n) else \
                "ended: connector unavailable" if cp.unavailable(n) else None
            if why:
                self.r.pop(i)
                gone = True
                cp.log("reservations: %d %s" % (e[_ID], why))
        if gone:
            self._changed()
        else:
            self.refresh()

    # -- RemoteStartTransaction (chargepoint hooks) ----------------------------------------
    def free_connector(self):
        """The connector for a RemoteStartTransaction without connectorId: the first idle
        one without a reservation, else the first reserved one (remote_connector() then
        picks the tag's own reserved connector)."""
        cp = self.cp
        first = None
        for i in range(1, cp.connectors + 1):
            if cp.sessions.busy(i) or cp.unavailable(i) or cp.status[i] == C.FAULTED:
                continue
            if not self._on(i):
                first = i
                break
            if first is None:
                first = i
        self._picked = first is not None
        return first

    def remote_connector(self, n, tag):
        """Where RemoteStartTransaction for `tag` starts: its reserved connector when the
        central system left the choice to the charge point."""
        picked = self._picked
        self._picked = False
        if picked:
            cp = self.cp
            for e in self.r:
                m = e[_CONN]
                if m and e[_TAG] == tag and not cp.sessions.busy(m) and not cp.faulted(m) \
                        and not cp.unavailable(m):
                    return m
        return n
