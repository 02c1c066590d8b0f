"""`twolayer count`: deterministic counters per benchmark (instructions, aten ops, bytes allocated).

Wall time on a shared runner moves 1.5-3x from run to run; an instruction count does not. So,
as CodSpeed and PyTorch's own PR gate do, each benchmark is also counted under Valgrind's
callgrind (a CPU simulator): the whole selection in one Valgrind process, since importing torch
under it costs about a minute, collecting only inside the counted calls (`count_worker`). A second,
native process counts the aten ops dispatched and the bytes allocated per call.

What the counts are not: a simulated instruction count is not time. A call bound by memory
bandwidth, cache misses or a long dependency chain costs more than its instructions say, and
with one thread (as counted) the work of a parallel region is counted once, as if serial, so
a thread pool's overhead and speed-up are both invisible. A change of instructions is a change of
work; whether it is a change of time is what `twolayer run` and `twolayer gate` measure.

The run directory holds `counters.json` (the counts, with provenance) and `summary.csv`; beside a
`twolayer run` (`--counters`) the counters join its timings in `summary.csv` and `report.md`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from twolayer import SUITE_VERSION
from twolayer.count_worker import EMPTY, ONE_THREAD

COUNTERS_FILE = "counters.json"
# launches and gpu_kernels: cuda only (the timing side's one profiled call records its own
# `kernel_launches` and `kernels`; these are the mean of the counted calls)
METRICS = ("instructions", "aten_ops", "alloc_bytes", "launches", "gpu_kernels")
OPS_METRICS = tuple(m for m in METRICS if m != "instructions")  # the native worker's
KEY = ("device", "variant", "phase", "dtype", "dtype_mode", "size")
INSTALL_VALGRIND = ("valgrind is not installed: install it (Debian/Ubuntu: `apt-get install -y valgrind`; "
                    "macOS: not supported), or count without instructions: --metrics aten_ops,alloc_bytes"
                    " (and launches,gpu_kernels on cuda)")
# The spread of repeated counts measured on this project's machine: see the README's counters
# section. A gate's threshold below it would flap.
DEFAULT_THRESHOLD_PCT = 2.0
CUDA_CALLGRIND_TIMEOUT_S = 900.0


class CountError(Exception):
    """A count that could not be made: one line, for the CLI."""


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


def callgrind_totals(path: Path) -> int:
    """The instruction total of one callgrind dump (`totals:` in newer files, `summary:` in older)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^(?:totals|summary):\s+(\d+)", text, flags=re.MULTILINE)
    if found is None:
        raise CountError(f"{path.name}: a callgrind dump without a total")
    return int(found.group(1))


def dumps_in_order(folder: Path, stem: str) -> list[Path]:
    """callgrind names the n-th client-request dump `<stem>.<n>`; the final one at exit is `<stem>`."""
    numbered = [(int(p.name.rsplit(".", 1)[1]), p) for p in folder.glob(f"{stem}.*") if p.name.rsplit(".", 1)[1].isdigit()]
    return [p for _, p in sorted(numbered)]


def worker_environment() -> dict[str, str]:
    from twolayer.environment import PROJECT_ROOT

    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **ONE_THREAD, "PYTHONPATH": path}


CPUINFO = "/proc/cpuinfo"


def valgrind_cpu_capability() -> str:
    """The widest vector ISA for the code torch runs under Valgrind: AVX2 where the cpu has it.

    Valgrind emulates no AVX-512. ATen and the BLAS ask the cpu (cpuid), which Valgrind answers
    without AVX-512, but inductor reads /proc/cpuinfo and checks its choice in a child process
    that runs outside Valgrind, and compiles with `-march=native`: on an AVX-512 cpu
    `torch.compile` would build kernels that die under Valgrind with an illegal instruction.
    `ATEN_CPU_CAPABILITY` caps the ISA, `TORCHINDUCTOR_CPP_MARCH` the compiler's target
    (`valgrind_environment`)."""
    try:
        with open(CPUINFO, encoding="utf-8") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        flags = []
    return "avx2" if "avx2" in flags else "default"


def valgrind_environment() -> dict[str, str]:
    """What the worker under Valgrind runs with, beyond `worker_environment`: one string-hash seed
    (Python's per-process random one moves dict and set work, and so the count, from one process
    to the next), and on x86 the ISA cap."""
    fixed = {"PYTHONHASHSEED": "0"}
    if platform.machine() not in ("x86_64", "AMD64"):
        return fixed
    capability = valgrind_cpu_capability()
    return {**fixed, "ATEN_CPU_CAPABILITY": capability,
            "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3" if capability == "avx2" else "x86-64"}


