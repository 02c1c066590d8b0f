"""The canary that tells a disturbed machine from a slow variant, driven by a scripted clock."""

import pytest
from synthetic_runs import bench, constant, write_run

from twolayer.disturbance import DISTURBED_CANARY_RATIO, is_disturbed
from twolayer.measure.canary import canary_seconds
from twolayer.report.page import build_report
from twolayer.results.table import load_runs


def test_canary_is_the_median_of_its_calls():
    ticks = iter([0.0, 1.0, 1.0, 4.0, 4.0, 6.0])  # calls of 1, 3 and 2 seconds
    assert canary_seconds(probes=(lambda: None,), clock=lambda: next(ticks), calls=3) == 2.0


def test_canary_sums_the_median_of_each_probe_timed_in_a_run_of_its_own():
    calls = []
    # blas probe: calls of 1, 3, 2 s (median 2); pool probe: 5, 4, 6 s (median 5)
    ticks = iter([0, 1, 1, 4, 4, 6, 10, 15, 15, 19, 19, 25])
    total = canary_seconds(probes=(lambda: calls.append("blas"), lambda: calls.append("pool")),
                           clock=lambda: next(ticks), calls=3)
    assert total == 7
    assert calls == ["blas"] * 4 + ["pool"] * 4  # one warm-up each, never interleaved


def with_canary(entry, before, after):
    entry["extra_info"].update(canary_before_s=before, canary_after_s=after)
    return entry


def test_a_benchmark_whose_canary_slowed_is_flagged_disturbed(tmp_path):
    path = write_run(tmp_path / "run.json", [
        with_canary(bench("numpy_manual", "forward", constant(1e-4)), 70e-6, 71e-6),
        with_canary(bench("torch_manual", "forward", constant(1e-4)), 70e-6, 72e-6),
        with_canary(bench("torch_optim", "forward", constant(1.5e-4)), 71e-6, 105e-6),  # a burst mid-benchmark
        bench("torch_autograd", "forward", constant(1e-4)),  # from a suite without the canary
    ])
    table = load_runs([path]).set_index("variant")
    assert table.at["torch_optim", "canary_ratio"] == pytest.approx(105 / 72)
    assert bool(table.at["torch_optim", "disturbed"]) and not bool(table.at["numpy_manual", "disturbed"])
    assert not bool(table.at["torch_autograd", "disturbed"])
    text = build_report(load_runs([path]), charts=False).markdown()
    assert "| torch_optim | 150.0 (disturbed) |" in text


@pytest.mark.parametrize("canary_s, reference_s, disturbed", [
    (100e-6, 100e-6, False), (114e-6, 100e-6, False), (116e-6, 100e-6, True), (300e-6, 100e-6, True),
    (80e-6, 100e-6, False),  # quieter than the reference is never disturbed
    (None, 100e-6, False), (116e-6, float("nan"), False),  # no canary, or nothing to judge it against
])
def test_the_disturbed_flag_has_two_sides_at_its_ratio(canary_s, reference_s, disturbed):
    assert DISTURBED_CANARY_RATIO == 1.15
    assert is_disturbed(canary_s, reference_s) is disturbed
