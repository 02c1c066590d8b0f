"""Reading pytest-benchmark runs of this suite into one tidy table (one row per benchmark of a run).

Every report is a filter or pivot of this table. Files are checked here, at the boundary: a file
that is missing, is not JSON, is not a pytest-benchmark run of this suite, or holds no benchmarks
raises `ResultsError` with a one-line message naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from twolayer.disturbance import DISTURBED_CANARY_RATIO, canary_reference, contended
from twolayer.results.counters import counters_beside, read_counters
from twolayer.results.derived import host_share, launch_floor_s
from twolayer.results.run_file import ResultsError, read_run
from twolayer.schema import KEY as COUNTER_KEY
from twolayer.schema import METRICS

NOISY_IQR_FRACTION = 0.10  # torch.utils.benchmark warns above this IQR/median too


# The tidy table's columns, in order; `raw_s` (the raw timings) stays in memory, out of the CSVs.
COLUMNS = (
    "run_id", "machine", "commit", "datetime", "device", "device_name", "variant", "phase", "dtype", "dtype_mode",
    "size", "world_size", "scaling", "n", "d_in", "hidden", "d_out", "median_s", "iqr_s", "mean_s", "stddev_s",
    "min_s", "max_s", "rounds",
    "iqr_fraction", "noisy", "passes", "pass_spread", "canary_ratio", "disturbed", "retimed", "run_canary_s",
    "quiet_canary_s", "load_avg_1m",
    "others_running", "compile_s", "flops", "gflops", "peak_gflops", "pct_of_peak", "floor_s",
    "instructions", "aten_ops", "alloc_bytes", "launches", "gpu_kernels", "device_median_s", "host_share",
    "device_busy_s", "kernel_launches", "kernels", "launch_floor_s", "peak_bytes", "comm_s", "torch_threads",
    "numpy_threads", "torch_version", "numpy_version", "cuda_version", "torch_blas", "numpy_blas", "cpu_model",
    "hardware", "cpu_isa", "gpu_model", "gpu_capability", "python_version", "suite_version", "interrupted",
    "benchmark",
)
KEY = ("run_id", "machine", "device", "variant", "phase", "dtype", "dtype_mode", "size", "world_size", "scaling")
# Kept in the table in memory, left out of the CSVs: the raw timings (per pass too), the time of
# the commit a run measured (`twolayer history` orders commits by it) and the file it came from.
IN_MEMORY = ("raw_s", "raw_passes", "commit_time", "source", "solo_raw_s")
# Statistics recomputed from the pooled raw timings when a benchmark ran in several passes.
POOLED = ("median_s", "iqr_s", "mean_s", "stddev_s", "min_s", "max_s", "rounds")


def provenance_fields(machine: dict) -> dict:
    """The versions and hardware a run recorded (its `machine_info`), as the table's columns."""
    return {
        "torch_version": machine.get("torch_version"),
        "numpy_version": machine.get("numpy_version"),
        "cuda_version": machine.get("cuda_version"),
        "torch_blas": machine.get("torch_blas"),
        "numpy_blas": machine.get("numpy_blas"),
        "cpu_model": machine.get("cpu_model"),
        "hardware": machine.get("hardware"),
        "cpu_isa": machine.get("cpu_isa"),
        "gpu_model": machine.get("gpu_model"),
        "gpu_capability": machine.get("gpu_capability"),
        "python_version": machine.get("python_version"),
    }


def stats_fields(stats: dict) -> dict:
    """pytest-benchmark's statistics of one benchmark, in seconds, and its IQR over its median."""
    median = float(stats["median"])
    return {
        "median_s": median,
        "iqr_s": float(stats["iqr"]),
        "mean_s": float(stats["mean"]),
        "stddev_s": float(stats["stddev"]),
        "min_s": float(stats["min"]),
        "max_s": float(stats["max"]),
        "rounds": int(stats["rounds"]),
        "iqr_fraction": float(stats["iqr"]) / median if median > 0 else np.nan,
    }


def machine_fields(extra: dict, meta: dict, machine: dict) -> dict:
    """What the machine was doing around one benchmark: its canaries, load and co-tenant."""
    canaries = [extra[k] for k in ("canary_before_s", "canary_after_s") if extra.get(k)]
    return {
        "canary_s": max(canaries, default=np.nan),
        # the lowest canary of the run: the run's own calm, for the reference when no quiet one is known
        "canary_low_s": min(canaries, default=np.nan),
        "quiet_canary_s": meta.get("quiet_canary_s"),
        "retimed": int(extra.get("retimed") or 0),
        "load_avg_1m": extra.get("load_avg_1m"),
        "others_running": extra.get("others_running"),
        "contended": contended(extra, machine),
    }


def device_fields(extra: dict) -> dict:
    """cuda only (`record_device_figures`): device time in rounds of its own, one profiled call, one peak."""
    return {
        "device_raw_s": tuple(extra.get("device_s") or ()),
        "device_busy_s": extra.get("device_busy_s"),
        "kernel_launches": extra.get("kernel_launches"),
        "kernels": extra.get("kernels"),
        "peak_bytes": extra.get("peak_bytes"),
    }


