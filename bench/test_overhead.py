"""The harness's own cost per timed call, so a 5 us phase can be told from timer noise.

`harness_empty` times a call that does nothing; `harness_sync` times a bare device
synchronisation, the floor under every GPU figure (on cpu it is a no-op call). On cuda,
`harness_launch` times an empty kernel's launch and synchronisation, and `harness_graph` the
replay of a CUDA graph of that one kernel: the two costs the launch floor is made of
(`twolayer.measure.launches`).
"""

from twolayer.devices import synchronize
from twolayer.measure.harness import record, time_call
from twolayer.measure.launches import empty_launch, one_kernel_graph
from twolayer.measure.phases import PhaseCall


def overhead_call(what: str, device: str) -> PhaseCall:
    """What a row times; `work` is the call without its synchronisation, for the device's time."""
    def empty() -> None:
        pass

    def sync() -> None:
        synchronize(device)

    if what == "harness_empty":
        return PhaseCall(empty, None)
    if what == "harness_sync":
        return PhaseCall(sync, None, empty)
    launch = empty_launch() if what == "harness_launch" else one_kernel_graph()

    def launch_and_sync() -> None:
        launch()
        synchronize(device)

    return PhaseCall(launch_and_sync, None, launch)


def test_overhead(benchmark, overhead_device, what, budget, pass_index):
    device = overhead_device
    call = overhead_call(what, device)
    record(benchmark, variant=what, phase="overhead", device=device, dtype=None, case=None, pass_index=pass_index)
    plan = time_call(benchmark, call, budget, device)
    info = benchmark.extra_info
    assert (info["variant"], info["phase"], info["device"], info["pass"]) == (what, "overhead", device, pass_index)
    if plan is None:  # plain `pytest`: timing is disabled and the call ran once, untimed
        return
    # what was measured is what was planned: every round, none negative, the warm-up recorded
    stats = benchmark.stats.stats
    assert len(stats.data) == plan.rounds and info["warmup_rounds"] == plan.warmup_rounds
    assert 0 < info["canary_before_s"] and 0 < info["canary_after_s"]
