"""`twolayer report`: pivots of the tidy table into CSV comparison reports and a Markdown page.

summary.csv     the tidy table itself
comparison.csv  per run, device, phase, dtype and size: each variant's median, ranked, with its
                speedup over the baseline variant on the same run's cpu
devices.csv     per variant, phase, dtype and size: each accelerator's speedup over the cpu of its
                own run, or, where its run has none, over each cpu measured in other runs
                (`same_run` false: across machines too, when runs from several machines are given)
report.md       these tables, the harness overhead per device, and a bar chart per phase
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from twolayer.atomic_files import write_all_atomically
from twolayer.cases import TUTORIAL_DTYPE
from twolayer.flops import PHASES
from twolayer.problem import Problem
from twolayer.report.answer import answer_markdown
from twolayer.report.charts import phase_charts, scaling_chart
from twolayer.report.counters import counters_markdown
from twolayer.report.ddp import ddp_markdown, labelled, world_size_chart
from twolayer.report.device import device_markdown
from twolayer.report.markdown import markdown_table
from twolayer.results.run_file import ResultsError
from twolayer.results.table import COLUMNS
from twolayer.schema import METRICS

DEFAULT_BASELINE = "numpy_manual"
TUTORIAL_SIZE = Problem().size_label
# Variants compared with one another: one run, device, phase, dtype mode (float32, float64, or
# `tutorial`, where numpy_manual's float64 sits beside torch's float32) and size.
GROUP = ["run_id", "machine", "device", "device_name", "phase", "dtype_mode", "size"]
CASE = ["phase", "dtype", "size", "variant"]


def phase_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that time a phase of a variant (not the harness's own overhead)."""
    return table[table["phase"].isin(PHASES)]


def comparison(table: pd.DataFrame, baseline: str = DEFAULT_BASELINE, baseline_named: bool = False) -> pd.DataFrame:
    """Variants ranked within each group, with their speedup over `baseline` on the same run's cpu.

    A baseline the runs lack is an error when the user named it; the default one, missing (a
    cuda-only run, a run of a few variants), leaves the speedups empty."""
    rows = phase_rows(table)
    if baseline_named and baseline not in set(rows["variant"]):
        held = ", ".join(sorted(set(rows["variant"]))) or "no phases"
        raise ResultsError(f"unknown baseline {baseline!r}; the runs hold {held}")
    on = ["run_id", "machine", "phase", "dtype_mode", "size"]
    base = rows[(rows["variant"] == baseline) & (rows["device"] == "cpu")][[*on, "median_s"]]
    out = rows.merge(base.rename(columns={"median_s": "baseline_median_s"}), on=on, how="left")
    out["baseline"] = f"{baseline} on cpu"
    out["speedup_vs_baseline"] = out["baseline_median_s"] / out["median_s"]
    out["rank"] = out.groupby(GROUP)["median_s"].rank(method="min").astype(int)
    phase_order = {phase: i for i, phase in enumerate(PHASES)}
    order_keys = {"phase": phase_order.get, "size": size_work}
    out = out.sort_values(["run_id", "machine", "device", "dtype_mode", "size", "phase", "rank"],
                          key=lambda col: col.map(order_keys[col.name]) if col.name in order_keys else col)
    columns = [*GROUP, "rank", "variant", "dtype", "median_s", "iqr_s", "noisy", "disturbed", "canary_ratio", "gflops",
               "peak_gflops", "pct_of_peak", "floor_s", "baseline", "speedup_vs_baseline", "rounds"]
    return out[columns].reset_index(drop=True)