def run_worker(command: list[str], what: str, log: Path, environment: dict[str, str] | None = None,
               timeout_s: float | None = None) -> None:
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
                sys.executable, "-m", "twolayer.count_worker", "instructions", str(plan_path), str(out)],
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
    run_worker([sys.executable, "-m", "twolayer.count_worker", "ops", str(plan_path), str(out)], f"{device} op",
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


def count_selection(options: CountOptions, run_dir: Path | None = None,
                    progress=print) -> Path:
    """Count the selection; write counters.json and summary.csv into a new run directory under
    `options.out` (or into `run_dir`, beside a timing run). Nothing is written if it fails."""
    from twolayer.cases import plan_cases
    from twolayer.environment import git_commit, machine_facts
    from twolayer.files import writable_directory, write_all_atomically
    from twolayer.run import new_run_id
    from twolayer.variants import VARIANTS

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
            stage, ops = time.time(), {}
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
            spent["ops_s"] = round(time.time() - stage, 1)
        if valgrind is not None:
            instructions, spent["instructions_s"], spent["import_s"], spent["benchmarks_s"] = {}, 0.0, 0.0, {}
            for device in devices:  # one Valgrind process a device: a driver that fails there loses only its own
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
    rows = count_rows(cases, instructions, ops)
    for row in rows:  # a metric not asked for stays empty, never a stale or made-up figure
        for metric in METRICS:
            if metric not in options.metrics:
                row[metric] = None
    out_dir = run_dir
    if out_dir is None:
        options.out.mkdir(parents=True, exist_ok=True)
        out_dir = options.out / new_run_id(options.out)
    run_id = out_dir.name
    facts = machine_facts()
    record = {"twolayer": {"kind": "counters", "suite_version": SUITE_VERSION, "run_id": run_id,
                           "commit": git_commit(), "datetime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                           "seconds": round(time.time() - started, 1), "spent": spent, "metrics": list(options.metrics),
                           "calls": options.calls, "warmup": options.warmup, "threads": 1, "valgrind": valgrind,
                           # a metric a tool could not count on a device: "metric/device" -> why
                           "not_counted": not_counted,
                           # the vector ISA torch ran under Valgrind (instructions differ by ISA)
                           "valgrind_environment": valgrind_environment() if valgrind else None,
                           "machine": {**facts, "torch_threads": 1, "numpy_threads": 1}},
              "benchmarks": rows}
    files = {out_dir / COUNTERS_FILE: json.dumps(record, indent=1) + "\n"}
    if run_dir is None:  # a counters-only run: its own summary and report (beside timings, `twolayer run` writes them)
        files.update(counters_report_files(counters_frame(record), out_dir))
    write_all_atomically(files)
    return out_dir


def counters_frame(record: dict) -> pd.DataFrame:
    """The counters of one counters.json as a table, with its provenance on every row."""
    info = record["twolayer"]
    machine = info.get("machine", {})
    frame = pd.DataFrame(record["benchmarks"], columns=[*KEY, *METRICS, "aten_ops_varied", "ops_counted_by"])
    for column, value in (("run_id", info.get("run_id")), ("commit", info.get("commit")),
                          ("counted_threads", info.get("threads")), ("count_calls", info.get("calls")),
                          ("valgrind", info.get("valgrind")), ("cpu_model", machine.get("cpu_model")),
                          ("hardware", machine.get("hardware")), ("gpu_model", machine.get("gpu_model")),
                          ("cuda_version", machine.get("cuda_version")), ("torch_version", machine.get("torch_version")),
                          ("numpy_version", machine.get("numpy_version")),
                          ("python_version", machine.get("python_version"))):
        frame[column] = value
    return frame


def read_counters(path: Path) -> pd.DataFrame:
    """A counters.json (or a run directory holding one) as a table; ValueError with one line if not."""
    path = path / COUNTERS_FILE if path.is_dir() else path
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(record, dict) or (record.get("twolayer") or {}).get("kind") != "counters" \
            or not isinstance(record.get("benchmarks"), list):
        raise ValueError(f"{path}: not a `twolayer count` result (no counters)")
    return counters_frame(record)


def counters_beside(run_json: Path) -> Path | None:
    """The counters.json of the same run directory, if the run was counted too."""
    candidate = run_json.parent / COUNTERS_FILE
    return candidate if candidate.is_file() else None


def compare_counters(base: pd.DataFrame, new: pd.DataFrame, metric: str, threshold: float) -> pd.DataFrame:
    """Per benchmark in both, the ratio of a deterministic metric (new / base) and its verdict:
    no bootstrap (the count does not vary from call to call), and a threshold above the spread of
    repeated counts, which is the metric's only noise."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    columns = [*KEY, metric]
    merged = base[columns].merge(new[columns], on=list(KEY), how="outer", suffixes=("_base", "_new"), indicator=True)
    rows = []
    for row in merged.to_dict("records"):
        old, now = row[f"{metric}_base"], row[f"{metric}_new"]
        if row["_merge"] != "both":
            verdict, ratio = ("only_in_base" if row["_merge"] == "left_only" else "only_in_new"), np.nan
        elif pd.isna(old) or pd.isna(now):
            verdict, ratio = "not_counted", np.nan
        elif old == 0:
            verdict, ratio = ("unchanged" if now == 0 else "slower"), (1.0 if now == 0 else np.inf)
        else:
            ratio = now / old
            verdict = "slower" if ratio > 1 + threshold else "faster" if ratio < 1 / (1 + threshold) else "unchanged"
        rows.append({**{k: row[k] for k in KEY}, "metric": metric, "base": old, "new": now, "ratio": ratio,
                     "verdict": verdict, "threshold": threshold})
    return pd.DataFrame(rows)


def framework_overhead(frame: pd.DataFrame, reference: str = "torch_manual") -> pd.DataFrame:
    """Per device, dtype and size: each variant's iteration instructions over the reference's (the
    hand-written torch iteration): what the framework's Python and dispatch add, ranked."""
    iteration = frame[(frame["phase"] == "iteration") & frame["instructions"].notna()]
    rows = []
    for (device, dtype, size), group in iteration.groupby(["device", "dtype", "size"]):
        base = group[group["variant"] == reference]
        if base.empty:
            continue
        reference_count = float(base["instructions"].iloc[0])
        for row in group.itertuples():
            rows.append({"device": device, "dtype": dtype, "size": size, "variant": row.variant,
                         "instructions": row.instructions, "added": row.instructions - reference_count,
                         "ratio": row.instructions / reference_count})
    if not rows:
        return pd.DataFrame(columns=["device", "dtype", "size", "variant", "instructions", "added", "ratio"])
    return pd.DataFrame(rows).sort_values(["device", "dtype", "size", "added"]).reset_index(drop=True)


def counters_markdown(frame: pd.DataFrame, h2: str = "##") -> str:
    """The counters section of report.md: per device, variant x phase; then the ranking."""
    from twolayer.flops import PHASES
    from twolayer.report import markdown_table

    counted = frame[frame[list(METRICS)].notna().any(axis=1)]
    if counted.empty:
        return ""
    parts = [f"{h2} Counters per call",
             "Deterministic counts, one thread (`twolayer count`): `instructions` from Valgrind's callgrind, "
             "in thousands (kinstr; on cuda the host's: Python, dispatch and the driver's launch path); "
             "`aten_ops`, the aten operators dispatched (torch variants only); `alloc_kib`, the most memory a "
             "call held beyond its start (on cuda, device memory); on cuda `launches`, the host's calls that queue "
             "device work, and `gpu_kernels`, the kernels, copies and memsets they made. Instructions are work, "
             "not time: memory-bound or parallel work costs more or less than they say."]
    for (device, dtype, size), group in counted[counted["phase"] != "overhead"].groupby(["device", "dtype", "size"]):
        view = group.assign(kinstr=group["instructions"] / 1e3, alloc_kib=group["alloc_bytes"] / 1024)
        shown = ["kinstr", "aten_ops", "alloc_kib"] + [m for m in ("launches", "gpu_kernels") if view[m].notna().any()]
        table = view.pivot_table(index="variant", columns="phase", values=shown, aggfunc="first", dropna=False)
        order = [p for p in PHASES if p in set(group["phase"])]
        flat = pd.DataFrame(index=table.index)
        for phase in order:
            for metric in shown:
                if (metric, phase) in table.columns:
                    flat[f"{phase} {metric}"] = table[(metric, phase)]
        flat = flat.reset_index()
        parts += [f"{h2}# {device} {dtype} {size}",
                  markdown_table(flat, {c: ("{:.0f}" if not c.endswith("kinstr") else "{:.1f}") for c in flat.columns
                                        if c != "variant"})]
    empty = counted[counted["variant"] == EMPTY]
    if not empty.empty:
        parts.append("The counting's own cost, an empty call counted the same way: " + "; ".join(
            f"{row.device} {row.instructions:.0f} instructions" for row in empty.itertuples()) + ".")
    ranking = framework_overhead(counted)
    if not ranking.empty:
        view = ranking.assign(kinstr=ranking["instructions"] / 1e3, added_kinstr=ranking["added"] / 1e3)
        parts += [f"{h2} Instructions each variant's iteration adds over torch_manual",
                  "The hand-written torch iteration is the reference: what a variant adds beyond it is Python, "
                  "dispatch, autograd and optimizer bookkeeping (negative: less work than the reference).",
                  markdown_table(view[["device", "dtype", "size", "variant", "kinstr", "added_kinstr", "ratio"]],
                                 {"kinstr": "{:.1f}", "added_kinstr": "{:+.1f}", "ratio": "{:.2f}"})]
    return "\n\n".join(parts)


def counters_report_files(frame: pd.DataFrame, out: Path) -> dict[Path, str]:
    """summary.csv and report.md of a counters-only run directory."""
    info = frame.iloc[0] if not frame.empty else None
    heading = "# twolayer counters report"
    where = "" if info is None else (f"Run `{info['run_id']}`: cpu {info['cpu_model']} ({info['hardware']}), torch "
                                      f"{info['torch_version']}, numpy {info['numpy_version']}, {info['valgrind']}, "
                                      f"commit {info['commit']}; {info['count_calls']} counted calls per benchmark.")
    return {out / "summary.csv": frame.to_csv(index=False),
            out / "report.md": "\n\n".join(filter(None, [heading, where, counters_markdown(frame)])) + "\n"}
