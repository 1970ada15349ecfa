"""Delivery of journaled transaction messages, in order, with the OCPP 1.6 retry rules.

- The oldest journal record goes first; newer transaction messages wait behind it (other
  messages may overtake: the sender serves them first).
- RESULT: the record is removed (StartTransaction: its transactionId is saved first, so
  every record still queued for that transaction carries it).
- OFFLINE (no link, or it dropped before the answer): nothing is spent; it goes again
  after reconnecting.  A reboot spends nothing either: the queue is on flash.
- TIMEOUT on a live link: sent again after one more MessageTimeout, not counted as a
  failure to process.  The answer to an earlier attempt may still come: until the
  record is settled, a CALLRESULT to any of its attempts settles it (rpc.expect_late),
  so a slow central system does not get the same StartTransaction three times and the
  transaction keeps the id of the first answer.  The pause matters: TCP delivers in
  order, so a resend on the same link helps only a central system that lost the message
  itself; a stalled link (answer late but coming) would just get a second
  StartTransaction, and a central system that does not deduplicate opens a second
  transaction for it.  Only a StartTransaction that is never answered at all is given up,
  after TransactionMessageAttempts unanswered sends in this power-on: errata 3.18
  foresees exactly that ("its .conf never arrived"), and without it one silent
  StartTransaction would hold back every later message forever.  Its transaction then
  goes on with transactionId -1.
- A message whose sending keeps ending the link (the central system closes it with an
  error code while the message is out, e.g. 1007 for a frame it cannot read, or the
  link dies with it out again and again) would block the queue forever: the server
  closing with an error code counts _DROP_WEIGHT, any other loss 1, and every
  _DROP_LIMIT counts as one failed attempt under TransactionMessageAttempts.
- CALLERROR: a failure to process.  Retried after TransactionMessageRetryInterval x
  (number of earlier sends of this message); after TransactionMessageAttempts failures
  (persisted in the journal, so they survive a reboot) it is dropped, logged with its
  whole body, and the next record proceeds.  A dropped StartTransaction leaves its
  transaction with transactionId -1 (errata 3.18).  A CALLERROR never counts as
  delivered.

The record being sent is read into the transactions' body buffer (one buffer for both,
1.5 KB less RAM): a message built there while a CALL is out overwrites it, so it is read
again from the journal when needed (`_body`, told by `Transactions.gen`).

Bodies are stored without transactionId; it is inserted here when the frame is built.
Relative timestamps ("~boot.seconds", see timebase.py) are resolved here as well; a
record whose stamp cannot be resolved yet (clock never set) waits, it is never sent
with a made-up time.
"""
import json
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const
from ocpp16 import journal, rpc
from ocpp16.clock import write_iso

_ACTIONS = {journal.START: b"StartTransaction", journal.STOP: b"StopTransaction",
            journal.METER: b"MeterValues"}
_CLOCK_WAIT_MS = const(5000)       # re-check for a clock this often
_DROP_LIMIT = const(10)            # link losses with the head out that make one failure
_DROP_WEIGHT = const(5)            # ... when the server closed with an error code