def devices(table: pd.DataFrame) -> pd.DataFrame:
    """Each accelerator row against the cpu rows of the same variant, phase, dtype and size.

    The cpu of the accelerator's own run when that run measured it (`same_run` true); only where it
    did not, the cpus of other runs (`same_run` false: another moment, perhaps another machine)."""
    rows = phase_rows(table)
    keep = ["run_id", "machine", "device_name", "median_s", *CASE]
    cpu = rows[rows["device"] == "cpu"][keep]
    accelerated = rows[rows["device"] != "cpu"][[*keep, "device"]]
    pairs = cpu.merge(accelerated, on=CASE, suffixes=("_cpu", "_accel"))
    if pairs.empty:
        return pd.DataFrame(columns=[*CASE, "cpu_run_id", "cpu_name", "cpu_median_s", "accel_run_id",
                                     "accel_device", "accel_name", "accel_median_s", "accel_speedup", "same_run"])
    pairs["same_run"] = pairs["run_id_cpu"] == pairs["run_id_accel"]
    has_own_cpu = pairs.groupby([*CASE, "run_id_accel", "device"])["same_run"].transform("any")
    pairs = pairs[pairs["same_run"] | ~has_own_cpu]
    out = pd.DataFrame({
        **{c: pairs[c] for c in CASE},
        "cpu_run_id": pairs["run_id_cpu"],
        "cpu_name": pairs["device_name_cpu"],
        "cpu_median_s": pairs["median_s_cpu"],
        "accel_run_id": pairs["run_id_accel"],
        "accel_device": pairs["device"],
        "accel_name": pairs["device_name_accel"],
        "accel_median_s": pairs["median_s_accel"],
    })
    out["accel_speedup"] = out["cpu_median_s"] / out["accel_median_s"]
    out["same_run"] = pairs["same_run"]
    return out.sort_values([*CASE, "cpu_run_id", "accel_run_id"]).reset_index(drop=True)


def overhead(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["phase"] == "overhead"]
    return rows[["run_id", "machine", "device", "device_name", "variant", "median_s", "iqr_s", "rounds"]]


def flags(noisy: object, disturbed: object) -> str:
    marks = [name for name, flag in (("noisy", noisy), ("disturbed", disturbed)) if flag is True or flag == 1]
    return f" ({', '.join(marks)})" if marks else ""


def comparison_markdown(compared: pd.DataFrame, heading: str = "###") -> str:
    """One table per (run, device, dtype, size): variants as rows, phases as columns of medians in us."""
    sections = []
    for (run_id, machine, device, device_name, mode, size), rows in compared.groupby(
            ["run_id", "machine", "device", "device_name", "dtype_mode", "size"], sort=False):
        dtype = "each variant's tutorial dtype" if mode == TUTORIAL_DTYPE else mode
        medians = rows.pivot(index="variant", columns="phase", values="median_s") * 1e6
        speedups = rows.pivot(index="variant", columns="phase", values="speedup_vs_baseline")
        noisy = rows.pivot(index="variant", columns="phase", values="noisy")
        disturbed = rows.pivot(index="variant", columns="phase", values="disturbed")
        phases = [p for p in PHASES if p in medians.columns]
        order = medians[phases[-1]].sort_values(na_position="last").index
        table = pd.DataFrame({"variant": order})
        for phase in phases:
            table[f"{phase} us"] = [
                "n/a" if pd.isna(medians.at[v, phase])
                else f"{medians.at[v, phase]:.1f}{flags(noisy.at[v, phase], disturbed.at[v, phase])}" for v in order]
        for phase in phases:
            table[f"{phase} x"] = [f"{speedups.at[v, phase]:.2f}" if pd.notna(speedups.at[v, phase]) else ""
                                   for v in order]
        sections.append(f"{heading} {device} ({device_name}), {dtype}, {size}: run {run_id} on {machine}\n\n"
                        + markdown_table(table))
    return "\n\n".join(sections)


def size_work(size: str) -> int:
    """N * D_in * H * D_out of an `NxD_INxHxD_OUT` label: orders sizes by how much work they are."""
    return math.prod(int(part) for part in size.split("x"))


def headline_size(compared: pd.DataFrame) -> str | None:
    """The tutorial's size when it was measured, else the smallest: the one the bar charts show."""
    sizes = set(compared["size"])
    if not sizes:
        return None
    return TUTORIAL_SIZE if TUTORIAL_SIZE in sizes else min(sizes, key=size_work)


