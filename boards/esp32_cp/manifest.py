# Freeze manifest for the esp32_cp charger (its own control pilot): the library, the
# application and this board are compiled into the firmware image, as for esp32_s0
# (boards/esp32_s0/manifest.py explains the build and the deploy with --frozen).
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC \
#        FROZEN_MANIFEST=/path/to/this/repo/boards/esp32_cp/manifest.py
#   tools/deploy.py --port /dev/ttyUSB0 --board esp32_cp --frozen
#
# esp32_s0.py here is a link to ../esp32_s0/board.py (this board subclasses it), so the
# same file is frozen as the module `esp32_s0`; boot.py is a link to esp32_s0's and, as
# there, stays on the filesystem.  Paths are relative to this file.

include("$(PORT_DIR)/boards/manifest.py")

include("../../lib/manifest.py")
include("../../firmware/manifest.py")
module("board.py")
module("esp32_s0.py")
module("pilot.py")
module("pins.py")
