"""Start the virtual MicroPython board (tests/mp/virtdev.py) behind a pty, for mpremote.

    with VirtualDevice(tmp_path / "flash", tmp_path / "boots.jsonl") as dev:
        subprocess.run([mpremote, "connect", dev.port, "fs", "ls", ":/"])

The board (the unix port running virtdev.py) holds the pty's master side as its stdin and
stdout; `dev.port` is the slave, /dev/pts/N, what mpremote connects to as to a USB serial
adapter.  This object keeps its own descriptor of the slave open for the board's whole
life, so the pty lives between mpremote connections (a serial adapter stays plugged in),
and sets it raw: no echo, no line editing, Ctrl-C is a byte, not a signal.  kill() is a
power cut (the port vanishes with the board: mpremote then fails instead of waiting).

Run by hand, it prints the port and serves until Ctrl-C:
    .venv/bin/python tests/virtdev_host.py ROOT     # then: make deploy PORT=/dev/pts/N ...
"""
import json
import os
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import micropython  # noqa: E402

VIRTDEV = Path(__file__).resolve().parent / "mp" / "virtdev.py"
READY_TIMEOUT = 15


class VirtualDevice:
    def __init__(self, root, log=None, raw_paste=True, window=128, cut_at=None,
                 cut_rename=None):
        """cut_at=(path, size): the board loses power when its code has written `size`
        bytes of the file `path` (a trailing `*`: of the first file whose name starts so);
        cut_rename=N: at its Nth os.rename() (tests/mp/virtdev.py --cut-at, --cut-rename)."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = Path(log) if log else self.root.parent / (self.root.name + "-boots.jsonl")
        self.stderr_path = self.log.with_suffix(".stderr")
        master, slave = os.openpty()
        tty.setraw(slave)
        self._slave = slave
        self.port = os.ttyname(slave)
        cmd = [micropython(), str(VIRTDEV), "--root", str(self.root), "--log", str(self.log),
               "--window", str(window)]
        if not raw_paste:
            cmd.append("--no-raw-paste")
        if cut_at:
            cmd += ["--cut-at", "%s:%d" % cut_at]
        if cut_rename:
            cmd += ["--cut-rename", str(cut_rename)]
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)        # the port's default: .frozen (asyncio) and so on
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=master, stdout=master, stderr=err,
                                         env=env, start_new_session=True)
        os.close(master)        # the board holds the master: it dies, the port goes
        try:
            self.banner = self._read_until(b">>> ", READY_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _read_until(self, ending, timeout):
        """The board's output on the slave until `ending` (only before anyone connects)."""
        data = b""
        end = time.monotonic() + timeout
        while not data.endswith(ending):
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError("virtual board did not start (%r); stderr:\n%s"
                                   % (data[-200:], self.stderr()))
            r, _, _ = select.select([self._slave], [], [], min(left, 0.2))
            if r:
                data += os.read(self._slave, 4096)
        return data

    def boots(self):
        """[{"boot": "power"|"hard"|"soft", "maintenance": text or None}, ...]"""
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """Power cut: SIGKILL the board; its port goes with it."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_slave()

    def close(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._close_slave()

    def _close_slave(self):
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv):
    if len(argv) != 1:
        print("usage: virtdev_host.py ROOT", file=sys.stderr)
        return 2
    with VirtualDevice(argv[0]) as dev:
        print("virtual board on %s, flash %s, boots logged to %s"
              % (dev.port, dev.root, dev.log), flush=True)
        try:
            while dev.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
