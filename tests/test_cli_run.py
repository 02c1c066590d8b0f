"""`twolayer run`: its options, its refusals, and the results it leaves (or, on failure, does not)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from one_line import assert_one_line, our_lines, run_cli
from synthetic_runs import DATA, bench, constant, write_run

from twolayer.devices import device_absent_reason
from twolayer.flops import phase_flops
from twolayer.hardware import cpu_identity, hardware_identity, hardware_key
from twolayer.problem import Problem
from twolayer.provenance import PROJECT_ROOT
from twolayer.results.run_dirs import new_run_id
from twolayer.run import driver as run_module
from twolayer.run.keep import keep_finished
from twolayer.run.pytest_session import SuiteOutcome
from twolayer.schema import RESULT_FILE
from twolayer.variants import VARIANTS

BAD_OPTIONS = [
    (["--variants", "numpy_manual,no_such"], "unknown variant 'no_such'; choose from numpy_manual"),
    (["--phases", "sideways"], "unknown phase 'sideways'; choose from forward, backward, step, iteration"),
    (["--devices", "tpu"], "unknown device 'tpu'; choose from cpu, cuda, mps"),
    (["--dtypes", "float16"], "unknown dtype 'float16'"),
    (["--sizes", "64x1000x100"], "bad size '64x1000x100'"),
    (["--threads", "0"], "expected a positive integer, got '0'"),
    (["--budget-s", "-1"], "expected a finite positive number"),
]
if device_absent_reason("cuda"):
    BAD_OPTIONS += [
        (["--devices", "cuda"], "cuda is not available here"),
        (["--devices", "cpu,cuda"], "cuda is not available here"),
    ]
if device_absent_reason("mps"):
    BAD_OPTIONS.append((["--devices", "mps", "--variants", "numpy_manual"], "mps is not available here"))


@pytest.mark.parametrize("argv, message", BAD_OPTIONS)
def test_bad_options_are_one_line_exit_2_and_write_nothing(capsys, tmp_path, argv, message):
    out_dir = tmp_path / "results"
    code, out, err = run_cli(capsys, "run", "--quick", "--out", str(out_dir), *argv)
    assert code == 2
    assert_one_line(err, message)
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_a_selection_that_matches_nothing_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("twolayer.cases.device_absent_reason", lambda device: None)
    monkeypatch.setattr("twolayer.cases.check_devices_present", lambda selection: None)
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "numpy_manual",
                           "--devices", "cuda")
    assert code == 2 and "matches no benchmark" in err


@pytest.mark.slow
def test_quick_run_writes_pytest_benchmark_json_with_provenance(capsys, tmp_path):
    """A real quick run, its JSON checked field by field against what was asked and what this
    machine is: threads (2, so that a field stuck at 1 shows), canaries, FLOPs per case (Adam's
    and the biases' included), dtype mode and hardware."""
    code, out, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants",
                             "numpy_manual,torch_autograd,nn_sequential,module_params", "--phases", "forward,step",
                             "--threads", "2")
    assert code == 0, err
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1 and not runs[0].name.startswith(".")
    assert (tmp_path / f"peak-{result_host(runs[0])}.json").is_file()  # the peak cache sits beside the runs
    result_path = runs[0] / RESULT_FILE
    assert f"results: {result_path}" in out
    # only paths that exist are printed: not pytest-benchmark's `Wrote benchmark data in: <the .partial one>`
    assert ".partial" not in out + err and "Wrote benchmark data" not in out + err
    result = json.loads(result_path.read_text())
    assert result["twolayer"]["run_id"] == runs[0].name
    machine = result["machine_info"]
    peak = machine["peak"]["cpu/float32"]
    assert peak["square_gflops"] > 0 and peak["torch_threads"] == 2
    for key in ("torch_version", "numpy_version", "cuda_version", "torch_blas", "numpy_blas", "cpu_model"):
        assert key in machine
    assert machine["torch_threads"] == 2 and machine["numpy_threads"] == 2
    assert machine["torch_version"] == torch.__version__ and machine["numpy_version"] == np.__version__
    identity = cpu_identity()
    assert {key: machine[key] for key in identity} == identity
    assert machine["hardware"] == hardware_key(hardware_identity())
    phases = {(b["extra_info"]["variant"], b["extra_info"]["phase"]) for b in result["benchmarks"]}
    assert {("numpy_manual", "forward"), ("module_params", "step"), ("nn_sequential", "step"),
            ("harness_empty", "overhead")} <= phases
    timed = [b for b in result["benchmarks"] if b["extra_info"]["phase"] != "overhead"]
    assert len(timed) == 8
    for entry in timed:
        info = entry["extra_info"]
        variant = VARIANTS[info["variant"]]
        assert info["torch_threads"] == 2 and info["numpy_threads"] == 2
        assert info["dtype"] == "float32" and info["dtype_mode"] == "float32" and info["size"] == "64x1000x100x10"
        expected = phase_flops(Problem(), info["phase"], variant.optimizer, variant.bias)
        assert info["flops"] == expected, (info["variant"], info["phase"])
        assert info["learning_rate"] == variant.learning_rate
        assert 0 < info["canary_before_s"] < 1 and 0 < info["canary_after_s"] < 1
        assert info["load_avg_1m"] >= 0 and info["others_running"] >= 0
        assert entry["group"] == f"cpu {info['phase']} float32 64x1000x100x10"
        assert len(entry["stats"]["data"]) == entry["stats"]["rounds"] >= 5
        assert info["warmup_rounds"] >= 2
    # Adam's step and the biases cost FLOPs of their own: a per-case figure that ignored them shows
    flops = {(b["extra_info"]["variant"], b["extra_info"]["phase"]): b["extra_info"]["flops"] for b in timed}
    assert flops[("module_params", "step")] > flops[("torch_autograd", "step")]
    assert flops[("nn_sequential", "forward")] > flops[("torch_autograd", "forward")]
    # pytest-benchmark's own tooling reads it (the one installed beside this interpreter, not another on PATH)
    compare = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(result_path), "--columns=median"],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stderr
    assert "test_phase[cpu-forward-float32-64x1000x100x10-numpy_manual]" in compare.stdout


