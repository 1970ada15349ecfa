"""FirmwareManagement, diagnostics: GetDiagnostics (OCPP 1.6 §5.9, §6.29;
DiagnosticsStatusNotification §4.4).

Imported at the first GetDiagnostics (chargepoint._PROFILES); its state is cp.part(
"diagnostics").  The answer names the file at once ("<ChargePointId>-<UTC time>.log");
the upload follows in the background: one asyncio task for the duration of one upload
(the only one: a GetDiagnostics while an upload runs is answered without a fileName,
nothing more is uploaded for it).  DiagnosticsStatusNotification Uploading when it
starts, then Uploaded or UploadFailed, through cp.request (not journaled: a status
whose link drops is lost, TriggerMessage asks for the current one).

What is uploaded: a header line, then the lines of the diagnostics log on flash
(diaglog.py) whose time is within [startTime, stopTime] (each bound when given).  A
line stamped before the clock was known ("~boot.secs") is placed through cp.timebase;
one that cannot be placed is kept (better one line too many than a gap).  Lines come
from flash through two small buffers (256 B in, 512 B out); the size is counted in a
first pass (Content-Length), the ring is held (no file removed) during an attempt.

Retries: `retries` more attempts after the first (absent: RETRIES), `retryInterval`
seconds apart (absent: INTERVAL).  An attempt times out after MessageTimeout seconds
plus 1 ms per byte (at least 1 KB/s).
"""
import asyncio
from micropython import const
from ocpp16.rpc import CallError, field, only
from ocpp16 import messages, diaglog, transfer
from ocpp16.clock import iso, parse_iso
from ocpp16.states import VERSION

RETRIES = const(2)          # retries when the request gives none
INTERVAL = const(60)        # s between attempts when the request gives none
_MAX_RETRIES = const(10)
_IN = const(256)            # one line of the log (diaglog.LINE_MAX fits)
_OUT = const(512)


def _opt(p, name, typ):
    # Optional fields: JSON null is taken as absent.
    return None if p.get(name) is None else field(p, name, typ)


def _time(p, name):
    v = _opt(p, name, str)
    if v is None:
        return None
    try:
        return parse_iso(v)
    except ValueError:
        raise CallError("TypeConstraintViolation", name + " is not a date-time")


def get_diagnostics(cp, p):
    only(p, ("location", "retries", "retryInterval", "startTime", "stopTime"))
    loc = field(p, "location", str)
    retries = _opt(p, "retries", int)
    interval = _opt(p, "retryInterval", int)
    for v, name in ((retries, "retries"), (interval, "retryInterval")):
        if v is not None and v < 0:
            raise CallError("PropertyConstraintViolation", name + " is negative")
    t0 = _time(p, "startTime")
    t1 = _time(p, "stopTime")
    try:
        scheme = transfer.parse(loc)[0]
    except ValueError as e:
        raise CallError("PropertyConstraintViolation", "location: %s" % e)
    if scheme == "ftp":
        from ocpp16 import ftp  # noqa: F401 (its code is loaded now, with the request)
    return cp.part("diagnostics").start(
        loc, t0, t1, RETRIES if retries is None else min(retries, _MAX_RETRIES),
        INTERVAL if interval is None else interval)


def file_name(cp):
    """<ChargePointId>-<YYYYMMDDTHHMMSSZ>.log (characters outside [A-Za-z0-9._-] in the
    id become "_"); without a clock, -boot<n>-<seconds since power-on>."""
    cid = "".join(ch if ch.isalpha() or ch.isdigit() or ch in "._-" else "_"
                  for ch in cp.cfg.get("ChargePointId"))
    t, rel = cp.timebase.stamp()
    if t:
        s = iso(t)
        when = s[0:4] + s[5:7] + s[8:13] + s[14:16] + s[17:20]
    else:
        when = "boot%d-%d" % (cp.timebase.boot, rel)
    return "%s-%s.log" % (cid, when)


