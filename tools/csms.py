#!/usr/bin/env python3
"""Development OCPP 1.6J central system, built on the `ocpp` package.

Charge points connect to ws://HOST:PORT/<any path>/<chargePointId> with the
`ocpp1.6` subprotocol.  Every CP-initiated 1.6 message is answered, with the
package's JSON-schema validation left ON: a CP that sends a malformed payload
gets the CALLERROR a strict central system would send, and an `invalid` event.

Output
  stdout, first line:  LISTENING ws://HOST:PORT   (wss:// with --tls-cert)
  stderr:              a human-readable log: every frame in both directions
                       ("<-" = received from the CP, "->" = sent to the CP),
                       connects, disconnects, command replies.  Times are UTC,
                       like the timestamps inside the frames.
  stdout, with --json: one JSON object per line per event, each with "ev" and
                       "t" (unix time):
     connect    {cp, path, subprotocol, auth}
     disconnect {cp, code, reason}
     refused    {cp, path, status, reason}        handshake answered 401/404/503
     recv       {cp, frame} or {cp, raw}          every frame from the CP
     send       {cp, frame}                       every frame to the CP
     invalid    {cp, action, kind, error}         kind: call (CP CALL failed the
                schema or its action is unknown), result (CP's answer to our CALL
                failed the schema), frame (not an OCPP-J message)
     reply      {cmd, ok, line, ...}              answer to a stdin command

Commands on stdin, one per line; each non-empty line gets one `reply` event,
numbered from 1 in the order the lines were read ("call" replies arrive when the
CP has answered, so replies can come out of order; match them by "cmd"):
  call CPID ACTION [JSON]     send a CALL (camelCase payload, schema-checked);
                              reply: result {...} | callerror {...} | error
  send CPID TEXT              send TEXT verbatim as one frame (no checks, no wait)
  boot accepted|pending|rejected [INTERVAL]
  deny TAG | allow TAG | parent TAG [PARENT]   (no PARENT = remove the mapping)
  error ACTION|* CODE [COUNT] answer the next COUNT CP CALLs with CALLERROR CODE
  silent ACTION|* [COUNT]     leave the next COUNT CP CALLs unanswered
  delay ACTION|* SECONDS [COUNT]
                              answer the next COUNT CP CALLs SECONDS late (the
                              server reads nothing else meanwhile, as a slow one)
                              COUNT: default 1, -1 = always, 0 = clear the rule
  drop CPID [CODE|abort]      close that CP's websocket (default 1001) or abort TCP
  refuse N                    answer the next N handshakes with HTTP 503
  quit                        stop (exit 0); SIGTERM/SIGINT do the same, EOF does not
CPIDs in commands may be percent-encoded (e.g. RDAM%20123).
"""

import argparse
import asyncio
import base64
import binascii
import copy
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import websockets
from websockets.asyncio.server import serve
from websockets.frames import Close

from ocpp.exceptions import OCPPError, ProtocolError
from ocpp.messages import Call, CallError, CallResult, MessageType, unpack, validate_payload
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import (Action, AuthorizationStatus, DataTransferStatus, GenericStatus,
                            RegistrationStatus)

SUBPROTOCOL = "ocpp1.6"
VENDOR_ID = "mpocpp"          # DataTransfer vendorId this central system understands
MAX_UNIQUE_ID = 36            # [J] §4.1.4


CLOCK_OFFSET = 0.0            # --clock-offset: this central system's time runs ahead/behind


def utc_now():
    """currentTime as the schemas want it: RFC 3339, UTC, whole seconds."""
    t = datetime.now(timezone.utc) + timedelta(seconds=CLOCK_OFFSET)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def clock():
    t = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(t)) + ".%03d" % (int(t * 1000) % 1000)


