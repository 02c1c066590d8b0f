"""`twolayer run`: the benchmark suite under a fresh run id, its JSON moved into place only when whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from twolayer.cases import BenchCase, plan_cases
from twolayer.environment import PROJECT_ROOT, git_commit, host_name, set_threads
from twolayer.peak import cached_peaks

BENCH_DIR = PROJECT_ROOT / "bench"
RESULT_FILE = "benchmarks.json"
PEAK_FILE = "peak.json"
PYTEST_BENCHMARK_OPTIONS = (
    "--benchmark-enable",  # the project's addopts disable timing for plain `pytest`
    "--benchmark-group-by=group",
    "--benchmark-columns=min,median,iqr,mean,stddev,rounds",
    "--benchmark-sort=mean",
)


class RunFailed(Exception):
    """The suite ran but did not finish cleanly: nothing was written."""


@dataclass(frozen=True)
class RunOptions:
    variants: str | None = None
    devices: str | None = None
    phases: str | None = None
    dtypes: str | None = None
    sizes: str | None = None
    threads: int | None = None
    budget_s: float | None = None
    quick: bool = False
    out: Path = Path("results")
    peak: bool = True  # measure (or reuse) the matmul peak, so reports can say how far from it each variant is


def new_run_id(out: Path, now: float | None = None) -> str:
    """`<UTC time>-<host>-<short commit>`, with a suffix if that directory already exists."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base = f"{stamp}-{host_name()}-{git_commit(short=True) or 'nocommit'}"
    run_id, suffix = base, 2
    while (out / run_id).exists() or (out / f".{run_id}.partial").exists():
        run_id, suffix = f"{base}-{suffix}", suffix + 1
    return run_id


def pytest_arguments(options: RunOptions, json_path: Path, run_id: str, peak_path: Path | None = None) -> list[str]:
    args = [str(BENCH_DIR), *PYTEST_BENCHMARK_OPTIONS, f"--benchmark-json={json_path}", "-rs", f"--tl-run-id={run_id}"]
    if peak_path is not None:
        args.append(f"--tl-peak-file={peak_path}")
    for flag, value in (("--tl-variants", options.variants), ("--tl-devices", options.devices),
                        ("--tl-phases", options.phases), ("--tl-dtypes", options.dtypes),
                        ("--tl-sizes", options.sizes), ("--tl-threads", options.threads),
                        ("--tl-budget-s", options.budget_s)):
        if value is not None:
            args.append(f"{flag}={value}")
    if options.quick:
        args.append("--tl-quick")
    return args


def check_options(options: RunOptions) -> list[BenchCase]:
    """Refuse a bad selection before anything runs (raises ValueError with a one-line message)."""
    cases = plan_cases(options.variants, options.devices, options.phases, options.dtypes, options.sizes,
                       quick=options.quick)
    if options.threads is not None and options.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {options.threads}")
    if not BENCH_DIR.is_dir():
        raise ValueError(f"the benchmark suite is not at {BENCH_DIR}; install twolayer from its checkout (pip install -e .)")
    return cases


def write_peaks(cases: list[BenchCase], options: RunOptions, path: Path) -> None:
    """The matmul peak of every device and dtype the run measures (from the cache when current)."""
    runnable = [case for case in cases if case.skip_reason is None]
    devices = sorted({case.device for case in runnable})
    dtypes = sorted({case.dtype for case in runnable})
    if options.threads is not None:
        set_threads(options.threads)  # the peak is measured with the run's own thread count
    peaks = cached_peaks(options.out, devices, dtypes)
    path.write_text(json.dumps({key: asdict(peak) for key, peak in peaks.items()}, indent=1), encoding="utf-8")


def run_suite(options: RunOptions) -> Path:
    """Run the suite; return the run directory, which exists only if the whole run succeeded."""
    cases = check_options(options)
    options.out.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(options.out)
    partial = options.out / f".{run_id}.partial"
    partial.mkdir()
    try:
        peak_path = (partial / PEAK_FILE).resolve() if options.peak else None
        if peak_path is not None:
            print("measuring the matmul peak (cached per machine in "
                  f"{options.out / 'peak-<host>.json'}) ...", flush=True)
            write_peaks(cases, options, peak_path)
        arguments = pytest_arguments(options, (partial / RESULT_FILE).resolve(), run_id, peak_path)
        command = [sys.executable, "-m", "pytest", *arguments]
        returncode = subprocess.run(command, cwd=PROJECT_ROOT).returncode
        if returncode != 0:
            raise RunFailed(f"the benchmark suite failed (pytest exit code {returncode}); no results were written")
        result_path = partial / RESULT_FILE
        with open(result_path, encoding="utf-8") as handle:
            result = json.load(handle)
        if not result.get("benchmarks"):
            raise RunFailed("the benchmark suite recorded no benchmarks; no results were written")
        # pytest-benchmark indents every raw timing onto its own line; compact JSON is a third the size.
        result_path.write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
        run_dir = options.out / run_id
        os.replace(partial, run_dir)
        return run_dir
    finally:
        shutil.rmtree(partial, ignore_errors=True)
