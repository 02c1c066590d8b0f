"""A fixed probe workload timed before and after each benchmark, to catch the machine itself slowing.

On a shared machine, a burst of someone else's work can slow every round of one benchmark alike:
its IQR stays small and its median is simply wrong. The canary (a small float32 matrix product on
the cpu, through numpy's BLAS) is timed just before and just after each benchmark; a benchmark
whose canary ran much slower than the run's usual canary was measured on a disturbed machine,
and the reports say so.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

CANARY_CALLS = 30  # about 2 ms of work: cheap next to a benchmark, long enough for a stable median
_rng = np.random.default_rng(0)
_A = _rng.standard_normal((64, 1000)).astype(np.float32)
_B = _rng.standard_normal((1000, 100)).astype(np.float32)
_OUT = np.empty((64, 100), dtype=np.float32)


def _probe() -> None:
    np.dot(_A, _B, out=_OUT)


def canary_seconds(probe: Callable[[], None] = _probe, clock: Callable[[], float] = time.perf_counter,
                   calls: int = CANARY_CALLS) -> float:
    """Median seconds of one probe call."""
    probe()  # warm
    samples = []
    for _ in range(calls):
        start = clock()
        probe()
        samples.append(clock() - start)
    return statistics.median(samples)
