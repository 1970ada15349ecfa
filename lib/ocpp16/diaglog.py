"""The diagnostics log on flash: every log line, kept in a bounded ring of a few files.

    log = DiagLog(state + "/diag")      # firmware/main.py: the `log` everything is given
    log("link: connected")              # printed, and kept for GetDiagnostics
    log.attach(cp)                      # stamps from cp's clock; size from the config

- A line is "<stamp> <text>\\n": the UTC time ("2026-03-01T12:00:05Z") when the clock is
  set; else "~<boot>.<seconds since power-on>" (the journal's relative stamp, resolved
  later through cp.timebase); before attach() "+<seconds since start>".  A line longer
  than LINE_MAX bytes is cut ("...").
- Flash wear: lines go into one RAM buffer of BUF bytes, appended to flash when it is
  full, every minute (the charge point's ticker calls flush()), and at a reboot, a
  crash or a fatal error (firmware/main.py calls flush()).  On a 512-byte buffer that is one flash write per
  ~7 lines at most, never one per line.  A power cut loses what is in the buffer.
- The ring: files <dir>/<seq>.log, at most FILES of them, each up to DiagnosticsLogKB /
  FILES.  When the newest is full the next is started and the oldest removed, so the
  log never holds more than DiagnosticsLogKB (plus one buffer).  While an upload reads
  the files (hold()), none is removed; they are trimmed at release().
- Appends are plain file writes, not store.append: the log is best effort, a torn last
  line is read as it is, and counting its writes (which come on a timer) would make the
  kill-point sweeps (MPOCPP_KILL_AFTER_WRITES) depend on timing.
"""
import os
from time import ticks_ms
from micropython import const
from ocpp16 import store
from ocpp16.clock import iso

FILES = const(4)            # files in the ring
BUF = const(512)            # RAM buffer (bytes), the only RAM the log keeps at idle
LINE_MAX = const(200)       # the longest line kept (bytes); readers' buffers hold one
DEFAULT_KB = const(32)      # DiagnosticsLogKB's default (config.py)

current = None              # the running log (made by firmware/main.py), for diagnostics


def seqs(d):
    """The sequence numbers of the ring's files in `d`, oldest first."""
    out = []
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        if n.endswith(".log"):
            try:
                out.append(int(n[:-4]))
            except ValueError:
                pass
    out.sort()
    return out


def path(d, seq):
    return "%s/%d.log" % (d, seq)


class DiagLog:
    def __init__(self, d, kb=DEFAULT_KB, out=print):
        global current
        self.dir = d
        self.out = out          # where a line is shown too (the console)
        self.kb = kb
        self.cfg = None
        self.tb = None
        self.buf = bytearray(BUF)
        self.n = 0              # bytes waiting in buf
        self.writes = 0         # flash appends since boot (tests, bench)
        self._held = 0
        store.makedirs(d)
        s = seqs(d)
        self.seq = s[-1] if s else 0
        try:
            self.size = os.stat(path(d, self.seq))[6]
        except OSError:
            self.size = 0
        current = self

    def attach(self, cp):
        """Stamp lines with cp's clock (or its relative stamps) and take the ring's size
        from its configuration (DiagnosticsLogKB)."""
        self.tb = cp.timebase
        self.cfg = cp.cfg

    def __call__(self, msg):
        self.out(msg)
        self.add(msg)

    def add(self, msg):
        """Keep `msg` (str) as one line, buffered."""
        tb = self.tb
        if tb is None:
            st = "+%d" % (ticks_ms() // 1000)
        else:
            t, rel = tb.stamp()
            st = iso(t) if t else "~%d.%d" % (tb.boot, rel)
        b = ("%s %s\n" % (st, msg)).encode()
        if len(b) > LINE_MAX:
            b = b[:LINE_MAX - 4] + b"...\n"
        n = self.n
        if n + len(b) > BUF:
            self.flush()
            n = 0
        self.buf[n:n + len(b)] = b
        self.n = n + len(b)

    def limit(self):
        """The largest size of one file of the ring (bytes)."""
        kb = self.cfg.get("DiagnosticsLogKB") if self.cfg else self.kb
        return kb * 1024 // FILES

    def flush(self):
        """Append the buffered lines to flash (one write); never raises."""
        n = self.n
        if not n:
            return
        self.n = 0
        if self.size and self.size + n > self.limit():
            self.seq += 1
            self.size = 0
            if not self._held:
                self._trim()
        try:
            with open(path(self.dir, self.seq), "ab") as f:
                f.write(memoryview(self.buf)[:n])
            self.size += n
            self.writes += 1
        except OSError:
            pass                # flash full or broken: the log must not stop the charger

    def _trim(self):
        for s in seqs(self.dir):
            if s > self.seq - FILES:
                break
            store.remove(path(self.dir, s))

    def hold(self):
        """Keep every file until release() (an upload is reading them)."""
        self._held += 1

    def release(self):
        self._held -= 1
        if not self._held:
            self._trim()

    def snapshot(self):
        """Flush, then [(path, size)] of the ring, oldest first: what is there now."""
        self.flush()
        return files(self.dir, self.seq, self.size)


def files(d, last=None, last_size=None):
    """[(path, size)] of the ring in `d`, oldest first, none after `last` (whose size is
    taken as `last_size`: what it held when asked)."""
    out = []
    for s in seqs(d):
        if last is not None and s > last:
            break
        p = path(d, s)
        if s == last:
            out.append((p, last_size))
            continue
        try:
            out.append((p, os.stat(p)[6]))
        except OSError:
            pass
    return out
