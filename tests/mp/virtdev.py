"""A virtual MicroPython board for mpremote, run by the unix port (tests/virtdev_host.py).

stdin/stdout are the board's serial link (the master side of a pty; mpremote opens the
slave).  It speaks the REPL protocol as a board's firmware does (shared/runtime/pyexec.c
and docs/reference/repl.rst describe it):

- friendly REPL: banner, `>>> ` prompt, echo, one-line statements, paste mode (Ctrl-E);
  Ctrl-A enters the raw REPL, Ctrl-B prints the banner again, Ctrl-C drops the line,
  Ctrl-D on an empty line soft-resets.
- raw REPL: `raw REPL; CTRL-B to exit\\r\\n` then `>`; the code is ended by Ctrl-D,
  acknowledged with `OK`, then stdout, \\x04, the uncaught exception, \\x04, `>`.
  Ctrl-A starts the raw REPL again, Ctrl-B leaves it, Ctrl-C drops the input, Ctrl-D on
  empty input soft-resets (`OK\\r\\n`, `MPY: soft reboot\\r\\n`, the raw banner again).
- raw-paste: `\\x05A\\x01` at an empty raw prompt is answered `R\\x01`, a 2-byte little
  endian window, and \\x01 (a second window); a \\x01 follows each window of bytes taken;
  the host's \\x04 ends the data and is acknowledged with \\x04, then the output as above.
  A Ctrl-C inside the data aborts it (\\x04, then KeyboardInterrupt as the exception).
  Another letter than A is answered `R\\x00`.  --no-raw-paste is a firmware built
  without raw-paste: `\\x05A\\x01` just restarts the raw REPL, and mpremote falls back
  to the standard raw REPL.

Code runs with exec() in one globals dict (the board's __main__), which every reset
replaces; modules imported since power-on are forgotten at a reset too.  The file system
is the folder --root, mounted at `/` (a VfsPosix rooted there replaces the host's), so
`/lib/x.py`, `lib/x.py` and `open('/state/a')` all land inside it, as on a board's flash.
`machine` is the board's: reset() is a hard reset (the code stops, the board boots in the
friendly REPL), soft_reset() a soft one, reset_cause() tells which.
`os` is the port's, with a rename() that works inside the folder (BoardOs).

Every boot runs /boot.py when present, as the firmware does.  main.py is not run here:
the tests boot the deployed firmware in a process of its own (it needs the simulated
board's stdin).  Each boot appends one JSON line to --log (a host path outside the root):
{"boot": "power"|"hard"|"soft", "maintenance": <text of /maintenance or null>}.

--cut-at PATH:SIZE is a power cut: when code writing the file PATH (as the code names
it, e.g. /lib/x.py) reaches SIZE bytes, the write is torn there and the process ends:
the link goes down with it, and the flash keeps what was written.  A PATH ending in `*`
is a prefix: /lib/x.py* cuts the first write of /lib/x.py or /lib/x.py.new to get there.
--cut-rename N is a power cut at the Nth os.rename() since power-on, instead of it.

A limitation: code runs to its end before the link is read again, so a Ctrl-C cannot
interrupt running code (mpremote's snippets end by themselves; nothing here runs long).

    micropython virtdev.py --root DIR --log FILE [--no-raw-paste] [--window N]
                           [--cut-at PATH:SIZE] [--cut-rename N]
"""
import gc
import io
import json
import os
import sys
import time
import vfs

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
BS, LF, CR, DEL = 8, 10, 13, 127
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
BANNER = (b"MicroPython v1.25.0 on virtdev; virtual board on the unix port\r\n"
          b"Type \"help()\" for more information.\r\n")

# What a REPL loop asks for next.
FRIENDLY, RAW, SOFT, HARD = "friendly", "raw", "soft", "hard"


class HardReset(BaseException):
    """machine.reset(): the board reboots in the middle of the code."""


class PowerCut(BaseException):
    """--cut-at: the board loses power in the middle of a file write."""


class TornFile:
    """A file of --cut-at: its writes stop at the given size, and the board dies there."""

    def __init__(self, f, left):
        self._f = f
        self._left = left

    def write(self, data):
        if len(data) >= self._left:
            self._f.write(data[:self._left])
            self._f.close()
            raise PowerCut()
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


class BoardOs:
    """The `os` module the board's code imports: the port's, with a rename() that works
    on the flash folder, and the Nth rename() a power cut under --cut-rename (`left`).

    The unix port's VfsPosix with a root (MicroPython 1.25, extmod/vfs_posix.c) builds
    both of rename()'s host paths in one buffer, so with two absolute paths the second
    overwrites the first and the rename fails (ENOENT) or goes wrong.  A relative path
    is passed through as it is, so absolute ones are made relative to the current
    directory, `/` (the host process's current directory is then the flash folder)."""

    def __init__(self, real, left=None):
        self._real = real
        self._left = left

    def rename(self, a, b):
        if self._left is not None:
            self._left -= 1
            if self._left == 0:
                sys.stderr.write("virtdev: power cut at rename(%r, %r)\n" % (a, b))
                raise PowerCut()
        if self._real.getcwd() == "/":
            a, b = a.lstrip("/") or ".", b.lstrip("/") or "."
        return self._real.rename(a, b)

    def __getattr__(self, name):
        return getattr(self._real, name)


