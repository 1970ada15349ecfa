"""SmartCharging: the charging profiles of the charger, a component
(cp.part("smartcharging")); the rules and the handlers are in chargingprofile.py, the
composite in schedule.py.

Made at the first SetChargingProfile / RemoteStartTransaction with a chargingProfile, or
at boot when profiles are on flash; a charger that never got one never imports it.

Flash: the ChargePointMax and TxDefault profiles, one JSON line each, in one file
replaced atomically (store.atomic_write) at every change: a power cut leaves the old set
or the new one, whole; removed when none is left.  TxProfiles are kept in RAM only: no
transaction outlives a reboot, nor its TxProfile.
"""
from array import array
import json
from ocpp16 import store
from ocpp16 import schedule as S
from ocpp16.wallclock import VALID_FROM

FILE = "chargingprofiles.json"     # in the state directory (chargepoint checks it at boot)
_PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")


def _valid(e):
    if not (isinstance(e, list) and len(e) == S.PER + 1 and isinstance(e[S.PER], list)):
        return False
    for i in (S.ID, S.CONN, S.PURP, S.STACK, S.KIND, S.REC, S.UNIT):
        if not isinstance(e[i], int):
            return False
    for i in (S.FROM, S.TO, S.START, S.DUR, S.MIN):
        if e[i] is not None and not isinstance(e[i], int):
            return False
    per = e[S.PER]
    return e[S.PURP] != S.TXP and len(per) >= 2 and not len(per) % 2 \
        and (e[S.KIND] == S.RELATIVE or e[S.START] is not None) \
        and (e[S.KIND] != S.RECURRING or e[S.REC] > 0)


def _shift(e, d):
    for i in (S.FROM, S.TO, S.START):
        if e[i] is not None:
            e[i] += d


