"""`twolayer run`: its options, its refusals, and the results it leaves (or, on failure, does not)."""

import json
import subprocess

import pytest

from twolayer import run as run_module
from twolayer.cli import main
from twolayer.devices import device_absent_reason
from twolayer.run import RESULT_FILE, new_run_id


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


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
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_a_selection_that_matches_nothing_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("twolayer.cases.device_absent_reason", lambda device: None)
    monkeypatch.setattr("twolayer.cases.check_devices_present", lambda selection: None)
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "numpy_manual",
                           "--devices", "cuda")
    assert code == 2 and "matches no benchmark" in err


def test_quick_run_writes_pytest_benchmark_json_with_provenance(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants",
                             "numpy_manual,torch_autograd", "--phases", "forward,backward", "--threads", "1")
    assert code == 0, err
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1 and not runs[0].name.startswith(".")
    assert (tmp_path / f"peak-{result_host(runs[0])}.json").is_file()  # the peak cache sits beside the runs
    result_path = runs[0] / RESULT_FILE
    assert f"results: {result_path}" in out
    result = json.loads(result_path.read_text())
    assert result["twolayer"]["run_id"] == runs[0].name
    peak = result["machine_info"]["peak"]["cpu/float32"]
    assert peak["square_gflops"] > 0 and peak["torch_threads"] == 1
    for key in ("torch_version", "numpy_version", "cuda_version", "torch_blas", "numpy_blas", "cpu_model"):
        assert key in result["machine_info"]
    phases = {(b["extra_info"]["variant"], b["extra_info"]["phase"]) for b in result["benchmarks"]}
    assert {("numpy_manual", "forward"), ("torch_autograd", "backward"), ("harness_empty", "overhead")} <= phases
    timed = [b for b in result["benchmarks"] if b["extra_info"]["phase"] != "overhead"]
    for bench in timed:
        info = bench["extra_info"]
        assert info["torch_threads"] == 1 and info["numpy_threads"] == 1
        assert info["dtype"] == "float32" and info["size"] == "64x1000x100x10" and info["flops"] > 0
        assert bench["group"] == f"cpu {info['phase']} float32 64x1000x100x10"
        assert len(bench["stats"]["data"]) == bench["stats"]["rounds"] >= 5
    # pytest-benchmark's own tooling reads it
    compare = subprocess.run(["pytest-benchmark", "compare", str(result_path), "--columns=median"],
                             capture_output=True, text=True)
    assert compare.returncode == 0, compare.stderr
    assert "test_phase[cpu-forward-float32-64x1000x100x10-numpy_manual]" in compare.stdout


def result_host(run_dir):
    return json.loads((run_dir / RESULT_FILE).read_text())["machine_info"]["twolayer_host"]


def test_a_failed_suite_leaves_no_results(capsys, tmp_path, monkeypatch):
    class Failed:
        returncode = 1

    monkeypatch.setattr(run_module.subprocess, "run", lambda *args, **kwargs: Failed())
    code, _, err = run_cli(capsys, "run", "--quick", "--out", str(tmp_path), "--variants", "torch_manual")
    assert code == 1
    assert "no results were written" in err and len(err.strip().splitlines()) == 1
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


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
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