def result_host(run_dir):
    return json.loads((run_dir / RESULT_FILE).read_text())["machine_info"]["twolayer_host"]


@pytest.mark.slow
def test_a_failed_suite_leaves_no_results(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "run_pytest", lambda command: SuiteOutcome(1, False, [], False))
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "torch_manual")
    assert code == 1
    assert_one_line(err, "no results were written")
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


def test_a_disk_full_while_pytest_benchmark_saves_is_one_line(capsys, tmp_path, monkeypatch):
    """The suite's process dies on the OSError with a long traceback; we say what failed, where."""
    dies_writing = [sys.executable, "-c", "import errno; raise OSError(errno.ENOSPC, 'No space left on device')"]
    real_run_pytest = run_module.run_pytest
    monkeypatch.setattr(run_module, "run_pytest", lambda command: real_run_pytest(dies_writing))
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "numpy_manual", "--no-peak")
    assert code == 1
    assert_one_line(err, f"could not save the results in {tmp_path}: No space left on device; nothing was kept")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_suites_stderr_is_read_without_its_noise(capsys):
    """The .partial path pytest-benchmark names, blank lines and library chatter are dropped; the rest is kept."""
    noisy = ("import sys; print('progress', flush=True); sys.stderr.write('\\nWrote benchmark data in: x.partial/b.json\\n"
             "No CUDA runtime is found, using CUDA_HOME=/usr/local\\na warning of the suite\\n')")
    suite = run_module.run_pytest([sys.executable, "-c", noisy])
    assert suite == SuiteOutcome(0, False, ["a warning of the suite"], False)
    assert capsys.readouterr().out == "progress\n"  # stdout is relayed as it comes


def test_run_ids_never_collide(tmp_path):
    first = new_run_id(tmp_path, now=0)
    (tmp_path / first).mkdir()
    second = new_run_id(tmp_path, now=0)
    assert second == f"{first}-2"
    assert first.startswith("19700101T000000Z-")


def test_a_size_or_dtype_named_twice_is_one_case():
    from twolayer.cases import plan_cases

    cases = plan_cases(variants="torch_manual,numpy_manual", devices="cpu", phases="forward",
                       dtypes="tutorial,float32,float32", sizes="64x1000x100x10,64X1000X100X10")
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)) == 4  # (tutorial, float32) x two variants
    assert "cpu-forward-tutorial:float64-64x1000x100x10-numpy_manual" in ids


