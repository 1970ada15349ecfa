"""Configuration keys: the OCPP 1.6 Core table, vendor settings, persistence on flash.

Each key has a type, an access mode, a default and a range.  Only values that differ
from the defaults are stored (`config.json` in the state directory, replaced atomically),
so a change costs one small file write.  `AuthorizationKey` is write-only: never returned
by GetConfiguration, never logged.
"""
import json
try:
    from micropython import const
except ImportError:     # CPython: tools/deploy.py checks settings with this module
    def const(x):
        return x
from ocpp16 import store

# const(): the KEYS tuples below are then made of constants only, which the compiler
# folds into constant objects (in flash when frozen) instead of 43 tuples built in RAM.
# Types
BOOL = const(0)
INT = const(1)
STR = const(2)
CSL = const(3)   # comma separated list of measurands
# Access
RW = const(0)
R = const(1)
W = const(2)     # write-only (secrets)

# Measurands a board may offer; boards pass the subset they really supply.
MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import",
              "Voltage", "Current.Offered", "Power.Offered", "Temperature", "SoC")

# name: (type, access, default, min, max, reboot_required)
# For CSL keys `max` is the maximum number of items.
KEYS = {
    "AllowOfflineTxForUnknownId": (BOOL, RW, False, 0, 0, 0),
    "AuthorizationCacheEnabled": (BOOL, RW, True, 0, 0, 0),
    "AuthorizeRemoteTxRequests": (BOOL, RW, True, 0, 0, 0),
    "BlinkRepeat": (INT, RW, 3, 0, 100, 0),
    "ClockAlignedDataInterval": (INT, RW, 0, 0, 86400, 0),
    "ConnectionTimeOut": (INT, RW, 60, 1, 3600, 0),
    "ConnectorPhaseRotation": (STR, RW, "0.Unknown", 0, 500, 0),
    "ConnectorPhaseRotationMaxLength": (INT, R, 8, 0, 0, 0),
    "GetConfigurationMaxKeys": (INT, R, 64, 0, 0, 0),
    "HeartbeatInterval": (INT, RW, 86400, 1, 604800, 0),
    "LightIntensity": (INT, RW, 100, 0, 100, 0),
    "LocalAuthorizeOffline": (BOOL, RW, True, 0, 0, 0),
    "LocalPreAuthorize": (BOOL, RW, False, 0, 0, 0),
    "MaxEnergyOnInvalidId": (INT, RW, 0, 0, 1000000, 0),
    "MessageTimeout": (INT, RW, 30, 5, 600, 0),
    "MeterValuesAlignedData": (CSL, RW, "Energy.Active.Import.Register", 0, 4, 0),
    "MeterValuesAlignedDataMaxLength": (INT, R, 4, 0, 0, 0),
    "MeterValuesSampledData": (CSL, RW, "Energy.Active.Import.Register", 0, 4, 0),
    "MeterValuesSampledDataMaxLength": (INT, R, 4, 0, 0, 0),
    "MeterValueSampleInterval": (INT, RW, 60, 0, 86400, 0),
    "MinimumStatusDuration": (INT, RW, 0, 0, 3600, 0),
    "NumberOfConnectors": (INT, R, 1, 0, 0, 0),
    "ResetRetries": (INT, RW, 3, 0, 10, 0),
    "StopTransactionMaxMeterValues": (INT, R, 64, 0, 0, 0),
    "StopTransactionOnEVSideDisconnect": (BOOL, RW, True, 0, 0, 0),
    "StopTransactionOnInvalidId": (BOOL, RW, True, 0, 0, 0),
    "StopTxnAlignedData": (CSL, RW, "", 0, 4, 0),
    "StopTxnAlignedDataMaxLength": (INT, R, 4, 0, 0, 0),
    "StopTxnSampledData": (CSL, RW, "", 0, 4, 0),
    "StopTxnSampledDataMaxLength": (INT, R, 4, 0, 0, 0),
    "SupportedFeatureProfiles": (STR, R, "Core,LocalAuthListManagement,Reservation,"
                                 "RemoteTrigger,SmartCharging,FirmwareManagement", 0, 0, 0),
    "SupportedFeatureProfilesMaxLength": (INT, R, 6, 0, 0, 0),
    "TransactionMessageAttempts": (INT, RW, 3, 1, 100, 0),
    "TransactionMessageRetryInterval": (INT, RW, 60, 0, 86400, 0),
    "UnlockConnectorOnEVSideDisconnect": (BOOL, RW, True, 0, 0, 0),
    "WebSocketPingInterval": (INT, RW, 60, 0, 86400, 0),
    # LocalAuthListManagement (locallist.py): the limits are what the list file holds and
    # what one SendLocalList frame can carry in the receive buffer.
    "LocalAuthListEnabled": (BOOL, RW, True, 0, 0, 0),
    "LocalAuthListMaxLength": (INT, R, 5000, 0, 0, 0),
    "SendLocalListMaxLength": (INT, R, 20, 0, 0, 0),
    # Reservation (reservations.py)
    "ReserveConnectorZeroSupported": (BOOL, R, True, 0, 0, 0),
    # SmartCharging (smartcharging.py): the limits of what is stored
    "ChargeProfileMaxStackLevel": (INT, R, 8, 0, 0, 0),
    "ChargingScheduleAllowedChargingRateUnit": (STR, R, "Current,Power", 0, 0, 0),
    "ChargingScheduleMaxPeriods": (INT, R, 24, 0, 0, 0),
    "MaxChargingProfilesInstalled": (INT, R, 10, 0, 0, 0),
    "ConnectorSwitch3to1PhaseSupported": (BOOL, R, False, 0, 0, 0),
    # Vendor: the nominal voltage for W <-> A, and the power a load-management or dimming
    # contact caps the charger at while it is active (offer.py).
    "NominalVoltage": (INT, RW, 230, 100, 480, 0),
    "LocalPowerLimit": (INT, RW, 4200, 0, 1000000, 0),
    # FirmwareManagement, diagnostics (diagnostics.py, transfer.py; diaglog.py): the
    # protocols GetDiagnostics can upload with (HTTPS: with a CA bundle); the size of
    # the diagnostics log ring on flash (vendor key).
    "SupportedFileTransferProtocols": (STR, R, "FTP,HTTP,HTTPS", 0, 0, 0),
    "DiagnosticsLogKB": (INT, RW, 32, 4, 1024, 0),
    # Security whitepaper (profiles 1 and 2)
    "AuthorizationKey": (STR, W, "", 1, 40, 0),
    "SecurityProfile": (INT, RW, 0, 0, 2, 1),
    # Vendor settings: provisioning, not changeable over OCPP.
    "ChargePointId": (STR, R, "CP001", 1, 48, 0),
    "CentralSystemUrl": (STR, R, "ws://127.0.0.1:9000/ocpp", 1, 256, 0),
    "ReconnectMinSeconds": (INT, RW, 2, 1, 3600, 0),
    "ReconnectMaxSeconds": (INT, RW, 120, 1, 86400, 0),
    # The wall clock before TLS (wallclock.py): host or host:port, "" = none.
    "NtpServer": (STR, RW, "pool.ntp.org", 0, 64, 0),
}

