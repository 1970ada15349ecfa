# Freeze manifest for the simulated charger on the unix port (tools/build-frozen): the
# same code a charger freezes, plus main.py, so the binary runs as it is
# (`micropython -m main ...`, which tools/sim does when it finds the firmware frozen in).
include("$(MPY_DIR)/extmod/asyncio")
include("../../lib/manifest.py")
include("../../firmware/manifest.py")
module("main.py", base_path="../../firmware")
module("board.py")
module("powercut.py")
