"""ChangeConfiguration values are parsed strictly (OCPP 1.6 types) and read back
canonical through GetConfiguration: the firmware on the unix port against tools/csms."""
from ocpp_steps import booted


def _change(csms, key, value):
    r = csms.call("CP1", "ChangeConfiguration", {"key": key, "value": value})
    assert r["ok"], r
    return r["result"]["status"]


def _read(csms, key):
    r = csms.call("CP1", "GetConfiguration", {"key": [key]})
    assert r["ok"], r
    return r["result"]["configurationKey"][0]["value"]


def test_loose_values_are_rejected_and_accepted_ones_read_back_canonical(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    # int() would take each of these ("1_0" as 10 on MicroPython).
    for bad in ("1_0", " 30 ", "+30", "", "3 0", "30.0"):
        assert _change(csms, "MeterValueSampleInterval", bad) == "Rejected", repr(bad)
    assert _read(csms, "MeterValueSampleInterval") == "60"
    assert _change(csms, "MeterValueSampleInterval", "-1") == "Rejected"   # TC_040_2
    assert _change(csms, "MeterValueSampleInterval", "007") == "Accepted"
    assert _read(csms, "MeterValueSampleInterval") == "7"
    for bad in ("TRUE", "True", " true", "1"):
        assert _change(csms, "LocalPreAuthorize", bad) == "Rejected", repr(bad)
    assert _read(csms, "LocalPreAuthorize") == "false"
    assert _change(csms, "LocalPreAuthorize", "true") == "Accepted"
    assert _read(csms, "LocalPreAuthorize") == "true"
    assert _change(csms, "MeterValuesSampledData",
                   "Energy.Active.Import.Register, Power.Active.Import") == "Accepted"
    assert _read(csms, "MeterValuesSampledData") == \
        "Energy.Active.Import.Register,Power.Active.Import"
    assert csms.invalid() == []


def test_whole_table_answer_is_larger_than_the_transmit_buffer(start_csms, start_sim):
    # The answer is written into the receive buffer (4 KB), not the 2 KB transmit one.
    import json
    csms, sim = booted(start_csms, start_sim)
    r = csms.call("CP1", "GetConfiguration", {})
    assert r["ok"], r
    entries = r["result"]["configurationKey"]
    assert len(json.dumps(r["result"], separators=(",", ":"))) > 2048
    keys = [e["key"] for e in entries]
    assert "AuthorizationKey" not in keys and "unknownKey" not in r["result"]
    assert {"HeartbeatInterval", "NtpServer", "SupportedFeatureProfiles"} <= set(keys)
    assert {"key": "NumberOfConnectors", "readonly": True, "value": "1"} in entries
    r = csms.call("CP1", "GetConfiguration",
                  {"key": ["HeartbeatInterval", "Nope", "AuthorizationKey"]})
    assert r["ok"], r
    assert [e["key"] for e in r["result"]["configurationKey"]] == ["HeartbeatInterval"]
    assert r["result"]["unknownKey"] == ["Nope", "AuthorizationKey"]
    assert csms.invalid() == []
