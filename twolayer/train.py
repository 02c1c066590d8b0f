"""Training a variant the way the tutorial does, logging `iteration loss` as it goes."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from twolayer.variants import Variant, run_iteration


class NonFiniteLoss(ArithmeticError):
    """Training diverged: the loss became NaN or infinite."""


def train(variant: Variant, iterations: int, every: int = 50, log: Callable[[int, float], None] | None = None) -> float:
    """Run `iterations` updates, logging the loss at 0, every, 2*every, ... and at `iterations`.

    Returns the loss after the last update (the tutorial's last printed line). The loss is checked
    after every forward, so divergence stops the run at the iteration where it happens.
    """
    if every < 1:
        raise ValueError(f"every must be a positive integer, got {every}")

    def check_and_log(iteration: int) -> float:
        loss = variant.loss()
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss} at iteration {iteration}; lower the learning rate")
        if log is not None and (iteration % every == 0 or iteration == iterations):
            log(iteration, loss)
        return loss

    # numpy would warn of each overflow on its way to inf; the check above reports divergence, once
    with np.errstate(over="ignore", invalid="ignore"):
        for iteration in range(iterations):
            run_iteration(variant)
            check_and_log(iteration)
        variant.forward()
        return check_and_log(iterations)
