"""Bar charts of the comparison, one PNG per phase (needs the optional `plot` extra: matplotlib)."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from pytest_benchmark.stats import Stats

from twolayer.flops import PHASES
from twolayer.results.table import KEY

SERIES = ["run_id", "machine", "device", "dtype_mode", "size"]  # a bar colour each
LOG_SPAN = 10  # a chart whose values span more than this factor gets a log axis


def phase_charts(compared: pd.DataFrame, summary: pd.DataFrame | None = None) -> dict[str, bytes]:
    """`{file name: PNG bytes}`, one horizontal bar chart per phase; empty without matplotlib.

    A bar is a median. Its whisker runs from the first to the third quartile of the raw timings,
    taken from `summary`'s `raw_s` the way pytest-benchmark takes its `q1` and `q3`, so it never
    goes below zero (no raw timings, no whisker). Where a chart's values (medians and quartiles)
    span more than 10x its axis is logarithmic. Bars flagged noisy are hatched and disturbed ones faded, with a legend
    entry each. Every (run, machine, device, dtype mode, size) is a series of its own colour:
    nothing is averaged or dropped.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # the optional `plot` extra: imported only where a chart is drawn
    except ImportError:
        return {}
    charts = {}
    for phase in [p for p in PHASES if p in set(compared["phase"])]:
        rows = with_quartiles(compared[compared["phase"] == phase], summary)
        series = list(dict.fromkeys(zip(*(rows[c] for c in SERIES))))
        labels = series_labels(series)
        first = rows[[key == series[0] for key in zip(*(rows[c] for c in SERIES))]]
        order = list(first.sort_values("median_s", ascending=False)["variant"])  # slowest at the bottom
        order += sorted(set(rows["variant"]) - set(order))
        position = {variant: i for i, variant in enumerate(order)}
        medians, lows, highs = rows["median_s"] * 1e6, rows["q1_s"] * 1e6, rows["q3_s"] * 1e6
        drawn = pd.concat([medians, lows[lows > 0], highs]).dropna()  # one long whisker squeezes the bars too
        log = drawn.max() / drawn.min() > LOG_SPAN
        base = 10 ** math.floor(math.log10(drawn.min())) if log else 0.0  # a log axis has no zero to start bars at

        height = 0.8 / len(series)
        figure, axes = plt.subplots(figsize=(11, 0.45 * len(order) * len(series) + 1.8))
        colours = plt.get_cmap("tab10").colors
        draw_series(axes, rows, series, position, base, height, colours)
        axes.set_yticks(range(len(order)), order)
        axes.set_ylim(-0.6, len(order) - 0.4)
        right = drawn.max()
        if log:
            axes.set_xscale("log")
            axes.set_xlim(base, right * 5)  # room for the value beside the longest bar
        else:
            axes.set_xlim(0, right * 1.15)
        axes.set_xlabel("median time per call (us" + (", log scale" if log else "")
                        + "); whiskers: first to third quartile")
        axes.set_title(f"{phase}: time per call, lower is faster")
        handles = legend_handles(rows, labels, colours)
        # beside the axes, where it can hide no bar
        axes.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        axes.grid(axis="x", alpha=0.3, which="both" if log else "major")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(figure)
        charts[f"{phase}.png"] = buffer.getvalue()
    return charts


def draw_series(axes, rows: pd.DataFrame, series: list, position: dict[str, int], base: float, height: float,
                colours) -> None:
    """One series' bars (hatched where noisy, faded where disturbed), whiskers and values."""
    for j, key in enumerate(series):
        part = rows[[k == key for k in zip(*(rows[c] for c in SERIES))]]
        ys = [position[v] + ((len(series) - 1) / 2 - j) * height for v in part["variant"]]  # first on top, as listed
        median, low, high = part["median_s"] * 1e6, part["q1_s"] * 1e6, part["q3_s"] * 1e6
        bars = axes.barh(ys, median - base, left=base, height=height, color=colours[j % len(colours)],
                         linewidth=0)
        for bar, noisy, disturbed in zip(bars, part["noisy"], part["disturbed"]):
            if noisy is True or noisy == 1:
                bar.set_hatch("///")
                bar.set_edgecolor("white")
            if disturbed is True or disturbed == 1:
                bar.set_alpha(0.35)
        known = low.notna() & high.notna()
        axes.errorbar(median[known], np.asarray(ys)[known.to_numpy()],
                      xerr=[(median - low)[known], (high - median)[known]],
                      fmt="none", ecolor="black", elinewidth=1, capsize=2)
        for y, value, end in zip(ys, median, high.fillna(median)):
            axes.annotate(f"{value:,.0f}" if value >= 1000 else f"{value:.1f}", (end, y), xytext=(3, 0),
                          textcoords="offset points", va="center", fontsize="x-small")


