"""FTP for transfer.py (RFC 959): passive mode, binary, STOR (upload) and RETR (download).

Imported only when an ftp:// location is used.  `u` is transfer.parse(url): the user
and password come percent-decoded from the URL (anonymous when absent); the path is
taken relative to the login directory, as RFC 1738 reads ftp:// URLs.

Passive only (the charger is a client behind NAT): EPSV (RFC 2428) first, PASV when the
server does not know it.  Either way the data connection goes to the host of the
control connection: the address in a PASV answer is ignored, since a server behind NAT
often names its private one (curl does the same by default).
"""
from ocpp16.transfer import Conn, TransferError, unquote, send_all, save


async def _reply(c):
    # One reply -> (code, its first line).  "ddd-..." starts a multi-line reply that
    # ends with the line "ddd ..." (RFC 959 4.2).
    ln = await c.line()
    code = ln[:3]
    if len(ln) < 3 or not code.isdigit():
        raise TransferError("not an FTP reply: %s" % ln[:40])
    if ln[3:4] == "-":
        while True:
            more = await c.line()
            if more[:3] == code and more[3:4] != "-":
                break
    return int(code), ln


async def _cmd(c, text, ok, name=None):
    await c.write((text + "\r\n").encode())
    code, ln = await _reply(c)
    if code not in ok:
        # `name` instead of the command when it holds a secret (PASS).
        raise TransferError("FTP %s: %s" % (name or text, ln[:60]))
    return code, ln


async def _login(u):
    c = Conn().open(u[3], u[4])
    try:
        code, ln = await _reply(c)
        while code == 120:                  # "ready in a few minutes"
            code, ln = await _reply(c)
        if code != 220:
            raise TransferError("FTP greeting: %s" % ln[:60])
        code, _ = await _cmd(c, "USER " + (u[1] or "anonymous"), (230, 331), "USER")
        if code == 331:
            await _cmd(c, "PASS " + (u[2] if u[2] is not None else "anonymous@"),
                       (230, 202), "PASS")
        await _cmd(c, "TYPE I", (200,))
        return c
    except BaseException:
        c.close()
        raise


def _ints(s):
    out = []
    v = -1
    for ch in s + " ":
        if "0" <= ch <= "9":
            v = (0 if v < 0 else v * 10) + ord(ch) - 48
        elif v >= 0:
            out.append(v)
            v = -1
    return out


async def _passive(c):
    # -> the port of the data connection
    await c.write(b"EPSV\r\n")
    code, ln = await _reply(c)
    if code == 229:                         # "229 Entering Extended Passive Mode (|||p|)"
        p = _ints(ln[3:])
        if p:
            return p[-1]
    code, ln = await _cmd(c, "PASV", (227,))
    n = _ints(ln[3:])                       # h1,h2,h3,h4,p1,p2
    if len(n) < 6:
        raise TransferError("PASV: %s" % ln[:60])
    return n[-2] * 256 + n[-1]


def _path(u):
    p = unquote(u[5])
    return p[1:] if p.startswith("/") else p


async def _quit(c):
    try:
        await c.write(b"QUIT\r\n")
    except OSError:
        pass


async def store(u, size, chunks):
    """STOR the `size` bytes of `chunks` at u's path -> bytes sent."""
    c = await _login(u)
    try:
        d = Conn().open(u[3], await _passive(c))
        try:
            await _cmd(c, "STOR " + _path(u), (125, 150), "STOR")
            n = await send_all(d, chunks)
        finally:
            d.close()                       # the end of the file for the server
        code, ln = await _reply(c)
        if code not in (226, 250):
            raise TransferError("FTP STOR: %s" % ln[:60])
        if n != size:
            raise TransferError("sent %d bytes of %d" % (n, size))
        await _quit(c)
        return n
    finally:
        c.close()


async def retrieve(u, dest, offset=0):
    """RETR u's path into file `dest`, resuming at `offset` when the server can (REST)
    -> the file's size."""
    c = await _login(u)
    try:
        port = await _passive(c)
        if offset:
            await c.write(("REST %d\r\n" % offset).encode())
            if (await _reply(c))[0] != 350:
                offset = 0                  # no resume: the whole file again
        d = Conn().open(u[3], port)
        try:
            await _cmd(c, "RETR " + _path(u), (125, 150), "RETR")
            size = await save(d, dest, offset, -1)
        finally:
            d.close()
        code, ln = await _reply(c)
        if code not in (226, 250):
            raise TransferError("FTP RETR: %s" % ln[:60])
        await _quit(c)
        return size
    finally:
        c.close()