class Link:
    """The serial link: fd 0 in, fd 1 out, bytes as they are."""

    def __init__(self):
        self._rd = sys.stdin.buffer.read
        self._wr = sys.stdout.buffer.write

    def getc(self):
        try:
            b = self._rd(1)
        except OSError:         # EIO: the other side of the pty is gone
            b = b""
        if not b:
            raise SystemExit(0)
        return b[0]

    def out(self, data):
        view = memoryview(data)
        while view:
            n = self._wr(view)
            if n is None:           # EAGAIN: the host is not reading yet
                time.sleep_ms(1)
                continue
            if n == 0:
                raise SystemExit(0)
            view = view[n:]


class Machine:
    """The `machine` module the board's code imports; the rest comes from the port's."""
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5

    def __init__(self, real, board):
        self._real = real
        self._board = board

    def reset(self):
        raise HardReset()

    def soft_reset(self):
        raise SystemExit()

    def reset_cause(self):
        return self._board.cause

    def unique_id(self):
        return b"\x24\x0a\xc4\x00\x00\x01"

    def __getattr__(self, name):
        return getattr(self._real, name)


class Board:
    def __init__(self, link, log, raw_paste=True, window=128, cut=None):
        self.link = link
        self.out = link.out
        self.getc = link.getc
        self.log = log
        self.raw_paste_ok = raw_paste
        self.window = window
        self.cause = Machine.PWRON_RESET
        self.cut = cut          # (path, size): power cut when that file reaches size bytes
        self.cut_hit = None     # the file --cut-at tore
        self.g = None
        self.keep = None

    # -- boots --------------------------------------------------------------------------

    def boot(self, kind):
        """Forget the RAM state, run /boot.py; returns a reset boot.py asked for, or None."""
        if self.keep is None:
            self.keep = set(sys.modules)
        for name in list(sys.modules):
            if name not in self.keep:
                del sys.modules[name]
        self.g = {"__name__": "__main__"}
        if self.cut:
            self.g["open"] = self.open_cut
        gc.collect()
        if kind != "soft":      # a soft reset leaves the chip's reset cause as it was
            # machine.reset() is a software reset of the chip: SOFT_RESET on an ESP32
            self.cause = Machine.PWRON_RESET if kind == "power" else Machine.SOFT_RESET
        try:
            with open("/maintenance") as f:
                flag = f.read()
        except OSError:
            flag = None
        self.log.write(json.dumps({"boot": kind, "maintenance": flag}) + "\n")
        self.log.flush()
        try:
            os.stat("/boot.py")
        except OSError:
            return None
        with open("/boot.py") as f:
            src = f.read()
        nxt, exc = self.run(src, "boot.py", "exec")
        self.show(exc)
        return nxt

    def open_cut(self, path, mode="r", *args):
        f = open(path, mode, *args)
        want = self.cut[0]
        hit = path.startswith(want[:-1]) if want.endswith("*") else path == want
        if hit and ("w" in mode or "a" in mode):
            self.cut_hit = path
            return TornFile(f, self.cut[1])
        return f

    def run(self, src, name, mode):
        """Compile and run `src` in the board's globals.  Returns (None, exception) or a
        reset: (SOFT, None) for SystemExit, (HARD, None) for machine.reset()."""
        try:
            exec(compile(src, name, mode), self.g)
        except HardReset:
            return HARD, None
        except SystemExit:
            return SOFT, None
        except PowerCut:
            raise
        except BaseException as e:      # noqa: B036 -- what the board's REPL catches
            return None, e
        return None, None

    def show(self, exc):
        """The traceback as the board prints it: without this file's own frames."""
        if exc is None:
            return
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        me = '"%s"' % __file__
        for line in buf.getvalue().split("\n"):
            if line and me not in line:
                self.out(line.encode() + b"\r\n")

    # -- raw REPL -----------------------------------------------------------------------

    def raw_repl(self):
        banner = True
        while True:
            if banner:
                self.out(RAW_BANNER)
                banner = False
            self.out(b">")
            line = bytearray()
            while True:
                c = self.getc()
                if c == CTRL_A:
                    if len(line) == 2 and line[0] == CTRL_E and self.raw_paste_ok:
                        nxt = self.raw_paste(line[1])
                        if nxt:
                            return nxt
                    else:
                        banner = True
                    break
                if c == CTRL_B:
                    self.out(b"\r\n")
                    return FRIENDLY
                if c == CTRL_C:
                    line = bytearray()
                elif c == CTRL_D:
                    self.out(b"OK")
                    if not line:
                        self.out(b"\r\n")
                        return SOFT
                    nxt = self.execute(bytes(line))
                    if nxt:
                        return nxt
                    break
                else:
                    line.append(c)

    def raw_paste(self, kind):
        if kind != ord("A"):
            self.out(b"R\x00")     # a command this board does not know
            return None
        w = self.window
        self.out(b"R\x01" + bytes((w & 0xFF, w >> 8, 1)))
        src = bytearray()
        left = w
        while True:
            c = self.getc()
            if c == CTRL_D:
                self.out(b"\x04")
                break
            if c == CTRL_C:
                self.out(b"\x04\x04KeyboardInterrupt: \r\n\x04")
                return None
            src.append(c)
            left -= 1
            if left == 0:
                self.out(b"\x01")
                left = w
        return self.execute(bytes(src))

    def execute(self, src):
        """Raw REPL execution: output, \\x04, exception, \\x04 (none of it after a hard
        reset: the board is rebooting)."""
        nxt, exc = self.run(src, "<stdin>", "exec")
        if nxt == HARD:
            return HARD
        self.out(b"\x04")
        self.show(exc)
        self.out(b"\x04")
        return nxt

    # -- friendly REPL --------------------------------------------------------------------

    def friendly(self):
        self.out(BANNER)
        while True:
            self.out(b">>> ")
            line = bytearray()
            while True:
                c = self.getc()
                if c == CTRL_A:
                    self.out(b"\r\n")
                    return RAW
                if c == CTRL_B:
                    self.out(b"\r\n")
                    return FRIENDLY
                if c == CTRL_C:
                    self.out(b"\r\n")
                    break
                if c == CTRL_D:
                    if not line:
                        self.out(b"\r\n")
                        return SOFT
                    continue
                if c == CTRL_E and not line:
                    nxt = self.paste_mode()
                    if nxt:
                        return nxt
                    break
                if c == CR:
                    self.out(b"\r\n")
                    if line:
                        nxt, exc = self.run(bytes(line), "<stdin>", "single")
                        if nxt:
                            return nxt
                        self.show(exc)
                    break
                if c in (BS, DEL):
                    if line:
                        line = line[:-1]
                        self.out(b"\x08 \x08")
                    continue
                if c < 0x20:
                    continue
                line.append(c)
                self.out(bytes((c,)))

    def paste_mode(self):
        self.out(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
        src = bytearray()
        while True:
            c = self.getc()
            if c == CTRL_C:
                self.out(b"\r\n")
                return None
            if c == CTRL_D:
                self.out(b"\r\n")
                break
            src.append(c)
            if c == CR:
                self.out(b"\r\n=== ")
            elif c != LF:
                self.out(bytes((c,)))
        nxt, exc = self.run(bytes(src), "<stdin>", "exec")
        if nxt:
            return nxt
        self.show(exc)
        return None

    # -- power on -----------------------------------------------------------------------

    def serve(self):
        mode = FRIENDLY
        kind = "power"
        while True:
            nxt = self.boot(kind)
            if nxt is None:
                while True:
                    nxt = self.raw_repl() if mode == RAW else self.friendly()
                    if nxt == RAW or nxt == FRIENDLY:
                        mode = nxt
                        continue
                    break
            if nxt == SOFT:
                self.out(b"MPY: soft reboot\r\n")
                kind = "soft"
            else:
                mode = FRIENDLY     # a board comes out of a hard reset in the friendly REPL
                kind = "hard"


def main(argv):
    opts = {"--root": None, "--log": None, "--window": "128", "--cut-at": None,
            "--cut-rename": None}
    raw_paste = True
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--no-raw-paste":
            raw_paste = False
            i += 1
        elif a in opts and i + 1 < len(argv):
            opts[a] = argv[i + 1]
            i += 2
        else:
            sys.stderr.write("usage: virtdev.py --root DIR --log FILE [--no-raw-paste] "
                             "[--window N] [--cut-at PATH:SIZE] [--cut-rename N]\n")
            raise SystemExit(2)
    if not opts["--root"] or not opts["--log"]:
        sys.stderr.write("virtdev: --root and --log are required\n")
        raise SystemExit(2)
    log = open(opts["--log"], "a")      # a host file: opened before the root is mounted
    import machine
    cut = None
    if opts["--cut-at"]:
        path, size = opts["--cut-at"].rsplit(":", 1)
        cut = (path, int(size))
    board = Board(Link(), log, raw_paste, int(opts["--window"]), cut)
    sys.modules["machine"] = Machine(machine, board)
    left = int(opts["--cut-rename"]) if opts["--cut-rename"] else None
    sys.modules["os"] = BoardOs(os, left)
    # The board's flash: the folder, mounted where the host's file system was.
    root = vfs.VfsPosix(opts["--root"])
    vfs.umount("/")
    vfs.mount(root, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]      # an ESP32's sys.path
    try:
        board.serve()
    except PowerCut:
        if board.cut_hit:
            sys.stderr.write("virtdev: power cut while writing %s (at %d bytes)\n"
                             % (board.cut_hit, cut[1]))


main(sys.argv[1:])
