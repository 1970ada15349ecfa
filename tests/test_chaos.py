"""Link chaos: the connection is cut, stalled and delayed at random while sessions run;
afterwards the central system holds every transaction message, once per lost answer.

tools/sim talks to tools/csms through tests/chaosproxy.py, a loopback TCP proxy that cuts
the link inside the websocket handshake, inside frames, at random byte counts, between a
CALL and its CALLRESULT (the answer dropped) in both directions, right after an answer,
and stalls one direction for less than, more than, or far more than MessageTimeout.
Meanwhile two connectors run sessions (plug, card, charge, stop by button, card or
unplug), each with its own idTag, and the central system calls GetConfiguration now and
then.  Then the link runs clean, the journal drains, and the central system's view is
checked:

- every StartTransaction, MeterValues and StopTransaction the charger created reached the
  central system (MeterValues: the same samples as the Stop's transactionData), in order,
  with timestamps that never go back;
- copies of a message are identical, and a copy is sent only when no CALLRESULT to an
  earlier copy had reached the charger (the charger's own `<<` trace says what arrived);
- each transaction (its unique idTag) got exactly one transactionId at the charger, which
  every MeterValues and its StopTransaction carry; exactly one StopTransaction body,
  answered; no -1 when the central system answered the StartTransaction;
- nothing dropped, nothing schema-invalid, the journal empty at the end.

Knobs: MPOCPP_CHAOS_SEED=N replays a run's chaos plan (the timing around it still varies);
MPOCPP_CHAOS_SECONDS=S sets how long the chaos lasts; MPOCPP_CHAOS_CONFIG='{"Key": value}'
adds to the charger's configuration; MPOCPP_CHAOS_VERBOSE=1 prints the proxy's whole log.
`pytest -s` prints what the proxy did and what the central system saw; a failure says it
in its message, with the central system's frames and the charger's log lines involved.
The charger's, the central system's and the proxy's logs are left in the test's tmp_path.
"""
import collections
import json
import os
import random
import re
import threading
import time

import pytest

from chaosproxy import ChaosProxy
from mp.txlog import TX_ACTIONS, journal_check, messages, parse_ts, prepare_state

CP = "CHAOS1"
CONFIG = {"MeterValueSampleInterval": 2,
          "StopTxnSampledData": "Energy.Active.Import.Register",
          "MessageTimeout": 5,
          "ReconnectMinSeconds": 1, "ReconnectMaxSeconds": 1,
          "TransactionMessageRetryInterval": 1,
          "WebSocketPingInterval": 3,
          "AllowOfflineTxForUnknownId": True}
POWER = {1: 7000, 2: 11000}

_STARTED = re.compile(r"tx: started local #(\d+) on connector (\d+) for (\S+), meterStart (\d+) Wh")
_STOPPED = re.compile(r"tx: stopped local #(\d+) on connector (\d+) \((\w+)\), meterStop (\d+) Wh")
_NOT_ALL_FIT = re.compile(r"tx: transactionData of local #(\d+): \d+ of \d+ intermediate")


def _seed(default):
    s = os.environ.get("MPOCPP_CHAOS_SEED")
    return int(s) if s else default


def _short(obj, n=260):
    s = json.dumps(obj, separators=(",", ":"))
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def _body(action, payload):
    """A message's identity: its payload, without transactionId for MeterValues and
    StopTransaction (a late answer may turn a -1 into the real id between copies)."""
    if action != "StartTransaction":
        payload = {k: v for k, v in payload.items() if k != "transactionId"}
    return action + " " + json.dumps(payload, sort_keys=True)


# -- driving ----------------------------------------------------------------------------------

