"""Power cuts at every write step of the journal (lib/ocpp16/journal.py).

tests/mp/journal_kill.py runs a scripted sequence of journal operations on the
MicroPython unix port and SIGKILLs itself after the Nth write step; a fresh process
then opens the journal as a reboot would.  For every N we check:

- every record whose append returned before the cut is there exactly once, with the
  same kind, tx, flags and body; every remove that returned is durable;
- at most one record is new (the append in flight) and it is complete;
- attempts and txids are those acknowledged (or one step further for the op in flight);
- at most one torn record is reported (corrupt), and only when an append was cut;
- the queue is in seq order, a second boot reports nothing new, new seqs are fresh;
- tx/ holds a file exactly for the transactionIds beyond 32 bits (the others live in
  the transactionId log), so nothing a previous version left there outlives its use.

The `legacy` sweeps start from a state directory as the previous version left it
(transactionIds as tx/<tx> files): the first open migrates them into the log, cut at
every step like the rest.

Two flavours: `posix` (a directory; the kill points are the journal's own write steps,
including the middle of a record) and `lfs` (a littlefs image on a file-backed block
device; the kill points are block programs and erases, optionally torn in half).
"""
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import ROOT, micropython, mp_env

SCRIPT = ROOT / "tests" / "mp" / "journal_kill.py"
WORKERS = max(2, (os.cpu_count() or 2) * 2)


