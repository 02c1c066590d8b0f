"""`twolayer count`: deterministic counters per benchmark (instructions, aten ops, bytes allocated).

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.count.driver".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from twolayer import SUITE_VERSION
from twolayer.atomic_files import writable_directory, write_all_atomically
from twolayer.cases import plan_cases
from twolayer.count.callgrind import CountError, callgrind_totals, dumps_in_order, valgrind_environment, worker_environment
from twolayer.provenance import git_commit, machine_facts
from twolayer.report.counters import counters_report_files
from twolayer.results.counters import counters_frame
from twolayer.results.run_dirs import new_run_id
from twolayer.schema import COUNTERS_FILE, EMPTY, METRICS, OPS_METRICS
from twolayer.variants import VARIANTS

INSTALL_VALGRIND = ("valgrind is not installed: install it (Debian/Ubuntu: `apt-get install -y valgrind`; "
                    "macOS: not supported), or count without instructions: --metrics aten_ops,alloc_bytes"
                    " (and launches,gpu_kernels on cuda)")
# The spread of repeated counts measured on this project's machine: see the README's counters
# section. A gate's threshold below it would flap.
DEFAULT_THRESHOLD_PCT = 2.0
CUDA_CALLGRIND_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class CountOptions:
    variants: str | None = None
    devices: str | None = None
    phases: str | None = None
    dtypes: str | None = None
    sizes: str | None = None
    quick: bool = False  # the selection of `run --quick` (compiling variants left out unless named)
    metrics: tuple[str, ...] = METRICS
    # Counted calls per benchmark (the figure is their mean), and calls before them (first-call
    # caches, allocator growth, compilation). Each call runs its setup too, and under Valgrind a
    # call costs about a second, so these two set a full count's time: 10 and 3 took 12.3 min.
    calls: int = 5
    warmup: int = 2
    out: Path = Path("results")
    valgrind: str = "valgrind"
    # Seconds one device's callgrind process may take. Past it the cpu count fails; on cuda, whose
    # driver may not run (or may hang) under Valgrind, the instructions are left empty with the
    # reason. None: no limit on the cpu, CUDA_CALLGRIND_TIMEOUT_S on cuda.
    callgrind_timeout_s: float | None = None


def parse_metrics(text: str | None) -> tuple[str, ...]:
    names = tuple(name.strip() for name in (text or ",".join(METRICS)).split(",") if name.strip())
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    return names


def valgrind_version(valgrind: str) -> str | None:
    path = shutil.which(valgrind)
    if path is None:
        return None
    try:
        # with the tool named: a carried kit (`.ci/valgrind-kit`) holds callgrind only, not the default tool
        out = subprocess.run([path, "--tool=callgrind", "--version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def run_worker(command: list[str], what: str, log: Path, environment: dict[str, str] | None = None,
               timeout_s: float | None = None) -> None:
    """Run a counting worker to its end, its output in `log`; a failure or a timeout is a `CountError` whose
    line names `what` and the worker's last error."""
    with open(log, "w", encoding="utf-8") as handle:
        # a session of its own: on timeout the worker goes with whatever it started (a valgrind
        # wrapper that does not exec, inductor's compile workers)
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env={**worker_environment(), **(environment or {})}, start_new_session=True)
        try:
            process.wait(timeout=timeout_s)
        except BaseException as error:  # past its time, or Ctrl-C: nothing of the count is left running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if isinstance(error, subprocess.TimeoutExpired):
                raise CountError(f"the {what} count did not finish within {timeout_s:g} s") from None
            raise
    if process.returncode != 0:
        tail = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        if process.returncode == -signal.SIGILL:
            raise CountError(f"the {what} count died of an illegal instruction: code built for an instruction set "
                             "that Valgrind does not emulate (AVX-512?); "
                             + next((line for line in tail if "unhandled instruction" in line), tail[-1] if tail else ""))
        raise CountError(f"the {what} count failed (exit {process.returncode}): {tail[-1] if tail else 'no output'}")


