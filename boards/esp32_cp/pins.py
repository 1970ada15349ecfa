"""Pin map and pilot settings of the esp32_cp board: a plain ESP32 module (e.g.
ESP32-WROOM-32 DevKit) that drives its own IEC 61851-1 control pilot.

One tuple entry per connector: index 0 is connector 1.  The number of entries in `S0`
is the number of connectors.  Edit this file for your wiring (boards/README.md, section
esp32_cp); it is uploaded next to board.py and read only when the board is built.

Everything esp32_s0 reads is here too (its Board does the meter, relay, inputs, RFID,
LED and watchdog); the pilot adds the CP_* and PP_* entries.  The analog inputs must be
ADC1 pins (GPIO32-39): ADC2 cannot be read while Wi-Fi runs.
"""

# -- identity (BootNotification: vendor and model are CiString20) ------------------------
VENDOR = "mpocpp"
MODEL = "esp32-cp"

# -- S0 energy meter (as esp32_s0) --------------------------------------------------------
S0 = (25,)
S0_PULL_UP = True
IMP_PER_KWH = 1000
S0_FILTER_NS = 12000

# -- contactor ----------------------------------------------------------------------------
# Closed only while the firmware allows it AND the car is in C or D AND at least 6 A is
# offered (the pilot task decides, boards/esp32_cp/board.py).  10 kOhm pull-down on the
# driver input so it stays open while the ESP32 resets.
RELAY = (26,)
RELAY_ACTIVE = 1

# -- plug detect --------------------------------------------------------------------------
# None: the control pilot tells whether a car is connected (state B, C or D).
PLUG = (None,)
PLUG_ACTIVE = 0

# -- stop button, fault input, RFID, LED, watchdog (as esp32_s0) ---------------------------
STOP = (32,)
STOP_ACTIVE = 0
FAULT = (None,)
FAULT_ACTIVE = 0
FAULT_CODE = "OtherError"
RFID_UART = ((1, 2, 16, 17, 9600),)
LED = 2
LED_ACTIVE = 1
WDT_MS = 60000

# -- control pilot (CP) -------------------------------------------------------------------
# PWM output to the +/-12 V driver (op-amp or push-pull stage; 1 kOhm series resistor
# on the line as IEC 61851-1 requires).  Set CP_INVERT when the driver inverts (a GPIO
# high gives -12 V).
CP_PWM = (4,)
CP_INVERT = False
# ADC1 input of the CP sense front end, and what it maps the line to: the ADC's reading
# in microvolts at -12 V and at +12 V on the line.  The ESP32's ADC (12 dB attenuation)
# reads about 0.15-2.45 V calibrated, so the default front end maps -12..+12 V into
# 0.26..2.36 V: line - 100 kOhm - node, node - 22 kOhm - 3.3 V, node - 16.9 kOhm - GND
# (boards/README.md).  Measure the two levels on your board (a meter on the node with the
# line at +12 V and -12 V) and put them here.
CP_SENSE = (36,)
CP_UV_M12 = 262000
CP_UV_P12 = 2356000
# Samples per burst: read_uv() takes some tens of microseconds on an ESP32, so 100
# samples span a few PWM periods (1 ms each).
CP_SAMPLES = 100

# -- proximity pilot (PP) -----------------------------------------------------------------
# ADC1 input of the PP line, pulled up to PP_VREF_UV (3.3 V) through PP_PULLUP_OHM; the
# cable's resistor goes from PP to PE.  None for a tethered cable (no PP to read): the
# installation maximum alone applies.
PP = (39,)
PP_PULLUP_OHM = 1000
PP_VREF_UV = 3300000

# -- ratings ------------------------------------------------------------------------------
# The installation's maximum per connector in tenths of A (the breaker and supply cable
# setting): the pilot never offers more, whatever the cable or the central system says.
MAX_A10 = (160,)
PHASES = 3                 # phases each connector supplies
NOMINAL_V = 230            # for Power.Offered (offered A x volts x phases)
