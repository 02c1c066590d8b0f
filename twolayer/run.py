"""`twolayer run`: the benchmark suite under a fresh run id, its JSON moved into place only when whole."""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Callable, TextIO

from twolayer.canary import MachineState, canary_reference, is_disturbed, machine_state, remember_quiet_canary
from twolayer.cases import BenchCase, plan_cases
from twolayer.chatter import is_library_chatter
from twolayer.environment import PROJECT_ROOT, git_commit, host_name, set_threads
from twolayer.peak import cached_peaks

BENCH_DIR = PROJECT_ROOT / "bench"
RESULT_FILE = "benchmarks.json"
PEAK_FILE = "peak.json"
PASSED_FILE = "passed.txt"  # the tests that passed (twolayer.outcomes); read after an interrupt, then deleted
INTERRUPTED_SUFFIX = "-interrupted"
OS_ERROR = re.compile(r"\w*(?:Error|Exception): \[Errno \d+\] (.*)")  # the last line of an OSError's traceback
PYTEST_BENCHMARK_OPTIONS = (
    "--benchmark-enable",  # the project's addopts disable timing for plain `pytest`
    "--benchmark-group-by=group",
    "--benchmark-columns=min,median,iqr,mean,stddev,rounds",
    "--benchmark-sort=mean",
)


class RunFailed(Exception):
    """The suite ran but did not finish cleanly: nothing was written."""


class RunInterrupted(Exception):
    """Ctrl-C stopped the run; `kept` is the run directory holding the `finished` benchmarks, or None."""

    def __init__(self, kept: Path | None, finished: int) -> None:
        super().__init__(f"interrupted; {finished} finished benchmarks kept in {kept}" if kept else "interrupted")
        self.kept, self.finished = kept, finished


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
    repeat: int = 1  # passes over the selection, each shuffled: their spread is the run-to-run noise
    shuffle_seed: int | None = None  # the passes' order (random when None; recorded either way)
    retimes: int = 2  # how often benchmarks timed on a disturbed machine are timed again, at most


