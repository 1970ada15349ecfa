"""FirmwareManagement, updates: UpdateFirmware (OCPP 1.6 §5.16, §6.51) with
FirmwareStatusNotification (§4.5), signed application bundles installed into an
inactive slot, an atomic switch, a trial boot and a rollback.

Imported at the first UpdateFirmware (chargepoint._PROFILES), or at boot when
<state>/fw.json (the job, on flash) says an update is in progress: the job then resumes
where a reboot or a power cut left it.  State is cp.part("firmware").

Files (nothing else in <state>/ is touched by an install):
  <state>/fw.json         the job: phase, location, retrieveDate, tries, interval, slot
  <state>/app/new.bin     the download (resumed from its size after a reboot)
  <state>/app/a, b        the slots (a bundle unpacked; bundle.json written last)
  <state>/app/boot.json   the pointer firmware/main.py boots from (SLOTS_POINTER):
                          {"active": "a"|"b"|null (built-in code), "prev": ...,
                           "trial": boots counted while on trial, or null, "version": v}

Phases (fw.json "ph"): WAIT (until retrieveDate, then download), DL (downloaded: verify,
wait for no transaction, install), INST (unpacking), TRIAL (switched: the new code runs
on trial until BootNotification Accepted, at most TRIAL_S seconds, else rolled back),
FAIL (rolled back: InstallationFailed once registered).  firmware/main.py rolls back by
itself after TRIAL_BOOTS boots that never got that far (code that raises at import).
One asyncio task runs the job while there is one; none when idle.
"""
import os
import json
import asyncio
from time import ticks_ms, ticks_diff
from micropython import const
from ocpp16.rpc import CallError, field, only
from ocpp16 import store, messages, transfer, states
from ocpp16.clock import parse_iso
from ocpp16.states import UNAVAILABLE, AVAILABLE, PREPARING

TRIAL_S = const(300)        # a new slot must be registered within this (then rollback)
RETRIES = const(0)          # retries when the request gives none
INTERVAL = const(60)        # s between attempts when the request gives none
_MAX_RETRIES = const(10)
_STOP_WAIT_MS = const(30000)  # after the last transaction: let its Stop go out first

WAIT = "wait"
DL = "dl"
INST = "inst"
TRIAL = "trial"
FAIL = "fail"


def slots(state):
    return state.rstrip("/") + "/app"


def pointer(state):
    """The boot pointer as a dict (missing or unreadable: the built-in code)."""
    raw = store.read(slots(state) + "/boot.json")
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _opt(p, name, typ):
    return None if p.get(name) is None else field(p, name, typ)    # null: absent


def update_firmware(cp, p):
    only(p, ("location", "retries", "retrieveDate", "retryInterval"))
    loc = field(p, "location", str)
    when = field(p, "retrieveDate", str)
    retries = _opt(p, "retries", int)
    interval = _opt(p, "retryInterval", int)
    for v, name in ((retries, "retries"), (interval, "retryInterval")):
        if v is not None and v < 0:
            raise CallError("PropertyConstraintViolation", name + " is negative")
    try:
        at = parse_iso(when)
    except ValueError:
        raise CallError("TypeConstraintViolation", "retrieveDate is not a date-time")
    try:
        transfer.parse(loc)
    except ValueError as e:
        raise CallError("PropertyConstraintViolation", "location: %s" % e)
    cp.part("firmware").start(
        {"ph": WAIT, "url": loc, "at": at,
         "tries": 1 + (RETRIES if retries is None else min(retries, _MAX_RETRIES)),
         "iv": INTERVAL if interval is None else interval})
    return {}


