"""`twolayer fidelity`: does the suite's timing agree with torch.utils.benchmark's Timer?

Both time the same `iteration` callable on the cpu, in this one process, with the same thread
count; the suite through pytest-benchmark, the Timer through `blocked_autorange`. A ratio far
from 1 means the harness adds (or hides) cost.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils.benchmark import Timer

from twolayer.measure.phases import phase_call
from twolayer.problem import Problem
from twolayer.run.options import RunFailed
from twolayer.run.pytest_session import BENCH_DIR
from twolayer.variants import build


@dataclass(frozen=True)
class FidelityRow:
    variant: str
    suite_median_s: float
    timer_median_s: float

    @property
    def ratio(self) -> float:
        return self.suite_median_s / self.timer_median_s


def suite_medians(variants: list[str], budget_s: float) -> dict[str, float]:
    """The suite's iteration medians, run in this process and silently: `twolayer fidelity` prints
    only its own table (no pytest-benchmark tables, no path of a temporary file)."""
    with tempfile.TemporaryDirectory() as scratch:
        json_path = Path(scratch) / "fidelity.json"
        code = pytest.main([str(BENCH_DIR / "test_phases.py"), "-p", "no:terminal", "--benchmark-quiet",
                            "--benchmark-enable", "-p", "no:cacheprovider",
                            f"--benchmark-json={json_path}", "--tl-devices=cpu", "--tl-phases=iteration",
                            f"--tl-variants={','.join(variants)}", f"--tl-budget-s={budget_s}"])
        if code != 0:
            raise RunFailed(f"the benchmark suite failed (pytest exit code {code})")
        benchmarks = json.loads(json_path.read_text())["benchmarks"]
    return {b["extra_info"]["variant"]: b["stats"]["median"] for b in benchmarks}


def timer_median(variant: str, min_run_time_s: float) -> float:
    target = phase_call(build(variant, Problem(dtype="float32")), "iteration").target
    timer = Timer(stmt="target()", globals={"target": target}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time_s).median


def check_fidelity(variants: list[str], budget_s: float = 1.0) -> list[FidelityRow]:
    suite = suite_medians(variants, budget_s)
    return [FidelityRow(name, suite[name], timer_median(name, budget_s)) for name in variants]
