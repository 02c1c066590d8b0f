"""`twolayer run` with the distributed variant: ranks launched per world size, rank 0's results
merged into one run, `comm_s` and the report's section, and the faults: bad options in one line, a
killed or hung rank failing the run within a bounded time, naming the rank, leaving no process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from one_line import assert_one_line, failure_lines, run_cli
from synthetic_runs import bench, constant, write_run

from twolayer.provenance import PROJECT_ROOT
from twolayer.results.table import load_runs
from twolayer.run.ddp_launch import failure_line
from twolayer.run.rank_pytest import rank_arguments

SIZE = "16x50x20x5"  # small, and stable under plain SGD for the thousands of iterations a timing runs


@pytest.mark.parametrize("argv, message", [
    (["--variants", "numpy_manual", "--world-size", "2"], "--world-size applies to the distributed variants"),
    (["--variants", "ddp", "--world-size", "0"], "expected a positive integer, got '0'"),
    (["--variants", "ddp", "--world-size", "2", "--sizes", "15x50x20x5"],
     "N=15 rows cannot be split evenly across 2 ranks"),
    (["--variants", "ddp", "--scaling", "sideways"], "invalid choice: 'sideways'"),
    (["--variants", "ddp", "--collective-timeout-s", "0"], "expected a finite positive number"),
])
def test_bad_distributed_options_are_one_line_and_write_nothing(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path / "out"), *argv)
    assert code == 2
    assert_one_line(err, message)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_under_torchrun_the_world_size_is_torchruns(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "ddp", "--world-size", "2")
    assert code == 2
    assert_one_line(err, "under torchrun the world size is torchrun's (WORLD_SIZE=2)")
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "ddp,torch_manual")
    assert code == 2
    assert_one_line(err, "under torchrun only the distributed variants run; leave out torch_manual")


def test_ddp_is_not_counted(capsys, tmp_path):
    code, _, err = run_cli(capsys, "count", "--variants", "ddp", "--out", str(tmp_path), "--metrics", "aten_ops")
    assert code == 2
    assert_one_line(err, "ddp is not counted")


def test_only_rank_zero_writes_the_json_and_every_rank_stops_at_its_first_failure():
    args = ["bench/test_phases.py", "--benchmark-json=/x.json", "-p", "twolayer.run.pytest_outcomes", "--tl-passed-file=/p"]
    assert rank_arguments(list(args), 0) == [*args, "-x"]
    assert rank_arguments(list(args), 1) == ["bench/test_phases.py", "-x"]


def failure(exitcode, timestamp):
    return SimpleNamespace(exitcode=exitcode, timestamp=timestamp)


def test_the_failure_line_names_the_rank_that_failed_not_those_stopped_after_it(tmp_path):
    line = failure_line({0: failure(-signal.SIGTERM, 10.0), 1: failure(-signal.SIGKILL, 10.0)}, 2, tmp_path)
    assert line.startswith("twolayer run: rank 1 of 2 failed (killed by SIGKILL)")
    (tmp_path / "rank-1.error").write_text("test_phase[x]: RuntimeError: boom")
    line = failure_line({0: failure(-signal.SIGTERM, 9.0), 1: failure(1, 10.0)}, 2, tmp_path)
    assert line.startswith("twolayer run: rank 1 of 2 failed (exit code 1): test_phase[x]: RuntimeError: boom")


def test_a_collective_timeout_names_the_ranks_that_went_silent(tmp_path):
    (tmp_path / "rank-0.error").write_text("test_phase[x]: RuntimeError: Timed out waiting 5000ms for recv")
    line = failure_line({0: failure(1, 10.0), 2: failure(-signal.SIGKILL, 12.0)}, 3, tmp_path)
    assert line.startswith("twolayer run: rank(s) 1, 2 of 3 hung or died: rank 0 timed out waiting for them")


def test_world_size_scaling_and_comm_s_in_the_tidy_table(tmp_path):
    backward = bench("ddp", "backward", constant(300e-6))
    backward["extra_info"] |= {"world_size": 2, "scaling": "strong", "solo_s": constant(200e-6, rounds=7)}
    forward = bench("ddp", "forward", constant(100e-6))
    forward["extra_info"] |= {"world_size": 2, "scaling": "strong"}
    alone = bench("ddp", "backward", constant(150e-6))
    alone["extra_info"] |= {"world_size": 1, "scaling": "strong"}
    old = bench("nn_sequential_optim", "backward", constant(250e-6))  # a row from before world sizes existed
    table = load_runs([write_run(tmp_path / "run.json", [backward, forward, alone, old])]).set_index(
        ["variant", "phase", "world_size"])
    assert table.loc[("ddp", "backward", 2), "comm_s"] == pytest.approx(100e-6)
    assert np.isnan(table.loc[("ddp", "forward", 2), "comm_s"])
    assert np.isnan(table.loc[("ddp", "backward", 1), "comm_s"])  # a world of one has no peers
    assert table.loc[("nn_sequential_optim", "backward", 1), "scaling"] == ""
    assert set(table["scaling"]) == {"strong", ""}


def marked(mark: str) -> list[tuple[int, dict]]:
    """The processes carrying `mark` in their environment (this test's run and its ranks), with it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(item.decode(errors="replace").split("=", 1) for item in environ if b"=" in item)
        if env.get("TWOLAYER_TEST_MARK") == mark:
            found.append((int(entry.name), env))
    return found


def start_run(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen, str]:
    mark = uuid.uuid4().hex
    env = {**os.environ, "TWOLAYER_TEST_MARK": mark, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "twolayer", "run", "--out", str(tmp_path / "out"), "--no-peak",
                                "--devices", "cpu", "--sizes", SIZE, "--threads", "1", *argv],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, mark


def rank_process(mark: str, rank: int, within_s: float = 60.0, joined: bool = True) -> int:
    """The pid of rank `rank` of the run marked `mark`, once its pytest session is under way (once
    the ranks have joined; or as soon as it starts, before it can join, with `joined=False`)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for pid, env in marked(mark):
            if env.get("RANK") == str(rank) and b"rank_pytest" in Path(f"/proc/{pid}/cmdline").read_bytes():
                if joined:  # into its benchmarks: gloo's connection between the ranks is open
                    while not connected(pid):
                        if time.monotonic() > deadline:
                            raise AssertionError(f"rank {rank} never joined")
                        time.sleep(0.1)
                    time.sleep(1.0)
                return pid
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} never started")


def connected(pid: int) -> bool:
    """Whether the process holds an established TCP connection (gloo's, between the ranks, made
    after the store's): it has joined the process group."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        tables = [Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:] for name in ("tcp", "tcp6")]
    except OSError:
        return False
    established = {f"socket:[{fields[9]}]" for table in tables for fields in map(str.split, table) if fields[3] == "01"}
    return len(inodes & established) >= 2  # the store's client, and a gloo pair


def finish(process: subprocess.Popen, within_s: float) -> tuple[int, str, float]:
    start = time.monotonic()
    try:
        _, err = process.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"the run did not end within {within_s} s of the fault") from None
    return process.returncode, err, time.monotonic() - start


@pytest.mark.slow
def test_world_sizes_one_and_two_in_one_run_with_comm_s_and_the_report(capsys, tmp_path, monkeypatch):
    mark = uuid.uuid4().hex
    monkeypatch.setenv("TWOLAYER_TEST_MARK", mark)  # inherited by the launcher and the ranks
    taken = []
    for port in (29400, 29500):  # torchrun's default ports, taken: the ranks meet on one the system picks
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen()
            taken.append(listener)
        except OSError:
            listener.close()  # taken already
    try:
        code, out, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--devices", "cpu", "--sizes", SIZE,
                                 "--variants", "ddp,nn_sequential_optim", "--world-size", "1,2", "--threads", "1",
                                 "--no-peak")
    finally:
        for listener in taken:
            listener.close()
    assert code == 0, err
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert not list(run_dir.glob("ranks-*")), "the ranks' logs are left behind"
    summary = pd.read_csv(run_dir / "summary.csv", keep_default_na=False, na_values=[""])
    ddp = summary[summary["variant"] == "ddp"].set_index(["world_size", "phase"])
    assert sorted(set(ddp.index)) == sorted((w, p) for w in (1, 2) for p in ("forward", "backward", "step",
                                                                             "iteration"))
    assert set(ddp["scaling"]) == {"strong"} and set(ddp["torch_threads"]) == {1}
    assert np.isfinite(ddp.loc[(2, "backward"), "comm_s"])
    assert ddp["comm_s"].notna().sum() == 1  # backward at world size 2 only
    twin = summary[summary["variant"] == "nn_sequential_optim"]
    assert set(twin["world_size"]) == {1} and twin["scaling"].isna().all()
    assert (summary["variant"] == "harness_empty").sum() == 1  # the harness's rows once, from this process
    report = (run_dir / "report.md").read_text()
    assert "## Data parallelism (ddp)" in report and "| ddp-w2 |" in report
    assert (run_dir / "world_size.png").stat().st_size > 0
    assert [pid for pid, _ in marked(mark) if pid != os.getpid()] == [], "processes of the run are left"


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_at_once_naming_it_and_leaves_nothing(tmp_path):
    timeout_s = 20
    process, mark = start_run(tmp_path, "--variants", "ddp", "--world-size", "2", "--budget-s", "5", "--no-report",
                              "--collective-timeout-s", str(timeout_s))
    os.kill(rank_process(mark, 1), signal.SIGKILL)
    code, err, took = finish(process, timeout_s + 10)
    assert code == 1
    assert_one_line(err, "rank 1 of 2 failed (killed by SIGKILL)", started=True)
    assert not marked(mark), "processes of the run are left"
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir() if p.is_dir()]