class Part:
    def __init__(self, cp):
        self.cp = cp
        self.status = None      # the last FirmwareStatus said while a job runs
        self.task = None
        self._held = None       # cp.inoperative before the install blocked the connectors

    def firmware_status(self):
        """For TriggerMessage: the last status while a job runs, else None (Idle)."""
        return self.status if self.task is not None else None

    def start(self, job):
        if self.task is not None:
            self.cp.log("firmware: an update is in progress; UpdateFirmware ignored")
            return
        store.makedirs(slots(self.cp.state))
        store.remove(slots(self.cp.state) + "/new.bin")     # a new location: a new file
        self._save(job)
        self.resume()

    def resume(self):
        """Run the job kept in fw.json (chargepoint.run at boot, or start())."""
        if self.task is None:
            self.task = asyncio.create_task(self._job())

    # -- helpers --------------------------------------------------------------------------
    def _save(self, job):
        store.atomic_write(self.cp.state + "/fw.json", json.dumps(job))

    def _load(self):
        try:
            return json.loads(store.read(self.cp.state + "/fw.json"))
        except (TypeError, ValueError):
            return None

    def _say(self, status):
        self.status = status
        self.cp.log("firmware: %s" % status)
        self.cp.request(messages.FIRMWARE_STATUS, messages.status_only, status)

    async def _registered(self, limit_ms=None):
        t0 = ticks_ms()
        while not self.cp.registered:
            if limit_ms is not None and ticks_diff(ticks_ms(), t0) >= limit_ms:
                return False
            await asyncio.sleep_ms(200)
        return True

    async def _flush(self):
        # The statuses queued (not journaled) go out before a reboot, when they can.
        t0 = ticks_ms()
        while self.cp._requests and ticks_diff(ticks_ms(), t0) < 5000:
            await asyncio.sleep_ms(100)
        await asyncio.sleep_ms(300)

    # -- the job --------------------------------------------------------------------------
    async def _job(self):
        # Every failure is caught here: an exception out of a task is fatal.
        cp = self.cp
        try:
            job = self._load()
            if job is not None:
                await self._run(job)
        except Exception as e:
            cp.log("firmware: update failed: %r" % e)
            self._unblock()
            self._say("InstallationFailed")
            self._done()
        finally:
            self.task = None

    def _done(self):
        store.remove(self.cp.state + "/fw.json")
        store.remove(slots(self.cp.state) + "/new.bin")

    async def _run(self, job):
        cp = self.cp
        ph = job["ph"]
        ptr = pointer(cp.state)
        if ph == INST and ptr.get("active") == job.get("slot") and ptr.get("trial") is not None:
            ph = TRIAL              # cut after the switch, before fw.json said so
        if job.get("was"):          # a full image (fwimage.py): the partition tells
            from ocpp16 import fwimage
            run = fwimage.running(self.cp.board.Partition)
            if ph == INST and run != job["was"]:
                ph, job["image"] = TRIAL, run   # cut after set_boot, before fw.json said so
            if ph == TRIAL:
                if run == job["image"]:
                    return await self._trial(job, None)
                ph = FAIL           # the bootloader rolled back
        elif ph == TRIAL:
            if ptr.get("active") != job.get("slot"):
                ph = FAIL           # firmware/main.py rolled back (boots on trial)
            else:
                return await self._trial(job, ptr)
        if ph == FAIL:
            await self._registered()
            cp.log("firmware: version %s did not come up; rolled back to %s" % (
                job.get("ver"), ptr.get("version") or job.get("was") or "the built-in code"))
            self._say("InstallationFailed")
            return self._done()
        path = slots(cp.state) + "/new.bin"
        if ph == WAIT or not store.exists(path):
            if not await self._download(job, path):
                return self._done()
        info = await self._verify(path)
        if info is None:
            return self._done()
        await self._idle()
        self._say("Installing")
        from ocpp16 import fwimage
        if fwimage.is_image(path, info):
            return await self._image(job, path, info)
        cur = ptr.get("active")
        slot = "b" if cur == "a" else "a"
        job["ph"] = INST
        job["slot"] = slot
        job["ver"] = info["version"]
        self._save(job)
        from ocpp16 import bundle
        try:
            await bundle.unpack(path, slots(cp.state) + "/" + slot, info)
        except bundle.BundleError as e:
            cp.log("firmware: install failed: %s" % e)
            self._unblock()
            self._say("InstallationFailed")
            return self._done()
        # The switch: one atomic rename of the pointer; then the job says so.
        store.atomic_write(slots(cp.state) + "/boot.json", json.dumps(
            {"active": slot, "prev": cur, "trial": 0, "version": info["version"],
             "was": ptr.get("version")}))
        job["ph"] = TRIAL
        self._save(job)
        store.remove(path)
        cp.log("firmware: version %s installed in slot %s; restarting into it"
               % (info["version"], slot))
        await self._flush()
        cp.reboot()

    async def _image(self, job, path, info):
        from ocpp16 import fwimage, bundle
        cp = self.cp
        job["ph"] = INST
        job["ver"] = info["version"]
        P = getattr(cp.board, "Partition", None)
        try:
            if P is None:
                raise bundle.BundleError(bundle.WRITE_FAILED, "a full image, and this board "
                                         "has no OTA partitions (board.Partition)")
            job["was"] = fwimage.running(P)
            self._save(job)
            job["image"] = await fwimage.install(P, path, info)
        except bundle.BundleError as e:
            cp.log("firmware: install failed: %s" % e)
            self._unblock()
            self._say("InstallationFailed")
            return self._done()
        job["ph"] = TRIAL
        self._save(job)
        store.remove(path)
        cp.log("firmware: image %s written to %s; restarting into it"
               % (info["version"], job["image"]))
        await self._flush()
        cp.reboot()

    async def _download(self, job, path):
        cp = self.cp
        await self._registered()            # the clock, for retrieveDate
        while cp.clock.valid and cp.clock.now() < job["at"]:
            await asyncio.sleep_ms(1000)
        ok = False
        self._say("Downloading")
        for i in range(job["tries"]):
            if i:
                await asyncio.sleep_ms(job["iv"] * 1000)
            try:
                url = job["url"]
                ssl = await transfer.tls_for(cp) if url.startswith("https:") else None
                try:
                    off = os.stat(path)[6]
                except OSError:
                    off = 0
                n = await transfer.get(url, path, off, ssl=ssl,
                                       timeout_ms=cp.cfg.get("MessageTimeout") * 1000 + 120000)
                cp.log("firmware: downloaded %d bytes from %s" % (n, url))
                ok = True
                break
            except Exception as e:
                cp.log("firmware: download, attempt %d of %d failed: %s"
                       % (i + 1, job["tries"], " ".join(str(e).split()) or repr(e)))
        if not ok:
            self._say("DownloadFailed")
            return False
        job["ph"] = DL
        self._save(job)
        self._say("Downloaded")
        return True

    async def _verify(self, path):
        from ocpp16 import bundle
        cp = self.cp
        try:
            return await bundle.verify(path, bundle.key_path(cp.state),
                                       board=getattr(cp.board, "name", None),
                                       running=states.VERSION)
        except bundle.BundleError as e:
            cp.log("firmware: bundle refused: %s" % e)
            self._say("InstallationFailed")
            return None

    async def _idle(self):
        """Wait until no transaction runs, then block new ones (connectors Unavailable,
        in RAM only: the next boot reads availability from flash again)."""
        cp = self.cp
        waited = False
        while any(t is not None for t in cp.tx.active):
            if not waited:
                cp.log("firmware: waiting for the transactions to end before installing")
                waited = True
            await asyncio.sleep_ms(500)
        # Nothing awaits between the check above and the block below: no start slips in.
        self._held = cp.inoperative
        cp.inoperative = [True] * (cp.connectors + 1)
        for i in range(cp.connectors + 1):
            cp.set_status(i, UNAVAILABLE)
        t0 = ticks_ms()
        while len(cp.journal) and cp.rpc.online and ticks_diff(ticks_ms(), t0) < _STOP_WAIT_MS:
            await asyncio.sleep_ms(200)     # the Stop is delivered before the restart

    def _unblock(self):
        cp = self.cp
        if self._held is None:
            return
        cp.inoperative = self._held
        self._held = None
        for i in range(cp.connectors + 1):
            if not cp.unavailable(i):
                cp.set_status(i, PREPARING if i and cp.sessions.plugged[i] else AVAILABLE)

    async def _trial(self, job, ptr):
        cp = self.cp
        limit = TRIAL_S
        env = getattr(os, "getenv", None)
        if env and env("MPOCPP_TRIAL_S"):
            limit = int(env("MPOCPP_TRIAL_S"))      # simulator tests: a short trial
        if await self._registered(limit * 1000):
            if ptr is None:
                from ocpp16 import fwimage
                # Only now: until here the bootloader rolls back at the next reset.
                fwimage.confirm(cp.board.Partition)
            else:
                ptr["trial"] = None
                store.atomic_write(slots(cp.state) + "/boot.json", json.dumps(ptr))
            cp.log("firmware: version %s accepted" % job.get("ver"))
            self._say("Installed")
            self._done()
            return
        # Never registered: back to the previous slot, and say so from there.
        cp.log("firmware: version %s not registered within %d s; rolling back"
               % (job.get("ver"), limit))
        if ptr is None:
            from ocpp16 import fwimage
            fwimage.back(cp.board.Partition, job["was"])
        else:
            store.atomic_write(slots(cp.state) + "/boot.json", json.dumps(
                {"active": ptr.get("prev"), "prev": None, "trial": None,
                 "version": ptr.get("was")}))
        job["ph"] = FAIL
        self._save(job)
        cp.reboot()
