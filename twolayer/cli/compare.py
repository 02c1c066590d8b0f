"""`twolayer compare`: is one run slower than another, in time or in a counter?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twolayer.analysis.compare import GATED_VERDICTS, WITHIN_RUN, compare_tables, machine_speed, provenance_differences
from twolayer.analysis.counters import compare_counters
from twolayer.atomic_files import write_all_atomically
from twolayer.cases import split_list
from twolayer.cli.args import (
    UsageError,
    positive_float,
)
from twolayer.count.driver import DEFAULT_THRESHOLD_PCT
from twolayer.report.verdicts import compare_files, verdict_text
from twolayer.results.counters import counted_side
from twolayer.results.run_file import read_run
from twolayer.results.table import load_runs
from twolayer.schema import METRICS as COUNTER_METRICS
from twolayer.schema import RESULT_FILE


def add_parser(commands) -> None:
    comparing = commands.add_parser("compare", help="compare two runs; exit 1 when one is significantly slower")
    comparing.add_argument("base", metavar="BASE.json", help="a run, or comma-separated runs to pool")
    comparing.add_argument("new", metavar="NEW.json", help="a run, or comma-separated runs to pool")
    comparing.add_argument("--metric", choices=("time", *COUNTER_METRICS), default="time",
                           help="time (the runs' timings; default), or a counter of `twolayer count`")
    comparing.add_argument("--threshold", type=positive_float, default=None,
                           help="percent increase tolerated (default: 10 for time, 2 for a counter)")
    comparing.add_argument("--out", help="where compare.csv goes (default: NEW.json's directory)")
    comparing.add_argument("--allow-interrupted", action="store_true", help="accept runs stopped by Ctrl-C")
    comparing.add_argument("--markdown", metavar="FILE",
                           help="also write the verdicts as Markdown, changed benchmarks first (a pull-request comment)")
    comparing.add_argument("--report-url", help="a link to the full report, for the end of --markdown")
    comparing.set_defaults(handler=run)


def cmd_compare_counters(args: argparse.Namespace, base: list[Path], new: list[Path]) -> int:
    threshold = DEFAULT_THRESHOLD_PCT if args.threshold is None else args.threshold
    table = compare_counters(counted_side(base), counted_side(new), args.metric, threshold / 100)
    if not table["verdict"].isin(["slower", "faster", "unchanged"]).any():
        raise UsageError(f"no benchmark has {args.metric} on both sides: nothing to compare")
    out = Path(args.out) if args.out else (new[0] if new[0].is_dir() else new[0].parent)
    write_all_atomically(compare_files(out / "compare.csv", table, args.markdown, args.report_url, args.metric, threshold))
    print(table[["verdict", "device", "variant", "phase", "dtype", "size", "base", "new", "ratio"]].to_string(
        index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))
    counts = table["verdict"].value_counts()
    print(f"compare: {out / 'compare.csv'}; {args.metric}: {counts.get('slower', 0)} slower, "
          f"{counts.get('faster', 0)} faster, {counts.get('unchanged', 0)} unchanged beyond {threshold:g}% "
          "(deterministic counts: no interval)")
    return 1 if (table["verdict"] == "slower").any() else 0


def refuse_interrupted(args: argparse.Namespace) -> None:
    """`compare` judges complete runs only: an interrupted run lacks benchmarks, and those it has
    may have shared the machine with the Ctrl-C. `--allow-interrupted` accepts it anyway."""
    if getattr(args, "allow_interrupted", False) or getattr(args, "metric", "time") != "time":
        return
    for path in [*split_list(args.base), *split_list(args.new)]:
        if (read_run(Path(path)).get("twolayer") or {}).get("interrupted"):
            raise UsageError(f"{path}: the run was interrupted (Ctrl-C) and holds only the benchmarks that had "
                             "finished; give --allow-interrupted to compare it anyway")


def same_runs(paths: list[Path]) -> set[Path]:
    """The run files a side names, resolved: a run directory and its benchmarks.json are one run."""
    return {(path / RESULT_FILE if path.is_dir() else path).resolve() for path in paths}


def run(args: argparse.Namespace) -> int:
    """Compare two sides (runs, or comma-separated runs pooled) in time or a counter; write compare.csv (and
    --markdown); exit 1 where something is slower."""
    base, new = [Path(p) for p in split_list(args.base)], [Path(p) for p in split_list(args.new)]
    if not base or not new:
        raise UsageError("give at least one run on each side")
    if same_runs(base) == same_runs(new):
        print("twolayer compare: note: both sides are the same run"
              f"{'s' if len(base) > 1 else ''}: it is compared with itself, and can show no change",
              file=sys.stderr)
    if args.metric != "time":
        return cmd_compare_counters(args, base, new)
    if args.threshold is None:
        args.threshold = 10.0
    base_table, new_table = load_runs(base), load_runs(new)
    for warning in provenance_differences(base_table, new_table):
        print(f"twolayer compare: warning: {warning}", file=sys.stderr)
    speed = machine_speed(base_table, new_table)
    if speed is not None and speed.changed:
        print(f"twolayer compare: warning: {speed.describe()}; the verdicts that could come from the machine "
              "are inconclusive", file=sys.stderr)
    table = compare_tables(base_table, new_table, args.threshold / 100, speed)
    if not table["verdict"].isin(GATED_VERDICTS).any():
        raise UsageError("no benchmark is in both runs: nothing to compare (check sizes, dtypes and devices)")
    out = Path(args.out) if args.out else new[0].parent
    write_all_atomically(compare_files(out / "compare.csv", table, args.markdown, args.report_url, "time", args.threshold))
    print(verdict_text(table, out / "compare.csv", args.threshold))
    if (table["interval_kind"] == WITHIN_RUN).any():
        print("compare: note: with one run per side the intervals cover round-to-round noise only, not the "
              "run-to-run drift of a shared machine; give several alternated runs per side (or --repeat), "
              "or use `twolayer gate` for paired timing")
    return 1 if (table["verdict"] == "slower").any() else 0
