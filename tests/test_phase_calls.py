"""What each phase's timed call and untimed setup do, checked on a recording stand-in variant."""

import numpy as np
import pytest
import torch
from numpy_trace import operations, trace_arrays
from test_faithfulness import CPU_VARIANTS, as_numpy, parameters

from twolayer.flops import phase_flops
from twolayer.measure.phases import phase_call
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
    assert phase_flops(problem, "backward", bias=True) == backward + 64 * 100 + 64 * 10  # the bias gradients' sums
    assert phase_flops(problem, "step", bias=True) == step + 2 * (100 + 10)


def weights_of(variant) -> dict[str, np.ndarray]:
    return {key: as_numpy(value) for key, value in parameters(variant).items()}


def autograd_leaves(variant) -> list[torch.Tensor]:
    model = getattr(variant, "model", None)
    found = list(model.parameters()) if model is not None else [variant.w1, variant.w2]
    return [p for p in found if isinstance(p, torch.Tensor) and p.requires_grad]


@pytest.mark.parametrize("name", CPU_VARIANTS)
def test_each_phase_does_its_own_part_and_no_other(name):
    """Forward moves neither weights nor gradients, backward no weight, and step moves the weights
    and leaves autograd's gradients zeroed or dropped for the next backward, as the tutorial's loop
    does: a phase that did another's work (a `zero_grad` moved into forward, say) times that work
    in the wrong phase."""
    variant = build(name, Problem(n=4, d_in=6, hidden=5, d_out=2, dtype="float64", learning_rate=1e-3))
    variant.forward()
    variant.backward()
    weights, gradients = weights_of(variant), variant.gradients()
    variant.forward()
    assert_same(weights_of(variant), weights, "forward moved weights")
    assert_same(variant.gradients(), gradients, "forward touched the gradients")
    variant.step()
    assert all(not np.array_equal(weights_of(variant)[key], weights[key]) for key in weights), "step left a weight"
    for leaf in autograd_leaves(variant):
        assert leaf.grad is None or not leaf.grad.any(), "step left gradients for the next backward to add to"


def test_backward_moves_no_weight():
    for name in CPU_VARIANTS:
        variant = build(name, Problem(n=4, d_in=6, hidden=5, d_out=2, dtype="float64", learning_rate=1e-3))
        variant.forward()
        weights = weights_of(variant)
        variant.backward()
        assert_same(weights_of(variant), weights, f"{name}: backward moved weights")


def assert_same(found: dict, expected: dict, message: str) -> None:
    assert found.keys() == expected.keys(), message
    for key in expected:
        np.testing.assert_array_equal(found[key], expected[key], err_msg=f"{message}: {key}")


# The numpy operations of each phase, written out from each variant's section (方案一's code, and
# numpy_fused's buffers): a phase that computed part of another's work (backward's 2 * (y_pred - y)
# moved into forward, say) would time it in the wrong phase.
NUMPY_PHASES = {
    "numpy_manual": {
        "forward": ["dot", "maximum", "dot", "subtract", "square", "add.reduce"],
        "backward": ["subtract", "multiply", "dot", "dot", "copy", "less", "setitem", "dot"],
        "step": ["multiply", "subtract", "multiply", "subtract"],
    },
    "numpy_fused": {
        "forward": ["dot", "maximum", "dot", "subtract", "dot"],  # the loss: diff . diff
        "backward": ["multiply", "dot", "dot", "less", "copyto", "dot"],  # reuses forward's y_pred - y
        "step": ["multiply", "subtract", "multiply", "subtract"],
    },
}


@pytest.mark.parametrize("name", list(NUMPY_PHASES))
def test_each_numpy_phase_makes_its_sections_operations(name):
    variant = build(name, Problem(n=4, d_in=6, hidden=5, d_out=2))
    trace_arrays(variant)
    found = {phase: operations(getattr(variant, phase)) for phase in ("forward", "backward", "step")}
    assert found == NUMPY_PHASES[name]
    assert np.isfinite(variant.loss())