def run_with_rank_one_stopped(tmp_path, joined: bool) -> tuple[int, list[str], str, str]:
    """A run of ddp at world size 2 whose rank 1 is stopped (SIGSTOP: it neither answers nor dies)
    once it has joined, or before it can; its exit code, our stderr lines, stderr, and its mark."""
    timeout_s = 5
    process, mark = start_run(tmp_path, "--variants", "ddp", "--world-size", "2", "--budget-s", "5", "--no-report",
                              "--collective-timeout-s", str(timeout_s))
    hung = rank_process(mark, 1, joined=joined)
    os.kill(hung, signal.SIGSTOP)
    try:
        code, err, took = finish(process, timeout_s + 45)
    finally:
        if any(pid == hung for pid, _ in marked(mark)):
            os.kill(hung, signal.SIGKILL)
    return code, failure_lines(err), err, mark


@pytest.mark.slow
def test_a_hung_rank_fails_the_run_after_the_collective_timeout_naming_it(tmp_path):
    """Its peer's collective times out; the launcher stops the rest (a stopped rank takes its
    SIGKILL after torch's 30 s of grace)."""
    code, lines, err, mark = run_with_rank_one_stopped(tmp_path, joined=True)
    assert code == 1
    assert len(lines) == 1 and "rank(s) 1 of 2 hung or died: rank 0 timed out waiting for them" in lines[0], err
    assert not marked(mark), "processes of the run are left"


