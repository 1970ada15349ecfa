"""tools/deploy.py --update-key: the public key update bundles are checked with goes to
<state>/update.pub as raw bytes, and stays there through later deploys and updates."""
import subprocess
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import test_deploy as td        # its fake mpremote
from helpers import ROOT, load_module

deploy = td.deploy
bt = load_module(ROOT / "tools" / "bundle.py", "bundle_tool_for_deploy")


def _key(tmp_path, name):
    k = Ed25519PrivateKey.generate()
    pub = k.public_key()
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = pub.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    for ext, data in (("raw", raw), ("pem", pem), ("der", der)):
        (tmp_path / ("%s.%s" % (name, ext))).write_bytes(data)
    (tmp_path / (name + ".key")).write_bytes(k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return raw


def _dry(*args):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "deploy.py"), "--dry-run",
                        "--board", "esp32_s0"] + [str(a) for a in args], cwd=str(ROOT),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_raw_pem_and_der_give_the_same_raw_key(tmp_path):
    raw = _key(tmp_path, "a")
    for ext in ("raw", "pem", "der"):
        assert deploy.update_key((tmp_path / ("a." + ext)).read_bytes()) == raw, ext
    data, what = deploy.update_keys([tmp_path / "a.pem"])
    assert data == raw and bt.key_id(raw).hex() in what


def test_plan_writes_update_pub_and_refuses_wrong_files(tmp_path):
    a = _key(tmp_path, "a")
    b = _key(tmp_path, "b")
    rc, out, err = _dry("--update-key", tmp_path / "a.pem", "--update-key", tmp_path / "b.raw")
    assert rc == 0, err
    assert "  write  /state/update.pub  Ed25519 public key(s), key id %s, %s" % (
        bt.key_id(a).hex(), bt.key_id(b).hex()) in out
    rc, out, err = _dry("--update-key", tmp_path / "a.key")
    assert rc == 1 and "private key" in err and out == ""
    (tmp_path / "junk").write_bytes(b"x" * 40)
    rc, _, err = _dry("--update-key", tmp_path / "junk")
    assert rc == 1 and "not an Ed25519 public key" in err
    rc, _, err = _dry(*sum([["--update-key", tmp_path / "a.raw"] for _ in range(5)], []))
    assert rc == 1 and "at most 4" in err


def test_plans_without_the_option_never_touch_the_key(tmp_path):
    for args in ((), ("--mpy",), ("--frozen",)):
        rc, out, err = _dry(*args)
        assert rc == 0, err
        assert "update.pub" not in out, args
    # and a bundle (what an update installs) never carries state files
    files = bt.collect("esp32_s0", py=True)[0]
    assert files and not [p for _, p in files if p.startswith("state") or "update.pub" in p]


def test_deploy_installs_the_key_and_a_later_deploy_keeps_it(tmp_path, monkeypatch):
    raw = _key(tmp_path, "a")
    device, log = td._fake_device(tmp_path, monkeypatch)
    assert deploy.main(["--port", "/dev/ttyFAKE", "--board", "esp32_s0", "--reset-wait", "0",
                        "--update-key", str(tmp_path / "a.pem")]) == 0
    assert (device / "state" / "update.pub").read_bytes() == raw
    assert deploy.main(["--port", "/dev/ttyFAKE", "--board", "esp32_s0", "--reset-wait", "0",
                        "--config", "ChargePointId=CP9"]) == 0
    assert (device / "state" / "update.pub").read_bytes() == raw
    assert deploy.main(["--port", "/dev/ttyFAKE", "--board", "esp32_s0", "--reset-wait", "0",
                        "--frozen"]) == 0
    assert (device / "state" / "update.pub").read_bytes() == raw