def describe(err):
    """One line for an OCPPError: its code and the most useful detail."""
    details = err.details if isinstance(err.details, dict) else {}
    text = str(details.get("cause") or err.description)
    # jsonschema appends a multi-line schema dump to enum errors; the first line says it all.
    return "%s: %s" % (err.code, text.strip().splitlines()[0] if text.strip() else "")


class Log:
    """The human log on stderr, and (with --json) machine events on stdout."""

    def __init__(self, json_events):
        self.json_events = json_events

    def human(self, who, text):
        sys.stderr.write("%s %s %s\n" % (clock(), who, text))
        sys.stderr.flush()

    def event(self, ev, **fields):
        if not self.json_events:
            return
        fields = {"ev": ev, **fields, "t": round(time.time(), 3)}
        try:
            sys.stdout.write(json.dumps(fields, separators=(",", ":"), default=str) + "\n")
            sys.stdout.flush()
        except OSError:
            # The reader went away; keep serving and logging on stderr.
            self.json_events = False


class Policy:
    """How CP CALLs are answered; shared by all CPs and changed by commands."""

    def __init__(self, args):
        self.heartbeat = args.heartbeat
        self.boot_status = RegistrationStatus(args.boot.capitalize())
        self.boot_interval = args.heartbeat
        self.deny = set(args.deny or ())
        self.parents = {}
        self.txids = itertools.count(args.first_txid)
        self.rules = {}       # action or "*" -> [kind, code, remaining]; remaining -1 = forever

    def id_tag_info(self, tag):
        status = AuthorizationStatus.invalid if tag in self.deny else AuthorizationStatus.accepted
        return IdTagInfo(status=status, parent_id_tag=self.parents.get(tag))

    def set_rule(self, action, kind, code, count):
        if count == 0:
            self.rules.pop(action, None)
        else:
            self.rules[action] = [kind, code, count]

    def take_rule(self, action):
        """The error/silent rule for this CALL, if any, counting it down."""
        key = action if action in self.rules else "*"
        rule = self.rules.get(key)
        if rule is None:
            return None
        if rule[2] > 0:
            rule[2] -= 1
            if rule[2] == 0:
                del self.rules[key]
        return rule[0], rule[1]


class FrameTap:
    """Stands in for the websocket given to ChargePoint, so that every frame,
    including ones the package drops as unparsable, is logged exactly as sent."""

    def __init__(self, conn, cp_id, cs):
        self.conn, self.cp_id, self.cs = conn, cp_id, cs

    async def recv(self):
        data = await self.conn.recv()
        if isinstance(data, bytes):
            self.cs.invalid(self.cp_id, None, "frame", "binary frame; OCPP-J uses text frames")
            data = data.decode("utf-8", "replace")
        self.cs.frame(self.cp_id, "<-", data)
        return data

    async def send(self, text):
        # Logged before sending, so the log never shows an answer before its CALL.
        self.cs.frame(self.cp_id, "->", text)
        await self.conn.send(text)


class QuietOcppLog(logging.Filter):
    """The package logs every frame (we do that better) and a traceback for each
    CALLERROR it sends; keep only what points at a real problem: unexpected
    exceptions in our handlers and responses with unknown ids."""

    def filter(self, record):
        if record.exc_info and isinstance(record.exc_info[1], OCPPError):
            return False
        return record.levelno >= logging.ERROR


