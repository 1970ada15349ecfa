"""Minimal stand-in for the ESP32 `network` module: a scriptable station interface.

A test sets `WLAN.script = (polls, status)`: connect() succeeds after `polls` status
polls (None: never, reporting `status` instead, e.g. STAT_NO_AP_FOUND).
"""
STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

_hostname = "esp32"


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


class WLAN:
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2
    script = (0, STAT_GOT_IP)
    _ifs = {}

    def __new__(cls, interface=STA_IF):
        w = cls._ifs.get(interface)
        if w is None:
            w = object.__new__(cls)
            w.reset()
            cls._ifs[interface] = w
        return w

    def reset(self):
        self._active = False
        self._connected = False
        self._status = STAT_IDLE
        self._polls = None
        self.connects = []
        self.disconnects = 0
        self.conf = {}

    def active(self, v=None):
        if v is None:
            return self._active
        self._active = bool(v)

    def config(self, *args, **kw):
        if args:
            return self.conf.get(args[0])
        self.conf.update(kw)

    def connect(self, ssid=None, key=None, **kw):
        if not self._active:
            raise OSError("Wifi Not Started")
        self.connects.append((ssid, key))
        self._polls = 0
        self._status = STAT_CONNECTING

    def disconnect(self):
        self.disconnects += 1
        self._connected = False
        self._polls = None
        self._status = STAT_IDLE

    def _step(self):
        if self._polls is None or self._connected:
            return
        after, fail = WLAN.script
        self._polls += 1
        if after is not None and self._polls > after:
            self._connected = True
            self._status = STAT_GOT_IP
        elif after is None and self._polls > 1:
            self._status = fail

    def isconnected(self):
        self._step()
        return self._connected

    def status(self, *args):
        return self._status

    def ifconfig(self, *args):
        return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")

    def drop(self):
        """Test helper: the access point goes away."""
        self._connected = False
        self._polls = None
        self._status = STAT_NO_AP_FOUND
