# The diagnostics log on flash (diaglog.py): a bounded ring, buffered writes, lines that
# survive a reboot; and the reader GetDiagnostics uploads from (diagnostics.py).
import os
from ocpp16 import diaglog, diagnostics
from ocpp16.diaglog import DiagLog, FILES, BUF
from ocpp16.clock import Clock, parse_iso
from fsutil import rmtree

_D = "/tmp/mpocpp-test-diag"


def _fresh(kb=8):
    rmtree(_D)
    return DiagLog(_D, kb=kb, out=lambda s: None)


def _total():
    return sum(os.stat(p)[6] for p, _ in diaglog.files(_D))


def _text():
    buf = bytearray(256)
    return b"".join(bytes(ln) for ln in diagnostics._lines(diaglog.files(_D), buf)).decode()


class _TB:
    # cp.timebase as the log sees it: a settable clock, boot 7.
    def __init__(self):
        self.boot = 7
        self.clock = Clock(lambda: self.secs)
        self.secs = 100

    def stamp(self):
        t = self.clock.now()
        return (t, 0) if t else (0, self.secs)

    def resolve(self, boot, secs):
        off = self.clock.now() - self.secs if self.clock.valid and boot == 7 else None
        return None if off is None else off + secs


class _Cfg:
    def __init__(self, kb):
        self.kb = kb

    def get(self, name):
        assert name == "DiagnosticsLogKB"
        return self.kb


class _CP:
    def __init__(self, kb):
        self.timebase = _TB()
        self.cfg = _Cfg(kb)


def test_ring_stays_bounded():
    log = _fresh(kb=8)
    for i in range(2000):
        log("line %d %s" % (i, "x" * (i % 50)))
    log.flush()
    names = diaglog.seqs(_D)
    assert len(names) == FILES, names
    assert _total() <= 8 * 1024, _total()
    assert names[-1] > FILES            # it went round: the oldest files were removed
    text = _text()
    assert "line 1999 " in text and "line 0 " not in text
    # Smaller through the configuration: the next files are smaller, the ring shrinks.
    log.attach(_CP(4))
    for i in range(2000):
        log("again %d" % i)
    log.flush()
    assert _total() <= 4 * 1024 + BUF, _total()


def test_buffered_writes():
    log = _fresh(kb=64)
    lines = 300
    for i in range(lines):
        log("connector %d status Available (%d)" % (i % 2, i))
    assert log.writes <= lines * 45 // BUF + 1, log.writes     # ~45 bytes a line
    assert log.writes >= 1
    assert log.writes < lines // 8      # never one flash write per line
    # How full the buffer is depends on the stamps' length (seconds since start here):
    # flush first, so "short" surely fits.
    log.flush()
    n = log.writes
    log("short")
    assert log.writes == n              # in RAM until the buffer is full ...
    log.flush()
    assert log.writes == n + 1          # ... or flushed (timer, reboot, crash)
    log.flush()
    assert log.writes == n + 1          # nothing to write: no write


def test_lines_survive_a_reboot_and_the_ring_goes_on():
    log = _fresh(kb=8)
    for i in range(50):
        log("before reboot %d" % i)
    log.flush()
    seq = log.seq
    log = DiagLog(_D, kb=8, out=lambda s: None)     # the next boot
    assert log.seq == seq and log.size == os.stat(diaglog.path(_D, seq))[6]
    log("after reboot")
    log.flush()
    text = _text()
    assert "before reboot 0\n" in text and "before reboot 49\n" in text
    assert text.index("before reboot 49") < text.index("after reboot")


def test_stamps_and_long_lines():
    log = _fresh()
    cp = _CP(8)
    log("no clock yet")                 # before attach: seconds since start
    log.attach(cp)
    log("relative")                     # boot 7, 100 s after power-on
    cp.timebase.clock.set(parse_iso("2026-03-01T12:00:00Z"))
    log("with the clock")
    log("y" * 500)
    log.flush()
    lines = _text().splitlines()
    assert lines[0].startswith("+") and lines[0].endswith(" no clock yet")
    assert lines[1] == "~7.100 relative"
    assert lines[2] == "2026-03-01T12:00:00Z with the clock"
    assert len(lines[3]) == diaglog.LINE_MAX - 1 and lines[3].endswith("...")


def test_time_filter():
    log = _fresh(kb=16)
    cp = _CP(16)
    log.attach(cp)
    tb = cp.timebase
    log("early, relative")              # ~7.100: resolved once the clock is known
    tb.clock.set(parse_iso("2026-03-01T11:59:00Z"))    # at 100 s after power-on
    tb.secs = 1000                      # 12:14:00
    log("inside\ncontinued")            # a continuation line goes with its line
    tb.secs = 4000                      # 13:04:00
    log("late")
    log.flush()
    files = diaglog.files(_D)

    def sel(a, b):
        t0 = parse_iso(a) if a else None
        t1 = parse_iso(b) if b else None
        buf = bytearray(256)
        return [bytes(x).decode().strip()
                for x in diagnostics._select(tb, files, t0, t1, buf, {})]
    assert sel("2026-03-01T12:10:00Z", "2026-03-01T12:20:00Z") == \
        ["2026-03-01T12:14:00Z inside", "continued"]
    assert sel(None, "2026-03-01T12:00:00Z") == ["~7.100 early, relative"]
    assert sel("2026-03-01T13:00:00Z", None) == ["2026-03-01T13:04:00Z late"]
    assert len(sel(None, None)) == 4


def test_held_files_are_kept_until_release():
    log = _fresh(kb=4)
    log("first")
    files = log.snapshot()
    log.hold()
    for i in range(500):
        log("filler %d" % i)
    log.flush()
    assert len(diaglog.seqs(_D)) > FILES        # none removed while held
    assert os.stat(files[0][0])
    log.release()
    assert len(diaglog.seqs(_D)) == FILES
