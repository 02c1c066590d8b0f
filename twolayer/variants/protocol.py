"""The interface every variant offers, so the trainer and the benchmarks can drive any of them."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class Variant(Protocol):
    """One implementation of the two-layer network, cut at the tutorial loop's natural seams.

    Optional: `iteration()`, a whole iteration fused by a compiler or a graph capture, and
    `compile_seconds`, the one-off compilation or capture cost (seconds by graph).
    """

    device: str

    def forward(self) -> None:
        """Compute the prediction and the loss, keeping what backward needs."""

    def backward(self) -> None:
        """Leave the gradients of every parameter ready."""

    def step(self) -> None:
        """Update the parameters and zero (or drop) the gradients."""

    def loss(self) -> float:
        """The loss of the last forward, as a Python float (this synchronises a GPU)."""

    def gradients(self) -> dict[str, np.ndarray]:
        """The last backward's gradients as float64 arrays, weights in the (in, out) layout."""

    def synchronize(self) -> None:
        """Wait until the variant's queued device work is done."""


def iteration_of(variant: Variant) -> Callable[[], None]:
    """One whole training iteration: the variant's own fused `iteration()` where it has one
    (compiled and graph-captured variants), else the three phases in the tutorial's order.
    Either way, `loss()` afterwards is the loss of this iteration's forward, before its update."""
    fused = getattr(variant, "iteration", None)
    if fused is not None:
        return fused

    def three_phases() -> None:
        variant.forward()
        variant.backward()
        variant.step()

    return three_phases


def run_iteration(variant: Variant) -> None:
    iteration_of(variant)()
