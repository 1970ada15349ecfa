"""Steps shared by the integration tests: a booted charger against tools/csms."""
import time


def booted(start_csms, start_sim, *csms_args, connectors=1, cp="CP1", config=(), **sim_kw):
    """Start csms + sim, wait for Boot and the StatusNotifications, apply `config`
    (key, value) pairs with ChangeConfiguration; returns (csms, sim)."""
    csms = start_csms("--heartbeat", "300", *csms_args)
    sim = start_sim(csms.url, cp_id=cp, connectors=connectors, **sim_kw)
    wait_calls(csms, "StatusNotification", connectors + 1, cp=cp, timeout=30)
    for k, v in config:
        r = csms.call(cp, "ChangeConfiguration", {"key": k, "value": v})
        assert r["ok"] and r["result"]["status"] == "Accepted", r
    return csms, sim


def wait_calls(csms, action, count, cp="CP1", timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        calls = csms.calls(action, cp=cp)
        if len(calls) >= count:
            return calls
        time.sleep(0.05)
    raise AssertionError("expected %d %s, got %d; log:\n%s"
                         % (count, action, len(csms.calls(action, cp=cp)), csms.log_text(60)))


def next_call(csms, action, cp="CP1", timeout=20):
    """Wait for the next `action` CALL after the ones already seen; returns its payload."""
    n = len(csms.calls(action, cp=cp))
    return csms.wait_call(action, cp=cp, timeout=timeout, after=n)[3]


class Watch:
    """Remembers how many calls of each action were seen, to wait for new ones."""

    def __init__(self, csms, cp="CP1"):
        self.csms = csms
        self.cp = cp
        self.base = {}

    def mark(self, *actions):
        for a in actions:
            self.base[a] = len(self.csms.calls(a, cp=self.cp))
        return self

    def new(self, action):
        return self.csms.calls(action, cp=self.cp)[self.base.get(action, 0):]

    def wait(self, action, count=1, timeout=20):
        b = self.base.get(action, 0)
        wait_calls(self.csms, action, b + count, cp=self.cp, timeout=timeout)
        return self.new(action)


def statuses(csms, connector, cp="CP1"):
    return [c[3]["status"] for c in csms.calls("StatusNotification", cp=cp)
            if c[3]["connectorId"] == connector]


def wait_status(csms, connector, status, cp="CP1", timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = statuses(csms, connector, cp)
        if s and s[-1] == status:
            return s
        time.sleep(0.05)
    raise AssertionError("connector %d never reached %s (saw %s); log:\n%s"
                         % (connector, status, statuses(csms, connector, cp), csms.log_text(60)))


def start_conf(csms, cp="CP1", timeout=20):
    """The answer to the latest StartTransaction, waiting for it (a Charging
    StatusNotification may arrive before the StartTransaction answer)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        starts = csms.calls("StartTransaction", cp=cp)
        if starts:
            uid = starts[-1][1]
            for f in csms.sent(cp):
                if f[0] == 3 and f[1] == uid:
                    return f[2]
        time.sleep(0.05)
    raise AssertionError("StartTransaction not answered; log:\n%s" % csms.log_text(40))


def answer_to(csms, uid, cp="CP1", timeout=10):
    """The charger's answer (CALLRESULT or CALLERROR frame) to the central system's CALL
    `uid`, waiting for it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for e in csms.events("recv", cp=cp):
            f = e.get("frame")
            if isinstance(f, list) and len(f) >= 2 and f[0] in (3, 4) and f[1] == uid:
                return f
        time.sleep(0.05)
    raise AssertionError("no answer to %s; log:\n%s" % (uid, csms.log_text(40)))
