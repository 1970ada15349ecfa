"""File transfer for FirmwareManagement: upload (GetDiagnostics) and download (updates).

    n = await transfer.put(url, size, chunks, ssl=ctx, timeout_ms=60000)
    n = await transfer.get(url, "/state/fw.part", offset=0, ssl=ctx, timeout_ms=120000)
    ctx = await transfer.tls_for(cp)          # for https://: the OCPP link's CA check

- URLs: ftp://[user[:password]@]host[:port]/path, http://..., https://... (user and
  password percent-decoded).  ftp:// goes to ftp.py (passive mode, binary); it is only
  imported when used.
- http(s) upload is a PUT of the file to the URL, with Content-Length (the caller says
  the size first) and Basic auth when the URL has user:password.  PUT, not POST: the
  location is a directory where the file is stored under its name, as with FTP, and a
  PUT needs no multipart envelope around a body that is streamed from flash.  Any 2xx
  answer is success; redirects are not followed.
- http(s) download is a GET (HTTP/1.0: never a chunked answer) streamed to a file in
  small pieces; with offset > 0 it asks for the rest (Range) and appends when the
  server sends 206, else starts the file again.
- https verifies the server against the CA bundle the OCPP link uses (cp.ssl, else
  <state>/ca.der) and its host name; there is no switch to turn that off.
- `chunks`: an iterable of bytes-like pieces (e.g. a generator reading flash); each piece
  is sent before the next is asked for, so it may reuse one buffer.
- Every operation runs under one timeout (the caller's, for the whole transfer); errors
  raise OSError, TransferError or asyncio.TimeoutError, and the sockets are closed.
RAM while a transfer runs: a 256-byte line buffer per connection and a 512-byte data
buffer for get(); nothing between transfers.
"""
import asyncio
import binascii
from asyncio import core
from micropython import const
from ocpp16 import store

_LINE = const(256)      # a control or header line longer than this is cut
_DATA = const(512)      # get(): the piece written to flash at a time
SCHEMES = ("ftp", "http", "https")


class TransferError(Exception):
    """The server refused or the transfer went wrong; str() says why."""


