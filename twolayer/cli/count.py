"""`twolayer count`: deterministic counters per benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twolayer.cli.args import add_counting_options, add_selection_options, count_options
from twolayer.count.callgrind import CountError
from twolayer.count.driver import count_selection


def add_parser(commands) -> None:
    counting = commands.add_parser(
        "count", help="deterministic counters per benchmark: instructions (callgrind), aten ops, bytes allocated")
    add_counting_options(counting)
    add_selection_options(counting, devices_default="cpu")
    counting.add_argument("--out", default="results", help="where run directories go (default: results)")
    counting.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = count_options(args, Path(args.out))
    try:
        run_dir = count_selection(options)
    except CountError as error:
        print(f"twolayer count: error: {error}", file=sys.stderr)
        return 2
    print(f"counters: {run_dir / 'counters.json'}; report: {run_dir / 'report.md'}, {run_dir / 'summary.csv'}")
    return 0
