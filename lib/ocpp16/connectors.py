"""Connector states, board faults and availability: the part of the charge point that
decides what each connector shows (Available ... Faulted) and whether it may charge.

A base class of chargepoint.ChargePoint (the same object: `self` is the charge point),
in a module of its own to keep each under about 400 lines.  The state lists
(status, error_code, faults, inoperative, ...) are made in ChargePoint.__init__.
"""
import json
from time import ticks_ms
from ocpp16 import store
from ocpp16.states import (AVAILABLE, PREPARING, FINISHING, UNAVAILABLE, FAULTED,
                           ERROR_CODES)


class Connectors:
    def set_status(self, n, state, error=b"NoError", info=None):
        """Set connector n's state; a StatusNotification follows when it changed.

        While connector n (or connector 0) has a board fault (fault()), the reported
        status stays Faulted: the state is only noted, and clear_fault() applies the
        state the connector is in by then."""
        if self.faults[n] is not None or self.faults[0] is not None:
            self._held[n] = state
            return
        self._put_status(n, state, error, info)

    def _put_status(self, n, state, error=b"NoError", info=None):
        if self.status[n] == state and self.error_code[n] == error and self.status_info[n] == info:
            return
        self.status[n] = state
        self.error_code[n] = error
        self.status_info[n] = info
        self.status_time[n] = self.clock.now() or 0
        self._changed_ms[n] = ticks_ms()
        self._wake.set()

    def fault(self, n, error_code, info=None):
        """Board event: connector n (0 = the whole charge point) has a fault.

        error_code: an OCPP 1.6 ChargePointErrorCode other than NoError, as str (e.g.
        "GroundFailure"); anything else raises ValueError.  info: optional text for the
        StatusNotification (at most 50 characters are sent).

        The relay of n (of every connector when n == 0) opens at once and the status
        becomes Faulted with that errorCode (every connector's too when n == 0, unless
        it has a fault of its own).  A running transaction is not stopped: no energy
        flows while the relay is open, and the application may stop it with
        stop_transaction(n, "Other") or "EmergencyStop".  No transaction starts on a
        faulted connector (card, plug-in, RemoteStartTransaction, start_transaction); an
        authorisation waiting for the plug is dropped.  Another fault on the same
        connector replaces the error code.
        """
        if not 0 <= n <= self.connectors:
            raise ValueError("connector")
        code = error_code.encode() if isinstance(error_code, str) else error_code
        if code not in ERROR_CODES:
            raise ValueError("not a ChargePointErrorCode: %s" % error_code)
        code = ERROR_CODES[ERROR_CODES.index(code)]    # the constant, not a copy
        self.faults[n] = (code, info)
        self.log("fault: connector %d %s%s" % (n, code.decode(), " (%s)" % info if info else ""))
        for i in range(self.connectors + 1):
            if n and i != n:
                continue
            if i:
                self.board.relay(i, False)
                self.sessions.authorized[i] = None
            if i == n or self.faults[i] is None:   # a connector's own fault keeps its code
                self._show_fault(i)

    def clear_fault(self, n):
        """Board event: the fault of connector n (0 = the charge point) is gone.

        The connector returns to the state it is in now: Charging when a transaction
        runs, the cable is plugged and charging is allowed (the relay closes again);
        SuspendedEV without the cable, SuspendedEVSE when not allowed; else Finishing,
        Preparing, Available or Unavailable; errorCode NoError.  A connector stays
        Faulted while it or connector 0 still has a fault.
        """
        if not 0 <= n <= self.connectors:
            raise ValueError("connector")
        if self.faults[n] is None:
            return
        self.faults[n] = None
        self.log("fault: connector %d cleared" % n)
        for i in range(self.connectors + 1):
            if n and i != n:
                continue
            if self.faulted(i):
                if i == n:
                    self._show_fault(i)      # connector 0's fault remains
                continue
            if i and self.tx.active[i] is not None:
                self.sessions._charging_state(i)   # relay, Charging/SuspendedEV/EVSE
                continue
            state = self.sessions._available_state(i)
            if state == PREPARING and self._held[i] == FINISHING:
                state = FINISHING    # a transaction stopped during the fault, cable still in
            self._put_status(i, state)

    def faulted(self, n):
        """True while connector n cannot charge because of a board fault (its own or
        connector 0's)."""
        return self.faults[0] is not None or self.faults[n] is not None

    def _show_fault(self, i):
        f = self.faults[i] or self.faults[0]
        if self.status[i] != FAULTED:
            self._held[i] = self.status[i]
        self._put_status(i, FAULTED, f[0], f[1])

    def unavailable(self, n):
        return self.inoperative[0] or self.inoperative[n]

    def free_connector(self):
        rv = self.part("reservations", False)
        if rv:
            return rv.free_connector()          # unreserved connectors first
        for n in range(1, self.connectors + 1):
            if not self.sessions.busy(n) and not self.unavailable(n) \
                    and self.status[n] != FAULTED:
                return n
        return None

    def change_availability(self, n, inoperative):
        if not inoperative:
            # Operative cancels what an Inoperative left scheduled (for every connector
            # when n is 0), before it is applied and persisted at the transaction's end.
            for i in range(self.connectors + 1):
                if n == 0 or i == n:
                    self._avail_pending[i] = None
        busy = [i for i in range(1, self.connectors + 1)
                if (n == 0 or i == n) and self.tx.active[i] is not None]
        if busy and inoperative:
            for i in busy:
                self._avail_pending[i] = True
            self._avail_pending[n] = True
            return "Scheduled"
        self._apply_availability(n, inoperative)
        return "Accepted"

    def _apply_availability(self, n, inoperative):
        self.inoperative[n] = inoperative
        self._avail_pending[n] = None
        store.atomic_write(self.state + "/availability.json", json.dumps(self.inoperative))
        for i in range(self.connectors + 1):
            if n == 0 or i == n or i == 0:
                if self.unavailable(i):
                    if i == 0 or self.tx.active[i] is None:
                        self.set_status(i, UNAVAILABLE)
                elif self.status[i] == UNAVAILABLE:
                    self.set_status(i, PREPARING if i and self.sessions.plugged[i] else AVAILABLE)

    def _apply_pending_availability(self):
        for i in range(self.connectors + 1):
            if self._avail_pending[i] and (i == 0 or self.tx.active[i] is None):
                if i == 0 and any(t is not None for t in self.tx.active):
                    continue
                self._apply_availability(i, True)
