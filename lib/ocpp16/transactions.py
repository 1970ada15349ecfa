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

Intermediate samples for the StopTransaction's transactionData (`StopTxnSampledData`
every MeterValueSampleInterval, `StopTxnAlignedData` at each clock-aligned boundary) are
appended as lines to `tx/<connector>.d`, so they survive a power cut and close the
transaction at the next boot too.  The file is bounded (_DATA_CAP): when it fills, every
other line goes and from then on only every other sample is kept, so the samples stay
evenly spread over a long session.  At the stop, as many as fit the StopTransaction
(it must fit the websocket's transmit buffer) are included, evenly thinned again if need
be; Transaction.Begin and Transaction.End are always there.

Order of the writes, so that a power cut between any two of them is safe:
- begin:  tx/<n>, meter.json, START.  A cut before the START is on flash leaves a tx/<n>
  whose START is nowhere: the transaction never began (the relay was never closed), so
  the next boot deletes it instead of inventing a StopTransaction for it.
- sample, end: meter.json, then the record.  The register and stamp saved last are thus
  never older than any record on flash, and a StopTransaction built from them at the
  next boot is never stamped before a MeterValues it follows.
Local transaction numbers never repeat: at boot the counter is raised above every number
the journal still knows (a lost or damaged `tx/seq` file must not make an old
transactionId apply to a new transaction).
"""
import json
from array import array
from micropython import const
from ocpp16 import store, journal
from ocpp16.jsonw import Writer
from ocpp16 import meter as mt

_BODY_SIZE = const(1536)
_DATA_CAP = const(4096)    # bytes of intermediate transactionData kept on flash per connector
_STAMP_GROWTH = const(20)  # a relative stamp "~b.s" grows by at most this when resolved
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
        self.recovered = []          # connectors whose transaction recover() closed
        # The one body buffer of the charge point: messages are built here, and delivery
        # reads records from the journal into it (see Delivery); `gen` counts the builds,
        # so delivery knows when the record it read has been overwritten.
        self._buf = bytearray(_BODY_SIZE)
        self.w = Writer(self._buf)
        self.gen = 0
        raw = store.read(self.dir + "/seq")
        try:
            self._seq = int(raw) if raw else 0
        except ValueError:
            self.log("tx: %s/seq unreadable; numbering resumes above the journal's" % self.dir)
            self._seq = 0
        # The last stamp saved before this boot is a time that had passed before it began.
        st = cp.meter.saved_stamp
        if isinstance(st, list) and len(st) == 3:
            try:
                cp.timebase.advance(st[0] or cp.timebase.resolve(st[1], st[2]))
            except (TypeError, ValueError):
                pass

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
        store.remove(self._data(n))  # left by a transaction that never began
        store.atomic_write(self.dir + "/%d" % n, json.dumps(tx))
        cp.meter.save(st)
        w = self.w
        w.reset()
        self.gen += 1
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
        try:
            cp.journal.append(journal.START, local, memoryview(self._buf)[:w.n])
        except OSError as e:
            # Flash full (even after dropping MeterValues): no transaction without its
            # StartTransaction on flash.  The relay stays open.
            self.log("tx: StartTransaction not queued (%r): no transaction on connector %d"
                     % (e, n))
            store.remove(self.dir + "/%d" % n)
            return 0
        self.active[n] = tx
        self.log("tx: started local #%d on connector %d for %s, meterStart %d Wh"
                 % (local, n, tag, ms))
        return local

    # -- samples --------------------------------------------------------------------------
    def sample(self, n, context, at=0):
        """Journal a periodic or clock-aligned MeterValues for connector n (0 = main meter),
        and keep a sample for the transaction's StopTransaction when so configured.

        `at`: the clock-aligned boundary (Unix time) the sample belongs to.
        """
        cp = self.cp
        clock = context == mt.CLOCK
        measurands = cp.cfg.csl("MeterValuesAlignedData" if clock else "MeterValuesSampledData")
        tx = self.active[n] if n else None
        keep = cp.cfg.csl("StopTxnAlignedData" if clock else "StopTxnSampledData") if tx else ()
        if not measurands and not keep:
            return
        st = [at, cp.timebase.boot, 0] if at else self._stamp()
        if tx:
            cp.meter.save(st)       # before the records: see the module docstring
        w = self.w
        if measurands:
            w.reset()
            self.gen += 1
            w.raw(b'{"connectorId":')
            w.int(n)
            w.raw(b',"meterValue":[')
            self._sample(n, st, context, measurands)
            w.raw(b"]}")
            try:
                cp.journal.append(journal.METER, tx["tx"] if tx else 0,
                                  memoryview(self._buf)[:w.n])
            except OSError as e:
                self.log("tx: MeterValues sample not queued: %r" % e)
        if keep:
            self._keep(n, tx, st, context, keep)

    # -- intermediate transactionData -----------------------------------------------------
    def _data(self, n):
        return self.dir + "/%d.d" % n

    def _keep(self, n, tx, st, context, measurands):
        # One MeterValue line in tx/<n>.d; with stride k only every k-th sample is kept.
        c = tx.get("c", 0) + 1
        tx["c"] = c
        k = tx.get("k", 1)
        if c % k:
            return
        w = self.w
        w.reset()
        self.gen += 1
        self._sample(n, st, context, measurands)
        w.byte(10)
        path = self._data(n)
        try:
            if store.append(path, memoryview(self._buf)[:w.n]) > _DATA_CAP:
                # Every other one, the newest kept (and the oldest gone when the count is
                # odd), copied line by line: the file is never all in RAM.
                m = 0
                for _ in self._lines(n):
                    m += 1
                store.atomic_write(path, self._every(n, 1 + (m & 1), 2))
                tx["k"] = k * 2
                self.log("tx: transactionData of local #%d thinned: every %d. sample kept"
                         % (tx["tx"], k * 2))
        except OSError as e:
            # Flash full: intermediate samples are the first thing to give up.
            self.log("tx: transactionData sample of local #%d not kept: %r" % (tx["tx"], e))

    def _lines(self, n, quiet=True):
        # The intact lines of tx/<n>.d, one at a time, each with its newline: a torn last
        # line (power cut) or a damaged one is left out, never allowed to make the
        # StopTransaction invalid JSON.  One line in RAM at a time, however long the file.
        try:
            f = open(self._data(n), "rb")
        except OSError:
            return
        with f:
            while True:
                line = f.readline()
                if not line:
                    break
                if line[-1] == 10:
                    try:
                        v = json.loads(line)
                        if isinstance(v, dict) and "timestamp" in v and \
                                isinstance(v.get("sampledValue"), list):
                            v = None
                            yield line
                            continue
                    except ValueError:
                        pass
                if not quiet:
                    self.log("tx: damaged transactionData line in %s skipped" % self._data(n))

    def _every(self, n, first, step):
        # Intact lines number first, first + step, ... (another pass over the file).
        i = 0
        for line in self._lines(n):
            if i >= first and not (i - first) % step:
                yield line
            i += 1

    def _fit(self, n, room):
        # Evenly spread lines (the newest kept) whose size, with each relative stamp as
        # it will be once resolved, fits `room` bytes: (first, step, count, of).  Only
        # the lines' sizes are held (2 bytes each), not the lines.
        sizes = array("H")
        for line in self._lines(n, False):
            sizes.append(len(line) + _STAMP_GROWTH * line.count(b'"~'))  # \n -> ,
        m = len(sizes)
        for step in range(1, m + 1):
            size = 0
            for i in range(m - 1, -1, -step):
                size += sizes[i]
            if size <= room:
                first = m - 1 - (m - 1) // step * step
                return first, step, (m - 1 - first) // step + 1, m
        return 0, 1, 0, m

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
        cp.meter.save(st)           # before the record: see the module docstring
        self.active[n] = None
        try:
            self._journal_stop(n, tx, reason, tag, meter_stop, st)
        except OSError as e:
            # Not even the journal's reserve left: tx/<n> stays, so the next boot closes
            # the transaction from the register and time just saved.
            self.log("tx: StopTransaction of local #%d not queued (%r); the next boot "
                     "closes it" % (tx["tx"], e))
            return tx["tx"]
        store.remove(self.dir + "/%d" % n)
        store.remove(self._data(n))
        return tx["tx"]

    def _journal_stop(self, n, tx, reason, tag, meter_stop, st):
        w = self.w
        w.reset()
        self.gen += 1
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
        cfg = self.cp.cfg
        measurands = cfg.csl("StopTxnSampledData")
        if measurands or cfg.csl("StopTxnAlignedData"):
            p0 = w.n
            w.raw(b',"transactionData":[')
            if measurands:
                # Transaction.Begin (the register at start) and Transaction.End, always both.
                w.raw(b'{"timestamp":')
                self._write_stamp(tx["st"])
                w.raw(b',"sampledValue":[{"value":"')
                w.int(tx["ms"])
                w.raw(b'","context":"Transaction.Begin","measurand":'
                      b'"Energy.Active.Import.Register","location":"Outlet","unit":"Wh"}]},')
                p = w.n
                self._sample(n, st, mt.END, measurands)
                end = bytes(self._buf[p:w.n])
                w.n = p
            else:
                end = b""
            # What is left of the body after End and "]}", with the stamps outside
            # transactionData and Begin's and End's resolved.
            first, step, count, m = self._fit(n, _BODY_SIZE - w.n - len(end) - 2 - (
                3 if measurands else 1) * _STAMP_GROWTH)
            if count < m:
                self.log("tx: transactionData of local #%d: %d of %d intermediate samples "
                         "fit the StopTransaction" % (tx["tx"], count, m))
            for x in self._every(n, first, step) if count else ():
                w.raw(memoryview(x)[:-1])   # without its newline
                w.byte(44)
            if end:
                w.raw(end)
            elif w.buf[w.n - 1] == 44:
                w.n -= 1            # no End after the last sample: drop its comma
            w.byte(93)
            if not (measurands or count):
                w.n = p0            # nothing to send: no transactionData at all
        w.byte(125)
        self.cp.journal.append(journal.STOP, tx["tx"], memoryview(self._buf)[:w.n])
        self.log("tx: stopped local #%d on connector %d (%s), meterStop %d Wh"
                 % (tx["tx"], n, reason, meter_stop))

    # -- recovery -------------------------------------------------------------------------
    def note_reboot(self, reason):
        """Before a deliberate restart with transactions left running: remember why."""
        store.atomic_write(self.dir + "/reboot", reason)

    def recover(self):
        """At boot: close transactions the last power-on left open; tidy the journal's
        transactionId map; make sure local numbers never repeat."""
        cp = self.cp
        j = cp.journal
        reason = store.read(self.dir + "/reboot")
        reason = reason.decode() if reason else "PowerLoss"
        if reason not in REASONS:
            reason = "PowerLoss"
        running = {}
        for n in range(1, cp.connectors + 1):
            raw = store.read(self.dir + "/%d" % n)
            if raw is None:
                continue
            try:
                tx = json.loads(raw)
                if not isinstance(tx["tx"], int):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                self.log("tx: unreadable %s/%d kept aside" % (self.dir, n))
                store.atomic_write(self.dir + "/bad-%d" % n, raw)
                store.remove(self.dir + "/%d" % n)
                continue
            running[n] = tx
        # One pass over the queue: which of the interesting local transactions still
        # have records (bit 1: START, 2: STOP, 4: MeterValues), and the largest number.
        mapped = j.mapped()
        seen = {}
        for tx in running.values():
            seen[tx["tx"]] = 0
        for t in mapped:
            seen[t] = 0
        top = self._seq
        for rec in j.records():
            t = rec[2]
            if t > top:
                top = t
            if t in seen:
                k = rec[1]
                seen[t] |= 1 if k == journal.START else 2 if k == journal.STOP else 4
        for t in mapped:
            if t > top:
                top = t
        for n in running:
            tx = running[n]
            local = tx["tx"]
            if local > top:
                top = local
            if seen[local] & 2:
                pass                # its StopTransaction is queued already
            elif not seen[local] & 1 and j.txid(local) is None:
                # Cut while starting, before the StartTransaction was on flash.
                self.log("tx: local #%d on connector %d never started (cut before its "
                         "StartTransaction was queued); nothing to stop" % (local, n))
            else:
                # The register and time last saved are the best truth about the end.
                st = cp.meter.saved_stamp or tx["st"]
                ms = max(tx["ms"], cp.meter.base[n])
                self._journal_stop(n, tx, reason, None, ms, st)
                seen[local] |= 2
                self.recovered.append(n)
            store.remove(self.dir + "/%d" % n)
            store.remove(self._data(n))
        store.remove(self.dir + "/reboot")
        # A transactionId nothing refers to any more (cut between the last delivery of a
        # transaction and the deletion of its mapping).
        for t in mapped:
            if not seen[t]:
                j.forget(t)
        if top > self._seq:
            self.log("tx: local numbering resumes after #%d" % top)
            self._seq = top
        self.log("tx: journal holds %d message(s) at boot" % len(j))
