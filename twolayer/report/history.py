"""What `twolayer history` writes: history.csv, changes.csv, history.md and a trend chart per
device, phase, dtype and size (median against commit, a line per variant, a band from the first
to the third quartile of the pooled timings, each change point marked)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from twolayer.analysis.history import BENCHMARK, History
from twolayer.flops import PHASES
from twolayer.report.ddp import labelled
from twolayer.report.markdown import markdown_table

PANEL = ["device", "phase", "dtype_mode", "size"]  # a chart each
LOG_SPAN = 10


def chart_name(device: str, phase: str, mode: str, size: str) -> str:
    return f"history-{device}-{phase}-{mode}-{size}.png"


def trend_charts(history: History) -> dict[str, bytes]:
    """`{file name: PNG bytes}`; empty without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    # a line per variant, a distributed one's per world size and scaling (ddp-w1, ddp-w2, ...)
    table, changes = labelled(history.table), labelled(history.changes)
    commits = table.drop_duplicates("commit_index").sort_values("commit_index")
    labels = dict(zip(commits["commit_index"], commits["commit"].str[:7]))
    charts = {}
    phase_order = {phase: i for i, phase in enumerate(PHASES)}
    panels = table.groupby(PANEL, sort=False)
    for (device, phase, mode, size), rows in sorted(panels, key=lambda item: (item[0][0], phase_order[item[0][1]])):
        figure, axes = plt.subplots(figsize=(11, 5))
        colours = plt.get_cmap("tab20").colors
        for j, (variant, series) in enumerate(rows.groupby("variant")):
            series = series.sort_values("commit_index")
            colour = colours[j % len(colours)]
            hit = series["disturbed"].astype(bool)
            if hit.any():  # timed only on a disturbed machine: shown as a cross, off the line
                axes.scatter(series.loc[hit, "commit_index"], series.loc[hit, "median_s"] * 1e6, marker="x", s=30,
                             color=colour, zorder=3)
            series = series[~hit]
            x = series["commit_index"]
            axes.plot(x, series["median_s"] * 1e6, marker="o", markersize=3, color=colour, label=variant)
            axes.fill_between(x, series["q1_s"] * 1e6, series["q3_s"] * 1e6, color=colour, alpha=0.18, linewidth=0)
            marked = changes[(changes["variant"] == variant) & (changes["device"] == device)
                             & (changes["phase"] == phase) & (changes["dtype_mode"] == mode) & (changes["size"] == size)]
            at = series.set_index("commit_index")["median_s"].reindex(marked["commit_index"]) * 1e6
            axes.scatter(at.index, at.values, s=90, facecolors="none", edgecolors=colour, linewidths=1.8, zorder=3)
        values = rows["median_s"] * 1e6
        if values.max() / values.min() > LOG_SPAN:
            axes.set_yscale("log")
        ticks = sorted(set(rows["commit_index"]))
        step = max(1, math.ceil(len(ticks) / 25))
        axes.set_xticks(ticks[::step], [labels[t] for t in ticks[::step]], rotation=60, fontsize=7)
        axes.set_xlabel("commit (oldest first)")
        axes.set_ylabel("median per call, us")
        axes.set_title(f"{device} {phase}, {mode}, {size}: circled points start a change")
        axes.legend(fontsize=7, ncol=2, loc="best")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        plt.close(figure)
        charts[chart_name(device, phase, mode, size)] = buffer.getvalue()
    return charts


def history_markdown(history: History, charts: dict[str, bytes], note: str = "") -> str:
    """history.md: the commits and runs it covers, the change points with their causes (by world size for
    distributed variants), and the trend charts' links."""
    table, changes = history.table, labelled(history.changes)  # a distributed variant's changes by world size
    commits = table["commit"].nunique()
    runs = int(table.groupby("commit")["runs"].max().sum())
    parts = ["# twolayer history",
             *([note] if note else []),
             f"{commits} commits, {runs} runs, {table.groupby(BENCHMARK, dropna=False).ngroups} benchmarks. "
             "Medians pool every calm run of a commit; a benchmark whose every run of a commit was timed on a "
             "disturbed machine is a cross on its chart, left out of the search for changes. A change is a step in a "
             "benchmark's log medians found by binary segmentation (ruptures) and kept where a likelihood-ratio test "
             "says a fit that good arises by chance in under 3% of series with no change; at least two commits a "
             "side. `step` is the median after over the median before, `machine_step` the same for the runs' usual "
             "canary (how fast the machine ran), `confidence` one minus the test's probability, `cause` `hardware` "
             "or `versions` where the runs' provenance changed at that commit, `machine` where the canary stepped "
             "by over 15% and, divided out, leaves a step within 15%, else `code`."]
    if changes.empty:
        parts.append("No change points.")
    else:
        view = changes.assign(before_us=changes["before_median_s"] * 1e6, after_us=changes["after_median_s"] * 1e6)
        parts += ["## Changes",
                  markdown_table(view[["device", "variant", "phase", "dtype", "size", "commit", "step", "before_us",
                                       "after_us", "machine_step", "confidence", "cause"]],
                                 {"step": "{:.3f}", "before_us": "{:.1f}", "after_us": "{:.1f}",
                                  "machine_step": "{:.3f}", "confidence": "{:.3f}"})]
    if charts:
        parts.append("## Trends")
        parts += [f"![{name}]({name})" for name in charts]
    return "\n\n".join(parts) + "\n"


def history_files(history: History, out: Path, note: str = "") -> dict[Path, str | bytes]:
    charts = trend_charts(history)
    table = history.table.assign(commit_time=history.table["commit_time"].astype(str))
    return {out / "history.csv": table.to_csv(index=False),
            out / "changes.csv": history.changes.to_csv(index=False),
            **{out / name: png for name, png in charts.items()},
            out / "history.md": history_markdown(history, charts, note)}
