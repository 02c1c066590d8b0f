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
        rows["label"] = rows["device"] + " " + rows["dtype"] + " " + rows["size"] + ", " + rows["machine"]
        medians = rows.pivot_table(index="variant", columns="label", values="median_s", aggfunc="first") * 1e6
        errors = rows.pivot_table(index="variant", columns="label", values="iqr_s", aggfunc="first") * 1e6 / 2
        medians = medians.sort_values(medians.columns[0], ascending=False)
        errors = errors.loc[medians.index]
        figure, axes = plt.subplots(figsize=(8, 0.45 * len(medians) * max(1, len(medians.columns)) + 1.5))
        medians.plot.barh(ax=axes, xerr=errors, capsize=2, width=0.8)
        axes.set_xlabel("median time per call (us); whiskers span the IQR")
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