class Driver:
    """Sessions on the connectors, one thread each, until a deadline."""

    def __init__(self, sim, prefix, rng, deadline, max_sessions):
        self.sim = sim
        self.prefix = prefix
        self.rng = rng
        self.deadline = deadline
        self.max_sessions = max_sessions
        self.lock = threading.Lock()
        self.errors = []
        self.sessions = []          # (connector, tag, local, how)
        self.log = []

    def send(self, line):
        with self.lock:
            self.sim.send(line)
            self.log.append("%.1f %s" % (time.monotonic(), line))

    def connector(self, n, rng):
        sim = self.sim
        i = 0
        try:
            while time.monotonic() < self.deadline and i < self.max_sessions:
                tag = "%s%dS%02d" % (self.prefix, n, i)
                i += 1
                mark = len(sim.lines)
                self.send("plug %d" % n)
                self.send("power %d %d" % (n, POWER.get(n, 7000)))
                self.send("swipe %d %s" % (n, tag))
                k = sim.wait_line(r"tx: started local #\d+ on connector %d for %s," % (n, tag),
                                  timeout=30, start=mark)
                local = int(_STARTED.search(sim.lines[k]).group(1))
                time.sleep(rng.uniform(3.0, 8.0))
                how = rng.choice(("stop", "swipe", "unplug"))
                mark = len(sim.lines)
                if how == "stop":
                    self.send("stop %d" % n)
                elif how == "swipe":
                    self.send("swipe %d %s" % (n, tag))
                else:
                    self.send("unplug %d" % n)
                sim.wait_line(r"tx: stopped local #%d " % local, timeout=30, start=mark)
                self.sessions.append((n, tag, local, how))
                if how != "unplug":
                    self.send("unplug %d" % n)
                time.sleep(rng.uniform(0.3, 2.0))
        except Exception as e:   # noqa: BLE001 - reported by the test
            self.errors.append("connector %d: %s" % (n, e))

    def run(self, connectors):
        threads = [threading.Thread(target=self.connector,
                                    args=(n, random.Random(self.rng.random())), daemon=True)
                   for n in range(1, connectors + 1)]
        for t in threads:
            t.start()
        return threads


def _cs_calls(csms, stop_at, rng, out):
    """The central system asks something now and then (the proxy may drop the answer)."""
    while time.monotonic() < stop_at:
        time.sleep(rng.uniform(3, 8))
        if time.monotonic() >= stop_at:
            break
        try:
            r = csms.call(CP, "GetConfiguration", {"key": ["MeterValueSampleInterval"]},
                          timeout=15)
            out["ok" if r.get("ok") else "failed"] += 1
        except AssertionError:
            out["no reply"] += 1


# -- reading what happened ------------------------------------------------------------------

class SimSend:
    __slots__ = ("line", "uid", "action", "payload", "answers")

    def __init__(self, line, uid, action, payload):
        self.line, self.uid, self.action, self.payload = line, uid, action, payload
        self.answers = []          # (line, type, payload, ignored) the charger received


def sim_view(lines):
    """The charger's own trace: CALLs it sent (`>>`) with the answers it received (`<<`),
    in log order."""
    sends = []
    last = {}
    for i, ln in enumerate(lines):
        if not (ln.startswith(">> ") or ln.startswith("<< ")):
            continue
        try:
            f = json.loads(ln[3:])
        except ValueError:
            continue
        if not isinstance(f, list) or len(f) < 3:
            continue
        if ln[0] == ">" and f[0] == 2 and len(f) == 4 and isinstance(f[3], dict):
            s = SimSend(i, f[1], f[2], f[3])
            sends.append(s)
            last[f[1]] = s
        elif ln[0] == "<" and f[0] in (3, 4) and f[1] in last:
            ignored = any("answer to unknown uniqueId %s ignored" % f[1] in x
                          for x in lines[i + 1:i + 3])
            last[f[1]].answers.append((i, f[0], f[2] if len(f) > 2 else None, ignored))
    return sends


def _energy(sv_list):
    for sv in sv_list:
        if sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register":
            return sv["value"]
    return None


