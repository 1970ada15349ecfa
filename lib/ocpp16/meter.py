"""Energy registers and sampled values.

The board's S0 counter restarts at zero on every power-on; the OCPP register must never
go backwards and is never re-based per transaction.  So the register of a connector is
`base + energy since boot`, and `base` (the last register written to flash) is stored in
`meter.json` at every transaction event and sample.  A power cut loses at most the pulses
since the last save: the register may lag, never jump back.

Sampled values are written as JSON tokens (value is a string, as OCPP requires).
"""
import json
from ocpp16 import store
from ocpp16.clock import write_iso

# Measurand -> (unit, board method). Only measurands the board implements are offered.
_ENERGY = "Energy.Active.Import.Register"
_UNITS = {
    _ENERGY: (b"Wh", None),
    "Power.Active.Import": (b"W", "power_w"),
    "Current.Import": (b"A", "current_a10"),     # board returns tenths of amperes
    "Voltage": (b"V", "voltage_v"),
    "Current.Offered": (b"A", "offered_a10"),    # what the pilot offers the car (offer.py)
    "Power.Offered": (b"W", "offered_w"),
    "Temperature": (b"Celsius", "temperature_c"),
    "SoC": (b"Percent", "soc"),
}

# Reading contexts
PERIODIC = b"Sample.Periodic"
CLOCK = b"Sample.Clock"
BEGIN = b"Transaction.Begin"
END = b"Transaction.End"
TRIGGER = b"Trigger"
OTHER = b"Other"


def supported(board):
    """Measurands this board can supply (the energy register always)."""
    out = [_ENERGY]
    for m in _UNITS:
        fn = _UNITS[m][1]
        if fn and hasattr(board, fn):
            out.append(m)
    return tuple(out)


class Meter:
    def __init__(self, board, state_dir, log=print):
        self.board = board
        self.path = state_dir + "/meter.json"
        self.log = log
        n = board.connectors + 1
        self.base = [0] * n
        self._boot = [0] * n       # board reading at boot (its counter may not start at 0)
        self.saved_stamp = None    # [unix, boot, rel] of the last save
        raw = store.read(self.path)
        if raw:
            try:
                saved = json.loads(raw)
                regs = saved["r"]
                for i in range(min(n, len(regs))):
                    self.base[i] = int(regs[i])
                self.saved_stamp = saved.get("t")
            except (ValueError, TypeError, KeyError):
                log("meter: %s unreadable; registers restart from the board's counters" % self.path)
        for i in range(1, n):
            self._boot[i] = board.energy_wh(i)
        self.bytes_written = 0
        # Bound methods made once: getattr() per sample would allocate one each time.
        self._read = {}
        for m in _UNITS:
            fn = _UNITS[m][1]
            if fn and hasattr(board, fn):
                self._read[m] = getattr(board, fn)

    def register(self, n):
        """Energy.Active.Import.Register of connector n in Wh (integer, monotonic)."""
        if n == 0:
            # No generator expression here: capturing `self` would allocate a cell per call.
            total = 0
            for i in range(1, len(self.base)):
                total += self.register(i)
            return total
        return self.base[n] + self.board.energy_wh(n) - self._boot[n]

    def save(self, stamp=None):
        """Persist the registers and when they were read (at transaction events, samples)."""
        regs = [self.register(i) if i else 0 for i in range(len(self.base))]
        data = json.dumps({"r": regs, "t": stamp})
        self.saved_stamp = stamp
        store.atomic_write(self.path, data)
        self.bytes_written += len(data)
        for i in range(1, len(self.base)):
            self.base[i] = regs[i]
            self._boot[i] = self.board.energy_wh(i)

    def write_value(self, w, n, t, context, measurands):
        """Write one MeterValue object {"timestamp":..,"sampledValue":[..]} for connector n."""
        w.raw(b'{"timestamp":')
        write_iso(w, t)
        w.raw(b',"sampledValue":[')
        first = True
        for m in measurands:
            spec = _UNITS.get(m)
            if spec is None:
                continue
            if m == _ENERGY:
                v = self.register(n)
            else:
                fn = self._read.get(m)
                if fn is None:
                    continue
                v = fn(n)
            if not first:
                w.byte(44)
            first = False
            w.raw(b'{"value":"')
            if spec[0] == b"A":   # boards report currents in tenths of amperes
                w.int(v // 10)
                w.byte(46)
                w.int(v % 10)
            else:
                w.int(v)
            w.raw(b'","context":"')
            w.raw(context)
            w.raw(b'","measurand":')
            w.str(m)
            w.raw(b',"location":"Outlet","unit":"')
            w.raw(spec[0])
            w.raw(b'"}')
        w.raw(b"]}")
