"""The charger's application: connects board events to the charge point.

The board reports plug, card and stop-button events here.  The OCPP rules (who may
charge, when the relay closes, which reason a stop carries) live in lib/ocpp16; this
module is where a charger maker adds product policy: LEDs, display, free-vend mode.
"""
from ocpp16.transactions import REASONS


class App:
    def __init__(self, cp, board, log=print):
        self.cp = cp
        self.board = board
        self.log = log

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

    def quit(self):
        self.cp.quit(0)

    # -- main -----------------------------------------------------------------------------
    async def run(self):
        """Run the charger; returns 0 on quit or chargepoint.REBOOT for a restart."""
        self.board.start(self)
        return await self.cp.run()