class Analysis:
    def __init__(self, csms, sim, cp=CP):
        self.lines = list(sim.lines)
        self.msgs = messages(csms, cp)
        self.tx = [m for m in self.msgs if m.action in TX_ACTIONS]
        self.index = {id(m): i for i, m in enumerate(self.tx)}
        self.sends = [s for s in sim_view(self.lines) if s.action in TX_ACTIONS]
        self.invalid = [e for e in csms.invalid() if e.get("cp") == cp]
        self.violations = []
        self.notes = []
        self.started = {}          # tag -> (local, connector, meterStart, line)
        self.stopped = {}          # local -> (connector, reason, meterStop, line)
        self.not_all_fit = set()
        for i, ln in enumerate(self.lines):
            m = _STARTED.search(ln)
            if m:
                self.started[m.group(3)] = (int(m.group(1)), int(m.group(2)), int(m.group(4)), i)
            m = _STOPPED.search(ln)
            if m:
                self.stopped[int(m.group(1))] = (int(m.group(2)), m.group(3), int(m.group(4)), i)
            m = _NOT_ALL_FIT.search(ln)
            if m:
                self.not_all_fit.add(int(m.group(1)))
        # Copies by identity, at the central system and at the charger.
        self.cs_groups = collections.OrderedDict()
        for m in self.tx:
            self.cs_groups.setdefault(_body(m.action, m.payload), []).append(m)
        self.sim_groups = collections.OrderedDict()
        for s in self.sends:
            self.sim_groups.setdefault(_body(s.action, s.payload), []).append(s)

    # -- evidence ----------------------------------------------------------------------------
    def cs_text(self, ms):
        return "\n".join("      csms conn %d t=%.3f <- [2,%r,%s,%s]  -> %s"
                         % (m.conn, m.t or 0, m.uid, m.action, _short(m.payload),
                            _short(m.answer, 120) if m.answer else "(no answer sent)")
                         for m in ms)

    def sim_text(self, sends, extra_uids=()):
        """The sim log lines about these sends: the frames, their answers, timeouts and
        ignored answers for their uids."""
        uids = set(s.uid for s in sends) | set(extra_uids)
        keep = set()
        for s in sends:
            keep.add(s.line)
            keep.update(a[0] for a in s.answers)
        pat = re.compile(r"rpc: (no answer to CALL (\S+) |answer to unknown uniqueId (\S+) )")
        for i, ln in enumerate(self.lines):
            m = pat.search(ln)
            if m and (m.group(2) in uids or m.group(3) in uids):
                keep.add(i)
            elif "given up" in ln or "DROPPED" in ln or "link: disconnected" in ln \
                    and any(abs(i - k) <= 3 for k in list(keep)):
                keep.add(i)
        return "\n".join("      sim[%d] %s" % (i, _short_line(self.lines[i]))
                         for i in sorted(keep))

    def fail(self, what, cs=(), sends=(), extra=""):
        text = "  - " + what
        if cs:
            text += "\n    central system:\n" + self.cs_text(cs)
        if sends:
            text += "\n    charger log:\n" + self.sim_text(sends)
        if extra:
            text += "\n" + extra
        self.violations.append(text)

    # -- the checks --------------------------------------------------------------------------
    def check(self):
        self._check_sim_log()
        self._check_duplicates()
        self._check_transactions()
        self._check_order()
        if self.invalid:
            self.fail("schema-invalid messages at the central system: %s" % self.invalid[:5])
        return self

    def _check_sim_log(self):
        for i, ln in enumerate(self.lines):
            if "DROPPED" in ln or "storage:" in ln or "Traceback" in ln or \
                    ("refused" in ln and ln.startswith("delivery:")):
                self.fail("the charger reports: sim[%d] %s" % (i, _short_line(ln, 400)))

    def _check_duplicates(self):
        """A copy only where no CALLRESULT to an earlier copy had reached the charger;
        everything the charger sent reached the central system."""
        for key, sends in self.sim_groups.items():
            if key not in self.cs_groups:
                self.fail("%s sent by the charger never reached the central system"
                          % sends[0].action, sends=sends)
            for i in range(1, len(sends)):
                got = [(a, s) for s in sends[:i] for a in s.answers
                       if a[1] == 3 and a[0] < sends[i].line]
                if got:
                    (a, s) = got[0]
                    self.fail("%s sent again (uid %s, sim[%d]) after the charger had received "
                              "the CALLRESULT to uid %s (sim[%d]%s): a resend without a lost "
                              "answer" % (sends[i].action, sends[i].uid, sends[i].line, s.uid,
                                          a[0], ", ignored by the charger" if a[3] else ""),
                              cs=self.cs_groups.get(key, ()), sends=sends[:i + 1])
                    break
        for key, ms in self.cs_groups.items():
            if key not in self.sim_groups:
                self.fail("%s at the central system that the charger's log never shows"
                          % ms[0].action, cs=ms)
            if len(set(json.dumps(m.payload, sort_keys=True) for m in ms)) > 1 and \
                    ms[0].action == "StartTransaction":
                self.fail("copies of a StartTransaction differ", cs=ms)

    def _check_transactions(self):
        by_tag = collections.defaultdict(lambda: {"starts": [], "stops": []})
        for m in self.tx:
            if m.action == "StartTransaction":
                by_tag[m.payload.get("idTag")]["starts"].append(m)
            elif m.action == "StopTransaction":
                by_tag[m.payload.get("idTag")]["stops"].append(m)
        for tag in by_tag:
            if tag not in self.started:
                self.fail("transaction %s at the central system was never started by the charger"
                          % tag, cs=by_tag[tag]["starts"] + by_tag[tag]["stops"])
        owner = {}                 # transactionId issued by the central system -> tag
        for tag, t in by_tag.items():
            for m in t["starts"]:
                if m.result and isinstance(m.result.get("transactionId"), int):
                    owner[m.result["transactionId"]] = tag
        sim_starts = collections.defaultdict(list)
        for s in self.sends:
            if s.action == "StartTransaction":
                sim_starts[s.payload.get("idTag")].append(s)
        self.tx_info = {}
        meters = [m for m in self.tx if m.action == "MeterValues"]
        claimed = set()
        for tag, (local, conn, meter_start, line) in sorted(self.started.items(),
                                                            key=lambda kv: kv[1][0]):
            t = by_tag.get(tag, {"starts": [], "stops": []})
            starts, stops = t["starts"], t["stops"]
            info = self.tx_info[tag] = {"local": local, "connector": conn, "starts": len(starts),
                                        "stops": len(stops)}
            if not starts:
                self.fail("StartTransaction of %s (local #%d) never reached the central system"
                          % (tag, local), sends=sim_starts[tag])
                continue
            if starts[0].payload.get("meterStart") != meter_start or \
                    starts[0].payload.get("connectorId") != conn:
                self.fail("StartTransaction of %s does not match the charger's start line"
                          % tag, cs=starts[:1])
            cs_ids = [m.result["transactionId"] for m in starts
                      if m.result and isinstance(m.result.get("transactionId"), int)]
            received = [(a[0], a[2].get("transactionId"), a[3]) for s in sim_starts[tag]
                        for a in s.answers if a[1] == 3 and isinstance(a[2], dict)]
            ids_received = sorted(set(x[1] for x in received))
            taken = [x for x in received if not x[2]]
            info["cs_ids"] = cs_ids
            info["received"] = ids_received
            info["taken"] = [x[1] for x in taken]
            if len(ids_received) > 1:
                self.fail("transaction %s: %d transactionIds %s reached the charger (taken: %s, "
                          "ignored: %s); the central system opened %d transactions %s for it"
                          % (tag, len(ids_received), ids_received, [x[1] for x in taken],
                             [x[1] for x in received if x[2]], len(cs_ids), cs_ids),
                          cs=starts, sends=sim_starts[tag])
            if len(taken) > 1:
                self.fail("transaction %s: the charger took %d answers to its StartTransaction"
                          % (tag, len(taken)), cs=starts, sends=sim_starts[tag])
            adopted = taken[-1][1] if taken else None
            used = collections.Counter()
            # StopTransaction: one body, answered, with the one id.
            if not stops:
                self.fail("no StopTransaction for %s (local #%d) at the central system"
                          % (tag, local), cs=starts)
            else:
                bodies = set(_body(m.action, m.payload) for m in stops)
                if len(bodies) > 1:
                    self.fail("%d different StopTransactions for %s" % (len(bodies), tag),
                              cs=stops)
                if not any(m.result is not None for m in stops):
                    self.fail("no StopTransaction of %s answered with a CALLRESULT" % tag,
                              cs=stops)
                sim_stop_ok = any(a[1] == 3 and not a[3] for s in self.sim_groups.get(
                    _body("StopTransaction", stops[0].payload), ()) for a in s.answers)
                if not sim_stop_ok:
                    self.fail("no CALLRESULT to the StopTransaction of %s reached the charger"
                              % tag, cs=stops)
                st = self.stopped.get(local)
                p = stops[0].payload
                if st is None:
                    self.fail("StopTransaction of %s without a stop line at the charger" % tag,
                              cs=stops[:1])
                elif p.get("meterStop") != st[2] or p.get("reason", "Local") != st[1]:
                    self.fail("StopTransaction of %s does not match the charger's stop line "
                              "(meterStop %d, %s)" % (tag, st[2], st[1]), cs=stops[:1])
                for m in stops:
                    used[m.payload.get("transactionId")] += 1
            # MeterValues of this transaction: by id, or -1 on its connector in its time.
            t0 = parse_ts(starts[0].payload["timestamp"])
            t1 = parse_ts(stops[0].payload["timestamp"]) if stops else None
            mine = []
            for m in meters:
                tid = m.payload.get("transactionId")
                if tid is None:
                    continue
                if (tid in cs_ids and owner.get(tid) == tag) or (
                        tid == -1 and m.payload.get("connectorId") == conn and
                        t0 <= parse_ts(m.payload["meterValue"][0]["timestamp"]) and
                        (t1 is None or parse_ts(m.payload["meterValue"][0]["timestamp"]) <= t1)):
                    mine.append(m)
                    claimed.add(id(m))
                    used[tid] += 1
            info["meter_copies"] = len(mine)
            info["meters"] = len(set(_body(m.action, m.payload) for m in mine))
            info["ids_used"] = dict(used)
            if used.get(-1) and (cs_ids or received):
                self.fail("transactionId -1 in %d MeterValues/StopTransaction of %s although "
                          "the central system answered its StartTransaction %d time(s) with "
                          "%s (answers that reached the charger: %s)"
                          % (used[-1], tag, len(cs_ids), cs_ids,
                             ["%s at sim[%d]%s" % (x[1], x[0], " (ignored)" if x[2] else "")
                              for x in received] or "none"),
                          cs=starts + [m for m in stops if
                                       m.payload.get("transactionId") == -1][:2],
                          sends=sim_starts[tag])
            others = {k: v for k, v in used.items() if k not in (-1, adopted)}
            if others:
                self.fail("MeterValues/StopTransaction of %s carry transactionId(s) %s; the "
                          "charger took %s" % (tag, others, adopted),
                          cs=starts + [m for m in stops + mine
                                       if m.payload.get("transactionId") in others][:4],
                          sends=sim_starts[tag])
            # The samples in the Stop's transactionData are the MeterValues sent.
            if stops:
                td = stops[0].payload.get("transactionData") or []
                kept = set((d["timestamp"], _energy(d["sampledValue"])) for d in td
                           if d["sampledValue"][0].get("context") == "Sample.Periodic")
                sent = set()
                for m in mine:
                    for mv in m.payload["meterValue"]:
                        sent.add((mv["timestamp"], _energy(mv["sampledValue"])))
                missing = sorted(kept - sent)
                extra = sorted(sent - kept)
                info["samples"] = len(kept)
                if missing:
                    self.fail("%d periodic sample(s) of %s in its StopTransaction's "
                              "transactionData never arrived as MeterValues: %s"
                              % (len(missing), tag, missing), cs=stops[:1])
                if extra and local not in self.not_all_fit:
                    self.fail("MeterValues of %s not in its transactionData: %s"
                              % (tag, extra), cs=[m for m in mine][:3] + stops[:1])
            # Order: Start, its MeterValues, its Stop (first copies).
            if stops:
                a = self.index[id(starts[0])]
                b = self.index[id(stops[0])]
                firsts = {}
                for m in mine:
                    firsts.setdefault(_body(m.action, m.payload), self.index[id(m)])
                if not a < b or any(not a < x < b for x in firsts.values()):
                    self.fail("%s: its messages arrived out of order" % tag,
                              cs=[starts[0]] + sorted(mine, key=lambda m: self.index[id(m)])
                              + [stops[0]])
        for m in meters:
            tid = m.payload.get("transactionId")
            if tid is not None and id(m) not in claimed:
                self.fail("MeterValues with transactionId %s that belongs to no transaction"
                          % tid, cs=[m])
        for tag, t in by_tag.items():
            for m in t["stops"]:
                tid = m.payload.get("transactionId")
                if tid not in (-1, None) and owner.get(tid) not in (tag,):
                    self.fail("StopTransaction of %s carries transactionId %s of %s"
                              % (tag, tid, owner.get(tid)), cs=[m])

    def _check_order(self):
        """First copies in arrival order: the order the charger first sent them in (its
        journal's), timestamps never go back; per connector a transaction's Stop comes
        before the next one's Start."""
        cs_order = [k for k in self.cs_groups if k in self.sim_groups]
        sim_order = [k for k in self.sim_groups if k in self.cs_groups]
        if cs_order != sim_order:
            i = next(i for i, (a, b) in enumerate(zip(cs_order, sim_order)) if a != b)
            self.fail("transaction messages reached the central system in another order than "
                      "the charger first sent them (first difference at #%d)" % i,
                      cs=[self.cs_groups[cs_order[i]][0], self.cs_groups[sim_order[i]][0]],
                      sends=[self.sim_groups[cs_order[i]][0], self.sim_groups[sim_order[i]][0]])
        seen = set()
        last = None
        last_m = None
        per_conn = collections.defaultdict(list)
        for m in self.tx:
            k = _body(m.action, m.payload)
            if k in seen:
                continue
            seen.add(k)
            if m.action == "MeterValues":
                stamps = [parse_ts(v["timestamp"]) for v in m.payload["meterValue"]]
            else:
                stamps = [parse_ts(m.payload["timestamp"])]
            for ts in stamps:
                if last is not None and ts < last:
                    self.fail("timestamps go back at the central system", cs=[last_m, m])
                last, last_m = ts, m
            if m.action == "StartTransaction":
                per_conn[m.payload["connectorId"]].append(("start", m))
            elif m.action == "StopTransaction":
                st = self.started.get(m.payload.get("idTag"))
                if st:
                    per_conn[st[1]].append(("stop", m))
        for conn, seq in per_conn.items():
            kinds = [k for k, _ in seq]
            if any(k != ("start", "stop")[i % 2] for i, k in enumerate(kinds)):
                self.fail("connector %d: Start/Stop not alternating at the central system: %s"
                          % (conn, kinds), cs=[m for _, m in seq][:6])

    # -- figures -----------------------------------------------------------------------------
    def stats(self):
        copies = collections.Counter(m.action for m in self.tx)
        distinct = collections.Counter(ms[0].action for ms in self.cs_groups.values())
        resends = {a: copies[a] - distinct[a] for a in TX_ACTIONS}
        lost = collections.Counter()        # copies that follow an answer lost in the link
        no_answer = collections.Counter()   # copies that follow no answer at all
        for ms in self.cs_groups.values():
            for m in ms[:-1]:
                (lost if m.answer else no_answer)[m.action] += 1
        sim_sends = collections.Counter(s.action for s in self.sends)
        timeouts = sum(1 for ln in self.lines if "rpc: no answer to CALL" in ln)
        ignored = sum(1 for ln in self.lines if "answer to unknown uniqueId" in ln)
        connects = sum(1 for ln in self.lines if ln.startswith("link: connected"))
        failed = sum(1 for ln in self.lines if ln.startswith("link: connect failed"))
        dead = sum(1 for ln in self.lines if ln.startswith("link: disconnected"))
        return ("central system: %s distinct transaction messages (%s), %d copies received; "
                "resends (duplicate CALLs): %s; after an answer lost in the link: %s, after no "
                "answer sent: %s\ncharger: %d connects, %d connect failures, %d disconnects, "
                "%d response timeouts, %d late/unknown answers ignored; transaction "
                "CALLs sent %s"
                % (sum(distinct.values()), dict(distinct), len(self.tx), resends, dict(lost),
                   dict(no_answer), connects, failed, dead, timeouts, ignored, dict(sim_sends)))