def new_run_id(out: Path, now: float | None = None) -> str:
    """`<UTC time>-<host>-<short commit>`, with a suffix if that directory already exists."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base = f"{stamp}-{host_name()}-{git_commit(short=True) or 'nocommit'}"
    run_id, suffix = base, 2
    while (out / run_id).exists() or (out / f".{run_id}.partial").exists():
        run_id, suffix = f"{base}-{suffix}", suffix + 1
    return run_id


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
                        ("--tl-shuffle-seed", options.shuffle_seed), ("--tl-quiet-canary-s", quiet_canary_s)):
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
    if options.repeat < 1:
        raise ValueError(f"--repeat must be a positive integer, got {options.repeat}")
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


def check_machine(options: RunOptions) -> MachineState:
    """Say so before timing starts when the machine is busy: what is timed then is flagged."""
    if options.threads is not None:
        set_threads(options.threads)  # the canary runs with the run's own thread count
    state = machine_state(options.out)
    if state.busy:
        print(f"twolayer run: warning: the machine is busy ({state.describe()}); benchmarks timed while it stays "
              "busy are flagged disturbed, and retimed when it calms down", file=sys.stderr, flush=True)
    return state


def canaries(bench: dict) -> list[float]:
    """The canaries timed before and after a benchmark, those recorded."""
    return [c for c in (bench["extra_info"].get(k) for k in ("canary_before_s", "canary_after_s")) if c]


def disturbed_benchmarks(result: dict) -> list[dict]:
    """The benchmarks whose canary ran slow against the run's usual or the machine's quiet one."""
    benchmarks = result["benchmarks"]
    reference = canary_reference([max(canaries(b), default=0.0) for b in benchmarks],
                                 result.get("twolayer", {}).get("quiet_canary_s"))
    return [b for b in benchmarks if any(is_disturbed(c, reference) for c in canaries(b))]


def retime_disturbed(result: dict, options: RunOptions, partial: Path, run_id: str, peak_path: Path | None,
                     quiet_canary_s: float | None, run_pytest: Callable[[list[str]], int],
                     state: Callable[[Path], MachineState] = machine_state,
                     wait: Callable[[float], None] = time.sleep) -> None:
    """Time again, at most `options.retimes` times, the benchmarks timed on a disturbed machine,
    each time only once the machine is calm again (checked a few times, seconds apart). A retimed
    entry replaces the first when its canary was calmer; `retimed` counts the attempts. What stays
    disturbed stays flagged: the reports and `compare` say so."""
    for attempt in range(1, options.retimes + 1):
        disturbed = disturbed_benchmarks(result)
        if not disturbed:
            return
        for _ in range(3):
            if not state(options.out).busy:
                break
            wait(2.0)
        else:
            print(f"twolayer run: {len(disturbed)} benchmark(s) timed on a disturbed machine stay flagged: the machine "
                  "is still busy", file=sys.stderr, flush=True)
            return
        print(f"retiming {len(disturbed)} benchmark(s) timed on a disturbed machine (attempt {attempt} of "
              f"{options.retimes}) ...", flush=True)
        retime_path = partial / f"retime-{attempt}.json"
        code = run_pytest(pytest_arguments(options, retime_path.resolve(), run_id, peak_path, quiet_canary_s,
                                           only=[b["fullname"] for b in disturbed]))
        if code != 0 or not retime_path.is_file():
            raise RunFailed(f"retiming the disturbed benchmarks failed (pytest exit code {code}); no results were written")
        retimed = {b["fullname"]: b for b in json.loads(retime_path.read_text(encoding="utf-8"))["benchmarks"]}
        retime_path.unlink()
        for index, bench in enumerate(result["benchmarks"]):
            again = retimed.get(bench["fullname"])
            if again is None:
                continue
            again["extra_info"]["retimed"] = attempt
            if max(canaries(again), default=0.0) < max(canaries(bench), default=0.0):
                result["benchmarks"][index] = again
            else:
                bench["extra_info"]["retimed"] = attempt


def remember_quiet(result: dict, options: RunOptions, before: MachineState) -> None:
    """A run that started with no other process runnable and whose canaries were calm teaches the
    machine's quiet canary (kept only when quieter than the one known)."""
    if before.others_running:
        return
    seen = [c for bench in result["benchmarks"] for c in canaries(bench)]
    if seen:
        remember_quiet_canary(options.out, statistics.median(seen))


def run_suite(options: RunOptions) -> Path:
    """Run the suite; return the run directory, which exists only if the whole run succeeded.

    On Ctrl-C, raise `RunInterrupted`: the benchmarks that had finished are kept in a run
    directory marked interrupted, or, when none had, nothing is.
    """
    cases = check_options(options)
    options.out.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(options.out)
    partial = options.out / f".{run_id}.partial"
    partial.mkdir()
    try:
        before = check_machine(options)
        quiet_canary_s = before.quiet_s
        peak_path = (partial / PEAK_FILE).resolve() if options.peak else None
        if peak_path is not None:
            print("measuring the matmul peak (cached per machine in "
                  f"{options.out / 'peak-<host>.json'}) ...", flush=True)
            try:
                write_peaks(cases, options, peak_path)
            except KeyboardInterrupt:
                raise RunInterrupted(None, 0) from None
        passed_path = (partial / PASSED_FILE).resolve()
        arguments = [*pytest_arguments(options, (partial / RESULT_FILE).resolve(), run_id, peak_path, quiet_canary_s),
                     "-p", "twolayer.outcomes", f"--tl-passed-file={passed_path}"]
        suite = run_pytest([sys.executable, "-m", "pytest", *arguments])
        if suite.interrupted:
            kept = keep_finished(partial, options.out / f"{run_id}{INTERRUPTED_SUFFIX}")
            raise RunInterrupted(options.out / f"{run_id}{INTERRUPTED_SUFFIX}" if kept else None, kept)
        reason = write_failure(suite)
        if reason is not None:  # a full disk, most often, while pytest-benchmark saves: its traceback says no more
            raise RunFailed(f"could not save the results in {options.out}: {reason}; nothing was kept")
        for line in suite.errors:
            print(line, file=sys.stderr)  # why the suite failed, or its warnings
        if suite.returncode != 0:
            raise RunFailed(f"the benchmark suite failed (pytest exit code {suite.returncode}); no results were written")
        result_path = partial / RESULT_FILE
        with open(result_path, encoding="utf-8") as handle:
            result = json.load(handle)
        if not result.get("benchmarks"):
            raise RunFailed("the benchmark suite recorded no benchmarks; no results were written")
        retime_disturbed(result, options, partial, run_id, peak_path, quiet_canary_s,
                         lambda args: run_pytest([sys.executable, "-m", "pytest", *args]).returncode)
        remember_quiet(result, options, before)
        # pytest-benchmark indents every raw timing onto its own line; compact JSON is a third the size.
        result_path.write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
        passed_path.unlink(missing_ok=True)
        run_dir = options.out / run_id
        os.replace(partial, run_dir)
        return run_dir
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@dataclass(frozen=True)
class SuiteOutcome:
    returncode: int
    interrupted: bool
    errors: list[str]  # the suite's stderr, less `is_suite_noise`
    traceback: bool  # it holds a Python traceback: the process died on an exception, named in `errors[-1]`


