"""A busy machine, scripted: the quiet reference, the flags, the warning before timing, retiming,
`--repeat` passes, and the dtype-mode key. No real timing is asserted."""

import json
import statistics

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import bench, constant, write_run

from twolayer.analysis.compare import compare_tables
from twolayer.cli import main
from twolayer.disturbance import disturbed_benchmarks
from twolayer.measure import canary as canary_module
from twolayer.measure.canary import MachineState, known_quiet_canary, machine_load, remember_quiet_canary
from twolayer.report.page import build_report
from twolayer.results.table import load_runs
from twolayer.run import driver as run_module
from twolayer.run.options import RunOptions
from twolayer.run.retime import retime_disturbed

QUIET = MachineState(canary_s=100e-6, quiet_s=100e-6, load_avg_1m=0.1, others_running=0)
BUSY = MachineState(canary_s=40e-3, quiet_s=100e-6, load_avg_1m=2.0, others_running=2)


def with_canary(entry, before, after, **extra):
    entry["extra_info"].update(canary_before_s=before, canary_after_s=after, **extra)
    entry["fullname"] = "bench/test_phases.py::" + entry["name"]
    return entry


def busy_run(tmp_path, quiet_canary_s):
    """Every benchmark timed while both cores were busy: all canaries ~400x the quiet one."""
    path = write_run(tmp_path / "busy.json", [
        with_canary(bench(v, p, constant(40e-3)), 40e-3, 41e-3) for v in ("numpy_manual", "torch_manual")
        for p in ("forward", "step")])
    run = json.loads(path.read_text())
    run["twolayer"]["quiet_canary_s"] = quiet_canary_s
    path.write_text(json.dumps(run))
    return path


def test_a_run_slowed_from_start_to_finish_is_flagged_against_the_quiet_reference(tmp_path):
    table = load_runs([busy_run(tmp_path, quiet_canary_s=100e-6)])
    assert table["disturbed"].all()
    assert table["canary_ratio"].min() == pytest.approx(410)  # the slower canary, 41 ms, over the quiet 0.1 ms
    text = build_report(table, charts=False).markdown()
    assert text.count("(disturbed) |") == 4


def test_without_a_quiet_reference_only_the_run_itself_is_the_reference(tmp_path):
    table = load_runs([busy_run(tmp_path, quiet_canary_s=None)])
    assert not table["disturbed"].any()  # nothing known to compare with: why `twolayer run` learns one


def test_the_quiet_canary_is_learned_kept_per_setup_and_only_lowered(tmp_path):
    assert known_quiet_canary(tmp_path) is None
    assert remember_quiet_canary(tmp_path, 120e-6)
    assert known_quiet_canary(tmp_path) == 120e-6
    assert not remember_quiet_canary(tmp_path, 200e-6)  # a busier moment never raises it
    assert remember_quiet_canary(tmp_path, 100e-6)
    assert known_quiet_canary(tmp_path) == 100e-6
    stored = json.loads(next(tmp_path.glob("canary-*.json")).read_text())
    stored[0]["hardware"] = "cpu AuthenticAMD/26/2/0 avx512f"  # another cpu under this host name
    next(tmp_path.glob("canary-*.json")).write_text(json.dumps(stored))
    assert known_quiet_canary(tmp_path) is None


def test_a_busy_machine_is_announced_before_timing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run_module, "machine_state", lambda out: BUSY)
    state = run_module.check_machine(RunOptions(out=tmp_path))
    err = capsys.readouterr().err
    assert state is BUSY
    assert err.startswith("twolayer run: warning: the machine is busy (canary 40000 us, 400.00x its quiet 100 us")
    assert "2 other threads runnable" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(run_module, "machine_state", lambda out: QUIET)
    run_module.check_machine(RunOptions(out=tmp_path))
    assert capsys.readouterr() == ("", "")


def test_a_run_says_when_no_quiet_canary_is_known_and_the_report_gives_each_run_s_canaries(
        tmp_path, capsys, monkeypatch):
    unknown = MachineState(canary_s=100e-6, quiet_s=None, load_avg_1m=0.1, others_running=0)
    monkeypatch.setattr(run_module, "machine_state", lambda out: unknown)
    run_module.check_machine(RunOptions(out=tmp_path))
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("twolayer run: no quiet canary is known yet") and "twolayer compare" in out
    for quiet, words in ((None, "canary 41000 us usual, no quiet one known for this machine yet"),
                         (100e-6, "canary 41000 us usual, 100 us this machine's quiet one")):
        table = load_runs([busy_run(tmp_path, quiet_canary_s=quiet)])
        assert table["run_canary_s"].tolist() == pytest.approx([41e-3] * 4)  # the median of the slower canaries
        assert words in build_report(table, charts=False).markdown()


