"""Small flash helpers shared by the config store and the journal.

`atomic_write` is the only way the library replaces a file: write a temporary file,
flush, close, rename.  littlefs commits data on flush/close and renames atomically
across power loss, so a reader sees either the old file or the new one, never a torn one.
"""
import os

# Test hook: a callable run after every durable write step (kill-point tests).
write_hook = None


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    """Create `path` and its parents; an existing directory is fine."""
    cur = ""
    for part in path.split("/"):
        if not part:
            cur = "/" if not cur else cur
            continue
        cur = part if not cur else (cur + part if cur.endswith("/") else cur + "/" + part)
        if not exists(cur):
            os.mkdir(cur)


def atomic_write(path, data):
    """Replace `path` with `data` so that a power cut leaves old or new.

    `data`: bytes-like, or an iterable of them (a list, a generator: written in turn, no
    joined copy, which a fragmented heap may not have room for)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            f.write(data)
        else:
            for d in data:
                f.write(d)
        f.flush()
    if write_hook:
        write_hook(tmp)
    os.rename(tmp, path)
    if write_hook:
        write_hook(path)


def append(path, data):
    """Append `data` to `path` (created if missing), flushed; returns the new file size.

    A power cut may leave a torn tail (littlefs: the old file), so what is appended must
    be checkable on its own (the callers write whole lines and validate them).
    """
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        size = f.tell()
    if write_hook:
        write_hook(path)
    return size


def read(path):
    """Return the bytes of `path`, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
