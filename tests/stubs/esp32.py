"""Minimal stand-in for the `esp32` module: the PCNT pulse counter unit.

Like the hardware, a unit counts up to `max` and then restarts at 0.  `add()` is a
test helper (n edges arrive); `PCNT.units` holds the singletons.
"""


class PCNT:
    IGNORE = 0
    INCREMENT = 1
    DECREMENT = 2
    HOLD = 3
    REVERSE = 4
    IRQ_ZERO = 1
    IRQ_MIN = 2
    IRQ_MAX = 4
    IRQ_THRESHOLD0 = 8
    IRQ_THRESHOLD1 = 16
    units = {}

    def __new__(cls, id, **kw):
        u = cls.units.get(id)
        if u is None:
            u = object.__new__(cls)
            u.id = id
            u.conf = {}
            u._v = 0
            u.started = False
            cls.units[id] = u
        return u

    def __init__(self, id, **kw):
        if kw:
            self.init(**kw)

    def init(self, **kw):
        if "filter" in kw and not 0 <= kw["filter"] <= 1023:
            raise ValueError("filter")
        if "max" in kw and not 1 <= kw["max"] <= 32767:
            raise ValueError("max")
        if "min" in kw and not -32768 <= kw["min"] <= -1:
            raise ValueError("min")
        self.conf.update(kw)
        if "value" in kw:
            self._v = kw["value"]

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def value(self, v=None):
        r = self._v
        if v is not None:
            self._v = v
        return r

    def add(self, n):
        """Test helper: n counted edges; the unit restarts at 0 when it reaches max."""
        if self.started:
            self._v = (self._v + n) % self.conf.get("max", 32767)


class Partition:
    """OTA app partitions (ota_0, ota_1) as ESP-IDF's bootloader treats them, in RAM.

    set_boot() makes a partition the next one booted (state "new"); the test helper
    `Partition.reset()` is a reset through the bootloader: a "new" app is booted and
    becomes "pending" (ESP_OTA_IMG_PENDING_VERIFY); a "pending" app that is booted again
    without mark_app_valid_cancel_rollback() is "aborted" and the last valid app boots
    instead (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE).  `data[label]` holds the bytes.
    """
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1
    BLOCK = 4096
    SIZE = 16 * 4096
    LABELS = ("ota_0", "ota_1")
    data = {}
    state = {}
    boot_label = "ota_0"
    running_label = "ota_0"
    writes = []         # (label, block) in order, for the tests

    @classmethod
    def wipe(cls):
        """Test helper: a factory-fresh chip running a valid ota_0."""
        cls.data = {lb: bytearray(b"\xff" * cls.SIZE) for lb in cls.LABELS}
        cls.state = {"ota_0": "valid", "ota_1": "empty"}
        cls.boot_label = cls.running_label = "ota_0"
        cls.writes = []

    @classmethod
    def reset(cls):
        """Test helper: the chip resets; the bootloader picks the app.  Returns its label."""
        b = cls.boot_label
        st = cls.state[b]
        if st == "new":
            cls.state[b] = "pending"
        elif st in ("pending", "aborted", "empty"):
            cls.state[b] = "aborted" if st == "pending" else st
            b = [lb for lb in cls.LABELS if cls.state[lb] == "valid"][0]
            cls.boot_label = b
        cls.running_label = b
        return b

    def __init__(self, id):
        if id == Partition.RUNNING:
            self.label = Partition.running_label
        elif id == Partition.BOOT:
            self.label = Partition.boot_label
        elif id in Partition.LABELS:
            self.label = id
        else:
            raise ValueError("partition not found")

    @classmethod
    def find(cls, type=TYPE_APP, subtype=0xFF, label=None):
        if type != cls.TYPE_APP:
            return []
        return [cls(lb) for lb in cls.LABELS if label is None or lb == label]

    def info(self):
        i = Partition.LABELS.index(self.label)
        return (0, 0x10 + i, 0x10000 + i * Partition.SIZE, Partition.SIZE, self.label, False)

    def readblocks(self, block, buf, offset=0):
        a = block * Partition.BLOCK + offset
        buf[:] = Partition.data[self.label][a:a + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if self.label == Partition.running_label:
            raise OSError(13)       # ESP_ERR_OTA_PARTITION_CONFLICT: never the running app
        if offset is None and len(buf) % Partition.BLOCK:
            raise ValueError("not whole blocks")
        a = block * Partition.BLOCK + (offset or 0)
        if a + len(buf) > Partition.SIZE:
            raise OSError(28)
        Partition.data[self.label][a:a + len(buf)] = buf
        Partition.writes.append((self.label, block))
        if Partition.state[self.label] != "new":
            Partition.state[self.label] = "written"

    def ioctl(self, op, arg):
        if op == 4:
            return Partition.SIZE // Partition.BLOCK
        if op == 5:
            return Partition.BLOCK
        return 0

    def set_boot(self):
        if Partition.state[self.label] in ("written", "aborted"):
            Partition.state[self.label] = "new"
        Partition.boot_label = self.label

    def get_next_update(self):
        ls = Partition.LABELS
        return Partition(ls[(ls.index(self.label) + 1) % len(ls)])

    @staticmethod
    def mark_app_valid_cancel_rollback():
        lb = Partition.running_label
        if Partition.state[lb] == "pending":
            Partition.state[lb] = "valid"


Partition.wipe()
