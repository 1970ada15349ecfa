"""package.json: `mpremote mip install` of the library from a checkout, onto the virtual
board (tests/virtdev_host.py) with the real mpremote; and the file kept in step with
lib/ocpp16/ (tools/mkpackage.py)."""
import subprocess
import sys
from pathlib import Path

from helpers import ROOT
from virtdev_host import VirtualDevice


def test_package_json_lists_every_library_file():
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "mkpackage.py"), "--check"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, p.stdout


def test_mip_install_from_a_checkout(tmp_path):
    mpremote = str(Path(sys.executable).parent / "mpremote")
    with VirtualDevice(tmp_path / "flash") as dev:
        p = subprocess.run([mpremote, "connect", dev.port, "mip", "install",
                            str(ROOT / "package.json")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        assert p.returncode == 0, p.stdout
        # The library works on the board: a module that pulls in most of it imports.
        p = subprocess.run([mpremote, "connect", dev.port, "exec",
                            "import sys; sys.path.insert(0, '/lib'); "
                            "from ocpp16 import chargepoint, states; print('v', states.VERSION)"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        assert p.returncode == 0 and "v " in p.stdout, p.stdout
    for f in (ROOT / "lib" / "ocpp16").glob("*.py"):
        assert (tmp_path / "flash" / "lib" / "ocpp16" / f.name).read_bytes() == f.read_bytes()