def _short_line(ln, n=300):
    return ln if len(ln) <= n else ln[:n] + "...(%d chars)" % len(ln)


# -- the test ---------------------------------------------------------------------------------

def _chaos_run(start_csms, start_sim, tmp_path, seconds, connectors, seed, max_sessions):
    t_begin = time.monotonic()
    csms = start_csms("--heartbeat", "30", "--call-timeout", "6")
    proxy = ChaosProxy(csms.port, seed).start()
    report = ["chaos seed %d (replay: MPOCPP_CHAOS_SEED=%d), %d s of chaos, %d connector(s)"
              % (seed, seed, seconds, connectors)]
    print("\n" + report[0])
    sim = None
    try:
        config = dict(CONFIG, **json.loads(os.environ.get("MPOCPP_CHAOS_CONFIG") or "{}"))
        state = prepare_state(tmp_path / "st", config)
        sim = start_sim("ws://127.0.0.1:%d/ocpp" % proxy.port, cp_id=CP, state=state,
                        connectors=connectors)
        sim.wait_line(r"tx: journal holds \d+ message", timeout=30)
        rng = random.Random(seed)
        deadline = time.monotonic() + seconds
        drv = Driver(sim, "Z%04d" % (seed % 10000), rng, deadline, max_sessions)
        threads = drv.run(connectors)
        cs_out = collections.Counter()
        cs_thread = threading.Thread(target=_cs_calls,
                                     args=(csms, deadline, random.Random(seed + 1), cs_out),
                                     daemon=True)
        cs_thread.start()
        # A session started just before the deadline runs up to 8 s, its stop may wait out
        # a stall: bounded by the driver's own timeouts.
        for t in threads:
            t.join(seconds + 90)
        cs_thread.join(30)
        stuck = [t for t in threads if t.is_alive()]
        proxy.calm()
        t_calm = time.monotonic()
        # The link runs clean: the journal drains.
        last_stop = max([i for i, ln in enumerate(sim.lines) if _STOPPED.search(ln)] or [0])
        drained = True
        try:
            sim.wait_line(r"delivery: queue empty", timeout=90, start=last_stop)
        except AssertionError:
            drained = False
        t_drained = time.monotonic()
        time.sleep(1.0)          # the central system's last events reach csmsctl
        sim.stop()
        jq = journal_check(state)
        (tmp_path / "sim.log").write_text("\n".join(sim.lines) + "\n")
        (tmp_path / "csms.log").write_text(csms.log_text() + "\n")
        (tmp_path / "proxy.log").write_text("\n".join(proxy.log) + "\n")
        report.append("logs: %s/{sim,csms,proxy}.log" % tmp_path)
        an = Analysis(csms, sim).check()
        if drv.errors or stuck:
            an.fail("the session driver did not complete: %s%s"
                    % (drv.errors, " (threads still running)" if stuck else ""),
                    extra="    charger log tail:\n" + "\n".join(
                        "      " + _short_line(x) for x in sim.lines[-25:]))
        if not drained:
            an.fail("the journal did not drain within 90 s of a clean link",
                    extra="    charger log tail:\n" + "\n".join(
                        "      " + _short_line(x) for x in sim.lines[-25:]))
        if jq[:3] != (0, 0, 0):
            an.fail("journal after delivery: queued/corrupt/unknown = %s %s" % (jq[:3], jq[3]))
        report.append(proxy.summary())
        report.append("sessions: %d completed (%s); central-system calls: %s"
                      % (len(drv.sessions),
                         dict(collections.Counter(h for _, _, _, h in drv.sessions)),
                         dict(cs_out)))
        report.append(an.stats())
        per_tx = []
        for tag, info in an.tx_info.items():
            per_tx.append("  %s local #%d conn %d: Start x%d (central system ids %s, reached "
                          "the charger %s, taken %s), %d MeterValues (%d copies), Stop x%d, "
                          "ids used %s"
                          % (tag, info["local"], info["connector"], info["starts"],
                             info.get("cs_ids"), info.get("received"), info.get("taken"),
                             info.get("meters", 0),
                             info.get("meter_copies", 0), info["stops"], info.get("ids_used")))
        report.append("transactions:\n" + "\n".join(per_tx))
        report.append("timing: %.0f s chaos, drained %.1f s after calm, %.0f s in all"
                      % (t_calm - t_begin, t_drained - t_calm, time.monotonic() - t_begin))
        text = "\n".join(report)
        print(text)
        if os.environ.get("MPOCPP_CHAOS_VERBOSE"):
            print("proxy log:\n" + "\n".join(proxy.log))
        if an.violations:
            print("VIOLATIONS:\n" + "\n".join(an.violations))
            print(proxy.summary(last=60).split("\n", 1)[-1])
        assert not an.violations, "%d invariant(s) broken under link chaos (seed %d):\n%s\n\n%s" \
            "\n%s" % (len(an.violations), seed, "\n".join(an.violations), text,
                      proxy.summary(last=40).split("\n", 1)[-1])
        assert len(drv.sessions) >= connectors, text
        return an, proxy
    finally:
        proxy.stop()


def test_link_chaos(start_csms, start_sim, tmp_path):
    seconds = int(os.environ.get("MPOCPP_CHAOS_SECONDS", "30"))
    _chaos_run(start_csms, start_sim, tmp_path, seconds, connectors=2,
               seed=_seed(1), max_sessions=20)


@pytest.mark.slow
def test_link_chaos_long(start_csms, start_sim, tmp_path):
    seconds = int(os.environ.get("MPOCPP_CHAOS_SECONDS", "300"))
    _chaos_run(start_csms, start_sim, tmp_path, seconds, connectors=2,
               seed=_seed(random.SystemRandom().randrange(1, 10 ** 6)), max_sessions=200)
