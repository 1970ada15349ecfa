"""Start and drive the development central system (tools/csms) from host-side tests.

    with Csms("--heartbeat", "30") as cs:
        sim = start_charger(csms_url=cs.url)          # ws://127.0.0.1:PORT/ocpp
        boot = cs.wait_call("BootNotification", cp="CP1", timeout=20)
        reply = cs.cmd('call CP1 GetConfiguration {}')
        assert reply["ok"], reply
        assert cs.invalid() == []

Events are the JSON objects tools/csms prints with --json (see tools/csms.py).
Every process started here is stopped by stop(), by the context manager, and, as a
last resort, at interpreter exit.
"""
import atexit
import collections
import json
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSMS = ROOT / "tools" / "csms"
START_TIMEOUT = 30

_running = set()          # instances not stopped yet, for the atexit safety net


@atexit.register
def _stop_all():
    for cs in list(_running):
        cs.stop(timeout=2)


class Csms:
    def __init__(self, *args, start_timeout=START_TIMEOUT, path="/ocpp"):
        self.args = [str(a) for a in args]
        self._events = []
        self._log = collections.deque(maxlen=20000)
        self._cond = threading.Condition()
        self._cmd_lock = threading.Lock()
        self._ncmd = 0
        self._listening = None
        self._stopped = False
        self.proc = subprocess.Popen(
            [str(CSMS), "--port", "0", "--json"] + self.args, cwd=str(ROOT),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1)
        _running.add(self)
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()
        try:
            self.base = self._until(lambda: self._listening, start_timeout,
                                    "the LISTENING line from tools/csms")
        except BaseException:
            self.stop()
            raise
        self.port = int(self.base.rsplit(":", 1)[1])
        self.url = self.base + path       # the CP appends /<chargePointId>

    # --- readers (threads) ----------------------------------------------

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.strip()
            with self._cond:
                if line.startswith("LISTENING ") and self._listening is None:
                    self._listening = line.split(None, 1)[1]
                elif line:
                    try:
                        self._events.append(json.loads(line))
                    except ValueError:
                        self._log.append("[csmsctl] unexpected stdout line: " + line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self):
        # Also keeps the pipe drained, so the server never blocks on its log.
        for line in self.proc.stderr:
            self._log.append(line.rstrip("\n"))

    # --- waiting ---------------------------------------------------------

    def _until(self, probe, timeout, what):
        """Return probe()'s first truthy value (probe runs under the lock)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = probe()
                if value:
                    return value
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise AssertionError("tools/csms exited (code %s) while waiting for %s\n%s"
                                         % (self.proc.returncode, what, self.log_text(80)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %ss waiting for %s\n--- csms log:\n%s"
                                         % (timeout, what, self.log_text(80)))
                self._cond.wait(min(left, 0.5))

    def wait(self, predicate, timeout=10, after=0):
        """First event (at index >= after in events()) satisfying predicate."""
        def probe():
            for e in self._events[after:]:
                if predicate(e):
                    return e
            return None
        return self._until(probe, timeout, "an event matching %r" % (predicate,))

    def wait_call(self, action, cp=None, timeout=10, after=0):
        """The CALL frame calls(action, cp)[after], waiting for it to arrive.
        Pass after=len(cs.calls(action, cp)) to wait for the next new one."""
        def probe():
            found = self.calls(action, cp)
            return found[after] if len(found) > after else None
        return self._until(probe, timeout,
                           "CALL #%d of %s from %s" % (after, action, cp or "any CP"))

    def mark(self):
        """Current number of events: an `after` for wait()."""
        with self._cond:
            return len(self._events)

    # --- queries ---------------------------------------------------------

    def events(self, ev=None, cp=None):
        with self._cond:
            return [e for e in self._events
                    if (ev is None or e.get("ev") == ev) and (cp is None or e.get("cp") == cp)]

    def calls(self, action=None, cp=None):
        """CALL frames [2, id, action, payload] received from CPs, in order."""
        return [e["frame"] for e in self.events("recv", cp)
                if isinstance(e.get("frame"), list) and len(e["frame"]) == 4
                and e["frame"][0] == 2 and (action is None or e["frame"][2] == action)]

    def sent(self, cp=None):
        """Frames the central system sent, in order."""
        return [e["frame"] for e in self.events("send", cp) if "frame" in e]

    def invalid(self):
        return self.events("invalid")

    def log_text(self, last=None):
        lines = list(self._log)
        return "\n".join(lines if last is None else lines[-last:])

    # --- commands ----------------------------------------------------------

    def cmd(self, line, timeout=10):
        """Send one command line; returns its reply event."""
        if not line.strip() or "\n" in line:
            raise ValueError("one non-empty command line expected: %r" % line)
        with self._cmd_lock:
            self._ncmd += 1
            n = self._ncmd
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.wait(lambda e: e.get("ev") == "reply" and e.get("cmd") == n, timeout)

    def call(self, cp, action, payload=None, timeout=10):
        """CS-initiated CALL; returns the reply event (result in reply["result"])."""
        return self.cmd("call %s %s %s" % (cp, action, json.dumps(payload or {})), timeout)

    # --- lifetime ----------------------------------------------------------

    def stop(self, timeout=10):
        """Quit the server (kill it if it does not exit); returns its exit code."""
        if self._stopped:
            return self.proc.returncode
        self._stopped = True
        try:
            with self._cmd_lock:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        _running.discard(self)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
