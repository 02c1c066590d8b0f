"""The report's section on data parallelism: the distributed variants (ddp) by world size, what
each phase costs a rank, and how much of backward is the price of having peers (`comm_s`), beside
the single-process variant that does the same training (方案七, `nn_sequential_optim`).

`comm_s` is a rank's backward median minus that of its solo twin: the same rows, DDP over a group
of this rank alone, timed right after, with every rank timing its twin at once (so the cores are
as busy). It holds the gradients' all-reduce (gloo over loopback, or NCCL), the wait for the
slowest rank, and DDP's bucket bookkeeping that a world of one skips; any overlap of the
all-reduce with the backward's compute is already subtracted. It is an estimate: two medians of
different rounds, as noisy as each of them.
"""

from __future__ import annotations

import io

import pandas as pd

from twolayer.flops import PHASES
from twolayer.report.markdown import markdown_table

SINGLE_PROCESS_TWIN = "nn_sequential_optim"  # the same model, loss and update in one process


def ranked_label(variant: str, world_size: int, scaling: str) -> str:
    """How reports name a distributed variant's row: `ddp-w2` (strong scaling), `ddp-w2-weak`."""
    if not scaling:
        return variant
    return f"{variant}-w{int(world_size)}" + ("" if scaling == "strong" else f"-{scaling}")


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """The tidy table with each distributed row's variant named by its world size and scaling, so
    that tables and charts keyed by variant keep the world sizes apart."""
    if not table["scaling"].astype(bool).any():
        return table
    return table.assign(variant=[ranked_label(v, w, s) for v, w, s in
                                 zip(table["variant"], table["world_size"], table["scaling"])])


def ddp_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per run, device, dtype, size and scaling: each world size's phases, with comm_s and its share
    of backward, and the single-process twin's median of the same phase and size where measured."""
    rows = summary[summary["scaling"].astype(bool) & summary["phase"].isin(PHASES)]
    if rows.empty:
        return pd.DataFrame()
    twin = summary[(summary["variant"] == SINGLE_PROCESS_TWIN) & summary["phase"].isin(PHASES)]
    on = ["run_id", "device", "dtype", "size", "phase"]
    rows = rows.merge(twin[[*on, "median_s"]].rename(columns={"median_s": "twin_median_s"}), on=on, how="left")
    phase_order = {phase: i for i, phase in enumerate(PHASES)}
    rows = rows.sort_values(["run_id", "device", "dtype", "size", "scaling", "phase", "world_size"],
                            key=lambda c: c.map(phase_order) if c.name == "phase" else c)
    return pd.DataFrame({
        "run_id": rows["run_id"],
        "device": rows["device"],
        "dtype": rows["dtype"],
        "size": rows["size"],
        "scaling": rows["scaling"],
        "phase": rows["phase"],
        "world_size": rows["world_size"].astype(int),
        "threads_per_rank": rows["torch_threads"],
        "median_us": rows["median_s"] * 1e6,
        "iqr_us": rows["iqr_s"] * 1e6,
        "comm_us": rows["comm_s"] * 1e6,
        "comm_share": rows["comm_s"] / rows["median_s"],
        f"{SINGLE_PROCESS_TWIN}_us": rows["twin_median_s"] * 1e6,
        "disturbed": rows["disturbed"],
    }).reset_index(drop=True)


def ddp_markdown(summary: pd.DataFrame, heading: str = "##") -> str | None:
    """The section, or None where no distributed variant ran."""
    table = ddp_table(summary)
    if table.empty:
        return None
    formats = {"median_us": "{:.1f}", "iqr_us": "{:.1f}", "comm_us": "{:.1f}", "comm_share": "{:.0%}",
               f"{SINGLE_PROCESS_TWIN}_us": "{:.1f}"}
    view = table.drop(columns=["run_id"])
    return "\n\n".join([
        f"{heading} Data parallelism (ddp)",
        "DistributedDataParallel over 方案七's model, one process per rank; `strong`: the batch's N rows split "
        "across the ranks, `weak`: N rows each. Times are rank 0's per call. `comm_us` (backward, world sizes "
        "above 1): the backward median minus that of a solo twin on the same rows with no peers, timed at the "
        "same moment on every rank: the all-reduce, the wait for the slowest rank and DDP's bookkeeping "
        f"(an estimate from two medians). `{SINGLE_PROCESS_TWIN}_us`: the same training in one process, "
        "whole batch, where it ran.",
        markdown_table(view, formats),
    ])


def world_size_chart(summary: pd.DataFrame) -> dict[str, bytes]:
    """Iteration time against world size, one line per (device, dtype, size, scaling), with the
    single-process twin as a dashed line; empty where one world size was run, or without matplotlib."""
    rows = summary[summary["scaling"].astype(bool) & (summary["phase"] == "iteration")]
    if rows["world_size"].nunique() < 2:
        return {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    twins = summary[(summary["variant"] == SINGLE_PROCESS_TWIN) & (summary["phase"] == "iteration")]
    figure, axes = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab10").colors
    for j, ((run_id, device, dtype, size, scaling), line) in enumerate(
            rows.sort_values("world_size").groupby(["run_id", "device", "dtype", "size", "scaling"], sort=False)):
        colour = colours[j % len(colours)]
        axes.plot(line["world_size"], line["median_s"] * 1e6, marker="o", color=colour,
                  label=f"ddp {scaling} ({device}, {dtype}, {size})")
        twin = twins[(twins["run_id"] == run_id) & (twins["device"] == device) & (twins["dtype"] == dtype)
                     & (twins["size"] == size)]
        if not twin.empty:
            axes.axhline(twin["median_s"].iloc[0] * 1e6, linestyle="--", color=colour,
                         label=f"{SINGLE_PROCESS_TWIN}, one process ({device}, {dtype}, {size})")
    axes.set_xticks(sorted(rows["world_size"].unique()))
    axes.set(xlabel="world size (ranks)", ylabel="median time per iteration (us), rank 0",
             title="ddp iteration time against world size", ylim=(0, None))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    return {"world_size.png": buffer.getvalue()}
