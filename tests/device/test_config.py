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
    assert c.change("LocalPreAuthorize", "TRUE") == "Accepted" and c.get("LocalPreAuthorize") is True
    assert c.change("LocalPreAuthorize", "yes") == "Rejected"
    assert c.change("Testing", "1") == "NotSupported"
    assert c.change("NumberOfConnectors", "3") == "Rejected"        # read-only
    assert c.change("SecurityProfile", "1") == "RebootRequired"
    assert c.change("SecurityProfile", "0") == "Rejected"          # no downgrade


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
