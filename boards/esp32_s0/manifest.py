# Freeze manifest for the esp32_s0 charger: the library, the application and this board
# are compiled into the firmware image, so their bytecode runs from flash and costs no
# heap (a .mpy on the filesystem is still loaded into RAM).
#
# Build (in a MicroPython checkout, ESP-IDF set up):
#   make -C ports/esp32 BOARD=ESP32_GENERIC \
#        FROZEN_MANIFEST=/path/to/this/repo/boards/esp32_s0/manifest.py
# then upload the entry scripts and settings only:
#   tools/deploy.py --port /dev/ttyUSB0 --board esp32_s0 --frozen
#
# main.py and boot.py are not frozen: they stay on the filesystem, where the port runs
# them from, and a file there can override a frozen module while debugging ("" comes
# before ".frozen" on sys.path).  Paths are relative to this file.

# Everything the port freezes by default (asyncio, network helpers, ...): the firmware
# needs asyncio.
include("$(PORT_DIR)/boards/manifest.py")

include("../../lib/manifest.py")
include("../../firmware/manifest.py")
module("board.py")
module("pins.py")
