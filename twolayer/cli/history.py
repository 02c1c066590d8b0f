"""`twolayer history`: each benchmark across commits, and where it changed."""

from __future__ import annotations

import argparse
from pathlib import Path

from twolayer.analysis.history import build_history
from twolayer.atomic_files import write_all_atomically
from twolayer.report.history import history_files


def add_parser(commands) -> None:
    history = commands.add_parser(
        "history", help="each benchmark across commits: history.csv, change points (changes.csv), trend charts")
    history.add_argument("paths", nargs="+", metavar="DIR_OR_JSON",
                         help="runs: pytest-benchmark JSON files, or folders searched for benchmarks.json")
    history.add_argument("--out", default="results/history", help="where the history goes (default: results/history)")
    history.add_argument("--note", default="", help="a line under history.md's title (where the runs came from)")
    history.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    history = build_history([Path(p) for p in args.paths])
    out = Path(args.out)
    write_all_atomically(history_files(history, out, args.note))
    changes = history.changes
    print(f"history: {history.table['commit'].nunique()} commits, {len(changes)} change points "
          f"({', '.join(f'{n} {cause}' for cause, n in changes['cause'].value_counts().items()) or 'none'}); "
          f"{out / 'history.md'}, {out / 'history.csv'}, {out / 'changes.csv'}")
    return 0