class CentralSystemCP(ChargePoint):
    """One connected charge point."""

    def __init__(self, cp_id, conn, cs):
        super().__init__(cp_id, FrameTap(conn, cp_id, cs), response_timeout=cs.call_timeout,
                         logger=logging.getLogger("ocpp"))
        self.conn = conn
        self.cs = cs
        self.policy = cs.policy
        self.pending = set()      # tasks running `call` commands, failed on disconnect

    # --- incoming frames -------------------------------------------------

    async def route_message(self, raw_msg):
        try:
            msg = unpack(raw_msg)
        except OCPPError as e:
            # The package drops such frames without an answer; make them visible.
            self.cs.invalid(self.id, None, "frame", describe(e))
            return
        if msg.message_type_id == MessageType.Call and (
                not isinstance(msg.unique_id, str) or len(msg.unique_id) > MAX_UNIQUE_ID):
            self.cs.invalid(self.id, getattr(msg, "action", None), "frame",
                            "uniqueId must be a string of at most %d characters" % MAX_UNIQUE_ID)
        try:
            await super().route_message(raw_msg)
        except websockets.ConnectionClosed:
            raise
        except Exception:
            # A bug here must not cost the CP its connection.
            self.cs.log.human(self.id, "error routing a frame:\n" + traceback.format_exc())

    async def _handle_call(self, msg):
        problem = await self._check_call(msg)
        rule = self.policy.take_rule(msg.action) if isinstance(msg.action, str) else None
        if rule and rule[0] == "silent":
            self.cs.log.human(self.id, "(silent: %s %s left unanswered)"
                              % (msg.action, msg.unique_id))
            return None
        if rule and rule[0] == "error":
            await self._send(CallError(msg.unique_id, rule[1], "Injected by csms", {}).to_json())
            return None
        if rule and rule[0] == "delay":
            self.cs.log.human(self.id, "(delay: %s %s answered in %ss)"
                              % (msg.action, msg.unique_id, rule[1]))
            await asyncio.sleep(rule[1])
        if problem is not None:
            raise problem
        return await super()._handle_call(msg)

    async def _check_call(self, msg):
        """Validate a CP CALL ourselves, to report it; the package then answers
        it (and validates it again) as usual.  Returns the error to answer with."""
        if not isinstance(msg.action, str):
            self.cs.invalid(self.id, None, "call", "action is not a string")
            return ProtocolError(details={"cause": "action is not a string"})
        if msg.action not in self.route_map:
            self.cs.invalid(self.id, msg.action, "call", "unknown action for OCPP 1.6 CP->CS")
            return None       # the package answers NotImplemented / NotSupported
        try:
            await validate_payload(Call(msg.unique_id, msg.action, copy.deepcopy(msg.payload)),
                                   self._ocpp_version)
        except OCPPError as e:
            self.cs.invalid(self.id, msg.action, "call", describe(e))
            return e
        return None

    # --- CS-initiated CALLs ----------------------------------------------

    async def call_raw(self, action, payload):
        """Send a CALL given as action + camelCase dict; returns reply fields.
        (`ChargePoint.call` wants dataclasses; tests speak JSON.)"""
        msg = Call(str(uuid.uuid4()), action, payload)
        try:
            await validate_payload(msg, self._ocpp_version)
        except OCPPError as e:
            return {"ok": False, "error": "not sent, payload fails the schema: " + describe(e)}
        async with self._call_lock:
            await self._send(msg.to_json())
            try:
                resp = await self._get_specific_response(msg.unique_id, self._response_timeout)
            except asyncio.TimeoutError:
                return {"ok": False, "error": "no answer within %ss" % self._response_timeout}
        if resp.message_type_id == MessageType.CallError:
            return {"ok": False,
                    "error": "CALLERROR %s: %s" % (resp.error_code, resp.error_description),
                    "callerror": {"code": resp.error_code, "description": resp.error_description,
                                  "details": resp.error_details}}
        try:
            await validate_payload(CallResult(resp.unique_id, copy.deepcopy(resp.payload), action),
                                   self._ocpp_version)
        except OCPPError as e:
            self.cs.invalid(self.id, action, "result", describe(e))
            return {"ok": False, "error": "invalid result: " + describe(e), "result": resp.payload}
        return {"ok": True, "result": resp.payload}

    # --- handlers for CP-initiated messages ------------------------------
    # Names must not clash with ChargePoint methods (e.g. `start`).

    @on(Action.boot_notification)
    def on_boot_notification(self, **kw):
        return call_result.BootNotification(current_time=utc_now(),
                                            interval=self.policy.boot_interval,
                                            status=self.policy.boot_status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw):
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    def on_status_notification(self, **kw):
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, **kw):
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **kw):
        return call_result.Authorize(id_tag_info=self.policy.id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, id_tag, **kw):
        return call_result.StartTransaction(transaction_id=next(self.policy.txids),
                                            id_tag_info=self.policy.id_tag_info(id_tag))

    @on(Action.stop_transaction)
    def on_stop_transaction(self, id_tag=None, **kw):
        # transactionId -1 (errata 3.18) is answered like any other id.
        info = self.policy.id_tag_info(id_tag) if id_tag is not None else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **kw):
        ok = vendor_id == VENDOR_ID
        return call_result.DataTransfer(
            status=DataTransferStatus.accepted if ok else DataTransferStatus.unknown_vendor_id)

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status(self, **kw):
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, **kw):
        return call_result.FirmwareStatusNotification()

    # Security extension (the package's 1.6 enum has these actions).
    @on(Action.security_event_notification)
    def on_security_event(self, **kw):
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **kw):
        return call_result.SignCertificate(status=GenericStatus.accepted)

    @on(Action.log_status_notification)
    def on_log_status(self, **kw):
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status(self, **kw):
        return call_result.SignedFirmwareStatusNotification()


