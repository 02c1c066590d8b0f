"""SIGTERM (a cancelled CI job, `timeout`) stops a command as Ctrl-C does: the same paths keep what
had finished, and the exit status says which signal it was."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGINT_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
SIGTERM_EXIT = 143  # 128 + SIGTERM


_terminated = False  # whether this process has received SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, and handled wherever an interrupt is."""


def _raise_terminated(signum, frame) -> None:
    global _terminated
    _terminated = True
    raise Terminated()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread; the
    handler before it is restored after. Off the main thread, where no handler can be set, nothing
    changes."""
    global _terminated
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _terminated = False
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_exit() -> int:
    """The exit status of a command stopped by a signal: 143 after SIGTERM, else 130 (Ctrl-C)."""
    return SIGTERM_EXIT if _terminated else SIGINT_EXIT


def interrupt_word() -> str:
    """How the command's one line names its stop."""
    return "terminated (SIGTERM)" if _terminated else "interrupted"