def test_other_threads_runnable_make_the_machine_busy_even_with_a_calm_canary(tmp_path, capsys, monkeypatch):
    shared = MachineState(canary_s=100e-6, quiet_s=100e-6, load_avg_1m=1.0, others_running=1)
    assert shared.busy and not QUIET.busy
    monkeypatch.setattr(run_module, "machine_state", lambda out: shared)
    run_module.check_machine(RunOptions(out=tmp_path))
    assert "the machine is busy" in capsys.readouterr().err


def test_a_run_that_began_with_a_co_tenant_teaches_no_quiet_canary(tmp_path):
    result = {"benchmarks": [with_canary(bench("torch_manual", "forward", constant(1e-4)), 90e-6, 91e-6)]}
    shared = MachineState(canary_s=100e-6, quiet_s=None, load_avg_1m=1.0, others_running=1)
    run_module.remember_quiet(result, RunOptions(out=tmp_path), shared)
    assert known_quiet_canary(tmp_path) is None
    run_module.remember_quiet(result, RunOptions(out=tmp_path), QUIET)
    assert known_quiet_canary(tmp_path) == pytest.approx(90.5e-6)


def test_machine_load_counts_other_processes_not_our_own_threads(monkeypatch):
    stats = iter(["cpu 1 2 3\nprocs_running 5\nprocs_blocked 0\n"] * 3)
    monkeypatch.setattr(canary_module, "_own_running_threads", lambda: 2)
    monkeypatch.setattr(canary_module.Path, "read_text",
                        lambda self, *a, **k: "1.50 1.00 0.50 3/200 42" if self.name == "loadavg" else next(stats))
    assert machine_load(samples=3, interval_s=0) == {"load_avg_1m": 1.5, "others_running": 3}


def retiming_result(tmp_path):
    calm = [with_canary(bench(v, "forward", constant(1e-4)), 100e-6, 101e-6) for v in ("numpy_manual", "torch_manual")]
    hit = with_canary(bench("torch_optim", "forward", constant(3e-4)), 100e-6, 300e-6)  # a burst mid-benchmark
    return {"benchmarks": [*calm, hit], "twolayer": {"quiet_canary_s": 100e-6}}


def test_a_disturbed_benchmark_is_retimed_once_the_machine_is_calm(tmp_path):
    result = retiming_result(tmp_path)
    assert [b["extra_info"]["variant"] for b in disturbed_benchmarks(result)] == ["torch_optim"]
    asked = []

    def run_pytest(arguments):
        asked.append(arguments)
        json_path = next(a.split("=", 1)[1] for a in arguments if a.startswith("--benchmark-json="))
        again = with_canary(bench("torch_optim", "forward", constant(1.1e-4)), 100e-6, 102e-6)
        (tmp_path / json_path.rsplit("/", 1)[1]).write_text(json.dumps({"benchmarks": [again]}))
        return 0

    waits = []
    retime_disturbed(result, RunOptions(out=tmp_path), tmp_path, "run", None, 100e-6, run_pytest,
                     state=lambda out: QUIET, wait=waits.append)
    assert len(asked) == 1 and asked[0][0].endswith("test_phase[cpu-forward-float32-64x1000x100x10-torch_optim]")
    retimed = result["benchmarks"][2]
    assert retimed["stats"]["median"] == pytest.approx(1.1e-4) and retimed["extra_info"]["retimed"] == 1
    assert disturbed_benchmarks(result) == [] and waits == []


def test_a_machine_that_stays_busy_is_waited_for_a_bounded_time_then_left_flagged(tmp_path, capsys):
    result = retiming_result(tmp_path)
    waits = []
    retime_disturbed(result, RunOptions(out=tmp_path), tmp_path, "run", None, 100e-6,
                     run_pytest=lambda arguments: pytest.fail("retimed on a busy machine"),
                     state=lambda out: BUSY, wait=waits.append)
    assert len(waits) == 3 and sum(waits) <= 10
    assert "1 benchmark(s) timed on a disturbed machine stay flagged" in capsys.readouterr().err
    assert len(disturbed_benchmarks(result)) == 1


