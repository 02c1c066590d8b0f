"""Every variant, device, phase, dtype and size of the selection, timed per call."""

from harness import check_finite, record, time_call

from twolayer.phases import phase_call
from twolayer.variants import build


def test_phase(benchmark, case, budget):
    variant = build(case.variant, case.problem, case.device)
    record(benchmark, variant=case.variant, phase=case.phase, device=case.device, dtype=case.dtype, case=case)
    time_call(benchmark, phase_call(variant, case.phase), budget)
    check_finite(variant.loss(), case)
