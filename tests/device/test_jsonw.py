# The frame writer: correct JSON, escaping, overflow, and no allocation on the hot path.
import json
import micropython
from ocpp16.jsonw import Writer, OVERFLOW


def _text(w):
    return bytes(w.buf[:w.n]).decode()


def test_tokens_make_valid_json():
    w = Writer(bytearray(200))
    w.raw(b'{"connectorId":'); w.int(1); w.raw(b',"meterStop":'); w.int(1234567)
    w.raw(b',"neg":'); w.int(-42); w.raw(b',"zero":'); w.int(0)
    w.raw(b',"ok":'); w.bool(True); w.raw(b',"status":'); w.str("Available"); w.raw(b"}")
    d = json.loads(_text(w))
    assert d == {"connectorId": 1, "meterStop": 1234567, "neg": -42, "zero": 0,
                 "ok": True, "status": "Available"}


def test_string_escaping_and_utf8():
    w = Writer(bytearray(200))
    s = 'a"b\\c\nd\x01é€'
    w.str(s)
    assert json.loads(_text(w)) == s


def test_value_walks_nested_objects():
    w = Writer(bytearray(300))
    v = {"a": [1, "x", None, False, {"b": -3}], "c": {}}
    w.value(v)
    assert json.loads(_text(w)) == v


def test_overflow_raises_preallocated_error():
    w = Writer(bytearray(8))
    try:
        w.str("much too long for eight bytes")
        assert False, "no overflow"
    except ValueError as e:
        assert e is OVERFLOW
    w.reset()
    try:
        w.int(1234567890)
        assert False, "no overflow"
    except ValueError as e:
        assert e is OVERFLOW


def test_hot_path_allocates_nothing():
    buf = bytearray(512)
    w = Writer(memoryview(buf))
    tag = "TAG-0001"
    micropython.heap_lock()
    try:
        for i in range(20):
            w.reset()
            w.raw(b'[2,"'); w.int(i); w.raw(b'","MeterValues",{"connectorId":'); w.int(1)
            w.raw(b',"idTag":'); w.str(tag); w.raw(b',"v":'); w.int(123456789 + i); w.raw(b"}]")
    finally:
        micropython.heap_unlock()
    assert json.loads(bytes(buf[:w.n]))[3]["v"] == 123456808


def test_str_of_any_characters_allocates_nothing():
    # Iterating a str interns each character as a qstr, which allocates whenever the qstr
    # pool fills, so a length count that iterates passed or failed depending on what ran
    # before (seen in CI).  300 CJK characters never seen before overflow any pool.
    # Built from bytes: chr() would intern them before the heap is locked.
    b = bytearray()
    for c in range(0x5000, 0x5000 + 300):
        b.append(0xE0 | c >> 12); b.append(0x80 | (c >> 6) & 0x3F); b.append(0x80 | c & 0x3F)
    s = "Zo\u00eb \u20ac \U0001d11e " + b.decode()
    buf = bytearray(1024)
    w = Writer(memoryview(buf))
    micropython.heap_lock()
    try:
        w.str(s)
    finally:
        micropython.heap_unlock()
    assert json.loads(bytes(buf[:w.n])) == s