def unquote(s):
    """Percent-decoding (user, password, FTP path); ValueError on a bad escape."""
    if "%" not in s:
        return s
    b = s.encode()
    out = bytearray()
    i = 0
    while i < len(b):
        if b[i] == 37 and i + 2 < len(b):
            out.append(int(b[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b[i])
            i += 1
    return str(out, "utf-8")


def parse(url):
    """(scheme, user, password, host, port, path) of a URL; ValueError when it is not
    one this module can use.  user/password are None when absent."""
    i = url.find("://")
    scheme = url[:i].lower() if i > 0 else ""
    if scheme not in SCHEMES:
        raise ValueError("unsupported scheme (%s)" % ", ".join(SCHEMES))
    rest = url[i + 3:]
    j = rest.find("/")
    auth, path = (rest, "/") if j < 0 else (rest[:j], rest[j:])
    user = pw = None
    k = auth.rfind("@")
    if k >= 0:
        user, _, pw = auth[:k].partition(":")
        user, pw = unquote(user), (unquote(pw) if _ else None)
        auth = auth[k + 1:]
    port = (21, 80, 443)[SCHEMES.index(scheme)]
    if auth.startswith("["):                # [IPv6]:port
        k = auth.find("]")
        host, tail = auth[1:k], auth[k + 1:]
        if tail:
            port = int(tail[1:])
    else:
        host, _, p = auth.partition(":")
        if p:
            port = int(p)
    if not host or not 0 < port < 65536 or " " in url:
        raise ValueError("bad URL")
    return scheme, user, pw, host, port, path


def join(url, name):
    """The URL of file `name` in the directory `url`."""
    return url + name if url.endswith("/") else url + "/" + name


async def tls_for(cp):
    """The TLS context for an https:// transfer: the OCPP link's (cp.ssl) when it has
    one, else one made from <state>/ca.der; the wall clock is made known first
    (certificate dates).  TransferError when there is no CA bundle or no clock."""
    if not await cp.wallclock.sync():
        raise TransferError("no wall clock: certificates cannot be checked")
    if cp.ssl is not None:
        return cp.ssl
    der = store.read(cp.state + "/ca.der")
    if der is None:
        raise TransferError("https needs a CA bundle (%s/ca.der)" % cp.state)
    import tls
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(der)
    return ctx


class Conn:
    """A TCP (or TLS) connection on asyncio with a small buffer for reading lines."""

    def __init__(self):
        self.s = None
        self.st = None
        self.b = bytearray(_LINE)
        self.i = self.j = 0

    def open(self, host, port, ssl=None):
        from ocpp16.wsopen import connect
        s = self.s = connect(host, port, ssl)
        self.st = asyncio.StreamWriter(s)
        return self

    async def write(self, data):
        self.st.write(data)
        await self.st.drain()

    async def readinto(self, mv):
        """Read into mv (what the line buffer holds first) -> bytes, 0 at the end."""
        if self.i < self.j:
            n = min(len(mv), self.j - self.i)
            mv[:n] = memoryview(self.b)[self.i:self.i + n]
            self.i += n
            return n
        s = self.s
        while True:
            r = s.readinto(mv)      # TLS: what mbedTLS holds comes before a wait
            if r is not None:
                return r
            yield core._io_queue.queue_read(s)

    async def line(self):
        """The next line (str, no line end); TransferError when the peer closed."""
        b = self.b
        while True:
            k = b.find(b"\n", self.i, self.j)
            if k >= 0 or self.j - self.i == len(b):
                e = k if k >= 0 else self.j
                raw = bytes(b[self.i:e])
                self.i = e + 1 if k >= 0 else e
                try:
                    return str(raw, "utf-8").rstrip("\r")
                except UnicodeError:
                    return "?"
            if self.i:
                b[0:self.j - self.i] = bytes(b[self.i:self.j])
                self.j -= self.i
                self.i = 0
            mv = memoryview(b)[self.j:]
            s = self.s
            r = s.readinto(mv)
            if r is None:
                yield core._io_queue.queue_read(s)
                continue
            if not r:
                raise TransferError("connection closed")
            self.j += r

    def close(self):
        s = self.s
        self.s = self.st = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


async def put(url, size, chunks, ssl=None, timeout_ms=60000):
    """Upload `size` bytes from `chunks` to the file at `url` -> bytes sent."""
    u = parse(url)
    if u[0] == "ftp":
        from ocpp16 import ftp
        return await asyncio.wait_for_ms(ftp.store(u, size, chunks), timeout_ms)
    return await asyncio.wait_for_ms(_http(u, ssl, size, chunks, None, 0), timeout_ms)


async def get(url, path, offset=0, ssl=None, timeout_ms=120000):
    """Download `url` into the file at `path` (from `offset` when the server can
    resume) -> the file's size.  TransferError when the answer was cut short."""
    u = parse(url)
    if u[0] == "ftp":
        from ocpp16 import ftp
        return await asyncio.wait_for_ms(ftp.retrieve(u, path, offset), timeout_ms)
    return await asyncio.wait_for_ms(_http(u, ssl, 0, None, path, offset), timeout_ms)


async def _http(u, ssl, size, chunks, dest, offset):
    scheme, user, pw, host, port, path = u
    tls = scheme == "https"
    if tls and ssl is None:
        raise TransferError("https without a TLS context (never unverified)")
    c = Conn().open(host, port, ssl if tls else None)
    try:
        hh = host if ":" not in host else "[" + host + "]"
        if port != (443 if tls else 80):
            hh += ":%d" % port
        if dest is None:
            head = ("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n" % (path, hh, size))
        else:
            head = "GET %s HTTP/1.0\r\nHost: %s\r\n" % (path, hh)
            if offset:
                head += "Range: bytes=%d-\r\n" % offset
        if user is not None:
            head += "Authorization: Basic %s\r\n" % binascii.b2a_base64(
                ("%s:%s" % (user, pw or "")).encode()).decode().strip()
        await c.write((head + "\r\n").encode())
        if dest is None:
            sent = await send_all(c, chunks)
            if sent != size:
                raise TransferError("sent %d bytes of %d" % (sent, size))
        code, length = await _head(c)
        if dest is None:
            if not 200 <= code < 300:
                raise TransferError("HTTP %d" % code)
            return sent
        if code not in (200, 206):
            raise TransferError("HTTP %d" % code)
        return await save(c, dest, offset if code == 206 else 0, length)
    finally:
        c.close()


async def send_all(c, chunks):
    """Write each piece of `chunks` to connection c -> bytes written."""
    n = 0
    for d in chunks:
        if d:
            await c.write(d)
            n += len(d)
    return n


async def _head(c):
    # The status line and the headers -> (status code, Content-Length or -1).
    st = await c.line()
    try:
        code = int(st.split(" ")[1])
    except (IndexError, ValueError):
        raise TransferError("not an HTTP answer: %s" % st[:40])
    length = -1
    while True:
        h = await c.line()
        if not h:
            return code, length
        if h[:15].lower() == "content-length:":
            length = int(h[15:].strip())


async def save(c, dest, offset, length):
    """Stream the rest of connection c into file `dest` (appended from `offset`, else
    written anew) -> the file's size.  length: what should come (-1: up to the end)."""
    buf = bytearray(_DATA)
    mv = memoryview(buf)
    got = 0
    with open(dest, "ab" if offset else "wb") as f:
        while length < 0 or got < length:
            n = await c.readinto(mv)
            if not n:
                break
            f.write(mv[:n])
            got += n
        f.flush()
    if length >= 0 and got < length:
        raise TransferError("cut short: %d of %d bytes" % (got, length))
    return offset + got
