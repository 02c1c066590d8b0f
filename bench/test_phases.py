"""Every variant, device, phase, dtype and size of the selection, timed per call."""

from harness import check_finite, record, time_call

from twolayer.phases import phase_call
from twolayer.variants import VARIANTS, build


def test_phase(benchmark, case, budget, pass_index):
    reset = getattr(VARIANTS[case.variant].factory, "reset_compile_caches", None)
    if reset is not None and not benchmark.disabled:
        reset()  # compile afresh, so that this benchmark's compile_s is the real one-off cost
    variant = build(case.variant, case.problem, case.device)
    record(benchmark, variant=case.variant, phase=case.phase, device=case.device, dtype=case.dtype, case=case,
           pass_index=pass_index)
    time_call(benchmark, phase_call(variant, case.phase), budget, case.device,
              torch_work=VARIANTS[case.variant].library == "torch")
    compile_seconds = getattr(variant, "compile_seconds", None)
    benchmark.extra_info["compile_s"] = sum(compile_seconds.values()) if compile_seconds is not None else None
    check_finite(variant.loss(), case)
