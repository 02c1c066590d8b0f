"""`twolayer history`: histories made synthetically, with known steps, hardware and version changes.

The detection's own rates are measured here on many seeded synthetic series (12 commits, 5%
noise on each commit's median): how often a 20% step is found at its commit, and how often a
flat series gets a change point at all. These are properties of the method, not of a machine.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from one_line import assert_one_line
from synthetic_history import BASE_US, COMMITS, commit_id, series_with_noise, write_history
from synthetic_runs import bench, write_run

from twolayer.analysis.history import HARDWARE, MIN_SEGMENT, VERSIONS, build_history, cause_of, change_points
from twolayer.cli import main


def test_a_planted_step_is_found_at_its_commit_and_nothing_else(tmp_path):
    rng = np.random.default_rng(11)
    medians = {"torch_manual": list(series_with_noise(rng, step_at=7, cv=0.02)),
               "torch_autograd": list(series_with_noise(rng, cv=0.02))}
    history = build_history([write_history(tmp_path, medians)])
    changes = history.changes
    assert len(changes) == 1, changes
    change = changes.iloc[0]
    assert (change["variant"], change["phase"], change["commit"], change["previous_commit"], change["cause"]) == \
        ("torch_manual", "iteration", commit_id(7), commit_id(6), "code")
    assert change["step"] == pytest.approx(1.2, rel=0.05) and change["confidence"] > 0.99
    table = history.table
    assert len(table) == 2 * COMMITS and set(table["runs"]) == {1}
    assert list(table[table["variant"] == "torch_manual"]["commit"]) == [commit_id(i) for i in range(COMMITS)]


def test_a_flat_noisy_history_has_no_change_point(tmp_path):
    rng = np.random.default_rng(5)
    history = build_history([write_history(tmp_path, {"torch_manual": list(series_with_noise(rng))})])
    assert history.changes.empty


def test_a_step_where_the_cpu_changed_is_labelled_hardware_and_where_torch_changed_versions(tmp_path):
    rng = np.random.default_rng(3)
    medians = {"torch_manual": list(series_with_noise(rng, step_at=5, step=0.6, cv=0.02)),
               "torch_autograd": list(series_with_noise(rng, step_at=8, step=1.3, cv=0.02))}
    history = build_history([write_history(tmp_path, medians, hardware_from=5, torch_from=8)])
    causes = dict(zip(history.changes["variant"], zip(history.changes["commit"], history.changes["cause"])))
    assert causes == {"torch_manual": (commit_id(5), "hardware"), "torch_autograd": (commit_id(8), "versions")}


def test_a_step_where_the_machine_ran_slower_is_labelled_machine_unless_the_code_went_the_other_way(tmp_path):
    """From commit 6 the runners are 1.3x slower throughout (their usual canary too): no run is
    disturbed against itself, and nothing in the provenance changed."""
    rng = np.random.default_rng(4)
    machine = np.where(np.arange(COMMITS) >= 6, 1.3, 1.0)
    medians = {"torch_manual": list(series_with_noise(rng, cv=0.02) * machine),
               "torch_autograd": list(series_with_noise(rng, step_at=3, step=1.25, cv=0.02) * machine),
               "numpy_manual": list(series_with_noise(rng, step_at=6, step=0.5, cv=0.02) * machine)}
    history = build_history([write_history(tmp_path, medians, canary_s=list(100e-6 * machine))])
    changes = history.changes.set_index(["variant", "commit"])
    assert sorted(changes.index) == sorted([("torch_manual", commit_id(6)), ("torch_autograd", commit_id(3)),
                                            ("torch_autograd", commit_id(6)), ("numpy_manual", commit_id(6))])
    assert changes.loc[("torch_manual", commit_id(6)), "cause"] == "machine"
    assert changes.loc[("torch_manual", commit_id(6)), "machine_step"] == pytest.approx(1.3)
    assert changes.loc[("torch_autograd", commit_id(3)), "cause"] == "code"
    assert changes.loc[("torch_autograd", commit_id(6)), "cause"] == "machine"
    # 0.65x on a machine 1.3x slower: faster code, which no slower machine makes
    assert changes.loc[("numpy_manual", commit_id(6)), "cause"] == "code"
    # a step far larger than the machine's is the code's
    before = history.table.iloc[0]
    assert cause_of(before, before, step=3.0, machine_step=1.3) == "code"
    assert cause_of(before, before, step=1.25, machine_step=1.3) == "machine"
    assert list(history.table["run_canary_s"]) == pytest.approx(list(100e-6 * machine) * 3)


def test_disturbed_runs_are_left_out_of_their_commit_and_a_commit_with_no_calm_run_out_of_the_search(tmp_path):
    medians = {"torch_manual": [BASE_US * 1e-6] * COMMITS}
    # commit 3: one run of two hit by a burst; commits 8-11: every run hit (timings 2x)
    bursts = frozenset({(3, 1), *((i, r) for i in range(8, COMMITS) for r in range(2))})
    folder = write_history(tmp_path, medians, runs_per_commit=2, canary_s=[100e-6] * COMMITS, bursts=bursts)
    history = build_history([folder])
    table = history.table.set_index("commit")
    assert table.at[commit_id(3), "runs"] == 1 and not table.at[commit_id(3), "disturbed"]
    assert table.at[commit_id(3), "median_s"] == pytest.approx(BASE_US * 1e-6, rel=0.03)
    assert list(history.table["disturbed"]) == [i >= 8 for i in range(COMMITS)]
    assert table.at[commit_id(9), "median_s"] == pytest.approx(2 * BASE_US * 1e-6, rel=0.03)  # kept, and shown
    assert history.changes.empty  # four commits at 2x, all disturbed: not a change of the code
    assert main(["history", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert "`machine` where the canary stepped" in (tmp_path / "out" / "history.md").read_text()


def test_runs_of_several_world_sizes_make_a_history_with_a_line_each(tmp_path, capsys):
    """As the README's `twolayer run --variants ddp --world-size 1,2` makes them: one variant, two
    world sizes, so two series that share their commits."""
    rng = np.random.default_rng(8)
    write_history(tmp_path, {"ddp": list(series_with_noise(rng, cv=0.02))})
    for path in tmp_path.rglob("benchmarks.json"):
        run = json.loads(path.read_text())
        second = json.loads(json.dumps(run["benchmarks"][0]))
        for entry, world_size in ((run["benchmarks"][0], 1), (second, 2)):
            entry["extra_info"].update(world_size=world_size, scaling="strong")
            entry["name"] += f"-w{world_size}"
        second["stats"]["data"] = [t * 0.6 for t in second["stats"]["data"]]
        second["stats"]["median"] *= 0.6
        run["benchmarks"].append(second)
        path.write_text(json.dumps(run))
    assert main(["history", str(tmp_path), "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "out" / "history.csv")
    assert sorted(table.groupby("world_size").size().items()) == [(1, COMMITS), (2, COMMITS)]
    assert list((tmp_path / "out").glob("history-*.png"))


def test_commits_are_ordered_by_commit_time_not_by_file_order(tmp_path):
    rng = np.random.default_rng(11)
    medians = {"torch_manual": list(series_with_noise(rng, step_at=4, cv=0.02))}
    history = build_history([write_history(tmp_path, medians, reverse_files=True)])
    assert list(history.table["commit"]) == [commit_id(i) for i in range(COMMITS)]
    assert list(history.changes["commit"]) == [commit_id(4)]


def test_runs_of_one_commit_are_pooled(tmp_path):
    medians = {"torch_manual": [BASE_US * 1e-6] * COMMITS}
    history = build_history([write_history(tmp_path, medians, runs_per_commit=3)])
    assert len(history.table) == COMMITS and set(history.table["runs"]) == {3}
    assert history.table["median_s"].to_numpy() == pytest.approx(BASE_US * 1e-6, rel=0.02)


def test_a_run_of_uncommitted_changes_is_not_pooled_into_its_commit(tmp_path):
    """Its tree was not the commit's: a point of its own, labelled, right after the commit."""
    medians = {"torch_manual": [BASE_US * 1e-6] * COMMITS}
    write_history(tmp_path, medians, runs_per_commit=2)
    dirty = tmp_path / "build-003-1" / "benchmarks.json"
    run = json.loads(dirty.read_text())
    run["commit_info"]["dirty"] = True
    dirty.write_text(json.dumps(run))
    history = build_history([tmp_path])
    commits = list(history.table["commit"])
    assert len(commits) == COMMITS + 1 and commits[3:5] == [commit_id(3), commit_id(3) + "-dirty"]
    assert list(history.table["runs"])[3:5] == [1, 1]


