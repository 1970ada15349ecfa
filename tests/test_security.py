"""Security profiles 1 and 2 through the real firmware: Basic auth, TLS, secrets."""
import base64
import json

from cryptography.hazmat.primitives import serialization

from ocpp_steps import wait_calls
from test_ws_tls import make_ca, make_server_cert, write_pem

KEY1 = "4f43415f4f4354545f61646d696e5f74657374"       # hex of OCA_OCTT_admin_test
KEY2 = "6e65772d70617373776f72642d31323334"           # hex of new-password-1234


def _provision(state, **cfg):
    state.mkdir(parents=True, exist_ok=True)
    (state / "config.json").write_text(json.dumps(cfg))


def _secret_forms(key):
    raw = bytes.fromhex(key)
    return [key, raw.decode(), base64.b64encode(b"CP1:" + raw).decode()]


def test_basic_auth_key_change_reconnects_and_is_never_logged(start_csms, start_sim, tmp_path):
    csms = start_csms("--auth-key", KEY1, "--heartbeat", "300")
    state = tmp_path / "cp"
    _provision(state, AuthorizationKey=KEY1, ReconnectMinSeconds=1, ReconnectMaxSeconds=2)
    sim = start_sim(csms.url, state=state)
    wait_calls(csms, "StatusNotification", 2)
    assert csms.events("connect", cp="CP1")[0]["auth"] == "CP1"
    r = csms.call("CP1", "GetConfiguration", {"key": ["AuthorizationKey"]})
    assert r["result"]["configurationKey"] == [] and r["result"]["unknownKey"] == ["AuthorizationKey"]
    # TC_073: a new key is used from the next connection (the server still expects KEY1,
    # so it refuses the new credentials with 401; the firmware reports it and backs off).
    r = csms.call("CP1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": KEY2})
    assert r["result"]["status"] == "Accepted"
    csms.wait(lambda e: e["ev"] == "refused" and e["status"] == 401, timeout=20)
    sim.wait_line(r"connect failed: HTTP/1.1 401")
    log = "\n".join(sim.lines)
    for secret in _secret_forms(KEY1) + _secret_forms(KEY2):
        assert secret not in log
    assert "AuthorizationKey" in log            # the change itself is logged, masked


def test_wrong_key_is_refused_with_401(start_csms, start_sim, tmp_path):
    csms = start_csms("--auth-key", KEY1)
    state = tmp_path / "cp"
    _provision(state, AuthorizationKey=KEY2)
    sim = start_sim(csms.url, state=state)
    sim.wait_line(r"connect failed: HTTP/1.1 401 Unauthorized; retry in \d+ ms", timeout=20)
    assert csms.calls(cp="CP1") == []


def test_wss_verifies_the_central_system(start_csms, start_sim, tmp_path):
    ca_key, ca = make_ca("Test CSMS Root")
    _, other = make_ca("Unrelated Root")
    key, cert = make_server_cert(ca_key, ca, ["localhost"])
    kp, cp = write_pem(tmp_path, "srv", key, cert)
    csms = start_csms("--tls-cert", str(cp), "--tls-key", str(kp))
    url = csms.url.replace("127.0.0.1", "localhost")
    assert url.startswith("wss://")
    good = tmp_path / "good"
    good.mkdir()
    (good / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    start_sim(url, cp_id="CP1", state=good)
    wait_calls(csms, "StatusNotification", 2, cp="CP1")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ca.der").write_bytes(other.public_bytes(serialization.Encoding.DER))
    sim2 = start_sim(url, cp_id="CP2", state=bad)
    sim2.wait_line(r"connect failed: TLS", timeout=20)
    assert csms.events("connect", cp="CP2") == []
