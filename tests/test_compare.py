"""`twolayer compare`: verdicts on synthetic raw timings, the gate's exit code, and listing the unmatched."""

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import bench, write_run

from twolayer.analysis.compare import RatioInterval, median_ratio_interval, straddle_reason, verdict
from twolayer.cli import main


def noise(median, rounds=400, seed=0, spread=0.05):
    rng = np.random.default_rng(seed)
    return median * (1 + spread * rng.standard_normal(rounds)).clip(0.5)


def compare(capsys, tmp_path, base_benchmarks, new_benchmarks, *extra):
    base = write_run(tmp_path / "base.json", base_benchmarks, run_id="base")
    new = write_run(tmp_path / "new.json", new_benchmarks, run_id="new")
    code = main(["compare", str(base), str(new), "--out", str(tmp_path), *extra])
    out, err = capsys.readouterr()
    return code, out, err, pd.read_csv(tmp_path / "compare.csv") if code in (0, 1) else None


def test_a_clear_2x_slowdown_fails_the_gate(capsys, tmp_path):
    code, out, _, table = compare(capsys, tmp_path, [bench("torch_manual", "iteration", noise(1e-4))],
                                  [bench("torch_manual", "iteration", noise(2e-4, seed=1))])
    assert code == 1
    row = table.iloc[0]
    assert row["verdict"] == "slower"
    assert row["ratio"] == pytest.approx(2.0, rel=0.02) and row["ratio_low"] > 1.9
    assert "1 slower, 0 faster, 0 inconclusive, 0 unchanged beyond 10%" in out
    assert "intervals cover round-to-round noise only" in out  # one run per side: said, not hidden


def test_pure_noise_is_unchanged(capsys, tmp_path):
    code, _, _, table = compare(capsys, tmp_path, [bench("torch_manual", "iteration", noise(1e-4, spread=0.3))],
                                [bench("torch_manual", "iteration", noise(1e-4, seed=1, spread=0.3))])
    assert code == 0 and list(table["verdict"]) == ["unchanged"]


def test_a_3_percent_shift_passes_a_10_percent_gate_but_not_a_1_percent_one(capsys, tmp_path):
    base, new = [bench("torch_manual", "forward", noise(1e-4))], [bench("torch_manual", "forward", noise(1.03e-4, seed=1))]
    code, _, _, table = compare(capsys, tmp_path, base, new)
    assert code == 0 and table.iloc[0]["verdict"] == "unchanged"
    code, _, _, table = compare(capsys, tmp_path, base, new, "--threshold", "1")
    assert code == 1 and table.iloc[0]["verdict"] == "slower"


def test_a_clear_speedup_is_reported_and_passes(capsys, tmp_path):
    code, _, _, table = compare(capsys, tmp_path, [bench("torch_manual", "step", noise(2e-4))],
                                [bench("torch_manual", "step", noise(1e-4, seed=1))])
    assert code == 0 and table.iloc[0]["verdict"] == "faster"


def test_benchmarks_in_only_one_run_are_listed(capsys, tmp_path):
    code, _, _, table = compare(
        capsys, tmp_path,
        [bench("torch_manual", "forward", noise(1e-4)), bench("numpy_manual", "forward", noise(1e-4))],
        [bench("torch_manual", "forward", noise(1e-4, seed=1)), bench("torch_optim", "forward", noise(1e-4))],
    )
    assert code == 0
    verdicts = dict(zip(table["variant"], table["verdict"]))
    assert verdicts == {"torch_manual": "unchanged", "numpy_manual": "only_in_base", "torch_optim": "only_in_new"}


