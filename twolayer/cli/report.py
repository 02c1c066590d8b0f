"""`twolayer report`: CSV comparison reports and report.md from one or more runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from twolayer.atomic_files import write_all_atomically
from twolayer.cli.args import (
    UsageError,
)
from twolayer.report.counters import counters_report_files
from twolayer.report.page import DEFAULT_BASELINE, build_report, write_report
from twolayer.results.counters import read_counters
from twolayer.results.table import load_runs
from twolayer.schema import COUNTERS_FILE


def add_parser(commands) -> None:
    reporting = commands.add_parser("report", help="write CSV comparison reports and report.md from runs")
    reporting.add_argument("runs", nargs="+", metavar="RUN.json")
    reporting.add_argument("--out", help="report directory (default: the run's own directory)")
    reporting.add_argument("--baseline", default=None,
                           help=f"variant the speedups are measured against, on cpu (default: {DEFAULT_BASELINE})")
    reporting.add_argument("--readme", help="also write the report into this Markdown file, between its markers")
    reporting.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.runs]
    if args.out is None and len(paths) > 1:
        raise UsageError("--out is required when several runs are merged into one report")
    out = Path(args.out) if args.out else paths[0].parent
    if all(path.name == COUNTERS_FILE for path in paths):  # `twolayer count` runs: a counters-only report
        if args.readme:
            raise UsageError("--readme takes timing runs; a counters-only report has no README section")
        import pandas as pd

        files = counters_report_files(pd.concat([read_counters(p) for p in paths]), out)
        write_all_atomically(files)
        print(f"report: {out / 'report.md'} ({len(files)} files)")
        return 0
    readme = Path(args.readme) if args.readme else None
    report = build_report(load_runs(paths), args.baseline or DEFAULT_BASELINE, baseline_named=args.baseline is not None)
    written = write_report(report, out, readme)
    print(f"report: {out / 'report.md'} ({len(written)} files)")
    return 0
