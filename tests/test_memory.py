"""A size whose tensors cannot fit is refused before anything runs: by `twolayer run` and `pytest bench` alike."""

import subprocess
import sys
from pathlib import Path

import pytest
from one_line import assert_one_line

from twolayer import cases
from twolayer.cli import main
from twolayer.memory import MARGIN, Available, available_memory, estimate_bytes
from twolayer.problem import Problem
from twolayer.provenance import PROJECT_ROOT

IMPOSSIBLE = "100000x100000x100000x10"


@pytest.fixture
def eight_gib(monkeypatch):
    """A machine with 8 GiB free, whatever this one has (and on a system without /proc/meminfo too)."""
    monkeypatch.setattr(cases, "available_memory", lambda device: Available(8 * 2**30, "a test"))


def test_the_estimate_counts_every_tensor_a_variant_holds():
    n, d_in, hidden, d_out = 64, 1000, 100, 10
    problem = Problem(n=n, d_in=d_in, hidden=hidden, d_out=d_out, dtype="float32")
    weights = d_in * hidden + hidden * d_out
    held = (n * d_in + n * d_out + weights  # x, y, W1, W2
            + 2 * n * hidden + n * d_out  # h, h_relu, y_pred
            + n * d_out + 2 * n * hidden + weights)  # their gradients and the weights'
    assert estimate_bytes(problem, "sgd") == int(MARGIN * 4 * (held + weights))
    assert estimate_bytes(problem, "adam") == int(MARGIN * 4 * (held + 2 * weights))
    assert estimate_bytes(Problem(n=n, d_in=d_in, hidden=hidden, d_out=d_out, dtype="float64"), "sgd") == int(
        MARGIN * 8 * (held + weights))


def test_an_impossible_size_is_refused_with_the_estimate_and_what_is_available(eight_gib):
    with pytest.raises(ValueError, match=r"size 100000x100000x100000x10 needs about [0-9.]+ GiB on cpu "
                                         r"\(module_params, float32\), but 8.0 GiB is available \(a test\)"):
        cases.plan_cases(sizes=IMPOSSIBLE, devices="cpu")


def test_sizes_that_fit_pass(eight_gib):
    assert cases.plan_cases(sizes="64x1000x100x10,4096x1000x1000x10", devices="cpu")


def test_run_refuses_it_in_one_line_and_writes_nothing(capsys, tmp_path, eight_gib):
    out = tmp_path / "results"
    code = main(["run", "--sizes", f"64x1000x100x10,{IMPOSSIBLE}", "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2
    assert_one_line(err, "needs about")
    assert "8.0 GiB is available" in err
    assert not out.exists()  # no peak cache, no run directory


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="no /proc/meminfo to read here")
def test_the_cpus_available_memory_is_memavailable():
    available = available_memory("cpu")
    assert available is not None and available.bytes > 0 and "MemAvailable" in available.source


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="without MemAvailable nothing is refused")
def test_pytest_bench_refuses_the_same_way():
    result = subprocess.run([sys.executable, "-m", "pytest", "bench", "--benchmark-enable", "--tl-devices=cpu",
                             f"--tl-sizes={IMPOSSIBLE}", "-p", "no:randomly"],
                            capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 4  # pytest's usage error: nothing ran
    assert "size 100000x100000x100000x10 needs about" in result.stderr and "is available" in result.stderr
