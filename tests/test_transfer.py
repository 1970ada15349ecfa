"""transfer.py's download side (for the firmware updater): GET over http and RETR over
ftp streamed to a file, resumed from an offset (Range / REST), against the test servers
of tests/fileservers.py; run in MicroPython on the unix port."""
import json
import subprocess

from fileservers import ftp_server, http_server  # noqa: F401 (fixtures)
from helpers import ROOT, micropython, mp_env

SCRIPT = r"""
import sys, json, asyncio
from ocpp16 import transfer
url, dest, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def main():
    try:
        n = await transfer.get(url, dest, offset, timeout_ms=10000)
        print(json.dumps({"ok": True, "size": n}))
    except Exception as e:
        print(json.dumps({"ok": False, "err": repr(e)}))
asyncio.run(main())
"""


def _get(tmp_path, url, dest, offset=0):
    script = tmp_path / "get.py"
    script.write_text(SCRIPT)
    p = subprocess.run([micropython(), str(script), url, str(dest), str(offset)],
                       env=mp_env(), cwd=str(ROOT), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return json.loads(p.stdout.strip().splitlines()[-1])


DATA = bytes(range(256)) * 40 + b"tail"          # 10,244 bytes, more than one piece


def test_http_get_streams_to_a_file_and_resumes(tmp_path, http_server):
    srv = http_server()
    srv.serve["/fw/app.bin"] = DATA
    dest = tmp_path / "fw.part"
    url = "http://127.0.0.1:%d/fw/app.bin" % srv.port
    assert _get(tmp_path, url, dest) == {"ok": True, "size": len(DATA)}
    assert dest.read_bytes() == DATA
    dest.write_bytes(DATA[:3000])                     # a download cut short
    assert _get(tmp_path, url, dest, 3000) == {"ok": True, "size": len(DATA)}
    assert dest.read_bytes() == DATA
    assert srv.requests[-1][2].get("Range") == "bytes=3000-"
    r = _get(tmp_path, "http://127.0.0.1:%d/missing" % srv.port, tmp_path / "x")
    assert not r["ok"] and "404" in r["err"]


def test_ftp_retr_and_rest(tmp_path, ftp_server):
    srv = ftp_server(user="fw", password="get")
    (srv.root / "app.bin").write_bytes(DATA)
    dest = tmp_path / "fw.part"
    url = "ftp://fw:get@127.0.0.1:%d/app.bin" % srv.port
    assert _get(tmp_path, url, dest) == {"ok": True, "size": len(DATA)}
    assert dest.read_bytes() == DATA
    dest.write_bytes(DATA[:5000])
    assert _get(tmp_path, url, dest, 5000) == {"ok": True, "size": len(DATA)}
    assert dest.read_bytes() == DATA and "REST 5000" in srv.commands
