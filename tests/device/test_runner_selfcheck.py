# Proves the device harness runs on MicroPython itself, sync and async tests alike.
import sys


def test_runs_on_micropython():
    assert sys.implementation.name == "micropython"


async def test_async_test_runs_on_asyncio():
    import asyncio
    t0 = 0
    await asyncio.sleep_ms(5)
    assert t0 == 0
