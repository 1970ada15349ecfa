"""Core profile operations the central system calls: handler(cp, payload) -> answer.

The table (action -> function name) is chargepoint._CORE; this module is imported at
the first CALL from the central system.

Handlers answer at once and never await a CALL of their own (the receiver delivers those
answers); work that needs the link is queued for the sender.
"""
from ocpp16.rpc import CallError, field, only
from ocpp16 import states as C


def _connector(cp, p, name="connectorId", allow_zero=True):
    n = field(p, name, int)
    if n < 0 or n > cp.connectors or (n == 0 and not allow_zero):
        return None
    return n


def change_availability(cp, p):
    only(p, ("connectorId", "type"))
    n = field(p, "connectorId", int)
    typ = field(p, "type", str)
    if typ not in ("Inoperative", "Operative"):
        raise CallError("PropertyConstraintViolation", "type")
    if n < 0 or n > cp.connectors:
        return {"status": "Rejected"}
    return {"status": cp.change_availability(n, typ == "Inoperative")}


def change_configuration(cp, p):
    only(p, ("key", "value"))
    key = field(p, "key", str, maxlen=50)
    value = field(p, "value", str, maxlen=500)
    status = cp.cfg.change(key, value)
    cp.log("config: %s := %s -> %s" % (key, cp.cfg.describe(key) if status == "Accepted"
                                        or status == "RebootRequired" else "(unchanged)", status))
    if status == "Accepted" and key == "AuthorizationKey":
        cp.reconnect_soon()   # the new password applies from the next connection
    return {"status": status}


def clear_cache(cp, p):
    only(p, ())
    cp.cache.clear()
    return {"status": "Accepted"}


def data_transfer(cp, p):
    only(p, ("vendorId", "messageId", "data"))
    vendor = field(p, "vendorId", str, maxlen=255)
    field(p, "messageId", str, False, maxlen=50)
    field(p, "data", str, False)
    hook = cp.data_transfer_handler
    if hook is None or vendor != cp.vendor_id:
        return {"status": "UnknownVendorId"}
    return hook(p)


def get_configuration(cp, p):
    only(p, ("key",))
    keys = field(p, "key", list, False)
    if keys is not None:
        for k in keys:
            if not isinstance(k, str):
                raise CallError("TypeConstraintViolation", "key")
            if len(k) > 50:
                raise CallError("PropertyConstraintViolation", "key longer than 50")
        if len(keys) > cp.cfg.get("GetConfigurationMaxKeys"):
            raise CallError("OccurenceConstraintViolation", "too many keys")
    cfg = cp.cfg
    keys = keys or None

    def answer(w):
        # Written straight into the answer buffer, key by key: a full answer is ~40
        # entries, as dicts several KB of RAM for a moment.
        w.raw(b'{"configurationKey":[')
        sep = unknown = False
        for k, ro, v in cfg.each(keys):
            if ro is None:
                unknown = True
                continue
            if sep:
                w.byte(44)
            sep = True
            w.raw(b'{"key":')
            w.str(k)
            w.raw(b',"readonly":true,"value":' if ro else b',"readonly":false,"value":')
            w.str(v)
            w.byte(125)
        w.byte(93)
        if unknown:
            w.raw(b',"unknownKey":[')
            sep = False
            for k, ro, _ in cfg.each(keys):
                if ro is None:
                    if sep:
                        w.byte(44)
                    sep = True
                    w.str(k)
            w.byte(93)
        w.byte(125)
    return answer


def remote_start(cp, p):
    only(p, ("connectorId", "idTag", "chargingProfile"))
    tag = field(p, "idTag", str, maxlen=20)
    if not tag:
        raise CallError("PropertyConstraintViolation", "idTag is empty")
    n = field(p, "connectorId", int, False) if p.get("connectorId") is not None else None
    prof = None
    if p.get("chargingProfile") is not None:     # JSON null = absent
        from ocpp16.chargingprofile import remote_profile
        prof = remote_profile(cp, field(p, "chargingProfile", dict))
        if prof is None:
            return {"status": "Rejected"}        # not a TxProfile (TC_060), or not valid
    if not cp.registered:
        # Not allowed before the boot is Accepted (spec 4.2); Accepted and then dropped
        # would be worse than a clear Rejected.
        cp.log("session: RemoteStartTransaction before the boot was Accepted: Rejected")
        return {"status": "Rejected"}
    if n is None:
        n = cp.free_connector()
    if n is None or n < 1 or n > cp.connectors or cp.sessions.busy(n) \
            or cp.unavailable(n) or cp.status[n] == C.FAULTED:
        return {"status": "Rejected"}
    rv = cp.part("reservations", False)
    if rv:
        n = rv.remote_connector(n, tag)      # the tag's reserved connector, if it has one
        if rv.admit(n, tag, None, True) is False:
            return {"status": "Rejected"}    # reserved for another tag (no group to learn)
    if prof is not None and not cp.part("smartcharging").pending(n, tag, prof):
        return {"status": "Rejected"}        # beyond the profile limits
    cp.remote_start(n, tag)
    return {"status": "Accepted"}


def remote_stop(cp, p):
    only(p, ("transactionId",))
    txid = field(p, "transactionId", int)
    n = cp.connector_of_txid(txid)
    if n is None:
        return {"status": "Rejected"}
    cp.sessions.stop(n, "Remote")
    return {"status": "Accepted"}


def reset(cp, p):
    only(p, ("type",))
    typ = field(p, "type", str)
    if typ not in ("Hard", "Soft"):
        raise CallError("PropertyConstraintViolation", "type")
    cp.schedule_reset(typ)
    return {"status": "Accepted"}


def unlock(cp, p):
    only(p, ("connectorId",))
    n = _connector(cp, p, allow_zero=False)
    b = cp.board
    # NotSupported: an unknown connector, a board without a lock (esp32_s0), or a fixed
    # cable (nothing to unlock, so a running transaction goes on: TC_017_2, TC_018_2).
    if n is None or not hasattr(b, "unlock") or (hasattr(b, "fixed_cable") and b.fixed_cable(n)):
        return {"status": "NotSupported"}
    # A socket: the transaction ends first (relay open), then the lock is released.
    cp.sessions.stop(n, "UnlockCommand")
    return {"status": "Unlocked" if b.unlock(n) else "UnlockFailed"}
