# The steady-state send path: encode a frame into the websocket transmit buffer, mask it
# in place and send it, for Heartbeat, StatusNotification and MeterValues, with the heap
# locked: any allocation raises MemoryError and fails the test.
import gc
import json
import asyncio
import micropython
from ocpp16 import ws, messages
from ocpp16.jsonw import Writer
from ocpp16.meter import Meter, PERIODIC
from test_ws import _loopback, _unframe


class _Board:
    connectors = 1

    def energy_wh(self, n):
        return 123456

    def power_w(self, n):
        return 11040

    def current_a10(self, n):
        return 160

    def voltage_v(self, n):
        return 230


class _CP:
    status = [0, 2]
    error_code = [b"NoError", b"NoError"]
    status_info = [None, None]
    status_time = [1800000000, 1800000000]


_MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage")


def _meter_values(w, m):
    w.raw(b'{"connectorId":1,"transactionId":')
    w.int(4711)
    w.raw(b',"meterValue":[')
    m.write_value(w, 1, 1800000060, PERIODIC, _MEASURANDS)
    w.raw(b"]}")


def _frame(w, uid, action, encode, arg):
    w.reset()
    w.raw(b'[2,"')
    w.int(uid)
    w.raw(b'","')
    w.raw(action)
    w.raw(b'",')
    encode(w, arg)
    w.raw(b"]")
    return w.n


async def test_encode_mask_send_with_heap_locked():
    sock = ws.WebSocket()
    c, s = _loopback()
    c.setblocking(False)
    sock._s, sock._st = c, asyncio.StreamWriter(c)
    w = Writer(sock.tx)
    m = Meter(_Board(), "/tmp", log=lambda s: None)
    m.base[1] = 0
    m._boot[1] = 0       # the register is the board counter since power-on
    cp = _CP()
    arg_status = (cp, 1)
    cases = ((messages.HEARTBEAT, messages.heartbeat, None),
             (messages.STATUS, messages.status, arg_status),
             (b"MeterValues", _meter_values, m))
    rd = bytearray(4096)
    try:
        uid = 100
        for action, enc, arg in cases:
            for rep in range(3):
                uid += 1
                gc.collect()
                micropython.heap_lock()
                try:
                    n = _frame(w, uid, action, enc, arg)
                    await sock.send(n)
                finally:
                    micropython.heap_unlock()
                want = n + (2 if n < 126 else 4) + 4
                got = 0
                while got < want:
                    got += s.readinto(memoryview(rd)[got:want])
                fin, op, masked, payload, total = _unframe(rd)
                msg = json.loads(payload)
                assert masked and msg[0] == 2 and msg[1] == str(uid) and msg[2] == action.decode()
                if action == b"MeterValues":
                    svs = msg[3]["meterValue"][0]["sampledValue"]
                    assert [sv["value"] for sv in svs] == ["123456", "11040", "16.0", "230"]
                    assert msg[3]["meterValue"][0]["timestamp"] == "2027-01-15T08:01:00Z"
    finally:
        c.close()
        s.close()
