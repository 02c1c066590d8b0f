"""`twolayer report`: the tidy table, the speedups, the merge of machines, and every bad input."""

import errno
import json
import math

import pandas as pd
import pytest
from one_line import assert_one_line
from synthetic_runs import DATA, TEMPLATE, bench, constant, write_run

from twolayer.cli import main
from twolayer.report.page import build_report, write_report
from twolayer.results.run_file import ResultsError
from twolayer.results.table import COLUMNS, IN_MEMORY, load_runs


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_tidy_table_from_a_real_run():
    table = load_runs([DATA / "cpu_run.json"])
    assert list(table.columns) == [*COLUMNS, *IN_MEMORY]
    assert len(table) == 6
    row = table[(table["variant"] == "torch_manual") & (table["phase"] == "forward")].iloc[0]
    raw = json.loads((DATA / "cpu_run.json").read_text())
    stats = next(b["stats"] for b in raw["benchmarks"] if b["name"].endswith("forward-float32-64x1000x100x10-torch_manual]"))
    assert row["median_s"] == stats["median"] and row["iqr_s"] == stats["iqr"] and row["rounds"] == stats["rounds"]
    assert row["run_id"] == "cpu-sample" and row["machine"] == raw["machine_info"]["twolayer_host"]
    assert row["gflops"] == pytest.approx(12_936_320 / stats["median"] / 1e9)
    assert row["noisy"] == (stats["iqr"] / stats["median"] > 0.10)
    assert row["torch_version"] == raw["machine_info"]["torch_version"]


def test_exact_values_and_speedups(tmp_path):
    path = write_run(tmp_path / "run.json", [
        bench("numpy_manual", "forward", constant(200e-6), flops=2_000_000),
        bench("torch_manual", "forward", constant(100e-6), flops=2_000_000),
        bench("torch_autograd", "forward", [100e-6, 150e-6, 160e-6, 170e-6, 400e-6]),
    ])
    table = load_runs([path])
    manual = table[table["variant"] == "torch_manual"].iloc[0]
    assert manual["median_s"] == pytest.approx(100e-6)
    assert manual["gflops"] == pytest.approx(20.0)
    noisy = table[table["variant"] == "torch_autograd"].iloc[0]
    assert noisy["iqr_s"] == pytest.approx(20e-6) and bool(noisy["noisy"])  # 20/160 > 10%
    compared = build_report(table, charts=False).comparison
    assert list(compared["variant"]) == ["torch_manual", "torch_autograd", "numpy_manual"]
    assert list(compared["rank"]) == [1, 2, 3]
    assert list(compared["speedup_vs_baseline"]) == pytest.approx([2.0, 200 / 160, 1.0])
    by_torch = build_report(table, baseline="torch_manual", charts=False).comparison
    assert list(by_torch["speedup_vs_baseline"]) == pytest.approx([1.0, 100 / 160, 0.5])


def test_two_machines_merge_into_gpu_speedups(tmp_path):
    cpu_box = write_run(tmp_path / "cpu.json", [
        bench("numpy_manual", "iteration", constant(500e-6)),
        bench("torch_manual", "iteration", constant(300e-6)),
    ], host="cpubox")
    gpu_box = write_run(tmp_path / "gpu.json", [
        bench("torch_manual", "iteration", constant(400e-6), device_name="Fast CPU"),
        bench("torch_manual", "iteration", constant(50e-6), device="cuda", device_name="Test GPU"),
    ], host="gpubox")
    devices = build_report(load_runs([cpu_box, gpu_box]), charts=False).devices
    # the gpu run timed its own cpu: that pair alone, not one across runs and machines
    assert list(devices["cpu_run_id"]) == ["gpu"] and list(devices["same_run"]) == [True]
    assert list(devices["accel_speedup"]) == pytest.approx([8.0])
    assert set(devices["accel_name"]) == {"Test GPU"}
    gpu_only = write_run(tmp_path / "gpu_only.json", [
        bench("torch_manual", "iteration", constant(50e-6), device="cuda", device_name="Test GPU"),
    ], host="gpubox")
    across = build_report(load_runs([cpu_box, gpu_only]), charts=False).devices
    assert list(across["cpu_run_id"]) == ["cpu"] and list(across["same_run"]) == [False]  # flagged, not hidden
    assert list(across["accel_speedup"]) == pytest.approx([6.0])
    compared = build_report(load_runs([cpu_box, gpu_box]), charts=False).comparison
    gpu_row = compared[compared["device"] == "cuda"].iloc[0]
    assert pd.isna(gpu_row["speedup_vs_baseline"])  # the gpu box's run has no numpy_manual baseline


