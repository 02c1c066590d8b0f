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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Callable, TextIO

from twolayer.canary import (
    MachineState,
    canary_reference,
    contended,
    is_disturbed,
    machine_state,
    remember_quiet_canary,
)
from twolayer.cases import BenchCase, plan_cases
from twolayer.chatter import is_library_chatter
from twolayer.environment import PROJECT_ROOT, git_commit, host_name, oversubscription, set_threads
from twolayer.peak import cached_peaks
from twolayer.variants import VARIANTS
from twolayer.variants.ddp import DEFAULT_COLLECTIVE_TIMEOUT_S, launched_world_size

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
    # The distributed variants' (ddp): each world size is a launch of its own ranks on this machine;
    # None: in this process, as a world of one (or at torchrun's world size, under torchrun).
    world_sizes: tuple[int, ...] | None = None
    scaling: str | None = None  # strong (default) or weak
    collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S


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
                        ("--tl-shuffle-seed", options.shuffle_seed), ("--tl-quiet-canary-s", quiet_canary_s),
                        ("--tl-scaling", options.scaling)):
        if value is not None:
            args.append(f"{flag}={value}")
    if options.quick:
        args.append("--tl-quick")
    if options.collective_timeout_s != DEFAULT_COLLECTIVE_TIMEOUT_S:
        args.append(f"--tl-collective-timeout-s={options.collective_timeout_s}")
    return args


def under_torchrun() -> bool:
    """This process is one rank of a job `torchrun` started (a world of more than one)."""
    return "RANK" in os.environ and launched_world_size() > 1


def distributed_variants(cases: list[BenchCase]) -> list[str]:
    return list(dict.fromkeys(case.variant for case in cases if VARIANTS[case.variant].distributed))


OVERHEAD_TESTS = ["bench/test_overhead.py"]  # the harness's own rows
PHASE_TESTS = ["bench/test_phases.py"]  # the variants'


def split_selection(options: RunOptions, cases: list[BenchCase]) -> tuple[RunOptions, list[str] | None,
                                                                           RunOptions | None]:
    """The options of the suite run in this process and the tests it runs (None: all), and the
    options of the distributed variants' launches (one per world size; None: no launch). Without
    --world-size, a distributed variant runs in this process, a world of one. The harness's own
    rows are timed in this process only, once."""
    if options.world_sizes is None:
        return options, None, None
    ranked = distributed_variants(cases)
    local = list(dict.fromkeys(case.variant for case in cases if case.variant not in ranked))
    return (replace(options, variants=",".join(local or ranked)), None if local else OVERHEAD_TESTS,
            replace(options, variants=",".join(ranked)))


def check_options(options: RunOptions) -> list[BenchCase]:
    """Refuse a bad selection before anything runs (raises ValueError with a one-line message)."""
    cases = plan_cases(options.variants, options.devices, options.phases, options.dtypes, options.sizes,
                       quick=options.quick, scaling=options.scaling)
    if options.world_sizes is not None:
        if under_torchrun():
            raise ValueError(f"under torchrun the world size is torchrun's (WORLD_SIZE={launched_world_size()}); "
                             "leave out --world-size")
        if any(size < 1 for size in options.world_sizes):
            raise ValueError(f"--world-size takes positive integers, got {','.join(map(str, options.world_sizes))}")
        if not distributed_variants(cases):
            raise ValueError("--world-size applies to the distributed variants (ddp), and the selection has none")
        for size in options.world_sizes:  # a batch that cannot be split fails now, not in a rank
            plan_cases(options.variants, options.devices, options.phases, options.dtypes, options.sizes,
                       quick=options.quick, scaling=options.scaling, world_size=size)
    elif under_torchrun():
        others = [case.variant for case in cases if not VARIANTS[case.variant].distributed]
        if options.variants is not None and others:
            raise ValueError(f"under torchrun only the distributed variants run; leave out {others[0]}")
    if not options.collective_timeout_s > 0:
        raise ValueError(f"--collective-timeout-s must be positive, got {options.collective_timeout_s}")
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
    too_many = oversubscription(options.threads)
    if too_many:
        print(f"twolayer run: warning: {too_many}", file=sys.stderr, flush=True)
    state = machine_state(options.out)
    if state.quiet_s is None:
        print(f"twolayer run: no quiet canary is known yet for this machine, threads and versions (in {options.out}): "
              "a run slowed from start to finish can be told only against another run, by `twolayer compare`; this "
              "run's calmest canaries become the reference", flush=True)
    if state.busy:
        print(f"twolayer run: warning: the machine is busy ({state.describe()}); benchmarks timed while it stays "
              "busy are flagged disturbed, and retimed when it calms down", file=sys.stderr, flush=True)
    return state


