"""The suite's pytest process: its command line, its output relayed without library chatter, its outcome."""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from twolayer.chatter import is_library_chatter
from twolayer.provenance import PROJECT_ROOT
from twolayer.run.options import RunOptions
from twolayer.variants.ddp import DEFAULT_COLLECTIVE_TIMEOUT_S, launched_world_size

BENCH_DIR = PROJECT_ROOT / "bench"


OS_ERROR = re.compile(r"\w*(?:Error|Exception): \[Errno \d+\] (.*)")  # the last line of an OSError's traceback


PYTEST_BENCHMARK_OPTIONS = (
    "--benchmark-enable",  # the project's addopts disable timing for plain `pytest`
    "--benchmark-group-by=group",
    "--benchmark-columns=min,median,iqr,mean,stddev,rounds",
    "--benchmark-sort=mean",
)


def pytest_arguments(options: RunOptions, json_path: Path, run_id: str, peak_path: Path | None = None,
                     quiet_canary_s: float | None = None, only: list[str] | None = None) -> list[str]:
    """The suite's pytest command line; `only` names test ids to run again (a retiming)."""
    tests = [str(PROJECT_ROOT / test) for test in only] if only else [str(BENCH_DIR)]
    args = [*tests, *PYTEST_BENCHMARK_OPTIONS, f"--benchmark-json={json_path}", "-rs", f"--tl-run-id={run_id}"]
    if peak_path is not None:
        args.append(f"--tl-peak-file={peak_path}")
    for flag, value in (("--tl-variants", options.variants), ("--tl-devices", options.devices),
                        ("--tl-phases", options.phases), ("--tl-dtypes", options.dtypes),
                        ("--tl-sizes", options.sizes), ("--tl-threads", options.threads),
                        ("--tl-budget-s", options.budget_s), ("--tl-repeat", options.repeat),
                        ("--tl-shuffle-seed", options.shuffle_seed), ("--tl-quiet-canary-s", quiet_canary_s),
                        ("--tl-scaling", options.scaling)):
        if value is not None:
            args.append(f"{flag}={value}")
    if options.quick:
        args.append("--tl-quick")
    if not options.verbose:  # the answer (`twolayer.report.answer`) follows the run; pytest-benchmark's tables on asking
        args.append("--benchmark-quiet")
    if options.collective_timeout_s != DEFAULT_COLLECTIVE_TIMEOUT_S:
        args.append(f"--tl-collective-timeout-s={options.collective_timeout_s}")
    return args


def under_torchrun() -> bool:
    """This process is one rank of a job `torchrun` started (a world of more than one)."""
    return "RANK" in os.environ and launched_world_size() > 1


OVERHEAD_TESTS = ["bench/test_overhead.py"]  # the harness's own rows


PHASE_TESTS = ["bench/test_phases.py"]  # the variants'


@dataclass(frozen=True)
class SuiteOutcome:
    returncode: int
    interrupted: bool
    errors: list[str]  # the suite's stderr, less `is_suite_noise`
    traceback: bool  # it holds a Python traceback: the process died on an exception, named in `errors[-1]`


def relay(stream: IO[bytes], out: TextIO | None) -> None:
    """Copy `stream` to `out` (None: discard) chunk by chunk, not line by line: pytest's progress
    line grows a dot per test."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := os.read(stream.fileno(), 65536):
        if out is not None:
            out.write(decoder.decode(chunk))
            out.flush()


def is_suite_noise(line: str) -> bool:
    """pytest-benchmark's `Wrote benchmark data in: <the .partial directory>`, a path gone a moment
    later (ours, `results: ...`, names the final one), blank lines, and known library chatter."""
    return not line.strip() or line.startswith("Wrote benchmark data in:") or is_library_chatter(line)


def write_failure(suite: SuiteOutcome) -> str | None:
    """Why the suite's process could not write, when it died on an OSError (`No space left on
    device`); None for any other end, whose stderr is then shown whole."""
    if suite.returncode == 0 or not suite.traceback:
        return None
    written = OS_ERROR.match(suite.errors[-1])
    return written.group(1) if written else None
