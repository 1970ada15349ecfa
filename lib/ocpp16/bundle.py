"""Signed application bundles on the device: check one on flash, unpack it into a slot.

The format is written by tools/bundle.py (its docstring has the layout): a header, a
manifest (path, size, SHA-256 per file), the files, the SHA-256 over all that, then an
Ed25519 signature over that SHA-256.  Everything is read in CHUNK-sized pieces: a bundle
is never in RAM, nor is its manifest.

The charger trusts the public keys in <state>/update.pub (KEY_FILE: 32 raw bytes per
key, up to MAX_KEYS, for a key rotation), installed by `tools/deploy.py --update-key`;
no update ever writes <state>/, so the key survives updates.  No key file: every bundle
is refused.

    info = await bundle.verify(path, key_path, board="esp32_s0")   # or verify_sync
    await bundle.unpack(path, "/slot_b", info)                       # or unpack_sync
    # raise BundleError: e.reason is one of the REASON constants, str(e) a log line

`verify` checks, in order: a key is installed, the layout, signed at all, signed with a
key the charger knows, the board and the .mpy version, not older than the running
version (`running`: a signed old bundle replayed must not bring back what a newer one
fixed; see newer_or_same), the SHA-256 over the file, the
signature.  Only then may the caller `unpack`, which empties the target, writes each file
checking its own SHA-256, and writes <target>/bundle.json last (SLOT_INFO: its presence
means "complete").  Both are step generators run cooperatively (ocpp16.sigverify.run).
"""
import os
import sys
import struct
from hashlib import sha256
from micropython import const
from ocpp16 import store, sigverify

KEY_FILE = "update.pub"
SLOT_INFO = "bundle.json"
MAX_KEYS = const(4)
CHUNK = const(512)

# Reasons (BundleError.reason): what the updater reports (InstallationFailed) and logs.
NO_KEY = "no key installed"
UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown key"
BAD_SIGNATURE = "bad signature"
CORRUPT = "corrupt"
WRONG_BOARD = "wrong board"
INCOMPATIBLE = "incompatible"      # .mpy files this MicroPython cannot import
DOWNGRADE = "downgrade"            # older than the running version
WRITE_FAILED = "write failed"      # flash full or failing while unpacking

_MAGIC = b"OCPB"
_SIG_MAGIC = b"OCPS"
_FORMAT = const(1)
_FLAG_MPY = const(1)
_ALG_ED25519 = const(1)
_HEAD = "<4sBBBBIH"
_HEAD_SIZE = const(14)
_SIG_SIZE = const(77)      # "OCPS", algorithm, key id (8), signature (64)
_MAX_PATH = const(100)


class BundleError(Exception):
    def __init__(self, reason, detail=None):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self):
        return self.reason + (": " + self.detail if self.detail else "")


def key_path(state):
    return state.rstrip("/") + "/" + KEY_FILE


def load_keys(path):
    """[raw 32-byte public keys] from `path`; BundleError(NO_KEY) if there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read(32 * MAX_KEYS + 1)       # bounded: never a whole unknown file
    except OSError:
        raise BundleError(NO_KEY, path)
    if not data or len(data) % 32 or len(data) > 32 * MAX_KEYS:
        raise BundleError(NO_KEY, "%s holds %d bytes, not 1 to %d keys of 32"
                          % (path, len(data), MAX_KEYS))
    return [data[i:i + 32] for i in range(0, len(data), 32)]


def _read(f, n):
    b = f.read(n)
    if len(b) != n:
        raise BundleError(CORRUPT, "truncated")
    return b


def _text(f):
    return str(_read(f, _read(f, 1)[0]), "utf-8")


def read_header(f):
    """The header of the bundle open in `f`, as a dict; leaves `f` at the manifest."""
    f.seek(0)
    b = f.read(_HEAD_SIZE)
    if len(b) < _HEAD_SIZE or b[:4] != _MAGIC:
        raise BundleError(CORRUPT, "not a bundle")
    _, fmt, flags, mpy, native, body, count = struct.unpack(_HEAD, b)
    if fmt != _FORMAT:
        raise BundleError(CORRUPT, "bundle format %d (this firmware reads %d)" % (fmt, _FORMAT))
    try:
        version = _text(f)
        board = _text(f)
    except UnicodeError:
        raise BundleError(CORRUPT, "header text")
    return {"version": version, "board": board, "files": count, "body": body,
            "mpy": mpy if flags & _FLAG_MPY else 0, "native": native,
            "manifest": f.tell()}


def _entry(f):
    """(path, size, sha256) of the manifest entry at f's position."""
    n = _read(f, 1)[0]
    try:
        path = str(_read(f, n), "utf-8")
    except UnicodeError:
        raise BundleError(CORRUPT, "manifest path")
    size, = struct.unpack("<I", _read(f, 4))
    # A signed bundle never holds these; refused anyway, so a slot cannot be escaped.
    if (not path or len(path) > _MAX_PATH or path[0] == "/" or "\\" in path
            or ".." in path.split("/") or "" in path.split("/") or path == SLOT_INFO):
        raise BundleError(CORRUPT, "bad path %r" % path)
    return path, size, _read(f, 32)