def canaries(bench: dict) -> list[float]:
    """The canaries timed before and after a benchmark, those recorded."""
    return [c for c in (bench["extra_info"].get(k) for k in ("canary_before_s", "canary_after_s")) if c]


def disturbed_benchmarks(result: dict) -> list[dict]:
    """The benchmarks whose canary ran slow against the run's usual or the machine's quiet one, or
    that began with another process's threads sharing their cores."""
    benchmarks = result["benchmarks"]
    reference = canary_reference([max(canaries(b), default=0.0) for b in benchmarks],
                                 result.get("twolayer", {}).get("quiet_canary_s"))
    machine = result.get("machine_info") or {}
    return [b for b in benchmarks
            if any(is_disturbed(c, reference) for c in canaries(b)) or contended(b["extra_info"], machine)]


def calmer(again: dict, first: dict, machine: dict) -> bool:
    """Whether a benchmark timed again is the better measurement: free of a co-tenant where the
    first was not, or as free and with a calmer canary."""
    shared_again, shared_first = contended(again["extra_info"], machine), contended(first["extra_info"], machine)
    if shared_again != shared_first:
        return shared_first
    return max(canaries(again), default=0.0) < max(canaries(first), default=0.0)


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
            if calmer(again, bench, result.get("machine_info") or {}):
                result["benchmarks"][index] = again
            else:
                bench["extra_info"]["retimed"] = attempt


def retiming_suite(arguments: list[str]) -> int:
    """The suite's exit code for a retiming; an interrupt of it is the run's."""
    suite = run_pytest([sys.executable, "-m", "pytest", *arguments])
    if suite.interrupted:
        raise RunInterrupted(None, 0)
    return suite.returncode


def remember_quiet(result: dict, options: RunOptions, before: MachineState) -> None:
    """A run that started with no other process runnable and whose canaries were calm teaches the
    machine's quiet canary (kept only when quieter than the one known)."""
    if before.others_running:
        return
    seen = [c for bench in result["benchmarks"] for c in canaries(bench)]
    if seen:
        remember_quiet_canary(options.out, statistics.median(seen))


def run_suite(options: RunOptions) -> Path | None:
    """Run the suite; return the run directory, which exists only if the whole run succeeded (None
    on a rank other than 0 under torchrun: rank 0 writes the results).

    On Ctrl-C, raise `RunInterrupted`: the benchmarks that had finished are kept in a run
    directory marked interrupted, or, when none had, nothing is.
    """
    if under_torchrun():  # one rank of a torchrun job: its distributed variants, no retiming (ranks would disagree)
        ranked_names = ",".join(name for name, info in VARIANTS.items() if info.distributed)
        options = replace(options, variants=options.variants or ranked_names, retimes=0)
        if int(os.environ["RANK"]) != 0:  # rank 0 keeps the results; the others work in a scratch directory
            scratch = Path(tempfile.mkdtemp(prefix=f"twolayer-rank{os.environ['RANK']}-"))
            try:
                run_in(replace(options, out=scratch, peak=False))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return None
    return run_in(options)