def test_retiming_is_bounded_and_keeps_the_calmer_timing(tmp_path):
    result = retiming_result(tmp_path)
    attempts = []

    def still_disturbed(arguments):
        attempts.append(arguments)
        json_path = next(a.split("=", 1)[1] for a in arguments if a.startswith("--benchmark-json="))
        again = with_canary(bench("torch_optim", "forward", constant(9e-4)), 100e-6, 900e-6)  # worse
        (tmp_path / json_path.rsplit("/", 1)[1]).write_text(json.dumps({"benchmarks": [again]}))
        return 0

    retime_disturbed(result, RunOptions(out=tmp_path, retimes=2), tmp_path, "run", None, 100e-6, still_disturbed,
                     state=lambda out: QUIET, wait=lambda s: None)
    assert len(attempts) == 2
    kept = result["benchmarks"][2]
    assert kept["stats"]["median"] == pytest.approx(3e-4) and kept["extra_info"]["retimed"] == 2


def passes(tmp_path, medians, canaries=None):
    entries = []
    for index, median in enumerate(medians, 1):
        canary = canaries[index - 1] if canaries else 100e-6
        entry = with_canary(bench("torch_manual", "forward", constant(median, rounds=20)), canary, canary,
                            **{"pass": index})
        entry["name"] += f"-pass{index}"
        entries.append(entry)
    return write_run(tmp_path / "repeat.json", entries)


def test_passes_are_pooled_into_one_row_with_their_spread(tmp_path):
    table = load_runs([passes(tmp_path, [100e-6, 120e-6, 110e-6])])
    assert len(table) == 1
    row = table.iloc[0]
    assert row["passes"] == 3 and row["rounds"] == 60
    assert row["pass_spread"] == pytest.approx(1.2)
    assert row["median_s"] == pytest.approx(110e-6, rel=0.01)
    assert len(row["raw_passes"]) == 3
    # every statistic is the pooled timings', not the first pass's: each pass alone is 2% wide
    raw = np.concatenate(row["raw_passes"])
    q1, q3 = np.percentile(raw, [25, 75])
    assert row["iqr_s"] == pytest.approx(q3 - q1)
    assert row["iqr_fraction"] == pytest.approx((q3 - q1) / np.median(raw)) and row["iqr_fraction"] > 0.1
    assert bool(row["noisy"])
    assert row["stddev_s"] == pytest.approx(statistics.stdev(raw))  # as pytest-benchmark gives one pass's
    assert (row["min_s"], row["max_s"], row["mean_s"]) == pytest.approx((raw.min(), raw.max(), raw.mean()))


def test_one_disturbed_pass_marks_the_pooled_row_disturbed(tmp_path):
    """A canary twice its usual in pass 2 only: the pooled row holds pass 2's timings, so it is
    disturbed, with that pass's ratio, and compare keeps it out of a verdict."""
    table = load_runs([passes(tmp_path, [100e-6, 100e-6, 100e-6], canaries=[100e-6, 200e-6, 100e-6])])
    row = table.iloc[0]
    assert bool(row["disturbed"])
    assert row["canary_ratio"] == pytest.approx(2.0)
    (tmp_path / "calm").mkdir()
    calm = load_runs([passes(tmp_path / "calm", [100e-6] * 3)]).assign(run_id="calm")
    assert not calm.iloc[0]["disturbed"]
    verdict = compare_tables(table, calm, 0.05).iloc[0]
    assert verdict["verdict"] == "inconclusive" and "disturbed in every base run" in verdict["reason"]


def test_passes_are_runs_to_compare_so_their_drift_widens_the_interval(tmp_path):
    base = load_runs([passes(tmp_path, [100e-6, 130e-6, 100e-6])])
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = load_runs([passes(new_dir, [110e-6, 140e-6, 112e-6])]).assign(run_id="new")
    row = compare_tables(base, new, 0.05).iloc[0]
    assert row["interval_kind"] == "between-runs"
    assert row["verdict"] == "inconclusive" and "too noisy to decide" in row["reason"]


