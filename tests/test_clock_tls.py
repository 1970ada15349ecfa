"""wss:// after a cold boot (issue "safe on the chip", part 1).

An ESP32 starts with its wall clock at 2000-01-01; mbedTLS then finds every server
certificate "not valid yet" and the charger would never connect.  Here the simulator
runs with such a clock (tests/mp/coldclock.c, LD_PRELOAD'ed into MicroPython only) and
must set it before the handshake: from an NTP server on loopback, else from the time
saved on flash; with neither, it says that TLS waits and does not connect.
"""
import json
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mp.txlog import EnvSim, free_port
from ocpp_steps import wait_calls
from test_ws_tls import make_ca, make_server_cert, write_pem

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "tests" / "mp" / "coldclock.c"
Y2000 = 946684800
NTP_DELTA = 2208988800


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    out = tmp_path_factory.mktemp("shim") / "coldclock.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM), "-ldl"],
                   check=True)
    return out


class NtpServer:
    """A minimal SNTP server on loopback UDP that tells the host's time."""

    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.asked = 0
        self._stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while not self._stop:
            try:
                data, addr = self.s.recvfrom(512)
            except OSError:
                continue
            if len(data) < 48:
                continue
            self.asked += 1
            now = time.time() + NTP_DELTA
            reply = bytearray(48)
            reply[0] = 0x1C            # server, version 3
            reply[1] = 2
            struct.pack_into("!II", reply, 32, int(now), 0)
            struct.pack_into("!II", reply, 40, int(now), 0)
            self.s.sendto(bytes(reply), addr)

    def close(self):
        self._stop = True
        self.t.join(2)
        self.s.close()


def _tls_csms(start_csms, tmp_path):
    ca_key, ca = make_ca("Test CSMS Root")
    key, cert = make_server_cert(ca_key, ca, ["localhost"])
    kp, cp = write_pem(tmp_path, "srv", key, cert)
    csms = start_csms("--tls-cert", str(cp), "--tls-key", str(kp))
    return csms, ca


def _cold_sim(csms, ca, state, shim, ntp, floor=None):
    state.mkdir(parents=True, exist_ok=True)
    (state / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    (state / "config.json").write_text(json.dumps({
        "NtpServer": ntp, "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1}))
    if floor:
        (state / "clock.json").write_text(json.dumps({"t": floor}))
    clock = state.parent / (state.name + ".clock")
    clock.write_text("%d\n" % (Y2000 - int(time.time())))      # 2000-01-01, now
    url = csms.url.replace("127.0.0.1", "localhost")
    sim = EnvSim(url, state=state, env={"LD_PRELOAD": str(shim),
                                        "MPOCPP_CLOCK_FILE": str(clock)})
    return sim, clock


def test_cold_clock_set_from_ntp_before_tls(start_csms, tmp_path, shim):
    csms, ca = _tls_csms(start_csms, tmp_path)
    ntp = NtpServer()
    sim, clock = _cold_sim(csms, ca, tmp_path / "st", shim, "127.0.0.1:%d" % ntp.port)
    try:
        sim.wait_line(r"clock: wall clock set from NTP 127\.0\.0\.1:%d" % ntp.port, timeout=20)
        boot = wait_calls(csms, "BootNotification", 1, timeout=20)
        assert ntp.asked >= 1 and boot
        off = int(clock.read_text().split()[0])
        assert abs(off) < 5                  # the shim's clock is the host's again
        assert not any("validity starts in the future" in ln for ln in sim.lines)
    finally:
        sim.stop()
        print("---- simulator, last lines ----\n" + sim.tail(60))
        ntp.close()
        print("---- simulator, last lines ----\n" + sim.tail(60))


def test_cold_clock_set_from_the_time_saved_on_flash(start_csms, tmp_path, shim):
    csms, ca = _tls_csms(start_csms, tmp_path)
    silent = free_port()                     # no NTP server there
    floor = int(time.time()) - 3600          # saved an hour ago: still inside validity
    sim, clock = _cold_sim(csms, ca, tmp_path / "st", shim, "127.0.0.1:%d" % silent,
                           floor=floor)
    try:
        sim.wait_line(r"clock: wall clock set from the time saved on flash", timeout=20)
        wait_calls(csms, "BootNotification", 1, timeout=20)
        # Online, the central system's currentTime corrects the floor.
        sim.wait_line(r"clock: wall clock set from currentTime", timeout=20)
        assert abs(int(clock.read_text().split()[0])) < 5
    finally:
        sim.stop()
        print("---- simulator, last lines ----\n" + sim.tail(60))


def test_no_clock_no_tls_and_it_says_so(start_csms, tmp_path, shim):
    csms, ca = _tls_csms(start_csms, tmp_path)
    sim, clock = _cold_sim(csms, ca, tmp_path / "st", shim, "127.0.0.1:%d" % free_port())
    try:
        sim.wait_line(r"clock: unknown .*TLS waits", timeout=20)
        sim.wait_line(r"link: no wall clock yet; TLS waits", timeout=20)
        time.sleep(2)
        assert csms.events("connect") == []
        assert not any("connect failed: TLS" in ln for ln in sim.lines)
    finally:
        sim.stop()
        print("---- simulator, last lines ----\n" + sim.tail(60))
