"""The charge point: one asyncio loop with a few long-lived tasks.

- link and sender (link.py): the websocket and its receiver; the one task that sends
  CALLs (Boot, Status, the application's requests, the journal, Heartbeat);
- ticker (here): response timeouts, session timers, meter sampling, scheduled resets.

Where things live: messages.py builds Boot/Status/Heartbeat, transactions.py builds
Start/Stop/MeterValues, journal.py stores them, delivery.py sends and retries them,
sessions.py applies the authorisation and session rules, connectors.py the connector
states, faults and availability, handlers.py answers the central system (the other
profiles: _PROFILES below), states.py holds the shared constants.  The board (boards/<name>/board.py) hands
in the hardware.
"""
import json
import asyncio
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const
from ocpp16 import rpc, store, journal, link
from ocpp16.clock import Clock
from ocpp16.connectors import Connectors
from ocpp16.backoff import Backoff

# The shared constants live in states.py (so sessions, handlers and the profiles need not
# import this module for them); they stay reachable here for the application.
from ocpp16.states import (VERSION, AVAILABLE, PREPARING, CHARGING,  # noqa: F401
                           SUSPENDED_EVSE, SUSPENDED_EV, FINISHING, RESERVED, UNAVAILABLE,
                           FAULTED, QUEUED, BUSY, NO_TRANSACTION, BAD_CONNECTOR,
                           NOT_AVAILABLE, OFFLINE, STORAGE_FULL, ERROR_CODES, LINK_DOWN,
                           LINK_CONNECTING, LINK_UP)

_TICK_MS = const(200)
_SOFT_RESET_WAIT_MS = const(10000)  # a soft reset waits this long for the Stops to go out
REBOOT = const(75)                # what run() returns when the charger must restart


def _log(msg):
    print(msg)


_CORE = (("ChangeAvailability", "change_availability"),
         ("ChangeConfiguration", "change_configuration"), ("ClearCache", "clear_cache"),
         ("DataTransfer", "data_transfer"), ("GetConfiguration", "get_configuration"),
         ("RemoteStartTransaction", "remote_start"), ("RemoteStopTransaction", "remote_stop"),
         ("Reset", "reset"), ("UnlockConnector", "unlock"))

# The other profiles: each is a module of its own (its handlers and its state), imported
# when its first operation arrives, so a charger that never sees one pays no RAM for it.
# action -> (module, handler); the module's state is a component: part(name).
_PROFILES = (("TriggerMessage", "ocpp16.trigger", "trigger_message"),
             ("SendLocalList", "ocpp16.locallist", "send_local_list"),
             ("GetLocalListVersion", "ocpp16.locallist", "get_local_list_version"),
             ("ReserveNow", "ocpp16.reservations", "reserve_now"),
             ("CancelReservation", "ocpp16.reservations", "cancel_reservation"),
             ("GetDiagnostics", "ocpp16.diagnostics", "get_diagnostics"),
             ("UpdateFirmware", "ocpp16.firmware", "update_firmware"),
             ("SetChargingProfile", "ocpp16.chargingprofile", "set_charging_profile"),
             ("ClearChargingProfile", "ocpp16.chargingprofile", "clear_charging_profile"),
             ("GetCompositeSchedule", "ocpp16.chargingprofile", "get_composite_schedule"))


