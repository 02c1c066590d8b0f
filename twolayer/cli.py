"""The `twolayer` command: list the variants, train one, run the benchmarks, report and compare runs."""

from __future__ import annotations

import argparse
import math
import os
import sys
import unicodedata
from pathlib import Path
from typing import Sequence

import torch

from twolayer.cases import SWEEP_PHASES, SWEEP_SIZES, plan_cases, split_list
from twolayer.chatter import quiet_library_chatter
from twolayer.compare import GATED_VERDICTS, WITHIN_RUN, compare_tables, machine_speed, provenance_differences
from twolayer.counters import CUDA_CALLGRIND_TIMEOUT_S, CountOptions
from twolayer.counters import METRICS as COUNTER_METRICS
from twolayer.devices import KNOWN_DEVICES, available_devices, device_absent_reason
from twolayer.environment import oversubscription, set_threads
from twolayer.files import write_all_atomically
from twolayer.flops import PHASES
from twolayer.peak import cache_path, cached_peaks
from twolayer.problem import DTYPES, Problem
from twolayer.report import DEFAULT_BASELINE, build_report, write_report
from twolayer.results import ResultsError, load_runs, read_run
from twolayer.run import RESULT_FILE, RunFailed, RunInterrupted, RunOptions, run_suite
from twolayer.train import NonFiniteLoss, train
from twolayer.variants import VARIANTS, build, device_problem, resolve
from twolayer.variants.ddp import DEFAULT_COLLECTIVE_TIMEOUT_S


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line and exit code 2, never a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def world_sizes(text: str) -> tuple[int, ...]:
    """`--world-size 1,2`: positive integers, each once, in the order given."""
    sizes = tuple(dict.fromkeys(positive_int(part) for part in split_list(text)))
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return sizes


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def display_width(text: str) -> int:
    """Terminal columns taken by `text` (the section names are double-width CJK)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("name", "section", "origin", "devices", "default dtype", "what it is")]
    for info in VARIANTS.values():
        rows.append((info.name, info.section, info.origin, ",".join(info.devices), info.default_dtype, info.summary))
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths)]
        print("  ".join(cells) + "  " + row[-1])
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    reason = device_problem(args.variant, args.device)
    if reason is not None:
        raise UsageError(reason)
    problem = resolve(
        args.variant,
        Problem(iterations=args.iterations, seed=args.seed, dtype=args.dtype, learning_rate=args.learning_rate),
    )
    print(f"# {args.variant} on {args.device}, {problem.dtype}, learning rate {problem.learning_rate:g}, seed {problem.seed}")
    variant = build(args.variant, problem, args.device)
    final = train(variant, problem.iterations, every=args.every, log=lambda it, loss: print(it, loss))
    print(f"final loss {final}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    sizes, phases = args.sizes, args.phases
    if args.sweep:
        sizes, phases = sizes or ",".join(SWEEP_SIZES), phases or ",".join(SWEEP_PHASES)
    options = RunOptions(variants=args.variants, devices=args.devices, phases=phases, dtypes=args.dtypes,
                         sizes=sizes, threads=args.threads, budget_s=args.budget_s, quick=args.quick,
                         out=Path(args.out), peak=not args.no_peak, repeat=args.repeat, shuffle_seed=args.shuffle_seed,
                         retimes=args.retimes, world_sizes=args.world_size, scaling=args.scaling,
                         collective_timeout_s=args.collective_timeout_s)
    counting = None
    if args.counters:  # the same selection (its distributed variants are timed, not counted)
        counting = count_options(args, Path(args.out), phases=phases, sizes=sizes, quick=args.quick)
    try:
        run_dir = run_suite(options)
        if run_dir is None:  # a rank other than 0 of a torchrun job
            print(f"rank {os.environ.get('RANK')}: done; rank 0 writes the results")
            return 0
    except RunFailed as error:
        print(f"twolayer run: error: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as stop:
        if stop.kept is None:
            print("twolayer run: interrupted before any benchmark was saved; nothing was kept", file=sys.stderr)
        else:
            print(f"twolayer run: interrupted; the {stop.finished} finished benchmarks are kept, marked interrupted, "
                  f"in {stop.kept / RESULT_FILE}", file=sys.stderr)
        return INTERRUPTED_EXIT
    print(f"results: {run_dir / RESULT_FILE}")
    if counting is not None:
        from twolayer.counters import CountError, count_selection

        try:
            count_selection(counting, run_dir=run_dir)
        except (CountError, ValueError) as error:
            print(f"twolayer run: error: the timings are kept in {run_dir}, but they could not be counted: {error}",
                  file=sys.stderr)
            return 1
        print(f"counters: {run_dir / 'counters.json'}")
    if not args.no_report:
        try:
            written = write_report(build_report(load_runs([run_dir / RESULT_FILE])), run_dir)
        except (ResultsError, OSError) as error:
            print(f"twolayer run: error: the results are kept, but no report could be made: {os_error_text(error)}",
                  file=sys.stderr)
            return 1
        print(f"report: {run_dir / 'report.md'} ({len(written)} files: summary.csv, comparison.csv, devices.csv, ...)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from twolayer.counters import COUNTERS_FILE, counters_report_files, read_counters

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


def counted_side(paths: list[Path]):
    """The counters of one side: each path a counters.json, a run directory, or a run's JSON with
    counters beside it; several runs of a side agree (the counts are deterministic), so their
    median is taken."""
    import pandas as pd

    from twolayer.counters import COUNTERS_FILE, KEY, METRICS, counters_beside, read_counters

    frames = []
    for path in paths:
        source = path if path.is_dir() or path.name == COUNTERS_FILE else counters_beside(path)
        if source is None:
            raise UsageError(f"{path}: no counters.json beside it; count with `twolayer count` or `twolayer run --counters`")
        frames.append(read_counters(source))
    table = pd.concat(frames)
    return table.groupby(list(KEY), dropna=False)[list(METRICS)].median().reset_index()


def cmd_compare_counters(args: argparse.Namespace, base: list[Path], new: list[Path]) -> int:
    from twolayer.counters import DEFAULT_THRESHOLD_PCT, compare_counters

    threshold = DEFAULT_THRESHOLD_PCT if args.threshold is None else args.threshold
    table = compare_counters(counted_side(base), counted_side(new), args.metric, threshold / 100)
    if not table["verdict"].isin(["slower", "faster", "unchanged"]).any():
        raise UsageError(f"no benchmark has {args.metric} on both sides: nothing to compare")
    out = Path(args.out) if args.out else (new[0] if new[0].is_dir() else new[0].parent)
    write_compare(out / "compare.csv", table, args, args.metric, threshold)
    print(table[["verdict", "device", "variant", "phase", "dtype", "size", "base", "new", "ratio"]].to_string(
        index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))
    counts = table["verdict"].value_counts()
    print(f"compare: {out / 'compare.csv'}; {args.metric}: {counts.get('slower', 0)} slower, "
          f"{counts.get('faster', 0)} faster, {counts.get('unchanged', 0)} unchanged beyond {threshold:g}% "
          "(deterministic counts: no interval)")
    return 1 if (table["verdict"] == "slower").any() else 0


def cmd_compare(args: argparse.Namespace) -> int:
    base, new = [Path(p) for p in split_list(args.base)], [Path(p) for p in split_list(args.new)]
    if not base or not new:
        raise UsageError("give at least one run on each side")
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
    write_compare(out / "compare.csv", table, args, "time", args.threshold)
    print_verdicts(table, out / "compare.csv", args.threshold)
    if (table["interval_kind"] == WITHIN_RUN).any():
        print("compare: note: with one run per side the intervals cover round-to-round noise only, not the "
              "run-to-run drift of a shared machine; give several alternated runs per side (or --repeat), "
              "or use `twolayer gate` for paired timing")
    return 1 if (table["verdict"] == "slower").any() else 0


def write_compare(path: Path, table, args: argparse.Namespace, metric: str, threshold_pct: float) -> None:
    """compare.csv, and with `--markdown` its Markdown beside it, both or neither."""
    files = {path: table.to_csv(index=False)}
    if getattr(args, "markdown", None):
        from twolayer.verdict_markdown import verdict_markdown

        files[Path(args.markdown)] = verdict_markdown(table, metric, threshold_pct, args.report_url)
    write_all_atomically(files)


def cmd_history(args: argparse.Namespace) -> int:
    from twolayer.history import build_history
    from twolayer.history_report import history_files

    history = build_history([Path(p) for p in args.paths])
    out = Path(args.out)
    write_all_atomically(history_files(history, out, args.note))
    changes = history.changes
    print(f"history: {history.table['commit'].nunique()} commits, {len(changes)} change points "
          f"({', '.join(f'{n} {cause}' for cause, n in changes['cause'].value_counts().items()) or 'none'}); "
          f"{out / 'history.md'}, {out / 'history.csv'}, {out / 'changes.csv'}")
    return 0


def print_verdicts(table, path: Path, threshold_pct: float) -> None:
    """The verdict table on stdout, the reasons of the inconclusive, and a one-line summary."""
    import pandas as pd

    view = table.assign(base_us=table["base_median_s"] * 1e6, new_us=table["new_median_s"] * 1e6)
    columns = ["verdict", "device", "variant", "phase", "dtype", "size", "base_us", "new_us", "ratio", "ratio_low",
               "ratio_high"]
    print(view[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    for row in table[table["reason"].fillna("") != ""].itertuples():
        label = " ".join(str(v) for v in (row.device, row.variant, row.phase, row.dtype, row.size) if pd.notna(v))
        print(f"  {row.verdict}: {label}: {row.reason}")
    counts = table["verdict"].value_counts()
    print(f"compare: {path}; {counts.get('slower', 0)} slower, {counts.get('faster', 0)} faster, "
          f"{counts.get('inconclusive', 0)} inconclusive, {counts.get('unchanged', 0)} unchanged beyond "
          f"{threshold_pct:g}% (95% interval of the median ratio)")


def cmd_gate(args: argparse.Namespace) -> int:
    from twolayer.canary import machine_state
    from twolayer.environment import PROJECT_ROOT
    from twolayer.gate import GateError, GateOptions, run_gate

    base_tree, head_tree = Path(args.base_tree), Path(args.head) if args.head else PROJECT_ROOT
    for tree in (base_tree, head_tree):
        if not tree.is_dir():
            raise UsageError(f"{tree}: {'not a directory' if tree.exists() else 'no such directory'}")
    # a bad selection is refused here, in one line, before any worker starts or any file is written
    cases = plan_cases(args.variants, args.devices, args.phases, args.dtypes, args.sizes)
    runnable = [case for case in cases if case.skip_reason is None]
    if not runnable:
        reasons = "; ".join(sorted({case.skip_reason for case in cases}))
        raise UsageError(f"the selection matches no benchmark that can run here ({reasons})")
    out = Path(args.out)
    options = GateOptions(threshold=args.threshold / 100, block_s=args.block_ms / 1000, budget_s=args.budget_s,
                          retimes=args.retimes, processes=args.processes)
    selection = {"variants": args.variants, "devices": args.devices, "phases": args.phases, "dtypes": args.dtypes,
                 "sizes": args.sizes, "threads": args.threads}
    if args.threads is not None:
        set_threads(args.threads)
    too_many = oversubscription(args.threads)
    if too_many:
        print(f"twolayer gate: warning: {too_many}", file=sys.stderr, flush=True)
    state = machine_state(Path("results"))
    if state.busy:
        print(f"twolayer gate: note: the machine is busy ({state.describe()}); the paired timing cancels steady load, "
              "and a benchmark it cannot decide is reported inconclusive", file=sys.stderr, flush=True)
    try:
        table, warnings = run_gate(base_tree, head_tree, out, selection, options)
    except GateError as error:
        print(f"twolayer gate: error: {error}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"twolayer gate: warning: {warning}", file=sys.stderr)
    print_verdicts(table, out / "compare.csv", args.threshold)
    print(f"gate: {out / 'gate.md'} (Markdown for a pull request), {out / 'gate.json'} (every pair)")
    return 1 if (table["verdict"] == "slower").any() else 0


def count_options(args: argparse.Namespace, out: Path, **selection) -> CountOptions:
    """The counting options of `count`, or of `run --counters` with its resolved selection; checked
    up front, so that a run is never timed only to fail at counting (valgrind absent, a bad metric)."""
    from twolayer.counters import INSTALL_VALGRIND, parse_metrics, valgrind_version

    fields = {"variants": args.variants, "devices": args.devices, "phases": args.phases, "dtypes": args.dtypes,
              "sizes": args.sizes, **selection}
    options = CountOptions(**fields, metrics=parse_metrics(args.metrics), calls=args.calls, out=out,
                           valgrind=args.valgrind, callgrind_timeout_s=args.callgrind_timeout)
    if "instructions" in options.metrics and valgrind_version(options.valgrind) is None:
        raise UsageError(INSTALL_VALGRIND if args.valgrind == "valgrind"
                         else f"--valgrind {args.valgrind}: not a valgrind that runs here")
    return options


def cmd_count(args: argparse.Namespace) -> int:
    from twolayer.counters import CountError, count_selection

    options = count_options(args, Path(args.out))
    try:
        run_dir = count_selection(options)
    except CountError as error:
        print(f"twolayer count: error: {error}", file=sys.stderr)
        return 2
    print(f"counters: {run_dir / 'counters.json'}; report: {run_dir / 'report.md'}, {run_dir / 'summary.csv'}")
    return 0


def cmd_peak(args: argparse.Namespace) -> int:
    devices = split_list(args.devices) or tuple(available_devices())
    dtypes = split_list(args.dtypes)
    if not dtypes:
        raise UsageError(f"--dtypes names no dtype; choose from {', '.join(DTYPES)}")
    for device in devices:
        reason = device_absent_reason(device)
        if reason is not None:
            raise UsageError(reason)
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if args.threads is not None:
        set_threads(args.threads)
    peaks = cached_peaks(Path(args.out), list(devices), list(dtypes), refresh=True)
    disturbed = [peak for peak in peaks.values() if peak.disturbed]
    if disturbed:
        print(f"twolayer peak: warning: the machine was busy while the peak was measured ({disturbed[0].state}); "
              "these figures are not a ceiling and were not cached", file=sys.stderr)
    print(f"{'device':<8} {'dtype':<8} {'square GFLOP/s':>15} {'problem GFLOP/s':>16}  by library (square)")
    for peak in peaks.values():
        libraries = ", ".join(f"{name} {gflops:.0f}" for name, gflops in peak.square_gflops_by_library.items())
        print(f"{peak.device:<8} {peak.dtype:<8} {peak.square_gflops:>15.1f} {peak.problem_gflops:>16.1f}  "
              f"{libraries}; {peak.device_name}, square {peak.square_n}, {peak.torch_threads} threads")
    if not disturbed:
        print(f"peak: {cache_path(Path(args.out))}")
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    runnable = [name for name in VARIANTS if device_problem(name, "cpu") is None and "iteration" in VARIANTS[name].phases]
    names = split_list(args.variants) or tuple(runnable)
    for name in names:
        if name not in VARIANTS:
            raise UsageError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        if name not in runnable:
            raise UsageError(f"{name} cannot run its iteration on the cpu here: {device_problem(name, 'cpu')}")
    if args.threads is not None:
        set_threads(args.threads)
    from twolayer.canary import machine_state
    from twolayer.fidelity import check_fidelity  # pytest and torch.utils.benchmark: only once the input is good

    before = machine_state(Path("results"))
    try:
        rows = check_fidelity(list(names), args.budget_s)
    except RunFailed as error:
        print(f"twolayer fidelity: error: {error}", file=sys.stderr)
        return 1
    after = machine_state(Path("results"))
    disturbed = before.busy or after.busy
    if disturbed:  # the two timers ran at different moments: a busy machine's moments differ
        print(f"twolayer fidelity: warning: the machine was busy (before: {before.describe()}; after: "
              f"{after.describe()}); a ratio may then compare two moments rather than two timers: rerun on a "
              "quiet machine", file=sys.stderr)
    print(f"{'variant':<20} {'suite_median_us':>16} {'timer_median_us':>16} {'ratio':>7}   ({torch.get_num_threads()} threads)")
    for row in rows:
        print(f"{row.variant:<20} {row.suite_median_s * 1e6:>16.1f} {row.timer_median_s * 1e6:>16.1f} {row.ratio:>7.3f}"
              + ("  (disturbed)" if disturbed else ""))
    return 0


def add_counting_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", default=None,
                        help="comma-separated: instructions, aten_ops, alloc_bytes, launches, gpu_kernels "
                             "(default: all; the last two on cuda only)")
    parser.add_argument("--calls", type=positive_int, default=5,
                        help="counted calls per benchmark; the figure is their mean (default: 5)")
    parser.add_argument("--valgrind", default="valgrind", metavar="PATH",
                        help="the valgrind to count instructions with (default: valgrind on PATH)")
    parser.add_argument("--callgrind-timeout", type=positive_float, default=None, metavar="SECONDS",
                        help="most seconds a device's callgrind process may take: past it the cpu count fails, "
                             "cuda's instructions are left empty with the reason (default: none on cpu, "
                             f"{CUDA_CALLGRIND_TIMEOUT_S:.0f} s on cuda)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="twolayer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list the variants")
    listing.set_defaults(handler=cmd_list)

    training = commands.add_parser("train", help="train one variant and print its loss log, as the tutorial does")
    training.add_argument("variant", metavar="VARIANT", choices=list(VARIANTS), help=", ".join(VARIANTS))
    training.add_argument("--device", default="cpu", choices=KNOWN_DEVICES)
    training.add_argument("--dtype", choices=DTYPES, default=None, help="default: the variant's tutorial dtype")
    training.add_argument("--iterations", type=non_negative_int, default=Problem.iterations)
    training.add_argument("--seed", type=non_negative_int, default=Problem.seed)
    training.add_argument("--every", type=positive_int, default=50, help="log the loss every E iterations")
    training.add_argument("--learning-rate", type=positive_float, default=None,
                          help="default: the variant's tutorial rate")
    training.set_defaults(handler=cmd_train)

    running = commands.add_parser(
        "run", help="benchmark every variant per phase on the devices present; write results/<run id>/")
    running.add_argument("--variants", help=f"comma-separated (default: all): {', '.join(VARIANTS)}")
    running.add_argument("--devices", help="comma-separated: cpu, cuda, mps (default: every one present)")
    running.add_argument("--phases", help=f"comma-separated (default: all): {', '.join(PHASES)}")
    running.add_argument("--dtypes", "--dtype", dest="dtypes",
                         help="comma-separated: float32, float64, or tutorial for each variant's own (default: float32)")
    running.add_argument("--sizes", help="comma-separated NxD_INxHxD_OUT (default: 64x1000x100x10)")
    running.add_argument("--threads", type=positive_int, help="torch and BLAS threads (default: torch's; recorded either way)")
    running.add_argument("--budget-s", type=positive_float, help="seconds of timing per benchmark (default: 1)")
    running.add_argument("--sweep", action="store_true",
                         help=f"the size sweep: --sizes {','.join(SWEEP_SIZES)} and --phases iteration, unless given")
    running.add_argument("--quick", action="store_true", help="a short run, seconds in all (for CI smoke tests)")
    running.add_argument("--repeat", type=positive_int, default=1, metavar="K",
                         help="K passes over the selection, each in its own shuffled order; reports show the "
                              "between-pass spread (default: 1)")
    running.add_argument("--shuffle-seed", type=non_negative_int, default=None,
                         help="seed of the passes' order (default: random; recorded in the JSON)")
    running.add_argument("--retimes", type=non_negative_int, default=2,
                         help="time benchmarks disturbed by other work again, at most this often (default: 2)")
    running.add_argument("--world-size", type=world_sizes, default=None, metavar="W[,W...]",
                         help="time the distributed variants (ddp) with W ranks on this machine, one launch per W "
                              "(e.g. 1,2); default: in this process, a world of one")
    running.add_argument("--scaling", choices=("strong", "weak"), default=None,
                         help="ddp: strong splits the batch of N rows across the ranks (default), weak gives each N")
    running.add_argument("--collective-timeout-s", type=positive_float, default=DEFAULT_COLLECTIVE_TIMEOUT_S,
                         help="ddp: a rank that died or hung fails the run after this many seconds "
                              f"(default: {DEFAULT_COLLECTIVE_TIMEOUT_S:g})")
    running.add_argument("--out", default="results", help="where run directories go (default: results)")
    running.add_argument("--no-report", action="store_true", help="write only the JSON, no CSV reports")
    running.add_argument("--no-peak", action="store_true", help="skip the matmul peak (no %% of peak in the reports)")
    running.add_argument("--counters", action="store_true",
                         help="also count instructions, aten ops and bytes per benchmark (`twolayer count`), "
                              "into the same run directory")
    add_counting_options(running)
    running.set_defaults(handler=cmd_run)

    reporting = commands.add_parser("report", help="write CSV comparison reports and report.md from runs")
    reporting.add_argument("runs", nargs="+", metavar="RUN.json")
    reporting.add_argument("--out", help="report directory (default: the run's own directory)")
    reporting.add_argument("--baseline", default=None,
                           help=f"variant the speedups are measured against, on cpu (default: {DEFAULT_BASELINE})")
    reporting.add_argument("--readme", help="also write the report into this Markdown file, between its markers")
    reporting.set_defaults(handler=cmd_report)

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
    comparing.set_defaults(handler=cmd_compare)

    gating = commands.add_parser(
        "gate", help="paired, interleaved timing of two checkouts; exit 1 when the head is significantly slower")
    gating.add_argument("base_tree", metavar="BASE_TREE", help="a checkout of the base commit (a git worktree)")
    gating.add_argument("--head", help="the checkout under test (default: this one)")
    gating.add_argument("--variants", help="comma-separated (default: all)")
    gating.add_argument("--devices", help="comma-separated (default: every one present)")
    gating.add_argument("--phases", help="comma-separated (default: all)")
    gating.add_argument("--dtypes", help="comma-separated (default: float32)")
    gating.add_argument("--sizes", help="comma-separated NxD_INxHxD_OUT (default: 64x1000x100x10)")
    gating.add_argument("--threads", type=positive_int, help="torch and BLAS threads on both sides")
    gating.add_argument("--threshold", type=positive_float, default=10.0, help="percent tolerated (default: 10)")
    gating.add_argument("--budget-s", type=positive_float, default=1.0,
                        help="seconds of timing per side and benchmark (default: 1)")
    gating.add_argument("--block-ms", type=positive_float, default=20.0,
                        help="milliseconds of rounds per block; blocks alternate between the sides (default: 20)")
    gating.add_argument("--retimes", type=non_negative_int, default=3,
                        help="extra timings, in fresh worker processes, for a benchmark that cannot be decided (default: 3)")
    gating.add_argument("--processes", type=positive_int, default=6,
                        help="worker processes per side; instances go round them (default: 6)")
    gating.add_argument("--out", default="results/gate", help="where compare.csv, gate.md and gate.json go")
    gating.set_defaults(handler=cmd_gate)

    counting = commands.add_parser(
        "count", help="deterministic counters per benchmark: instructions (callgrind), aten ops, bytes allocated")
    add_counting_options(counting)
    counting.add_argument("--variants", help="comma-separated (default: all)")
    counting.add_argument("--devices", help="comma-separated (default: cpu)", default="cpu")
    counting.add_argument("--phases", help="comma-separated (default: all)")
    counting.add_argument("--dtypes", help="comma-separated (default: float32)")
    counting.add_argument("--sizes", help="comma-separated NxD_INxHxD_OUT (default: 64x1000x100x10)")
    counting.add_argument("--out", default="results", help="where run directories go (default: results)")
    counting.set_defaults(handler=cmd_count)

    history = commands.add_parser(
        "history", help="each benchmark across commits: history.csv, change points (changes.csv), trend charts")
    history.add_argument("paths", nargs="+", metavar="DIR_OR_JSON",
                         help="runs: pytest-benchmark JSON files, or folders searched for benchmarks.json")
    history.add_argument("--out", default="results/history", help="where the history goes (default: results/history)")
    history.add_argument("--note", default="", help="a line under history.md's title (where the runs came from)")
    history.set_defaults(handler=cmd_history)

    peaking = commands.add_parser("peak", help="measure the matmul peak (GFLOP/s) of each device and dtype")
    peaking.add_argument("--devices", help="comma-separated (default: every one present)")
    peaking.add_argument("--dtypes", default="float32,float64", help="comma-separated (default: float32,float64)")
    peaking.add_argument("--threads", type=positive_int)
    peaking.add_argument("--out", default="results", help="where the per-machine cache goes (default: results)")
    peaking.set_defaults(handler=cmd_peak)

    fidelity = commands.add_parser(
        "fidelity", help="check the suite's cpu iteration medians against torch.utils.benchmark.Timer")
    fidelity.add_argument("--variants", help="comma-separated (default: all)")
    fidelity.add_argument("--threads", type=positive_int)
    fidelity.add_argument("--budget-s", type=positive_float, default=1.0, help="seconds per measurement (default: 1)")
    fidelity.set_defaults(handler=cmd_fidelity)
    return parser


INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
SIGPIPE_EXIT = 141  # 128 + SIGPIPE, as a shell reports a command whose reader went away


def os_error_text(error: Exception) -> str:
    """`reason: file` for an OSError (the file it concerns named), else the error's own message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error)


