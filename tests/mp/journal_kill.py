# Power-cut driver for the journal (run by tests/test_journal_killpoints.py).
#
#   micropython journal_kill.py MODE STATE run KILL SEED NOPS [tear] [legacy]
#   micropython journal_kill.py MODE STATE check [KILL]   (with KILL: only the
#                                                          recovery, cut at step KILL)
#
# MODE posix: the journal lives in directory STATE; a "step" is every write step the
#   journal and store report through store.write_hook (including the point between a
#   record's header and body, which leaves a torn record on a POSIX filesystem).
# MODE lfs: STATE is a littlefs image file driven through a block device; a "step" is
#   every block program or erase, i.e. a power cut at the flash level.  With `tear`
#   the Nth program writes only half its bytes before the cut.
#
# After the KILLth step the process SIGKILLs itself (`kill -9 $PPID` from the shell
# that os.system starts).  KILL 0 = never: prints "STEPS n" at the end (dry run).
#
# `run` executes a deterministic script of appends, deliveries (remove), CALLERRORs
# (failed), txid updates, give-ups and re-opens, printing one line before ("B ...")
# and one after each operation, so the host knows what had returned before the cut:
#   A seq kind tx flags len crc | R seq | F seq attempts | X tx txid | G tx | O
# The run starts with a fixed sequence of transactionId updates (TXOPS), and every fifth
# transaction's transactionId goes beyond 32 bits and back (such values are kept in a
# tx/<tx> file, not in the transactionId log).  The log is rewritten past 24 bytes (not
# 96), so that its appends, rewrites (tmp + rename) and truncations all come up in a
# short run.  With `legacy` the state starts as the previous version left it:
# transactionIds as tx/<tx> files (migrated into the log by the first open, which is
# cut like any other step), forgotten one by one during the run.
# `check` opens the journal as a reboot would and prints what it finds:
#   C corrupt unknown | Q seq kind tx attempts flags len crc | T tx txid |
#   TXF names in tx/ | P seq | C2 ...
import os
import sys
import vfs
import binascii
from ocpp16 import journal, journaltxid, store
from ocpp16.journal import START, STOP, METER

BS = 4096
NBLOCKS = 64
MNT = "/flash"
SEG = 1024

steps = 0
kill_at = 0
tear = False
journaltxid.txlog_max = 24  # the transactionId log rewritten often: more kinds of step


def tick():
    global steps
    steps += 1
    if steps == kill_at:
        os.system("kill -9 $PPID")
        while True:         # never returns: the signal is on its way
            pass