class CommandError(Exception):
    pass


def parse_count(text, default=1):
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise CommandError("COUNT must be an integer, got %r" % text) from None


class CentralSystem:
    """Connections, the registry of connected CPs, and the stdin commands."""

    def __init__(self, args, log):
        self.log = log
        self.policy = Policy(args)
        self.call_timeout = args.call_timeout
        self.auth_password = password_bytes(args.auth_key) if args.auth_key is not None else None
        self.refuse = 0
        self.cps = {}                      # cpid -> CentralSystemCP (newest connection)
        self.ncmd = 0
        self.quit = asyncio.Event()

    # --- logging helpers -------------------------------------------------

    def frame(self, cp_id, arrow, text):
        self.log.human(cp_id, "%s %s" % (arrow, text))
        try:
            fields = {"frame": json.loads(text)}
        except (ValueError, RecursionError):     # a hostile frame, nested very deep
            fields = {"raw": text}
        self.log.event("recv" if arrow == "<-" else "send", cp=cp_id, **fields)

    def invalid(self, cp_id, action, kind, error):
        self.log.human(cp_id, "INVALID %s %s: %s" % (kind, action, error))
        self.log.event("invalid", cp=cp_id, action=action, kind=kind, error=error)

    # --- handshake -------------------------------------------------------

    def process_request(self, conn, request):
        path = request.path.split("?", 1)[0]
        cp_id = unquote(path.rsplit("/", 1)[-1])
        conn.cp_id, conn.cp_path, conn.auth_user = cp_id, path, None
        if not cp_id:
            return self.reject(conn, cp_id, path, 404, "no charge point id in the path")
        if self.refuse > 0:
            self.refuse -= 1
            return self.reject(conn, cp_id, path, 503, "refused (refuse command)")
        if self.auth_password is not None:
            problem = self.check_auth(cp_id, request.headers.get("Authorization"))
            if problem:
                response = self.reject(conn, cp_id, path, 401, problem)
                response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
                return response
            conn.auth_user = cp_id
        return None

    def check_auth(self, cp_id, header):
        """Security profile 1: Basic auth, username = CP id, password compared as bytes."""
        if not header or not header.startswith("Basic "):
            return "missing Basic Authorization header"
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
            user, sep, password = decoded.partition(b":")
        except (binascii.Error, ValueError):
            return "Authorization header is not valid base64"
        if not sep or user.decode("utf-8", "replace") != cp_id:
            return "username is not the charge point id"
        if password != self.auth_password:
            return "wrong password"
        return None

    def reject(self, conn, cp_id, path, status, reason):
        self.log.human(cp_id or "-", "refused %s: HTTP %d %s" % (path, status, reason))
        self.log.event("refused", cp=cp_id, path=path, status=status, reason=reason)
        return conn.respond(status, reason + "\n")

    # --- connection ------------------------------------------------------

    async def handle(self, conn):
        cp_id = conn.cp_id
        self.log.human(cp_id, "connected path=%s subprotocol=%s auth=%s"
                       % (conn.cp_path, conn.subprotocol, conn.auth_user))
        self.log.event("connect", cp=cp_id, path=conn.cp_path, subprotocol=conn.subprotocol,
                       auth=conn.auth_user)
        if conn.subprotocol != SUBPROTOCOL:
            # [J] §3.2: answer without the header, then close at once.
            self.log.human(cp_id, "did not offer %s; closing" % SUBPROTOCOL)
            await conn.close(1002, SUBPROTOCOL + " subprotocol required")
            self.disconnected(cp_id, conn)
            return
        cp = CentralSystemCP(cp_id, conn, self)
        self.cps[cp_id] = cp
        try:
            await cp.start()
        except websockets.ConnectionClosed:
            pass
        except Exception:
            self.log.human(cp_id, "connection handler failed:\n" + traceback.format_exc())
        finally:
            if self.cps.get(cp_id) is cp:
                del self.cps[cp_id]
            for task in list(cp.pending):
                task.cancel()
        self.disconnected(cp_id, conn)

    def disconnected(self, cp_id, conn):
        # No close frame either way (code null): the TCP connection just went away.
        frame = conn.protocol.close_rcvd or conn.protocol.close_sent
        code = frame.code if frame else None
        reason = frame.reason if frame else ""
        self.log.human(cp_id, ("disconnected code=%s %s" % (code, reason)).rstrip())
        self.log.event("disconnect", cp=cp_id, code=code, reason=reason)

    # --- commands --------------------------------------------------------

    def command(self, line):
        line = line.strip()
        if not line:
            return
        self.ncmd += 1
        n = self.ncmd
        verb, _, rest = line.partition(" ")
        handler = getattr(self, "cmd_" + verb.lower(), None)
        try:
            if handler is None:
                raise CommandError("unknown command %r" % verb)
            result = handler(n, line, rest.strip())
        except CommandError as e:
            result = {"ok": False, "error": str(e)}
        except Exception as e:       # never let a command take the server down
            result = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        if result is not None:       # None: the reply comes later (call)
            self.reply(n, line, **result)

    def reply(self, n, line, ok=True, **fields):
        text = json.dumps(fields, default=str) if fields else ""
        self.log.human("cmd", "%d %s %s: %s" % (n, "ok" if ok else "FAILED", line, text))
        self.log.event("reply", cmd=n, ok=ok, line=line, **fields)

    def connected(self, cp_text):
        cp = self.cps.get(unquote(cp_text))
        if cp is None:
            raise CommandError("%s is not connected" % cp_text)
        return cp

    def cmd_call(self, n, line, rest):
        parts = rest.split(None, 2)
        if len(parts) < 2:
            raise CommandError("usage: call CPID ACTION [JSON]")
        cp = self.connected(parts[0])
        action = parts[1]
        try:
            payload = json.loads(parts[2]) if len(parts) > 2 else {}
        except ValueError as e:
            raise CommandError("payload is not JSON: %s" % e) from None
        if not isinstance(payload, dict):
            raise CommandError("payload must be a JSON object")

        async def run():
            try:
                result = await cp.call_raw(action, payload)
            except asyncio.CancelledError:
                result = {"ok": False, "error": "%s disconnected before answering" % cp.id}
            except Exception as e:
                result = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            self.reply(n, line, **result)

        # A task, so the server keeps answering the CP while the CALL is out.
        task = asyncio.get_running_loop().create_task(run())
        cp.pending.add(task)
        task.add_done_callback(cp.pending.discard)
        return None

    def cmd_send(self, n, line, rest):
        cp_text, _, text = rest.partition(" ")
        if not text.strip():
            raise CommandError("usage: send CPID TEXT")
        cp = self.connected(cp_text)
        asyncio.get_running_loop().create_task(cp._send(text.strip()))
        return {}

    def cmd_boot(self, n, line, rest):
        parts = rest.split()
        if len(parts) not in (1, 2) or parts[0].lower() not in ("accepted", "pending", "rejected"):
            raise CommandError("usage: boot accepted|pending|rejected [INTERVAL]")
        interval = parse_count(parts[1] if len(parts) > 1 else None, self.policy.heartbeat)
        if interval < 0:
            raise CommandError("INTERVAL must be >= 0")
        self.policy.boot_status = RegistrationStatus(parts[0].capitalize())
        self.policy.boot_interval = interval
        return {"status": str(self.policy.boot_status), "interval": interval}

    def one_tag(self, rest, usage):
        parts = rest.split()
        if len(parts) != 1:
            raise CommandError(usage)
        return parts[0]

    def cmd_deny(self, n, line, rest):
        self.policy.deny.add(self.one_tag(rest, "usage: deny TAG"))
        return {"deny": sorted(self.policy.deny)}

    def cmd_allow(self, n, line, rest):
        self.policy.deny.discard(self.one_tag(rest, "usage: allow TAG"))
        return {"deny": sorted(self.policy.deny)}

    def cmd_parent(self, n, line, rest):
        parts = rest.split()
        if len(parts) not in (1, 2):
            raise CommandError("usage: parent TAG [PARENT]")
        if len(parts) == 2:
            self.policy.parents[parts[0]] = parts[1]
        else:
            self.policy.parents.pop(parts[0], None)
        return {"parents": dict(self.policy.parents)}

    def cmd_error(self, n, line, rest):
        parts = rest.split()
        if len(parts) not in (2, 3):
            raise CommandError("usage: error ACTION|* CODE [COUNT]")
        count = parse_count(parts[2] if len(parts) > 2 else None)
        self.policy.set_rule(parts[0], "error", parts[1], count)
        return {"rules": self.rules()}

    def cmd_silent(self, n, line, rest):
        parts = rest.split()
        if len(parts) not in (1, 2):
            raise CommandError("usage: silent ACTION|* [COUNT]")
        count = parse_count(parts[1] if len(parts) > 1 else None)
        self.policy.set_rule(parts[0], "silent", None, count)
        return {"rules": self.rules()}

    def cmd_delay(self, n, line, rest):
        parts = rest.split()
        if len(parts) not in (2, 3):
            raise CommandError("usage: delay ACTION|* SECONDS [COUNT]")
        try:
            secs = float(parts[1])
        except ValueError:
            raise CommandError("SECONDS must be a number, got %r" % parts[1]) from None
        count = parse_count(parts[2] if len(parts) > 2 else None)
        self.policy.set_rule(parts[0], "delay", secs, count)
        return {"rules": self.rules()}

    def rules(self):
        return {a: {"kind": k, "code": c, "count": r} for a, (k, c, r) in self.policy.rules.items()}

    def cmd_drop(self, n, line, rest):
        parts = rest.split()
        if len(parts) not in (1, 2):
            raise CommandError("usage: drop CPID [CODE|abort]")
        how = parts[1] if len(parts) > 1 else "1001"
        if how != "abort":
            code = parse_count(how)
            try:
                Close(code, "").check()
            except Exception:
                raise CommandError("%d is not a close code a server may send" % code) from None
        cp = self.connected(parts[0])
        if how == "abort":
            cp.conn.transport.abort()     # no close frame: what a dead network looks like
            return {"aborted": cp.id}
        asyncio.get_running_loop().create_task(cp.conn.close(code, "dropped by csms"))
        return {"closing": cp.id, "code": code}

    def cmd_refuse(self, n, line, rest):
        self.refuse = max(0, parse_count(rest.strip() or None))
        return {"refuse": self.refuse}

    def cmd_quit(self, n, line, rest):
        self.quit.set()
        return {}