def refuse_interrupted(args: argparse.Namespace) -> None:
    """`compare` judges complete runs only: an interrupted run lacks benchmarks, and those it has
    may have shared the machine with the Ctrl-C. `--allow-interrupted` accepts it anyway."""
    if getattr(args, "allow_interrupted", False) or getattr(args, "metric", "time") != "time":
        return
    for path in [*split_list(args.base), *split_list(args.new)]:
        if (read_run(Path(path)).get("twolayer") or {}).get("interrupted"):
            raise UsageError(f"{path}: the run was interrupted (Ctrl-C) and holds only the benchmarks that had "
                             "finished; give --allow-interrupted to compare it anyway")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_library_chatter()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = getattr(args, "out", None)
        if out is not None and Path(out).exists() and not Path(out).is_dir():
            raise UsageError(f"--out {out}: not a directory")
        if args.command == "compare":
            refuse_interrupted(args)
        code = args.handler(args)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not at exit
        return code
    except BrokenPipeError:
        # the reader of stdout went away: nothing wrong with the input; the rest of the output has
        # nowhere to go (Python's documented way out), and the exit status is a SIGPIPE's, as a shell's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_EXIT
    except (UsageError, ValueError) as error:  # ResultsError is a ValueError
        print(f"twolayer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a path given that cannot be read or written
        print(f"twolayer {args.command}: error: {os_error_text(error)}", file=sys.stderr)
        return 2
    except NonFiniteLoss as error:
        print(f"twolayer {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"twolayer {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