def run_rows(run: dict, path: Path) -> list[dict]:
    """One row per benchmark of a checked run (`read_run`): its case, statistics, canaries, load,
    device figures and provenance, under the run's id (or, for a run not made by `twolayer run`,
    its file name and start time)."""
    machine = run["machine_info"]
    commit = run.get("commit_info") or {}
    meta = run.get("twolayer") or {}
    # A run not made by `twolayer run` has no id: its file name and start time stand in for one.
    run_id = meta.get("run_id") or f"{path.stem}@{run.get('datetime', '?')}"
    peaks = machine.get("peak") or {}
    provenance = provenance_fields(machine)
    rows = []
    for bench in run["benchmarks"]:
        extra, stats = bench["extra_info"], bench["stats"]
        peak = peaks.get(f"{extra['device']}/{extra['dtype']}") or {}
        rows.append({
            "run_id": run_id,
            "machine": machine.get("twolayer_host") or machine.get("node"),
            "commit": (commit.get("id") or "")[:12] + ("-dirty" if commit.get("dirty") else ""),
            "commit_time": commit.get("time") or commit.get("author_time"),
            "source": str(path),
            "datetime": run.get("datetime"),
            "device": extra["device"],
            "device_name": extra["device_name"],
            "variant": extra["variant"],
            "phase": extra["phase"],
            "dtype": extra["dtype"],
            "dtype_mode": extra.get("dtype_mode") or extra["dtype"],  # float32, float64, or tutorial
            "size": extra["size"],
            "world_size": int(extra.get("world_size") or 1),  # ranks of a distributed variant; 1 for the others
            "scaling": extra.get("scaling") or "",  # strong or weak (a distributed variant's); "" for the others
            "n": extra.get("n"),
            "d_in": extra.get("d_in"),
            "hidden": extra.get("hidden"),
            "d_out": extra.get("d_out"),
            "compile_s": extra.get("compile_s"),  # one-off, untimed: compilation or graph capture
            **machine_fields(extra, meta, machine),
            "pass_index": int(extra.get("pass") or 0),
            "flops": int(extra["flops"]),
            # a peak measured on a busy machine is no ceiling: no % of peak from it
            "peak_gflops": np.nan if peak.get("disturbed") else peak.get("square_gflops", np.nan),
            "torch_threads": extra["torch_threads"],
            "numpy_threads": extra["numpy_threads"],
            "suite_version": extra.get("suite_version"),
            "interrupted": bool(meta.get("interrupted")),
            "benchmark": bench.get("name"),
            "raw_s": tuple(stats.get("data") or ()),
            **device_fields(extra),
            # distributed, world size > 1: the same phase of each rank's solo twin (same rows, no peers)
            "solo_raw_s": tuple(extra.get("solo_s") or ()),
            **stats_fields(stats),
            **provenance,
        })
    return rows


def judge_canaries(rows: pd.DataFrame) -> pd.DataFrame:
    """`canary_ratio` and `disturbed` per benchmark (and pass): its slower canary over the reference,
    the lower of the run's usual canary and the machine's known quiet one recorded with the run.
    `run_canary_s`: the run's usual canary on that machine (the median over its benchmarks), how
    fast the machine ran during the run as a whole, which `compare` sets against another run's."""
    rows = rows.copy()
    rows["canary_ratio"] = np.nan
    rows["run_canary_s"] = np.nan
    for _, group in rows.groupby(["run_id", "machine"], sort=False):
        quiet = group["quiet_canary_s"].dropna()
        reference = canary_reference(list(group["canary_s"]), float(quiet.iloc[0]) if len(quiet) else None)
        rows.loc[group.index, "canary_ratio"] = group["canary_s"] / reference
        rows.loc[group.index, "run_canary_s"] = canary_reference(list(group["canary_s"]), None)
    rows["disturbed"] = (rows["canary_ratio"] > DISTURBED_CANARY_RATIO) | rows["contended"].astype(bool)
    return rows


