"""FirmwareManagement, updates: UpdateFirmware (OCPP 1.6 §5.16; OCTT TC_044_1/2/3) end to
end: tools/sim against tools/csms (schema validation on), bundles made with
tools/bundle.py and served by the HTTP file server of tests/fileservers.py.

A good signed bundle is installed into a slot, the simulator restarts into it and the
next BootNotification carries its version; a refused bundle leaves the old version; a
bundle whose code raises at import is rolled back; an update waits for the transaction.
"""
import datetime
import re
import time
import json
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fileservers import ftp_server, http_server  # noqa: F401 (fixtures)
from helpers import ROOT
from ocpp_steps import booted, Watch, wait_calls, start_conf, wait_status

sys.path.insert(0, str(ROOT / "tools"))
import bundle as BT  # noqa: E402

OLD = "0.2.0"


def _raw(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def make_bundle(version, key, patch=None, board="unix_sim"):
    """A source bundle of the checkout for the simulator; patch: {path: extra source
    appended to that file}."""
    files, mpy = BT.collect("unix_sim", py=True)
    with tempfile.TemporaryDirectory() as d:
        out = []
        for local, path in files:
            if patch and path in patch:
                p = Path(d) / path.replace("/", "_")
                p.write_text(Path(local).read_text() + "\n" + patch[path] + "\n")
                local = p
            out.append((local, path))
        return BT.build(out, version, board, key, mpy)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(tmp_path, key):
    st = tmp_path / "state-CP1"
    st.mkdir(exist_ok=True)
    if key is not None:
        (st / "update.pub").write_bytes(_raw(key))
    return st


def _start(start_csms, start_sim, tmp_path, key, **kw):
    st = _state(tmp_path, key)
    csms, sim = booted(start_csms, start_sim, state=st, **kw)
    return csms, sim, st


def _update(csms, url, check=True, **extra):
    p = {"location": url, "retrieveDate": _now()}
    p.update(extra)
    r = csms.call("CP1", "UpdateFirmware", p)
    assert r["ok"] and r["result"] == {} or not check, r


def _fw(w, count, timeout=60):
    return [c[3]["status"] for c in w.wait("FirmwareStatusNotification", count, timeout)]


def _versions(csms):
    return [c[3].get("firmwareVersion") for c in csms.calls("BootNotification", cp="CP1")]


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def test_tc044_1_good_bundle_installs_and_boots_new_version(
        start_csms, start_sim, http_server, tmp_path, key):
    srv = http_server()
    srv.serve["/fw/app.bin"] = make_bundle("9.9.9-test", key,
                                           {"app.py": "print('app: from the bundle 9.9.9')"})
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    assert _versions(csms) == [OLD]
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification",
                         "StatusNotification")
    _update(csms, "http://127.0.0.1:%d/fw/app.bin" % srv.port)
    assert _fw(w, 4) == ["Downloading", "Downloaded", "Installing", "Installed"]
    boots = w.new("BootNotification")
    assert [b[3]["firmwareVersion"] for b in boots] == ["9.9.9-test"]
    # TC_044_1: the connectors Unavailable while installing, Available after the boot
    sts = [(c[3]["connectorId"], c[3]["status"]) for c in w.new("StatusNotification")]
    assert (1, "Unavailable") in sts and sts.index((1, "Unavailable")) < \
        len(sts) - 1 - sts[::-1].index((1, "Available")), sts
    ptr = json.loads((st / "app" / "boot.json").read_text())
    assert ptr["active"] == "a" and ptr["trial"] is None and ptr["version"] == "9.9.9-test"
    assert (st / "app" / "a" / "lib" / "ocpp16" / "firmware.py").exists()
    assert not (st / "fw.json").exists() and not (st / "app" / "new.bin").exists()
    # The new code runs from the slot: its modules, not the checkout's.
    sim.wait_line(r"^app: from the bundle 9.9.9")
    # Triggered afterwards: Idle (TC_054)
    w.mark("FirmwareStatusNotification")
    r = csms.call("CP1", "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert r["result"]["status"] == "Accepted"
    assert _fw(w, 1) == ["Idle"]
    # A second update goes into the other slot, the first one kept as the fallback.
    srv.serve["/fw/app2.bin"] = make_bundle("9.9.10-test", key)
    w.mark("FirmwareStatusNotification", "BootNotification")
    _update(csms, "http://127.0.0.1:%d/fw/app2.bin" % srv.port)
    assert _fw(w, 4) == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert [b[3]["firmwareVersion"] for b in w.new("BootNotification")] == ["9.9.10-test"]
    ptr = json.loads((st / "app" / "boot.json").read_text())
    assert (ptr["active"], ptr["prev"]) == ("b", "a")
    assert csms.invalid() == []


def test_state_survives_an_update_untouched(start_csms, start_sim, http_server, tmp_path, key):
    # The configuration, the authorisation cache, the local list and the update key are
    # the same bytes after the update, and the new code acts on them.
    srv = http_server()
    srv.serve["/fw.bin"] = make_bundle("9.5.0-test", key)
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key,
                           config=[("ConnectionTimeOut", "77")])
    r = csms.call("CP1", "SendLocalList", {"listVersion": 3, "updateType": "Full",
                                           "localAuthorizationList": [
                                               {"idTag": "LISTED", "idTagInfo": {"status": "Accepted"}}]})
    assert r["result"]["status"] == "Accepted"
    sim.send("swipe 1 CACHED")                      # into the cache: Accepted, waits
    wait_status(csms, 1, "Preparing")               # for the plug
    names = ("config.json", "auth.bin", "locallist.bin", "update.pub")
    before = {n: (st / n).read_bytes() for n in names}
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification")
    _update(csms, "http://127.0.0.1:%d/fw.bin" % srv.port)
    assert _fw(w, 4, timeout=90) == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert [b[3]["firmwareVersion"] for b in w.new("BootNotification")] == ["9.5.0-test"]
    assert {n: (st / n).read_bytes() for n in names} == before
    r = csms.call("CP1", "GetConfiguration", {"key": ["ConnectionTimeOut"]})
    assert r["result"]["configurationKey"][0]["value"] == "77"
    assert csms.call("CP1", "GetLocalListVersion", {})["result"]["listVersion"] == 3
    assert csms.invalid() == []


