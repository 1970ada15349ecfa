# The ocpp16 library, micropython-lib style: a board's freeze manifest includes this file
# (boards/*/manifest.py), and package.json at the repository root lets `mpremote mip`
# install the same files onto a board's filesystem.
metadata(description="OCPP 1.6J charge point for MicroPython", version="0.2.0")

package("ocpp16")
