"""Frames for tests/test_fuzz.py: hypothesis strategies and the oracle that says what the
charger must do with each frame.

Three kinds of frames, each a `Frame` (a text template whose `@UID@` is replaced by a
fresh uniqueId when it is sent):

- schema-valid CALLs of every central-system-to-charger action, generated with
  hypothesis-jsonschema from the official OCPP 1.6 schemas the `ocpp` package ships
  (`valid_frames`);
- near-valid CALLs: a valid request with one fault (a field removed, retyped, out of
  range, too long, an extra field, a wrong enum value, a lone surrogate) or with
  non-BMP text (`near_valid_frames`);
- hostile frames: broken OCPP-J arrays, answers with unknown uniqueIds or broken
  shapes, deep nesting, huge strings, truncated JSON, text that is not JSON at all
  (`hostile_frames`, `CURATED`).

`expect(text)` reads a frame as the charger must (OCPP-J and RFC 6455) and returns an
`Expect`; `judge(expect, answers)` compares it with what the charger answered.  The
oracle works on the text alone, so it also judges frames it did not generate.
"""
import json
import re
import sys
from pathlib import Path

import ocpp
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft4Validator

SCHEMA_DIR = Path(ocpp.__file__).resolve().parent / "v16" / "schemas"
RX_BUFFER = 4096            # firmware/main.py: the websocket receive buffer
MAX_UID = 36                # [J] 4.1.4

# What the charger implements today (lib/ocpp16/handlers.py).
IMPLEMENTED = ("ChangeAvailability", "ChangeConfiguration", "ClearCache", "DataTransfer",
               "GetConfiguration", "RemoteStartTransaction", "RemoteStopTransaction", "Reset",
               "UnlockConnector", "TriggerMessage", "GetLocalListVersion", "CancelReservation",
               "ClearChargingProfile", "GetCompositeSchedule")
# Implemented but not sent in the fuzz: they would change what later steps see (a
# reserved connector, a local list that blocks our tags, a charging limit that pauses
# the sessions, an upload in the background, a firmware update and its restart).
IMPLEMENTED_UNFUZZED = ("ReserveNow", "SendLocalList", "SetChargingProfile", "GetDiagnostics",
                        "UpdateFirmware")
# Central-system-to-charger actions it does not implement, sent in the fuzz.  Not among
# them: the certificate operations.
UNIMPLEMENTED = ()
CS_TO_CP = IMPLEMENTED + IMPLEMENTED_UNFUZZED + UNIMPLEMENTED + (
    "CertificateSigned",
    "DeleteCertificate", "ExtendedTriggerMessage", "GetInstalledCertificateIds", "GetLog",
    "InstallCertificate", "SignedUpdateFirmware")
# Charger-to-central-system actions: sent to the charger they are not implemented there.
CP_TO_CS = ("Authorize", "BootNotification", "DiagnosticsStatusNotification",
            "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction",
            "StatusNotification", "StopTransaction", "SecurityEventNotification",
            "SignCertificate", "LogStatusNotification", "SignedFirmwareStatusNotification")
FUZZ_ACTIONS = tuple(a for a in IMPLEMENTED if a != "Reset")   # Reset: its own test

OCPP_J_CODES = frozenset((
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
    "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
    "TypeConstraintViolation", "GenericError"))
UNKNOWN_ACTION = frozenset(("NotImplemented", "NotSupported"))

# The OCPP-J code(s) that fit each kind of schema fault ([J] 4.2.3):
#   ProtocolError               "Payload for Action is incomplete"
#   FormationViolation          "... syntactically incorrect or not conform the PDU structure"
#   PropertyConstraintViolation "... at least one field contains an invalid value"
#   OccurenceConstraintViolation "... violates occurence constraints"
#   TypeConstraintViolation     "... violates data type constraints"
FITTING = {
    "required": {"OccurenceConstraintViolation", "ProtocolError", "FormationViolation"},
    "type": {"TypeConstraintViolation", "FormationViolation"},
    "maxLength": {"PropertyConstraintViolation", "TypeConstraintViolation",
                  "FormationViolation"},
    "enum": {"PropertyConstraintViolation", "FormationViolation"},
    "additionalProperties": {"FormationViolation", "PropertyConstraintViolation",
                             "OccurenceConstraintViolation"},
    "surrogate": {"PropertyConstraintViolation", "TypeConstraintViolation",
                  "FormationViolation"},
}
OTHER_FAULT = {"PropertyConstraintViolation", "TypeConstraintViolation", "FormationViolation",
               "OccurenceConstraintViolation"}
# A CALL that is not [2, id, action:str, payload] ("broken CALL shape").
SHAPE = {"FormationViolation"}
# A payload that is not an object: the existing tests (test_rpc_robustness) accept this too.
NOT_OBJECT = {"FormationViolation", "TypeConstraintViolation"}


# -- schemas ------------------------------------------------------------------------------

_schemas = {}


def schema(name):
    """The official schema `<name>.json` (e.g. "Reset", "ResetResponse"), or None."""
    if not re.fullmatch(r"[A-Za-z]{1,60}", name):
        return None
    if name not in _schemas:
        p = SCHEMA_DIR / (name + ".json")
        _schemas[name] = json.loads(p.read_text()) if p.exists() else None
    return _schemas[name]


_validators = {}


def validator(name):
    if name not in _validators:
        s = schema(name)
        _validators[name] = Draft4Validator(s) if s is not None else None
    return _validators[name]


