"""FirmwareManagement, diagnostics: GetDiagnostics (OCPP 1.6 §5.9; OCTT TC_045_1/2),
end to end: tools/sim against tools/csms (schema validation on) and real file servers
on loopback (pyftpdlib for FTP, a stdlib HTTP(S) server; tests/fileservers.py).

The uploaded file holds the diagnostics log on flash (lines with timestamps); the
statuses go Uploading -> Uploaded, or Uploading -> UploadFailed after the retries.
"""
import datetime
import re
import time
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization

from fileservers import ftp_server, http_server, free_port  # noqa: F401 (fixtures)

from ocpp_steps import booted, Watch, wait_calls
from test_ws_tls import make_ca, make_server_cert, server_context, write_pem



STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
NAME = re.compile(r"CP1-\d{8}T\d{6}Z\.log$")


def _get_diagnostics(csms, payload, cp="CP1"):
    r = csms.call(cp, "GetDiagnostics", payload)
    assert r["ok"], r
    return r["result"]


def _statuses(w, count, timeout=30):
    return [c[3]["status"] for c in w.wait("DiagnosticsStatusNotification", count, timeout)]


def _trigger_diag(csms, w):
    w.mark("DiagnosticsStatusNotification")
    r = csms.call("CP1", "TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"})
    assert r["ok"] and r["result"]["status"] == "Accepted", r
    return w.wait("DiagnosticsStatusNotification")[0][3]["status"]


def _assert_log(text):
    lines = text.splitlines()
    assert lines[0].startswith("# CP1 diagnostics, firmware "), lines[0]
    # Lines of this power-on, stamped with the clock the central system gave it.
    assert any(re.match(STAMP + r" boot: Accepted, interval", ln) for ln in lines), text[-2000:]
    # Before the clock was set: boot number and seconds since power-on.
    assert any(re.match(r"~\d+\.\d+ link: connected", ln) for ln in lines), text[-2000:]
    stamped = [ln for ln in lines[1:] if re.match(r"(%s|~\d+\.\d+|\+\d+) " % STAMP, ln)]
    assert len(stamped) == len(lines) - 1, [ln for ln in lines[1:] if ln not in stamped][:5]


def test_tc045_1_ftp_passive_with_user_and_password(start_csms, start_sim, ftp_server):
    # The password has characters that must be percent-encoded in the URL.
    password = "p@ss:w/rd%"
    srv = ftp_server(user="diag", password=password)
    (srv.root / "up").mkdir()
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    url = "ftp://diag:%s@127.0.0.1:%d/up/" % (quote(password, safe=""), srv.port)
    res = _get_diagnostics(csms, {"location": url, "retries": 0})
    assert NAME.match(res["fileName"]), res
    assert _statuses(w, 2) == ["Uploading", "Uploaded"]
    _assert_log((srv.root / "up" / res["fileName"]).read_text())
    cmds = srv.commands
    assert cmds[:2] == ["USER diag", "PASS ***"] and "TYPE I" in cmds
    assert "EPSV" in cmds and "PASV" not in cmds and "STOR up/" + res["fileName"] in cmds
    assert _trigger_diag(csms, w) == "Uploaded"
    assert csms.invalid() == []


def test_ftp_falls_back_to_pasv(start_csms, start_sim, ftp_server):
    srv = ftp_server(user="u", password="pw", epsv=False)
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    res = _get_diagnostics(csms, {"location": "ftp://u:pw@127.0.0.1:%d" % srv.port})
    assert _statuses(w, 2) == ["Uploading", "Uploaded"]
    assert "PASV" in srv.commands and "STOR " + res["fileName"] in srv.commands
    _assert_log((srv.root / res["fileName"]).read_text())
    assert csms.invalid() == []


