"""What each phase's timed call and untimed setup do, checked on a recording stand-in variant."""

import numpy as np
import pytest

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


@pytest.mark.parametrize(
    "phase, setup_calls, target_calls",
    [
        ("forward", None, ["forward", "sync"]),
        ("backward", ["forward", "sync"], ["backward", "sync"]),
        ("step", ["forward", "backward", "sync"], ["step", "sync"]),
        ("iteration", None, ["forward", "backward", "step", "sync"]),
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


def test_unknown_phase():
    with pytest.raises(ValueError, match="unknown phase 'sideways'"):
        phase_call(Recorder(), "sideways")


def test_backward_can_be_timed_round_after_round_on_a_real_autograd_variant():
    variant = build("torch_autograd", Problem(n=4, d_in=6, hidden=5, d_out=2))
    call = phase_call(variant, "backward")
    for _ in range(3):  # autograd frees the graph: without the setup's fresh forward this would raise
        call.setup()
        call.target()
    assert np.isfinite(variant.gradients()["w1"]).all()


def test_flops_at_tutorial_size():
    problem = Problem()
    forward, backward, step = (phase_flops(problem, p) for p in ("forward", "backward", "step"))
    assert forward == 2 * 64 * 1000 * 100 + 64 * 100 + 2 * 64 * 100 * 10 + 3 * 64 * 10
    assert step == 2 * (1000 * 100 + 100 * 10)
    assert phase_flops(problem, "iteration") == forward + backward + step
    assert 26.0e6 < forward + backward + step < 26.5e6
    assert phase_flops(problem, "step", optimizer="adam") == 12 * 101_000
    assert phase_flops(problem, "forward", bias=True) == forward + 64 * 100 + 64 * 10
