# Configuration keys: types, access, ranges, persistence, secrets.
import os
from ocpp16 import config, store

_DIR = "/tmp/mpocpp-test-config"


def _fresh():
    store.makedirs(_DIR)
    store.remove(_DIR + "/config.json")
    return config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)


def test_defaults_and_types():
    c = _fresh()
    assert c.get("HeartbeatInterval") == 86400
    assert c.get("NumberOfConnectors") == 2
    assert c.get("LocalPreAuthorize") is False
    assert c.csl("MeterValuesSampledData") == ("Energy.Active.Import.Register",)
    assert c.csl("StopTxnSampledData") == ()


def test_change_results():
    c = _fresh()
    assert c.change("HeartbeatInterval", "30") == "Accepted"
    assert c.get("HeartbeatInterval") == 30
    assert c.change("MeterValueSampleInterval", "-1") == "Rejected"
    assert c.change("HeartbeatInterval", "abc") == "Rejected"
    assert c.change("LocalPreAuthorize", "true") == "Accepted" and c.get("LocalPreAuthorize") is True
    assert c.change("LocalPreAuthorize", "yes") == "Rejected"
    assert c.change("Testing", "1") == "NotSupported"
    assert c.change("NumberOfConnectors", "3") == "Rejected"        # read-only
    assert c.change("SecurityProfile", "1") == "RebootRequired"
    assert c.change("SecurityProfile", "0") == "Rejected"          # no downgrade


def _value(c, name):
    return c.entries([name])[0][0][2]


def test_values_are_parsed_strictly():
    c = _fresh()
    # Integers: an optional '-' and ASCII digits only; int() would take all of these
    # (MicroPython reads "1_0" as 10).
    for bad in ("1_0", " 30 ", "30 ", " 30", "+30", "", "-", "3 0", "0x1e", "30.0", "1e2",
                "\t30", "30\n", "--30", "\u0663\u0660"):
        assert c.change("HeartbeatInterval", bad) == "Rejected", repr(bad)
    assert c.get("HeartbeatInterval") == 86400 and _value(c, "HeartbeatInterval") == "86400"
    assert c.change("ClockAlignedDataInterval", "-0") == "Accepted"
    assert _value(c, "ClockAlignedDataInterval") == "0"
    # Leading zeros are accepted and read back canonical.
    assert c.change("HeartbeatInterval", "007") == "Accepted"
    assert c.get("HeartbeatInterval") == 7 and _value(c, "HeartbeatInterval") == "7"
    assert c.change("HeartbeatInterval", "604801") == "Rejected"          # out of range
    assert c.change("HeartbeatInterval", "604800") == "Accepted"
    assert _value(c, "HeartbeatInterval") == "604800"
    # Booleans: exactly "true" or "false".
    for bad in ("TRUE", "True", " true", "true ", "1", "0", "", "yes", "False", "FALSE"):
        assert c.change("LocalPreAuthorize", bad) == "Rejected", repr(bad)
    assert c.get("LocalPreAuthorize") is False
    assert c.change("LocalPreAuthorize", "true") == "Accepted"
    assert _value(c, "LocalPreAuthorize") == "true"
    assert c.change("LocalPreAuthorize", "false") == "Accepted"
    assert _value(c, "LocalPreAuthorize") == "false"
    # CSL: spaces after the commas tolerated, stored normalised; empty items rejected.
    assert c.change("MeterValuesSampledData", "Energy.Active.Import.Register, Voltage") == "Accepted"
    assert _value(c, "MeterValuesSampledData") == "Energy.Active.Import.Register,Voltage"
    assert c.change("MeterValuesSampledData", "Voltage,,Power.Active.Import") == "Rejected"
    assert c.change("StopTxnSampledData", "") == "Accepted" and _value(c, "StopTxnSampledData") == ""
    # A rejected value changed nothing on flash either.
    c2 = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    assert c2.get("HeartbeatInterval") == 604800 and c2.get("LocalPreAuthorize") is False


def test_typed_values_from_config_json_load_at_boot():
    # What deploy/provisioning writes (typed JSON values) is read as such, not re-parsed.
    _fresh()
    with open(_DIR + "/config.json", "w") as f:
        f.write('{"HeartbeatInterval": 300, "LocalPreAuthorize": true, '
                '"MeterValuesSampledData": "Energy.Active.Import.Register,Voltage", '
                '"ChargePointId": "CP-7", "Bogus": 1}')
    c = config.Config(_DIR + "/config.json", connectors=2, log=lambda s: None)
    assert c.get("HeartbeatInterval") == 300 and _value(c, "HeartbeatInterval") == "300"
    assert c.get("LocalPreAuthorize") is True and _value(c, "LocalPreAuthorize") == "true"
    assert c.csl("MeterValuesSampledData") == ("Energy.Active.Import.Register", "Voltage")
    assert c.get("ChargePointId") == "CP-7"
    assert c.change("HeartbeatInterval", "301") == "Accepted" and c.get("HeartbeatInterval") == 301


def test_bad_measurand_rejects_whole_list():
    c = _fresh()
    assert c.change("MeterValuesSampledData", "Energy.Active.Import.Register,Power.Active.Import") == "Accepted"
    assert c.change("MeterValuesSampledData", "Power.Active.Import,Bogus") == "Rejected"
    assert c.csl("MeterValuesSampledData") == ("Energy.Active.Import.Register", "Power.Active.Import")


def test_persisted_across_reopen():
    c = _fresh()
    c.change("HeartbeatInterval", "42")
    c.put("ChargePointId", "CP-9")
    c2 = config.Config(_DIR + "/config.json", connectors=2)
    assert c2.get("HeartbeatInterval") == 42 and c2.get("ChargePointId") == "CP-9"


def test_authorization_key_is_write_only():
    c = _fresh()
    assert c.change("AuthorizationKey", "4f43415f4f4354545f61646d696e5f74657374") == "Accepted"
    known, unknown = c.entries()
    assert "AuthorizationKey" not in [k for k, _, _ in known]
    known, unknown = c.entries(["AuthorizationKey", "HeartbeatInterval", "Nope"])
    assert [k for k, _, _ in known] == ["HeartbeatInterval"]
    assert unknown == ["AuthorizationKey", "Nope"]
    assert c.describe("AuthorizationKey") == "***"


def test_get_configuration_lists_all_core_keys():
    c = _fresh()
    known, _ = c.entries()
    names = [k for k, _, _ in known]
    for k in ("AuthorizeRemoteTxRequests", "ClockAlignedDataInterval", "ConnectionTimeOut",
              "ConnectorPhaseRotation", "GetConfigurationMaxKeys", "HeartbeatInterval",
              "LocalAuthorizeOffline", "LocalPreAuthorize", "MeterValuesAlignedData",
              "MeterValuesSampledData", "MeterValueSampleInterval", "NumberOfConnectors",
              "ResetRetries", "StopTransactionOnInvalidId", "StopTxnAlignedData",
              "StopTxnSampledData", "SupportedFeatureProfiles", "TransactionMessageAttempts",
              "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect"):
        assert k in names, k
    assert ("NumberOfConnectors", True, "2") in known
