"""Payload encoders for the CALLs the charger sends.

Each encoder writes one payload object into a jsonw.Writer: `encode(w, arg)`.  Keys are
bytes constants and values are written as tokens, so building a frame allocates nothing.
This is where every CP-initiated message is built; see rpc.Rpc.call for the envelope.
"""
from ocpp16.clock import write_iso

BOOT = b"BootNotification"
HEARTBEAT = b"Heartbeat"
STATUS = b"StatusNotification"
DIAGNOSTICS_STATUS = b"DiagnosticsStatusNotification"
FIRMWARE_STATUS = b"FirmwareStatusNotification"

# StatusNotification status values, indexed by the connector state numbers of
# chargepoint.py (AVAILABLE = 0 ... FAULTED = 8).
STATUSES = (b"Available", b"Preparing", b"Charging", b"SuspendedEVSE", b"SuspendedEV",
            b"Finishing", b"Reserved", b"Unavailable", b"Faulted")


def heartbeat(w, _):
    w.raw(b"{}")


def status_only(w, status):
    """{"status": status}: DiagnosticsStatusNotification, FirmwareStatusNotification."""
    w.raw(b'{"status":')
    w.str(status)
    w.byte(125)


def boot(w, info):
    """info: the board's identity, a dict of optional BootNotification fields (CiString-limited)."""
    w.raw(b'{"chargePointVendor":')
    w.str(info["vendor"][:20])
    w.raw(b',"chargePointModel":')
    w.str(info["model"][:20])
    for key, name, limit in _BOOT_OPTIONAL:
        v = info.get(name)
        if v:
            w.raw(key)
            w.str(v[:limit])
    w.raw(b"}")


_BOOT_OPTIONAL = (
    (b',"chargePointSerialNumber":', "serial", 25),
    (b',"chargeBoxSerialNumber":', "box_serial", 25),
    (b',"firmwareVersion":', "firmware", 50),
    (b',"iccid":', "iccid", 20),
    (b',"imsi":', "imsi", 20),
    (b',"meterType":', "meter_type", 25),
    (b',"meterSerialNumber":', "meter_serial", 25),
)


def status(w, cp_conn):
    """cp_conn: (ChargePoint, connectorId); writes the connector's current state."""
    cp, n = cp_conn
    w.raw(b'{"connectorId":')
    w.int(n)
    w.raw(b',"errorCode":"')
    w.raw(cp.error_code[n])
    w.raw(b'","status":"')
    w.raw(STATUSES[cp.status[n]])
    w.byte(34)
    info = cp.status_info[n]
    if info:
        w.raw(b',"info":')
        w.str(info[:50])
    t = cp.status_time[n]
    if t:
        w.raw(b',"timestamp":')
        write_iso(w, t)
    w.raw(b"}")
