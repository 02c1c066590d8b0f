"""The command line's shared parts: its parser, argument types, option groups and exit codes."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

from twolayer.cases import split_list
from twolayer.count.driver import CUDA_CALLGRIND_TIMEOUT_S, INSTALL_VALGRIND, CountOptions, parse_metrics, valgrind_version
from twolayer.flops import PHASES
from twolayer.variants import VARIANTS


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


def number(text: str, kind: type, what: str, within: Callable[[float], bool], bounded: str | None = None):
    """`text` as a `kind` for which `within` holds; otherwise argparse's error, "expected `what`"
    (or `bounded` where the number parsed but fell outside)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not within(value):
        raise argparse.ArgumentTypeError(f"expected {bounded or what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return number(text, int, "a positive integer", lambda value: value >= 1)


def non_negative_int(text: str) -> int:
    return number(text, int, "a non-negative integer", lambda value: value >= 0)


def positive_float(text: str) -> float:
    return number(text, float, "a positive number", lambda value: math.isfinite(value) and value > 0,
                  bounded="a finite positive number")


def names(text: str) -> str:
    """A selection option's value: at least one comma-separated name (an empty one would silently
    mean the default)."""
    if not split_list(text):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}; leave the option out for "
                                         "the default")
    return text


def add_selection_options(parser: argparse.ArgumentParser, devices_default: str | None = None) -> None:
    """The selection every timing and counting command takes (run, gate, count), declared once."""
    devices = devices_default or "every one present"
    parser.add_argument("--variants", type=names, help=f"comma-separated (default: all): {', '.join(VARIANTS)}")
    parser.add_argument("--devices", type=names, default=devices_default,
                        help=f"comma-separated: cpu, cuda, mps (default: {devices})")
    parser.add_argument("--phases", type=names, help=f"comma-separated (default: all): {', '.join(PHASES)}")
    parser.add_argument("--dtypes", "--dtype", dest="dtypes", type=names,
                        help="comma-separated: float32, float64, or tutorial for each variant's own (default: float32)")
    parser.add_argument("--sizes", type=names, help="comma-separated NxD_INxHxD_OUT (default: 64x1000x100x10)")


def selection_of(args: argparse.Namespace) -> dict[str, str | None]:
    """The selection options as given, by name (variants, devices, phases, dtypes, sizes)."""
    return {name: getattr(args, name) for name in SELECTION}


SELECTION = ("variants", "devices", "phases", "dtypes", "sizes")


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


def count_options(args: argparse.Namespace, out: Path, **selection) -> CountOptions:
    """The counting options of `count`, or of `run --counters` with its resolved selection; checked
    up front, so that a run is never timed only to fail at counting (valgrind absent, a bad metric)."""
    fields = {**selection_of(args), **selection}
    options = CountOptions(**fields, metrics=parse_metrics(args.metrics), calls=args.calls, out=out,
                           valgrind=args.valgrind, callgrind_timeout_s=args.callgrind_timeout)
    if "instructions" in options.metrics and valgrind_version(options.valgrind) is None:
        raise UsageError(INSTALL_VALGRIND if args.valgrind == "valgrind"
                         else f"--valgrind {args.valgrind}: not a valgrind that runs here")
    return options


SIGPIPE_EXIT = 141  # 128 + SIGPIPE, as a shell reports a command whose reader went away
def os_error_text(error: Exception) -> str:
    """`reason: file` for an OSError (the file it concerns named), else the error's own message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error)