def _numbers(v):
    # "1.4.0-rc2" -> [1, 4, 0]: the dotted numbers at the front; the rest is a label.
    out = []
    n = None
    for c in v:
        if "0" <= c <= "9":
            n = (n or 0) * 10 + ord(c) - 48
        elif c == "." and n is not None:
            out.append(n)
            n = None
        else:
            break
    if n is not None:
        out.append(n)
    return out


def newer_or_same(version, running):
    """True if `version` may replace `running`: its dotted numbers are not lower (1.10 >
    1.9; 1.4 == 1.4.0; labels after the numbers are not compared, so a rebuilt bundle of
    the same version installs). A version without numbers counts as 0. To go back on
    purpose, sign the old code with a higher version."""
    a, b = _numbers(version), _numbers(running)
    n = max(len(a), len(b))
    return a + [0] * (n - len(a)) >= b + [0] * (n - len(b))


def _check_target(info, board, running):
    if board is not None and info["board"] != board:
        raise BundleError(WRONG_BOARD, "bundle for %r, this is %r" % (info["board"], board))
    if running is not None and not newer_or_same(info["version"], running):
        raise BundleError(DOWNGRADE, "version %s is older than the running %s"
                          % (info["version"], running))
    if info["mpy"]:
        dev = getattr(sys.implementation, "_mpy", None)
        if dev is None or dev & 0xFF != info["mpy"] or (
                info["native"] and (dev >> 8) & 0xFF != info["native"]):
            raise BundleError(INCOMPATIBLE, ".mpy v%d (native %d), this MicroPython loads %r"
                              % (info["mpy"], info["native"], dev))


def verify_steps(path, keys, board=None, running=None):
    """Generator: check the bundle at `path` against `keys` ([raw public keys]) for
    `board`, not older than `running` (a version; None: no check); returns its header
    dict (with "sha256": the digest) or raises BundleError."""
    if not keys:
        raise BundleError(NO_KEY)
    try:
        f = open(path, "rb")
    except OSError:
        raise BundleError(CORRUPT, "cannot open %s" % path)
    try:
        info = read_header(f)
        body = info["body"]
        size = f.seek(0, 2)
        if body < _HEAD_SIZE or size < body or size > body + 32 + _SIG_SIZE:
            raise BundleError(CORRUPT, "%d bytes, body of %d" % (size, body))
        if size < body + 32 + _SIG_SIZE:
            raise BundleError(UNSIGNED)
        f.seek(body + 32)
        magic, alg, kid, sig = struct.unpack("<4sB8s64s", f.read(_SIG_SIZE))
        if magic != _SIG_MAGIC:
            raise BundleError(UNSIGNED, "no signature block")
        if alg != _ALG_ED25519:
            raise BundleError(UNKNOWN_KEY, "signature algorithm %d" % alg)
        key = None
        for k in keys:
            if sha256(k).digest()[:8] == kid:
                key = k
        if key is None:
            raise BundleError(UNKNOWN_KEY, "signed with key id %s" % _hex(kid))
        _check_target(info, board, running)
        # The manifest: sane paths, sizes that add up to the body (cheap, before hashing).
        f.seek(info["manifest"])
        total = 0
        for i in range(info["files"]):
            total += _entry(f)[1]
            if i & 7 == 7:
                yield
        info["data"] = f.tell()
        if info["data"] + total != body:
            raise BundleError(CORRUPT, "manifest sizes do not add up")
        # unpack re-reads the manifest: it checks that it is still this one
        info["manifest_sha256"] = yield from copy_steps(
            f, info["manifest"], info["data"] - info["manifest"])
        digest = yield from copy_steps(f, 0, body)
        if _read(f, 32) != digest:
            raise BundleError(CORRUPT, "SHA-256 does not match")
    finally:
        f.close()
    if not (yield from sigverify.steps(key, digest, sig)):
        raise BundleError(BAD_SIGNATURE, "key id %s" % _hex(kid))
    info["sha256"] = digest
    return info