def test_disturbed_runs_are_never_pooled_into_a_verdict(tmp_path):
    calm = write_run(tmp_path / "calm.json", [with_canary(bench("torch_manual", "forward", constant(1e-4)),
                                                          100e-6, 100e-6)], run_id="calm")
    busy = busy_run(tmp_path, quiet_canary_s=100e-6)
    assert main(["compare", str(busy), str(calm), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "compare.csv").set_index(["variant", "phase"])
    row = table.loc[("torch_manual", "forward")]
    assert row["verdict"] == "inconclusive" and "disturbed in every base run" in row["reason"]
    assert pd.isna(row["ratio_low"])  # no bound from timings no quiet machine produced


def canary_run(path, canary_s, medians, hardware=None):
    """A run without a known quiet canary whose every benchmark saw `canary_s` before and after."""
    path = write_run(path, [with_canary(bench(variant, phase, constant(median)), canary_s, canary_s)
                            for (variant, phase), median in medians.items()], run_id=path.stem)
    if hardware:
        run = json.loads(path.read_text())
        run["machine_info"]["hardware"] = hardware
        path.write_text(json.dumps(run))
    return path


SAME_CODE = {("numpy_manual", "forward"): 1e-4, ("torch_manual", "forward"): 2e-4, ("torch_manual", "step"): 5e-5}


def compare_runs(tmp_path, capsys, base, new):
    code = main(["compare", str(base), str(new), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    return code, err, pd.read_csv(tmp_path / "compare.csv").set_index(["variant", "phase"])


def test_a_new_run_slowed_from_start_to_finish_is_no_verdict_even_without_a_quiet_reference(tmp_path, capsys):
    base = canary_run(tmp_path / "base.json", 100e-6, SAME_CODE)
    # the same code on a machine 1.3x slower throughout: no benchmark is disturbed against its own run
    new = canary_run(tmp_path / "new.json", 130e-6, {key: 1.3 * median for key, median in SAME_CODE.items()})
    assert not load_runs([new])["disturbed"].any()
    code, err, table = compare_runs(tmp_path, capsys, base, new)
    assert code == 0  # not called slower
    assert (table["verdict"] == "inconclusive").all()
    assert table["machine_ratio"].tolist() == pytest.approx([1.3] * 3)
    assert all(reason.startswith("slower at 1.300") and "the machine itself ran 1.30x slower in the new run(s) "
               "(usual canary 130 us new, 100 us base)" in reason for reason in table["reason"])
    assert err.count("\n") == 1 and "warning: the machine itself ran 1.30x slower in the new run(s)" in err


def test_a_verdict_against_the_machine_s_change_of_speed_stands(tmp_path, capsys):
    base = canary_run(tmp_path / "base.json", 100e-6, SAME_CODE)
    new = canary_run(tmp_path / "new.json", 130e-6, {("numpy_manual", "forward"): 0.5e-4,  # faster on a slower machine
                                                     ("torch_manual", "forward"): 2e-4,  # unchanged: could hide a gain
                                                     ("torch_manual", "step"): 6.5e-5})
    code, _, table = compare_runs(tmp_path, capsys, base, new)
    assert code == 0
    assert table.loc[("numpy_manual", "forward"), "verdict"] == "faster"
    assert table.loc[("torch_manual", "forward"), "reason"].startswith("unchanged at 1.000")
    assert table.loc[("torch_manual", "step"), "verdict"] == "inconclusive"
    # the base was the slower machine: a slowdown stands, a speedup or an unchanged does not
    code, _, table = compare_runs(tmp_path, capsys, new, base)
    assert code == 1
    assert table.loc[("numpy_manual", "forward"), "verdict"] == "slower"
    assert table.loc[("torch_manual", "step"), "verdict"] == "inconclusive"
    assert "the machine itself ran 1.30x slower in the base run(s)" in table.loc[("torch_manual", "step"), "reason"]
    assert table.loc[("torch_manual", "forward"), "reason"].startswith("unchanged at 1.000")  # could hide a slowdown


def test_a_change_larger_than_the_machine_s_is_still_a_verdict(tmp_path, capsys):
    base = canary_run(tmp_path / "base.json", 100e-6, SAME_CODE)
    new = canary_run(tmp_path / "new.json", 120e-6, {key: 3 * median for key, median in SAME_CODE.items()})
    code, err, table = compare_runs(tmp_path, capsys, base, new)
    assert code == 1 and (table["verdict"] == "slower").all()  # 3x on a machine 1.2x slower: the code
    assert "the machine itself ran 1.20x slower" in err


def test_machine_speeds_within_the_canary_margin_or_on_other_hardware_leave_verdicts_alone(tmp_path, capsys):
    slower_code = {key: 1.5 * median for key, median in SAME_CODE.items()}
    base = canary_run(tmp_path / "base.json", 100e-6, SAME_CODE)
    within = canary_run(tmp_path / "within.json", 112e-6, slower_code)
    code, err, table = compare_runs(tmp_path, capsys, base, within)
    assert code == 1 and (table["verdict"] == "slower").all() and "machine itself" not in err
    assert table["machine_ratio"].tolist() == pytest.approx([1.12] * 3)
    other = canary_run(tmp_path / "other.json", 200e-6, slower_code, hardware="another cpu")
    code, err, table = compare_runs(tmp_path, capsys, base, other)  # canaries of two cpus say nothing of either
    assert code == 1 and (table["verdict"] == "slower").all() and table["machine_ratio"].isna().all()
    assert "hardware differs" in err and "machine itself" not in err


def test_a_retime_free_of_the_co_tenant_replaces_the_first_even_with_a_slightly_busier_canary(tmp_path):
    first = with_canary(bench("torch_manual", "step", constant(1.4e-4)), 100e-6, 100e-6, others_running=1)
    result = {"benchmarks": [first], "machine_info": {"cpu_count": 2}, "twolayer": {"quiet_canary_s": 100e-6}}
    assert len(disturbed_benchmarks(result)) == 1

    def run_pytest(arguments):
        json_path = next(a.split("=", 1)[1] for a in arguments if a.startswith("--benchmark-json="))
        again = with_canary(bench("torch_manual", "step", constant(1e-4)), 101e-6, 102e-6, others_running=0)
        (tmp_path / json_path.rsplit("/", 1)[1]).write_text(json.dumps({"benchmarks": [again]}))
        return 0

    retime_disturbed(result, RunOptions(out=tmp_path), tmp_path, "run", None, 100e-6, run_pytest,
                     state=lambda out: QUIET, wait=lambda s: None)
    assert result["benchmarks"][0]["stats"]["median"] == pytest.approx(1e-4)
    assert disturbed_benchmarks(result) == []


def test_a_benchmark_that_shared_its_cores_with_a_co_tenant_is_disturbed_even_with_a_calm_canary(tmp_path, capsys):
    """On two cores, a one-thread co-tenant left the canary calm and made identical torch steps up to 1.6x
    slower: a benchmark that began with another process's threads runnable beyond the cores its own
    threads left free is disturbed, retimed, and kept out of a verdict."""
    def run(path, others, threads, median):
        entries = [with_canary(bench(v, "step", constant(median)), 100e-6, 100e-6, others_running=others)
                   for v in ("numpy_manual", "torch_manual")]
        for entry in entries:
            entry["extra_info"].update(torch_threads=threads, numpy_threads=threads)
        return write_run(path, entries, run_id=path.stem)

    shared = run(tmp_path / "shared.json", others=1, threads=2, median=1.4e-4)  # 2 cores: 1 + 2 threads > 2
    assert load_runs([shared])["disturbed"].all()
    assert len(disturbed_benchmarks(json.loads(shared.read_text()))) == 2
    alone = run(tmp_path / "alone.json", others=1, threads=1, median=1e-4)  # the co-tenant on the core left free
    assert not load_runs([alone])["disturbed"].any() and disturbed_benchmarks(json.loads(alone.read_text())) == []
    quiet = run(tmp_path / "quiet.json", others=0, threads=2, median=1e-4)
    assert main(["compare", str(quiet), str(shared), "--out", str(tmp_path)]) == 0  # never called slower
    table = pd.read_csv(tmp_path / "compare.csv")
    assert (table["verdict"] == "inconclusive").all()
    assert all("disturbed in every new run (canary 1.00x the reference; 1 other threads runnable)" in reason
               for reason in table["reason"])


def test_two_dtype_modes_of_one_run_are_two_rows_not_a_duplicate(tmp_path):
    tutorial = bench("torch_manual", "forward", constant(1e-4))
    tutorial["extra_info"]["dtype_mode"] = "tutorial"
    plain = bench("torch_manual", "forward", constant(1e-4))
    plain["extra_info"]["dtype_mode"] = "float32"
    table = load_runs([write_run(tmp_path / "modes.json", [tutorial, plain])])
    assert sorted(table["dtype_mode"]) == ["float32", "tutorial"]
    assert len(build_report(table, charts=False).comparison) == 2
