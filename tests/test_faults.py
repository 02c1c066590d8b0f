"""Faults a newcomer or a CI job meets, each one line and nothing lost: a run killed outright, a
closed stdout, an empty selection option, a run compared with itself."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from one_line import assert_one_line, run_cli

from twolayer.provenance import PROJECT_ROOT
from twolayer.run.keep import OWNER_FILE, claim_partial, clean_abandoned, owner_alive

REFERENCE_RUN = PROJECT_ROOT / "results" / "reference" / "cpu-2core" / "benchmarks.json"


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_partial_run_left_by_a_killed_process_is_removed_and_others_stay(tmp_path):
    killed = tmp_path / ".20261204T000000Z-vm-abc.partial"
    claim_partial(killed)
    (killed / OWNER_FILE).write_text(f"{socket.gethostname()} {dead_pid()}\n")
    elsewhere = tmp_path / ".20261204T000003Z-other-abc.partial"
    claim_partial(elsewhere)
    (elsewhere / OWNER_FILE).write_text(f"another-host {dead_pid()}\n")  # its pid means nothing here
    running = tmp_path / ".20261204T000001Z-vm-abc.partial"
    claim_partial(running)  # this process: alive
    unowned = tmp_path / ".20261204T000002Z-vm-abc.partial"
    unowned.mkdir()  # written before owners were recorded: whose it is cannot be told
    assert owner_alive(killed) is False and owner_alive(running) is True and owner_alive(unowned) is None
    assert owner_alive(elsewhere) is None
    assert clean_abandoned(tmp_path) == [killed]
    assert not killed.exists() and running.is_dir() and unowned.is_dir() and elsewhere.is_dir()


def test_the_next_run_into_the_same_out_says_it_removed_a_killed_runs_partial(capsys, tmp_path, monkeypatch):
    import twolayer.run.driver as driver

    killed = tmp_path / ".20261204T000000Z-vm-abc.partial"
    claim_partial(killed)
    (killed / OWNER_FILE).write_text(f"{socket.gethostname()} {dead_pid()}\n")

    def stop(*args, **kwargs):  # the run goes no further than its start: this test is about what precedes it
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "check_machine", stop)
    code, _, err = run_cli(capsys, "run", "--quick", "--no-peak", "--out", str(tmp_path), "--variants", "numpy_manual")
    assert code == 130
    assert f"removed {killed}, left by a run that was killed" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["list"], ["run", "--variants", "nope"], ["--help"]])
def test_a_closed_stdout_gives_no_traceback(argv):
    result = subprocess.run(["bash", "-c", f'"{sys.executable}" -m twolayer "$@" >&-', "bash", *argv],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr
    assert result.returncode == (2 if "nope" in argv else 0), result.stderr


@pytest.mark.parametrize("command", ["run", "gate", "count"])
@pytest.mark.parametrize("option", ["--variants", "--devices", "--phases", "--dtypes", "--sizes"])
def test_an_empty_selection_option_is_refused_in_one_line(capsys, command, option):
    argv = [command, *([str(PROJECT_ROOT)] if command == "gate" else []), option, " , "]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line(err, "expected comma-separated names")
    assert f"argument {option}" in err


@pytest.mark.slow
def test_compare_of_a_run_with_itself_says_so(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compare", str(REFERENCE_RUN), str(REFERENCE_RUN.parent / "." / REFERENCE_RUN.name),
                           "--out", str(tmp_path))
    assert code == 0
    assert "both sides are the same run: it is compared with itself" in err
    code, _, err = run_cli(capsys, "compare", str(REFERENCE_RUN), str(PROJECT_ROOT / "tests" / "data" / "cpu_run.json"),
                           "--out", str(tmp_path))
    assert "same run" not in err