@pytest.mark.parametrize("argv, message", [
    (["fidelity", "--variants", "cuda_graph"], "cuda_graph cannot run its iteration on the cpu here"),
    (["fidelity", "--variants", "nope"], "unknown variant 'nope'"),
    (["peak", "--dtypes", ","], "--dtypes names no dtype"),
])
def test_other_commands_refuse_bad_input_in_one_line(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line(err, message)


@pytest.mark.slow
def test_fidelity_prints_only_its_own_table():
    result = subprocess.run([sys.executable, "-m", "twolayer", "fidelity", "--variants", "numpy_manual",
                             "--budget-s", "0.05"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("variant") and lines[1].startswith("numpy_manual"), result.stdout
    # on a shared machine, the busy warning alone (below)
    assert all(line.startswith("twolayer fidelity: warning: the machine was busy") for line in our_lines(result.stderr))


@pytest.mark.parametrize("busy", [False, True])
def test_fidelity_on_a_busy_machine_says_so_and_marks_its_rows(capsys, monkeypatch, busy):
    import twolayer.cli.fidelity as canary  # the command reads the machine's state before and after
    import twolayer.run.fidelity as fidelity
    from twolayer.measure.canary import MachineState
    from twolayer.run.fidelity import FidelityRow

    states = iter([MachineState(100e-6, 100e-6, 0.1, 0), MachineState(400e-6 if busy else 100e-6, 100e-6, 0.1, 0)])
    monkeypatch.setattr(canary, "machine_state", lambda _: next(states))
    monkeypatch.setattr(fidelity, "check_fidelity", lambda names, budget: [FidelityRow("numpy_manual", 2e-4, 1e-4)])
    code, out, err = run_cli(capsys, "fidelity", "--variants", "numpy_manual")
    assert code == 0
    row = out.splitlines()[1]
    assert row.split()[:4] == ["numpy_manual", "200.0", "100.0", "2.000"]
    assert row.endswith("(disturbed)") == busy
    assert [line.startswith("twolayer fidelity: warning: the machine was busy") for line in our_lines(err)] == \
        ([True] if busy else [])


@pytest.mark.slow
def test_sigint_keeps_the_finished_benchmarks_marked_interrupted(tmp_path):
    """Ctrl-C reaches `twolayer run` (here, it alone): one line, exit 130, the finished benchmarks kept."""
    process, err = interrupt_a_run(tmp_path, signal.SIGINT)
    assert process.returncode == 130
    # a real run reads the real machine, which the tests around it may keep busy: a warning line of its own
    error = [line for line in our_lines(err.decode()) if not line.startswith("twolayer run: warning: the machine is busy")]
    assert_one_line("\n".join(error), "twolayer run: interrupted; the ")
    assert_kept_marked_interrupted(tmp_path, err)


@pytest.mark.slow
def test_sigterm_keeps_the_finished_benchmarks_as_ctrl_c_does(tmp_path):
    """A cancelled CI job's SIGTERM: one line naming it, exit 143, the finished benchmarks kept."""
    process, err = interrupt_a_run(tmp_path, signal.SIGTERM)
    assert process.returncode == 143
    assert_one_line(err.decode(), "twolayer run: terminated (SIGTERM); the ", started=True)  # the busy warning aside
    assert_kept_marked_interrupted(tmp_path, err)


def interrupt_a_run(tmp_path, signum):
    """A real run of numpy_manual, sent `signum` once two phase benchmarks have passed."""
    process = subprocess.Popen([sys.executable, "-m", "twolayer", "run", "--out", str(tmp_path), "--devices", "cpu",
                                "--variants", "numpy_manual", "--budget-s", "1", "--no-peak", "--no-report"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=PROJECT_ROOT,
                               # as at a terminal: a shell without job control starts background commands
                               # (a CI script's `pytest &`) with SIGINT ignored, and the child would inherit it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = b""
        # two phase benchmarks have passed (the dot of the first can reach the pipe a moment before its
        # pass is recorded); two more to go
        while b"test_phases.py .." not in seen:
            chunk = os.read(process.stdout.fileno(), 4096)
            assert chunk, seen.decode()
            seen += chunk
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return process, err


def assert_kept_marked_interrupted(tmp_path, err):
    assert "Traceback" not in err.decode()
    [kept] = tmp_path.iterdir()
    assert kept.name.endswith("-interrupted") and f"{kept / RESULT_FILE}" in err.decode()
    assert sorted(p.name for p in kept.iterdir()) == [RESULT_FILE]
    run = json.loads((kept / RESULT_FILE).read_text())
    assert run["twolayer"]["interrupted"] is True and run["twolayer"]["run_id"] == kept.name
    phases = [b["extra_info"]["phase"] for b in run["benchmarks"] if b["extra_info"]["phase"] != "overhead"]
    assert 1 <= len(phases) < 4
    for entry in run["benchmarks"]:  # the benchmark cut short is left out: every one kept ran to its end
        assert "canary_after_s" in entry["extra_info"] and len(entry["stats"]["data"]) == entry["stats"]["rounds"]


def test_an_interrupt_before_any_benchmark_keeps_nothing(capsys, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "write_peaks", interrupted)
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "numpy_manual")
    assert code == 130
    assert_one_line(err, "interrupted before any benchmark was saved; nothing was kept")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_while_retiming_keeps_every_benchmark_timed_once(tmp_path, monkeypatch):
    from twolayer.measure.canary import MachineState

    entries = [bench("numpy_manual", "forward", constant(1e-4)), bench("torch_manual", "forward", constant(1e-4))]
    for entry, canary in zip(entries, (100e-6, 300e-6)):  # the second timed during a burst: to be retimed
        entry["fullname"] = f"bench/test_phases.py::{entry['name']}"
        entry["extra_info"].update(canary_before_s=canary, canary_after_s=canary)
    calm = MachineState(canary_s=100e-6, quiet_s=100e-6, load_avg_1m=0.1, others_running=0)
    monkeypatch.setattr(run_module, "machine_state", lambda out: calm)
    monkeypatch.setattr(run_module, "run_local", lambda *args: {"benchmarks": entries, "twolayer": {}})
    retimings = []

    def interrupted(command):
        retimings.append(command)
        return SuiteOutcome(returncode=2, interrupted=True, errors=[], traceback=False)

    monkeypatch.setattr(run_module, "run_pytest", interrupted)
    with pytest.raises(run_module.RunInterrupted) as raised:
        run_module.run_suite(run_module.RunOptions(out=tmp_path, variants="numpy_manual,torch_manual",
                                                   phases="forward", peak=False))
    assert len(retimings) == 1 and raised.value.args[0].startswith("interrupted; 2 finished benchmarks kept in")
    (kept,) = tmp_path.glob("*-interrupted")
    run = json.loads((kept / RESULT_FILE).read_text())
    assert run["twolayer"]["interrupted"] is True and len(run["benchmarks"]) == 2
    assert not list(tmp_path.glob(".*.partial"))


def test_an_interrupted_suite_keeps_only_the_tests_that_passed(tmp_path):
    partial, run_dir = tmp_path / ".x.partial", tmp_path / "x-interrupted"
    partial.mkdir()
    entries = [bench("harness_empty", "overhead", constant(1e-7)), bench("numpy_manual", "forward", constant(1e-4)),
               bench("torch_manual", "forward", constant(1e-4))]
    for entry in entries:
        entry["fullname"] = f"bench/test_phases.py::{entry['name']}"
    write_run(partial / RESULT_FILE, entries)
    (partial / run_module.PASSED_FILE).write_text(f"{entries[0]['fullname']}\n{entries[1]['fullname']}\n")
    assert keep_finished(partial, run_dir) == 2
    assert not partial.exists() and sorted(p.name for p in run_dir.iterdir()) == [RESULT_FILE]
    run = json.loads((run_dir / RESULT_FILE).read_text())
    assert [b["extra_info"]["variant"] for b in run["benchmarks"]] == ["harness_empty", "numpy_manual"]
    assert run["twolayer"]["interrupted"] is True and run["twolayer"]["run_id"] == "x-interrupted"


def test_an_interrupted_suite_with_only_harness_rows_keeps_nothing(tmp_path):
    partial = tmp_path / ".x.partial"
    partial.mkdir()
    entry = bench("harness_empty", "overhead", constant(1e-7))
    entry["fullname"] = f"bench/test_overhead.py::{entry['name']}"
    write_run(partial / RESULT_FILE, [entry])
    (partial / run_module.PASSED_FILE).write_text(f"{entry['fullname']}\n")
    assert keep_finished(partial, tmp_path / "x-interrupted") == 0
    assert not (tmp_path / "x-interrupted").exists()


def test_compare_refuses_an_interrupted_run_unless_asked(capsys, tmp_path):
    base = write_run(tmp_path / "base.json", [bench("torch_manual", "forward", constant(1e-4))])
    cut = write_run(tmp_path / "cut.json", [bench("torch_manual", "forward", constant(1e-4))])
    run = json.loads(cut.read_text())
    run["twolayer"]["interrupted"] = True
    cut.write_text(json.dumps(run))
    code, _, err = run_cli(capsys, "compare", str(base), str(cut), "--out", str(tmp_path / "c"))
    assert code == 2
    assert_one_line(err, f"{cut}: the run was interrupted")
    assert not (tmp_path / "c").exists()
    code, _, err = run_cli(capsys, "compare", str(base), str(cut), "--out", str(tmp_path / "c"), "--allow-interrupted")
    assert code == 0, err
    assert (tmp_path / "c" / "compare.csv").is_file()


@pytest.mark.parametrize("command", [["run", "--quick"], ["report", "RUN"], ["count", "--metrics", "aten_ops"],
                                     ["history", "RUN"], ["peak"], ["compare", "RUN", "RUN"]])
def test_an_out_that_is_a_file_is_one_line_and_nothing_runs(tmp_path, capsys, command):
    a_file = tmp_path / "results"
    a_file.write_text("not a directory\n")
    run = str(DATA / "cpu_run.json")
    code, _, err = run_cli(capsys, *[run if word == "RUN" else word for word in command], "--out", str(a_file))
    assert code == 2
    assert_one_line(err, f"--out {a_file}: not a directory")
    assert a_file.read_text() == "not a directory\n" and sorted(tmp_path.iterdir()) == [a_file]


def test_count_finds_out_it_cannot_write_before_it_counts(tmp_path, capsys, monkeypatch):
    import twolayer.count.driver as counters

    monkeypatch.setattr(counters, "count_ops", lambda *a, **k: pytest.fail("counted before checking --out"))
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(capsys, "count", "--metrics", "aten_ops", "--out", str(tmp_path / "file" / "below"))
    assert code == 2
    assert_one_line(err, "Not a directory")
    code, _, err = run_cli(capsys, "count", "--variants", "nope", "--out", str(tmp_path / "new"))
    assert code == 2 and not (tmp_path / "new").exists()  # a bad selection makes no --out either


@pytest.mark.slow
def test_output_to_a_reader_that_goes_away_is_not_called_bad_input():
    """`twolayer list | head -1`: the exit status of a command whose reader left, and no error."""
    listing = subprocess.run(f"set -o pipefail; {sys.executable} -m twolayer train numpy_manual --iterations 500 "
                             "--every 1 | head -1", shell=True, capture_output=True, text=True, cwd=PROJECT_ROOT,
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, executable="/bin/bash")
    assert listing.stdout.count("\n") == 1 and listing.returncode == 141
    assert "error" not in listing.stderr and "Broken pipe" not in listing.stderr and "Traceback" not in listing.stderr


def test_more_threads_than_cores_is_warned_about(tmp_path, capsys, monkeypatch):
    from twolayer.measure.canary import MachineState
    from twolayer.provenance import oversubscription, usable_cores

    assert oversubscription(2, cores=2) is None and oversubscription(None, cores=2) is None
    assert oversubscription(3, cores=2).startswith("--threads 3 is more than the 2 cores")
    monkeypatch.setattr(run_module, "set_threads", lambda count: None)
    monkeypatch.setattr(run_module, "machine_state", lambda out: MachineState(1e-4, 1e-4, 0.1, 0))
    run_module.check_machine(run_module.RunOptions(out=tmp_path, threads=usable_cores() + 1))
    assert "twolayer run: warning: --threads" in capsys.readouterr().err
    run_module.check_machine(run_module.RunOptions(out=tmp_path, threads=1))
    assert capsys.readouterr().err == ""


def test_cpus_that_differ_only_in_stepping_are_different_hardware():
    text = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nstepping\t: {}\nflags\t\t: avx2 avx512f\n"
    first, second = cpu_identity(text.format(6)), cpu_identity(text.format(8))
    assert (first["cpu_stepping"], second["cpu_stepping"]) == ("6", "8")
    assert hardware_key(first) != hardware_key(second)
