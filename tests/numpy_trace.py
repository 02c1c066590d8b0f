"""The numpy operations a call makes, in order: its arrays are viewed as `Traced`, which logs each
ufunc (`add.reduce` for a sum), array function (`dot`, `copyto`), `.dot`, `.copy` and item
assignment before handing the plain arrays to numpy."""

from __future__ import annotations

import numpy as np


class Traced(np.ndarray):
    log: list[str] = []

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        Traced.log.append(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        if out is not None:
            kwargs["out"] = tuple(plain(o) for o in out)
        result = getattr(ufunc, method)(*(plain(i) for i in inputs), **kwargs)
        return out[0] if out is not None and len(out) == 1 else traced(result)

    def __array_function__(self, func, types, args, kwargs):
        Traced.log.append(func.__name__)
        out = kwargs.get("out")
        result = func(*(plain(a) for a in args), **{k: plain(v) for k, v in kwargs.items()})
        return out if out is not None else traced(result)

    def dot(self, other, out=None):
        Traced.log.append("dot")
        result = np.ndarray.dot(plain(self), plain(other), out=plain(out))
        return out if out is not None else traced(result)

    def copy(self, order="C"):
        Traced.log.append("copy")
        return traced(np.ndarray.copy(plain(self), order=order))

    def __setitem__(self, key, value):
        Traced.log.append("setitem")
        np.ndarray.__setitem__(plain(self), plain(key), plain(value))


def plain(value):
    return value.view(np.ndarray) if isinstance(value, Traced) else value


def traced(value):
    return value.view(Traced) if isinstance(value, np.ndarray) and not isinstance(value, Traced) else value


def trace_arrays(obj) -> None:
    """View every array attribute of `obj` as `Traced` (views: the object's buffers stay its own)."""
    for name, value in vars(obj).items():
        if isinstance(value, np.ndarray):
            setattr(obj, name, value.view(Traced))


def operations(call) -> list[str]:
    Traced.log = []
    call()
    return list(Traced.log)