def test_http_put(start_csms, start_sim, http_server):
    srv = http_server()
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    res = _get_diagnostics(csms, {"location": "http://up:l0ad@127.0.0.1:%d/diag" % srv.port,
                                  "retries": 1, "retryInterval": 1})
    assert _statuses(w, 2) == ["Uploading", "Uploaded"]
    method, path, headers, body = srv.requests[-1]
    assert (method, path) == ("PUT", "/diag/" + res["fileName"])
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Authorization"] == "Basic dXA6bDBhZA=="     # up:l0ad
    _assert_log(body.decode())
    assert len(srv.requests) == 1
    assert csms.invalid() == []


def _tls_booted(start_csms, start_sim, tmp_path, upload_ca_key=None):
    """A charger on wss:// (the CA bundle in its state directory) and an https upload
    server whose certificate comes from the same CA, or from another one."""
    ca_key, ca = make_ca("Test Root")
    key, cert = make_server_cert(ca_key, ca, ["localhost"])
    kp, cp = write_pem(tmp_path, "csms", key, cert)
    csms = start_csms("--heartbeat", "300", "--tls-cert", str(cp), "--tls-key", str(kp))
    up_key, up_ca = make_ca("Other Root") if upload_ca_key is False else (ca_key, ca)
    k2, c2 = make_server_cert(up_key, up_ca, ["localhost"])
    state = tmp_path / "state-CP1"
    state.mkdir()
    (state / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    sim = start_sim(csms.url.replace("127.0.0.1", "localhost"), state=state)
    wait_calls(csms, "StatusNotification", 2, timeout=30)
    return csms, sim, server_context(tmp_path, "upload", k2, c2)


def test_https_put_verifies_the_server(start_csms, start_sim, http_server, tmp_path):
    # The upload is checked against the CA bundle of the OCPP link (its TLS context).
    csms, sim, ctx = _tls_booted(start_csms, start_sim, tmp_path)
    srv = http_server(tls=ctx)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    res = _get_diagnostics(csms, {"location": "https://localhost:%d/" % srv.port})
    assert _statuses(w, 2) == ["Uploading", "Uploaded"]
    assert srv.requests[-1][1] == "/" + res["fileName"]
    _assert_log(srv.files["/" + res["fileName"]].decode())
    assert csms.invalid() == []


def test_https_with_an_unknown_ca_fails(start_csms, start_sim, http_server, tmp_path):
    csms, sim, ctx = _tls_booted(start_csms, start_sim, tmp_path, upload_ca_key=False)
    srv = http_server(tls=ctx)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    _get_diagnostics(csms, {"location": "https://localhost:%d/" % srv.port, "retries": 0})
    assert _statuses(w, 2) == ["Uploading", "UploadFailed"]
    assert srv.files == {} and srv.requests == []
    sim.wait_line(r"attempt 1 of 1 failed: .*(CERT|cert|verif|-9984)", timeout=1)
    assert csms.invalid() == []


def test_tc045_2_server_down_retries_then_fails(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    t0 = time.monotonic()
    res = _get_diagnostics(csms, {"location": "ftp://127.0.0.1:%d/" % free_port(),
                                  "retries": 2, "retryInterval": 1})
    assert NAME.match(res["fileName"])
    assert _statuses(w, 2) == ["Uploading", "UploadFailed"]
    assert time.monotonic() - t0 >= 2          # two intervals between three attempts
    for i in (1, 2, 3):
        sim.wait_line(r"diagnostics: upload of .*, attempt %d of 3 failed" % i, timeout=1)
    assert csms.invalid() == []


def test_refused_upload_retries_then_fails(start_csms, start_sim, http_server, ftp_server):
    srv = http_server(status=403)
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    _get_diagnostics(csms, {"location": "http://127.0.0.1:%d/" % srv.port,
                            "retries": 1, "retryInterval": 1})
    assert _statuses(w, 2) == ["Uploading", "UploadFailed"]
    assert [r[0] for r in srv.requests] == ["PUT", "PUT"] and srv.files == {}
    sim.wait_line(r"attempt 2 of 2 failed: HTTP 403", timeout=1)
    # An FTP server that refuses the login.
    ftp = ftp_server(user="diag", password="right")
    w.mark("DiagnosticsStatusNotification")
    _get_diagnostics(csms, {"location": "ftp://diag:wrong@127.0.0.1:%d/" % ftp.port,
                            "retries": 0})
    assert _statuses(w, 2) == ["Uploading", "UploadFailed"]
    assert list(ftp.root.iterdir()) == []
    assert _trigger_diag(csms, w) == "UploadFailed"
    assert csms.invalid() == []


def _iso(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


def test_start_and_stop_time_filter(start_csms, start_sim, http_server):
    # The simulator's clock comes from the central system's currentTime, whole seconds:
    # each step is 2.5 s from the bounds so the line's stamp is on the right side.
    srv = http_server()
    csms, sim = booted(start_csms, start_sim)
    sim.send("heap")
    sim.wait_line(r"sim: heap ")
    time.sleep(2.5)
    t0 = time.time()
    time.sleep(2.5)
    sim.send("storage")
    sim.wait_line(r"sim: storage queued=")
    time.sleep(2.5)
    t1 = time.time()
    time.sleep(2.5)
    sim.send("reservations")
    sim.wait_line(r"sim: reservations ")
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    res = _get_diagnostics(csms, {"location": "http://127.0.0.1:%d/" % srv.port,
                                  "startTime": _iso(t0), "stopTime": _iso(t1)})
    assert _statuses(w, 2) == ["Uploading", "Uploaded"]
    text = srv.files["/" + res["fileName"]].decode()
    lines = text.splitlines()
    assert "from %s to %s" % (_iso(t0), _iso(t1)) in lines[0]
    assert any(re.match(STAMP + r" sim: storage queued=", ln) for ln in lines), text
    for ln in lines[1:]:
        assert "sim: heap" not in ln and "sim: reservations" not in ln, ln
        assert "boot: Accepted" not in ln, ln
    # Only startTime: from there on, the later line included.
    res = _get_diagnostics(csms, {"location": "http://127.0.0.1:%d/" % srv.port,
                                  "startTime": _iso(t1)})
    w.wait("DiagnosticsStatusNotification", 4)
    text = srv.files["/" + res["fileName"]].decode()
    assert "sim: reservations" in text and "sim: storage" not in text
    assert csms.invalid() == []


def test_trigger_reports_uploading_and_a_second_request_gets_no_file(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    w = Watch(csms).mark("DiagnosticsStatusNotification")
    assert _trigger_diag(csms, w) == "Idle"
    w.mark("DiagnosticsStatusNotification")
    res = _get_diagnostics(csms, {"location": "http://127.0.0.1:%d/" % free_port(),
                                  "retries": 1, "retryInterval": 60})
    assert "fileName" in res
    assert _statuses(w, 1) == ["Uploading"]
    sim.wait_line(r"attempt 1 of 2 failed")
    assert _trigger_diag(csms, w) == "Uploading"     # waiting to retry: still Uploading
    assert _get_diagnostics(csms, {"location": "ftp://127.0.0.1/"}) == {}
    assert csms.invalid() == []


def test_bad_requests_are_call_errors(start_csms, start_sim):
    csms, sim = booted(start_csms, start_sim)
    for loc in ("sftp://127.0.0.1/", "http://", "nothing"):
        r = csms.call("CP1", "GetDiagnostics", {"location": loc})
        assert not r["ok"] and "PropertyConstraintViolation" in str(r), r
    r = csms.call("CP1", "GetConfiguration", {"key": ["SupportedFileTransferProtocols",
                                                      "SupportedFeatureProfiles"]})
    keys = {k["key"]: k for k in r["result"]["configurationKey"]}
    assert keys["SupportedFileTransferProtocols"] == {
        "key": "SupportedFileTransferProtocols", "readonly": True, "value": "FTP,HTTP,HTTPS"}
    assert csms.calls("DiagnosticsStatusNotification") == []
