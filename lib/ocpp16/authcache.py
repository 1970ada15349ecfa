"""Authorization cache: idTagInfo from Authorize / StartTransaction / StopTransaction answers.

Persisted in `auth.json` in the state directory so offline authorisation survives a
reboot.  Bounded (an entry is evicted when full) so it can never exhaust RAM or flash.
"""
import json
from ocpp16 import store
from ocpp16.clock import parse_iso

_MAX = 64


class AuthCache:
    def __init__(self, path, log=print):
        self.path = path
        self.log = log
        self._d = {}   # idTag -> [status, expiry (unix or 0), parentIdTag or None]
        raw = store.read(path)
        if raw:
            try:
                self._d = json.loads(raw)
            except ValueError:
                log("auth cache unreadable; starting empty")

    def update(self, tag, info):
        """Store an idTagInfo dict (status, expiryDate, parentIdTag) for `tag`."""
        if not isinstance(info, dict) or not isinstance(info.get("status"), str):
            return
        exp = 0
        if isinstance(info.get("expiryDate"), str):
            try:
                exp = parse_iso(info["expiryDate"])
            except ValueError:
                pass
        parent = info.get("parentIdTag") if isinstance(info.get("parentIdTag"), str) else None
        entry = [info["status"], exp, parent]
        if self._d.get(tag) == entry:
            return
        self._d.pop(tag, None)
        while len(self._d) >= _MAX:
            self._d.pop(next(iter(self._d)))
        self._d[tag] = entry
        self._save()

    def lookup(self, tag, now):
        """(status, parentIdTag) for a cached tag; an expired Accepted entry reads Expired."""
        e = self._d.get(tag)
        if e is None:
            return None, None
        status = e[0]
        if status == "Accepted" and e[1] and now and now > e[1]:
            status = "Expired"
        return status, e[2]

    def clear(self):
        self._d = {}
        self._save()

    def __len__(self):
        return len(self._d)

    def _save(self):
        store.atomic_write(self.path, json.dumps(self._d))
