"""The websocket's opening handshake (ws.py): the URL, the TCP (and TLS) connect, the
HTTP upgrade and its checks, Basic auth.  Imported by WebSocket.connect() for the
connect and dropped after it, so this code costs RAM only while connecting.
"""
import asyncio
from asyncio import core
import binascii
import hashlib
import os
import socket
from errno import EINPROGRESS
from ocpp16.ws import WSError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def quote(s):
    """Percent-encode `s` (UTF-8) for a path segment; unreserved characters stay."""
    out = []
    for c in s.encode():
        if 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or chr(c) in "-._~":
            out.append(chr(c))
        else:
            out.append("%%%02X" % c)
    return "".join(out)


def parse_url(url, cp_id):
    """-> (is_tls, host, port, path) with `cp_id` appended as the last path segment."""
    if url.startswith("ws://"):
        tls, rest, port = False, url[5:], 80
    elif url.startswith("wss://"):
        tls, rest, port = True, url[6:], 443
    else:
        raise WSError("bad url, want ws:// or wss://: " + url)
    i = rest.find("/")
    hp, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    if hp.startswith("["):  # IPv6 literal
        j = hp.find("]")
        host, hp = hp[1:j], hp[j + 1 :]
        j = 0 if hp.startswith(":") else -1
    else:
        j = hp.find(":")
        host = hp if j < 0 else hp[:j]
    if j >= 0:
        try:
            port = int(hp[j + 1 :])
        except ValueError:
            raise WSError("bad port in url: " + url)
    if not host:
        raise WSError("no host in url: " + url)
    if not path.endswith("/"):
        path += "/"
    return tls, host, port, path + quote(cp_id)


def basic_auth(user, key):
    """Authorization header value for OCPP security profile 1/2: the password is the
    AuthorizationKey's bytes when it is an even-length hex string, else the key as is."""
    pw = None
    if len(key) % 2 == 0:
        try:
            pw = binascii.unhexlify(key)
        except ValueError:
            pass
    if pw is None:
        pw = key.encode()
    return "Basic " + binascii.b2a_base64(user.encode() + b":" + pw).decode().strip()


def accept_key(key):
    """Sec-WebSocket-Accept expected for the Sec-WebSocket-Key `key` (bytes)."""
    return binascii.b2a_base64(hashlib.sha1(key + _GUID).digest()).strip()


def connect(host, port, ssl=None):
    """A non-blocking socket connecting to host:port, TLS over it with `ssl`: our own
    socket rather than asyncio.open_connection, so whoever holds it can close it
    whatever happens (no fd leak); closed here if it fails before it is returned.  The
    connect (and the TLS handshake, which checks the server) completes with the first
    write or read.  Also used by transfer.py."""
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(ai[0], ai[1], ai[2])
    try:
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.args[0] != EINPROGRESS:
                raise
        if ssl:
            s = ssl.wrap_socket(s, server_hostname=host, do_handshake_on_connect=False)
            s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


async def handshake(ws, host, port, path, cp_id, subprotocol, auth_key, ssl):
    s = ws._s = connect(host, port, ssl)
    st = ws._st = asyncio.StreamWriter(s)
    key = binascii.b2a_base64(os.urandom(16)).strip()
    hh = host if ":" not in host else "[" + host + "]"
    if port != (443 if ssl else 80):
        hh += ":%d" % port
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           % (path, hh, key.decode()))
    if subprotocol:
        req += "Sec-WebSocket-Protocol: %s\r\n" % subprotocol
    if auth_key:
        req += "Authorization: %s\r\n" % basic_auth(cp_id, auth_key)
    st.write((req + "\r\n").encode())  # the write completes the TCP connect (or fails)
    await st.drain()
    hdr = await _response(ws)
    status = hdr.pop("")
    if status.split(" ")[1:2] != ["101"]:
        raise WSError(status)
    if hdr.get("upgrade", "").lower() != "websocket" or \
            "upgrade" not in hdr.get("connection", "").lower():
        raise WSError("not a websocket upgrade: " + status)
    if hdr.get("sec-websocket-accept", "").encode() != accept_key(key):
        raise WSError("bad Sec-WebSocket-Accept")
    if subprotocol and hdr.get("sec-websocket-protocol") != subprotocol:
        raise WSError("server did not agree to subprotocol " + subprotocol)
    if "sec-websocket-extensions" in hdr:
        raise WSError("server chose an extension we did not offer")

async def _response(ws):
    # Read the response head one byte at a time into the receive buffer so nothing
    # after the blank line (the server may talk first) is consumed; bounded by it.
    b = ws._rb
    n = 0
    while n < 4 or b[n - 4 : n] != b"\r\n\r\n":
        if n >= len(b):
            raise WSError("response header too long")
        try:
            k = ws._get(ws._hv, 0, 1)
        except OSError:
            raise WSError("connection closed during handshake")
        if k:
            b[n] = ws._hb[0]
            n += 1
        else:
            yield core._io_queue.queue_read(ws._s)
    try:
        lines = str(ws._rv[: n - 4], "utf-8").split("\r\n")
    except UnicodeError:
        raise WSError("response header is not text")
    hdr = {"": lines[0].strip()}
    for ln in lines[1:]:
        i = ln.find(":")
        if i > 0:
            hdr[ln[:i].strip().lower()] = ln[i + 1 :].strip()
    return hdr