def _mp(*args):
    p = subprocess.run([micropython(), str(SCRIPT)] + [str(a) for a in args],
                       env=mp_env(), cwd=str(ROOT), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    return p.returncode, p.stdout


def _lines(out):
    return [ln.split() for ln in out.splitlines() if ln and not ln.startswith("L ")]


class Model:
    """What the killed run had acknowledged before the cut."""

    def __init__(self, out):
        self.acked = {}         # seq -> (kind, tx, flags, len, crc)
        self.removed = set()
        self.att = {}           # seq -> last acknowledged attempts
        self.txid = {}          # tx -> txid (None once forgotten)
        self.inflight = None    # the "B ..." line without its answer
        self.steps = None
        for w in _lines(out):
            t = w[0]
            if t == "B":
                self.inflight = w[1:]
                continue
            if t == "A":
                self.acked[int(w[1])] = tuple(int(x) for x in w[2:7])
            elif t == "R":
                self.removed.add(int(w[1]))
            elif t == "F":
                self.att[int(w[1])] = int(w[2])
            elif t == "X":
                self.txid[int(w[1])] = int(w[2])
            elif t == "G":
                self.txid[int(w[1])] = None
            elif t == "STEPS":
                self.steps = int(w[1])
            else:
                continue
            self.inflight = None


def _verify(model, out, max_corrupt=1, tag=""):
    ctx = "%s\n--- check output ---\n%s" % (tag, out[-3000:])
    w = _lines(out)
    kinds = [x[0] for x in w]
    assert "C" in kinds and "C3" in kinds, ctx
    c = w[kinds.index("C")]
    corrupt, unknown = int(c[1]), int(c[2])
    q = [tuple(int(v) for v in x[1:]) for x in w if x[0] == "Q"]    # seq kind tx att flags len crc
    tmap = {int(x[1]): int(x[2]) for x in w if x[0] == "T"}
    c2 = w[kinds.index("C2")]
    probe = int(w[kinds.index("P")][1])
    c3 = w[kinds.index("C3")]
    fl = model.inflight or []
    op = fl[0] if fl else None

    seqs = [r[0] for r in q]
    assert seqs == sorted(set(seqs)), "order/duplicates " + ctx
    present = {r[0]: r for r in q}
    # Acknowledged appends are there, intact; acknowledged removes are gone.
    for seq, (kind, tx, flags, ln, crc) in model.acked.items():
        if seq in model.removed:
            assert seq not in present, "removed seq %d is back %s" % (seq, ctx)
            continue
        if op == "remove" and int(fl[1]) == seq and seq not in present:
            continue            # the remove in flight landed
        assert seq in present, "lost seq %d %s" % (seq, ctx)
        r = present[seq]
        assert (r[1], r[2], r[4], r[5], r[6]) == (kind, tx, flags, ln, crc), "changed %d %s" % (seq, ctx)
        a = model.att.get(seq, 0)
        ok = {a, a + 1} if op == "failed" and int(fl[1]) == seq else {a}
        assert r[3] in ok, "attempts of %d: %d not in %s %s" % (seq, r[3], ok, ctx)
    # Only the append in flight may have landed on top.
    extra = [r for r in q if r[0] not in model.acked]
    assert len(extra) <= 1, "extra records %s %s" % (extra, ctx)
    if extra:
        r = extra[0]
        assert op == "append", "extra record without an append in flight " + ctx
        assert (r[1], r[2], r[4], r[5], r[6]) == tuple(int(x) for x in fl[1:6]), ctx
        assert r[0] > max(model.acked, default=0), ctx
    # Damage is reported only for the append that was cut, and is never hidden.
    assert unknown == 0, ctx
    assert corrupt <= max_corrupt, ctx
    if corrupt and max_corrupt == 1:
        assert op == "append", "corrupt record without an append in flight " + ctx
    # txid map; files only for values the 32-bit log cannot hold.
    files = next(x[1:] for x in w if x[0] == "TXF")
    assert sorted(files) == sorted(str(t) for t, v in tmap.items()
                                   if not -2 ** 31 <= v < 2 ** 31), "tx/ %s %s" % (files, ctx)
    for tx, v in model.txid.items():
        if op in ("txid", "forget") and int(fl[1]) == tx:
            continue
        assert tmap.get(tx) == v, "txid of %d: %r != %r %s" % (tx, tmap.get(tx), v, ctx)
    for tx in tmap:
        assert tx in model.txid or (op == "txid" and int(fl[1]) == tx), ctx
    # Second and third boot: nothing new to report, same queue; fresh seqs.
    assert c2[1:] == ["0", "0", "1"], ctx
    assert c3[1:] == ["0", "1"], ctx
    assert probe > max(list(model.acked) + seqs + [0]), ctx


def _one(mode, tmp, seed, nops, n, tear=False, kill2=0, legacy=False):
    state = tmp / ("%s-%d-%d-%d%s%s" % (mode, seed, n, kill2, "t" if tear else "",
                                       "l" if legacy else ""))
    args = ([mode, state, "run", n, seed, nops] + (["tear"] if tear else [])
            + (["legacy"] if legacy else []))
    rc, out = _mp(*args)
    model = Model(out)
    tag = "mode=%s seed=%d nops=%d kill=%d tear=%s kill2=%d legacy=%s rc=%d" % (
        mode, seed, nops, n, tear, kill2, legacy, rc)
    assert rc == -9, "not killed: " + tag + "\n" + out[-2000:]
    max_corrupt = 1
    cut = False
    if kill2:
        rc2, out2 = _mp(mode, state, "check", kill2)
        if rc2 == -9 and "OPENED" not in out2:
            max_corrupt = 2     # the recovery itself was cut: one more leftover possible
            cut = True
        else:
            assert rc2 == 0, tag + "\n" + out2[-2000:]
    rc, out = _mp(mode, state, "check")
    assert rc == 0, tag + "\n" + out[-3000:]
    _verify(model, out, max_corrupt, tag)
    return cut


def _steps(mode, tmp, seed, nops, legacy=False):
    rc, out = _mp(mode, tmp / ("dry-%s-%d%s" % (mode, seed, "l" if legacy else "")), "run", 0,
                  seed, nops, *(["legacy"] if legacy else []))
    assert rc == 0, out[-2000:]
    m = Model(out)
    assert m.steps and len(m.acked) > 10
    return m.steps


def _sweep(tmp, mode, seed, nops, points=None, tear=False, kill2=None, legacy=False):
    total = _steps(mode, tmp, seed, nops, legacy)
    ns = points(total) if points else range(1, total + 1)
    jobs = []
    with ThreadPoolExecutor(WORKERS) as ex:
        for n in ns:
            k2 = kill2(n) if kill2 else 0
            jobs.append(ex.submit(_one, mode, tmp, seed, nops, n, tear, k2, legacy))
        cuts = sum(f.result() for f in jobs)
    return total, len(jobs), cuts


def test_killpoints_posix(tmp_path):
    total, n, _ = _sweep(tmp_path, "posix", 1, 60)
    assert n >= 100, (total, n)


def test_killpoints_littlefs(tmp_path):
    # Block-level cuts: every program/erase of the first operations, then a stride.
    def points(total):
        return sorted(set(list(range(1, 41)) + list(range(41, total + 1, 7))))
    total, n, _ = _sweep(tmp_path, "lfs", 2, 40, points)
    assert n >= 50, (total, n)


def test_killpoints_legacy_posix(tmp_path):
    # Migration of a previous version's tx/ files, then the run; every step cut.
    total, n, _ = _sweep(tmp_path, "posix", 9, 50, legacy=True)
    assert n >= 80, (total, n)


def test_killpoints_legacy_littlefs(tmp_path):
    def points(total):
        return sorted(set(list(range(1, 61)) + list(range(61, total + 1, 9))))
    total, n, _ = _sweep(tmp_path, "lfs", 10, 40, points, legacy=True)
    assert n >= 60, (total, n)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_killpoints_posix_long(tmp_path, seed):
    _sweep(tmp_path, "posix", seed, 160)


@pytest.mark.slow
@pytest.mark.parametrize("tear", [False, True])
def test_killpoints_littlefs_long(tmp_path, tear):
    _sweep(tmp_path, "lfs", 6, 120, tear=tear)


@pytest.mark.slow
def test_killpoints_double_fault(tmp_path):
    # A second power cut during the recovery (repair, quarantine) of the first.
    _, _, cuts = _sweep(tmp_path, "posix", 7, 80, kill2=lambda n: 1 + n % 4)
    assert cuts >= 10, cuts         # only cuts that left something to repair give work
    _, _, cuts = _sweep(tmp_path, "lfs", 8, 50, points=lambda t: range(1, t + 1, 3),
                        kill2=lambda n: 1 + n % 4)
    assert cuts >= 5, cuts
    # ... and during the migration of a previous version's tx/ files.
    _, _, cuts = _sweep(tmp_path, "posix", 11, 30, points=lambda t: range(1, min(t, 40) + 1),
                        kill2=lambda n: 1 + n % 4, legacy=True)
    assert cuts >= 5, cuts