def count_instructions(plan_path: Path, work: Path, options: CountOptions,
                       device: str = "cpu") -> tuple[dict[str, float], dict]:
    """Instructions per call by benchmark id (and `harness_empty/<device>`), from one callgrind run
    over the plan's benchmarks (of one device), and where that run's time went (seconds under
    Valgrind: importing, and each benchmark)."""
    dumps = work / f"callgrind-{device}"
    dumps.mkdir()
    out = work / f"instructions-{device}.json"
    run_worker([options.valgrind, "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={dumps}/callgrind.out",
                sys.executable, "-m", "twolayer.count.worker", "instructions", str(plan_path), str(out)],
               f"{device} instruction", work / f"valgrind-{device}.log", valgrind_environment(),
               options.callgrind_timeout_s or (CUDA_CALLGRIND_TIMEOUT_S if device != "cpu" else None))
    result = json.loads(out.read_text(encoding="utf-8"))
    files = dumps_in_order(dumps, "callgrind.out")
    # one dump per benchmark, in order; the dump at exit (numbered after them, or unnumbered)
    # holds nothing, since collection was off
    if len(files) < len(result["order"]) or any(callgrind_totals(extra) for extra in files[len(result["order"]):]):
        raise CountError(f"callgrind wrote {len(files)} dumps for {len(result['order'])} benchmarks")
    per_call = {}
    for entry, path in zip(result["order"], files):
        name = entry["id"] if entry["id"] != EMPTY else f"{EMPTY}/{entry['device']}"
        per_call[name] = callgrind_totals(path) / result["calls"]
    return per_call, {"import_s": round(result.get("import_seconds", 0.0), 1),
                      "benchmarks_s": {(f"{EMPTY}/{device}" if name == EMPTY else name): round(value, 1)
                                       for name, value in result.get("seconds", {}).items()}}


def count_ops(plan_path: Path, work: Path, device: str = "cpu") -> tuple[dict[str, dict], str | None]:
    """The native worker's counts by benchmark id (of the plan's one device), and why launches
    were not counted on cuda (None where they were, or where nothing ran on cuda)."""
    out = work / f"ops-{device}.json"
    # with the environment of the count under Valgrind: inductor then compiles the same kernels
    # natively first, and the count under Valgrind finds them in inductor's cache
    run_worker([sys.executable, "-m", "twolayer.count.worker", "ops", str(plan_path), str(out)], f"{device} op",
               work / f"ops-{device}.log", valgrind_environment())
    result = json.loads(out.read_text(encoding="utf-8"))
    return result["counts"], result.get("launches_note")


def per_call(values: list | None) -> float | None:
    """The mean over the counted calls; None where not counted."""
    return None if values is None else float(np.mean(values))


def on_device(device: str, count, metrics: str, what: str, not_counted: dict[str, str], progress):
    """`count()` of one device's benchmarks. A failure on the cpu fails the whole count; on another
    device (a driver that cannot run under Valgrind, a profiler refused) it leaves that device's
    `metrics` empty, with why in `not_counted`, and None is returned."""
    try:
        return count()
    except CountError as error:
        if device == "cpu":
            raise
        not_counted[f"{metrics}/{device}"] = str(error)
        progress(f"{device}: {what} not counted: {error}")
        return None