class FileBD:
    """A littlefs image in a host file; every program/erase is a kill point."""

    def __init__(self, path):
        self.f = open(path, "r+b")
        self.ff = b"\xff" * BS

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * BS + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:
            for i in range(len(buf) // BS):
                self.ioctl(6, n + i)
            off = 0
        self.f.seek(n * BS + off)
        if tear and steps + 1 == kill_at and len(buf) > 1:
            self.f.write(memoryview(buf)[:len(buf) // 2])
        else:
            self.f.write(buf)
        tick()

    def ioctl(self, op, arg):
        if op == 4:
            return NBLOCKS
        if op == 5:
            return BS
        if op == 6:
            self.f.seek(arg * BS)
            self.f.write(self.ff)
            tick()
            return 0


def hook(path):
    tick()


def setup(mode, state, counting):
    """Returns the journal root; counting turns the kill points on."""
    global kill_at, steps
    if mode == "posix":
        if counting:
            store.write_hook = hook
        return state
    fresh = not store.exists(state)
    if fresh:
        with open(state, "wb") as f:
            for _ in range(NBLOCKS):
                f.write(b"\xff" * BS)
    k = kill_at
    kill_at = 0                     # mkfs/mount of a fresh image is not part of the run
    bd = FileBD(state)
    if fresh:
        vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), MNT)
    steps = 0
    kill_at = k if counting else 0
    return MNT + "/j"


def out(*a):
    print(" ".join(str(x) for x in a))


def quiet(s):
    out("L", s.replace(" ", "_"))


class Rand:
    def __init__(self, seed):
        self.x = seed * 2654435761 + 12345

    def next(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n


def body(r, i):
    n = r.next(9)
    size = (0, 12, 90, 180, 260, 330, 420, 520, 700)[n]
    b = bytearray(size)
    for k in range(size):
        b[k] = 0x20 + (i * 7 + k * 13) % 90
    if size > 40 and i % 3 == 0:
        b[20:24] = b"OJ\x01\x18"        # looks like a record header: resync must not trip
    return b


# Mappings a previous version left as files (tx -> decimal text), and a leftover .tmp.
LEGACY = {190: b"5190", 191: b"-1", 192: b"%d" % (1 << 40), 193: b"2147483647",
          194: b"-2147483648", 195: b"7"}


def txids_of(t):
    # The values set in turn before the START goes: mostly one 32-bit value; every fifth
    # transaction also crosses between the log and a file (as no central system would).
    if t % 10 == 0:
        return (1000 + t, (1 << 33) + t)
    if t % 10 == 5:
        return ((1 << 33) + t, 1000 + t)
    return (1000 + t,)


def legacy_state(root):
    global kill_at, steps
    k = kill_at
    kill_at = 0                     # the previous version's writes are not cut
    store.makedirs(root + "/tx")
    for t in LEGACY:
        with open("%s/tx/%d" % (root, t), "wb") as f:
            f.write(LEGACY[t])
    with open(root + "/tx/196.tmp", "wb") as f:
        f.write(b"12")
    steps = 0
    kill_at = k
    for t in LEGACY:
        out("X", t, int(LEGACY[t]))


# transactionId log steps before the random part: appends, a rewrite with live entries,
# a value beyond 32 bits (file) and back, forgets down to an empty log (truncation).
TXOPS = ((150, 1), (151, 2), (150, None), (152, -1), (153, 1 << 36), (151, None),
         (150, 5), (153, 9), (152, None), (153, 1 << 37), (153, None), (150, None),
         (154, 7), (154, None))


def run(mode, state, seed, nops, legacy=False):
    root = setup(mode, state, True)
    if legacy:
        legacy_state(root)
    old = sorted(LEGACY) if legacy else []
    j = journal.Journal(root, log=quiet, seg_size=SEG)
    for t, v in TXOPS:
        if v is None:
            out("B", "forget", t)
            j.forget(t)
            out("G", t)
        else:
            out("B", "txid", t, v)
            j.set_txid(t, v)
            out("X", t, v)
    r = Rand(seed)
    tx = 0
    open_tx = []
    for i in range(nops):
        op = r.next(100)
        h = j.head()
        if op < 50 or h is None:
            if not open_tx or r.next(4) == 0:
                tx += 1
                open_tx.append(tx)
                kind = START
                t = tx
            else:
                t = open_tx[r.next(len(open_tx))]
                kind = STOP if r.next(4) == 0 else METER
                if kind == STOP:
                    open_tx.remove(t)
            b = body(r, i)
            flags = r.next(4)
            c = binascii.crc32(b)
            out("B", "append", kind, t, flags, len(b), c)
            seq = j.append(kind, t, b, flags)
            out("A", seq, kind, t, flags, len(b), c)
        elif op < 80:
            seq, kind, t, att, flags = h
            if kind == START:
                for v in txids_of(t):
                    out("B", "txid", t, v)
                    j.set_txid(t, v)            # before the START goes
                    out("X", t, v)
            out("B", "remove", seq)
            j.remove(seq)
            out("R", seq)
            if kind == STOP:
                out("B", "forget", t)
                j.forget(t)
                out("G", t)
            if old and i % 3 == 0:
                t = old.pop(0)
                out("B", "forget", t)
                j.forget(t)
                out("G", t)
        elif op < 93:
            seq, kind, t, att, flags = h
            out("B", "failed", seq)
            a = j.failed(seq)
            out("F", seq, a)
            if a >= 3:
                if kind == START:
                    out("B", "txid", t, -1)
                    j.give_up_start(t)
                    out("X", t, -1)
                out("B", "remove", seq)
                j.remove(seq)
                out("R", seq)
        else:
            out("B", "reopen")
            j = journal.Journal(root, log=quiet, seg_size=SEG)
            out("O")
    out("STEPS", steps)


def dump(j, tag):
    buf = bytearray(1024)
    out(tag, j.corrupt, j.unknown)
    for seq, kind, t, att, flags in j.records():
        n = j.read(seq, buf)
        out("Q", seq, kind, t, att, flags, n, binascii.crc32(memoryview(buf)[:n]))


def check(mode, state):
    global kill_at
    root = setup(mode, state, kill_at > 0)
    j = journal.Journal(root, log=quiet, seg_size=SEG)
    out("OPENED")
    if kill_at:
        return      # a recovery to cut short (double fault): the next check looks
    dump(j, "C")
    for t in range(1, 200):
        v = j.txid(t)
        if v is not None:
            out("T", t, v)
    out("TXF", *sorted(os.listdir(root + "/tx")))
    first = [r for r in j.records()]
    # A second boot finds the same queue and nothing more to report.
    j2 = journal.Journal(root, log=quiet, seg_size=SEG)
    out("C2", j2.corrupt, j2.unknown, 1 if list(j2.records()) == first else 0)
    # New appends get a fresh seq and survive one more boot.
    p = j2.append(STOP, 1, b"probe")
    out("P", p)
    j3 = journal.Journal(root, log=quiet, seg_size=SEG)
    out("C3", j3.corrupt, 1 if [r[0] for r in j3.records()] == [r[0] for r in first] + [p] else 0)


def main():
    global kill_at, tear
    mode, state, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
    a = sys.argv[4:]
    if cmd == "run":
        kill_at = int(a[0])
        tear = "tear" in a[3:]
        run(mode, state, int(a[1]), int(a[2]), "legacy" in a[3:])
    else:
        kill_at = int(a[0]) if a else 0
        check(mode, state)


main()