def run_in(options: RunOptions) -> Path | None:
    """`run_suite` once the options are this process's own."""
    cases = check_options(options)
    local, local_tests, ranked = split_selection(options, cases)
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
        result = run_local(local, local_tests, partial, run_id, peak_path, quiet_canary_s)
        if result is None:
            return None  # a rank other than 0 under torchrun: it saved nothing
        try:
            retime_disturbed(result, local, partial, run_id, peak_path, quiet_canary_s, retiming_suite,
                             state=machine_state)
        except (RunInterrupted, KeyboardInterrupt):  # every benchmark had been timed once: all kept
            raise keep_result(result, partial, options.out / f"{run_id}{INTERRUPTED_SUFFIX}") from None
        for world_size in (options.world_sizes or ()) if ranked is not None else ():
            try:
                result = merge_runs(result, run_ranks(ranked, world_size, partial, run_id, peak_path, quiet_canary_s))
            except RunInterrupted:
                raise keep_result(result, partial, options.out / f"{run_id}{INTERRUPTED_SUFFIX}") from None
        remember_quiet(result, options, before)
        result_path = partial / RESULT_FILE
        # pytest-benchmark indents every raw timing onto its own line; compact JSON is a third the size.
        result_path.write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
        (partial / PASSED_FILE).unlink(missing_ok=True)
        run_dir = options.out / run_id
        os.replace(partial, run_dir)
        return run_dir
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def run_local(options: RunOptions, tests: list[str] | None, partial: Path, run_id: str, peak_path: Path | None,
              quiet_canary_s: float | None) -> dict | None:
    """The suite (or its `tests`) in a process of its own (under torchrun: this rank's, rank 0 alone
    saving it)."""
    passed_path = (partial / PASSED_FILE).resolve()
    arguments = [*pytest_arguments(options, (partial / RESULT_FILE).resolve(), run_id, peak_path, quiet_canary_s,
                                   only=tests),
                 "-p", "twolayer.outcomes", f"--tl-passed-file={passed_path}"]
    runner = "twolayer.rank_pytest" if under_torchrun() else "pytest"
    suite = run_pytest([sys.executable, "-m", runner, *arguments])
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
    if under_torchrun() and int(os.environ["RANK"]) != 0:
        return None
    result_path = partial / RESULT_FILE
    with open(result_path, encoding="utf-8") as handle:
        result = json.load(handle)
    if not result.get("benchmarks"):
        raise RunFailed("the benchmark suite recorded no benchmarks; no results were written")
    return result


def run_ranks(options: RunOptions, world_size: int, partial: Path, run_id: str, peak_path: Path | None,
              quiet_canary_s: float | None) -> dict:
    """The distributed variants at `world_size`: that many ranks on this machine, started by torch's
    launcher (`twolayer.ddp_launch`); rank 0's pytest-benchmark JSON."""
    print(f"starting {world_size} rank(s) for {options.variants} ...", flush=True)
    json_path = (partial / f"ranks-{world_size}.json").resolve()
    log_dir = (partial / f"ranks-{world_size}").resolve()  # the other ranks' output: read for a failure's line
    command = [sys.executable, "-m", "twolayer.ddp_launch", f"--world-size={world_size}", f"--log-dir={log_dir}", "--",
               *pytest_arguments(options, json_path, run_id, peak_path, quiet_canary_s, only=PHASE_TESTS)]
    suite = run_pytest(command)
    if suite.interrupted:
        raise RunInterrupted(None, 0)
    named = [line.removeprefix("twolayer run: ") for line in suite.errors if line.startswith("twolayer run: rank")]
    if not (named and suite.returncode != 0):
        # a failure the launcher named is told in its one line: rank 0's own words on it (c10d's
        # timeout warnings, pytest's `ERROR:` of a rank that could not join) would repeat it
        for line in suite.errors:
            if not line.startswith("twolayer run: rank"):
                print(line, file=sys.stderr)
    if suite.returncode != 0 or not json_path.is_file():
        why = named[0] if named else f"the launcher's exit code {suite.returncode}"
        raise RunFailed(f"ddp at world size {world_size}: {why}; no results were written")
    result = json.loads(json_path.read_text(encoding="utf-8"))
    json_path.unlink()
    shutil.rmtree(log_dir, ignore_errors=True)
    if not result.get("benchmarks"):
        raise RunFailed(f"ddp at world size {world_size} recorded no benchmarks; no results were written")
    return result


def merge_runs(result: dict, more: dict) -> dict:
    """One run of the benchmarks of both: the first's machine and commit, the benchmarks of both."""
    result["benchmarks"].extend(more["benchmarks"])
    return result


def keep_result(result: dict, partial: Path, run_dir: Path) -> RunInterrupted:
    """After an interrupt between launches: keep what finished, marked interrupted."""
    finished = [bench for bench in result["benchmarks"] if bench["extra_info"].get("phase") != "overhead"]
    if not finished:
        return RunInterrupted(None, 0)
    result.setdefault("twolayer", {}).update(run_id=run_dir.name, interrupted=True)
    (partial / RESULT_FILE).write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
    (partial / PASSED_FILE).unlink(missing_ok=True)
    os.replace(partial, run_dir)
    return RunInterrupted(run_dir, len(result["benchmarks"]))


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
