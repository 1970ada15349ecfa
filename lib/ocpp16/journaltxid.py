"""The journal's transactionId log (journal.py): local transaction -> the central
system's transactionId, durable.  A base class of journal.Journal."""
#
# transactionId log
# -----------------
# The central system's transactionId of each local transaction (set when its
# StartTransaction is answered, -1 when that was given up, forgotten once no record of
# the transaction is left) is kept in `txids`, a log of 12-byte entries, little-endian:
#
#     u32 tx, i32 transactionId, u8 op (1 = set, 2 = forget), u8 version (1),
#     u16 low half of the CRC32 of the first 10 bytes
#
# Replayed in order at open (the last entry of a tx wins).  set_txid appends one entry,
# forget appends one, except that the forget that leaves no mapping truncates the log
# instead (open "wb": committed at close on littlefs, O_TRUNC on POSIX; either way old or
# empty, and both mean the same then).  Replaying a queue, one transaction at a time, the
# log thus never holds more than one entry.  When transactions overlap (two connectors)
# and an append would take it past 96 bytes (or twice its live entries), the log is
# rewritten with its live entries (tmp + rename) instead: it stays an inline littlefs
# file, rewritten every few transactions.  Each write is one open/append/close: no
# fsync, no rename, no delete per transaction.  (The previous version wrote a file per
# transaction, tmp + flush + rename, and deleted it: on the unix port over ext4 ~180 us
# of CPU per transaction for set + forget, now ~30 us.)  A torn tail or a damaged entry
# costs only itself: reported, counted in `corrupt`, the log copied to bad/ and
# rewritten with the intact entries at open; a failed append makes the next write a
# rewrite (never an append after a partial entry).  Flash (RAM block device, 4096-byte
# blocks, tests/device/test_journal.py::test_flash_cost_of_the_txid_log), set + forget
# per transaction: ~130 B programmed, 0.03 erases in a replay; ~250 B, 0.06 erases with
# another mapping live; the previous version's files: ~225 B, 0.06-0.07 erases.
#
# A transactionId beyond 32 bits (the schema's integer is unbounded; no central system
# is known to send one) is kept as the previous version did, in tx/<tx>, and a file there
# wins over the log: set_txid writes the file before it forgets the tx in the log, and
# a later 32-bit value is logged before the file is deleted, so a cut in between leaves
# the old value or the new one.  At open the files of a previous version are moved into
# the log (one rewrite of the log, then the files are deleted; a cut in between repeats
# it at the next open); an unreadable one goes to bad/, a leftover .tmp is deleted.  An
# older library does not read `txids` (a downgrade loses the mappings of transactions
# not finished by then: their later messages carry -1).
#
# (The log is read, and the files of a previous version migrated, at open: journalopen.py,
# _load_map.)

import os
import struct
from ocpp16 import store
from ocpp16.journalseg import crc32, _step

try:
    from micropython import const
except ImportError:  # CPython tooling
    def const(x):
        return x

_TXE = const(12)        # entry size
# The log is rewritten (compacted) rather than grown past this many bytes: it stays an
# inline littlefs file.  Tests lower it to exercise the rewrites.
txlog_max = 96
_TSET = const(1)
_TDEL = const(2)
_TVER = const(1)


def _narrow(tx, v):
    # Fits a transactionId log entry: tx unsigned, v signed, 32 bits each.
    return 0 <= tx <= 0xFFFFFFFF and -0x80000000 <= v <= 0x7FFFFFFF


class _Txids:
    """The transactionId log of journal.Journal (which holds the state: _map, _wide,
    _txf, _txd, _tlen, _tdirty, _te; see its __init__)."""

    def _entry(self, tx, v):
        # One log entry: set tx -> v, or forget tx (v None).
        e = self._te
        struct.pack_into("<IiBB", e, 0, tx, 0 if v is None else v,
                         _TDEL if v is None else _TSET, _TVER)
        struct.pack_into("<H", e, 10, crc32(memoryview(e)[:10]) & 0xFFFF)
        return e

    def _tcompact(self, tx, v):
        # Rewrite the log with the live mappings (the one of `tx` as `v`; tx -1: none
        # changed), tmp + rename; an empty one is truncated.
        out = []
        for t in self._map:
            if t != tx and t not in self._wide:
                out.append(bytes(self._entry(t, self._map[t])))
        if v is not None:
            out.append(bytes(self._entry(tx, v)))
        if not out:
            self._ttrunc()
            return
        store.atomic_write(self._txf, out)
        self._tlen = n = _TXE * len(out)
        self.bytes_written += n
        self._tdirty = False

    def _ttrunc(self):
        # Truncate the log (no mapping left): one open, atomic on littlefs (committed at
        # close) and on POSIX (O_TRUNC).
        open(self._txf, "wb").close()
        self._tlen = 0
        self._tdirty = False
        _step(self._txf)

    def _tlog(self, tx, v):
        """Make `tx -> v` (v None: tx forgotten) durable in the log; tx is narrow."""
        live = len(self._map) - len(self._wide)     # log entries that stay live
        if tx in self._map and tx not in self._wide:
            live -= 1
        if v is not None:
            live += 1
        if not live:
            self._ttrunc()
        elif self._tdirty or self._tlen + _TXE > max(txlog_max, 2 * _TXE * live):
            self._tcompact(tx, v)
        else:
            e = self._entry(tx, v)
            try:
                with open(self._txf, "ab") as f:
                    f.write(e)
            except Exception:
                self._tdirty = True     # may end in part of an entry: never append after it
                raise
            self._tlen += _TXE
            self.bytes_written += _TXE
            _step(self._txf)

    def set_txid(self, tx, txid):
        """Persist local transaction `tx` -> central-system transactionId (durable on return)."""
        m = self._map
        if tx in m and m[tx] == txid:
            return
        if _narrow(tx, txid):
            self._tlog(tx, txid)
            if tx in self._wide:
                try:
                    self._rmtx(tx)
                except OSError:
                    # The file (older value) still wins at open; the log must not keep
                    # a live entry for it: rewritten before its next change.
                    self._tdirty = True
                    raise
                self._wide.discard(tx)
            m[tx] = txid
            return
        # Beyond the log's 32 bits: a tx/<tx> file, which overrides the log at open.
        b = b"%d" % txid
        store.atomic_write("%s/%d" % (self._txd, tx), b)
        self.bytes_written += len(b)
        if tx in m and tx not in self._wide:
            # Its older value in the log goes (until then the file wins).
            try:
                self._tlog(tx, None)
            except OSError as e:
                self.log("journal: transactionId log not updated: %r" % e)
                self._tdirty = True
        self._wide.add(tx)
        m[tx] = txid

    def _rmtx(self, tx):
        p = "%s/%d" % (self._txd, tx)
        try:
            os.remove(p)
        except OSError as e:
            if e.args[0] != 2:      # ENOENT
                raise
        _step(p)

    def mapped(self):
        """Local transactions with a known transactionId (a list)."""
        return list(self._map)

    def txid(self, tx):
        """The transactionId of `tx`, -1 if its START was given up, None if not known yet."""
        return self._map.get(tx)

    def give_up_start(self, tx):
        """The START of `tx` was dropped after its attempts: later messages use -1."""
        self.set_txid(tx, -1)

    def forget(self, tx):
        """No record refers to `tx` any more: delete its mapping (durable on return)."""
        m = self._map
        if tx not in m:
            return
        if tx in self._wide:
            if self._tdirty:
                self._tcompact(-1, None)    # the log must not hold an older value of tx
            self._rmtx(tx)
            self._wide.discard(tx)
        else:
            self._tlog(tx, None)
        del m[tx]