def password_bytes(key):
    """AuthorizationKey is configured as hex; the header carries the decoded bytes
    (what OCTT TC_085_CS expects).  A non-hex key is used as text."""
    try:
        return bytes.fromhex(key)
    except ValueError:
        return key.encode()


def read_stdin(loop, on_line, log):
    """Thread: forward stdin lines to the loop.  Uses os.read, not sys.stdin, so
    a thread blocked here cannot hold a buffer lock at interpreter shutdown."""
    buf = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                loop.call_soon_threadsafe(on_line, line.decode("utf-8", "replace"))
            except RuntimeError:       # loop already closed
                return
    try:
        if buf:
            loop.call_soon_threadsafe(on_line, buf.decode("utf-8", "replace"))
        loop.call_soon_threadsafe(log.human, "csms", "stdin closed; still serving")
    except RuntimeError:
        pass


def pick_subprotocol(conn, offered):
    # Without ocpp1.6 the handshake still completes, and the handler closes it
    # ([J] §3.2); websockets' default would answer HTTP 400 instead.
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


async def run(args):
    log = Log(args.json)
    cs = CentralSystem(args, log)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, cs.quit.set)

    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    ping = args.ping_interval or None
    try:
        server = await serve(cs.handle, args.host, args.port, subprotocols=[SUBPROTOCOL],
                             select_subprotocol=pick_subprotocol,
                             process_request=cs.process_request,
                             ping_interval=ping, ping_timeout=ping, compression=None, ssl=tls)
    except OSError as e:
        log.human("csms", "cannot listen on %s:%s: %s" % (args.host, args.port, e.strerror or e))
        return 1
    port = server.sockets[0].getsockname()[1]
    host = "[%s]" % args.host if ":" in args.host else args.host
    url = "%s://%s:%d" % ("wss" if tls else "ws", host, port)
    sys.stdout.write("LISTENING %s\n" % url)
    sys.stdout.flush()
    log.human("csms", "listening on %s (heartbeat %ds, boot %s)"
              % (url, args.heartbeat, args.boot))

    threading.Thread(target=read_stdin, args=(loop, cs.command, log), daemon=True).start()
    await cs.quit.wait()
    log.human("csms", "stopping")
    server.close()                   # closes every connection with 1001
    await server.wait_closed()
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="Development OCPP 1.6J central system.",
                                epilog="Commands on stdin: see the module docstring.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000, help="0 = ephemeral")
    p.add_argument("--heartbeat", type=int, default=60, help="BootNotification interval (s)")
    p.add_argument("--boot", default="accepted", choices=["accepted", "pending", "rejected"])
    p.add_argument("--deny", action="append", metavar="TAG", help="answer this idTag Invalid")
    p.add_argument("--first-txid", type=int, default=1)
    p.add_argument("--json", action="store_true", help="JSON events on stdout")
    p.add_argument("--ping-interval", type=float, default=20, help="websocket pings (s), 0 = off")
    p.add_argument("--call-timeout", type=float, default=30,
                   help="how long a `call` command waits for the CP (s)")
    p.add_argument("--auth-key", metavar="KEY",
                   help="require Basic auth cpid:KEY (hex KEY = its bytes)")
    p.add_argument("--tls-cert", metavar="PEM")
    p.add_argument("--tls-key", metavar="PEM")
    p.add_argument("--clock-offset", type=float, default=0, metavar="SECONDS",
                   help="currentTime is the host's time plus this (tests: the charge point "
                        "takes its clock from the central system)")
    args = p.parse_args(argv)
    global CLOCK_OFFSET
    CLOCK_OFFSET = args.clock_offset
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.formatter.converter = time.gmtime
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("ocpp").addFilter(QuietOcppLog())
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
