"""Bar charts of the comparison, one PNG per phase (needs the optional `plot` extra: matplotlib)."""

from __future__ import annotations

import io

import pandas as pd

from twolayer.flops import PHASES


def phase_charts(compared: pd.DataFrame) -> dict[str, bytes]:
    """`{file name: PNG bytes}`, one horizontal bar chart per phase; empty without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    charts = {}
    for phase in [p for p in PHASES if p in set(compared["phase"])]:
        rows = compared[compared["phase"] == phase].copy()
        rows["label"] = rows["device"] + " " + rows["dtype_mode"] + " " + rows["size"] + ", " + rows["machine"]
        medians = rows.pivot_table(index="variant", columns="label", values="median_s", aggfunc="first") * 1e6
        errors = rows.pivot_table(index="variant", columns="label", values="iqr_s", aggfunc="first") * 1e6 / 2
        medians = medians.sort_values(medians.columns[0], ascending=False)
        errors = errors.loc[medians.index]
        figure, axes = plt.subplots(figsize=(8, 0.45 * len(medians) * max(1, len(medians.columns)) + 1.5))
        medians.plot.barh(ax=axes, xerr=errors, capsize=2, width=0.8)
        axes.set_xlabel("median time per call (us); whiskers: median ± IQR/2")
        axes.set_ylabel("")
        axes.set_title(f"{phase}: time per call, lower is faster")
        axes.legend(fontsize="small", loc="best")
        axes.grid(axis="x", alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
        plt.close(figure)
        charts[f"{phase}.png"] = buffer.getvalue()
    return charts


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
