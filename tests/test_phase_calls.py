"""What each phase's timed call and untimed setup do, checked on a recording stand-in variant."""

import numpy as np
import pytest
import torch

from twolayer.flops import phase_flops
from twolayer.phases import phase_call
from twolayer.problem import Problem
from twolayer.variants import build


class Recorder:
    device = "cpu"

    def __init__(self):
        self.calls = []

    def forward(self):
        self.calls.append("forward")

    def backward(self):
        self.calls.append("backward")

    def step(self):
        self.calls.append("step")

    def synchronize(self):
        self.calls.append("sync")


ITERATION = ["forward", "backward", "step"]


@pytest.mark.parametrize(
    "phase, setup_calls, target_calls",
    [
        ("forward", [*ITERATION, "sync"], ["forward", "sync"]),
        ("backward", [*ITERATION, "forward", "sync"], ["backward", "sync"]),  # the first round
        ("step", [*ITERATION, "forward", "backward", "sync"], ["step", "sync"]),
        ("iteration", None, [*ITERATION, "sync"]),
    ],
)
def test_timed_call_holds_only_its_phase_and_ends_synchronised(phase, setup_calls, target_calls):
    variant = Recorder()
    call = phase_call(variant, phase)
    if setup_calls is None:
        assert call.setup is None
    else:
        call.setup()
        assert variant.calls == setup_calls
        variant.calls.clear()
    call.target()
    assert variant.calls == target_calls


def test_backward_rounds_after_the_first_step_the_last_rounds_gradients_then_forward():
    variant = Recorder()
    call = phase_call(variant, "backward")
    call.setup()
    call.target()
    variant.calls.clear()
    call.setup()
    assert variant.calls == ["step", "forward", "sync"]


@pytest.mark.parametrize("name", ["numpy_manual", "torch_manual", "torch_autograd", "nn_sequential_optim",
                                  "module_linear", "ddp"])
def test_backward_rounds_train_as_the_loop_does(name):
    """Rounds of the backward benchmark, then one step, leave the weights of as many plain
    iterations plus one: no round's setup sums a backward into the last timed one's gradients."""
    problem = Problem(n=4, d_in=6, hidden=5, d_out=2, dtype="float64", learning_rate=1e-2)
    variant, plain = build(name, problem), build(name, problem)
    call = phase_call(variant, "backward")
    for _ in range(4):
        call.setup()
        call.target()
    variant.step()
    for _ in range(5):
        plain.forward()
        plain.backward()
        plain.step()
    variant.forward()
    plain.forward()
    assert variant.loss() == pytest.approx(plain.loss(), rel=1e-12)


def test_unknown_phase():
    with pytest.raises(ValueError, match="unknown phase 'sideways'"):
        phase_call(Recorder(), "sideways")


@pytest.mark.parametrize("name", ["torch_autograd", "torch_optim", "nn_sequential", "module_linear"])
def test_backward_round_after_round_gives_the_gradients_of_one_backward(name):
    """Autograd frees its graph, and optimisers drop the gradients: each round must start from the
    loop's own state, or backward would fail or accumulate into the last round's gradients."""
    problem = Problem(n=4, d_in=6, hidden=5, d_out=2, dtype="float64", learning_rate=1e-3)
    variant = build(name, problem)
    call = phase_call(variant, "backward")
    for _ in range(3):
        call.setup()
        call.target()
    model = getattr(variant, "model", None)
    parameters = [p.detach().clone() for p in (model.parameters() if model is not None else (variant.w1, variant.w2))]
    fresh = build(name, problem)
    fresh_parameters = list(fresh.model.parameters()) if model is not None else [fresh.w1, fresh.w2]
    with torch.no_grad():
        for target, value in zip(fresh_parameters, parameters):
            target.copy_(value)
    fresh.forward()
    fresh.backward()
    for param, gradient in fresh.gradients().items():
        np.testing.assert_allclose(variant.gradients()[param], gradient, rtol=1e-12, err_msg=param)


def test_flops_at_tutorial_size():
    problem = Problem()
    forward, backward, step = (phase_flops(problem, p) for p in ("forward", "backward", "step"))
    assert forward == 2 * 64 * 1000 * 100 + 64 * 100 + 2 * 64 * 100 * 10 + 3 * 64 * 10
    assert step == 2 * (1000 * 100 + 100 * 10)
    assert phase_flops(problem, "iteration") == forward + backward + step
    assert 26.0e6 < forward + backward + step < 26.5e6
    assert phase_flops(problem, "step", optimizer="adam") == 12 * 101_000
    assert phase_flops(problem, "forward", bias=True) == forward + 64 * 100 + 64 * 10
