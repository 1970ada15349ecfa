"""Constants shared by the charge point's modules and the application: connector states,
the application API's result codes, fault codes, link states.  A module of its own so
that nothing imports chargepoint (and all it pulls in) for a constant."""
from micropython import const

VERSION = "0.2.0"                 # the firmware's, in BootNotification

# Connector states (indexes into messages.STATUSES)
AVAILABLE = const(0)
PREPARING = const(1)
CHARGING = const(2)
SUSPENDED_EVSE = const(3)
SUSPENDED_EV = const(4)
FINISHING = const(5)
RESERVED = const(6)
UNAVAILABLE = const(7)
FAULTED = const(8)

# Result codes of the application API (returned at once)
QUEUED = "Queued"
BUSY = "Busy"
NO_TRANSACTION = "NoTransaction"
BAD_CONNECTOR = "BadConnector"
NOT_AVAILABLE = "Unavailable"
OFFLINE = "Offline"
STORAGE_FULL = "StorageFull"

# The local list and the central system disagree about a tag (sessions.listed).
LOCAL_LIST_CONFLICT = b"LocalListConflict"
# OCPP 1.6 ChargePointErrorCode values a fault may carry (NoError is no fault).
ERROR_CODES = (b"ConnectorLockFailure", b"EVCommunicationError", b"GroundFailure",
               b"HighTemperature", b"InternalError", b"LocalListConflict", b"OtherError",
               b"OverCurrentFailure", b"OverVoltage", b"PowerMeterFailure",
               b"PowerSwitchFailure", b"ReaderFailure", b"ResetFailure", b"UnderVoltage",
               b"WeakSignal")

# Link states (link_state)
LINK_DOWN = const(0)              # offline: the link is gone, or attempts to make it fail
LINK_CONNECTING = const(1)        # a first attempt (at power-on, after the link was lost)
LINK_UP = const(2)

# The car's state as a control pilot reads it (IEC 61851-1), board.ev_state(n)
EV_A = const(0)                   # no EV connected (12 V)
EV_B = const(1)                   # connected, not charging (9 V)
EV_C = const(2)                   # charging (6 V)
EV_D = const(3)                   # charging, ventilation required (3 V)
EV_E = const(4)                   # no pilot: shorted or no supply (0 V)
EV_F = const(5)                   # error (-12 V, or the EV's diode missing)
MIN_OFFER_A10 = const(60)         # below 6.0 A nothing is offered: the session pauses