def pool_passes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark: the passes of a `--repeat` run pooled, with `pass_spread` (the largest
    pass median over the smallest: the honest "will I see this number again" figure)."""
    out = []
    for _, group in rows.groupby(list(KEY), sort=False, dropna=False):
        first = group.iloc[0].to_dict()
        first["passes"] = len(group)
        first["raw_passes"] = tuple(group["raw_s"])
        first["pass_spread"] = group["median_s"].max() / group["median_s"].min() if len(group) > 1 else np.nan
        if len(group) > 1:
            raw = np.concatenate([np.asarray(r, dtype=float) for r in group["raw_s"]])
            if raw.size:
                q1, q3 = np.percentile(raw, [25, 75])
                first |= {"median_s": float(np.median(raw)), "iqr_s": float(q3 - q1), "mean_s": float(raw.mean()),
                          "stddev_s": float(raw.std(ddof=1)) if raw.size > 1 else 0.0, "min_s": float(raw.min()),
                          "max_s": float(raw.max()), "rounds": int(raw.size), "raw_s": tuple(raw)}
            first["iqr_fraction"] = first["iqr_s"] / first["median_s"] if first["median_s"] > 0 else np.nan
            first["canary_ratio"] = group["canary_ratio"].max()
            first["disturbed"] = bool(group["disturbed"].any())
            first["retimed"] = int(group["retimed"].max())
            first["device_raw_s"] = tuple(t for spans in group["device_raw_s"] for t in spans)
            first["solo_raw_s"] = tuple(t for spans in group["solo_raw_s"] for t in spans)
            first["peak_bytes"] = group["peak_bytes"].max()
            first["load_avg_1m"] = group["load_avg_1m"].max()
            first["others_running"] = group["others_running"].max()
        out.append(first)
    return pd.DataFrame(out)


def load_runs(paths: list[Path]) -> pd.DataFrame:
    """The tidy table of one or many runs (several machines welcome)."""
    if not paths:
        raise ResultsError("no results files given")
    return tidy_table([(Path(path), read_run(Path(path))) for path in paths])


def tidy_table(runs: list[tuple[Path, dict]]) -> pd.DataFrame:
    """The tidy table of runs already read (and checked) by `read_run`, with the path each came from."""
    rows, counted = [], []
    for path, run in runs:
        found = run_rows(run, path)
        rows.extend(found)
        beside = counters_beside(Path(path))
        if beside is not None and found:  # `run --counters`: the counts of the same run directory
            counted.append(read_counters(beside).assign(run_id=found[0]["run_id"]))
    table = judge_canaries(pd.DataFrame(rows))
    duplicated = table.duplicated([*KEY, "pass_index"])
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise ResultsError(f"run {first['run_id']} is given twice (benchmark {first['benchmark']})")
    table = pool_passes(table)
    table["noisy"] = table["iqr_fraction"] > NOISY_IQR_FRACTION
    table["gflops"] = np.where(table["flops"] > 0, table["flops"] / table["median_s"] / 1e9, np.nan)
    table["pct_of_peak"] = 100 * table["gflops"] / table["peak_gflops"]
    table["floor_s"] = np.where(table["flops"] > 0, table["flops"] / (table["peak_gflops"] * 1e9), np.nan)
    table = join_counters(table, counted)
    table = device_figures(table)
    # what having peers costs a rank's phase: its median over its solo twin's (the all-reduce, and
    # waiting for the slowest rank; `twolayer.variants.ddp`)
    table["comm_s"] = [median - float(np.median(solo)) if len(solo) else np.nan
                       for median, solo in zip(table["median_s"], table["solo_raw_s"])]
    return table[[*COLUMNS, *IN_MEMORY]]


def device_figures(table: pd.DataFrame) -> pd.DataFrame:
    """`device_median_s` and `host_share` from each row's CUDA-event spans, and `launch_floor_s`
    from its kernel launches and its run's `harness_launch` and `harness_sync` on that device;
    empty where not measured (every cpu row)."""
    table = table.copy()
    table["device_median_s"] = [float(np.median(spans)) if len(spans) else np.nan for spans in table["device_raw_s"]]
    table["host_share"] = [host_share(wall, device) if np.isfinite(device) else np.nan
                           for wall, device in zip(table["median_s"], table["device_median_s"])]
    for column in ("device_busy_s", "kernel_launches", "kernels", "peak_bytes"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    harness = table[table["variant"].isin(["harness_launch", "harness_sync"])]
    costs = harness.pivot_table(index=["run_id", "machine", "device"], columns="variant", values="median_s",
                                aggfunc="first")
    table["launch_floor_s"] = np.nan
    if {"harness_launch", "harness_sync"} <= set(costs.columns):
        for (run_id, machine, device), cost in costs.iterrows():
            rows = ((table["run_id"] == run_id) & (table["machine"] == machine) & (table["device"] == device)
                    & table["kernel_launches"].notna() & (table["phase"] != "overhead"))
            table.loc[rows, "launch_floor_s"] = [
                launch_floor_s(n, cost["harness_launch"], cost["harness_sync"]) for n in table.loc[rows, "kernel_launches"]]
    return table


def join_counters(table: pd.DataFrame, counted: list[pd.DataFrame]) -> pd.DataFrame:
    """The counter columns, from each run's counters.json where it has one; empty elsewhere."""
    keys = ["run_id", *COUNTER_KEY]
    counts = (pd.concat(counted)[[*keys, *METRICS]] if counted
              else pd.DataFrame(columns=[*keys, *METRICS]))
    counts = counts.drop_duplicates(keys)
    table = table.drop(columns=[m for m in METRICS if m in table.columns])
    merged = table.merge(counts.astype({k: object for k in keys}), on=keys, how="left")
    for metric in METRICS:
        merged[metric] = pd.to_numeric(merged[metric], errors="coerce")
    return merged
