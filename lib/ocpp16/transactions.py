"""Transactions: where StartTransaction, MeterValues and StopTransaction are built.

Each body is written into a scratch buffer and appended to the journal (journal.py)
*before* it is sent; delivery.py sends the journal in order and applies the retry rules.
Bodies are stored without `transactionId`: it is inserted at send time from the journal's
map (local transaction number -> id from StartTransaction.conf), or -1 when the
StartTransaction was given up (errata 3.18).

A running transaction is also recorded in `tx/<connector>` (one small file, written at
start).  If the charger boots and finds one, the power was cut mid-transaction: it is
closed with a StopTransaction (reason PowerLoss, or the reason of a deliberate reboot
noted in `tx/reboot`), meterStop and timestamp from the last saved register.
"""
import json
from micropython import const
from ocpp16 import store, journal
from ocpp16.jsonw import Writer
from ocpp16 import meter as mt

_BODY_SIZE = const(1536)
REASONS = ("Local", "Remote", "EVDisconnected", "HardReset", "SoftReset", "Reboot",
           "PowerLoss", "DeAuthorized", "EmergencyStop", "UnlockCommand", "Other")


class Transactions:
    def __init__(self, cp):
        self.cp = cp
        self.log = cp.log
        self.dir = cp.state + "/tx"
        store.makedirs(self.dir)
        n = cp.connectors + 1
        self.active = [None] * n     # per connector: dict of the running transaction
        self._buf = bytearray(_BODY_SIZE)
        self.w = Writer(self._buf)
        raw = store.read(self.dir + "/seq")
        self._seq = int(raw) if raw else 0

    # -- helpers --------------------------------------------------------------------------
    def _next_local(self):
        self._seq += 1
        store.atomic_write(self.dir + "/seq", str(self._seq))
        return self._seq

    def _stamp(self):
        t, rel = self.cp.timebase.stamp()
        return [t, self.cp.timebase.boot, rel]

    def _write_stamp(self, st):
        tb = self.cp.timebase
        if st[0]:
            tb.write(self.w, st[0], 0)
        else:
            # A relative stamp of its own boot: write it with that boot number.
            w = self.w
            w.raw(b'"~')
            w.int(st[1])
            w.byte(46)
            w.int(st[2])
            w.byte(34)

    def _sample(self, n, st, context, measurands, register=None):
        """One MeterValue object for connector n with a stored stamp."""
        w = self.w
        if st[0]:
            self.cp.meter.write_value(w, n, st[0], context, measurands)
            return
        # Clock unset: write the same object with a relative timestamp.
        start = w.n
        self.cp.meter.write_value(w, n, 1, context, measurands)
        # Replace the placeholder timestamp written for t=1 (1970-01-01T00:00:01Z).
        body = bytes(self._buf[start:w.n])
        fixed = body.replace(b'"1970-01-01T00:00:01Z"', b'"~%d.%d"' % (st[1], st[2]), 1)
        w.n = start
        w.raw(fixed)

    # -- start ----------------------------------------------------------------------------
    def begin(self, n, tag, parent=None, reservation=None):
        """Start a transaction on connector n for `tag`: journals StartTransaction.

        Returns the local transaction number.
        """
        cp = self.cp
        local = self._next_local()
        ms = cp.meter.register(n)
        st = self._stamp()
        tx = {"tx": local, "tag": tag, "parent": parent, "ms": ms, "st": st, "txid": None,
              "auth": "Accepted"}
        store.atomic_write(self.dir + "/%d" % n, json.dumps(tx))
        cp.meter.save(st)
        w = self.w
        w.reset()
        w.raw(b'{"connectorId":')
        w.int(n)
        w.raw(b',"idTag":')
        w.str(tag)
        w.raw(b',"meterStart":')
        w.int(ms)
        if reservation:
            w.raw(b',"reservationId":')
            w.int(reservation)
        w.raw(b',"timestamp":')
        self._write_stamp(st)
        w.raw(b"}")
        cp.journal.append(journal.START, local, memoryview(self._buf)[:w.n])
        self.active[n] = tx
        self.log("tx: started local #%d on connector %d for %s, meterStart %d Wh"
                 % (local, n, tag, ms))
        return local

    # -- samples --------------------------------------------------------------------------
    def sample(self, n, context, at=0):
        """Journal a periodic or clock-aligned MeterValues for connector n (0 = main meter).

        `at`: the clock-aligned boundary (Unix time) the sample belongs to.
        """
        cp = self.cp
        key = "MeterValuesAlignedData" if context == mt.CLOCK else "MeterValuesSampledData"
        measurands = cp.cfg.csl(key)
        if not measurands:
            return
        tx = self.active[n] if n else None
        st = [at, cp.timebase.boot, 0] if at else self._stamp()
        w = self.w
        w.reset()
        w.raw(b'{"connectorId":')
        w.int(n)
        w.raw(b',"meterValue":[')
        self._sample(n, st, context, measurands)
        w.raw(b"]}")
        cp.journal.append(journal.METER, tx["tx"] if tx else 0, memoryview(self._buf)[:w.n])
        if tx:
            cp.meter.save(st)

    # -- stop -----------------------------------------------------------------------------
    def end(self, n, reason, tag=None, meter_stop=None):
        """Stop the transaction on connector n: journals StopTransaction. Returns local or 0.

        meter_stop: the application's own reading (Wh); default the connector's register.
        """
        tx = self.active[n]
        if tx is None:
            return 0
        cp = self.cp
        st = self._stamp()
        if meter_stop is None:
            meter_stop = cp.meter.register(n)
        self._journal_stop(n, tx, reason, tag, meter_stop, st)
        cp.meter.save(st)
        store.remove(self.dir + "/%d" % n)
        self.active[n] = None
        return tx["tx"]

    def _journal_stop(self, n, tx, reason, tag, meter_stop, st):
        w = self.w
        w.reset()
        w.byte(123)
        tag = tag or tx.get("tag")
        if tag:
            w.raw(b'"idTag":')
            w.str(tag)
            w.byte(44)
        w.raw(b'"meterStop":')
        w.int(meter_stop)
        w.raw(b',"timestamp":')
        self._write_stamp(st)
        if reason != "Local":
            w.raw(b',"reason":"')
            w.raw(reason)
            w.byte(34)
        measurands = self.cp.cfg.csl("StopTxnSampledData")
        if measurands:
            # Transaction.Begin (the register at start) and Transaction.End, always both.
            w.raw(b',"transactionData":[{"timestamp":')
            self._write_stamp(tx["st"])
            w.raw(b',"sampledValue":[{"value":"')
            w.int(tx["ms"])
            w.raw(b'","context":"Transaction.Begin","measurand":"Energy.Active.Import.Register",'
                  b'"location":"Outlet","unit":"Wh"}]},')
            self._sample(n, st, mt.END, measurands)
            w.byte(93)
        w.byte(125)
        self.cp.journal.append(journal.STOP, tx["tx"], memoryview(self._buf)[:w.n])
        self.log("tx: stopped local #%d on connector %d (%s), meterStop %d Wh"
                 % (tx["tx"], n, reason, meter_stop))

    # -- recovery -------------------------------------------------------------------------
    def note_reboot(self, reason):
        """Before a deliberate restart with transactions left running: remember why."""
        store.atomic_write(self.dir + "/reboot", reason)

    def recover(self):
        """At boot: close transactions the last power-on left open."""
        cp = self.cp
        reason = store.read(self.dir + "/reboot")
        reason = reason.decode() if reason else "PowerLoss"
        if reason not in REASONS:
            reason = "PowerLoss"
        stopped = set()
        for rec in cp.journal.records():
            if rec[1] == journal.STOP:
                stopped.add(rec[2])
        for n in range(1, cp.connectors + 1):
            raw = store.read(self.dir + "/%d" % n)
            if raw is None:
                continue
            try:
                tx = json.loads(raw)
                local = tx["tx"]
            except (ValueError, KeyError, TypeError):
                self.log("tx: unreadable %s/%d kept aside" % (self.dir, n))
                store.atomic_write(self.dir + "/bad-%d" % n, raw)
                store.remove(self.dir + "/%d" % n)
                continue
            if local not in stopped:
                # The register and time last saved are the best truth about the end.
                st = cp.meter.saved_stamp or tx["st"]
                ms = max(tx["ms"], cp.meter.base[n])
                self._journal_stop(n, tx, reason, None, ms, st)
            store.remove(self.dir + "/%d" % n)
        store.remove(self.dir + "/reboot")
        self.log("tx: journal holds %d message(s) at boot" % len(cp.journal))
