"""Charging sessions: authorisation rules and the flow of plug, card, start and stop.

Board events (plug, unplug, card, stop button) and central-system requests (remote
start/stop) arrive here; this module applies the Core rules (LocalPreAuthorize,
LocalAuthorizeOffline, AllowOfflineTxForUnknownId, the authorisation cache, parent
tags, ConnectionTimeOut, StopTransactionOnEVSideDisconnect, StopTransactionOnInvalidId)
and drives connector states, the relay and the transactions.
"""
from time import ticks_ms, ticks_diff, ticks_add
from ocpp16 import states as C
from ocpp16 import meter as mt

# While a transaction runs, registers are saved at least this often, so a power cut loses
# at most this much metering (one small file write per minute).
_SAVE_MS = 60000


class Sessions:
    def __init__(self, cp):
        self.cp = cp
        n = cp.connectors + 1
        # The cable may already be plugged in at boot (after a reset or power cut).
        self.plugged = [i > 0 and cp.board.is_plugged(i) for i in range(n)]
        self.authorized = [None] * n     # [tag, parent] authorised, waiting for the plug
        self._auth_deadline = [0] * n
        self._next_sample = [0] * n      # ticks_ms of the next periodic sample per connector
        self._next_aligned = 0           # unix time of the next clock-aligned boundary
        self._saved_at = ticks_ms()
        self._early = []                 # [tag, done, deadline]: waiting for registration
        self._list_looked = False        # the local list file was looked for (_cached)

    # -- helpers --------------------------------------------------------------------------
    def _tx(self, n):
        return self.cp.tx.active[n]

    def busy(self, n):
        return self._tx(n) is not None or self.authorized[n] is not None

    def _available_state(self, n):
        if self.cp.unavailable(n):
            return C.UNAVAILABLE
        rv = self.cp.part("reservations", False)
        if rv and rv.reserved(n):
            return C.RESERVED
        return C.PREPARING if self.plugged[n] else C.AVAILABLE

    def _offer(self):
        # The offered-current component, made once a pilot, a contact or a profile is in
        # play: a charger with none of them never imports offer.py.
        cp = self.cp
        off = cp.part("offer", False)
        if off is None and (hasattr(cp.board, "offer") or hasattr(cp.board, "local_limited")
                            or cp.part("smartcharging", False)):
            off = cp.part("offer")
        return off

    def _idle(self, n):
        self.authorized[n] = None
        self.cp.board.relay(n, False)
        self.cp.set_status(n, self._available_state(n))

    # -- authorisation --------------------------------------------------------------------
    def authorize(self, tag, done):
        """Decide whether `tag` may charge; calls done(status, parent) (maybe later)."""
        cp = self.cp
        cfg = cp.cfg
        status, parent = self._cached(tag)
        if status == "Accepted" and cfg.get("LocalPreAuthorize") and cp.rpc.online \
                and cp.registered:
            done("Accepted", parent)
            return
        if not (cp.rpc.online and cp.registered) and cp.link_state != C.LINK_DOWN:
            # Connecting, or the boot not answered Accepted yet: the central system may
            # decide a moment later.  Wait for it (bounded, see tick), don't refuse now.
            self._early.append([tag, done, ticks_add(ticks_ms(),
                                                     cfg.get("MessageTimeout") * 1000)])
            return
        self._ask(tag, done)

    def _ask(self, tag, done):
        # Authorize.req when the central system can answer, else the offline rules.
        cp = self.cp
        if cp.rpc.online and cp.registered:
            cp.request(b"Authorize", _encode_authorize, tag,
                       lambda out, p: self._authorized(tag, out, p, done))
            return
        self._offline_decision(tag, done)

    def _cached(self, tag, cache=True):
        # (status, parent) known locally: the Local Authorization List first (it has
        # priority, §3.5.3), then the cache unless cache=False.  locallist is not even
        # imported while no list file was ever stored.
        cp = self.cp
        if cp.cfg.get("LocalAuthListEnabled"):
            ll = cp.part("locallist", False)
            if ll is None and not self._list_looked:
                # Once per boot: a list stored before it is on flash; a later one comes
                # with SendLocalList, which makes the component.  (Not a stat per
                # authorisation and per Start/Stop answer.)
                self._list_looked = True
                from ocpp16 import store
                if store.exists(cp.state + "/locallist.bin"):
                    ll = cp.part("locallist")
            if ll is not None:
                status, parent = ll.lookup(tag, cp.clock.now())
                if status is not None:
                    return status, parent
        if cache and cp.cfg.get("AuthorizationCacheEnabled"):
            return cp.cache.lookup(tag, cp.clock.now())
        return None, None

    def listed(self, tag, info):
        """An idTagInfo the central system sent about `tag` (Authorize, Start/Stop
        answers): True when the tag is in the Local Authorization List (the answer then
        is not cached, §3.5.1).  A status other than the list's is reported as a
        StatusNotification of connector 0 with errorCode LocalListConflict, kept until
        the list is next updated (locallist.py)."""
        mine = self._cached(tag, False)[0]
        if mine is None:
            return False
        theirs = info.get("status")
        if theirs != mine:
            cp = self.cp
            cp.log("session: %s is %s in the local list, %s for the central system: "
                   "LocalListConflict" % (tag, mine, theirs))
            cp.set_status(0, cp.status[0], C.LOCAL_LIST_CONFLICT)
        return True

    def _early_tick(self, now):
        # Authorisations that wait for the registration: asked once the boot is Accepted,
        # decided offline when the link is really down or the wait is over.
        cp = self.cp
        ready = cp.rpc.online and cp.registered
        for e in self._early:
            if ready or cp.link_state == C.LINK_DOWN or ticks_diff(now, e[2]) >= 0:
                self._early.remove(e)
                if not ready:
                    cp.log("session: %s decided offline (not registered in time)" % e[0])
                self._ask(e[0], e[1])
                return      # the list changed: the rest go at the next tick

    def _offline_decision(self, tag, done):
        cfg = self.cp.cfg
        status, parent = self._cached(tag)
        if status is not None:
            done(status if cfg.get("LocalAuthorizeOffline") else "Invalid", parent)
        elif cfg.get("AllowOfflineTxForUnknownId"):
            done("Accepted", None)
        else:
            done("Invalid", None)

    def _authorized(self, tag, out, payload, done):
        cp = self.cp
        from ocpp16 import rpc
        if out == rpc.RESULT and isinstance(payload.get("idTagInfo"), dict):
            info = payload["idTagInfo"]
            # A tag of the Local Authorization List is never cached (§3.5.1).
            if not self.listed(tag, info) and cp.cfg.get("AuthorizationCacheEnabled"):
                cp.cache.update(tag, info)
            done(info.get("status", "Invalid"), info.get("parentIdTag"))
            return
        # No answer: the offline rules decide.
        self._offline_decision(tag, done)

    # -- board events ---------------------------------------------------------------------
    def plug(self, n, yes):
        cp = self.cp
        self.plugged[n] = yes
        tx = self._tx(n)
        if yes:
            if tx is None and self.authorized[n] is not None:
                tag, parent = self.authorized[n]
                self.start(n, tag, parent)
            elif tx is None:
                cp.set_status(n, self._available_state(n))
            else:
                self._charging_state(n)
            return
        # Unplugged
        if tx is not None:
            if cp.cfg.get("StopTransactionOnEVSideDisconnect"):
                self.stop(n, "EVDisconnected")     # Finishing, then Available (see tick)
                if cp.cfg.get("UnlockConnectorOnEVSideDisconnect") and hasattr(cp.board, "unlock"):
                    cp.board.unlock(n)
            else:
                cp.board.relay(n, False)
                cp.set_status(n, C.SUSPENDED_EV, info="EV side disconnected")
        else:
            self._idle(n)

    def card(self, n, tag):
        cp = self.cp
        tx = self._tx(n)
        if tx is not None:
            if tag == tx["tag"]:
                self.stop(n, "Local", tag)   # the same tag stops without Authorize
                return
            # Another tag may stop it if it shares the parent (asks Authorize).
            def done(status, parent):
                if status == "Accepted" and parent and parent == tx.get("parent") \
                        and self._tx(n) is tx:
                    self.stop(n, "Local", tag)
                else:
                    cp.log("session: card %s may not stop connector %d" % (tag, n))
            self.authorize(tag, done)
            return
        if cp.unavailable(n) or cp.status[n] == C.FAULTED:
            cp.log("session: connector %d cannot charge now" % n)
            return
        rv = cp.part("reservations", False)
        if rv and rv.admit(n, tag, None, True) is False:
            return      # reserved for another tag, no parent to learn: no Authorize
        def done(status, parent):
            if status != "Accepted":
                cp.log("session: card %s refused (%s)" % (tag, status))
                return
            if self._tx(n) is not None:
                return
            if self.plugged[n]:
                self.start(n, tag, parent)
            else:
                self._wait_for_plug(n, tag, parent)
        self.authorize(tag, done)

    def _wait_for_plug(self, n, tag, parent):
        if self.cp.faulted(n):
            self.cp.log("session: connector %d is faulted; %s not kept" % (n, tag))
            return
        rv = self.cp.part("reservations", False)
        if rv and rv.admit(n, tag, parent) is False:
            return      # reserved for another tag
        self.authorized[n] = [tag, parent]
        self._auth_deadline[n] = ticks_add(ticks_ms(), self.cp.cfg.get("ConnectionTimeOut") * 1000)
        self.cp.set_status(n, C.PREPARING)

    # -- start / stop ---------------------------------------------------------------------
    def start(self, n, tag, parent=None, reservation=None):
        cp = self.cp
        self.authorized[n] = None
        if cp.faulted(n):   # the fault came while the tag was being authorised
            cp.log("session: connector %d is faulted; no transaction for %s" % (n, tag))
            return
        rv = cp.part("reservations", False)
        if rv and reservation is None:
            reservation = rv.admit(n, tag, parent)   # its reservationId, None, False
            if reservation is False:
                return self._idle(n)                 # reserved for another tag
        # A socket locks the cable before energy may flow.  If it cannot, no transaction
        # begins (no StartTransaction, relay open) and the connector is Faulted with
        # ConnectorLockFailure (TC_024).  Like any board fault it lasts until the board
        # reports it gone (clear_fault): the simulator does so when the cable is
        # removed; until then no new transaction starts on that connector.
        b = cp.board
        if hasattr(b, "lock") and not b.lock(n):
            cp.log("session: connector %d cable lock failed; no transaction for %s" % (n, tag))
            cp.fault(n, "ConnectorLockFailure")
            return
        cp.tx.begin(n, tag, parent, reservation)
        if reservation is not None and rv and self._tx(n) is not None:
            rv.used(reservation)                     # the reservation ends (§5.13)
        sc = cp.part("smartcharging", False)
        if sc and self._tx(n) is not None:
            sc.tx_started(n)                         # a Relative profile starts now
        self._next_sample[n] = ticks_add(ticks_ms(), cp.cfg.get("MeterValueSampleInterval") * 1000)
        self._charging_state(n)

    def _charging_state(self, n):
        cp = self.cp
        tx = self._tx(n)
        allowed = tx is not None and (tx.get("auth") == "Accepted" or "cap" in tx) \
            and self.plugged[n] and not cp.unavailable(n) and not cp.faulted(n)
        # The offered current (offer.py): below 6 A the session pauses.  A board with a
        # pilot keeps the relay as the session allows and offers the car no current;
        # without a pilot, opening the relay is the only way to stop the energy.
        off = self._offer() if tx is not None else cp.part("offer", False)
        ok = off.session(n, allowed) if off else allowed
        cp.board.relay(n, allowed if hasattr(cp.board, "offer") else ok)
        if tx is None:
            return
        if not self.plugged[n]:
            cp.set_status(n, C.SUSPENDED_EV, info="EV side disconnected")
        elif not ok:
            cp.set_status(n, C.SUSPENDED_EVSE)
        else:
            cp.set_status(n, C.CHARGING)

    def stop(self, n, reason, tag=None, meter_stop=None):
        """Stop connector n's transaction (relay opens first); False if none ran."""
        cp = self.cp
        if self._tx(n) is None:
            return False
        cp.board.relay(n, False)
        cp.tx.end(n, reason, tag, meter_stop)
        sc = cp.part("smartcharging", False)
        if sc:
            sc.tx_ended(n)                           # its TxProfile ends with it
        off = cp.part("offer", False)
        if off:
            off.session(n, False)                    # no current; the others' share grows
        # Finishing in any case (TC_005, TC_012, TC_016); without the cable it lasts only
        # until the central system has seen it (tick).
        cp.set_status(n, C.FINISHING)
        return True

    def invalidated(self, n, status):
        """StartTransaction.conf said the tag is not Accepted."""
        cp = self.cp
        tx = self._tx(n)
        if tx is None:
            return
        tx["auth"] = status
        if cp.cfg.get("StopTransactionOnInvalidId"):
            self.stop(n, "DeAuthorized")
            return
        allowance = cp.cfg.get("MaxEnergyOnInvalidId")
        if allowance:
            # Energy may still flow up to MaxEnergyOnInvalidId Wh, then it stops.
            tx["cap"] = cp.meter.register(n) + allowance
            return
        self._charging_state(n)    # energy stops; the transaction goes on (SuspendedEVSE)

    # -- timers ---------------------------------------------------------------------------
    def tick(self):
        """Called by the charge point's ticker: timeouts and meter sampling."""
        cp = self.cp
        now = ticks_ms()
        interval = cp.cfg.get("MeterValueSampleInterval")
        if self._early:
            self._early_tick(now)
        rv = cp.part("reservations", False)
        if rv:
            rv.tick()       # expiry, and the Reserved statuses
        off = cp.part("offer", False)
        if off:
            off.tick()      # the offered current: limits, contacts, period boundaries
        for n in range(1, cp.connectors + 1):
            if cp.status[n] == C.FINISHING and not self.plugged[n] and \
                    (cp.reported[n] == C.FINISHING or not cp.rpc.online):
                cp.set_status(n, self._available_state(n))   # the cable is gone
            if self.authorized[n] is not None and ticks_diff(now, self._auth_deadline[n]) >= 0:
                cp.log("session: connector %d not plugged within ConnectionTimeOut" % n)
                self._idle(n)
            tx = self._tx(n)
            if tx is not None and "cap" in tx and cp.meter.register(n) >= tx["cap"]:
                cp.log("session: MaxEnergyOnInvalidId reached on connector %d" % n)
                del tx["cap"]
                self._charging_state(n)
            if tx is not None and hasattr(cp.board, "ev_suspended"):
                # A board that can tell (pilot state, current) reports an EV that paused.
                paused = cp.board.ev_suspended(n)
                if paused and cp.status[n] == C.CHARGING:
                    cp.set_status(n, C.SUSPENDED_EV)
                elif not paused and cp.status[n] == C.SUSPENDED_EV and self.plugged[n]:
                    self._charging_state(n)
            if interval and tx is not None and ticks_diff(now, self._next_sample[n]) >= 0:
                self._next_sample[n] = ticks_add(self._next_sample[n], interval * 1000)
                if ticks_diff(now, self._next_sample[n]) >= 0:  # fell behind: realign
                    self._next_sample[n] = ticks_add(now, interval * 1000)
                cp.tx.sample(n, mt.PERIODIC)
        if ticks_diff(now, self._saved_at) >= _SAVE_MS:
            self._saved_at = now
            if any(tx is not None for tx in cp.tx.active):
                cp.meter.save(cp.tx._stamp())
        aligned = cp.cfg.get("ClockAlignedDataInterval")
        t = cp.clock.now()
        if aligned and t:
            if not self._next_aligned or self._next_aligned - t > aligned:
                self._next_aligned = (t // aligned + 1) * aligned
            elif t >= self._next_aligned:
                self._next_aligned = (t // aligned + 1) * aligned
                for n in range(1, cp.connectors + 1):
                    cp.tx.sample(n, mt.CLOCK, t - t % aligned)


def _encode_authorize(w, tag):
    w.raw(b'{"idTag":')
    w.str(tag)
    w.raw(b"}")
