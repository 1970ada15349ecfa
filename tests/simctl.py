"""Drive `tools/sim` (the firmware on the unix port with the simulated board) from tests."""
import json
import os
import re
import signal
import subprocess
import threading
import time

from helpers import ROOT


class Sim:
    """A running simulated charger; every line it prints is kept in `lines`."""

    def __init__(self, csms_url, cp_id="CP1", state=None, connectors=1, extra=()):
        self.cp_id = cp_id
        self.state = str(state)
        # csms_url / cp_id None: the firmware takes them from <state>/config.json.
        args = [str(ROOT / "tools" / "sim")]
        if csms_url is not None:
            args += ["--csms", csms_url]
        if cp_id is not None:
            args += ["--id", cp_id]
        args += ["--state", self.state, "--connectors", str(connectors)] + list(extra)
        self.proc = subprocess.Popen(args, cwd=str(ROOT), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     bufsize=0)
        self.lines = []
        self._cv = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def wait_line(self, pattern, timeout=20, start=0):
        """Index of the first line (from `start`) matching regex `pattern`."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                for i in range(start, len(self.lines)):
                    if rx.search(self.lines[i]):
                        return i
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._t.is_alive()):
                    raise AssertionError("sim: no line matching %r within %ss; last lines:\n%s"
                                         % (pattern, timeout, self.tail()))
                self._cv.wait(min(left, 0.2))

    def frames(self, direction=">>"):
        """Frames the charger sent (">>") or received ("<<"), parsed."""
        out = []
        for line in list(self.lines):
            if line.startswith(direction + " "):
                try:
                    out.append(json.loads(line[3:]))
                except ValueError:
                    pass
        return out

    def tail(self, n=40):
        return "\n".join(self.lines[-n:])

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL: a power cut."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout=10):
        if self.alive():
            try:
                self.send("quit")
                self.proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.kill()
        self._t.join(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
