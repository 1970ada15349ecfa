"""wss with certificate verification: the MicroPython client against a `websockets` TLS
server on 127.0.0.1, with certificates made here by `cryptography`.

- good CA + host name localhost: connects and echoes (also a burst of messages that
  arrive in back-to-back TLS records, and a message bigger than one read);
- an unrelated CA: refused;
- a certificate for another host name (signed by the good CA): refused;
and after each refusal the same client process connects fine.
"""
import asyncio
import datetime
import ipaddress
import json
import ssl
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.server import serve

from helpers import ROOT, micropython, mp_env

CLIENT = ROOT / "tests" / "mp" / "ws_client.py"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key, ca_cert, names, ips=()):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i))
                                              for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name(names[0]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_pem(tmp, tag, key, cert):
    """The server's key and certificate as PEM files <tag>.key, <tag>.pem in `tmp`."""
    kp, cp = tmp / (tag + ".key"), tmp / (tag + ".pem")
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


def server_context(tmp, tag, key, cert):
    kp, cp = write_pem(tmp, tag, key, cert)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cp), str(kp))
    return ctx


async def handler(conn):
    if conn.subprotocol != "ocpp1.6":
        await conn.close(1002)
        return
    async for msg in conn:
        if msg == "burst":
            for i in range(5):
                await conn.send('[2,"%d","Burst",{}]' % i)
        elif msg == "big":
            await conn.send(bytes(97 + i % 26 for i in range(4000)))
        else:
            await conn.send(msg)


class TLSServers:
    """Two websockets TLS servers in one background loop: the right certificate for
    localhost, and a certificate for another name, both issued by the good CA."""

    def __init__(self, good_ctx, wrongname_ctx):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.ctxs = (good_ctx, wrongname_ctx)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.servers = []
            for ctx in self.ctxs:
                self.servers.append(await serve(handler, "127.0.0.1", 0, ssl=ctx,
                                                subprotocols=["ocpp1.6"]))
            self.ports = [s.sockets[0].getsockname()[1] for s in self.servers]

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()
        # Closed once stopped: an unclosed loop leaks its self-pipe sockets
        # (ResourceWarning at interpreter exit).
        self.loop.close()

    def stop(self):
        async def shutdown():
            for s in self.servers:
                s.close()
            for s in self.servers:
                await s.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    ca_key, ca = make_ca("Test CSMS Root")
    _, other_ca = make_ca("Unrelated Root")
    k1, c1 = make_server_cert(ca_key, ca, ["localhost"], ["127.0.0.1"])
    k2, c2 = make_server_cert(ca_key, ca, ["wrong.example"])
    good_der, other_der = tmp / "ca.der", tmp / "other-ca.der"
    good_der.write_bytes(ca.public_bytes(serialization.Encoding.DER))
    other_der.write_bytes(other_ca.public_bytes(serialization.Encoding.DER))
    srv = TLSServers(server_context(tmp, "localhost", k1, c1),
                     server_context(tmp, "wrong", k2, c2))
    yield {"ca": str(good_der), "other": str(other_der), "port": srv.ports[0],
           "wrong_port": srv.ports[1]}
    srv.stop()


def run_client(steps, timeout=60):
    p = subprocess.run([micropython(), str(CLIENT), "-"], input=json.dumps(steps),
                       env=mp_env(), cwd=str(ROOT), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    evs = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert evs and evs[-1]["ev"] == "end", "client did not finish:\n" + p.stdout[-3000:]
    return evs


def only(evs, name):
    return [e for e in evs if e["ev"] == name]


def good(pki, tag):
    url = "wss://localhost:%d/ocpp/" % pki["port"]
    return [{"do": "connect", "url": url, "ca": pki["ca"]},
            {"do": "send", "text": '[2,"%s","Heartbeat",{}]' % tag},
            {"do": "expect", "n": 1}, {"do": "close"}]


def assert_good(evs, tag):
    assert only(evs, "connect")[-1]["ok"], only(evs, "connect")[-1]
    assert only(evs, "msg")[-1]["head"] == '[2,"%s","Heartbeat",{}]' % tag
    assert only(evs, "close")[-1]["closed"]


def test_wss_connects_with_the_right_ca(pki):
    url = "wss://localhost:%d/ocpp/" % pki["port"]
    evs = run_client([
        {"do": "connect", "url": url, "ca": pki["ca"]},
        {"do": "send", "text": "burst"}, {"do": "expect", "n": 5},
        {"do": "send", "len": 2000}, {"do": "expect", "n": 6},
        {"do": "send", "text": "big"}, {"do": "expect", "n": 7},
        {"do": "close"},
    ] + good(pki, "tls"))
    assert only(evs, "connect")[0]["ok"], evs
    m = only(evs, "msg")
    assert [x["head"] for x in m[:5]] == ['[2,"%d","Burst",{}]' % i for i in range(5)]
    for x, n in zip(m[5:7], (2000, 4000)):
        assert x["len"] == n and x["sum"] == sum(97 + i % 26 for i in range(n))
    assert only(evs, "close")[0]["close_code"] == 1000  # the server answered our close
    assert_good(evs, "tls")


def test_wss_refused_with_an_unrelated_ca(pki):
    url = "wss://localhost:%d/ocpp/" % pki["port"]
    evs = run_client([{"do": "connect", "url": url, "ca": pki["other"]}] + good(pki, "ca"))
    con = only(evs, "connect")[0]
    assert not con["ok"] and con["err"] == "WSError" and con["closed"], con
    assert con["msg"].startswith("TLS: ") and "\n" not in con["msg"]
    assert_good(evs, "ca")


def test_wss_refused_for_a_wrong_host_name(pki):
    # right CA, but the certificate names wrong.example, not localhost
    url = "wss://localhost:%d/ocpp/" % pki["wrong_port"]
    evs = run_client([{"do": "connect", "url": url, "ca": pki["ca"]}] + good(pki, "name"))
    con = only(evs, "connect")[0]
    assert not con["ok"] and con["err"] == "WSError" and con["closed"], con
    assert con["msg"].startswith("TLS: ") and "\n" not in con["msg"]
    assert_good(evs, "name")
