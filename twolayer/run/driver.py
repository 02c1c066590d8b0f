"""`twolayer run`: the benchmark suite under a fresh run id, its JSON moved into place only when whole."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from twolayer.cases import BenchCase, plan_cases
from twolayer.disturbance import canaries
from twolayer.measure.canary import MachineState, machine_state, remember_quiet_canary
from twolayer.measure.peak import cached_peaks
from twolayer.provenance import PROJECT_ROOT, oversubscription, set_threads
from twolayer.results.run_dirs import new_run_id
from twolayer.run.keep import OWNER_FILE, claim_partial, clean_abandoned, keep_finished, keep_result, merge_runs
from twolayer.run.options import RunFailed, RunInterrupted, RunOptions
from twolayer.run.pytest_session import (
    BENCH_DIR,
    OVERHEAD_TESTS,
    PHASE_TESTS,
    SuiteOutcome,
    is_suite_noise,
    pytest_arguments,
    relay,
    under_torchrun,
    write_failure,
)
from twolayer.run.retime import retime_disturbed
from twolayer.schema import INTERRUPTED_SUFFIX, PASSED_FILE, PEAK_FILE, RESULT_FILE
from twolayer.variants import VARIANTS
from twolayer.variants.ddp import launched_world_size


def distributed_variants(cases: list[BenchCase]) -> list[str]:
    return list(dict.fromkeys(case.variant for case in cases if VARIANTS[case.variant].distributed))


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
    busy = [key for key, peak in peaks.items() if peak.disturbed]
    if busy:  # a peak taken on a busy machine is no ceiling: the reports leave it out
        print(f"the matmul peak of {', '.join(busy)} was measured on a busy machine: not cached, and the reports "
              "give no distance from it", flush=True)


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
    for abandoned in clean_abandoned(options.out):
        print(f"twolayer run: removed {abandoned}, left by a run that was killed before it finished", file=sys.stderr)
    run_id = new_run_id(options.out)
    partial = options.out / f".{run_id}.partial"
    claim_partial(partial)
    try:
        before = check_machine(options)
        quiet_canary_s = before.quiet_s
        peak_path = (partial / PEAK_FILE).resolve() if options.peak else None
        if peak_path is not None:
            print("the matmul peak (measured once per machine, and cached in "
                  f"{options.out / 'peak-<host>.json'} when the machine was calm) ...", flush=True)
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
        (partial / OWNER_FILE).unlink(missing_ok=True)
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
                 "-p", "twolayer.run.pytest_outcomes", f"--tl-passed-file={passed_path}"]
    runner = "twolayer.run.rank_pytest" if under_torchrun() else "pytest"
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
    launcher (`twolayer.run.ddp_launch`); rank 0's pytest-benchmark JSON."""
    print(f"starting {world_size} rank(s) for {options.variants} ...", flush=True)
    json_path = (partial / f"ranks-{world_size}.json").resolve()
    log_dir = (partial / f"ranks-{world_size}").resolve()  # the other ranks' output: read for a failure's line
    command = [sys.executable, "-m", "twolayer.run.ddp_launch", f"--world-size={world_size}", f"--log-dir={log_dir}", "--",
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