def test_retrieve_date_in_the_future_is_waited_for(start_csms, start_sim, http_server,
                                                   tmp_path, key):
    srv = http_server()
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    w = Watch(csms).mark("FirmwareStatusNotification")
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
    _update(csms, "http://127.0.0.1:%d/later.bin" % srv.port,
            retrieveDate=at.strftime("%Y-%m-%dT%H:%M:%SZ"), retries=0)
    time.sleep(2.5)
    assert w.new("FirmwareStatusNotification") == [] and srv.requests == []
    assert _fw(w, 2) == ["Downloading", "DownloadFailed"]
    assert datetime.datetime.now(datetime.timezone.utc) >= at - datetime.timedelta(seconds=1)
    assert [r[1] for r in srv.requests] == ["/later.bin"]


def test_tc044_2_download_fails(start_csms, start_sim, http_server, tmp_path, key):
    srv = http_server()
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification")
    _update(csms, "http://127.0.0.1:%d/download_fail.fwi" % srv.port, retries=1,
            retryInterval=1)
    assert _fw(w, 2) == ["Downloading", "DownloadFailed"]
    assert len([r for r in srv.requests if r[1] == "/download_fail.fwi"]) == 2
    assert w.new("BootNotification") == []
    assert not (st / "fw.json").exists()
    assert csms.invalid() == []


@pytest.mark.parametrize("bad", ["other key", "unsigned", "byte changed", "no key",
                                 "wrong board", "older"])