class Delivery:
    def __init__(self, cp):
        self.cp = cp
        self.j = cp.journal
        self._buf = cp.tx._buf        # shared: see the module docstring
        self._mv = memoryview(self._buf)
        self._rd = 0                  # seq of the record in the buffer ...
        self._gen = -1                # ... read when cp.tx.gen was this
        self._n = 0                   # ... its length
        self._retry_at = 0        # ticks_ms before which the head must not be resent
        self._waiting = False
        self._busy = False        # sending a backlog (logged when it starts and ends)
        self._head = 0            # seq the counter below belongs to
        self._unanswered = 0      # response timeouts of the head in this power-on
        self._drops = 0           # link losses while the head was out (see _DROP_LIMIT)
        self._inflight = 0        # seq of the record whose CALL is out, 0 = none
        self._late = None         # payload of a late answer to an earlier attempt
        self._late_fn = self._late_answer   # one bound method, made once
        self.dropped = 0          # records given up after their attempts
        self.delivered = 0
        self.on_result = None     # fn(kind, tx, outcome, payload) for the application

    def due(self):
        if not len(self.j):
            return False
        return not self._waiting or self._late is not None \
            or ticks_diff(ticks_ms(), self._retry_at) >= 0

    def _late_answer(self, outcome, payload):
        # rpc: an answer to an earlier attempt of the head came after its timeout.
        if outcome != rpc.RESULT:
            return          # a late CALLERROR or the wait given up: the resends decide
        if self._inflight and self._inflight == self._head:
            self.cp.rpc.settle(rpc.RESULT, payload)     # ends the resend that is out
        else:
            self._late = payload
            self.cp._wake.set()

    def _resolve(self, k, e):
        # The relative stamp "~boot.secs" at buf[k:e+1] as Unix time, or None.
        boot, _, secs = bytes(self._buf[k + 2:e]).partition(b".")
        return self.cp.timebase.resolve(int(boot), int(secs))

    def _resolvable(self, n):
        buf = self._buf
        k = buf.find(b'"~', 0, n)
        while k >= 0:
            e = buf.find(b'"', k + 2, n)
            if not self._resolve(k, e):
                return False
            k = buf.find(b'"~', e + 1, n)
        return True

    def _body(self, seq):
        # Record `seq` in the buffer (read again if a message was built there since).
        if self._rd != seq or self._gen != self.cp.tx.gen:
            self._n = self.j.read(seq, self._buf)
            self._rd = seq
            self._gen = self.cp.tx.gen
        return self._n

    def _encode(self, w, arg):
        seq, kind, tx, n = arg
        n = self._body(seq)
        buf = self._buf
        start = 0
        if kind != journal.START and tx:
            txid = self.j.txid(tx)
            w.raw(b'{"transactionId":')
            w.int(-1 if txid is None else txid)
            if n > 2:
                w.byte(44)
            start = 1
        # Copy the body, resolving relative stamps "~boot.secs" (send_head checked that
        # they all resolve).
        i = start
        while True:
            k = buf.find(b'"~', i, n)
            if k < 0:
                w.raw(self._mv[i:n])
                return
            w.raw(self._mv[i:k])
            e = buf.find(b'"', k + 2, n)
            write_iso(w, self._resolve(k, e))
            i = e + 1

    async def send_head(self):
        """Send the oldest record once and apply the outcome."""
        cp = self.cp
        j = self.j
        rec = j.head()
        if rec is None:
            return
        seq, kind, tx, attempts, flags = rec
        if seq != self._head:
            self._head = seq
            self._unanswered = self._drops = 0
            self._late = None
        try:
            self._rd = 0
            n = self._body(seq)
        except (OSError, KeyError, ValueError) as e:
            # The journal moved a damaged record aside (bad/); the rest of the queue goes on.
            cp.log("delivery: record %d unreadable (%r), skipped" % (seq, e))
            j.remove(seq)
            self._empty()
            return
        if not self._busy:
            self._busy = True
            if len(j) > 1:
                cp.log("delivery: %d messages queued, sending (journal wrote %d bytes so far)"
                       % (len(j), j.bytes_written))
        if self._late is not None:
            # An earlier attempt was answered after all (while no resend was out).
            payload = self._late
            self._late = None
            cp.log("delivery: %s local #%d settled by a late answer"
                   % (_ACTIONS[kind].decode(), tx))
            self._delivered(seq, kind, tx, n, payload)
            return
        if not self._resolvable(n):
            if not self._waiting:
                cp.log("delivery: %s local #%d waits for the clock (stamped before it was set)"
                       % (_ACTIONS[kind].decode(), tx))
            self._hold(_CLOCK_WAIT_MS)
            return
        self._inflight = seq
        try:
            out = await cp.rpc.call(_ACTIONS[kind], self._encode, (seq, kind, tx, n))
        finally:
            self._inflight = 0
        if out == rpc.OFFLINE:
            if cp.rpc.dropped:
                self._link_lost(seq, kind, tx, n)
            return
        limit = cp.cfg.get("TransactionMessageAttempts")
        if out == rpc.TIMEOUT:
            # Not a failure to process; send again after one more MessageTimeout (see the
            # module docstring).  Its answer may still come: it settles the record then.
            cp.rpc.expect_late(cp.rpc.last_id, self._late_fn)
            self._unanswered += 1
            if kind == journal.START and self._unanswered >= limit:
                cp.log("delivery: StartTransaction local #%d unanswered %d times: given up, "
                       "the transaction goes on with transactionId -1" % (tx, self._unanswered))
                self._drop(seq, kind, tx, n, "unanswered")
                return
            self._hold(cp.cfg.get("MessageTimeout") * 1000)
            return
        if out == rpc.RESULT:
            self._delivered(seq, kind, tx, n, cp.rpc.payload)
            return
        # CALLERROR
        self._failed(seq, kind, tx, n, cp.rpc.error_code, limit)

    def _failed(self, seq, kind, tx, n, why, limit, what="CALLERRORs"):
        cp = self.cp
        attempts = self.j.failed(seq)
        cp.log("delivery: %s local #%d refused (%s), failure %d of %d"
               % (_ACTIONS[kind].decode(), tx, why, attempts, limit))
        if attempts >= limit:
            self._drop(seq, kind, tx, n, "after %d %s" % (attempts, what))
            return
        # Spec 3.7.1: wait interval x (number of preceding transmissions of this message).
        self._hold(cp.cfg.get("TransactionMessageRetryInterval") * 1000
                   * (attempts + self._unanswered))

    def _link_lost(self, seq, kind, tx, n):
        # The link ended with this record's CALL out.  Not a failure as such (it goes
        # again after reconnecting), unless it keeps happening: see _DROP_LIMIT.
        code = self.cp.ws.close_code
        self._drops += _DROP_WEIGHT if code is not None and code not in (1000, 1001) else 1
        if self._drops >= _DROP_LIMIT:
            self._drops = 0
            self._failed(seq, kind, tx, n, "the link ended while it was out, last close "
                         "code %s" % code, self.cp.cfg.get("TransactionMessageAttempts"),
                         "failures")

    def _delivered(self, seq, kind, tx, n, payload):
        cp = self.cp
        j = self.j
        if kind == journal.START:
            txid = payload.get("transactionId")
            if isinstance(txid, int) and not isinstance(txid, bool):
                j.set_txid(tx, txid)
            else:
                cp.log("delivery: StartTransaction.conf without transactionId")
                j.give_up_start(tx)
        tag = self._tag(self._body(seq)) if isinstance(payload.get("idTagInfo"), dict) \
            else None
        j.remove(seq)
        self.delivered += 1
        self._settled(kind, tx)
        cp.transaction_answered(kind, tx, rpc.RESULT, payload, tag)

    def _tag(self, n):
        # The idTag of the record in the buffer: the idTagInfo of a Start/Stop answer is
        # about it (the cache learns it, also for a transaction that has ended).
        buf = self._buf
        k = buf.find(b'"idTag":"', 0, n)
        if k < 0:
            return None
        e = buf.find(b'"', k + 9, n)
        while e > 0 and buf[e - 1] == 92:        # an escaped quote inside the tag
            e = buf.find(b'"', e + 1, n)
        try:
            return json.loads(bytes(buf[k + 8:e + 1]))
        except ValueError:
            return None

    def _settled(self, kind, tx):
        self._waiting = False
        self._late = None
        self.cp.rpc.forget_late(self._late_fn)
        self._forget_if_done(kind, tx)
        self._empty()

    def _drop(self, seq, kind, tx, n, why):
        j = self.j
        try:
            body = bytes(self._buf[:self._body(seq)]).decode()
        except (OSError, KeyError, ValueError, UnicodeError):
            body = "(unreadable)"
        self.cp.log("delivery: DROPPED %s local #%d (%s): %s"
                    % (_ACTIONS[kind].decode(), tx, why, body))
        if kind == journal.START:
            j.give_up_start(tx)
        j.remove(seq)
        self.dropped += 1
        self._settled(kind, tx)
        self.cp.transaction_answered(kind, tx, rpc.CALLERROR, None)

    def _empty(self):
        if not len(self.j):
            self._busy = False
            self.cp.log("delivery: queue empty (%d delivered, %d dropped; journal wrote %d bytes)"
                        % (self.delivered, self.dropped, self.j.bytes_written))

    def _hold(self, ms):
        self._waiting = True
        self._retry_at = ticks_add(ticks_ms(), ms)

    def _forget_if_done(self, kind, tx):
        # The transactionId of a finished transaction is kept until its last record is
        # gone.  A StopTransaction is always the last one of its transaction.
        if not tx or self.cp.transactions_running(tx):
            return
        if kind != journal.STOP:
            for rec in self.j.records():
                if rec[2] == tx:
                    return
        self.j.forget(tx)
