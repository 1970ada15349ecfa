# The private parts of MicroPython's asyncio the firmware leans on, in one place.
#
# They let the hot paths run without a coroutine or an allocation per message (see the
# docstrings of ocpp16.ws._Recv and ocpp16.rpc._Answer).  Checked on MicroPython 1.25.0
# (unix port and ESP32 port: the asyncio package is the same Python code, frozen).  A
# new MicroPython version must pass this file before it is supported:
#
# | what                                   | used in                  | for
# |----------------------------------------|--------------------------|-----------------------------
# | asyncio.core.cur_task                  | ws._Recv, rpc._Answer    | the task that awaits
# | asyncio.core._io_queue.queue_read(s)   | ws._Recv, ws._recv,      | wait until a socket is
# |                                        | wsopen, ws._linger       | readable (as Stream does)
# | asyncio.core._task_queue.push(task)    | ws._Recv                 | let the others run once
# | Task.data (assignable)                 | rpc._Answer              | what the task waits on, so
# |                                        |                          | cancel() takes it off
# | Event.state, Event.waiting (TaskQueue  | rpc._Answer              | wait on an Event without
# |   with push/peek/pop)                  |                          | Event.wait()'s coroutine
# | Lock.state (0 free, 1 held, Task)      | rpc.Rpc.call             | take a free lock without
# |                                        |                          | acquire()'s coroutine
# | asyncio.StreamWriter(socket)           | wsopen.handshake         | a stream on our own socket
# | asyncio.wait_for_ms (public extension) | ws, firmware/main.py     | timeouts in ms
import asyncio
import socket
from asyncio import core


def test_core_scheduler_parts_exist():
    assert hasattr(core, "cur_task")
    assert hasattr(core._io_queue, "queue_read")
    assert hasattr(core._task_queue, "push")
    assert callable(asyncio.wait_for_ms)


async def test_task_data_and_cur_task():
    t = core.cur_task
    assert t is not None
    old = t.data
    t.data = None          # assignable, as rpc._Answer does
    t.data = old


async def test_event_state_and_waiting_queue():
    ev = asyncio.Event()
    assert ev.state is False or ev.state == 0
    got = []

    async def waiter():
        # What rpc._Answer does: queue the task on the event, then yield.
        ev.waiting.push(core.cur_task)
        core.cur_task.data = ev.waiting
        yield
        got.append(ev.state)
    t = asyncio.create_task(waiter())
    await asyncio.sleep_ms(5)
    assert ev.waiting.peek() is not None
    ev.set()
    await asyncio.sleep_ms(5)
    assert got == [True] and t.done()


async def test_lock_state_values():
    lk = asyncio.Lock()
    assert lk.state == 0
    await lk.acquire()
    assert lk.state == 1
    lk.release()
    assert lk.state == 0
    lk.state = 1           # taken without acquire(), as rpc.Rpc.call does
    assert lk.locked()
    lk.release()
    assert lk.state == 0 and not lk.locked()


async def test_stream_writer_on_a_raw_socket_and_io_wait():
    a = socket.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = None
    for p in range(47300, 47400):      # no getsockname() on this port: find a free one
        try:
            a.bind(socket.getaddrinfo("127.0.0.1", p)[0][-1])
            port = p
            break
        except OSError:
            pass
    assert port is not None
    a.listen(1)
    c = socket.socket()
    c.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    s, _ = a.accept()
    c.setblocking(False)
    st = asyncio.StreamWriter(c)
    assert hasattr(st, "drain")

    async def reader():
        yield core._io_queue.queue_read(c)     # what ws does when the socket is empty
        return c.read(5)
    t = asyncio.create_task(reader())
    await asyncio.sleep_ms(5)
    s.write(b"hello")
    for _ in range(100):
        if t.done():
            break
        await asyncio.sleep_ms(5)
    assert await t == b"hello"
    for x in (c, s, a):
        x.close()
