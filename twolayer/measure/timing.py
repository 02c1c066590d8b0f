"""How many rounds to time: enough to fill a time budget, within bounds, from a short probe."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from twolayer.measure.phases import PhaseCall


@dataclass(frozen=True)
class RoundPlan:
    rounds: int
    warmup_rounds: int
    probe_round_s: float  # wall time of one round, setup included, seen by the probe


@dataclass(frozen=True)
class Budget:
    """How long to spend timing one benchmark."""

    seconds: float = 1.0  # per benchmark: the ~50 cpu benchmarks of a default run fit 90 s on two cores
    min_rounds: int = 20  # below this the IQR says little
    max_rounds: int = 2000  # the median of 2000 calls is stable to ~1%; more only grows the JSON
    warmup_fraction: float = 0.1  # warm-up keeps first-call costs (allocator, cuBLAS handles) out
    min_warmup_rounds: int = 5
    probe_calls: int = 5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"budget seconds must be a finite positive number, got {self.seconds!r}")
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds} and {self.max_rounds}")


# `--quick`: enough to see every benchmark run and produce a median, in seconds for the whole suite.
QUICK = Budget(seconds=0.02, min_rounds=5, max_rounds=50, min_warmup_rounds=2, probe_calls=2)


def plan_rounds(call: PhaseCall, budget: Budget, clock: Callable[[], float] = time.perf_counter) -> RoundPlan:
    """Probe a round's wall cost (setup and target together), then fill the budget with rounds.

    The first probe call is discarded (it pays first-call costs) and the fastest of the rest is
    taken: on a shared machine a disturbed probe would otherwise shrink the plan to a handful of
    rounds, while an optimistic one costs at most `max_rounds` rounds.
    """
    samples = []
    for _ in range(budget.probe_calls + 1):
        start = clock()
        if call.setup is not None:
            call.setup()
        call.target()
        samples.append(clock() - start)
    per_round = max(min(samples[1:]), 1e-9)
    affordable = round(budget.seconds / (per_round * (1 + budget.warmup_fraction)))
    rounds = min(max(affordable, budget.min_rounds), budget.max_rounds)
    warmup = max(budget.min_warmup_rounds, int(rounds * budget.warmup_fraction))
    return RoundPlan(rounds=rounds, warmup_rounds=warmup, probe_round_s=per_round)