def count_rows(cases: list, instructions: dict[str, float] | None, ops: dict[str, dict] | None) -> list[dict]:
    rows = []
    for case in cases:
        counted = (ops or {}).get(case.id, {})
        rows.append({"device": case.device, "variant": case.variant, "phase": case.phase, "dtype": case.dtype,
                     "dtype_mode": case.dtype_mode, "size": case.problem.size_label,
                     "instructions": None if instructions is None else instructions.get(case.id),
                     "aten_ops": per_call(counted.get("aten_ops")),
                     "alloc_bytes": per_call(counted.get("alloc_bytes")),
                     "launches": per_call(counted.get("launches")),
                     "gpu_kernels": per_call(counted.get("gpu_kernels")),
                     "aten_ops_varied": bool(counted.get("aten_ops")) and len(set(counted["aten_ops"])) > 1,
                     "ops_counted_by": counted.get("ops_counted_by")})
    for device in sorted({case.device for case in cases}):
        if instructions is not None and f"{EMPTY}/{device}" in instructions:
            rows.append({"device": device, "variant": EMPTY, "phase": "overhead", "dtype": None, "dtype_mode": None,
                         "size": None, "instructions": instructions[f"{EMPTY}/{device}"], "aten_ops": None,
                         "alloc_bytes": None, "launches": None, "gpu_kernels": None, "aten_ops_varied": False,
                         "ops_counted_by": None})
    return rows


def counted_cases(options: CountOptions) -> tuple[CountOptions, list]:
    """The selection's cases that can be counted here, and the options narrowed to them: the
    distributed variants are left out of a default selection and refused by name."""
    cases = [case for case in plan_cases(options.variants, options.devices, options.phases, options.dtypes,
                                         options.sizes, quick=options.quick) if case.skip_reason is None]
    ranked = sorted({case.variant for case in cases if VARIANTS[case.variant].distributed})
    if ranked and options.variants is not None:
        raise CountError(f"{ranked[0]} is not counted: its all-reduce runs on the backend's own threads, whose "
                         "instruction counts vary; time it with `twolayer run`")
    if ranked:  # the default selection: every variant but the distributed ones
        options = replace(options, variants=",".join(dict.fromkeys(c.variant for c in cases if c.variant not in ranked)))
        cases = [case for case in cases if case.variant not in ranked]
    if not cases:
        raise CountError("nothing to count: every benchmark of the selection is skipped here")
    return options, cases


def count_all_ops(devices: list[str], plans: dict[str, Path], work: Path, not_counted: dict[str, str],
                  progress) -> dict[str, dict]:
    """The native counts (aten ops, bytes, launches) of every device's benchmarks, by case id."""
    ops = {}
    for device in devices:
        result = on_device(device, lambda: count_ops(plans[device], work, device), ",".join(OPS_METRICS),
                           "aten ops, bytes and launches", not_counted, progress)
        if result is None:
            continue
        counted, launches_note = result
        ops.update(counted)
        if launches_note is not None:  # the worker has one only where launches were asked for
            not_counted[f"launches,gpu_kernels/{device}"] = launches_note
            progress(f"{device}: {launches_note}")
    return ops


def count_all_instructions(devices: list[str], cases: list, plans: dict[str, Path], work: Path,
                           options: CountOptions, valgrind: str, not_counted: dict[str, str], spent: dict,
                           progress) -> dict[str, float]:
    """Instructions per call of every device's benchmarks under callgrind, one Valgrind process a
    device (a driver that fails there loses only its own); where the time went, into `spent`."""
    instructions, spent["instructions_s"], spent["import_s"], spent["benchmarks_s"] = {}, 0.0, 0.0, {}
    for device in devices:
        progress(f"counting {device} instructions under callgrind ({valgrind}): "
                 f"{sum(c.device == device for c in cases)} benchmarks in one process; "
                 "importing torch under Valgrind alone takes about a minute ...")
        stage = time.time()
        result = on_device(device, lambda: count_instructions(plans[device], work, options, device),
                           "instructions", "instructions", not_counted, progress)
        spent["instructions_s"] = round(spent["instructions_s"] + time.time() - stage, 1)
        if result is None:
            continue
        counted, under_valgrind = result
        instructions.update(counted)
        spent["import_s"] = round(spent["import_s"] + under_valgrind["import_s"], 1)
        spent["benchmarks_s"].update(under_valgrind["benchmarks_s"])
        slowest = sorted(under_valgrind["benchmarks_s"].items(), key=lambda item: -item[1])[:3]
        progress(f"callgrind, {device}: {time.time() - stage:.0f} s, of which importing "
                 f"{under_valgrind['import_s']:.0f} s; slowest: "
                 + ", ".join(f"{name} {value:.0f} s" for name, value in slowest))
    return instructions


