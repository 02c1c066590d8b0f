"""The arrays the harness makes begin on a 64-byte boundary: where malloc put `w1` decided, 2x,
how fast numpy's `step` ran on an AVX-512 machine (see twolayer/alignment.py)."""

from __future__ import annotations

import numpy as np
import pytest

from twolayer.alignment import ALIGNMENT_BYTES, aligned_copy, empty_aligned, is_aligned
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.numpy_fused import NumpyFused

SMALL = Problem(n=8, d_in=16, hidden=8, d_out=2, dtype="float32", learning_rate=1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bool", "int8"])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (1000, 100), 7])
def test_empty_aligned_begins_on_the_boundary_whatever_malloc_returns(shape, dtype):
    # malloc's blocks come back at several offsets within a cache line: allocate between the
    # arrays so that the raw buffers land at different ones
    arrays = []
    for padding in range(0, 128, 16):
        arrays.append((np.empty(padding + 1, dtype=np.uint8), empty_aligned(shape, dtype)))
    for _, array in arrays:
        assert is_aligned(array) and array.flags.c_contiguous and array.flags.writeable
        assert array.shape == ((shape,) if isinstance(shape, int) else shape) and array.dtype == np.dtype(dtype)


def test_an_aligned_copy_keeps_values_and_layout_and_owns_its_memory():
    source = np.arange(24, dtype=np.float32).reshape(4, 6).T  # a transposed view: not contiguous
    copy = aligned_copy(source)
    assert is_aligned(copy) and copy.flags.c_contiguous and np.array_equal(copy, source)
    assert not np.shares_memory(copy, source)
    assert ALIGNMENT_BYTES == 64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_problems_data_and_weights_are_aligned(dtype):
    problem = Problem(dtype=dtype)
    data, weights = make_data(problem), make_weights(problem)
    for name, array in {**vars(data), **vars(weights)}.items():
        assert is_aligned(array), f"{name} begins {array.ctypes.data % ALIGNMENT_BYTES} bytes into a cache line"


def test_numpy_fused_buffers_are_aligned_and_stay_so_through_training():
    variant = NumpyFused(SMALL)
    for _ in range(3):
        variant.forward(), variant.backward(), variant.step()
    arrays = {name: value for name, value in vars(variant).items() if isinstance(value, np.ndarray) and value.ndim}
    assert {"w1", "w2", "x_t", "update_w1", "grad_w1", "h", "negative"} <= set(arrays)
    for name, array in arrays.items():
        assert is_aligned(array), f"numpy_fused.{name} is not on a 64-byte boundary"
