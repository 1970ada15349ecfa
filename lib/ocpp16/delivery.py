"""Delivery of journaled transaction messages, in order, with the OCPP 1.6 retry rules.

Where a StopTransaction is retried:
- the oldest journal record goes first; newer transaction messages wait behind it;
- RESULT: the record is removed (StartTransaction: its transactionId is saved first);
- OFFLINE (no link, or it dropped before the answer): nothing is spent; it goes again
  after reconnecting;
- TIMEOUT on a live link: sent again, not counted as a failure;
- CALLERROR: a failure to process. Retried after TransactionMessageRetryInterval x
  (number of earlier sends); after TransactionMessageAttempts failures it is dropped
  (logged, counted) and the next record proceeds.  A dropped StartTransaction leaves its
  transaction with transactionId -1 (errata 3.18).

Bodies are stored without transactionId; it is inserted here when the frame is built.
Relative timestamps ("~boot.seconds", see timebase.py) are resolved here as well.
"""
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const
from ocpp16 import journal, rpc
from ocpp16.clock import write_iso

_ACTIONS = {journal.START: b"StartTransaction", journal.STOP: b"StopTransaction",
            journal.METER: b"MeterValues"}
_BODY = const(1536)


class Delivery:
    def __init__(self, cp):
        self.cp = cp
        self.j = cp.journal
        self._buf = bytearray(_BODY)
        self._mv = memoryview(self._buf)
        self._retry_at = 0        # ticks_ms before which the head must not be resent
        self._waiting = False
        self.dropped = 0          # records given up after their attempts
        self.delivered = 0
        self.on_result = None     # fn(kind, tx, outcome, payload) for the application

    def due(self):
        if not len(self.j):
            return False
        return not self._waiting or ticks_diff(ticks_ms(), self._retry_at) >= 0

    def _encode(self, w, arg):
        kind, tx, n = arg
        buf = self._buf
        start = 0
        if kind != journal.START and tx:
            txid = self.j.txid(tx)
            w.raw(b'{"transactionId":')
            w.int(-1 if txid is None else txid)
            if n > 2:
                w.byte(44)
            start = 1
        # Copy the body, resolving relative stamps "~boot.secs".
        i = start
        while True:
            k = buf.find(b'"~', i, n)
            if k < 0:
                w.raw(self._mv[i:n])
                return
            w.raw(self._mv[i:k])
            e = buf.find(b'"', k + 2, n)
            boot, _, secs = bytes(buf[k + 2:e]).partition(b".")
            t = self.cp.timebase.resolve(int(boot), int(secs))
            write_iso(w, t if t else self.cp.clock.now())
            i = e + 1

    async def send_head(self):
        """Send the oldest record once and apply the outcome."""
        cp = self.cp
        j = self.j
        rec = j.head()
        if rec is None:
            return
        seq, kind, tx, attempts, flags = rec
        try:
            n = j.read(seq, self._buf)
        except (OSError, KeyError, ValueError) as e:
            # The journal moved a damaged record aside (bad/); the rest of the queue goes on.
            cp.log("delivery: record %d unreadable (%r), skipped" % (seq, e))
            j.remove(seq)
            return
        out = await cp.rpc.call(_ACTIONS[kind], self._encode, (kind, tx, n))
        if out == rpc.OFFLINE:
            return
        if out == rpc.TIMEOUT:
            # Not a failure to process; try again (after a short pause, not a tight loop).
            self._hold(1000)
            return
        payload = cp.rpc.payload
        if out == rpc.RESULT:
            if kind == journal.START:
                txid = payload.get("transactionId")
                if isinstance(txid, int) and not isinstance(txid, bool):
                    j.set_txid(tx, txid)
                else:
                    cp.log("delivery: StartTransaction.conf without transactionId")
                    j.give_up_start(tx)
            j.remove(seq)
            self.delivered += 1
            self._waiting = False
            self._forget_if_done(tx)
            self._empty()
            cp.transaction_answered(kind, tx, out, payload)
            return
        # CALLERROR
        attempts = j.failed(seq)
        limit = cp.cfg.get("TransactionMessageAttempts")
        cp.log("delivery: %s local #%d refused (%s), failure %d of %d"
               % (_ACTIONS[kind].decode(), tx, cp.rpc.error_code, attempts, limit))
        if attempts >= limit:
            cp.log("delivery: DROPPED %s local #%d after %d failures"
                   % (_ACTIONS[kind].decode(), tx, attempts))
            if kind == journal.START:
                j.give_up_start(tx)
            j.remove(seq)
            self.dropped += 1
            self._waiting = False
            self._forget_if_done(tx)
            self._empty()
            cp.transaction_answered(kind, tx, rpc.CALLERROR, None)
            return
        self._hold(cp.cfg.get("TransactionMessageRetryInterval") * 1000 * attempts)

    def _empty(self):
        if not len(self.j):
            self.cp.log("delivery: queue empty (%d delivered, %d dropped; journal wrote %d bytes)"
                        % (self.delivered, self.dropped, self.j.bytes_written))

    def _hold(self, ms):
        self._waiting = True
        self._retry_at = ticks_add(ticks_ms(), ms)

    def _forget_if_done(self, tx):
        if not tx:
            return
        for rec in self.j.records():
            if rec[2] == tx:
                return
        if self.cp.transactions_running(tx):
            return
        self.j.forget(tx)
