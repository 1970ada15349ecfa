"""Full MicroPython images (for chargers that freeze the code): written to the next OTA
partition with esp32.Partition, booted once with set_boot(), and kept only when the new
image reached BootNotification Accepted (firmware.py calls confirm() then); otherwise
the bootloader rolls back at the next reset, and firmware.py also points the boot back
at the previous partition itself (a bootloader built without rollback support).

The partitions come from the board (lib/ never imports a hardware module): an ESP32
board class holds `Partition = esp32.Partition`, found as cp.board.Partition; a board
without it refuses images (InstallationFailed).

An image comes as a signed bundle (tools/bundle.py) holding one file, IMAGE: the same
signature check as an application bundle, then the image's bytes are streamed from flash
into the partition one BLOCK at a time (one 4 KB buffer while installing, none after).
"""
from micropython import const
from ocpp16 import bundle, sigverify

IMAGE = "micropython.bin"       # the one file of an image bundle
BLOCK = const(4096)             # the OTA partition's erase block


def is_image(path, info):
    if info["files"] != 1:
        return False
    with open(path, "rb") as f:
        for e in bundle.entries(f, info):
            return e[0] == IMAGE
    return False


class _Writer:
    # Gathers the image into whole blocks: writeblocks(n, buf) erases and writes them.
    def __init__(self, part):
        self.part = part
        self.buf = bytearray(BLOCK)
        self.n = 0
        self.block = 0

    def write(self, mv):
        i = 0
        while i < len(mv):
            k = min(len(mv) - i, BLOCK - self.n)
            self.buf[self.n:self.n + k] = mv[i:i + k]
            self.n += k
            i += k
            if self.n == BLOCK:
                self.flush()

    def flush(self):
        if self.n:
            for j in range(self.n, BLOCK):
                self.buf[j] = 0xFF      # erased flash
            self.part.writeblocks(self.block, self.buf)
            self.block += 1
            self.n = 0


def running(Partition):
    """The label of the partition this image runs from (e.g. "ota_0")."""
    return Partition(Partition.RUNNING).info()[4]


async def install(Partition, path, info):
    """Write the verified image bundle at `path` to the next OTA partition and make it
    the one booted next; returns its label.  BundleError when it does not fit or its
    bytes are not the signed ones (the boot partition is then left as it was)."""
    nxt = Partition(Partition.RUNNING).get_next_update()
    room = nxt.info()[3]
    f = open(path, "rb")
    try:
        for name, size, want, off in bundle.entries(f, info):
            if size > room:
                raise bundle.BundleError(bundle.WRITE_FAILED, "image of %d bytes, partition "
                                         "%s holds %d" % (size, nxt.info()[4], room))
            w = _Writer(nxt)
            got = await sigverify.run(bundle.copy_steps(f, off, size, w))
            w.flush()
            if got != want:
                raise bundle.BundleError(bundle.CORRUPT, "image: SHA-256 does not match")
    finally:
        f.close()
    nxt.set_boot()
    return nxt.info()[4]


def confirm(Partition):
    """The new image works (registered): cancel the bootloader's rollback."""
    Partition.mark_app_valid_cancel_rollback()


def back(Partition, label):
    """Boot the partition `label` again (the previous image) at the next reset."""
    for p in Partition.find(Partition.TYPE_APP, label=label):
        p.set_boot()
        return True
    return False