def rates(runs_per_commit: int, trials: int, seed: int) -> tuple[float, float, float]:
    """Share of 20%-step series whose only change is found at the step, within one commit of it,
    and share of flat series given any change point. Each commit's median carries 5% noise,
    less by the square root of the runs pooled into it."""
    rng = np.random.default_rng(seed)
    cv = 0.05 / np.sqrt(runs_per_commit)
    exact = near = false = 0
    for _ in range(trials):
        k = int(rng.integers(MIN_SEGMENT, COMMITS - MIN_SEGMENT + 1))
        found = [at for at, _ in change_points(series_with_noise(rng, step_at=k, cv=cv))]
        exact += found == [k]
        near += len(found) == 1 and abs(found[0] - k) <= 1
        false += bool(change_points(series_with_noise(rng, cv=cv)))
    return exact / trials, near / trials, false / trials


@pytest.mark.slow
def test_detection_rates_on_synthetic_histories_of_twelve_commits():
    """With two runs pooled per commit, a 20% step is found at its commit in at least 95% of
    1000 histories, and at most 5% of flat ones get a change point. With one run per commit (5%
    noise on each median) no method can place the step exactly 95% of the time: the best split
    of a series known to hold exactly one change lands on it in 91.5% (README); this one is
    held to 85% exactly and 90% within a commit."""
    exact, _, false = rates(runs_per_commit=2, trials=1000, seed=1)
    assert exact >= 0.95 and false <= 0.05, (exact, false)
    exact, near, false = rates(runs_per_commit=1, trials=1000, seed=2)
    assert exact >= 0.85 and near >= 0.90 and false <= 0.05, (exact, near, false)