def counters_record(options: CountOptions, rows: list[dict], run_id: str, started: float, spent: dict,
                    valgrind: str | None, not_counted: dict[str, str]) -> dict:
    """counters.json's content: the counts with what was counted, how, and on what."""
    facts = machine_facts()
    return {"twolayer": {"kind": "counters", "suite_version": SUITE_VERSION, "run_id": run_id,
                         "commit": git_commit(), "datetime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                         "seconds": round(time.time() - started, 1), "spent": spent, "metrics": list(options.metrics),
                         "calls": options.calls, "warmup": options.warmup, "threads": 1, "valgrind": valgrind,
                         # a metric a tool could not count on a device: "metric/device" -> why
                         "not_counted": not_counted,
                         # the vector ISA torch ran under Valgrind (instructions differ by ISA)
                         "valgrind_environment": valgrind_environment() if valgrind else None,
                         "machine": {**facts, "torch_threads": 1, "numpy_threads": 1}},
            "benchmarks": rows}


def count_selection(options: CountOptions, run_dir: Path | None = None,
                    progress=print) -> Path:
    """Count the selection; write counters.json and summary.csv into a new run directory under
    `options.out` (or into `run_dir`, beside a timing run). Nothing is written if it fails."""
    options, cases = counted_cases(options)
    valgrind = None
    if "instructions" in options.metrics:
        valgrind = valgrind_version(options.valgrind)
        if valgrind is None:
            raise CountError(INSTALL_VALGRIND)
    if run_dir is None:
        writable_directory(options.out)  # the selection is good: before the minutes of counting, not after
    plan = {"variants": options.variants, "devices": options.devices, "phases": options.phases,
            "dtypes": options.dtypes, "sizes": options.sizes, "quick": options.quick, "calls": options.calls,
            "warmup": options.warmup, "metrics": list(options.metrics)}
    devices = sorted({case.device for case in cases})
    started = time.time()
    not_counted = {}  # "metric/device": why it is empty there (a tool that cannot run there)
    with tempfile.TemporaryDirectory(prefix="twolayer-count-") as scratch:
        work = Path(scratch)
        plans = {}  # one plan a device: each device is counted in processes of its own
        for device in devices:
            plans[device] = work / f"plan-{device}.json"
            plans[device].write_text(json.dumps({**plan, "devices": device}), encoding="utf-8")
        ops, instructions, spent = None, None, {}
        if set(OPS_METRICS) & set(options.metrics):
            progress(f"counting aten ops and bytes allocated{' and launches' if 'cuda' in devices else ''}: "
                     f"{len(cases)} benchmarks, {options.calls} calls each ...")
            stage = time.time()
            ops = count_all_ops(devices, plans, work, not_counted, progress)
            spent["ops_s"] = round(time.time() - stage, 1)
        if valgrind is not None:
            instructions = count_all_instructions(devices, cases, plans, work, options, valgrind, not_counted, spent,
                                                  progress)
    rows = count_rows(cases, instructions, ops)
    for row in rows:  # a metric not asked for stays empty, never a stale or made-up figure
        for metric in METRICS:
            if metric not in options.metrics:
                row[metric] = None
    out_dir = run_dir
    if out_dir is None:
        options.out.mkdir(parents=True, exist_ok=True)
        out_dir = options.out / new_run_id(options.out)
    record = counters_record(options, rows, out_dir.name, started, spent, valgrind, not_counted)
    files = {out_dir / COUNTERS_FILE: json.dumps(record, indent=1) + "\n"}
    if run_dir is None:  # a counters-only run: its own summary and report (beside timings, `twolayer run` writes them)
        files.update(counters_report_files(counters_frame(record), out_dir))
    write_all_atomically(files)
    return out_dir