class Part:
    def __init__(self, cp):
        self.cp = cp
        self.status = None      # None (Idle), "Uploading", "Uploaded", "UploadFailed"
        self.task = None

    def diagnostics_status(self):
        """For TriggerMessage: Uploading while an upload runs (retries included), then
        the outcome of the last one (Uploaded / UploadFailed); None (Idle) before any."""
        return self.status

    def start(self, url, t0, t1, retries, interval):
        cp = self.cp
        if self.task is not None:
            cp.log("diagnostics: an upload is running; this request gets no file")
            return {}
        name = file_name(cp)
        self.task = asyncio.create_task(self._job(transfer.join(url, name), name, t0, t1,
                                                  retries + 1, interval))
        return {"fileName": name}

    def _say(self, status):
        self.status = status
        self.cp.request(messages.DIAGNOSTICS_STATUS, messages.status_only, status)

    async def _job(self, url, name, t0, t1, tries, interval):
        # Every failure is caught here: an exception out of a task is fatal to the
        # charge point (chargepoint._task_died).
        cp = self.cp
        ok = False
        self._say("Uploading")
        try:
            for i in range(tries):
                if i:
                    await asyncio.sleep_ms(interval * 1000)
                try:
                    n = await self._attempt(url, t0, t1)
                    cp.log("diagnostics: %s uploaded (%d bytes)" % (name, n))
                    ok = True
                    break
                except Exception as e:      # OSError, TransferError, TimeoutError, ...
                    why = " ".join(str(e).split()) or repr(e)    # one line
                    cp.log("diagnostics: upload of %s, attempt %d of %d failed: %s"
                           % (name, i + 1, tries, why))
        finally:
            self.task = None
        self._say("Uploaded" if ok else "UploadFailed")

    async def _attempt(self, url, t0, t1):
        cp = self.cp
        dl = diaglog.current
        ssl = await transfer.tls_for(cp) if url.startswith("https:") else None
        if dl is not None:
            dl.hold()
        try:
            files = dl.snapshot() if dl is not None else diaglog.files(cp.state + "/diag")
            head = ("# %s diagnostics, firmware %s, boot %d, lines from %s to %s\n"
                    % (cp.cfg.get("ChargePointId"), VERSION, cp.timebase.boot,
                       iso(t0) if t0 else "the start",
                       iso(t1) if t1 else "now")).encode()
            ib = bytearray(_IN)
            cache = {}      # boot -> its offset: both passes place lines alike
            size = len(head)
            for ln in _select(cp.timebase, files, t0, t1, ib, cache):
                size += len(ln)
            chunks = _chunks(head, _select(cp.timebase, files, t0, t1, ib, cache),
                             bytearray(_OUT))
            ms = cp.cfg.get("MessageTimeout") * 1000 + size
            return await transfer.put(url, size, chunks, ssl=ssl, timeout_ms=ms)
        finally:
            if dl is not None:
                dl.release()


def _lines(files, buf):
    # The lines of the files (each a memoryview into buf, valid until the next), read in
    # pieces; a line longer than buf (never written so) comes in pieces.
    mv = memoryview(buf)
    cap = len(buf)
    for path, size in files:
        try:
            f = open(path, "rb")
        except OSError:
            continue
        try:
            i = j = 0
            while True:
                k = buf.find(b"\n", i, j) if j > i else -1
                if k >= 0:
                    yield mv[i:k + 1]
                    i = k + 1
                    continue
                if size <= 0:
                    if j > i:
                        yield mv[i:j]   # the last line, torn by a power cut
                    break
                if i:
                    buf[0:j - i] = bytes(mv[i:j])
                    j -= i
                    i = 0
                if j == cap:
                    yield mv[0:j]
                    j = 0
                    continue
                n = f.readinto(mv[j:min(cap, j + size)])
                if not n:
                    size = 0
                    continue
                j += n
                size -= n
        finally:
            f.close()


def _when(tb, ln, cache):
    # A line's time (Unix s), None when it cannot be known, -1 for a line without a
    # stamp (a continuation: it goes with the line before).
    c = ln[0] if len(ln) else 0
    try:
        if 48 <= c <= 57:
            if len(ln) < 21 or ln[20] != 32:
                return -1
            return parse_iso(bytes(ln[:20]))
        if c == 126:                                # ~boot.secs
            sp = bytes(ln[:24]).split(b" ")[0]
            boot, _, secs = sp[1:].partition(b".")
            boot = int(boot)
            if boot not in cache:
                cache[boot] = tb.resolve(boot, 0)
            base = cache[boot]
            return None if base is None else base + int(secs)
        if c == 43:                                 # +secs: before the clock was attached
            return None
    except ValueError:
        pass
    return -1


def _select(tb, files, t0, t1, buf, cache):
    keep = True
    for ln in _lines(files, buf):
        if t0 is not None or t1 is not None:
            t = _when(tb, ln, cache)
            if t is None:
                keep = True
            elif t >= 0:
                keep = (t0 is None or t >= t0) and (t1 is None or t <= t1)
        if keep:
            yield ln


def _chunks(head, lines, out):
    # The lines gathered into pieces of up to len(out) bytes (fewer, larger writes).
    yield head
    mv = memoryview(out)
    o = 0
    for ln in lines:
        n = len(ln)
        if o + n > len(out):
            yield mv[:o]
            o = 0
        out[o:o + n] = ln
        o += n
    if o:
        yield mv[:o]
