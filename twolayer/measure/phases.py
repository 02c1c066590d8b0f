"""What each phase times, and what must happen, untimed, before each timed call.

A setup brings the variant to the state the training loop has just before the phase: after a
whole iteration (the last graph freed by its backward, the gradients zeroed or dropped by its
step), then the phases before this one. For backward, from the second round on, the loop's step
consumes the last timed backward's gradients first. So `backward` never accumulates into stale
gradients, and `forward` never pays for freeing a graph that backward would have freed. Every timed call
ends in the variant's device synchronisation, and so does every setup, so that a round's clock
covers exactly the named phase's work and nothing queued before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from twolayer.flops import PHASES
from twolayer.variants import Variant, iteration_of


@dataclass(frozen=True)
class PhaseCall:
    target: Callable[[], None]  # the timed call
    setup: Callable[[], None] | None  # untimed, before every timed call
    # The phase's own work without the final synchronisation: what device time is measured around
    # (CUDA events before and after it, `twolayer.measure.device_time`). None: the same as `target`.
    work: Callable[[], None] | None = None


def phase_call(variant: Variant, phase: str) -> PhaseCall:
    """What one timed call of `phase` runs (`target`) and what must run, untimed, before each call (`setup`),
    so that every call starts from the same state; the device is synchronised inside the target."""
    synchronize = variant.synchronize
    whole_iteration = iteration_of(variant)  # resolved once, not inside the timed call

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
        whole_iteration()
        synchronize()

    def before_forward() -> None:
        whole_iteration()
        synchronize()

    timed_backward_before = False  # a timed backward's gradients wait for the loop's step

    def before_backward() -> None:
        """Autograd frees its graph in backward: each round needs a fresh forward. The gradients of
        the last timed backward are the loop's next step's: applied (and zeroed) here, as the loop
        would, rather than summed into by another backward. Each setup precedes its timed call."""
        nonlocal timed_backward_before
        if timed_backward_before:
            variant.step()
        else:
            whole_iteration()
        timed_backward_before = True
        variant.forward()
        synchronize()

    def before_step() -> None:
        whole_iteration()
        variant.forward()
        variant.backward()
        synchronize()

    calls = {
        "forward": PhaseCall(forward, before_forward, variant.forward),
        "backward": PhaseCall(backward, before_backward, variant.backward),
        "step": PhaseCall(step, before_step, variant.step),
        "iteration": PhaseCall(iteration, None, whole_iteration),
    }
    if phase not in calls:
        raise ValueError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
    return calls[phase]