def test_tc044_3_refused_bundle_installation_failed(
        start_csms, start_sim, http_server, tmp_path, key, bad):
    # "older": signed with the charger's key, but older than the running 0.2.0 (a replayed
    # old bundle would bring back what a later one fixed).
    srv = http_server()
    data = make_bundle("0.1.9" if bad == "older" else "6.6.6-bad",
                       Ed25519PrivateKey.generate() if bad == "other key"
                       else None if bad == "unsigned" else key,
                       board="esp32_s0" if bad == "wrong board" else "unix_sim")
    if bad == "byte changed":
        data = bytearray(data)
        data[len(data) // 2] ^= 1
        data = bytes(data)
    srv.serve["/fw.bin"] = data
    csms, sim, st = _start(start_csms, start_sim, tmp_path, None if bad == "no key" else key)
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification")
    _update(csms, "http://127.0.0.1:%d/fw.bin" % srv.port)
    assert _fw(w, 3) == ["Downloading", "Downloaded", "InstallationFailed"]
    sim.wait_line(r"firmware: bundle refused: " + {
        "other key": "unknown key", "unsigned": "unsigned", "byte changed": "corrupt",
        "no key": "no key installed", "wrong board": "wrong board",
        "older": r"downgrade: version 0\.1\.9 is older than the running 0\.2\.0"}[bad])
    # Still the old version, nothing switched, and it keeps running.
    assert not (st / "app" / "boot.json").exists() and not (st / "fw.json").exists()
    assert w.new("BootNotification") == []
    r = csms.call("CP1", "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert r["ok"]
    assert csms.invalid() == []


def test_bundle_raising_at_import_is_rolled_back(
        start_csms, start_sim, http_server, tmp_path, key):
    srv = http_server()
    srv.serve["/fw.bin"] = make_bundle(
        "7.7.7-broken", key, {"app.py": "raise RuntimeError('broken bundle at import')"})
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification")
    _update(csms, "http://127.0.0.1:%d/fw.bin" % srv.port)
    assert _fw(w, 4, timeout=90) == ["Downloading", "Downloaded", "Installing",
                                     "InstallationFailed"]
    sim.wait_line(r"broken bundle at import")
    sim.wait_line(r"boot: slot a \(7.7.7-broken\) failed 2 boots; back to built-in")
    assert [b[3]["firmwareVersion"] for b in w.new("BootNotification")] == [OLD]
    ptr = json.loads((st / "app" / "boot.json").read_text())
    assert ptr["active"] is None and ptr["failed"] == "7.7.7-broken"
    assert not (st / "fw.json").exists()
    assert csms.invalid() == []


def test_bundle_that_never_registers_is_rolled_back(
        start_csms, start_sim, http_server, tmp_path, key, monkeypatch):
    # Its BootNotification is sent without a vendor: the central system's schema check
    # answers a CALLERROR, so it is never Accepted; the trial ends after MPOCPP_TRIAL_S.
    monkeypatch.setenv("MPOCPP_TRIAL_S", "8")
    srv = http_server()
    srv.serve["/fw.bin"] = make_bundle(
        "8.8.8-mute", key,
        {"lib/ocpp16/messages.py": "BOOT = b'NoSuchBootNotification'"})
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification")
    _update(csms, "http://127.0.0.1:%d/fw.bin" % srv.port)
    assert _fw(w, 4, timeout=90) == ["Downloading", "Downloaded", "Installing",
                                     "InstallationFailed"]
    sim.wait_line(r"firmware: version 8.8.8-mute not registered within 8 s; rolling back")
    assert [b[3]["firmwareVersion"] for b in w.new("BootNotification")] == [OLD]
    ptr = json.loads((st / "app" / "boot.json").read_text())
    assert ptr["active"] is None


def test_update_waits_for_the_transaction(start_csms, start_sim, http_server, tmp_path, key):
    srv = http_server()
    srv.serve["/fw.bin"] = make_bundle("9.1.0-test", key)
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    sim.send("plug 1")
    sim.send("swipe 1 TAG1")
    start_conf(csms)
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification", "StopTransaction")
    _update(csms, "http://127.0.0.1:%d/fw.bin" % srv.port)
    assert _fw(w, 2) == ["Downloading", "Downloaded"]
    sim.wait_line(r"firmware: waiting for the transactions to end")
    time.sleep(2)
    assert _fw(w, 2) == ["Downloading", "Downloaded"]     # no install while it runs
    assert w.new("StopTransaction") == [] and w.new("BootNotification") == []
    # Triggered while it waits: the last status of the update in progress.
    r = csms.call("CP1", "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert r["result"]["status"] == "Accepted"
    assert _fw(w, 3) == ["Downloading", "Downloaded", "Downloaded"]
    sim.send("swipe 1 TAG1")
    stop = w.wait("StopTransaction")[0]
    assert _fw(w, 5) == ["Downloading", "Downloaded", "Downloaded", "Installing", "Installed"]
    boot = w.wait("BootNotification")[0]
    calls = csms.calls(cp="CP1")
    assert calls.index(stop) < calls.index(boot)
    assert boot[3]["firmwareVersion"] == "9.1.0-test"
    assert csms.invalid() == []


_WRITE = re.compile(r"sim: write #(\d+) (\S+)")


def _settled(st, timeout=60):
    # The update is over (installed, refused or rolled back): no job on flash.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not (st / "fw.json").exists():
            return
        time.sleep(0.2)
    raise AssertionError("the update never ended: %s" % (st / "fw.json").read_text())


def test_power_cut_at_every_install_step_leaves_old_or_new(
        start_csms, start_sim, http_server, tmp_path, key, monkeypatch, pytestconfig):
    new = "9.2.0-test"
    srv = http_server()
    srv.serve["/fw.bin"] = make_bundle(new, key)
    url = "http://127.0.0.1:%d/fw.bin" % srv.port
    csms = start_csms("--heartbeat", "300")

    def run(name, kill):
        st = _state(tmp_path / name, key) if (tmp_path / name).mkdir() is None else None
        monkeypatch.setenv("MPOCPP_KILL_AFTER_WRITES", str(kill))
        sim = start_sim(csms.url, state=st)
        sim.wait_line(r"boot: Accepted")
        time.sleep(0.5)
        _update(csms, url, check=not kill)     # a cut may come before the answer
        return st, sim

    # A dry run counts the write steps (N=0 prints them) of the whole update.
    st, sim = run("dry", 0)
    sim.wait_line(r"firmware: Installed", timeout=60)
    writes = [(int(m.group(1)), m.group(2)) for m in map(_WRITE.search, list(sim.lines)) if m]
    first = min(k for k, p in writes if p.endswith("/fw.json.tmp"))
    steps = [(k, p) for k, p in writes if k >= first]
    slot_files = [k for k, p in steps if "/app/a/" in p and "bundle.json" not in p]
    keep = {slot_files[0], slot_files[len(slot_files) // 2], slot_files[-1]}
    cuts = [k for k, p in steps if k in keep or k not in slot_files]
    assert len(cuts) >= 10, steps          # fw.json, bundle.json, boot.json, ...
    if not pytestconfig.getoption("--run-slow"):
        # make test: the steps where the outcome turns (the job's first record, a slot
        # file, the slot's completion, the pointer's switch, the first write after it);
        # make test-long cuts at every one.
        switch = [k for k, p in steps if "/app/boot.json" in p]
        done = [k for k, p in steps if "bundle.json" in p]
        key_steps = {cuts[0], slot_files[len(slot_files) // 2]} | set(done[:1]) | set(switch[:1])
        after = [k for k in cuts if switch and k > switch[0]]
        cuts = sorted(key_steps | set(after[:1]))
    sim.stop()
    seen = set()
    for k in cuts:
        st, sim = run("cut%d" % k, k)
        sim.proc.wait(timeout=60)          # the power cut
        assert any("sim: POWER CUT after write #%d " % k in ln for ln in sim.lines), sim.tail()
        monkeypatch.delenv("MPOCPP_KILL_AFTER_WRITES")
        w = Watch(csms).mark("BootNotification")
        sim = start_sim(csms.url, state=st)
        boot = w.wait("BootNotification", timeout=30)[0][3]["firmwareVersion"]
        assert boot in (OLD, new), boot
        _settled(st)
        ptr = json.loads((st / "app" / "boot.json").read_text()) \
            if (st / "app" / "boot.json").exists() else {}
        want = ptr.get("version") if ptr.get("active") else OLD
        time.sleep(0.5)
        versions = [c[3]["firmwareVersion"] for c in w.new("BootNotification")]
        assert versions[-1] == want, (k, versions, ptr)
        assert ptr.get("trial") is None, ptr
        seen.add(want)
        sim.stop()
    # Cut before the switch: the install goes on after the restart; so new mostly.
    assert new in seen
    assert csms.invalid() == []


@pytest.mark.parametrize("pointer", ["incomplete slot", "torn pointer"])
def test_boot_code_falls_back_to_the_built_in_code(start_csms, start_sim, tmp_path, pointer):
    st = _state(tmp_path, None)
    (st / "app" / "a" / "lib").mkdir(parents=True)
    (st / "app" / "a" / "app.py").write_text("raise RuntimeError('never imported')\n")
    (st / "app" / "boot.json").write_text(
        '{"active": "a", "prev": null, "trial": null, "version": "x"}'
        if pointer == "incomplete slot" else 'not json at all')
    csms, sim = booted(start_csms, start_sim, state=st)
    assert _versions(csms) == [OLD]
    sim.wait_line(r"boot: slot a is not complete; skipped" if pointer == "incomplete slot"
                  else r"boot: slot pointer: .*; built-in code")
    assert not any("never imported" in ln for ln in sim.lines)


def test_reboot_mid_download_resumes_where_it_stopped(start_csms, start_sim, http_server,
                                                      tmp_path, key):
    # What a power cut during the download leaves: the job on flash and half the file.
    srv = http_server()
    data = make_bundle("9.3.0-test", key)
    srv.serve["/fw.bin"] = data
    st = _state(tmp_path, key)
    (st / "app").mkdir()
    half = len(data) // 2
    (st / "app" / "new.bin").write_bytes(data[:half])
    (st / "fw.json").write_text(json.dumps({
        "ph": "wait", "url": "http://127.0.0.1:%d/fw.bin" % srv.port, "at": 0,
        "tries": 1, "iv": 1}))
    csms = start_csms("--heartbeat", "300")
    start_sim(csms.url, state=st)
    w = Watch(csms)
    assert _fw(w, 4) == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert [r[2].get("Range") for r in srv.requests] == ["bytes=%d-" % half]
    assert _versions(csms) == [OLD, "9.3.0-test"]
    assert csms.invalid() == []


def test_ftp_location_installs_and_missing_file_fails(start_csms, start_sim, ftp_server,
                                                     tmp_path, key):
    srv = ftp_server(user="fw", password="s3cret")
    (srv.root / "fw.bin").write_bytes(make_bundle("9.4.0-ftp", key))
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification")
    # TC_044_2 as OCTT sends it: an ftp:// file that is not there, retries 0
    _update(csms, "ftp://fw:s3cret@127.0.0.1:%d/download_fail.fwi" % srv.port, retries=0)
    assert _fw(w, 2) == ["Downloading", "DownloadFailed"]
    assert "RETR download_fail.fwi" in srv.commands
    w.mark("FirmwareStatusNotification")
    _update(csms, "ftp://fw:s3cret@127.0.0.1:%d/fw.bin" % srv.port)
    assert _fw(w, 4) == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert [b[3]["firmwareVersion"] for b in w.new("BootNotification")] == ["9.4.0-ftp"]
    assert csms.invalid() == []


def test_mpy_bundle_installs(start_csms, start_sim, http_server, tmp_path, key):
    # The format `make deploy --mpy` and `make bundle` use: compiled modules (x64 for the
    # unix port), whose .mpy version the charger checks before installing.
    with tempfile.TemporaryDirectory() as d:
        files, mpy = BT.collect("unix_sim", py=False, march="x64", staging=d)
        data = BT.build(files, "9.5.0-mpy", "unix_sim", key, mpy)
    assert mpy[0] and all(p.endswith(".mpy") or p == "main.py" for _, p in files)
    srv = http_server()
    srv.serve["/fw.bin"] = data
    csms, sim, st = _start(start_csms, start_sim, tmp_path, key)
    w = Watch(csms).mark("FirmwareStatusNotification", "BootNotification")
    _update(csms, "http://127.0.0.1:%d/fw.bin" % srv.port)
    assert _fw(w, 4) == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert [b[3]["firmwareVersion"] for b in w.new("BootNotification")] == ["9.5.0-mpy"]
    assert (st / "app" / "a" / "lib" / "ocpp16" / "firmware.mpy").exists()
    assert csms.invalid() == []
