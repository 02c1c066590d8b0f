"""Floating-point operations per phase, for GFLOP/s figures.

A matrix product of (a, b) by (b, c) counts 2*a*b*c; each elementwise operation counts one per
element. Adam's update counts about 12 operations per parameter (two moment updates, bias
corrections, square root, division, update); SGD's counts 2 (scale, subtract).
"""

from __future__ import annotations

from twolayer.problem import Problem

PHASES = ("forward", "backward", "step", "iteration")
STEP_FLOPS_PER_PARAMETER = {"sgd": 2, "adam": 12}


def phase_flops(problem: Problem, phase: str, optimizer: str = "sgd", bias: bool = False) -> int:
    """Floating-point operations of one call of `phase` at the problem's size: the matrix products, the ReLU
    and loss elementwise work, and the optimiser's update (`optimizer`, with `bias` terms where a variant has
    them)."""
    n, d_in, hidden, d_out = problem.n, problem.d_in, problem.hidden, problem.d_out
    forward = (
        2 * n * d_in * hidden  # x @ W1
        + n * hidden  # relu
        + 2 * n * hidden * d_out  # h_relu @ W2
        + 3 * n * d_out  # difference, square, sum
        + (n * hidden + n * d_out if bias else 0)
    )
    backward = (
        2 * n * d_out  # 2 * (y_pred - y)
        + 2 * hidden * n * d_out  # grad_W2
        + 2 * n * d_out * hidden  # grad_h_relu
        + n * hidden  # relu mask
        + 2 * d_in * n * hidden  # grad_W1
        + (n * hidden + n * d_out if bias else 0)  # bias gradients: column sums
    )
    parameters = d_in * hidden + hidden * d_out + (hidden + d_out if bias else 0)
    step = STEP_FLOPS_PER_PARAMETER[optimizer] * parameters
    by_phase = {"forward": forward, "backward": backward, "step": step, "iteration": forward + backward + step}
    if phase not in by_phase:
        raise ValueError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
    return by_phase[phase]
