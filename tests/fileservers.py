"""File servers for the FirmwareManagement tests, on loopback with ephemeral ports.

- FtpServer: a real FTP server (pyftpdlib) with one user, passive mode (EPSV and PASV;
  `epsv=False` answers EPSV with 502 so the client must fall back to PASV); it keeps the
  commands it received (`commands`, PASS masked) and stores files under `root`.
- HttpServer: a stdlib http.server that takes PUT (and POST) uploads into `files`
  {path: bytes} and serves GET from `serve` {path: bytes} (with Range); `status` is what
  an upload is answered (e.g. 403 to refuse); `tls` an ssl.SSLContext for https.
- free_port(): a loopback port where nothing listens (a server that is down).
Fixtures: ftp_server, http_server (factories; everything stopped at teardown).
"""
import http.server
import socket
import threading

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FtpServer:
    def __init__(self, root, user="diag", password="secret", epsv=True):
        self.root = root
        self.commands = []
        auth = DummyAuthorizer()
        auth.add_user(user, password, str(root), perm="elradfmwMT")
        seen = self.commands

        class Handler(FTPHandler):
            authorizer = auth

            def pre_process_command(self, line, cmd, arg):
                seen.append("PASS ***" if cmd == "PASS" else line)
                if cmd == "EPSV" and not epsv:
                    self.respond("502 EPSV not implemented here.")
                    return
                return super().pre_process_command(line, cmd, arg)

        self.server = FTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.address[1]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.server.serve_forever(timeout=0.05, blocking=False)
        self.server.close_all()

    def stop(self):
        self._stop.set()
        self._t.join(5)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _upload(self):
        srv = self.server.owner
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        srv.requests.append((self.command, self.path, dict(self.headers), body))
        code = srv.status
        if 200 <= code < 300:
            srv.files[self.path] = body
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    do_PUT = do_POST = _upload

    def do_GET(self):
        srv = self.server.owner
        srv.requests.append(("GET", self.path, dict(self.headers), b""))
        data = srv.serve.get(self.path)
        if data is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range", "")
        start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[start:])


class HttpServer:
    def __init__(self, tls=None, status=201):
        self.files = {}
        self.serve = {}
        self.requests = []
        self.status = status
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._t = threading.Thread(target=self.httpd.serve_forever,
                                   kwargs={"poll_interval": 0.05}, daemon=True)
        self._t.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._t.join(5)


@pytest.fixture
def ftp_server(tmp_path):
    started = []

    def start(**kw):
        root = tmp_path / ("ftp%d" % len(started))
        root.mkdir()
        s = FtpServer(root, **kw)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


@pytest.fixture
def http_server():
    started = []

    def start(**kw):
        s = HttpServer(**kw)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()
