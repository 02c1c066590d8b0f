"""Histories of synthetic runs with known steps, hardware and version changes (tests/test_history.py,
and the example under results/reference/history-synthetic/, made by `python tests/synthetic_history.py DIR`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from synthetic_runs import bench, write_run

COMMITS = 12
BASE_US = 100.0


def noisy(median_s: float, rng: np.random.Generator, rounds: int = 9, cv: float = 0.02) -> list[float]:
    return list(median_s * (1 + cv * rng.standard_normal(rounds)))


def write_history(folder, medians: dict[str, list[float]], seed: int = 0, hardware_from: int | None = None,
                  torch_from: int | None = None, runs_per_commit: int = 1, reverse_files: bool = False,
                  canary_s: list[float] | None = None, bursts: frozenset = frozenset()):
    """One run per commit (or several), each `benchmarks.json` in a folder of its own. `medians`
    maps a variant to its iteration median per commit, in seconds; `canary_s`, the canary every
    benchmark of a commit's runs saw (none recorded without it). A run in `bursts`, a (commit, run)
    pair, was hit by a burst throughout: its timings 2x, its canaries 3x its machine's quiet one."""
    rng = np.random.default_rng(seed)
    order = range(COMMITS - 1, -1, -1) if reverse_files else range(COMMITS)
    for n, i in enumerate(order):
        for r in range(runs_per_commit):
            hit = (i, r) in bursts
            entries = [bench(variant, "iteration", noisy(series[i] * (2 if hit else 1), rng))
                       for variant, series in medians.items()]
            if canary_s is not None:
                for entry in entries:
                    entry["extra_info"].update(canary_before_s=canary_s[i] * (3 if hit else 1),
                                               canary_after_s=canary_s[i] * (3 if hit else 1))
            path = folder / f"build-{n:03d}-{r}" / "benchmarks.json"
            path.parent.mkdir(parents=True)
            write_run(path, entries, run_id=f"run-{i}-{r}")
            run = json.loads(path.read_text())
            run["commit_info"] = {"id": f"{i + 1:02d}" + "c0ffee" * 6 + "ab", "dirty": False,
                                  "time": f"2026-11-{i + 1:02d}T12:00:00+00:00"}
            if hardware_from is not None and i >= hardware_from:
                run["machine_info"].update(cpu_model="Intel(R) Xeon(R) Processor", hardware="GenuineIntel/6/143/avx512")
            if torch_from is not None and i >= torch_from:
                run["machine_info"]["torch_version"] = "2.14.1+cpu"
            if hit:
                run["twolayer"]["quiet_canary_s"] = canary_s[i]
            path.write_text(json.dumps(run))
    return folder


def commit_id(i: int) -> str:
    return (f"{i + 1:02d}" + "c0ffee" * 6 + "ab")[:12]


def series_with_noise(rng, step_at=None, step=1.2, cv=0.05):
    values = np.full(COMMITS, BASE_US * 1e-6)
    if step_at is not None:
        values[step_at:] *= step
    return values * (1 + cv * rng.standard_normal(COMMITS))


def write_example(folder: Path) -> Path:
    """The README's example: five variants over 12 commits, 3% noise on each commit's median;
    torch_autograd 25% slower from commit 5 (code), every variant 30% faster from commit 9,
    where the runs move to another cpu (hardware)."""
    rng = np.random.default_rng(2026)
    levels = {"torch_manual": 180.0, "torch_autograd": 260.0, "nn_sequential_optim": 300.0, "module_linear": 420.0,
              "numpy_manual": 150.0}
    medians = {}
    for variant, level in levels.items():
        series = np.full(COMMITS, level * 1e-6)
        if variant == "torch_autograd":
            series[5:] *= 1.25
        series[9:] *= 0.7
        medians[variant] = list(series * (1 + 0.03 * rng.standard_normal(COMMITS)))
    return write_history(folder, medians, seed=7, hardware_from=9)


if __name__ == "__main__":
    sys.exit(print(write_example(Path(sys.argv[1]))))
