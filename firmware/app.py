"""The charger's application: connects board events to the charge point.

The board reports plug, card, stop-button and fault events here.  The OCPP rules (who
may charge, when the relay closes, which reason a stop carries) live in lib/ocpp16; this
module is where a charger maker adds product policy: LEDs, display, free-vend mode.
"""
from time import ticks_ms, ticks_diff
from ocpp16.transactions import REASONS


class App:
    def __init__(self, cp, board, log=print):
        self.cp = cp
        self.board = board
        self.log = log
        cp.on_storage = self.storage
        # While the flash stays short every meter sample would log a line: say it at most
        # once per quiet_ms (the counts since boot in the line tell what happened between).
        self.quiet_ms = 60000
        self._said = {}                     # event -> ticks_ms of its last line

    # -- board events ---------------------------------------------------------------------
    def plugged(self, n, yes):
        self.cp.plugged(n, yes)

    def swiped(self, n, tag):
        self.cp.card(n, tag)

    def stop_pressed(self, n, reason):
        if reason not in REASONS:
            self.log("app: unknown stop reason %r; one of %s" % (reason, ", ".join(REASONS)))
            return
        if reason == "PowerLoss":
            # A board with backup power reports the mains failing: stop and persist now.
            pass
        code = self.cp.stop_transaction(n, reason)
        self.log("app: stop on connector %d: %s" % (n, code))

    def fault(self, n, code, info=None):
        """A fault input of connector n (0: the whole charger) became active; code is
        an OCPP ChargePointErrorCode (ValueError otherwise).  The relay opens and the
        status is Faulted; a running transaction goes on without energy.  Product
        policy may stop it here instead: self.cp.stop_transaction(n, "Other")."""
        self.cp.fault(n, code, info)

    def clear_fault(self, n):
        """The fault of connector n is gone: back to the state it would be in now."""
        self.cp.clear_fault(n)

    # -- charge point events --------------------------------------------------------------
    def storage(self, event, detail):
        """Flash runs short (cp.on_storage): a product would show it (LED, display)."""
        if event == "meter_dropped" or detail == "MeterValues":
            now = ticks_ms()
            last = self._said.get(event)
            if last is not None and ticks_diff(now, last) < self.quiet_ms:
                return
            self._said[event] = now
        # A refused StartTransaction or StopTransaction is always said: it is rare and
        # it matters (no session, or a session's end not recorded).
        s = self.cp.storage()
        if event == "meter_dropped":
            self.log("storage: flash short, %d MeterValues dropped (oldest first); "
                     "%d dropped since boot, %d queued, %s bytes free"
                     % (detail, s["dropped_meter"], s["queued"], s["free"]))
        else:
            self.log("storage: full, %s refused; %d refused since boot, %d queued, "
                     "%s bytes free" % (detail, s["refused"], s["queued"], s["free"]))

    def quit(self):
        self.cp.quit(0)

    # -- main -----------------------------------------------------------------------------
    async def run(self):
        """Run the charger; returns 0 on quit or chargepoint.REBOOT for a restart."""
        self.board.start(self)
        return await self.cp.run()
