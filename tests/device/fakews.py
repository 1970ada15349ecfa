# A stand-in for ocpp16.ws.WebSocket in device unit tests: same buffer API, no sockets.
import asyncio


class FakeWS:
    def __init__(self, tx_size=2048, rx_size=4096):
        self._txb = bytearray(tx_size)
        self.tx = memoryview(self._txb)
        self._rxb = bytearray(rx_size)
        self.reply = memoryview(self._rxb)
        self.sent = []            # frames the charger sent, as bytes
        self._in = []             # frames queued for recv()
        self._flag = asyncio.ThreadSafeFlag()
        self.closed = False
        self.close_code = None
        self.opcode = 1           # of the message recv() returned last

    async def send(self, n, opcode=1, reply=False):
        if self.closed:
            raise OSError(32)
        self.sent.append(bytes((self._rxb if reply else self._txb)[:n]))

    def feed(self, frame, opcode=1):
        self._in.append((frame if isinstance(frame, (bytes, bytearray)) else frame.encode(),
                         opcode))
        self._flag.set()

    def drop(self):
        self.closed = True
        self._flag.set()

    async def recv(self):
        while not self._in:
            if self.closed:
                return None
            await self._flag.wait()
        frame, self.opcode = self._in.pop(0)
        return memoryview(bytearray(frame))

    async def close(self, code=1000):
        self.close_code = code
        self.drop()