@pytest.mark.slow
def test_a_rank_that_never_joins_is_named_after_the_timeout(tmp_path):
    """Stopped while importing torch: rank 0 waits the collective timeout to form the group, then
    the launcher names the rank that never came, in one line."""
    code, lines, err, mark = run_with_rank_one_stopped(tmp_path, joined=False)
    assert code == 1
    assert len(lines) == 1 and "rank(s) 1 of 2 hung or died: rank 0 timed out waiting for them (joining the ranks:" \
        in lines[0], err
    assert not marked(mark), "processes of the run are left"


@pytest.mark.slow
def test_under_torchrun_each_rank_runs_the_suite_and_rank_zero_alone_keeps_it(tmp_path):
    """The README's multi-machine command, on one machine: `torchrun ... -m twolayer run`."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "twolayer", "run", "--variants", "ddp", "--quick", "--devices", "cpu", "--sizes", SIZE,
                           "--phases", "backward,iteration", "--no-peak", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1: done; rank 0 writes the results" in done.stdout
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs  # rank 1's scratch directory is gone
    summary = pd.read_csv(runs[0] / "summary.csv")
    ddp = summary[summary["variant"] == "ddp"]
    assert sorted(ddp["phase"]) == ["backward", "iteration"] and set(ddp["world_size"]) == {2}
    assert set(ddp["torch_threads"]) == {max(1, (os.cpu_count() or 1) // 2)}  # the cores shared by two ranks


def test_ddp_on_cuda_needs_a_gpu_per_rank(monkeypatch):
    from twolayer.cases import ranks_reason
    from twolayer.problem import Problem

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert ranks_reason(Problem(), "cuda", 2, "strong") == "ddp on cuda needs a GPU per rank: 2 ranks here, 1 GPU(s)"
    assert ranks_reason(Problem(), "cuda", 1, "strong") is None
    assert ranks_reason(Problem(), "cpu", 2, "strong") is None
    assert ranks_reason(Problem(n=63), "cpu", 2, "weak") is None  # weak scaling splits nothing
