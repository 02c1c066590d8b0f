"""SIGTERM (a cancelled CI job, `timeout`) stops a command as Ctrl-C does: the same paths keep what
had finished, and the exit status says which signal it was."""

from __future__ import annotations

import signal

SIGINT_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
SIGTERM_EXIT = 143  # 128 + SIGTERM


_terminated = False  # whether this process has received SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, and handled wherever an interrupt is."""


def _raise_terminated(signum, frame) -> None:
    global _terminated
    _terminated = True
    raise Terminated()


def terminate_as_interrupt() -> None:
    """From now on, SIGTERM raises `Terminated` in the main thread (a KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def interrupt_exit() -> int:
    """The exit status of a command stopped by a signal: 143 after SIGTERM, else 130 (Ctrl-C)."""
    return SIGTERM_EXIT if _terminated else SIGINT_EXIT


def interrupt_word() -> str:
    """How the command's one line names its stop."""
    return "terminated (SIGTERM)" if _terminated else "interrupted"