class Part:
    """The charging profiles of the charger (cp.part("smartcharging"))."""

    def __init__(self, cp):
        self.cp = cp
        self.path = cp.state + "/" + FILE
        self.p = []                             # profiles (schedule.py layout)
        self._tag = [None] * (cp.connectors + 1)  # idTag of a RemoteStart's TxProfile
        store.remove(self.path + ".tmp")        # a write a power cut broke off
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        bad = 0
        with f:
            for line in f:                      # one profile a line: never the whole file
                try:
                    e = json.loads(line)
                    ok = _valid(e) and 0 <= e[S.CONN] <= cp.connectors
                    if ok:
                        _shift(e, -S.EPOCH)         # Unix s on flash (schedule.EPOCH)
                        e[S.PER] = array("i", e[S.PER])
                        e.append(None)
                        self.p.append(e)
                except (ValueError, TypeError, OverflowError):
                    ok = False
                bad += not ok
        cp.log("smartcharging: %d profile(s) kept from flash%s"
               % (len(self.p), ", %d unreadable" % bad if bad else ""))
        self._changed()

    # -- queries --------------------------------------------------------------------------
    def profiles(self, n, known):
        """The profiles that may apply to connector n (0: the ChargePointMaxProfiles);
        known=False (clock unset): only Relative ones without validFrom/validTo."""
        tx = self.cp.tx.active[n] if n else None
        local = tx["tx"] if tx is not None else None
        out = []
        for q in self.p:
            u = q[S.PURP]
            if u == S.CPMAX:
                ok = True
            elif not n:
                ok = False
            elif u == S.TXDEF:
                ok = q[S.CONN] == 0 or q[S.CONN] == n
            else:
                ok = q[S.CONN] == n and local is not None and q[S.TX] == local
            if ok and (known or (q[S.KIND] == S.RELATIVE and q[S.FROM] is None
                                 and q[S.TO] is None)):
                out.append(q)
        return out

    def rel(self, n, now):
        """When Relative profiles of connector n start: its transaction's start, else
        `now`; on the timeline of `now` (board.seconds() when now is None)."""
        cp = self.cp
        up = cp.board.seconds()
        t = up if now is None else now
        tx = cp.tx.active[n] if n else None
        if tx is None:
            return t
        st = tx["st"]                   # [Unix time or 0, boot, uptime] at the start
        if st[0]:
            return st[0] if now is not None else t
        return t - (up - st[2]) if st[1] == cp.timebase.boot else t

    def now(self):
        """Unix time: the OCPP clock, else the board's wall clock when it reads a
        plausible time (an RTC that ran through the reboot, NTP), else None."""
        t = self.cp.clock.now()
        if t is None:
            fn = getattr(self.cp.board, "wall", None)
            t = fn() if fn else None
            if t is not None and t < VALID_FROM:
                t = None
        return t

    def limit(self, n, now):
        """(tenths of A or None, until): the composite limit of connector n at `now` (Unix
        s, or None: clock unset, see above) and when it next changes (or None; Unix s,
        or uptime while the clock is unset)."""
        if not self.p:
            return None, None
        if now is None:
            now = self.now()
        known = now is not None
        profs = self.profiles(n, known)
        if not profs:
            return None, None
        if known:               # (clock unset: uptime, and only Relative profiles)
            t = now - S.EPOCH
            rel = self.rel(n, now) - S.EPOCH
        else:
            t = self.cp.board.seconds()
            rel = self.rel(n, None)
        v, until = S.limit(profs, t, rel, self.cp.cfg.get("NominalVoltage"))
        if known and until is not None:
            until += S.EPOCH
        return (v >> 2 if v >= 0 else None), until

    # -- changes --------------------------------------------------------------------------
    def set(self, n, prof):
        """SetChargingProfile on connector n: the status to answer."""
        cp = self.cp
        if isinstance(prof, str):
            return self._no(prof)
        u = prof[S.PURP]
        if not 0 <= n <= cp.connectors:
            return self._no("no connector %d" % n)
        if u == S.CPMAX and n:
            return self._no("ChargePointMaxProfile on connector 0 only")
        txid = prof[S.TX]
        if u == S.TXP:
            tx = cp.tx.active[n] if n else None
            if tx is None:
                return self._no("TxProfile without a transaction on connector %d" % n)
            if txid is not None and cp.journal.txid(tx["tx"]) != txid:
                return self._no("transactionId %d is not connector %d's" % (txid, n))
            prof[S.TX] = tx["tx"]
        elif txid is not None:
            return self._no("transactionId in a %s" % _PURPOSES[u])
        prof[S.CONN] = n
        return "Accepted" if self._put(prof) else "Rejected"

    def pending(self, n, tag, prof):
        """RemoteStartTransaction on connector n for `tag` with a TxProfile: kept for the
        connector's next transaction.  False: beyond the limits (Rejected)."""
        prof[S.CONN] = n
        prof[S.TX] = -1
        if not self._put(prof):
            return False
        self._tag[n] = tag
        return True

    def _no(self, why):
        self.cp.log("smartcharging: Rejected (%s)" % why)
        return "Rejected"

    def _put(self, prof):
        cfg = self.cp.cfg
        if prof[S.STACK] > cfg.get("ChargeProfileMaxStackLevel"):
            self._no("stackLevel %d above ChargeProfileMaxStackLevel" % prof[S.STACK])
            return False
        act = self.cp.tx.active
        keep = []
        gone = prof[S.PURP] != S.TXP
        for q in self.p:
            if q[S.ID] == prof[S.ID] or (q[S.CONN] == prof[S.CONN] and q[S.PURP] == prof[S.PURP]
                                         and q[S.STACK] == prof[S.STACK] and q[S.TX] == prof[S.TX]) \
                    or (q[S.PURP] == S.TXP and q[S.TX] != -1
                        and (act[q[S.CONN]] is None or act[q[S.CONN]]["tx"] != q[S.TX])) \
                    or (prof[S.TX] == -1 and q[S.TX] == -1 and q[S.CONN] == prof[S.CONN]):
                gone = gone or q[S.PURP] != S.TXP   # (a TxProfile whose transaction ended)
                continue
            keep.append(q)
        if len(keep) >= cfg.get("MaxChargingProfilesInstalled"):
            self._no("MaxChargingProfilesInstalled reached")
            return False
        keep.append(prof)
        if not self._commit(keep, gone):
            return False
        self.cp.log("smartcharging: profile %d (%s, stackLevel %d) on connector %d"
                    % (prof[S.ID], _PURPOSES[prof[S.PURP]], prof[S.STACK], prof[S.CONN]))
        return True

    def _commit(self, new, save):
        # The new set in RAM and (when a stored profile changed) on flash, or neither.
        old = self.p
        self.p = new
        if save:
            try:
                if any(q[S.PURP] != S.TXP for q in new):
                    store.atomic_write(self.path, self._lines())
                else:
                    store.remove(self.path)     # the next boot does not import this module
            except OSError as e:
                self.p = old
                self.cp.log("smartcharging: profiles not stored (%r): unchanged" % e)
                return False
        self._changed()
        return True

    def _lines(self):
        for q in self.p:
            if q[S.PURP] != S.TXP:
                e = q[:S.PER]
                _shift(e, S.EPOCH)
                e.append(list(q[S.PER]))
                yield json.dumps(e).encode()
                yield b"\n"

    def clear(self, pid, n, purp, stack):
        """ClearChargingProfile: True when a profile was removed."""
        keep = []
        save = False
        for q in self.p:
            if (q[S.ID] == pid) if pid is not None else \
                    ((n is None or q[S.CONN] == n) and (purp is None or q[S.PURP] == purp)
                     and (stack is None or q[S.STACK] == stack)):
                save = save or q[S.PURP] != S.TXP
                self.cp.log("smartcharging: profile %d cleared" % q[S.ID])
                continue
            keep.append(q)
        if len(keep) == len(self.p):
            return False
        return self._commit(keep, save)

    def _changed(self):
        fn = getattr(self.cp, "limits_changed", None)
        if fn:
            fn()                # the offered current follows (offer.py)

    # -- sessions hooks -------------------------------------------------------------------
    def tx_started(self, n):
        """A transaction began on connector n: a RemoteStart's TxProfile becomes its
        own (same idTag), or is dropped; Relative profiles count from now."""
        tx = self.cp.tx.active[n]
        for q in self.p:
            if q[S.PURP] == S.TXP and q[S.CONN] == n and q[S.TX] == -1:
                if tx is not None and tx["tag"] == self._tag[n]:
                    q[S.TX] = tx["tx"]
                    self.cp.log("smartcharging: profile %d applies to local #%d"
                                % (q[S.ID], tx["tx"]))
                else:
                    self.p.remove(q)
                    self.cp.log("smartcharging: profile %d dropped: not its transaction"
                                % q[S.ID])
                break           # at most one waits per connector
        self._tag[n] = None
        self._changed()

    def tx_ended(self, n):
        """Connector n's transaction ended: its TxProfiles end with it."""
        keep = [q for q in self.p if q[S.PURP] != S.TXP or q[S.CONN] != n or q[S.TX] == -1]
        if len(keep) != len(self.p):
            self.p = keep
            self.cp.log("smartcharging: TxProfile of connector %d ended" % n)
            self._changed()