def test_bad_input_is_one_line_exit_2(capsys, tmp_path):
    good = write_run(tmp_path / "good.json", [bench("torch_manual", "forward", noise(1e-4))])
    (tmp_path / "broken.json").write_text("[1, 2")
    code = main(["compare", str(good), str(tmp_path / "broken.json")])
    err = capsys.readouterr().err
    assert code == 2 and "not JSON" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "compare.csv").exists()
    emptied = write_run(tmp_path / "emptied.json", [bench("torch_manual", "forward", noise(1e-4))])
    run = json.loads(emptied.read_text())
    run["benchmarks"][0]["stats"]["data"] = []
    emptied.write_text(json.dumps(run))
    code = main(["compare", str(good), str(emptied)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{emptied}: benchmark test_phase[" in err and "has no raw timings" in err


def test_the_interval_is_repeatable_and_brackets_the_ratio():
    base, new = [noise(1e-4)], [noise(1.5e-4, seed=3)]
    first, second = median_ratio_interval(base, new), median_ratio_interval(base, new)
    assert first == second
    assert first.low < first.ratio < first.high
    assert verdict(first, 0.10) == "slower"


def test_runs_on_one_side_are_pooled(capsys, tmp_path):
    """Alternated runs (base, new, base, new): each side's raw timings are pooled before comparing."""
    base_runs = [write_run(tmp_path / f"base{i}.json", [bench("torch_manual", "forward", noise(1e-4, seed=i))],
                           run_id=f"base{i}") for i in (1, 2)]
    new_runs = [write_run(tmp_path / f"new{i}.json", [bench("torch_manual", "forward", noise(2e-4, seed=10 + i))],
                          run_id=f"new{i}") for i in (1, 2)]
    code = main(["compare", ",".join(map(str, base_runs)), ",".join(map(str, new_runs)), "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "compare.csv")
    assert code == 1
    row = table.iloc[0]
    assert row["base_run_id"] == "base1+base2" and row["new_run_id"] == "new1+new2"
    pooled = np.concatenate([noise(1e-4, seed=1), noise(1e-4, seed=2)])
    assert row["base_median_s"] == pytest.approx(np.median(pooled))
    assert row["verdict"] == "slower"
    capsys.readouterr()


def test_drift_between_alternated_runs_widens_the_interval():
    """Two base runs 30% apart (machine drift) leave a 10% shift unproven; one run pair would not."""
    base = [noise(1e-4, seed=1), noise(1.3e-4, seed=2)]
    new = [noise(1.1e-4, seed=3), noise(1.45e-4, seed=4)]
    pooled = median_ratio_interval(base, new)
    single = median_ratio_interval(base[:1], new[:1])
    assert pooled.high - pooled.low > 5 * (single.high - single.low)
    assert verdict(pooled, 0.05) == "inconclusive"  # drift makes it undecidable, never "unchanged"


def test_runs_with_nothing_in_common_are_refused(capsys, tmp_path):
    code, _, err, _ = compare(capsys, tmp_path, [bench("torch_manual", "forward", noise(1e-4))],
                              [bench("torch_manual", "forward", noise(1e-4), size="128x1000x100x10")])
    assert code == 2 and "nothing to compare" in err


def test_harness_rows_are_shown_but_never_gated(capsys, tmp_path):
    def empty_call(median):
        entry = bench("harness_empty", "overhead", noise(median))
        entry["extra_info"].update(dtype=None, size=None, flops=0)
        return entry

    code, _, _, table = compare(capsys, tmp_path, [empty_call(70e-9), bench("torch_manual", "forward", noise(1e-4))],
                                [empty_call(140e-9), bench("torch_manual", "forward", noise(1e-4, seed=1))])
    assert code == 0
    assert dict(zip(table["variant"], table["verdict"])) == {"torch_manual": "unchanged", "harness_empty": "harness"}


def test_a_disturbed_harness_row_is_still_harness_and_its_line_has_no_nan(capsys, tmp_path):
    """The overhead rows have no dtype or size; disturbed on one side they are still never gated."""
    def empty_call(median, canary):
        entry = bench("harness_empty", "overhead", noise(median))
        entry["extra_info"].update(dtype=None, size=None, flops=0, canary_before_s=canary, canary_after_s=canary)
        return entry

    forward = bench("torch_manual", "forward", noise(1e-4))
    forward["extra_info"].update(canary_before_s=100e-6, canary_after_s=100e-6)
    code, out, _, table = compare(capsys, tmp_path, [empty_call(70e-9, 100e-6), forward],
                                  [empty_call(70e-9, 900e-6), forward])
    assert code == 0
    assert dict(zip(table["variant"], table["verdict"]))["harness_empty"] == "harness"
    assert "nan" not in out


def test_different_provenance_is_warned_about(capsys, tmp_path):
    base = write_run(tmp_path / "a.json", [bench("torch_manual", "forward", noise(1e-4))], host="box-a")
    new = write_run(tmp_path / "b.json", [bench("torch_manual", "forward", noise(1e-4))], host="box-b")
    assert main(["compare", str(base), str(new), "--out", str(tmp_path)]) == 0
    assert "warning: machine differs: box-a vs box-b" in capsys.readouterr().err


# Every field of summary.csv that says what the code ran on or with (README: the reports), and
# where a run records it; written out here, not read from the code, so that a field dropped from
# compare's list turns this red.
ENVIRONMENT = {"machine": "twolayer_host", "cpu_model": "cpu_model", "hardware": "hardware", "cpu_isa": "cpu_isa",
               "gpu_model": "gpu_model", "gpu_capability": "gpu_capability", "torch_version": "torch_version",
               "numpy_version": "numpy_version", "cuda_version": "cuda_version", "torch_blas": "torch_blas",
               "numpy_blas": "numpy_blas", "python_version": "python_version", "torch_threads": "extra_info",
               "numpy_threads": "extra_info", "suite_version": "extra_info"}


@pytest.mark.parametrize("field", list(ENVIRONMENT))
def test_every_difference_of_machine_or_software_is_warned_about(capsys, tmp_path, field):
    base = write_run(tmp_path / "a.json", [bench("torch_manual", "forward", noise(1e-4))])
    new = write_run(tmp_path / "b.json", [bench("torch_manual", "forward", noise(1e-4))])
    run = json.loads(new.read_text())
    if ENVIRONMENT[field] == "extra_info":
        run["benchmarks"][0]["extra_info"][field] = 99
    else:
        run["machine_info"][ENVIRONMENT[field]] = "something else"
    new.write_text(json.dumps(run))
    assert main(["compare", str(base), str(new), "--out", str(tmp_path)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "differs" in line]
    assert len(warnings) == 1 and f"warning: {field} differs: " in warnings[0]


def mirrored(verdict_text: str) -> str:
    return {"slower": "faster", "faster": "slower"}.get(verdict_text, verdict_text)


@pytest.mark.parametrize("threshold", [0.02, 0.05, 0.10])
def test_the_verdict_is_the_same_read_either_way_round(threshold):
    """Swapping base and new turns a ratio r into 1/r: slower and faster swap, nothing else moves.
    Bounds just inside and just outside each threshold included."""
    edges = [1 + threshold, 1 / (1 + threshold)]
    points = sorted({*np.linspace(0.8, 1.25, 46), *(e * f for e in edges for f in (1 - 1e-9, 1 + 1e-9)), 1.0})
    for low in points:
        for high in (p for p in points if p >= low):
            ratio = (low * high) ** 0.5
            forward = verdict(RatioInterval(ratio, low, high), threshold)
            backward = verdict(RatioInterval(1 / ratio, 1 / high, 1 / low), threshold)
            assert backward == mirrored(forward), (low, high, forward, backward)


@pytest.mark.parametrize("ratio, low, high, expected", [
    (1.25, 1.20, 1.30, "slower"),  # the whole interval beyond the threshold
    (1.14, 1.016, 1.44, "inconclusive"),  # an A/A row under a co-tenant: above 1, but not surely beyond 10%
    (1.12, 0.98, 1.30, "inconclusive"),  # the estimate matters, but noise could explain it
    (1.05, 1.02, 1.08, "unchanged"),  # a real change too small to matter
    (1.05, 1.01, 1.15, "inconclusive"),  # small, but a change beyond the threshold is plausible
    (1.00, 0.95, 1.05, "unchanged"),
    (0.80, 0.75, 0.85, "faster"),
    (0.85, 0.80, 0.90, "faster"),  # 1 / 0.90 = 1.11: the whole interval beyond the threshold
    (0.89, 0.85, 0.95, "inconclusive"),
    (0.89, 0.80, 1.02, "inconclusive"),
    (0.97, 0.95, 0.99, "unchanged"),  # 3% faster passes a 10% gate, as 3% slower does
    (1.03, 1.01, 1.05, "unchanged"),
    (float("nan"), 0.99, 1.01, "inconclusive"),  # no estimate: never "unchanged"
    (1.00, float("nan"), float("nan"), "inconclusive"),
])
def test_the_verdict_needs_the_whole_interval_beyond_or_within_the_threshold(ratio, low, high, expected):
    interval = RatioInterval(ratio, low, high, "within-run")
    assert verdict(interval, 0.10) == expected
    if expected == "inconclusive":
        reason = straddle_reason(interval, 0.10)
        if not np.isfinite([ratio, low, high]).all():
            assert "could be computed" in reason
        else:
            beyond = ratio > 1.10 or ratio < 1 / 1.10
            assert ("reaches back within it" if beyond else "reaches beyond it") in reason


def test_markdown_for_a_pull_request_lists_the_changed_first_and_counts_the_rest(capsys, tmp_path):
    base = [bench("torch_manual", "iteration", noise(1e-4)), bench("torch_autograd", "iteration", noise(2e-4)),
            bench("numpy_manual", "iteration", noise(3e-4))]
    new = [bench("torch_manual", "iteration", noise(1e-4, seed=1)), bench("torch_autograd", "iteration", noise(3e-4, seed=1)),
           bench("numpy_manual", "iteration", noise(1.5e-4, seed=1))]
    markdown = tmp_path / "comment.md"
    code, _, _, _ = compare(capsys, tmp_path, base, new, "--markdown", str(markdown),
                            "--report-url", "https://example.invalid/run/1")
    text = markdown.read_text()
    assert code == 1 and text.startswith("### twolayer compare: **1 slower** beyond 10% in time")
    rows = [line for line in text.splitlines() if line.startswith("| slower") or line.startswith("| faster")]
    assert [row.split(" | ")[0:3] for row in rows] == [["| slower", "cpu", "torch_autograd"],
                                                        ["| faster", "cpu", "numpy_manual"]]
    assert "torch_manual" not in text and "1 unchanged" in text
    assert text.rstrip().endswith("Full report: https://example.invalid/run/1")


def test_a_run_set_against_itself_says_nothing_of_scipy_s_degenerate_intervals(capsys, tmp_path):
    import warnings

    run = write_run(tmp_path / "run.json", [bench("torch_manual", "forward", [1e-4] * 5 + [1.1e-4] * 50)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["compare", str(run), str(run), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0 and "Warning" not in err and "return fun(" not in err
    assert [w for w in caught if "BCa" in str(w.message) or "Degenerate" in type(w.message).__name__] == []
    assert pd.read_csv(tmp_path / "compare.csv")["verdict"].tolist() == ["unchanged"]


def test_a_disturbed_row_in_the_markdown_has_no_nan(capsys, tmp_path):
    calm = bench("torch_manual", "forward", noise(1e-4))
    calm["extra_info"].update(canary_before_s=100e-6, canary_after_s=100e-6)
    hit = bench("torch_manual", "forward", noise(3e-4, seed=1))
    hit["extra_info"].update(canary_before_s=100e-6, canary_after_s=100e-6)
    busy = write_run(tmp_path / "busy.json", [hit], run_id="busy")
    run = json.loads(busy.read_text())
    run["twolayer"]["quiet_canary_s"] = 50e-6  # every canary of the run 2x the machine's quiet one
    busy.write_text(json.dumps(run))
    markdown = tmp_path / "comment.md"
    base = write_run(tmp_path / "base.json", [calm], run_id="base")
    assert main(["compare", str(base), str(busy), "--out", str(tmp_path), "--markdown", str(markdown)]) == 0
    text = markdown.read_text()
    line = next(line for line in text.splitlines() if line.startswith("| inconclusive"))
    assert "nan" not in text and line.replace(" ", "").endswith("|299.2|||")  # no ratio, no interval