def _hex(b):
    return "".join("%02x" % x for x in b)


def copy_steps(f, start, n, out=None):
    """Generator: SHA-256 of n bytes of f from `start`, each chunk also written to `out`
    (anything with .write(): a file, or an updater's writer into an OTA partition)."""
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    h = sha256()
    f.seek(start)
    while n:
        k = f.readinto(mv[:min(n, CHUNK)])
        if not k:
            raise BundleError(CORRUPT, "truncated")
        h.update(mv[:k])
        if out is not None:
            out.write(mv[:k])
        n -= k
        yield
    return h.digest()



def entries(f, info):
    """The manifest of the verified bundle open in `f`: (path, size, sha256, offset of
    its bytes) per file, read one at a time (f's position moves)."""
    mpos = info["manifest"]
    dpos = info["data"]
    for _ in range(info["files"]):
        f.seek(mpos)
        e = _entry(f)
        mpos = f.tell()
        yield e + (dpos,)
        dpos += e[1]


def _rmtree(path):
    """Generator: remove `path` and everything below it (missing: fine).  The first
    entry again and again: a directory is not changed while an iterator walks it."""
    while True:
        try:
            e = next(os.ilistdir(path), None)
        except OSError:                     # not a directory (or gone)
            store.remove(path)
            return
        if e is None:
            break
        p = path + "/" + e[0]
        if e[1] == 0x4000:
            yield from _rmtree(p)
        else:
            os.remove(p)
        yield
    os.rmdir(path)


def unpack_steps(path, target, info):
    """Generator: empty `target`, write the files of the (verified) bundle under it, each
    checked against its SHA-256, then <target>/bundle.json.  Returns the file count."""
    target = target.rstrip("/")
    if not target:
        raise ValueError("target")
    f = open(path, "rb")
    try:
        # The per-file digests come from the manifest: it must be the one verify hashed
        # (the file could have changed since; the old slot is kept then).
        if (yield from copy_steps(f, info["manifest"], info["data"] - info["manifest"])) \
                != info["manifest_sha256"]:
            raise BundleError(CORRUPT, "the manifest changed since it was verified")
        yield from _rmtree(target)
        store.makedirs(target)
        for name, size, want, offset in entries(f, info):
            dest = target + "/" + name
            if "/" in name:
                store.makedirs(dest.rsplit("/", 1)[0])
            try:
                with open(dest, "wb") as out:
                    got = yield from copy_steps(f, offset, size, out)
            except OSError as e:
                raise BundleError(WRITE_FAILED, "%s: %r" % (dest, e))
            if got != want:
                store.remove(dest)
                raise BundleError(CORRUPT, "%s: SHA-256 does not match" % name)
            if store.write_hook:
                store.write_hook(dest)      # a durable step, for the kill-point tests
    finally:
        f.close()
    import json
    store.atomic_write(target + "/" + SLOT_INFO, json.dumps(
        {"version": info["version"], "board": info["board"], "files": info["files"],
         "sha256": _hex(info["sha256"])}))
    return info["files"]


def slot_info(target):
    """The bundle.json of a complete slot as a dict, or None (empty or incomplete)."""
    import json
    data = store.read(target.rstrip("/") + "/" + SLOT_INFO)
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


async def verify(path, keys_file, board=None, running=None, slice_ms=sigverify.SLICE_MS):
    return await sigverify.run(verify_steps(path, load_keys(keys_file), board, running),
                               slice_ms)


def verify_sync(path, keys_file, board=None, running=None):
    return sigverify.run_sync(verify_steps(path, load_keys(keys_file), board, running))


async def unpack(path, target, info, slice_ms=sigverify.SLICE_MS):
    return await sigverify.run(unpack_steps(path, target, info), slice_ms)


def unpack_sync(path, target, info):
    return sigverify.run_sync(unpack_steps(path, target, info))
