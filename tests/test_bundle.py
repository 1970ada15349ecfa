"""Signed application bundles: made on the host by tools/bundle.py, checked and unpacked
on the device by lib/ocpp16/bundle.py (MicroPython unix port, in a subprocess).

A bundle signed with the charger's key verifies and unpacks into a slot whose code
imports on its own; one signed with another key, one with its signature stripped, one
with a byte changed after signing (with and without a recomputed SHA-256), one for
another board or .mpy version, and any bundle on a charger without a key are refused
with their reason, and the slot the charger runs from is left as it was."""
import hashlib
import json
import subprocess
import sys

import pytest

from helpers import ROOT, load_module, micropython, run_tree

BUNDLE = ROOT / "tools" / "bundle.py"
bt = load_module(BUNDLE, "bundle_tool")

# Device side: install = verify, then unpack (what the updater does); one JSON line.
DEVICE = r"""
import sys, json
sys.path.append(".frozen")
import asyncio
from time import ticks_ms, ticks_diff
from ocpp16 import bundle as B
op, path, keys, target, board = sys.argv[1:6]
out = {}
try:
    if op == "install":
        info = B.verify_sync(path, keys, board or None)
        out["files"] = B.unpack_sync(path, target, info)
        out["version"] = info["version"]
    elif op == "tamper_then_unpack":
        info = B.verify_sync(path, keys, board or None)
        with open(path, "r+b") as f:          # changed between verify and unpack
            f.seek(info["data"] + 10)
            b = f.read(1)
            f.seek(info["data"] + 10)
            f.write(bytes([b[0] ^ 1]))
        B.unpack_sync(path, target, info)
    elif op == "forge_then_unpack":
        # between verify and unpack, the first file and its manifest digest both changed
        import hashlib
        info = B.verify_sync(path, keys, board or None)
        with open(path, "r+b") as f:
            f.seek(info["manifest"])
            n = f.read(1)[0]
            f.seek(info["manifest"] + 1 + n)
            size = int.from_bytes(f.read(4), "little")
            f.seek(info["data"])
            data = bytearray(f.read(size))
            data[0] ^= 1
            f.seek(info["data"])
            f.write(data)
            f.seek(info["manifest"] + 1 + n + 4)
            f.write(hashlib.sha256(data).digest())
        B.unpack_sync(path, target, info)
    elif op == "ticker":
        st = {"done": False, "ticks": 0, "gap": 0}
        async def ticker():
            last = ticks_ms()
            while not st["done"]:
                await asyncio.sleep_ms(0)
                now = ticks_ms()
                st["gap"] = max(st["gap"], ticks_diff(now, last))
                st["ticks"] += 1
                last = now
        async def main():
            t = asyncio.create_task(ticker())
            t0 = ticks_ms()
            await asyncio.sleep_ms(0)
            for _ in range(5):      # enough work that one stall would show
                info = await B.verify(path, keys, board or None, slice_ms=2)
                await B.unpack(path, target, info, slice_ms=2)
            st["done"] = True
            await t
            st["total_ms"] = ticks_diff(ticks_ms(), t0)
        asyncio.run(main())
        out.update(st)
    out["ok"] = True
except B.BundleError as e:
    out.update(ok=False, reason=e.reason, log=str(e))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Two key pairs (made with the CLI), a signed .mpy bundle for unix_sim (CLI too)."""
    d = tmp_path_factory.mktemp("bundle")
    for name in ("maker", "other"):
        p = subprocess.run([sys.executable, str(BUNDLE), "keygen", str(d / name)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stdout
        (d / (name + ".raw")).write_bytes(bt.raw_public((d / (name + ".pub")).read_bytes()))
    assert (d / "maker").stat().st_mode & 0o077 == 0          # private key: owner only
    p = subprocess.run([sys.executable, str(BUNDLE), "make", "--key", str(d / "maker"),
                        "--version", "9.8.7-test", "--board", "unix_sim", "--march", "",
                        "--out", str(d / "app.bin")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    (d / "script.py").write_text(DEVICE)
    return d


def device(kit, tmp_path, bundle, keys, op="install", board="unix_sim"):
    p = subprocess.run([micropython(), "-X", "heapsize=256K", str(kit / "script.py"), op,
                        str(bundle), str(keys), str(tmp_path / "slot"), board],
                       cwd=str(tmp_path), env={"MICROPYPATH": str(ROOT / "lib") + ":.frozen"},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0 and lines, p.stdout
    return json.loads(lines[-1])


def _old_slot(tmp_path):
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "main.py").write_text("print('old version')\n")
    (slot / "bundle.json").write_text('{"version": "old"}')
    return slot


def _snapshot(d):
    return sorted((str(p.relative_to(d)), p.read_bytes()) for p in d.rglob("*") if p.is_file())


def test_signed_bundle_verifies_unpacks_and_its_code_imports(kit, tmp_path):
    slot = _old_slot(tmp_path)
    (slot / "stale.mpy").write_bytes(b"M\x06")      # left from an older slot: removed
    r = device(kit, tmp_path, kit / "app.bin", kit / "maker.raw")
    assert r["ok"], r
    assert r["version"] == "9.8.7-test"
    head, entries, digest, _ = bt.parse((kit / "app.bin").read_bytes())
    assert r["files"] == head["files"] == len(entries) > 20
    names = set()
    for path, size, sha in entries:
        data = (slot / path).read_bytes()
        assert len(data) == size and hashlib.sha256(data).digest() == sha, path
        names.add(path)
    assert "lib/ocpp16/chargepoint.mpy" in names and "main.py" in names
    assert not (slot / "stale.mpy").exists()
    info = json.loads((slot / "bundle.json").read_text())
    assert info == {"version": "9.8.7-test", "board": "unix_sim", "files": len(entries),
                    "sha256": digest.hex()}
    # The slot alone (no checkout on the path) runs: the compiled modules import.
    p = subprocess.run([micropython(), "-c",
                        "import ocpp16.chargepoint, ocpp16.bundle, board; print('imported')"],
                       cwd=str(tmp_path), env={"MICROPYPATH": "%s:%s:.frozen" % (slot / "lib", slot)},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.stdout.strip().endswith("imported"), p.stdout


def _variant(kit, tmp_path, how):
    data = bytearray((kit / "app.bin").read_bytes())
    head = bt.parse(bytes(data))[0]
    body = head["body"]
    if how == "other key":
        return _rebuild(kit, tmp_path, bt.load_private(kit / "other"))
    if how == "stripped":
        data = data[:body + 32]
    elif how == "stripped all":
        data = data[:body]
    elif how == "byte changed":
        data[body - 100] ^= 0x01                     # in the last file's bytes
    elif how == "byte changed, digest recomputed":
        data[body - 100] ^= 0x01
        data[body:body + 32] = hashlib.sha256(bytes(data[:body])).digest()
    elif how == "signature byte changed":
        data[-1] ^= 0x40
    elif how == "header byte changed":
        data[20] ^= 0x01                             # in the version text
    elif how == "truncated":
        data = data[:body // 2]
    elif how == "appended":
        data += b"\x00" * 16
    out = tmp_path / "variant.bin"
    out.write_bytes(bytes(data))
    return out


def _rebuild(kit, tmp_path, key, board="unix_sim", mpy=(0, 0)):
    out = tmp_path / "variant.bin"
    files = [(ROOT / "firmware" / "main.py", "main.py"), (ROOT / "lib" / "ocpp16" / "store.py",
                                                          "lib/ocpp16/store.py")]
    out.write_bytes(bt.build(files, "1.0", board, key, mpy))
    return out


@pytest.mark.parametrize("how,reason", [
    ("other key", "unknown key"),
    ("stripped", "unsigned"),
    ("stripped all", "unsigned"),
    ("byte changed", "corrupt"),
    ("byte changed, digest recomputed", "bad signature"),
    ("signature byte changed", "bad signature"),
    ("header byte changed", "corrupt"),
    ("truncated", "corrupt"),
    ("appended", "corrupt"),
])
def test_tampered_bundles_are_refused_and_the_old_slot_stays(kit, tmp_path, how, reason):
    slot = _old_slot(tmp_path)
    before = _snapshot(slot)
    r = device(kit, tmp_path, _variant(kit, tmp_path, how), kit / "maker.raw")
    assert not r["ok"] and r["reason"] == reason, (how, r)
    assert r["log"].startswith(reason)
    assert _snapshot(slot) == before


def test_no_key_installed_refuses_even_a_good_bundle(kit, tmp_path):
    slot = _old_slot(tmp_path)
    before = _snapshot(slot)
    r = device(kit, tmp_path, kit / "app.bin", tmp_path / "missing.pub")
    assert not r["ok"] and r["reason"] == "no key installed", r
    (tmp_path / "empty.pub").write_bytes(b"")
    r = device(kit, tmp_path, kit / "app.bin", tmp_path / "empty.pub")
    assert not r["ok"] and r["reason"] == "no key installed", r
    (tmp_path / "pem.pub").write_bytes((kit / "maker.pub").read_bytes())   # not installed raw
    r = device(kit, tmp_path, kit / "app.bin", tmp_path / "pem.pub")
    assert not r["ok"] and r["reason"] == "no key installed", r
    assert _snapshot(slot) == before


def test_a_second_installed_key_is_accepted_for_a_rotation(kit, tmp_path):
    keys = tmp_path / "update.pub"
    keys.write_bytes((kit / "other.raw").read_bytes() + (kit / "maker.raw").read_bytes())
    r = device(kit, tmp_path, kit / "app.bin", keys)
    assert r["ok"], r
    r = device(kit, tmp_path, _variant(kit, tmp_path, "other key"), kit / "maker.raw")
    assert r["reason"] == "unknown key"
    r = device(kit, tmp_path, tmp_path / "variant.bin", keys)
    assert r["ok"], r


def test_wrong_board_and_incompatible_mpy_are_refused(kit, tmp_path):
    key = bt.load_private(kit / "maker")
    r = device(kit, tmp_path, _rebuild(kit, tmp_path, key, board="esp32_s0"), kit / "maker.raw")
    assert r["reason"] == "wrong board", r
    r = device(kit, tmp_path, _rebuild(kit, tmp_path, key, mpy=(5, 0)), kit / "maker.raw")
    assert r["reason"] == "incompatible", r
    r = device(kit, tmp_path, _rebuild(kit, tmp_path, key), kit / "maker.raw")
    assert r["ok"], r                                # the same files, source, right board


def test_unpack_checks_every_file_and_leaves_no_complete_marker(kit, tmp_path):
    copy = tmp_path / "copy.bin"
    copy.write_bytes((kit / "app.bin").read_bytes())
    r = device(kit, tmp_path, copy, kit / "maker.raw", op="tamper_then_unpack")
    assert not r["ok"] and r["reason"] == "corrupt" and "SHA-256" in r["log"], r
    assert not (tmp_path / "slot" / "bundle.json").exists()


def test_unpack_refuses_a_manifest_changed_after_verify_and_keeps_the_old_slot(kit, tmp_path):
    copy = tmp_path / "copy.bin"
    copy.write_bytes((kit / "app.bin").read_bytes())
    slot = _old_slot(tmp_path)
    before = _snapshot(slot)
    r = device(kit, tmp_path, copy, kit / "maker.raw", op="forge_then_unpack")
    assert not r["ok"] and r["reason"] == "corrupt" and "manifest changed" in r["log"], r
    assert _snapshot(slot) == before


def test_verify_and_unpack_let_other_tasks_run(kit, tmp_path):
    r = device(kit, tmp_path, kit / "app.bin", kit / "maker.raw", op="ticker")
    assert r["ok"], r
    # Without the yields the ticker would wait for the whole verify and unpack (one gap).
    assert r["ticks"] >= 10, r
    # Relative bound: a loaded test machine may deschedule the process for tens of ms.
    assert r["gap"] * 4 < r["total_ms"], r
    assert (tmp_path / "slot" / "bundle.json").exists()


def test_cli_info_checks_the_signature_and_keygen_keeps_a_key(kit, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, str(BUNDLE)] + [str(a) for a in args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=60)
    p = cli("info", kit / "app.bin", "--pub", kit / "maker.pub")
    assert p.returncode == 0 and "signature: good" in p.stdout and "9.8.7-test" in p.stdout
    p = cli("info", kit / "app.bin", "--pub", kit / "other.pub")
    assert p.returncode == 1 and "another key" in p.stdout
    p = cli("info", _variant(kit, tmp_path, "stripped"))
    assert p.returncode == 1 and "unsigned" in p.stdout
    before = (kit / "maker").read_bytes()
    p = cli("keygen", kit / "maker")
    assert p.returncode == 1 and "not overwritten" in p.stdout
    assert (kit / "maker").read_bytes() == before
    p = cli("make", "--key", kit / "maker", "--version", "x" * 51, "--board", "unix_sim",
            "--out", tmp_path / "b.bin", "--py")
    assert p.returncode == 1 and "version" in p.stdout


def test_make_bundle_target(kit, tmp_path):
    out = tmp_path / "m.bin"
    p = run_tree(["make", "-s", "bundle", "KEY=%s" % (kit / "maker"), "VERSION=2.0",
                  "BOARD=unix_sim", "OUT=%s" % out, "BUNDLE_ARGS=--py"], timeout=300,
                 cwd=str(ROOT))
    assert p.returncode == 0, p.stdout
    head, entries, _, sig = bt.parse(out.read_bytes())
    assert head["version"] == "2.0" and head["board"] == "unix_sim" and sig is not None
    assert all(e[0].endswith(".py") for e in entries)
    r = device(kit, tmp_path, out, kit / "maker.raw")
    assert r["ok"] and r["version"] == "2.0", r
