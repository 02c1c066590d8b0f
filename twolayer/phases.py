"""What each phase times, and what must happen, untimed, before each timed call.

Every timed call ends in the variant's device synchronisation, and every setup ends in one too,
so that a round's clock covers exactly the named phase's work and nothing queued before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from twolayer.flops import PHASES
from twolayer.variants import Variant, run_iteration


@dataclass(frozen=True)
class PhaseCall:
    target: Callable[[], None]  # the timed call
    setup: Callable[[], None] | None  # untimed, before every timed call


def phase_call(variant: Variant, phase: str) -> PhaseCall:
    synchronize = variant.synchronize

    def forward() -> None:
        variant.forward()
        synchronize()

    def backward() -> None:
        variant.backward()
        synchronize()

    def step() -> None:
        variant.step()
        synchronize()

    def iteration() -> None:
        run_iteration(variant)
        synchronize()

    def fresh_graph() -> None:  # autograd frees its graph after backward: each round needs a forward
        variant.forward()
        synchronize()

    def fresh_gradients() -> None:
        variant.forward()
        variant.backward()
        synchronize()

    calls = {
        "forward": PhaseCall(forward, None),
        "backward": PhaseCall(backward, fresh_graph),
        "step": PhaseCall(step, fresh_gradients),
        "iteration": PhaseCall(iteration, None),
    }
    if phase not in calls:
        raise ValueError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
    return calls[phase]