def legend_handles(rows: pd.DataFrame, labels: list[str], colours) -> list:
    """A legend entry per series, and for the noisy and disturbed marks where a bar has one."""
    from matplotlib.patches import Patch  # the optional `plot` extra, as in phase_charts

    handles = [Patch(facecolor=colours[j % len(colours)], label=label) for j, label in enumerate(labels)]
    if rows["noisy"].eq(True).any():
        handles.append(Patch(facecolor="grey", edgecolor="white", hatch="///", linewidth=0,
                             label="noisy: IQR over 10% of the median"))
    if rows["disturbed"].eq(True).any():
        handles.append(Patch(facecolor="grey", alpha=0.35, label="disturbed: the machine was slowed; rerun"))
    return handles


def with_quartiles(rows: pd.DataFrame, summary: pd.DataFrame | None) -> pd.DataFrame:
    """`rows` with `q1_s` and `q3_s` from the raw timings `summary` holds for them (NaN without)."""
    on = [column for column in KEY if column in rows.columns]
    if summary is None or "raw_s" not in summary.columns:
        return rows.assign(q1_s=np.nan, q3_s=np.nan)
    merged = rows.merge(summary[[*on, "raw_s"]], on=on, how="left")
    quartiles = [quartiles_of(raw) for raw in merged["raw_s"]]
    return merged.assign(q1_s=[q1 for q1, _ in quartiles], q3_s=[q3 for _, q3 in quartiles])


def quartiles_of(raw: object) -> tuple[float, float]:
    """pytest-benchmark's own `q1` and `q3` (the ones its JSON holds) of raw timings in seconds."""
    if not isinstance(raw, (tuple, list)) or not raw:
        return np.nan, np.nan
    stats = Stats()
    for seconds in raw:
        stats.update(seconds)
    return stats.q1, stats.q3


def series_labels(series: list[tuple]) -> list[str]:
    """`device dtype size, machine`, and the run id when the chart holds several runs."""
    several_runs = len({run_id for run_id, *_ in series}) > 1
    return [f"{device} {mode} {size}, {machine}" + (f", run {run_id}" if several_runs else "")
            for run_id, machine, device, mode, size in series]


def scaling_chart(compared: pd.DataFrame) -> dict[str, bytes]:
    """Time and GFLOP/s of the iteration against problem size, one line per variant (and device);
    empty when only one size was measured, or without matplotlib."""
    rows = compared[compared["phase"] == "iteration"].copy()
    if rows["size"].nunique() < 2:
        return {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    from cycler import cycler

    rows["mflop"] = rows["gflops"] * rows["median_s"] * 1e3
    figure, (time_axes, rate_axes) = plt.subplots(1, 2, figsize=(14, 5.5))
    styles = cycler(linestyle=["-", "--", ":"]) * cycler(color=plt.get_cmap("tab10").colors)  # 30 distinct lines
    for axes in (time_axes, rate_axes):
        axes.set_prop_cycle(styles)
    for (variant, device, dtype), line in rows.sort_values("mflop").groupby(["variant", "device", "dtype"]):
        label = f"{variant} ({device}, {dtype})"
        time_axes.plot(line["mflop"], line["median_s"] * 1e6, marker="o", label=label)
        rate_axes.plot(line["mflop"], line["gflops"], marker="o", label=label)
    for (device, dtype), peak in rows.groupby(["device", "dtype"])["peak_gflops"].first().dropna().items():
        rate_axes.axhline(peak, linestyle="--", color="grey")
        rate_axes.annotate(f"measured peak, {device} {dtype}", (rows["mflop"].min(), peak), fontsize="small",
                           va="bottom")
    time_axes.set(xscale="log", yscale="log", xlabel="MFLOP per iteration", ylabel="median time per iteration (us)",
                  title="iteration time against problem size")
    rate_axes.set(xscale="log", yscale="log", xlabel="MFLOP per iteration", ylabel="GFLOP/s",
                  title="throughput against problem size")
    for axes in (time_axes, rate_axes):
        axes.grid(alpha=0.3, which="both")
    rate_axes.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    return {"scaling.png": buffer.getvalue()}
