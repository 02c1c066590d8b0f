"""Round planning, driven by a scripted clock: never by real time."""

import pytest

from twolayer.measure.phases import PhaseCall
from twolayer.measure.timing import QUICK, Budget, plan_rounds


class ScriptedClock:
    """A clock that advances by a scripted amount whenever the timed call runs."""

    def __init__(self, call_costs):
        self.now = 0.0
        self.costs = list(call_costs)

    def __call__(self):
        return self.now

    def call(self):
        self.now += self.costs.pop(0)


def test_rounds_fill_the_budget_from_the_fastest_probe():
    clock = ScriptedClock([0.5, 0.001, 0.3, 0.001, 0.002, 0.001])  # slow calls must not shrink the plan
    plan = plan_rounds(PhaseCall(clock.call, None), Budget(seconds=1.1, max_rounds=10_000), clock)
    assert plan.probe_round_s == pytest.approx(0.001)
    assert plan.rounds == 1000  # 1.1 s / 1 ms, less the 10% spent warming up
    assert plan.warmup_rounds == 100


def test_the_first_probe_call_is_ignored_even_when_it_is_the_fastest():
    """The first call pays (or, with a cache warmed elsewhere, skips) one-off costs: never the plan's."""
    clock = ScriptedClock([1e-5, 0.001, 0.002, 0.001, 0.003, 0.001])
    plan = plan_rounds(PhaseCall(clock.call, None), Budget(seconds=1.1, max_rounds=10_000), clock)
    assert plan.probe_round_s == pytest.approx(0.001)
    assert plan.rounds == 1000
    assert clock.costs == []  # exactly probe_calls + 1 calls were made


def test_setup_time_counts_against_the_budget():
    clock = ScriptedClock([0.002] * 12)
    plan = plan_rounds(PhaseCall(clock.call, clock.call), Budget(seconds=1.1, max_rounds=10_000), clock)
    assert plan.probe_round_s == pytest.approx(0.004)
    assert plan.rounds == 250


def test_rounds_are_bounded():
    fast = ScriptedClock([1e-9] * 6)
    assert plan_rounds(PhaseCall(fast.call, None), Budget(max_rounds=2000), fast).rounds == 2000
    slow = ScriptedClock([0.5] * 6)
    plan = plan_rounds(PhaseCall(slow.call, None), Budget(min_rounds=20), slow)
    assert plan.rounds == 20 and plan.warmup_rounds == 5


def test_quick_budget_is_small():
    clock = ScriptedClock([1e-4] * 3)
    plan = plan_rounds(PhaseCall(clock.call, None), QUICK, clock)
    assert plan.rounds == QUICK.max_rounds == 50 and plan.warmup_rounds == 5


@pytest.mark.parametrize("kwargs", [{"seconds": 0}, {"seconds": float("nan")}, {"min_rounds": 0},
                                    {"min_rounds": 10, "max_rounds": 5}])
def test_bad_budgets_are_rejected(kwargs):
    with pytest.raises(ValueError):
        Budget(**kwargs)