def peak_distance(compared: pd.DataFrame) -> pd.DataFrame:
    """At the largest size measured, per device and dtype: how close each variant's iteration
    comes to the measured matmul peak."""
    rows = compared[(compared["phase"] == "iteration") & compared["pct_of_peak"].notna()].copy()
    if rows.empty:
        return rows
    rows["work"] = rows["size"].map(size_work)
    largest = rows.groupby(["run_id", "device", "dtype"])["work"].transform("max")
    rows = rows[rows["work"] == largest].sort_values(["run_id", "device", "dtype", "pct_of_peak"],
                                                     ascending=[True, True, True, False])
    return rows[["run_id", "device", "dtype", "size", "variant", "median_s", "floor_s", "gflops", "pct_of_peak"]]


@dataclass
class Report:
    summary: pd.DataFrame
    comparison: pd.DataFrame
    devices: pd.DataFrame
    overhead: pd.DataFrame
    baseline: str
    charts: dict[str, bytes] = field(default_factory=dict)

    def markdown(self, top_level: int = 1, image_prefix: str = "") -> str:
        """The report page; `top_level` 3 and an `image_prefix` embed it in another page (the README)."""
        h1, h2 = "#" * top_level, "#" * (top_level + 1)
        parts = [
            f"{h1} twolayer benchmark report",
            answer_markdown(self.summary, h2),
            f"Medians in microseconds per call; `x` is the speedup over `{self.baseline}` on the same run's cpu "
            "(higher is faster); n/a: a phase the variant cannot run apart. A median marked (noisy) has an IQR "
            "over 10% of it; (disturbed): the canary timed beside it ran over 15% slower than the run's usual or "
            "this machine's known quiet one, or it began with other processes' threads runnable beyond the cores "
            "its own left free, so the machine itself was slowed or shared while it was measured: rerun before "
            "trusting it. Where a run made several passes, `pass_spread` in summary.csv is the largest pass "
            "median over the smallest.",
            self.machines_markdown(),
            f"{h2} Variants per phase",
            comparison_markdown(self.comparison, heading=h2 + "#"),
        ]
        distance = peak_distance(self.comparison)
        if not distance.empty:
            view = distance.assign(median_us=distance["median_s"] * 1e6, floor_us=distance["floor_s"] * 1e6)
            best = distance.drop_duplicates(["run_id", "device", "dtype"])
            summary = "; ".join(f"on {r.device} {r.dtype} at {r.size}, {r.variant} reaches {r.pct_of_peak:.0f}%"
                                for r in best.itertuples())
            parts += [f"{h2} Distance from the measured peak",
                      "Each variant's iteration at the largest size measured, against the device's matmul peak "
                      f"(`twolayer peak`); `floor` is the time the iteration's FLOPs take at that peak. Best: {summary}.",
                      markdown_table(view[["device", "dtype", "size", "variant", "median_us", "floor_us", "gflops",
                                           "pct_of_peak"]],
                                     {"median_us": "{:.1f}", "floor_us": "{:.1f}", "gflops": "{:.1f}",
                                      "pct_of_peak": "{:.1f}"})]
        if not self.devices.empty:
            view = self.devices.assign(cpu_us=self.devices["cpu_median_s"] * 1e6,
                                       accel_us=self.devices["accel_median_s"] * 1e6)
            view = view[["variant", "phase", "dtype", "size", "cpu_name", "cpu_us", "accel_name", "accel_us",
                         "accel_speedup", "same_run"]]
            parts += [f"{h2} Accelerator over cpu",
                      markdown_table(view, {"cpu_us": "{:.1f}", "accel_us": "{:.1f}", "accel_speedup": "{:.2f}"})]
        if not self.overhead.empty:
            view = self.overhead.assign(median_ns=self.overhead["median_s"] * 1e9)
            parts += [f"{h2} Harness overhead per timed call",
                      "An empty call and a bare device synchronisation, timed like the phases: "
                      "differences smaller than these are timer noise. On cuda also an empty kernel's launch "
                      "and synchronisation (`harness_launch`) and the replay of a one-kernel CUDA graph "
                      "(`harness_graph`): the costs the launch floor is made of.",
                      markdown_table(view[["device", "device_name", "variant", "median_ns"]], {"median_ns": "{:.0f}"})]
        on_device = device_markdown(self.summary, h2)
        if on_device:
            parts.append(on_device)
        data_parallel = ddp_markdown(self.summary, h2)
        if data_parallel:
            parts.append(data_parallel)
        if self.summary[list(METRICS)].notna().any(axis=None):
            parts.append(counters_markdown(self.summary, h2))
        if self.charts:
            parts.append(f"{h2} Charts")
            parts += [f"![{name}]({image_prefix}{name})" for name in self.charts]
        return "\n\n".join(part for part in parts if part) + "\n"

    def machines_markdown(self) -> str:
        """One line per run: where and with what it ran, so a reader can compare honestly."""
        lines = []
        for run in self.summary.drop_duplicates("run_id").itertuples():
            gpu = f", gpu {run.gpu_model} (cuda {run.cuda_version})" if isinstance(run.gpu_model, str) else ""
            lines.append(f"- run `{run.run_id}` on {run.machine}: cpu {run.cpu_model}{gpu}; torch {run.torch_version} "
                         f"({run.torch_blas}, {run.torch_threads} threads), numpy {run.numpy_version} "
                         f"({run.numpy_blas}, {run.numpy_threads} threads), python {run.python_version}, "
                         f"commit {run.commit}{canary_words(run.run_canary_s, run.quiet_canary_s)}")
        return "\n".join(lines)

    def files(self, out: Path) -> dict[Path, str | bytes]:
        return {
            out / "summary.csv": self.summary[list(COLUMNS)].to_csv(index=False),
            out / "comparison.csv": self.comparison.to_csv(index=False),
            out / "devices.csv": self.devices.to_csv(index=False),
            **{out / name: png for name, png in self.charts.items()},
            out / "report.md": self.markdown(),
        }


