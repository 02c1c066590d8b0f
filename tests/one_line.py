"""The one-line rule for a failing command: one line of ours on stderr, whatever libraries print."""

from twolayer.chatter import is_library_chatter
from twolayer.cli import main


def run_cli(capsys, *argv):
    """`twolayer ARGV` in this process: its exit code, stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def our_lines(err: str) -> list[str]:
    """stderr's lines, less only the known library chatter that `twolayer.chatter` names."""
    return [line for line in err.splitlines() if line.strip() and not is_library_chatter(line)]


BUSY_WARNING = "twolayer run: warning: the machine is busy"


def failure_lines(err: str) -> list[str]:
    """What a command that started running said of its failure: our lines, less the busy-machine
    warning a run gives before timing starts (on a shared machine it may precede any failure)."""
    return [line for line in our_lines(err) if not line.startswith(BUSY_WARNING)]


def assert_one_line(err: str, message: str = "", started: bool = False) -> None:
    """One line of ours on stderr; `started`: a run that got as far as timing, so the busy-machine
    warning may come before its failure line."""
    lines = failure_lines(err) if started else our_lines(err)
    assert len(lines) == 1 and lines[0].startswith(("twolayer ", "twolayer:")) and message in lines[0], err
