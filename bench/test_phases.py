"""Every variant, device, phase, dtype and size of the selection, timed per call."""

from twolayer.measure.harness import check_finite, record, time_call, time_solo
from twolayer.measure.phases import phase_call
from twolayer.variants import VARIANTS, build, resolve
from twolayer.variants.ddp import DDP, solo_group

# The phases whose time holds the gradients' all-reduce: a distributed variant's solo twin is
# timed beside them at world sizes above 1 (`comm_s`).
COMMUNICATING_PHASES = ("backward",)


def test_phase(benchmark, case, budget, pass_index):
    reset = getattr(VARIANTS[case.variant].factory, "reset_compile_caches", None)
    if reset is not None and not benchmark.disabled:
        reset()  # compile afresh, so that this benchmark's compile_s is the real one-off cost
    variant = build(case.variant, case.problem, case.device, case.scaling or "strong")
    record(benchmark, variant=case.variant, phase=case.phase, device=case.device, dtype=case.dtype, case=case,
           pass_index=pass_index)
    plan = time_call(benchmark, phase_call(variant, case.phase), budget, case.device,
                     torch_work=VARIANTS[case.variant].library == "torch")
    if plan is not None and case.world_size > 1 and case.phase in COMMUNICATING_PHASES:
        solo = DDP(resolve(case.variant, case.problem), case.device, case.scaling, group=solo_group(),
                   shard_of=(variant.rank, variant.world_size))
        time_solo(benchmark, phase_call(solo, case.phase), plan)
    compile_seconds = getattr(variant, "compile_seconds", None)
    benchmark.extra_info["compile_s"] = sum(compile_seconds.values()) if compile_seconds is not None else None
    check_finite(variant.loss(), case)
