"""The answer a run ends with (and report.md opens with): the fastest variant per phase, how much
slower the slowest is, disturbed benchmarks kept out of the ranking, and whether to trust the run."""

from __future__ import annotations

import pandas as pd
import pytest

from twolayer.report.answer import answer_lines, answer_markdown


def row(variant, phase, median_us, noisy=False, disturbed=False, device="cpu", run_id="r1"):
    return {"run_id": run_id, "device": device, "dtype_mode": "float32", "size": "64x1000x100x10", "world_size": 1,
            "variant": variant, "phase": phase, "median_s": median_us * 1e-6, "noisy": noisy, "disturbed": disturbed}


def test_the_fastest_per_phase_and_how_much_slower_the_slowest_is():
    summary = pd.DataFrame([row("harness_empty", "overhead", 0.1), row("numpy_manual", "forward", 100),
                            row("torch_manual", "forward", 80, noisy=True), row("module_linear", "forward", 240),
                            row("torch_manual", "step", 20)])
    lines = answer_lines(summary)
    assert lines[0] == "cpu float32 64x1000x100x10:"
    assert lines[1] == "  forward   fastest torch_manual (noisy) 80.0 us; slowest module_linear 3.0x slower"
    assert lines[2] == "  step      fastest torch_manual 20.0 us"  # one variant: nothing to be slower than it
    assert lines[3] == "trust: all 4 benchmarks were timed on a calm machine"  # the harness's rows are not benchmarks


def test_a_disturbed_benchmark_is_never_ranked_and_the_trust_line_names_it():
    summary = pd.DataFrame([row("numpy_manual", "forward", 100), row("torch_manual", "forward", 40_000, disturbed=True),
                            row("torch_manual", "step", 30, disturbed=True)])
    lines = answer_lines(summary)
    assert lines[1] == "  forward   fastest numpy_manual 100.0 us"  # the 40 ms disturbed median ranks nowhere
    assert lines[2] == "  step      every benchmark disturbed: no ranking"
    assert lines[3].startswith("trust: 2 of 3 benchmarks were timed on a disturbed machine (torch_manual forward, "
                               "torch_manual step)")


def test_several_runs_and_devices_each_get_their_heading_and_markdown_wraps_it():
    summary = pd.DataFrame([row("numpy_manual", "forward", 100, run_id="a"), row("torch_manual", "forward", 50,
                                                                                  device="cuda", run_id="b")])
    lines = answer_lines(summary)
    assert "cpu float32 64x1000x100x10 (run a):" in lines and "cuda float32 64x1000x100x10 (run b):" in lines
    assert answer_markdown(summary).startswith("## The answer\n\n```\n")
    assert answer_lines(pd.DataFrame([row("harness_empty", "overhead", 0.1)])) == []
    assert answer_markdown(pd.DataFrame([row("harness_empty", "overhead", 0.1)])) == ""


@pytest.mark.slow
def test_a_run_ends_with_its_answer_and_hides_pytest_benchmarks_tables(tmp_path):
    import subprocess
    import sys

    from twolayer.provenance import PROJECT_ROOT

    result = subprocess.run([sys.executable, "-m", "twolayer", "run", "--quick", "--no-peak", "--devices", "cpu",
                             "--variants", "numpy_manual,torch_manual", "--out", str(tmp_path)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    tail = result.stdout.strip().splitlines()
    assert tail[-6] == "cpu float32 64x1000x100x10:"
    assert [line.split()[0] for line in tail[-5:-1]] == ["forward", "backward", "step", "iteration"]
    assert tail[-1].startswith("trust: ")
    assert "Legend:" not in result.stdout and "OPS: Operations Per Second" not in result.stdout
    [run_dir] = [path for path in tmp_path.iterdir() if path.is_dir()]  # beside it, the machine's quiet canary
    assert (run_dir / "report.md").read_text().split("\n\n")[1] == "## The answer"
