"""The bar charts: real quartiles for whiskers, a log axis for wide spans, flagged bars marked, no run dropped."""

import json

import numpy as np
import pytest
from synthetic_runs import DATA, bench, constant, write_run

from twolayer.report.charts import phase_charts, with_quartiles
from twolayer.report.page import build_report, comparison
from twolayer.results.table import load_runs

pytest.importorskip("matplotlib")


@pytest.fixture
def figures(monkeypatch):
    """The figures phase_charts draws, kept open to be inspected."""
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    yield drawn
    for figure in drawn:
        plt.figure(figure.number)
        plt.clf()
    plt.close("all")


def test_whiskers_are_the_quartiles_pytest_benchmark_wrote():
    table = load_runs([DATA / "cpu_run.json"])
    rows = with_quartiles(comparison(table), table)
    stats = {b["name"]: b["stats"] for b in json.loads((DATA / "cpu_run.json").read_text())["benchmarks"]}
    named = table.set_index(["variant", "phase"])["benchmark"]
    for row in rows.itertuples():
        expected = stats[named[(row.variant, row.phase)]]
        assert (row.q1_s, row.q3_s) == pytest.approx((expected["q1"], expected["q3"]))


def contended(tmp_path, run_id, factor):
    """A shared machine's run: a fast variant, a noisy one, a long-tailed one and a disturbed 40 ms one."""
    rng = np.random.default_rng(len(run_id))
    tail = np.concatenate([constant(100e-6 * factor, 150), constant(2e-3, 50)])
    entries = [bench("numpy_manual", "forward", constant(75e-6 * factor, 200)),
               bench("torch_manual", "forward", 90e-6 * factor * (1 + 0.3 * rng.standard_normal(200)).clip(0.1)),
               bench("module_params", "forward", tail),
               bench("torch_compile", "forward", constant(40e-3 * factor, 200))]
    for entry, canary in zip(entries, (1.0, 1.0, 1.0, 1.6)):
        entry["extra_info"].update(canary_before_s=1e-3, canary_after_s=1e-3 * canary)
    return write_run(tmp_path / f"{run_id}.json", entries, host="vm", run_id=run_id)


def bars_of(axes):
    return [patch for patch in axes.patches if patch.get_height() > 0 and patch.get_width() > 0]


def test_a_contended_run_is_read_at_a_glance(tmp_path, figures):
    table = load_runs([contended(tmp_path, "busy", 1.0)])
    report = build_report(table)
    assert set(report.charts) == {"forward.png"} and report.charts["forward.png"].startswith(b"\x89PNG")
    [axes] = figures[0].axes
    assert axes.get_xscale() == "log"  # 75 us beside 40 ms
    [whiskers] = [c for c in axes.containers if type(c).__name__ == "ErrorbarContainer"]
    spans = sorted((seg[0][0], seg[1][0]) for seg in whiskers.lines[2][0].get_segments())
    rows = with_quartiles(report.comparison, table).sort_values("q1_s")
    np.testing.assert_allclose(spans, np.column_stack([rows["q1_s"] * 1e6, rows["q3_s"] * 1e6]))
    assert min(low for low, _ in spans) > 0  # a long tail never pulls a whisker below zero
    flagged = report.comparison.set_index("variant")
    order = [label.get_text() for label in axes.get_yticklabels()]
    by_variant = dict(zip(order, sorted(bars_of(axes), key=lambda bar: bar.get_y())))
    for variant, bar in by_variant.items():
        assert bool(bar.get_hatch()) == bool(flagged.at[variant, "noisy"]), variant
        assert (bar.get_alpha() is not None and bar.get_alpha() < 1) == bool(flagged.at[variant, "disturbed"]), variant
    assert flagged["noisy"].any() and flagged["disturbed"].any()
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(t.startswith("noisy") for t in legend) and any(t.startswith("disturbed") for t in legend)


def test_a_narrow_span_keeps_a_linear_axis(tmp_path, figures):
    path = write_run(tmp_path / "calm.json", [bench("numpy_manual", "forward", constant(75e-6)),
                                             bench("torch_manual", "forward", constant(90e-6))])
    phase_charts(comparison(load_runs([path])), load_runs([path]))
    assert figures[0].axes[0].get_xscale() == "linear"


def test_several_runs_are_all_drawn_and_named(tmp_path, figures):
    table = load_runs([contended(tmp_path, "first", 1.0), contended(tmp_path, "second", 1.3)])
    phase_charts(comparison(table), table)
    [axes] = figures[0].axes
    assert len(bars_of(axes)) == 8  # four variants from each run: none averaged or dropped
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any("run first" in t for t in legend) and any("run second" in t for t in legend)


def test_one_long_whisker_gets_a_log_axis_too(tmp_path, figures):
    """Medians within 10x, but a third quartile 200x its median would squeeze every bar to a sliver."""
    stretched = np.concatenate([constant(120e-6, 120), constant(24e-3, 80)])
    path = write_run(tmp_path / "step.json", [bench("torch_manual", "step", constant(90e-6)),
                                             bench("torch_autograd", "step", stretched)])
    phase_charts(comparison(load_runs([path])), load_runs([path]))
    assert figures[0].axes[0].get_xscale() == "log"