def _bounded(s, max_len=60, max_items=8):
    """A copy of schema `s` with every unbounded string or array bounded: what it accepts
    is still schema-valid, and a frame stays well inside the 4 KB receive buffer."""
    if isinstance(s, dict):
        s = {k: _bounded(v, max_len, max_items) for k, v in s.items()}
        if s.get("type") == "string" and "maxLength" not in s and "enum" not in s \
                and "format" not in s:
            s["maxLength"] = max_len
        if s.get("type") == "array" and "maxItems" not in s:
            s["maxItems"] = max_items
        s.pop("$schema", None)
        return s
    if isinstance(s, list):
        return [_bounded(v, max_len, max_items) for v in s]
    return s


# -- values that matter to the charger ----------------------------------------------------

# lib/ocpp16/config.py, by name (that module is MicroPython code).
CONFIG_KEYS = (
    "AllowOfflineTxForUnknownId", "AuthorizationCacheEnabled", "AuthorizeRemoteTxRequests",
    "BlinkRepeat", "ClockAlignedDataInterval", "ConnectionTimeOut", "ConnectorPhaseRotation",
    "ConnectorPhaseRotationMaxLength", "GetConfigurationMaxKeys", "HeartbeatInterval",
    "LightIntensity", "LocalAuthorizeOffline", "LocalPreAuthorize", "MaxEnergyOnInvalidId",
    "MessageTimeout", "MeterValuesAlignedData", "MeterValuesAlignedDataMaxLength",
    "MeterValuesSampledData", "MeterValuesSampledDataMaxLength", "MeterValueSampleInterval",
    "MinimumStatusDuration", "NumberOfConnectors", "ResetRetries",
    "StopTransactionMaxMeterValues", "StopTransactionOnEVSideDisconnect",
    "StopTransactionOnInvalidId", "StopTxnAlignedData", "StopTxnAlignedDataMaxLength",
    "StopTxnSampledData", "StopTxnSampledDataMaxLength", "SupportedFeatureProfiles",
    "SupportedFeatureProfilesMaxLength", "TransactionMessageAttempts",
    "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect",
    "WebSocketPingInterval", "ChargePointId", "CentralSystemUrl", "ReconnectMinSeconds",
    "ReconnectMaxSeconds")
# Keys whose change legitimately ends the session: never sent in the fuzz.
FORBIDDEN_KEYS = ("AuthorizationKey", "SecurityProfile")
# Keys that govern the link: only values that keep it usable (a tiny ping interval, a
# reconnect backoff of an hour).  Their other values are just as (in)valid for the
# charger; the harness restores every key after each burst.
SAFE_VALUES = {
    "WebSocketPingInterval": ("0", "60", "300", "abc", "-1", "", "86401", "1e3"),
    "ReconnectMinSeconds": ("1", "2", "0", "-1", "x", "3601", ""),
    "ReconnectMaxSeconds": ("1", "2", "0", "-5", "x", "86401", ""),
}
MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import",
              "Voltage", "Current.Offered", "Temperature", "SoC", "Energy.Reactive.Export",
              "Bogus")
NON_BMP = "\U0001F697\U0001F50C\U00010348\U0001F600"

def _text(max_size):
    """Text with non-BMP characters (written as surrogate pairs) more often than
    st.text() draws them: they are what a charger's JSON and UTF-8 handling trips on."""
    return st.text(alphabet=st.one_of(st.characters(exclude_categories=("Cs",)),
                                      st.sampled_from(NON_BMP + "\u00e9\u4e2d")),
                   max_size=max_size)


_int_text = st.one_of(st.integers(-5, 100000).map(str),
                      st.sampled_from(["", "abc", " 7 ", "+3", "1.5", "99999999999999999999",
                                       "0x10", "-0", "1_0", "\u0661"]))
_bool_text = st.sampled_from(["true", "false", "True", "FALSE", "yes", "1", "", " true "])
_csl_text = st.lists(st.sampled_from(MEASURANDS), max_size=5).map(",".join)


def _config_value(key):
    if key in SAFE_VALUES:
        return st.sampled_from(SAFE_VALUES[key])
    return st.one_of(_int_text, _bool_text, _csl_text, _text(500))


@st.composite
def _change_configuration(draw):
    key = draw(st.one_of(st.sampled_from(CONFIG_KEYS), _text(50)))
    if key in FORBIDDEN_KEYS:
        key = "X" + key
    return {"key": key, "value": draw(_config_value(key))}


_connector = st.one_of(st.sampled_from([0, 1, 2, -1]), st.integers())
_known_keys = st.lists(st.one_of(st.sampled_from(CONFIG_KEYS + ("AuthorizationKey",)),
                                 _text(50)), max_size=8)


def _with(base, **fields):
    """Strategy: a payload from `base` with some fields maybe replaced (still valid)."""
    extra = st.fixed_dictionaries({}, optional=fields)
    return st.tuples(base, extra).map(lambda t: {**t[0], **t[1]})


_payload_cache = {}


def valid_payload(action):
    """Strategy: a payload valid against the schema of `action` (a CS->CP request),
    biased towards values the charger acts on (its connector, its configuration keys)."""
    if action in _payload_cache:
        return _payload_cache[action]
    base = from_schema(_bounded(schema(action)))
    if action == "ChangeConfiguration":
        s = _change_configuration()
    elif action in ("ChangeAvailability", "UnlockConnector"):
        s = _with(base, connectorId=_connector)
    elif action == "RemoteStartTransaction":
        s = _with(base, connectorId=_connector, idTag=_text(20))
    elif action == "GetConfiguration":
        s = _with(base, key=_known_keys)
    elif action == "DataTransfer":
        s = _with(base, vendorId=st.one_of(st.sampled_from(["mpocpp", "other", ""]), _text(255)),
                  data=_text(200))
    else:
        s = base
    _payload_cache[action] = s
    return s