ACCEPTED = "Accepted"
REJECTED = "Rejected"
REBOOT = "RebootRequired"
NOT_SUPPORTED = "NotSupported"


def _fmt(t, v):
    if t == BOOL:
        return "true" if v else "false"
    return str(v)


class Config:
    """Typed key/value store backed by `path` (JSON of the non-default values)."""

    def __init__(self, path, connectors=1, measurands=MEASURANDS, log=print):
        self.path = path
        self.log = log
        self.measurands = measurands
        self._v = {}
        self._listeners = []
        raw = store.read(path)
        if raw:
            try:
                saved = json.loads(raw)
                for k in saved:
                    if k in KEYS:
                        self._v[k] = saved[k]
            except ValueError:
                log("config: %s is unreadable, using defaults" % path)
        self._v["NumberOfConnectors"] = connectors

    def get(self, name):
        v = self._v.get(name)
        return KEYS[name][2] if v is None else v

    def csl(self, name):
        """A CSL key as a tuple of items (empty tuple for '')."""
        v = self.get(name)
        return tuple(x.strip() for x in v.split(",")) if v else ()

    def on_change(self, fn):
        """Call fn(name, value) after every accepted change (e.g. to reschedule timers)."""
        self._listeners.append(fn)

    def _parse(self, name, text):
        """A ChangeConfiguration value as the key's type; ValueError when it is not one.

        Strict, so that what is Accepted reads back as it was meant: a boolean is exactly
        "true" or "false"; an integer is an optional '-' and ASCII digits, nothing else
        (int() alone takes spaces, '+', and '_' -- MicroPython reads "1_0" as 10).
        Leading zeros are accepted and read back canonical ("007" -> "7"): it is still
        a decimal integer, and refusing it would gain nothing."""
        t, acc, _, lo, hi, _ = KEYS[name]
        if t == BOOL:
            if text == "true":
                return True
            if text == "false":
                return False
            raise ValueError
        if t == INT:
            n = len(text)
            i = 1 if n and text[0] == "-" else 0
            if i == n:
                raise ValueError            # "" or "-"
            while i < n:
                if not "0" <= text[i] <= "9":   # not isdigit(): CPython's takes "²", "٣"
                    raise ValueError
                i += 1
            v = int(text)
            if (lo or hi) and not lo <= v <= hi:
                raise ValueError
            return v
        if t == CSL:
            # Spaces around the items are tolerated; the list is stored normalised.
            items = [x.strip() for x in text.split(",")] if text.strip() else []
            if len(items) > hi:
                raise ValueError
            for x in items:
                if x not in self.measurands:
                    raise ValueError  # one bad measurand rejects the whole list
            return ",".join(items)
        if len(text) > hi or len(text) < lo:
            raise ValueError
        return text

    def change(self, name, text):
        """ChangeConfiguration: returns Accepted, Rejected, RebootRequired or NotSupported."""
        spec = KEYS.get(name)
        if spec is None:
            return NOT_SUPPORTED
        if spec[1] == R:
            return REJECTED
        if not isinstance(text, str):
            return REJECTED
        try:
            v = self._parse(name, text)
        except ValueError:
            return REJECTED
        if name == "SecurityProfile" and v < self.get(name):
            return REJECTED  # the whitepaper forbids downgrades
        self.put(name, v)
        return REBOOT if spec[5] else ACCEPTED

    def put(self, name, value):
        """Set a typed value locally (provisioning, command-line flags) and persist it."""
        if self.get(name) == value and name in self._v:
            return
        if value == KEYS[name][2]:
            self._v.pop(name, None)
        else:
            self._v[name] = value
        self.save()
        for fn in self._listeners:
            fn(name, value)

    def save(self):
        d = {}
        for k in self._v:
            if k != "NumberOfConnectors":
                d[k] = self._v[k]
        store.atomic_write(self.path, json.dumps(d))

    def entries(self, names=None):
        """GetConfiguration: ([(key, readonly, value_str)], [unknown keys]); write-only keys hidden."""
        known = []
        unknown = []
        for k, ro, v in self.each(names):
            if ro is None:
                unknown.append(k)
            else:
                known.append((k, ro, v))
        return known, unknown

    def each(self, names=None):
        """The entries one at a time, (key, readonly, value_str), or (key, None, None) for
        a name that is unknown; write-only keys are hidden (reported unknown when asked
        for, rather than leaked)."""
        for k in (names if names else KEYS):
            spec = KEYS.get(k)
            if spec is None or spec[1] == W:
                if names:
                    yield k, None, None
                continue
            yield k, spec[1] == R, _fmt(spec[0], self.get(k))

    def describe(self, name):
        """A key's value for logs: secrets masked."""
        return "***" if KEYS[name][1] == W else _fmt(KEYS[name][0], self.get(name))
