"""RemoteTrigger profile: TriggerMessage (OCPP 1.6 §5.17, §6.52; errata 3.35).

Imported at the first TriggerMessage (chargepoint._PROFILES); it keeps no state.

The handler only queues: the triggered CALL goes out through the sender after the
TriggerMessage.conf (the conf is written by the receiver when the handler returns, under
the rpc lock, and the sender cannot write a CALL before it has that lock).  Triggered
messages go through `cp.request` (ahead of the journal, behind unreported status
changes), are never journaled and are dropped when the link drops (OCPP §3.7: not
transaction-related, MeterValues with context Trigger included).

Registration (spec 4.2, errata 3.35):
- Accepted: every message but BootNotification (Rejected: the recommendation of 3.35);
- Pending: every message (the charger sends nothing but what is triggered); Boot is sent
  at once instead of at the end of the interval;
- no answer to the boot yet: only BootNotification (sent at once), the rest Rejected;
- Rejected: all Rejected (nothing may be sent until the interval has passed).
"""
from time import ticks_ms, ticks_add
from ocpp16.rpc import CallError, field, only, RESULT
from ocpp16 import messages
from ocpp16.link import take_time
from ocpp16.meter import TRIGGER

_METER = b"MeterValues"
_ENERGY = ("Energy.Active.Import.Register",)


def firmware_status(cp):
    """FirmwareStatusNotification's status: the firmware component's (a `firmware` part
    with `firmware_status()` -> a FirmwareStatus, or None when idle), else Idle."""
    return _state(cp, "firmware_status")


def diagnostics_status(cp):
    """DiagnosticsStatusNotification's status, found the same way (`diagnostics_status()`
    of a `diagnostics` or `firmware` part), else Idle."""
    return _state(cp, "diagnostics_status")


def _state(cp, name):
    # cp.part(.., False): a charger that never updated its firmware loads nothing for it.
    for part in ("firmware", "diagnostics"):
        fn = getattr(cp.part(part, False), name, None)
        if fn is not None:
            s = fn()
            if s:
                return s
    return "Idle"


def _queue(cp, action, encode, arg, done=None):
    # An equal message already waiting behind the head (the head may be on the wire,
    # sent before this trigger) will answer this trigger too (spec 5.17): not twice.
    # So a central system repeating triggers cannot grow the queue without bound.
    reqs = cp._requests
    for i in range(1, len(reqs)):
        r = reqs[i]
        if r[1] is encode and r[2] == arg:
            return
    cp.request(action, encode, arg, done)


def _each(cp, n, first):
    # connectorId absent: every connector the message makes sense for (spec 5.17).
    return range(first, cp.connectors + 1) if n is None else (n,)


def _boot(cp, n):
    if cp.registered or cp.boot_status == "Rejected":
        return False
    cp._boot_at = ticks_ms()        # the sender sends it now, not after the interval
    cp._wake.set()
    return True


def _heartbeat(cp, n):
    def done(out, p):
        if out == RESULT:
            take_time(cp, p)
            if cp.registered:       # a Heartbeat went: the next is an interval away
                cp._hb_at = ticks_add(ticks_ms(), cp.cfg.get("HeartbeatInterval") * 1000)
    _queue(cp, messages.HEARTBEAT, messages.heartbeat, None, done)
    return True


def _status(cp, n):
    # Connector 0 (the charge point) too when none is named.  The encoder writes the
    # state at send time: a change in between is what is sent.
    for i in _each(cp, n, 0):
        _queue(cp, messages.STATUS, messages.status, (cp, i))
    return True


def _meter(cp, n):
    if not cp.clock.valid:
        return False      # no truthful timestamp to give (never 1970); see the README
    for i in _each(cp, n, 1):
        _queue(cp, _METER, _meter_values, (cp, i))
    return True


def _diagnostics(cp, n):
    _queue(cp, messages.DIAGNOSTICS_STATUS, messages.status_only, diagnostics_status(cp))
    return True


def _firmware(cp, n):
    _queue(cp, messages.FIRMWARE_STATUS, messages.status_only, firmware_status(cp))
    return True


def _meter_values(w, a):
    # The current readings of MeterValuesSampledData (connector 0, the main meter: its
    # energy register only), context Trigger, with the running transaction's id if known.
    cp, n = a
    w.raw(b'{"connectorId":')
    w.int(n)
    tx = cp.tx.active[n] if n else None
    txid = cp.journal.txid(tx["tx"]) if tx is not None else None
    if txid is not None and txid >= 0:      # -1: the StartTransaction was given up
        w.raw(b',"transactionId":')
        w.int(txid)
    w.raw(b',"meterValue":[')
    cp.meter.write_value(w, n, cp.clock.now(), TRIGGER,
                         (n and cp.cfg.csl("MeterValuesSampledData")) or _ENERGY)
    w.raw(b"]}")


_MESSAGES = (("BootNotification", _boot), ("DiagnosticsStatusNotification", _diagnostics),
             ("FirmwareStatusNotification", _firmware), ("Heartbeat", _heartbeat),
             ("MeterValues", _meter), ("StatusNotification", _status))


def trigger_message(cp, p):
    only(p, ("requestedMessage", "connectorId"))
    what = field(p, "requestedMessage", str)
    for name, fn in _MESSAGES:
        if name == what:
            break
    else:
        # Not in the schema's enum: a payload error, not a message we lack (the schema
        # leaves NotImplemented nothing to name; every value of the enum is implemented).
        raise CallError("PropertyConstraintViolation", "requestedMessage")
    n = p.get("connectorId")
    if n is not None:       # (null: absent)
        n = field(p, "connectorId", int)
        if n < 0 or n > cp.connectors:
            return {"status": "Rejected"}      # OCTT TC_055
    if fn is not _boot and not cp.registered and cp.boot_status != "Pending":
        return {"status": "Rejected"}
    ok = fn(cp, n)
    cp.log("trigger: %s%s %s" % (what, "" if n is None else " connector %d" % n,
                                 "accepted" if ok else "rejected"))
    return {"status": "Accepted" if ok else "Rejected"}
