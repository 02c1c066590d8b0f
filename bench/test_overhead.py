"""The harness's own cost per timed call, so a 5 us phase can be told from timer noise.

`harness_empty` times a call that does nothing; `harness_sync` times a bare device
synchronisation, the floor under every GPU figure (on cpu it is a no-op call).
"""

import pytest
from harness import record, time_call

from twolayer.devices import synchronize
from twolayer.phases import PhaseCall


@pytest.mark.parametrize("what", ["harness_empty", "harness_sync"])
def test_overhead(benchmark, overhead_device, what, budget, pass_index):
    device = overhead_device

    def empty() -> None:
        pass

    def sync() -> None:
        synchronize(device)

    record(benchmark, variant=what, phase="overhead", device=device, dtype=None, case=None, pass_index=pass_index)
    plan = time_call(benchmark, PhaseCall(empty if what == "harness_empty" else sync, None), budget)
    info = benchmark.extra_info
    assert (info["variant"], info["phase"], info["device"], info["pass"]) == (what, "overhead", device, pass_index)
    if plan is None:  # plain `pytest`: timing is disabled and the call ran once, untimed
        return
    # what was measured is what was planned: every round, none negative, the warm-up recorded
    stats = benchmark.stats.stats
    assert len(stats.data) == plan.rounds and info["warmup_rounds"] == plan.warmup_rounds
    assert 0 < info["canary_before_s"] and 0 < info["canary_after_s"]