def run_pytest(command: list[str]) -> SuiteOutcome:
    """Run the suite in a process group of its own, relaying its stdout as it comes and keeping its
    stderr to read once it has ended.

    Ctrl-C at the terminal then reaches this process alone, and the suite gets exactly one SIGINT,
    from here: pytest abandons the benchmark in progress and ends the session, and pytest-benchmark
    saves what it has (the abandoned one too, which `keep_finished` leaves out). What the suite
    prints after the interrupt is not shown; a second Ctrl-C kills it.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # pytest's progress dots as they happen, through the pipe
    if sys.stdout.isatty():
        env.setdefault("COLUMNS", str(shutil.get_terminal_size().columns))
        command = [*command, "--color=yes"]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                   process_group=0)
        interrupted = False
        try:
            relay(process.stdout, sys.stdout)
            process.wait()
        except KeyboardInterrupt:
            interrupted = True
            process.send_signal(signal.SIGINT)
            try:
                relay(process.stdout, None)
                process.wait()
            except KeyboardInterrupt:
                process.kill()
                process.wait()
                raise RunInterrupted(None, 0) from None
        finally:
            process.stdout.close()
        stderr.seek(0)
        lines = stderr.read().decode("utf-8", errors="replace").splitlines()
    errors = [line for line in lines if not is_suite_noise(line)]
    traceback = any(line.startswith("Traceback (most recent call last)") for line in errors)
    return SuiteOutcome(process.returncode, interrupted, errors, traceback)


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


def keep_finished(partial: Path, run_dir: Path) -> int:
    """After an interrupt: keep, in `run_dir`, the benchmarks whose tests passed, marked interrupted;
    return how many (0, and nothing kept, when no phase had finished or nothing was saved)."""
    try:
        result = json.loads((partial / RESULT_FILE).read_text(encoding="utf-8"))
        passed = set((partial / PASSED_FILE).read_text(encoding="utf-8").splitlines())
    except (OSError, ValueError):
        return 0  # nothing saved, or the save itself was cut short
    finished = [bench for bench in result.get("benchmarks") or [] if bench.get("fullname") in passed]
    if not any(bench["extra_info"].get("phase") != "overhead" for bench in finished):
        return 0  # the harness's own rows alone are not worth a run directory
    result["benchmarks"] = finished
    result.setdefault("twolayer", {}).update(run_id=run_dir.name, interrupted=True)
    (partial / RESULT_FILE).write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
    (partial / PASSED_FILE).unlink()
    os.replace(partial, run_dir)
    return len(finished)
