"""Optional native code: functions written for viper, compiled when the port can.

A `@micropython.viper` decorator in a module's own text is a compile-time error where
there is no native emitter (mpy-cross without -march, a firmware built without one), and
no try/except around it can catch that: the whole module would fail to load.  So the
viper versions are kept as source text and compiled here, at import; the caller keeps a
plain Python version for when this returns None.

The price: compiled at run time, their native code sits in RAM even in a frozen image
(a few hundred bytes each); see the frozen figures of `make bench`.
"""
import micropython


def viper(src, *names):
    """Compile `src` (functions decorated with @micropython.viper); returns the functions
    called `names`, or None where this port has no native emitter."""
    g = {"micropython": micropython}
    try:
        exec(src, g)
    except Exception:   # SyntaxError (no emitter), AttributeError (no micropython.viper)
        return None
    return tuple(g[n] for n in names)