def test_a_noise_free_series_reports_real_steps_and_not_rounding():
    counts = np.array([1_774_000.0] * 6 + [1_896_000.0] * 6)  # instruction counts: a 6.9% step, no noise
    assert change_points(counts) == [(6, pytest.approx(1.0, abs=1e-4))]
    assert change_points(counts * (1 + 1e-6 * np.arange(12))) == [(6, pytest.approx(1.0, abs=1e-4))]
    assert change_points(np.array([1e6] * 6 + [1.004e6] * 6)) == []  # below the 1% floor


def test_the_cli_writes_history_changes_and_trend_charts(tmp_path, capsys):
    rng = np.random.default_rng(11)
    folder = write_history(tmp_path / "runs", {"torch_manual": list(series_with_noise(rng, step_at=7, cv=0.02))})
    out = tmp_path / "history"
    assert main(["history", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "12 commits, 1 change points (1 code)" in printed
    changes = pd.read_csv(out / "changes.csv")
    assert list(changes["commit"]) == [commit_id(7)]
    assert len(pd.read_csv(out / "history.csv")) == COMMITS
    markdown = (out / "history.md").read_text()
    assert markdown.startswith("# twolayer history") and "## Changes" in markdown
    assert (out / "history-cpu-iteration-float32-64x1000x100x10.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("problem, message", [
    ("missing", "no such file or folder"),
    ("empty", "no runs (benchmarks.json)"),
    ("no_commit", "records no commit and commit time"),
    ("not_json", "not JSON"),
])
def test_bad_history_input_is_one_line_and_writes_nothing(tmp_path, capsys, problem, message):
    target = tmp_path / "runs"
    if problem != "missing":
        target.mkdir()
    if problem == "no_commit":
        path = target / "a" / "benchmarks.json"
        path.parent.mkdir()
        write_run(path, [bench("torch_manual", "iteration", [1e-4] * 5)])
        run = json.loads(path.read_text())
        run.pop("commit_info")
        path.write_text(json.dumps(run))
    if problem == "not_json":
        (target / "benchmarks.json").write_text("{ not json")
    out = tmp_path / "history"
    assert main(["history", str(target), "--out", str(out)]) == 2
    assert_one_line(capsys.readouterr().err, message)
    assert not out.exists()


MACHINE_FIELDS = ("hardware", "cpu_model", "gpu_model")  # written out: the module's lists are what is tested
VERSION_FIELDS = ("torch_version", "numpy_version", "python_version", "cuda_version")


@pytest.mark.parametrize("field", [*MACHINE_FIELDS, *VERSION_FIELDS])
def test_each_field_of_the_provenance_names_its_cause(field):
    before = pd.Series({c: "same" for c in [*HARDWARE, *VERSIONS, *MACHINE_FIELDS, *VERSION_FIELDS]})
    after = before.copy()
    after[field] = "changed"
    expected = "hardware" if field in MACHINE_FIELDS else "versions"
    assert cause_of(before, after, step=1.3) == expected
    assert cause_of(before, before, step=1.3) == "code"
