"""The `twolayer` command: list the variants, train one, run the benchmarks, report and compare runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from twolayer.chatter import quiet_library_chatter
from twolayer.cli import compare, count, fidelity, gate, history, peak, report, run, train
from twolayer.cli import list as list_command
from twolayer.cli.args import SIGPIPE_EXIT, OneLineParser, UsageError, os_error_text
from twolayer.stopping import interrupt_exit, interrupt_word
from twolayer.train import NonFiniteLoss

COMMANDS = (list_command, train, run, report, compare, gate, count, history, peak, fidelity)


def build_parser() -> argparse.ArgumentParser:
    """The `twolayer` parser: each command module adds its own subparser and handler."""
    parser = OneLineParser(prog="twolayer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the command: its exit status, with bad input, an unreadable path or an interrupt
    as one line on stderr (2, 2, 130), a closed stdout as 141."""
    for stream in ("stdout", "stderr"):  # started with it closed (`>&-`): what it would say goes nowhere
        if getattr(sys, stream) is None:
            setattr(sys, stream, open(os.devnull, "w", encoding="utf-8"))
    quiet_library_chatter()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = getattr(args, "out", None)
        if out is not None and Path(out).exists() and not Path(out).is_dir():
            raise UsageError(f"--out {out}: not a directory")
        if args.command == "compare":
            compare.refuse_interrupted(args)
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
        print(f"twolayer {args.command}: {interrupt_word()}", file=sys.stderr)
        return interrupt_exit()
