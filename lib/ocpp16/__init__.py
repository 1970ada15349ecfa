# ocpp16: an OCPP 1.6J charge point for MicroPython.  Modules are imported one by one
# (`from ocpp16 import ws`), so this file stays empty to keep the resident set small.