def test_report_command_writes_every_file(capsys, tmp_path):
    code, out, err = run_cli(capsys, "report", DATA / "cpu_run.json", "--out", tmp_path)
    assert code == 0, err
    for name in ("summary.csv", "comparison.csv", "devices.csv", "report.md"):
        assert (tmp_path / name).is_file()
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == list(COLUMNS) and len(summary) == 6
    comparison = pd.read_csv(tmp_path / "comparison.csv")
    assert {"rank", "variant", "median_s", "speedup_vs_baseline", "noisy"} <= set(comparison.columns)
    report = (tmp_path / "report.md").read_text()
    assert "| numpy_manual |" in report and "Harness overhead" in report


def test_report_is_reproducible_byte_for_byte(capsys, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    run_cli(capsys, "report", DATA / "cpu_run.json", "--out", first)
    run_cli(capsys, "report", DATA / "cpu_run.json", "--out", second)
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def not_a_run(tmp_path):
    return write_text(tmp_path / "other.json", json.dumps({"hello": "world"}))


def write_text(path, text):
    path.write_text(text)
    return path


def empty_run(tmp_path):
    return write_run(tmp_path / "empty.json", [])


def old_suite_run(tmp_path):
    entry = bench("torch_manual", "forward", constant(1e-4))
    del entry["extra_info"]["flops"], entry["extra_info"]["device_name"]
    return write_run(tmp_path / "old.json", [entry])


def directory(tmp_path):
    (tmp_path / "run.json").mkdir()
    return tmp_path / "run.json"


BAD_FILES = {
    "missing": (lambda tmp: tmp / "nope.json", "no such file"),
    "directory": (directory, "is a directory"),
    "not json": (lambda tmp: write_text(tmp / "bad.json", "{not json"), "not JSON"),
    "binary": (lambda tmp: write_text(tmp / "bin.json", "\x00\x01"), "not JSON"),
    "not a run": (not_a_run, "not a pytest-benchmark run"),
    "no benchmarks": (empty_run, "holds no benchmarks"),
    "old suite": (old_suite_run, "lacks device_name, flops (made by another version of this suite?)"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_one_line_exit_2_and_nothing_written(capsys, tmp_path, case):
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    out_dir = tmp_path / "report"
    out_dir.mkdir()
    (out_dir / "comparison.csv").write_text("an earlier report\n")
    code, _, err = run_cli(capsys, "report", path, "--out", out_dir)
    assert code == 2
    assert_one_line(err, message)
    assert [p.name for p in out_dir.iterdir()] == ["comparison.csv"]
    assert (out_dir / "comparison.csv").read_text() == "an earlier report\n"


def hand_edited(edit):
    """A good run (tests/data/cpu_run.json's template with one benchmark) after `edit(run, benchmark)`."""
    def make(tmp_path):
        run = json.loads(json.dumps(TEMPLATE))
        run["benchmarks"] = [bench("torch_manual", "forward", constant(1e-4))]
        edit(run, run["benchmarks"][0])
        return write_text(tmp_path / "edited.json", json.dumps(run))
    return make


NAMED = "benchmark 'test_phase[cpu-forward-float32-64x1000x100x10-torch_manual]': "
HAND_EDITED = {
    "benchmarks not objects": (lambda run, b: run.update(benchmarks=[1, 2]),
                               "field 'benchmarks[0]' is 1, expected an object"),
    "benchmarks a string": (lambda run, b: run.update(benchmarks="all"), "field 'benchmarks' is a string 'all'"),
    "machine_info a string": (lambda run, b: run.update(machine_info="my laptop"),
                              "field 'machine_info' is a string 'my laptop', expected an object"),
    "extra_info a list": (lambda run, b: b.update(extra_info=["torch_manual"]),
                          NAMED + "field 'extra_info' is a list, expected an object"),
    "size not NxD_INxHxD_OUT": (lambda run, b: b["extra_info"].update(size="64x1000"),
                                NAMED + "field 'extra_info.size' is a string '64x1000', expected NxD_INxHxD_OUT"),
    "median NaN": (lambda run, b: b["stats"].update(median=math.nan), NAMED + "field 'stats.median' is NaN"),
    "median negative": (lambda run, b: b["stats"].update(median=-1e-4),
                        NAMED + "field 'stats.median' is -0.0001, expected a positive number"),
    "median zero": (lambda run, b: b["stats"].update(median=0), NAMED + "field 'stats.median' is 0, expected a positive"),
    "median a string": (lambda run, b: b["stats"].update(median="fast"), NAMED + "field 'stats.median' is a string"),
    "a raw timing infinite": (lambda run, b: b["stats"]["data"].__setitem__(2, math.inf),
                              NAMED + "field 'stats.data[2]' is infinite"),
    "rounds fractional": (lambda run, b: b["stats"].update(rounds=2.5), NAMED + "field 'stats.rounds' is 2.5"),
    "canary a string": (lambda run, b: b["extra_info"].update(canary_before_s="slow"),
                        NAMED + "field 'extra_info.canary_before_s' is a string 'slow'"),
    "peak not an object": (lambda run, b: run["machine_info"].update(peak={"cpu/float32": 5}),
                           "field 'machine_info.peak.cpu/float32' is 5, expected an object"),
    "commit_info a list": (lambda run, b: run.update(commit_info=["abc"]), "field 'commit_info' is a list"),
    "run id a number": (lambda run, b: run["twolayer"].update(run_id=7), "field 'twolayer.run_id' is 7"),
}


@pytest.mark.parametrize("case", list(HAND_EDITED))
def test_hand_edited_runs_name_the_file_and_the_field(capsys, tmp_path, case):
    edit, message = HAND_EDITED[case]
    path = hand_edited(edit)(tmp_path)
    code, _, err = run_cli(capsys, "report", path, "--out", tmp_path / "report")
    assert code == 2
    assert_one_line(err, f"{path}: {message}")
    assert not (tmp_path / "report").exists()


def test_compare_names_the_hand_edited_file_too(capsys, tmp_path):
    good = write_run(tmp_path / "good.json", [bench("torch_manual", "forward", constant(1e-4))])
    edited = hand_edited(lambda run, b: b["stats"].update(median=math.nan))(tmp_path)
    code, _, err = run_cli(capsys, "compare", good, edited, "--out", tmp_path / "c")
    assert code == 2
    assert_one_line(err, f"{edited}: {NAMED}field 'stats.median' is NaN")
    assert not (tmp_path / "c").exists()


def test_unknown_baseline(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", DATA / "cpu_run.json", "--out", tmp_path, "--baseline", "abacus")
    assert code == 2 and "unknown baseline 'abacus'" in err
    assert list(tmp_path.iterdir()) == []


def test_several_runs_need_an_output_directory(capsys):
    code, _, err = run_cli(capsys, "report", DATA / "cpu_run.json", DATA / "cpu_run.json")
    assert code == 2 and "--out is required" in err


def test_the_same_run_twice_is_refused():
    with pytest.raises(ResultsError, match="given twice"):
        load_runs([DATA / "cpu_run.json", DATA / "cpu_run.json"])


def test_a_run_without_the_default_baseline_still_reports(capsys, tmp_path):
    """A cuda-only run, or a run of a few variants: speedups are empty, nothing fails."""
    path = write_run(tmp_path / "gpu.json", [
        bench("torch_manual", "iteration", constant(50e-6), device="cuda", device_name="Test GPU"),
        bench("torch_autograd", "iteration", constant(80e-6), device="cuda", device_name="Test GPU"),
    ])
    code, _, err = run_cli(capsys, "report", path, "--out", tmp_path / "report")
    assert code == 0, err
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv")
    assert list(comparison["variant"]) == ["torch_manual", "torch_autograd"]
    assert comparison["speedup_vs_baseline"].isna().all()


def test_a_run_of_harness_rows_only_reports(capsys, tmp_path):
    entry = bench("harness_empty", "overhead", constant(80e-9))
    entry["extra_info"].update(dtype=None, size=None, flops=0)
    code, _, err = run_cli(capsys, "report", write_run(tmp_path / "o.json", [entry]), "--out", tmp_path / "r")
    assert code == 0, err
    assert "Harness overhead" in (tmp_path / "r" / "report.md").read_text()


def test_tutorial_dtypes_compare_numpy_float64_with_torch_float32(tmp_path):
    numpy_row = bench("numpy_manual", "forward", constant(200e-6), dtype="float64")
    torch_row = bench("torch_manual", "forward", constant(100e-6))
    for entry in (numpy_row, torch_row):
        entry["extra_info"]["dtype_mode"] = "tutorial"
    compared = build_report(load_runs([write_run(tmp_path / "t.json", [numpy_row, torch_row])]), charts=False)
    rows = compared.comparison.set_index("variant")
    assert rows.at["torch_manual", "speedup_vs_baseline"] == pytest.approx(2.0)
    assert rows.at["numpy_manual", "dtype"] == "float64" and rows.at["torch_manual", "dtype"] == "float32"
    assert "each variant's tutorial dtype" in compared.markdown()


def test_an_unwritable_output_is_one_line_exit_2(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    code, _, err = run_cli(capsys, "report", DATA / "cpu_run.json", "--out", blocker / "report")
    assert code == 2 and "Traceback" not in err
    assert_one_line(err, str(blocker))


def test_a_full_disk_names_the_file_and_leaves_nothing(capsys, tmp_path, monkeypatch):
    from twolayer import atomic_files as files
    real_fdopen = files.os.fdopen

    class FullDisk:
        def __init__(self, handle, *args, **kwargs):
            self.out = real_fdopen(handle, *args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.out.close()

        def write(self, content):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", FullDisk)
    out = tmp_path / "report"
    code, _, err = run_cli(capsys, "report", DATA / "cpu_run.json", "--out", out)
    assert code == 2
    assert_one_line(err, f"No space left on device: {out}/")
    assert list(out.iterdir()) == []  # no temporary left behind


def test_non_numeric_timings_are_refused(capsys, tmp_path):
    entry = bench("torch_manual", "forward", constant(1e-4))
    entry["stats"]["median"] = None
    code, _, err = run_cli(capsys, "report", write_run(tmp_path / "n.json", [entry]), "--out", tmp_path / "r")
    assert code == 2 and "field 'stats.median' is null, expected a number" in err


def test_a_failure_while_writing_leaves_every_existing_file(tmp_path, monkeypatch):
    from twolayer import atomic_files as files
    report = build_report(load_runs([DATA / "cpu_run.json"]), charts=False)
    (tmp_path / "summary.csv").write_text("old\n")
    staged = []
    real_stage = files._stage

    def stage_then_fail(path, content):
        if staged:
            raise OSError("disk full")
        staged.append(path)
        return real_stage(path, content)

    monkeypatch.setattr(files, "_stage", stage_then_fail)
    with pytest.raises(OSError):
        write_report(report, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]  # no temporary left behind either
    assert (tmp_path / "summary.csv").read_text() == "old\n"


@pytest.mark.parametrize("dirty", [True, False])
def test_a_run_from_uncommitted_changes_says_so_in_its_commit(tmp_path, dirty):
    """`commit` names the tree that was measured: a run from a dirty checkout is not its commit's."""
    path = write_run(tmp_path / "run.json", [bench("torch_manual", "forward", constant(1e-4))])
    run = json.loads(path.read_text())
    run["commit_info"] = {"id": "0123456789abcdef" * 2 + "01234567", "dirty": dirty, "time": "2026-11-30T00:00:00+00:00"}
    path.write_text(json.dumps(run))
    (commit,) = set(load_runs([path])["commit"])
    assert commit == "0123456789ab" + ("-dirty" if dirty else "")


def test_the_baseline_is_its_cpu_row_even_where_it_also_ran_on_cuda(tmp_path):
    from twolayer.report.page import comparison

    medians = {("cpu", "torch_manual"): 4e-4, ("cpu", "module_linear"): 8e-4, ("cuda", "torch_manual"): 1e-4,
               ("cuda", "module_linear"): 2e-4}
    run = write_run(tmp_path / "both.json", [bench(variant, "forward", constant(median), device=device,
                                                   device_name="Test GPU" if device == "cuda" else "Test CPU")
                                             for (device, variant), median in medians.items()])
    compared = comparison(load_runs([run]), "torch_manual", baseline_named=True)
    assert len(compared) == 4 and not compared.duplicated(["device", "variant", "phase"]).any()
    speedups = compared.set_index(["device", "variant"])["speedup_vs_baseline"]
    for key, median in medians.items():  # against torch_manual on the cpu, whatever the row's device
        assert speedups[key] == pytest.approx(4e-4 / median)
