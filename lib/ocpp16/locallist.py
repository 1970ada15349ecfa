"""LocalAuthListManagement profile: SendLocalList and GetLocalListVersion.

Imported at the first of these CALLs, or by the authorisation (sessions._cached) once a
list file exists; a charger that never got a list never loads it.  The list itself is on
flash only (locallistfile.py): stored whatever LocalAuthListEnabled says (the key only
decides whether authorisation consults it), so enabling it later finds the list the
central system last sent.

Rules (OCPP 1.6 §3.5.3, §5.11, §5.15, OCTT TC_042/043):
- Full: the entries (those with idTagInfo) become the list; Differential: an entry with
  idTagInfo adds or replaces, one without removes the tag.
- A Differential whose listVersion is not above the current version: VersionMismatch.
- More entries than SendLocalListMaxLength in one message, or a result longer than
  LocalAuthListMaxLength, or a flash failure: Failed, and the list stays as it was.
- GetLocalListVersion: 0 while the list is empty, else the version of the last update.
- The central system answering another status for a listed tag than the list's is
  reported (StatusNotification, connector 0, LocalListConflict: sessions.listed) until
  the next update is Accepted, which reports connector 0 with NoError again.
"""
from micropython import const
from ocpp16.rpc import CallError, field, only
from ocpp16.clock import parse_iso
from ocpp16 import locallistfile as lf
from ocpp16.states import LOCAL_LIST_CONFLICT

FILE = "locallist.bin"      # in the state directory; sessions._cached checks it exists
# Flash an update leaves free while the old and the new file both exist (the journal's
# transaction messages must still fit): 5,000 entries take 240 KB, twice that meanwhile.
_RESERVE = const(65536)


class Part(lf.LocalList):
    """The charger's list: cp.part("locallist")."""

    def __init__(self, cp):
        self._cp = cp
        super().__init__(cp.state + "/" + FILE, cp.cfg.get("LocalAuthListMaxLength"), cp.log,
                         self._room)

    def _room(self, need):
        free = getattr(self._cp.board, "flash_free", None)   # the simulator's --flash-kb
        try:
            if free:
                free = free()
            else:
                import os
                st = os.statvfs(self._cp.state)
                free = st[0] * st[4]
        except OSError:
            return True                   # unknown: the write itself will tell
        return free >= need + _RESERVE


def _bad(code, what):
    raise CallError(code, what)


def _entry(e):
    # One AuthorizationData -> (tag, record or None).  JSON null counts as absent.
    if not isinstance(e, dict):
        _bad("TypeConstraintViolation", "localAuthorizationList entry")
    only(e, ("idTag", "idTagInfo"))
    tag = field(e, "idTag", str, maxlen=20)
    info = e.get("idTagInfo")
    if info is None:
        return tag, None
    if not isinstance(info, dict):
        _bad("TypeConstraintViolation", "idTagInfo")
    only(info, ("expiryDate", "parentIdTag", "status"))
    status = field(info, "status", str)
    if status not in lf.STATUS:
        _bad("PropertyConstraintViolation", "status")
    exp = info.get("expiryDate")
    if exp is not None:
        if not isinstance(exp, str):
            _bad("TypeConstraintViolation", "expiryDate")
        try:
            exp = min(max(parse_iso(exp), 1), 0xFFFFFFFF)  # before 1970: long expired
        except ValueError:
            _bad("PropertyConstraintViolation", "expiryDate")
    parent = info.get("parentIdTag")
    if parent is not None:
        if not isinstance(parent, str) or len(parent) > 20:
            _bad("TypeConstraintViolation" if not isinstance(parent, str)
                 else "PropertyConstraintViolation", "parentIdTag")
        parent = parent.encode()
        if len(parent) > lf.PARENT_MAX:
            return tag, False         # a record cannot hold it: the update fails
    return tag, lf.record(tag, lf.STATUS.index(status) + 1, exp or 0, parent)


async def send_local_list(cp, p):
    only(p, ("listVersion", "localAuthorizationList", "updateType"))
    version = field(p, "listVersion", int)
    typ = field(p, "updateType", str)
    if typ not in ("Full", "Differential"):
        _bad("PropertyConstraintViolation", "updateType")
    if not 0 <= version <= 0x7FFFFFFF:
        _bad("PropertyConstraintViolation", "listVersion")
    items = p.get("localAuthorizationList")
    if items is None:
        items = ()
    elif not isinstance(items, list):
        _bad("TypeConstraintViolation", "localAuthorizationList")
    lst = cp.part("locallist")
    most = cp.cfg.get("SendLocalListMaxLength")
    if len(items) > most:
        cp.log("locallist: %d entries, more than SendLocalListMaxLength %d: Failed"
               % (len(items), most))
        return {"status": "Failed"}
    changes = [_entry(e) for e in items]
    full = typ == "Full"
    for tag, rec in changes:
        if rec is False:
            cp.log("locallist: parentIdTag of %s too long to store: Failed" % tag)
            return {"status": "Failed"}
    if not full and version <= lst.version():
        cp.log("locallist: Differential v%d on v%d: VersionMismatch" % (version, lst.version()))
        return {"status": "VersionMismatch"}
    status = await lst.update(full, version, changes)
    if status == "Accepted" and cp.error_code[0] == LOCAL_LIST_CONFLICT:
        cp.set_status(0, cp.status[0])      # a new list: the conflict reported is over
    cp.log("locallist: %s v%d, %d entries -> %s (%d listed, version %d)"
           % (typ, version, len(changes), status, len(lst), lst.version()))
    return {"status": status}


def get_local_list_version(cp, p):
    only(p, ())
    return {"listVersion": cp.part("locallist").version()}
