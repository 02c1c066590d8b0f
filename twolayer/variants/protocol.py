"""The interface every variant offers, so the trainer and the benchmarks can drive any of them."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Variant(Protocol):
    """One implementation of the two-layer network, cut at the tutorial loop's natural seams."""

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


def train_step(variant: Variant) -> None:
    """One whole training iteration: the three phases in the tutorial's order."""
    variant.forward()
    variant.backward()
    variant.step()