class ChargePoint(Connectors):
    """An OCPP 1.6J charge point bound to a board, a configuration and a websocket.

    Connector states, board faults and availability are in connectors.py (the base
    class): the same object, a module of its own."""

    PROFILES = _PROFILES      # read by rpc for an action not in its table
    _parts = None             # {name: component} once a profile was used (part())

    def __init__(self, board, cfg, ws, state, log=_log, ssl=None):
        from ocpp16.timebase import TimeBase
        from ocpp16.meter import Meter
        from ocpp16.authcache import AuthCache
        from ocpp16.transactions import Transactions
        from ocpp16.sessions import Sessions
        from ocpp16.delivery import Delivery
        self.board = board
        self.cfg = cfg
        self.ws = ws
        self.state = state
        self.log = log
        self.ssl = ssl
        self.vendor_id = "mpocpp"
        self.data_transfer_handler = None   # fn(payload) -> response dict, for vendor messages
        self.on_transaction_result = None   # fn(kind, connector, outcome, payload)
        self.on_storage = None              # fn(event, detail): flash short, see storage()
        self.clock = Clock(board.seconds)
        self.timebase = TimeBase(state, self.clock, board.seconds, log)
        # Core operations: handlers.py is imported at the first CALL from the central
        # system (rpc resolves a ("module", "function") entry on first use).
        # The profiles' actions are not in this table: rpc finds them in PROFILES.
        self.rpc = rpc.Rpc(ws, {a: ("ocpp16.handlers", f) for a, f in _CORE}, log=log, ctx=self,
                           timeout_ms=cfg.get("MessageTimeout") * 1000)
        n = cfg.get("NumberOfConnectors")
        self.connectors = n
        # Per connector, index 0 = the charge point itself.
        self.status = [AVAILABLE] * (n + 1)
        self.error_code = [b"NoError"] * (n + 1)
        self.status_info = [None] * (n + 1)
        self.status_time = [0] * (n + 1)
        self._changed_ms = [0] * (n + 1)      # ticks_ms of the last change (MinimumStatusDuration)
        self.reported = [-1] * (n + 1)        # last status the central system accepted
        self._reported_error = [b"NoError"] * (n + 1)
        self.faults = [None] * (n + 1)        # board fault per connector: (errorCode, info)
        self._held = [AVAILABLE] * (n + 1)    # state set while faulted (see clear_fault)
        raw = store.read(state + "/availability.json")
        self.inoperative = json.loads(raw) if raw else [False] * (n + 1)
        if len(self.inoperative) != n + 1:
            self.inoperative = [False] * (n + 1)
        self._avail_pending = [None] * (n + 1)
        self.registered = False               # BootNotification Accepted since power-on
        self.link_state = LINK_CONNECTING
        self.boot_status = None
        self._boot_at = ticks_ms()
        self._hb_at = ticks_ms()
        self._wake = asyncio.ThreadSafeFlag()
        self._backoff = Backoff(cfg.get("ReconnectMinSeconds") * 1000,
                                cfg.get("ReconnectMaxSeconds") * 1000)
        self._requests = []                   # application CALLs: [action, encode, arg, done]
        self._tx_callbacks = {}               # (kind, local tx) -> fn(outcome, payload)
        self._reset = None                    # (type, deadline) of a scheduled reset
        self._reconnect = False
        self._done = asyncio.Event()
        self._fatal = None                    # what fatal() was given
        self._ticks = 0
        from ocpp16.health import Health
        self.health = Health()                # tasks that check in, for the watchdog
        self.rpc.health = self.health
        self.exit_code = 0
        self.connects = 0
        self.meter = Meter(board, state, log)
        # A board may simulate a flash size (boards/unix_sim --flash-kb): its free bytes
        # replace statvfs.  The ESP32 boards have none: statvfs of the littlefs.
        self.journal = journal.Journal(state + "/journal", log=log,
                                       scratch=getattr(ws, "tx", None),  # idle at boot
                                       free=getattr(board, "flash_free", None),
                                       on_space=self._storage_event)
        self.cache = AuthCache(state + "/auth.bin", log)
        from ocpp16.wallclock import WallClock
        self.wallclock = WallClock(board, state, cfg, log)
        self.tx = Transactions(self)
        self.sessions = Sessions(self)
        self.delivery = Delivery(self)
        self.tx.recover()
        for i in range(n + 1):
            if self.unavailable(i):
                self.status[i] = UNAVAILABLE
            elif i and self.sessions.plugged[i]:
                # A transaction closed at boot (power cut, hard reset) with the cable
                # still in: Finishing, as after any stop (TC_015).
                self.status[i] = FINISHING if i in self.tx.recovered else PREPARING
        cfg.on_change(self._config_changed)
        if store.exists(state + "/resv.json"):
            self.part("reservations").tick(True)   # kept on flash: Reserved again
        if store.exists(state + "/chargingprofiles.json"):
            self.part("smartcharging")              # profiles kept on flash act again

    # -- application API ------------------------------------------------------------------
    def plugged(self, n, yes):
        """Board event: the cable on connector n was plugged in (True) or removed."""
        self.sessions.plug(n, yes)

    def card(self, n, tag):
        """Board event: an RFID card was presented at connector n."""
        self.sessions.card(n, tag)

    def start_transaction(self, n, id_tag, on_result=None):
        """Start a transaction now for an already authorised `id_tag` on connector n.

        Returns QUEUED (StartTransaction is on flash and will be delivered) or a refusal
        (BAD_CONNECTOR, BUSY, NOT_AVAILABLE (also while faulted), STORAGE_FULL).
        on_result(outcome, payload) is called when the central system answers (outcome
        rpc.RESULT with the StartTransaction.conf payload, or rpc.CALLERROR when it was
        given up).
        """
        if not 1 <= n <= self.connectors:
            return BAD_CONNECTOR
        if self.tx.active[n] is not None:
            return BUSY
        if self.unavailable(n) or self.faulted(n):
            return NOT_AVAILABLE
        rv = self.part("reservations", False)
        if rv and rv.admit(n, id_tag, None) is False:
            return NOT_AVAILABLE                # reserved for another tag
        self.sessions.start(n, id_tag)
        if self.tx.active[n] is None:
            # The board refused (e.g. the cable lock failed: now faulted), or the journal
            # could not take the StartTransaction.
            return NOT_AVAILABLE if self.faulted(n) else STORAGE_FULL
        if on_result:
            self._tx_callbacks[(journal.START, self.tx.active[n]["tx"])] = on_result
        return QUEUED

    def stop_transaction(self, n, reason="Local", id_tag=None, on_result=None, meter_stop=None):
        """Stop connector n's transaction with `reason` (one of the 11 OCPP reasons).

        id_tag: the tag that stopped it (default: the tag that started it); meter_stop: the
        application's own final reading in Wh (default: the connector's meter register).

        Returns QUEUED (StopTransaction is on flash) or NO_TRANSACTION / BAD_CONNECTOR.
        on_result(outcome, payload) receives StopTransaction.conf (idTagInfo) later.
        """
        from ocpp16.transactions import REASONS
        if not 1 <= n <= self.connectors:
            return BAD_CONNECTOR
        tx = self.tx.active[n]
        if tx is None:
            return NO_TRANSACTION
        if reason not in REASONS:
            raise ValueError("reason")
        local = tx["tx"]
        self.sessions.stop(n, reason, id_tag, meter_stop)
        if on_result:
            self._tx_callbacks[(journal.STOP, local)] = on_result
        return QUEUED

    def storage(self):
        """The journal's use of flash, for the application: a dict with "queued" (transaction
        messages on flash, not yet delivered), "dropped_meter" (MeterValues dropped for
        lack of space since boot, oldest first), "refused" (Start/Stop/MeterValues not
        queued for lack of space since boot) and "free" (free bytes of the filesystem,
        None if unknown).  "free" asks the filesystem (statvfs walks littlefs): not
        for every tick."""
        j = self.journal
        try:
            free = j._free()
        except OSError:
            free = None
        return {"queued": len(j), "dropped_meter": j.dropped_meter, "refused": j.refused,
                "free": free}

    def _storage_event(self, event, kind):
        # From the journal (inside an append): "meter_dropped" with a record count, or
        # "full" with the kind refused, told to the application as the action's name.
        fn = self.on_storage
        if fn:
            if event == "full":
                kind = ("StartTransaction", "StopTransaction", "MeterValues")[kind - 1]
            fn(event, kind)

    def send(self, action, payload, on_result=None):
        """Send any other CP-initiated message (Authorize, DataTransfer, ...) with a dict.

        Returns QUEUED, then on_result(outcome, payload) follows; or OFFLINE at once when
        there is no link.  Not journaled: messages that are not transaction-related are
        not kept across power loss or link loss (OCPP 1.6 §3.7); a queued one whose link
        drops is answered with rpc.OFFLINE.
        """
        if not (self.rpc.online and self.registered):
            return OFFLINE
        self.request(action.encode() if isinstance(action, str) else action,
                     _encode_value, payload, on_result)
        return QUEUED

    def request(self, action, encode, arg, done=None):
        self._requests.append([action, encode, arg, done])
        self._wake.set()

    def _fail_requests(self):
        # Not transaction-related: the caller decides (e.g. the offline authorisation
        # rules) instead of waiting for a link that may not come back soon.
        reqs = self._requests
        self._requests = []
        for r in reqs:
            if r[3]:
                r[3](rpc.OFFLINE, None)

    def handle(self, action, fn):
        """Register a handler fn(cp, payload) -> response dict for a central-system CALL."""
        self.rpc.handlers[action] = fn

    def part(self, name, make=True):
        """The component of a profile (e.g. "locallist", "reservations"): module
        ocpp16.<name> is imported and its state made (`Part(cp)`) at the first use.  With
        make=False: None while it was never made (a hook that need not load it)."""
        parts = self._parts
        p = parts.get(name) if parts else None
        if p is None and make:
            if parts is None:
                parts = self._parts = {}
            mod = __import__("ocpp16." + name, None, None, ("Part",))
            p = parts[name] = mod.Part(self)
        return p

    def reservations(self):
        """The reservations in force: a list of dicts (reservationId, connectorId,
        expiryDate, idTag, parentIdTag); [] without loading the profile when none was made."""
        rv = self.part("reservations", False)
        return rv.list() if rv else []

    def set_local_limit(self, n, a10=None):
        """A local maximum for connector n (0: the whole charger, shared by the connectors
        that draw), in tenths of A; None clears it.  Combined with the OCPP limit and
        the board's: the lower wins (offer.py).  Below 6 A the session pauses."""
        self.part("offer").set_local(n, a10)

    def limits_changed(self):
        """A limit changed (profiles, a board maximum): the offered current is computed
        again at the next tick."""
        off = self.part("offer", False)
        if off is None and self.tx.active.count(None) < self.connectors + 1:
            off = self.part("offer")    # a session runs: it must follow the new limit
        if off:                 # else computed when the next session makes it
            off.changed()

    # -- queries used by handlers and sessions -------------------------------------------
    def connector_of_txid(self, txid):
        for n in range(1, self.connectors + 1):
            tx = self.tx.active[n]
            if tx is not None:
                known = self.journal.txid(tx["tx"])
                if known is not None and known == txid:
                    return n
        return None

    def transactions_running(self, local):
        for tx in self.tx.active:
            if tx is not None and tx["tx"] == local:
                return True
        return False

    def transaction_answered(self, kind, local, outcome, payload, tag=None):
        """From delivery: the central system answered (or gave up on) a journal record.
        `tag`: the idTag of the message answered (the idTagInfo is about it)."""
        info = payload.get("idTagInfo") if payload else None
        n = None
        for i in range(1, self.connectors + 1):
            tx = self.tx.active[i]
            if tx is not None and tx["tx"] == local:
                n = i
        if isinstance(info, dict):
            if tag and not self.sessions.listed(tag, info) \
                    and self.cfg.get("AuthorizationCacheEnabled"):
                self.cache.update(tag, info)
            if kind == journal.START and n:
                parent = info.get("parentIdTag")
                if isinstance(parent, str):
                    # The group of the running transaction: a card of the same group may
                    # stop it (also when the start was not authorised first, TC_069).
                    self.tx.active[n]["parent"] = parent
                if info.get("status") != "Accepted":
                    self.log("session: StartTransaction answered %s" % info.get("status"))
                    self.sessions.invalidated(n, info.get("status"))
        cb = self._tx_callbacks.pop((kind, local), None)
        if cb:
            cb(outcome, payload)
        if self.on_transaction_result:
            self.on_transaction_result(kind, n, outcome, payload)

    # -- central-system operations -------------------------------------------------------
    def remote_start(self, n, tag):
        def done(status, parent):
            if status == "Accepted":
                if self.sessions.plugged[n]:
                    self.sessions.start(n, tag, parent)
                else:
                    self.sessions._wait_for_plug(n, tag, parent)
            else:
                self.log("session: remote start for %s refused (%s)" % (tag, status))
        if self.cfg.get("AuthorizeRemoteTxRequests"):
            self.sessions.authorize(tag, done)
        else:
            done("Accepted", None)

    def reboot(self):
        """Restart the charger on purpose (e.g. after a firmware update): running
        transactions are stopped with reason Reboot first, like a soft reset."""
        self._reset = ("Reboot", ticks_ms())

    def schedule_reset(self, typ):
        self._reset = (typ, ticks_add(ticks_ms(), 500))

    def reconnect_soon(self):
        self._reconnect = True

    # -- tasks ----------------------------------------------------------------------------
    async def run(self):
        """Run until quit() or a reset; returns 0, or REBOOT when the charger must restart."""
        self.log("charge point %s starting, %d connector(s), firmware %s, boot #%d"
                 % (self.cfg.get("ChargePointId"), self.connectors, VERSION, self.timebase.boot))
        # A task that dies with an exception (the board's too) is fatal: relays open,
        # the crash is recorded and the charger restarts (firmware/crash.py).
        asyncio.get_event_loop().set_exception_handler(self._task_died)
        self.health.watch("ticker", _TICK_MS * 10)
        tasks = [asyncio.create_task(link.keep(self, "ticker", ChargePoint._ticker)),
                 asyncio.create_task(link.keep(self, "sender", link.sender)),
                 asyncio.create_task(link.keep(self, "link", link.link))]
        if store.exists(self.state + "/fw.json"):   # an update in progress: it goes on
            self.part("firmware").resume()
        await self._done.wait()
        asyncio.get_event_loop().set_exception_handler(None)
        import gc
        gc.collect()
        self.log("heap: %d bytes in use, %d free; journal %d records, %d dropped"
                 % (gc.mem_alloc(), gc.mem_free(), len(self.journal), self.delivery.dropped))
        for t in tasks:
            t.cancel()
        if self._fatal is not None:
            for n in range(1, self.connectors + 1):
                self.board.relay(n, False)
            self.rpc.disconnected()
            try:
                await self.ws.close(1011)       # the central system learns it went down
            except Exception:
                pass
            raise self._fatal
        await self.ws.close(1000)
        self.rpc.disconnected()
        return self.exit_code

    def quit(self, code=0):
        self.exit_code = code
        self._done.set()

    def _task_died(self, loop, context):
        e = context.get("exception")
        self.log("task died: %s" % context.get("message", ""))
        # asyncio keeps this dict: let go of the task and its traceback (they hold the
        # whole charge point, which the next boot must not keep on the heap).
        context["exception"] = context["future"] = None
        self.fatal(e if isinstance(e, BaseException) else RuntimeError("a task died"))

    def fatal(self, e):
        """A failure the charger must not run on with: run() opens every relay and raises
        `e`; firmware/main.py records it and restarts (see its crash handling)."""
        if self._fatal is None:
            self._fatal = e
        self._done.set()

    def _sender(self):
        return link.sender(self)         # the task (link.py); tests run it alone

    async def _ticker(self):
        while True:
            await asyncio.sleep_ms(_TICK_MS)
            self.rpc.tick()
            self.sessions.tick()
            self._apply_pending_availability()
            self.wallclock.tick()
            # Checked in after the work: a ticker that fails there on every round (and is
            # restarted by link.keep) stops feeding the watchdog.
            self.health.beat("ticker")
            if self._reconnect and self.rpc.online:
                self._reconnect = False
                self.log("link: reconnecting to apply new credentials")
                await self.ws.close(1000)
            if self._reset and ticks_diff(ticks_ms(), self._reset[1]) >= 0:
                await self._do_reset()
            if self.rpc.online and link.due(self) or not self._ticks % 10:
                self._wake.set()        # (every 2 s anyway: the sender checks in)
            if not self._ticks % 300:
                # A log kept on flash (diaglog.py) is written there at least every
                # minute: from here rather than from a task of its own.
                fl = getattr(self.log, "flush", None)
                if fl:
                    fl()
            self._ticks += 1

    async def _do_reset(self):
        typ = self._reset[0]
        reason = {"Soft": "SoftReset", "Hard": "HardReset"}.get(typ, typ)
        running = [n for n in range(1, self.connectors + 1) if self.tx.active[n] is not None]
        if typ != "Hard":
            for n in running:
                self.sessions.stop(n, reason)
            # Give the Stops a moment to be delivered; they are on flash either way.
            t0 = ticks_ms()
            while len(self.journal) and self.rpc.online and \
                    ticks_diff(ticks_ms(), t0) < _SOFT_RESET_WAIT_MS:
                await asyncio.sleep_ms(100)
        elif running:
            # Hard: restart at once; the next boot closes them with reason HardReset,
            # from the registers saved now.
            self.meter.save(self.tx._stamp())
            self.tx.note_reboot(reason)
        self._reset = None
        self.log("reset: %s reset, restarting" % typ)
        self.quit(REBOOT)

    def _config_changed(self, name, value):
        if name == "HeartbeatInterval" and self.registered:
            self._hb_at = ticks_add(ticks_ms(), value * 1000)
            self._wake.set()
        elif name == "MessageTimeout":
            self.rpc.timeout_ms = value * 1000
        elif name in ("ReconnectMinSeconds", "ReconnectMaxSeconds"):
            self._backoff = Backoff(self.cfg.get("ReconnectMinSeconds") * 1000,
                                    self.cfg.get("ReconnectMaxSeconds") * 1000)


def _encode_value(w, payload):
    w.value(payload)


class Answer:
    """An awaitable for the central system's answer, usable as an on_result callback.

        a = Answer()
        if cp.stop_transaction(1, "Local", on_result=a) == QUEUED:
            outcome, payload = await a.wait()   # rpc.RESULT and StopTransaction.conf
    """

    def __init__(self):
        self._ev = asyncio.Event()
        self.outcome = None
        self.payload = None

    def __call__(self, outcome, payload):
        self.outcome = outcome
        self.payload = payload
        self._ev.set()

    async def wait(self):
        await self._ev.wait()
        return self.outcome, self.payload
