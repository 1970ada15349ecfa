"""Host-side tests of the development central system (tools/csms).

A plain `websockets` client plays the charge point, on loopback only.
"""
import asyncio
import base64
import datetime
import itertools
import json
import re
import signal
import ssl

import pytest
import websockets
from websockets.asyncio.client import connect

from csmsctl import Csms

TIMEOUT = 5
UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BOOT = {"chargePointVendor": "mpocpp", "chargePointModel": "test"}
ids = itertools.count(1)


@pytest.fixture(scope="module")
def cs():
    with Csms("--ping-interval", "0") as c:
        yield c


class Client:
    """Just enough of a charge point: send CALLs, read frames, answer CALLs."""

    def __init__(self, ws):
        self.ws = ws

    async def recv(self, timeout=TIMEOUT):
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def call(self, action, payload, timeout=TIMEOUT):
        uid = str(next(ids))
        await self.ws.send(json.dumps([2, uid, action, payload]))
        frame = await self.recv(timeout)
        assert frame[1] == uid, frame
        return frame

    async def result(self, action, payload):
        frame = await self.call(action, payload)
        assert frame[0] == 3, frame
        return frame[2]


def cp_connect(url, cp_id, **kw):
    kw.setdefault("subprotocols", ["ocpp1.6"])
    return connect("%s/%s" % (url, cp_id), open_timeout=TIMEOUT, **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def start_tx(tag, meter=0):
    return {"connectorId": 1, "idTag": tag, "meterStart": meter,
            "timestamp": "2025-01-01T00:00:00Z"}


def test_boot_accepted_heartbeat_and_log(cs):
    async def go():
        async with cp_connect(cs.url, "BOOT1") as ws:
            cp = Client(ws)
            boot = await cp.result("BootNotification", BOOT)
            hb = await cp.result("Heartbeat", {})
            return boot, hb
    boot, hb = run(go())
    assert boot["status"] == "Accepted" and boot["interval"] == 60
    now = datetime.datetime.now(datetime.timezone.utc)
    assert UTC_Z.match(boot["currentTime"]), boot
    t = datetime.datetime.strptime(boot["currentTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((t.replace(tzinfo=datetime.timezone.utc) - now).total_seconds()) < 5
    assert UTC_Z.match(hb["currentTime"]), hb

    connect_ev = cs.wait(lambda e: e["ev"] == "connect" and e["cp"] == "BOOT1")
    assert connect_ev["path"] == "/ocpp/BOOT1"
    assert connect_ev["subprotocol"] == "ocpp1.6" and connect_ev["auth"] is None
    assert cs.wait_call("BootNotification", cp="BOOT1")[3] == BOOT
    assert [f[0] for f in cs.sent("BOOT1")] == [3, 3]
    cs.wait(lambda e: e["ev"] == "disconnect" and e["cp"] == "BOOT1")
    assert [e for e in cs.invalid() if e["cp"] == "BOOT1"] == []
    log = cs.log_text()
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} BOOT1 <- \[2,", log), log
    assert "BOOT1 -> [3," in log


def test_percent_decoded_id(cs):
    async def go():
        async with cp_connect(cs.url, "RDAM%20123"):
            pass
    run(go())
    cs.wait(lambda e: e["ev"] == "connect" and e["cp"] == "RDAM 123")


def test_boot_modes(cs):
    async def boot(cp_id):
        async with cp_connect(cs.url, cp_id) as ws:
            return await Client(ws).result("BootNotification", BOOT)
    try:
        assert cs.cmd("boot pending 5")["ok"]
        r = run(boot("MODE1"))
        assert (r["status"], r["interval"]) == ("Pending", 5)
        assert cs.cmd("boot rejected")["ok"]
        r = run(boot("MODE2"))
        assert (r["status"], r["interval"]) == ("Rejected", 60)
    finally:
        assert cs.cmd("boot accepted")["ok"]
    assert run(boot("MODE3"))["status"] == "Accepted"


def test_transactions_deny_and_parent(cs):
    async def go():
        async with cp_connect(cs.url, "TX1") as ws:
            cp = Client(ws)
            a = await cp.result("StartTransaction", start_tx("GOOD"))
            b = await cp.result("StartTransaction", start_tx("GOOD"))
            assert cs.cmd("deny BAD")["ok"] and cs.cmd("parent KID FAMILY")["ok"]
            denied = await cp.result("Authorize", {"idTag": "BAD"})
            denied_tx = await cp.result("StartTransaction", start_tx("BAD"))
            kid = await cp.result("Authorize", {"idTag": "KID"})
            assert cs.cmd("allow BAD")["ok"] and cs.cmd("parent KID")["ok"]
            allowed = await cp.result("Authorize", {"idTag": "BAD"})
            orphan = await cp.result("Authorize", {"idTag": "KID"})
            stop = await cp.result("StopTransaction", {"transactionId": -1, "meterStop": 10,
                                                       "timestamp": "2025-01-01T00:01:00Z",
                                                       "idTag": "GOOD", "reason": "Local"})
            stop_no_tag = await cp.result("StopTransaction", {
                "transactionId": b["transactionId"], "meterStop": 12,
                "timestamp": "2025-01-01T00:02:00Z"})
            return a, b, denied, denied_tx, kid, allowed, orphan, stop, stop_no_tag
    a, b, denied, denied_tx, kid, allowed, orphan, stop, stop_no_tag = run(go())
    assert b["transactionId"] == a["transactionId"] + 1
    assert denied_tx["transactionId"] == b["transactionId"] + 1
    assert a["idTagInfo"] == {"status": "Accepted"}
    assert denied["idTagInfo"]["status"] == "Invalid"
    assert denied_tx["idTagInfo"]["status"] == "Invalid"
    assert kid["idTagInfo"] == {"status": "Accepted", "parentIdTag": "FAMILY"}
    assert allowed["idTagInfo"]["status"] == "Accepted"
    assert orphan["idTagInfo"] == {"status": "Accepted"}
    assert stop == {"idTagInfo": {"status": "Accepted"}}
    assert stop_no_tag == {}


def test_options_boot_first_txid_deny_heartbeat():
    async def go(url):
        async with cp_connect(url, "OPT1") as ws:
            cp = Client(ws)
            return (await cp.result("BootNotification", BOOT),
                    await cp.result("StartTransaction", start_tx("NOPE")))
    with Csms("--boot", "pending", "--first-txid", "100", "--deny", "NOPE",
              "--heartbeat", "30") as c:
        boot, tx = run(go(c.url))
    assert (boot["status"], boot["interval"]) == ("Pending", 30)
    assert tx == {"transactionId": 100, "idTagInfo": {"status": "Invalid"}}


def test_other_cp_messages(cs):
    async def go():
        async with cp_connect(cs.url, "MSG1") as ws:
            cp = Client(ws)
            out = {}
            out["dt_ours"] = await cp.result("DataTransfer",
                                             {"vendorId": "mpocpp", "messageId": "x"})
            out["dt_other"] = await cp.result("DataTransfer", {"vendorId": "acme"})
            out["status"] = await cp.result("StatusNotification", {
                "connectorId": 1, "errorCode": "NoError", "status": "Available"})
            out["meter"] = await cp.result("MeterValues", {"connectorId": 1, "meterValue": [
                {"timestamp": "2025-01-01T00:00:00Z", "sampledValue": [{"value": "12"}]}]})
            out["fw"] = await cp.result("FirmwareStatusNotification", {"status": "Idle"})
            out["diag"] = await cp.result("DiagnosticsStatusNotification", {"status": "Idle"})
            out["sec"] = await cp.result("SecurityEventNotification", {
                "type": "StartupOfTheDevice", "timestamp": "2025-01-01T00:00:00Z"})
            return out
    out = run(go())
    assert out["dt_ours"]["status"] == "Accepted"
    assert out["dt_other"]["status"] == "UnknownVendorId"
    for k in ("status", "meter", "fw", "diag", "sec"):
        assert out[k] == {}, k
    assert [e for e in cs.invalid() if e["cp"] == "MSG1"] == []


def test_schema_invalid_call_is_reported(cs):
    async def go():
        async with cp_connect(cs.url, "BAD1") as ws:
            cp = Client(ws)
            err = await cp.call("StartTransaction", start_tx("T", meter=1.5))
            unknown = await cp.call("NoSuchAction", {})
            await ws.send("not json")
            await ws.send(json.dumps([2, "x" * 37, "Heartbeat", {}]))
            long_id = await cp.recv()
            # still alive and answering after all that
            hb = await cp.result("Heartbeat", {})
            return err, unknown, long_id, hb
    err, unknown, long_id, hb = run(go())
    assert err[0] == 4 and err[2] == "TypeConstraintViolation", err
    assert unknown[0] == 4 and unknown[2] in ("NotSupported", "NotImplemented"), unknown
    assert "currentTime" in hb
    bad = [e for e in cs.invalid() if e["cp"] == "BAD1"]
    assert [(e["kind"], e["action"]) for e in bad] == [
        ("call", "StartTransaction"), ("call", "NoSuchAction"), ("frame", None),
        ("frame", "Heartbeat")], bad
    assert long_id[0] == 3          # flagged, but still answered
    assert "meterStart" in bad[0]["error"] or "1.5" in bad[0]["error"]
    assert cs.wait(lambda e: e["ev"] == "recv" and e["cp"] == "BAD1" and "raw" in e)["raw"] \
        == "not json"


def test_error_and_silent_rules(cs):
    async def go():
        async with cp_connect(cs.url, "RULE1") as ws:
            cp = Client(ws)
            out = []
            assert cs.cmd("error Heartbeat InternalError 2")["ok"]
            out.append(await cp.call("Heartbeat", {}))
            out.append(await cp.call("Heartbeat", {}))
            out.append(await cp.call("Heartbeat", {}))
            assert cs.cmd("silent Heartbeat")["ok"]
            await ws.send(json.dumps([2, "s1", "Heartbeat", {}]))
            with pytest.raises(asyncio.TimeoutError):
                await cp.recv(timeout=0.5)
            out.append(await cp.call("Heartbeat", {}))
            assert cs.cmd("silent * -1")["ok"]
            await ws.send(json.dumps([2, "s2", "StatusNotification", {
                "connectorId": 0, "errorCode": "NoError", "status": "Available"}]))
            with pytest.raises(asyncio.TimeoutError):
                await cp.recv(timeout=0.5)
            assert cs.cmd("silent * 0")["ok"]
            assert cs.cmd("error * GenericError -1")["ok"]
            out.append(await cp.call("Authorize", {"idTag": "X"}))
            assert cs.cmd("error * GenericError 0")["ok"]
            out.append(await cp.call("Authorize", {"idTag": "X"}))
            return out
    try:
        e1, e2, ok1, ok2, e3, ok3 = run(go())
    finally:
        cs.cmd("silent * 0")
        cs.cmd("silent Heartbeat 0")
        cs.cmd("error Heartbeat InternalError 0")
    assert e1[0] == 4 and e1[2] == "InternalError" and e2[2] == "InternalError"
    assert ok1[0] == 3 and ok2[0] == 3 and ok3[0] == 3
    assert e3[0] == 4 and e3[2] == "GenericError"


def test_call_round_trip(cs):
    async def go():
        async with cp_connect(cs.url, "CALL1") as ws:
            cp = Client(ws)
            pending = asyncio.create_task(asyncio.to_thread(
                cs.cmd, 'call CALL1 RemoteStartTransaction {"idTag":"T1","connectorId":1}'))
            req = await cp.recv()
            assert req[0] == 2 and req[2] == "RemoteStartTransaction", req
            assert req[3] == {"idTag": "T1", "connectorId": 1}
            # a CP CALL crossing the CS CALL is still answered
            assert (await cp.result("Heartbeat", {}))["currentTime"]
            await ws.send(json.dumps([3, req[1], {"status": "Accepted"}]))
            ok = await pending

            pending = asyncio.create_task(asyncio.to_thread(cs.call, "CALL1", "GetConfiguration"))
            req = await cp.recv()
            await ws.send(json.dumps([4, req[1], "NotSupported", "nope", {}]))
            callerror = await pending

            pending = asyncio.create_task(asyncio.to_thread(cs.call, "CALL1", "Reset",
                                                            {"type": "Soft"}))
            req = await cp.recv()
            await ws.send(json.dumps([3, req[1], {"status": "Maybe"}]))
            bad_result = await pending
            return ok, callerror, bad_result
    ok, callerror, bad_result = run(go())
    assert ok["ok"] and ok["result"] == {"status": "Accepted"}, ok
    assert not callerror["ok"] and callerror["callerror"]["code"] == "NotSupported", callerror
    assert not bad_result["ok"] and bad_result["result"] == {"status": "Maybe"}, bad_result
    assert [e["action"] for e in cs.invalid() if e["cp"] == "CALL1"] == ["Reset"]

    not_connected = cs.cmd("call NOBODY GetConfiguration {}")
    assert not not_connected["ok"] and "not connected" in not_connected["error"]


def test_call_rejects_payload_failing_schema(cs):
    async def go():
        async with cp_connect(cs.url, "CALL2"):
            cs.wait(lambda e: e["ev"] == "connect" and e["cp"] == "CALL2")
            return await asyncio.to_thread(cs.cmd, 'call CALL2 Reset {"type":"Sideways"}')
    r = run(go())
    assert not r["ok"] and "schema" in r["error"], r


def test_call_fails_when_cp_disconnects(cs):
    async def go():
        async with cp_connect(cs.url, "CALL3") as ws:
            pending = asyncio.create_task(asyncio.to_thread(cs.call, "CALL3", "ClearCache"))
            await Client(ws).recv()
        return await pending
    r = run(go())
    assert not r["ok"] and "disconnected" in r["error"], r


def test_drop_close_and_abort(cs):
    async def go(cp_id, how):
        async with cp_connect(cs.url, cp_id) as ws:
            cs.wait(lambda e: e["ev"] == "connect" and e["cp"] == cp_id)
            assert (await asyncio.to_thread(cs.cmd, "drop %s %s" % (cp_id, how)))["ok"]
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            return info.value
    closed = run(go("DROP1", "4000"))
    assert closed.rcvd is not None and closed.rcvd.code == 4000
    assert cs.wait(lambda e: e["ev"] == "disconnect" and e["cp"] == "DROP1")["code"] == 4000
    aborted = run(go("DROP2", "abort"))
    assert aborted.rcvd is None
    assert cs.wait(lambda e: e["ev"] == "disconnect" and e["cp"] == "DROP2")["code"] is None
    assert not cs.cmd("drop DROP1")["ok"]        # not connected any more
    bad_code = cs.cmd("drop X 1005")
    assert not bad_code["ok"] and "close code" in bad_code["error"], bad_code


def test_send_raw_frame(cs):
    async def go():
        async with cp_connect(cs.url, "RAW1") as ws:
            cs.wait(lambda e: e["ev"] == "connect" and e["cp"] == "RAW1")
            assert (await asyncio.to_thread(cs.cmd, 'send RAW1 [2,"r1","Bogus",{}]'))["ok"]
            return await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert run(go()) == '[2,"r1","Bogus",{}]'
    assert cs.sent("RAW1") == [[2, "r1", "Bogus", {}]]


def test_missing_subprotocol_is_closed(cs):
    async def go():
        async with cp_connect(cs.url, "NOSUB", subprotocols=None) as ws:
            assert ws.subprotocol is None
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            return info.value
    closed = run(go())
    assert closed.rcvd.code == 1002
    assert cs.wait(lambda e: e["ev"] == "connect" and e["cp"] == "NOSUB")["subprotocol"] is None
    cs.wait(lambda e: e["ev"] == "disconnect" and e["cp"] == "NOSUB")
    assert "did not offer ocpp1.6" in cs.log_text()


def test_refuse(cs):
    async def go():
        with pytest.raises(websockets.InvalidStatus) as info:
            async with cp_connect(cs.url, "REF1"):
                pass
        async with cp_connect(cs.url, "REF1"):
            pass
        return info.value.response.status_code
    assert cs.cmd("refuse 1")["ok"]
    assert run(go()) == 503
    assert cs.wait(lambda e: e["ev"] == "refused" and e["cp"] == "REF1")["status"] == 503


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(user + b":" + password).decode()}


def test_basic_auth():
    key = "00112233445566778899aabbccddeeff"

    async def status(url, cp_id, headers):
        try:
            async with cp_connect(url, cp_id, additional_headers=headers):
                return 101
        except websockets.InvalidStatus as e:
            return e.response.status_code

    async def go(url):
        return [await status(url, "AUTH1", {}),
                await status(url, "AUTH1", basic(b"AUTH1", key.encode())),   # hex text, not bytes
                await status(url, "AUTH1", basic(b"OTHER", bytes.fromhex(key))),
                await status(url, "AUTH1", basic(b"AUTH1", bytes.fromhex(key)))]
    with Csms("--auth-key", key) as c:
        assert run(go(c.url)) == [401, 401, 401, 101]
        assert c.wait(lambda e: e["ev"] == "connect")["auth"] == "AUTH1"
        assert len(c.events("refused")) == 3


def test_malformed_commands_and_eof_then_sigterm():
    with Csms() as c:
        for line in ("bogus", "call", "call X", "boot maybe", "error Heartbeat",
                     "silent Heartbeat many", "drop", "refuse lots", "deny", 'call X Y {"a"'):
            r = c.cmd(line)
            assert r["ok"] is False and r["error"], (line, r)
        assert c.cmd("boot accepted 10")["ok"]
        assert [e["cmd"] for e in c.events("reply")] == list(range(1, 12))
        # EOF on stdin does not stop the server...
        c.proc.stdin.close()

        async def go():
            async with cp_connect(c.url, "EOF1") as ws:
                return await Client(ws).result("BootNotification", BOOT)
        assert run(go())["interval"] == 10
        # ...SIGTERM does, cleanly.
        c.proc.send_signal(signal.SIGTERM)
        assert c.proc.wait(10) == 0
        assert c.stop() == 0


def test_quit_exit_code():
    c = Csms()
    assert c.stop() == 0
    assert c.stop() == 0          # idempotent


def test_tls(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    async def go(url):
        async with cp_connect(url, "TLS1", ssl=ctx) as ws:
            return await Client(ws).result("Heartbeat", {})
    with Csms("--tls-cert", tmp_path / "cert.pem", "--tls-key", tmp_path / "key.pem") as c:
        assert c.url.startswith("wss://127.0.0.1:")
        assert "currentTime" in run(go(c.url))
