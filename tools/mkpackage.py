#!/usr/bin/env python3
"""Write package.json, the `mip` description of the ocpp16 library (micropython-lib's
convention: "urls" maps each file's place on the board, under the install target,
default /lib, to its place in this repository).

    tools/mkpackage.py           rewrite package.json from lib/ocpp16/ and lib/manifest.py
    tools/mkpackage.py --check   exit 1 when package.json is not what it would write

Then, on a board:  mpremote mip install path/to/checkout/package.json
               or  mpremote mip install github:OWNER/REPO  (a repository with this file)
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package():
    m = re.search(r'version="([^"]+)"', (ROOT / "lib" / "manifest.py").read_text())
    files = sorted(p.name for p in (ROOT / "lib" / "ocpp16").glob("*.py"))
    return {"urls": [["ocpp16/" + f, "lib/ocpp16/" + f] for f in files],
            "deps": [], "version": m.group(1)}


def text():
    return json.dumps(package(), indent=1) + "\n"


if __name__ == "__main__":
    path = ROOT / "package.json"
    if sys.argv[1:] == ["--check"]:
        if not path.exists() or path.read_text() != text():
            sys.exit("package.json is out of date: run tools/mkpackage.py")
    else:
        path.write_text(text())
