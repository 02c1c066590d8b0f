"""Arrays that begin on a 64-byte boundary, as torch's CPU allocator places every tensor.

numpy takes its buffers from malloc, which promises 16 bytes. Where a buffer then begins within a
cache line is the allocator's accident, and on an AVX-512 machine it decides the speed of a short
phase: on a 2-core Xeon (2026-11-30), numpy_manual's `step` (`w1 -= lr * grad_w1`) took 54-74 us
where `w1` began on a 64-byte boundary and 122-157 us where it did not, every call of the build
alike. One build per process made each pytest-benchmark run, and each gate worker, fast or slow
by lot. The arrays the harness makes (the problem's data and weights, numpy_fused's buffers) are
therefore placed on a boundary; what a variant allocates as it runs (numpy_manual's gradients and
temporaries) stays where malloc puts it, as in the tutorial.
"""

from __future__ import annotations

import numpy as np

ALIGNMENT_BYTES = 64  # a cache line; AVX-512's vector width; torch's c10 CPU alignment


def empty_aligned(shape: tuple[int, ...] | int, dtype: np.dtype | type | str) -> np.ndarray:
    """An uninitialised C-contiguous array whose data begins on an `ALIGNMENT_BYTES` boundary."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT_BYTES, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT_BYTES
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_copy(array: np.ndarray, dtype: np.dtype | type | str | None = None) -> np.ndarray:
    """A C-contiguous copy of `array` on an `ALIGNMENT_BYTES` boundary, cast to `dtype` as
    `astype` casts (one copy, not a cast and then a copy)."""
    out = empty_aligned(array.shape, array.dtype if dtype is None else dtype)
    out[...] = array
    return out


def is_aligned(array: np.ndarray) -> bool:
    return array.ctypes.data % ALIGNMENT_BYTES == 0
