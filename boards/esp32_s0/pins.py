"""Pin map of the esp32_s0 board: a plain ESP32 module (e.g. ESP32-WROOM-32 DevKit).

One tuple entry per connector: index 0 is connector 1.  The number of entries in `S0`
is the number of connectors.  Edit this file for your wiring (see boards/README.md);
it is uploaded next to board.py and read only when the board is built.

Pins avoided on purpose: GPIO6-11 (SPI flash), the strapping pins 0, 5, 12 and 15
(a level forced on them at reset changes how the chip boots), and GPIO34-39 for
anything that needs an internal pull-up (those pins are input-only without pulls).
"""

# -- identity (BootNotification: vendor and model are CiString20) ------------------------
VENDOR = "mpocpp"
MODEL = "esp32-s0"

# -- S0 energy meter ------------------------------------------------------------------
# S0 pulse output (opto-transistor, collector to the GPIO, emitter to GND).  The GPIO's
# internal pull-up is enabled; add an external 4.7 kOhm to 3.3 V for long cables.
S0 = (25,)
S0_PULL_UP = True
# Meter constant printed on the meter (impulses per kWh).  Override with opts["imp"].
IMP_PER_KWH = 1000
# PCNT glitch filter in ns (hardware maximum ~12.8 us): S0 pulses last >= 30 ms, so
# this only rejects EMI spikes.
S0_FILTER_NS = 12000

# -- contactor ------------------------------------------------------------------------
# Output driving the contactor's relay/driver stage.  Pull the driver input down with
# 10 kOhm so the contactor stays open while the ESP32 resets (GPIOs float at reset).
RELAY = (26,)
RELAY_ACTIVE = 1          # level that closes the contactor

# -- plug detect and stop button -------------------------------------------------------
# Switch to GND when a cable is plugged (or the "vehicle connected" output of a CP
# pilot controller); internal pull-up.
PLUG = (27,)
PLUG_ACTIVE = 0           # level meaning "plugged"
# Push button to GND; None for a connector without a button.
STOP = (32,)
STOP_ACTIVE = 0

# -- fault input (optional) ------------------------------------------------------------
# A contact that reports a fault of the connector, e.g. the auxiliary contact of its
# RCD/RCM or an over-temperature switch; None for none.  While it is active the relay is
# open and the connector reports Faulted with FAULT_CODE (an OCPP ChargePointErrorCode).
# The input only reports: the protection itself must be in hardware.
FAULT = (None,)
FAULT_ACTIVE = 0          # level meaning "fault"; internal pull-up when 0
FAULT_CODE = "OtherError"

# -- RFID reader -----------------------------------------------------------------------
# UART readers that send one tag id per line: (connector, uart id, rx pin, tx pin, baud).
# Empty tuple: no reader (authorisation only from the central system).
RFID_UART = ((1, 2, 16, 17, 9600),)

# -- status LED ------------------------------------------------------------------------
# GPIO2 is the on-board LED of many DevKit clones; None for no LED.
LED = 2
LED_ACTIVE = 1

# -- watchdog --------------------------------------------------------------------------
# machine.WDT timeout in ms (ESP32 minimum 1000); 0 disables it.  Generous because
# DNS look-ups and the TLS handshake block the loop for seconds on an ESP32.
WDT_MS = 60000