# -- frames -------------------------------------------------------------------------------

UID = "@UID@"


class Frame:
    """A frame to send: `template` with UID replaced by a fresh uniqueId (templates
    without UID carry their own), optionally cut to its first `cut` characters."""

    __slots__ = ("template", "cut", "note")

    def __init__(self, template, cut=None, note=""):
        self.template = template
        self.cut = cut
        self.note = note

    def render(self, uid):
        t = self.template.replace(UID, uid)
        return t if self.cut is None else t[:self.cut]

    def __repr__(self):
        text = self.render("U")
        if len(text) > 300:
            text = "%s...<%d chars>...%s" % (text[:150], len(text), text[-60:])
        return "Frame(%r%s)" % (text, ", note=%r" % self.note if self.note else "")


def dumps(value, ascii_only=True):
    """JSON as a central system writes it: compact; non-ASCII escaped (non-BMP characters
    as surrogate pairs, "EV\\ud83d\\ude97") or written raw as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)


def call(action, payload, ascii_only=True, note=""):
    return Frame('[2,"%s",%s,%s]' % (UID, dumps(action), dumps(payload, ascii_only)),
                 note=note)


def has_lone_surrogate(v):
    """True when a string anywhere in `v` (nested to any depth) holds a surrogate."""
    stack = [v]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                return True
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
    return False


def unsafe(text):
    """Why a frame must not be sent in a burst (it would legitimately end the session,
    or it is not one command line), or None."""
    if "\n" in text or "\r" in text or not text.strip():
        return "not one command line"
    if text != text.strip():
        return "outer whitespace (the csms strips it)"
    try:
        msg = loads(text)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(msg, list) and len(msg) >= 4 and msg[0] == 2):
        return None
    action, p = msg[2], msg[3]
    if action == "Reset" and isinstance(p, dict) and p.get("type") in ("Hard", "Soft"):
        return "Reset restarts the charger"
    if action == "ChangeConfiguration" and isinstance(p, dict):
        k, v = p.get("key"), p.get("value")
        if k in FORBIDDEN_KEYS:
            return "%s ends the session" % k
        if k in SAFE_VALUES and v not in SAFE_VALUES[k]:
            return "%s := %r could make the link unusable" % (k, v)
    return None


def safe(strategy):
    return strategy.filter(lambda f: unsafe(f.render("u1")) is None)


@st.composite
def valid_frame(draw, actions=FUZZ_ACTIONS + UNIMPLEMENTED):
    action = draw(st.sampled_from(actions))
    payload = draw(valid_payload(action))
    raw = not has_lone_surrogate(payload) and draw(st.booleans())
    return call(action, payload, ascii_only=not raw, note="valid")


def valid_frames(actions=FUZZ_ACTIONS + UNIMPLEMENTED, max_size=6):
    return st.lists(safe(valid_frame(actions)), min_size=1, max_size=max_size)


# Values of every JSON type, to put where another type belongs.
_ANY_TYPE = (0, -1, 1.5, 1.0, 1e308, "1", "", "Soft", True, False, None, [], {}, ["x"],
             {"a": 1})
_BIG_INTS = (2 ** 31, -2 ** 31 - 1, 2 ** 63, -2 ** 63 - 1, 10 ** 30, -10 ** 30, -1, 0, 2 ** 64 + 1)
_MUTATIONS = ("remove", "retype", "range", "long", "extra", "enum", "surrogate", "nonbmp",
              "null")


def _type_of(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _lone():
    return st.integers(0xD800, 0xDFFF).map(chr)


@st.composite
def near_valid_frame(draw, actions=FUZZ_ACTIONS + UNIMPLEMENTED, kinds=_MUTATIONS):
    """A valid request with one fault, or with non-BMP text.  The oracle decides what the
    charger must answer: some mutations (an integer out of the charger's range, non-BMP
    text within maxLength) stay schema-valid."""
    action = draw(st.sampled_from(actions))
    p = dict(draw(valid_payload(action)))
    props = schema(action).get("properties", {})
    kind = draw(st.sampled_from(kinds))
    # The places a fault goes: top-level fields, and GetConfiguration's key items.
    present = sorted(p)

    def pick(pred=lambda name, spec: True):
        names = [n for n in present if n in props and pred(n, props[n])]
        return draw(st.sampled_from(names)) if names else None

    note = kind
    if kind == "remove":
        req = [n for n in schema(action).get("required", []) if n in p]
        if req:
            del p[draw(st.sampled_from(req))]
        else:
            kind = "extra"
    if kind in ("retype", "null"):
        name = pick()
        if name is None:
            kind = "extra"
        else:
            want = props[name].get("type")
            if kind == "null":
                p[name] = None
            else:
                p[name] = draw(st.sampled_from(
                    [v for v in _ANY_TYPE if _type_of(v) != want
                     and not (want == "number" and _type_of(v) == "integer")]))
            note = "%s %s" % (kind, name)
    if kind == "range":
        name = pick(lambda n, s: s.get("type") == "integer")
        if name is None:
            kind = "long"
        else:
            p[name] = draw(st.sampled_from(_BIG_INTS))
            note = "range %s=%d" % (name, p[name])
    if kind in ("long", "surrogate", "nonbmp"):
        name = pick(lambda n, s: s.get("type") == "string" and "enum" not in s)
        if name is None and action == "GetConfiguration":
            name = "key"
            p["key"] = list(p.get("key") or []) + ["HeartbeatInterval"]
        if name is None:
            kind = "extra"
        else:
            limit = props[name].get("maxLength", 60) if name != "key" or \
                action != "GetConfiguration" else 50
            if kind == "long":
                n = limit + draw(st.integers(1, 40))
                s = draw(st.sampled_from(["a", "\u00e9", NON_BMP[0]])) * n
            elif kind == "surrogate":
                base = "EV-" + draw(st.text(max_size=5))
                i = draw(st.integers(0, len(base)))
                s = base[:i] + draw(_lone()) + base[i:]
            else:
                s = draw(st.text(alphabet=st.sampled_from(NON_BMP + "EV-1"), min_size=1,
                                 max_size=min(limit, 20)))
            if name == "key" and action == "GetConfiguration":
                keys = list(p["key"])
                keys[draw(st.integers(0, len(keys) - 1))] = s
                p["key"] = keys
            else:
                p[name] = s
            note = "%s %s" % (kind, name)
    if kind == "enum":
        name = pick(lambda n, s: "enum" in s)
        if name is None:
            kind = "extra"
        else:
            good = props[name]["enum"]
            bad = draw(st.one_of(st.sampled_from([e.lower() for e in good] + [e.upper() for e in good]
                                                 + [e + " " for e in good] + ["", "Unknown"]),
                                 st.text(max_size=12))
                       .filter(lambda v: v not in good))
            p[name] = bad
            note = "enum %s=%r" % (name, bad)
    if kind == "extra":
        name = draw(st.one_of(st.sampled_from(["extra", "", "connectorId", "idTag", "type",
                                               "key", "value", "x" * 60]),
                              st.text(max_size=10)).filter(lambda n: n not in props))
        p[name] = draw(st.sampled_from(_ANY_TYPE))
        note = "extra %r" % name
    raw = not has_lone_surrogate(p) and draw(st.booleans())
    return call(action, p, ascii_only=not raw, note=note)


def _nest(depth, inner="1"):
    return "[" * depth + inner + "]" * depth


CURATED = [Frame(t, note=n) for t, n in (
    # Broken arrays and non-OCPP-J values: ignored, the link stays up.
    ("[]", "empty array"), ("[{}]", ""), ("[2]", ""), ("[null]", ""), ("[3]", ""),
    ("[4]", ""), ("[2,null,\"Reset\",{}]", "uid null"), ("[2,5,\"GetConfiguration\",{}]", "uid int"),
    ('{"a":1}', "object"), ('"text"', "string"), ("42", "number"), ("null", ""), ("true", ""),
    ("this is not json", ""), ("[9,\"zz\",{}]", "unknown type"), ("[0,\"zz\",\"Reset\",{}]", ""),
    ('["2","zz","GetConfiguration",{}]', "type as string"), ("[true,\"zz\",\"Reset\",{}]", ""),
    ("[-2,\"zz\",\"Reset\",{}]", ""), ("[[2],\"zz\",\"Reset\",{}]", ""),
    ('[2,["' + UID + '"],"GetConfiguration",{}]', "uid array"),
    # Answers with unknown uniqueIds or broken shapes: never answered.
    ('[3,"nope",{}]', ""), ('[3,"nope"]', ""), ('[3,"nope",{},1]', ""), ('[3,"nope",[1]]', ""),
    ('[3,null,{}]', ""), ('[3,7,{}]', ""), ('[4,"nope"]', ""), ('[4,"nope","GenericError"]', ""),
    ('[4,"nope","GenericError","",{}]', ""), ('[4,"nope",5,6,7]', ""),
    ('[4,"nope","NoSuchCode","x",{"a":[1,2]}]', ""), ('[4,"zz","GenericError","x",{},1]', ""),
    ('[3,"nope",{"status":"Accepted"', "truncated CALLRESULT"),
    ('[4,"nope","GenericError"', "truncated CALLERROR"),
    # Broken CALL shapes with a readable uniqueId: FormationViolation.
    ('[2,"' + UID + '"]', ""), ('[2,"' + UID + '","GetConfiguration"]', ""),
    ('[2,"' + UID + '","GetConfiguration",{},{}]', "5 elements"),
    ('[2,"' + UID + '",5,{}]', "action int"), ('[2,"' + UID + '",null,{}]', "action null"),
    ('[2,"' + UID + '",["GetConfiguration"],{}]', "action array"),
    ('[2,"' + UID + '","GetConfiguration",[1,2]]', "payload array"),
    ('[2,"' + UID + '","GetConfiguration",null]', "payload null"),
    ('[2,"' + UID + '","GetConfiguration","{}"]', "payload string"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["HeartbeatInterval"]}', "truncated CALL"),
    ('[2,"' + UID + '","GetConfiguration",{"key":[', "truncated CALL"),
    ('[2,"' + UID + '",', "truncated CALL"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["a",]}]', "trailing comma"),
    ('[2,"' + UID + '","GetConfiguration",{key:[]}]', "unquoted key"),
    ("[2,\"" + UID + "\",'GetConfiguration',{}]", "single quotes"),
    ('[2,"' + UID + '","GetConfiguration",{}]]', "trailing bracket"),
    ('[2,"' + UID + '","GetConfiguration",{}] x', "trailing garbage"),
    ('[2,"' + UID + '","GetConfiguration",{"key":[NaN]}]', "NaN"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"v","data":"\\x41"}]', "bad escape"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"v","data":"\\u12"}]', "short \\u escape"),
    # Unknown actions: NotImplemented (or NotSupported).
    ('[2,"' + UID + '","NoSuchAction",{}]', ""), ('[2,"' + UID + '","",{}]', "empty action"),
    ('[2,"' + UID + '","reset",{"type":"Soft"}]', "action case"),
    ('[2,"' + UID + '","Heartbeat",{}]', "CP->CS action"),
    ('[2,"' + UID + '","BootNotification",{"chargePointVendor":"x","chargePointModel":"y"}]',
     "CP->CS action"),
    ('[2,"' + UID + '","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
     '"timestamp":"2026-01-01T00:00:00Z"}]', "CP->CS action"),
    # Profile operations: imported at their first CALL, answered like any other.
    ('[2,"' + UID + '","TriggerMessage",{"requestedMessage":"Heartbeat"}]', ""),
    ('[2,"' + UID + '","GetLocalListVersion",{}]', ""),
    ('[2,"' + UID + '","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{}}]', ""),
    ('[2,"' + UID + '","' + "A" * 300 + '",{}]', "long action"),
    ('[2,"' + UID + '","Get\\u0043onfiguration",{}]', "escaped action name"),
    # Payload faults: a CALLERROR with a fitting code.
    ('[2,"' + UID + '","GetConfiguration",{"key":' + _nest(800, '"HeartbeatInterval"') + '}]',
     "key nested 800 deep"),
    ('[2,"' + UID + '","GetConfiguration",{"key":[' + _nest(40) + ']}]', "key nested 40"),
    ('[2,"' + UID + '","GetConfiguration",{"key":' + '[{"a":' * 300 + '1' + '}]' * 300 + '}]',
     "objects nested 300"),
    ('[2,"' + UID + '","GetConfiguration",{"key":"HeartbeatInterval"}]', "key not a list"),
    ('[2,"' + UID + '","GetConfiguration",{"key":[1,2]}]', "key items int"),
    ('[2,"' + UID + '","GetConfiguration",{"key":[null]}]', ""),
    ('[2,"' + UID + '","GetConfiguration",{"key":["EV\\ud83d"]}]', "lone high surrogate"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["\\ude97EV"]}]', "lone low surrogate"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["\\ude97\\ud83d"]}]', "surrogates swapped"),
    ('[2,"' + UID + '","RemoteStartTransaction",{"idTag":"EV\\ud83d"}]', "idTag lone surrogate"),
    ('[2,"' + UID + '","RemoteStartTransaction",{"idTag":"\\udfff"}]', "idTag lone surrogate"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"\\ud800x"}]', "vendorId lone surrogate"),
    ('[2,"' + UID + '","ChangeConfiguration",{"key":"MessageTimeout","value":"3\\ud83d"}]',
     "value lone surrogate"),
    ('[2,"' + UID + '","ChangeConfiguration",{"key":"Heartbeat\\udc00Interval","value":"30"}]',
     "key lone surrogate"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["' + "k" * 51 + '"]}]', "key too long"),
    ('[2,"' + UID + '","RemoteStartTransaction",{"idTag":"' + "T" * 21 + '"}]', "idTag 21"),
    ('[2,"' + UID + '","RemoteStartTransaction",{"idTag":"' + "\\ud83d\\ude97" * 21 + '"}]',
     "idTag 21 non-BMP"),
    ('[2,"' + UID + '","ChangeAvailability",{"connectorId":1,"type":"inoperative"}]', "enum case"),
    ('[2,"' + UID + '","ChangeAvailability",{"connectorId":1.5,"type":"Operative"}]', "float"),
    ('[2,"' + UID + '","ChangeAvailability",{"connectorId":1.0,"type":"Operative"}]', "1.0"),
    ('[2,"' + UID + '","ChangeAvailability",{"connectorId":true,"type":"Operative"}]', "bool"),
    ('[2,"' + UID + '","ChangeAvailability",{"type":"Operative"}]', "missing connectorId"),
    ('[2,"' + UID + '","ChangeAvailability",{"connectorId":1,"type":"Operative","x":1}]', "extra"),
    ('[2,"' + UID + '","ClearCache",{"x":1}]', "extra field"),
    ('[2,"' + UID + '","ClearCache",{"":null}]', "extra empty field"),
    ('[2,"' + UID + '","UnlockConnector",{"connectorId":"1"}]', "string connectorId"),
    ('[2,"' + UID + '","RemoteStopTransaction",{"transactionId":1e400}]', "1e400"),
    ('[2,"' + UID + '","RemoteStopTransaction",{"transactionId":' + "9" * 400 + '}]',
     "400-digit integer"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"mpocpp","messageId":"' + "m" * 51 + '"}]',
     "messageId 51"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"' + "v" * 256 + '"}]', "vendorId 256"),
    # Valid, with non-BMP characters (escaped as surrogate pairs, and raw UTF-8).
    ('[2,"' + UID + '","GetConfiguration",{"key":["EV\\ud83d\\ude97"]}]', "non-BMP escaped"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["EV\U0001F697"]}]', "non-BMP raw"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"\\ud83d\\ude97","data":"\U0001F50C"}]',
     "non-BMP vendor"),
    ('[2,"' + UID + '","RemoteStartTransaction",{"idTag":"' + "\\ud83d\\ude97" * 20 + '"}]',
     "idTag 20 non-BMP"),
    ('[2,"' + UID + '","ChangeConfiguration",{"key":"EV\\ud83d\\ude97","value":"x"}]',
     "non-BMP key"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["\\u0000","a\\u0000b","\\u001f","\\u007f",'
     '"\\u2028","\\ufffe","\\uffff","\\\\","\\"","/"]}]', "control and odd characters"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["\u00e9\u4e2d\u00ff"]}]', "raw BMP"),
    ('[ 2 , "' + UID + '" , "GetConfiguration" , { "key" : [ "HeartbeatInterval" ] } ]', "spaces"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["HeartbeatInterval"],"key":["MessageTimeout"]}]',
     "duplicate member"),
    # uniqueIds at the edges.
    ('[2,"","GetConfiguration",{}]', "empty uid"),
    ('[2,"' + "u" * 36 + '","GetConfiguration",{"key":["HeartbeatInterval"]}]', "uid 36"),
    ('[2,"' + "u" * 37 + '","GetConfiguration",{"key":["HeartbeatInterval"]}]', "uid 37"),
    ('[2,"' + "u" * 300 + '","GetConfiguration",{"key":["HeartbeatInterval"]}]', "uid 300"),
    ('[2,"\\ud83d\\ude97' + UID + '","GetConfiguration",{"key":["HeartbeatInterval"]}]',
     "non-BMP uid"),
    ('[2,"q\\"' + UID + '","GetConfiguration",{}]', "uid with quote"),
    ('[2,"\\ud83d' + UID + '","GetConfiguration",{}]', "uid lone surrogate"),
    ('[2,"\\ud83d' + UID + '","NoSuchAction",{}]', "uid lone surrogate, unknown action"),
    # Huge strings: inside the 4 KB receive buffer, and beyond it.
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"x","data":"' + "d" * 3900 + '"}]', "3.9 KB"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"x","data":"' + "\\ud83d\\ude97" * 320 + '"}]',
     "3.9 KB of escaped pairs"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"x","data":"' + "\U0001F697" * 1000 + '"}]',
     "4 KB of raw non-BMP"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["' + "k" * 3900 + '"]}]', "3.9 KB key"),
    ('[2,"' + UID + '","DataTransfer",{"vendorId":"x","data":"' + "d" * 5000 + '"}]', "5 KB"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["' + "k" * 20000 + '"]}]', "20 KB"),
    ("[" * 900, "900 brackets"),
    ("[" * 900 + "]" * 900, "900 nested arrays"),
    ('[2,"' + UID + '","GetConfiguration",{"key":' + _nest(900, '"a"') + '}]', "nested 900"),
    ('[4,"nope","GenericError","' + "e" * 3900 + '",{}]', "3.9 KB CALLERROR"),
    ('[4,"nope","GenericError","x",{"d":"' + "e" * 6000 + '"}]', "6 KB CALLERROR"),
)]


# Nesting deeper than tools/csms can send (it logs every frame it sends through Python's
# json.loads, which recurses): tests/test_fuzz.py sends these from a small server.
CSMS_MAX_DEPTH = 900
DEEP = [Frame(t, note=n) for t, n in (
    ("[" * 2500, "2500 brackets"),
    ("[" * 2500 + "]" * 2500, "2500 nested arrays"),
    ('[2,"' + UID + '","GetConfiguration",{"key":' + _nest(2000, '"a"') + '}]', "key nested 2000"),
    ('[2,"' + UID + '","GetConfiguration",{"key":' + '[{"a":' * 1500 + '1' + '}]' * 1500 + '}]',
     "objects nested 1500"),
    ('[2,"' + UID + '","DataTransfer",' + "[" * 3000 + "{}" + "]" * 3000 + ']', "payload 3000 deep"),
    ('[2,"' + UID + '","GetConfiguration",{"key":' + "[" * 1500, "1500 unclosed in a CALL"),
    ('[3,"zz",' + "[" * 2000 + "]" * 2000 + ']', "CALLRESULT 2000 deep"),
    ('[2,"' + UID + '","GetConfiguration",{"key":["HeartbeatInterval"]}]', "a good one after"),
)]


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_json = st.recursive(_json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(st.text(max_size=6), c,
                                                                     max_size=4)),
                     max_leaves=12)
_type_ids = st.sampled_from([2, 3, 4, 5, 9, 0, -1, 2.0, 3.5, "2", None, True, [2], {}])
# uniqueIds of frames sent as answers start with "z": the charger's own are digits, and an
# answer that settled one of its CALLs would change what later steps see.
_uid = st.one_of(st.just(UID), st.text(max_size=40).map(lambda s: "z" + s))
_bad_uid = _json.filter(lambda v: not isinstance(v, str))
_actions = st.one_of(st.sampled_from(FUZZ_ACTIONS + UNIMPLEMENTED + CP_TO_CS),
                     st.text(max_size=20))


@st.composite
def _random_array(draw):
    items = [draw(_type_ids)]
    n = draw(st.integers(0, 5))
    if n >= 1:
        items.append(draw(st.one_of(_uid, _bad_uid)))
    if n >= 2:
        items.append(draw(st.one_of(_actions, _json)))
    for _ in range(n - 2):
        items.append(draw(_json))
    return Frame(dumps(items, draw(st.booleans()) or has_lone_surrogate(items)),
                 note="random array")


@st.composite
def _answer(draw):
    t = draw(st.sampled_from([3, 4]))
    uid = draw(st.one_of(st.text(max_size=40).map(lambda s: "z" + s), _bad_uid))
    rest = draw(st.lists(_json, max_size=4))
    return Frame(dumps([t, uid] + rest), note="answer frame")


@st.composite
def _truncated(draw):
    f = draw(st.one_of(valid_frame(), st.sampled_from(CURATED)))
    text = f.render("u1")
    if len(text) < 2:
        return f
    return Frame(f.template, cut=draw(st.integers(1, len(text) - 1)), note="truncated")


@st.composite
def _deep(draw):
    depth = draw(st.integers(1, CSMS_MAX_DEPTH))
    where = draw(st.sampled_from(["key", "payload", "frame", "open"]))
    if where == "key":
        t = '[2,"%s","GetConfiguration",{"key":%s}]' % (UID, _nest(depth, '"a"'))
    elif where == "payload":
        t = '[2,"%s","DataTransfer",%s]' % (UID, "[" * depth + "{}" + "]" * depth)
    elif where == "frame":
        t = _nest(depth)
    else:
        t = "[" * depth
    return Frame(t, note="depth %d in %s" % (depth, where))


@st.composite
def _huge(draw):
    size = draw(st.integers(1000, 7000))
    ch = draw(st.sampled_from(["a", "\\u00e9", "\\ud83d\\ude97", "\u00e9", "\U0001F697"]))
    unit = len(ch.encode()) if not ch.startswith("\\") else len(ch)
    s = ch * max(1, size // unit)
    where = draw(st.sampled_from(["data", "key", "uid", "error"]))
    if where == "data":
        t = '[2,"%s","DataTransfer",{"vendorId":"x","data":"%s"}]' % (UID, s)
    elif where == "key":
        t = '[2,"%s","GetConfiguration",{"key":["%s"]}]' % (UID, s)
    elif where == "uid":
        t = '[2,"%s","GetConfiguration",{}]' % s
    else:
        t = '[4,"nope","GenericError","%s",{}]' % s
    return Frame(t, note="huge %s, %d bytes" % (where, len(t.encode())))


_not_json = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
                    min_size=1, max_size=60).filter(lambda s: s.strip() == s and s and not _parses(s))


def _parses(s):
    try:
        json.loads(s)
        return True
    except ValueError:
        return False


def hostile_frame():
    return st.one_of(st.sampled_from(CURATED), _random_array(), _answer(), _truncated(),
                     _deep(), _huge(), _not_json.map(lambda s: Frame(s, note="not JSON")))


def near_valid_frames(max_size=6):
    return st.lists(safe(near_valid_frame()), min_size=1, max_size=max_size)


def hostile_frames(max_size=6):
    return st.lists(safe(st.one_of(near_valid_frame(), hostile_frame())), min_size=1,
                    max_size=max_size)


# -- the oracle ---------------------------------------------------------------------------

class Expect:
    """What the charger must do with a frame.

    kind: "none"   no answer at all;
          "error"  one CALLERROR to `uid` with a code in `codes`;
          "answer" one answer to `uid`: a CALLRESULT valid against <action>Response.json,
                   or a CALLERROR with an OCPP-J code (`codes` when given);
          "maybe"  at most one answer, to `uid`.
    close: the close codes the charger may answer with (then it must reconnect); none:
    the link stays up for every text frame that is UTF-8 (RFC 6455 requires a close only
    for one that is not: 1007, see test_fuzz.test_invalid_utf8_closes_1007_and_reconnects).
    """

    def __init__(self, kind, why, uid=None, codes=None, action=None, close=()):
        self.kind, self.why, self.uid, self.codes, self.action = kind, why, uid, codes, action
        self.close = close

    def __repr__(self):
        s = "%s (%s)" % (self.kind, self.why)
        if self.uid is not None:
            s += " to %r" % self.uid
        if self.codes:
            s += " codes %s" % "|".join(sorted(self.codes))
        if self.close:
            s += ", may close %s" % "/".join(map(str, self.close))
        return s


_UNPARSED_CALL = re.compile(r'\s*\[\s*2\s*,\s*"((?:[^"\\]|\\.){0,%d})"' % MAX_UID)


def _null_optional(schema, e):
    # An optional field sent as null: the charger takes it as absent (README, "What a
    # central system may throw at it"), so it is no fault.
    sp = list(e.schema_path)
    if e.validator != "type" or e.instance is not None or len(sp) < 3 or sp[-3] != "properties":
        return False
    parent = schema
    for k in sp[:-3]:
        parent = parent[k]
    return sp[-2] not in parent.get("required", ())


def _faults(action, payload):
    """The kinds of schema faults of a payload (empty: valid)."""
    v = validator(action)
    kinds = set()
    if v is not None:
        with _RecursionRoom():
            for e in v.iter_errors(payload):
                if not _null_optional(v.schema, e):
                    kinds.add(e.validator)
    if has_lone_surrogate(payload):
        kinds.add("surrogate")
    return kinds


def expect(text):
    """What the charger must do when the central system sends `text`."""
    if len(text.encode("utf-8", "surrogatepass")) > RX_BUFFER:
        return _expect_oversize(text)
    return _expect(text)


def _expect_oversize(text):
    # README: "of a larger incoming message the rest is read and dropped: a CALL gets a
    # CALLERROR (GenericError, ...), anything else is ignored, and the link stays up".
    # The charger sees the first 4 KB only: a CALL is what starts like one.
    m = _UNPARSED_CALL.match(text)
    if not m:
        return Expect("none", "over the receive buffer, not a CALL")
    try:
        uid = json.loads('"%s"' % m.group(1))
    except ValueError:
        return Expect("none", "over the receive buffer, no readable uniqueId")
    if "\\" in m.group(1) or not uid or has_lone_surrogate(uid):
        return Expect("maybe", "over the receive buffer, escaped uniqueId", uid)
    return Expect("error", "a CALL over the receive buffer", uid, frozenset(("GenericError",)))


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


class _RecursionRoom:
    """Room for nesting as deep as the fuzz makes it (json, jsonschema, repr)."""

    def __enter__(self):
        self.limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(self.limit, 20000))

    def __exit__(self, *exc):
        sys.setrecursionlimit(self.limit)
        return False


def loads(text):
    """json.loads, strict (RFC 8259: no NaN or Infinity), deep nesting allowed."""
    with _RecursionRoom():
        return json.loads(text, parse_constant=_no_constant)


def _complete(text):
    """True when every bracket and string of `text` is closed: invalid JSON that is not
    merely cut short (a trailing comma, a missing comma, NaN, a bad escape)."""
    depth = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
    return not in_str and depth <= 0


def _expect(text):
    try:
        msg = loads(text)
    except (ValueError, RecursionError):
        m = _UNPARSED_CALL.match(text)
        uid = None
        if m:
            try:
                uid = json.loads('"%s"' % m.group(1))
            except ValueError:
                uid = None
        if uid is None:
            return Expect("none", "not JSON")
        if "\\" in m.group(1) or not uid or len(uid) > MAX_UID or has_lone_surrogate(uid):
            # An escaped uniqueId in a frame that does not parse: an answer is optional,
            # but only to exactly that uniqueId.
            return Expect("maybe", "invalid JSON, starts like a CALL with an escaped "
                          "uniqueId", uid)
        if _complete(text):
            # MicroPython's json.loads is lenient ("[1 2]", "[1,]", "\\x41" parse): an
            # answer as to what it read is as good as the FormationViolation.
            return Expect("answer", "invalid JSON, complete, starts like a CALL", uid)
        return Expect("error", "JSON cut short, starts like a CALL", uid, SHAPE)
    if not isinstance(msg, list) or not msg:
        return Expect("none", "not an OCPP-J array")
    t = msg[0]
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return Expect("none", "messageTypeId is not a number")
    if t in (3, 4):
        return Expect("none", "a CALLRESULT/CALLERROR is never answered")
    if t != 2:
        return Expect("none", "not a CALL")
    if len(msg) < 2 or not isinstance(msg[1], str):
        return Expect("none", "CALL without a string uniqueId")
    uid = msg[1]
    if isinstance(t, float):
        return Expect("maybe", "messageTypeId 2.0", uid)
    if not uid or len(uid) > MAX_UID or has_lone_surrogate(uid):
        return Expect("maybe", "uniqueId empty, too long or not Unicode", uid)
    if len(msg) != 4 or not isinstance(msg[2], str):
        return Expect("error", "broken CALL shape", uid, SHAPE)
    action, payload = msg[2], msg[3]
    if not isinstance(payload, dict):
        return Expect("error", "payload is not an object", uid, NOT_OBJECT)
    if action not in CS_TO_CP or schema(action) is None:
        return Expect("error", "not an action of the charger", uid, UNKNOWN_ACTION)
    faults = _faults(action, payload)
    unimplemented = action not in IMPLEMENTED + IMPLEMENTED_UNFUZZED
    if not faults:
        return Expect("answer", "schema-valid " + action, uid, None, action)
    codes = set()
    for f in faults:
        codes |= FITTING.get(f, OTHER_FAULT)
    if unimplemented:
        codes |= UNKNOWN_ACTION
    return Expect("error", "%s payload fault: %s" % (action, ", ".join(sorted(faults))),
                  uid, frozenset(codes), action)


def _callerror_shape(f):
    return (len(f) == 5 and isinstance(f[2], str) and isinstance(f[3], str)
            and isinstance(f[4], dict))


def judge(exp, answers, request=None):
    """Problems (list of str) with the charger's `answers` (frames [3|4, ...] it sent
    after the frame) under `exp`; `request` is the parsed CALL, when there is one."""
    out = []
    if exp.kind == "none":
        if answers:
            out.append("answered %s; expected no answer (%s)" % (answers, exp.why))
        return out
    if len(answers) > 1:
        out.append("%d answers: %s" % (len(answers), answers))
    if not answers:
        if exp.kind != "maybe":
            out.append("no answer; expected %r" % exp)
        return out
    a = answers[0]
    if a[1] != exp.uid:
        out.append("answer to uniqueId %r, expected %r: %s" % (a[1], exp.uid, a))
    if a[0] == 4:
        if not _callerror_shape(a):
            out.append("malformed CALLERROR %s" % (a,))
        code = a[2] if len(a) > 2 else None
        if code not in OCPP_J_CODES:
            out.append("CALLERROR code %r is not an OCPP-J code: %s" % (code, a))
        elif exp.kind == "error" and code not in exp.codes:
            out.append("CALLERROR %s; expected %s (%s)" % (code, "|".join(sorted(exp.codes)),
                                                           exp.why))
        elif exp.kind == "answer" and exp.codes and code not in exp.codes:
            out.append("CALLERROR %s; expected a CALLRESULT or %s" % (code, exp.codes))
        return out
    if a[0] != 3 or len(a) != 3 or not isinstance(a[2], dict):
        out.append("answer is neither a CALLRESULT nor a CALLERROR: %s" % (a,))
        return out
    if exp.kind == "error":
        out.append("CALLRESULT %s; expected a CALLERROR %s (%s)"
                   % (dumps(a[2])[:300], "|".join(sorted(exp.codes)), exp.why))
        return out
    if exp.kind == "answer" and exp.action:
        v = validator(exp.action + "Response")
        errs = sorted(e.message for e in v.iter_errors(a[2])) if v else []
        if errs:
            out.append("CALLRESULT fails %sResponse.json: %s" % (exp.action, errs[:3]))
        if exp.action == "GetConfiguration" and not errs and request is not None:
            out += _check_get_configuration(request, a[2])
    return out


def _check_get_configuration(req, res):
    """Every key asked for comes back, known or unknown, exactly as it was written."""
    keys = req.get("key") or []
    if not keys or len(keys) > 64:
        return []
    back = [k["key"] for k in res.get("configurationKey", [])] + list(res.get("unknownKey", []))
    missing = [k for k in keys if k not in back]
    strange = [k for k in back if k not in keys]
    if missing or strange:
        return ["GetConfiguration answer does not name the keys asked for: missing %r, "
                "not asked %r" % (missing, strange)]
    return []