def canary_words(usual_s: float, quiet_s: float) -> str:
    """How fast the machine ran in a run, and what its canaries were judged against."""
    if pd.isna(usual_s):
        return ""
    if pd.notna(quiet_s):
        return f"; canary {usual_s * 1e6:.0f} us usual, {quiet_s * 1e6:.0f} us this machine's quiet one"
    return (f"; canary {usual_s * 1e6:.0f} us usual, no quiet one known for this machine yet: a run slowed from start "
            "to finish shows only against another run (`twolayer compare`)")


def build_report(table: pd.DataFrame, baseline: str = DEFAULT_BASELINE, charts: bool = True,
                 baseline_named: bool = False) -> Report:
    named = labelled(table)  # a distributed variant's rows by world size: ddp-w1, ddp-w2, ...
    compared = comparison(named, baseline, baseline_named)
    report = Report(summary=table, comparison=compared, devices=devices(named), overhead=overhead(table),
                    baseline=baseline)
    if charts:
        report.charts = {**phase_charts(compared[compared["size"] == headline_size(compared)], named),
                         **scaling_chart(compared), **world_size_chart(table)}
    return report


README_START = "<!-- twolayer report: start (generated by `twolayer report --readme`; do not edit) -->"
README_END = "<!-- twolayer report: end -->"


def readme_with_report(readme: str, report: Report, image_prefix: str) -> str:
    """`readme` with the text between its report markers replaced by the report."""
    if readme.count(README_START) != 1 or readme.count(README_END) != 1:
        raise ResultsError(f"the README needs exactly one pair of markers: {README_START} ... {README_END}")
    before, rest = readme.split(README_START)
    _, after = rest.split(README_END)
    block = report.markdown(top_level=3, image_prefix=image_prefix)
    return f"{before}{README_START}\n{block}{README_END}{after}"


def write_report(report: Report, out: Path, readme: Path | None = None) -> list[Path]:
    files = report.files(out)
    if readme is not None:
        if not readme.is_file():
            raise ResultsError(f"{readme}: no such file")
        prefix = Path(os.path.relpath(out, readme.parent)).as_posix() + "/"
        files[readme] = readme_with_report(readme.read_text(encoding="utf-8"), report, prefix)
    write_all_atomically(files)
    return list(files)
