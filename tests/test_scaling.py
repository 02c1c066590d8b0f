"""Size sweeps, the learning-rate scaling that keeps them finite, the measured peak, and % of peak."""

import json
from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import bench, constant, write_run

from twolayer import problem as problem_module
from twolayer.cases import SWEEP_SIZES
from twolayer.cli import main
from twolayer.cli import run as cli  # `twolayer run`: the module whose run_suite is replaced
from twolayer.hardware import hardware_identity
from twolayer.measure import peak as peak_module
from twolayer.measure.canary import MachineState
from twolayer.measure.peak import Peak, cached_peaks
from twolayer.problem import Problem, initial_curvature, parse_size, sgd_rate_scale
from twolayer.report.page import build_report
from twolayer.results.table import load_runs
from twolayer.run.options import RunFailed
from twolayer.train import train
from twolayer.variants import VARIANTS, build, resolve, variant_device_reason


def test_sgd_rate_scales_with_the_problem_and_adam_does_not():
    assert sgd_rate_scale(Problem()) == 1.0
    assert sgd_rate_scale(Problem(seed=5)) == 1.0  # a size has one rate, whatever the seed
    assert sgd_rate_scale(Problem(n=32)) > 1.0 > sgd_rate_scale(Problem(n=128))
    # the curvature grows about as N * D_in * H (the rank-one part of relu(x W1)), halved beyond the tutorial
    assert 1 <= sgd_rate_scale(Problem(n=4096, hidden=1000)) / (64 * 100 / (4096 * 1000) / 2) < 1.5
    big = Problem(n=1024, hidden=1000)
    assert resolve("torch_manual", big).learning_rate == pytest.approx(1e-6 * sgd_rate_scale(big))
    assert resolve("module_linear", big).learning_rate == 1e-4
    assert resolve("torch_manual", Problem(learning_rate=0.5)).learning_rate == 0.5  # an explicit rate wins


# Sizes where the rate scaled with N * D_in * H alone made the loss infinite within ten iterations
# (118 of 360 sizes of a grid of N 1-256, D_in 2-1000, H 1-400, D_out 1-10 did), and corners of that grid.
SMALL_SIZES = ["8x12x6x3", "4x2x1x3", "8x2x400x10", "16x2x1x1", "16x50x1x10", "64x2x1x1", "4x50x20x10",
               "8x50x6x1", "1x2x1x1", "1x1000x400x10", "256x2x400x1", "256x1000x1x10", "8x16x8x2", "15x50x20x5"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["numpy_manual", "torch_manual"])
def test_sgd_trains_finite_at_small_and_odd_sizes(name):
    for size in SMALL_SIZES:
        n, d_in, hidden, d_out = parse_size(size)
        train(build(name, Problem(n=n, d_in=d_in, hidden=hidden, d_out=d_out)), 1000, every=10**6,
              log=lambda *_: None)  # raises at the first non-finite loss


def test_the_curvature_beyond_the_arrays_limit_is_the_large_size_formula(monkeypatch):
    size = parse_size(SWEEP_SIZES[-1])  # beyond the limit: raised for the arrays' figure, then lowered
    initial_curvature.cache_clear()
    monkeypatch.setattr(problem_module, "CURVATURE_ELEMENTS_LIMIT", 1 << 40)
    try:
        from_arrays = initial_curvature(*size)
        initial_curvature.cache_clear()
        monkeypatch.setattr(problem_module, "CURVATURE_ELEMENTS_LIMIT", 0)
        assert initial_curvature(*size) == pytest.approx(from_arrays, rel=0.015)
        assert initial_curvature(100_000, 100_000, 100_000, 10) > 0  # no arrays: nothing allocated
    finally:
        initial_curvature.cache_clear()


@pytest.mark.parametrize("name", [n for n, info in VARIANTS.items() if "cpu" in info.devices])
def test_every_cpu_variant_trains_finite_and_falls_at_a_sweep_size(name):
    reason = variant_device_reason(name, "cpu")
    if reason is not None:
        pytest.skip(reason)
    n, d_in, hidden, d_out = parse_size(SWEEP_SIZES[1])
    variant = build(name, Problem(n=n, d_in=d_in, hidden=hidden, d_out=d_out, seed=1))
    logged = {}
    final = train(variant, 30, every=10, log=logged.__setitem__)  # raises on a non-finite loss
    assert final < logged[0]


@pytest.mark.slow
def test_the_largest_sweep_size_trains_finite_and_falls():
    n, d_in, hidden, d_out = parse_size(SWEEP_SIZES[-1])
    logged = {}
    train(build("torch_manual", Problem(n=n, d_in=d_in, hidden=hidden, d_out=d_out)), 6, every=1,
          log=logged.__setitem__)
    losses = list(logged.values())
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))


def fake_peak(device, dtype, **changes):
    fields = dict(device=device, device_name="Test", dtype=dtype, square_n=64, square_gflops=100.0,
                  problem_gflops=50.0, square_gflops_by_library={"torch": 100.0}, torch_threads=2,
                  numpy_threads=2, torch_version="0", numpy_version="0", jax_version=None, hardware="cpu test")
    return Peak(**{**fields, **changes})


QUIET = MachineState(canary_s=100e-6, quiet_s=100e-6, load_avg_1m=0.1, others_running=0)
BUSY = MachineState(canary_s=400e-6, quiet_s=100e-6, load_avg_1m=2.0, others_running=2)


@pytest.fixture
def scripted_peaks(monkeypatch):
    """`measure_peak` replaced by a fake on the current setup; returns the list of what was measured."""
    measured = []

    def measure(device, dtype):
        measured.append((device, dtype))
        return fake_peak(device, dtype, torch_version=peak_module.torch.__version__,
                         numpy_version=peak_module.np.__version__, jax_version=peak_module.jax_version(),
                         torch_threads=peak_module.torch.get_num_threads(), numpy_threads=peak_module.numpy_threads(),
                         hardware=hardware_identity()["hardware"])

    monkeypatch.setattr(peak_module, "measure_peak", measure)
    return measured


def test_peak_cache_is_reused_until_the_setup_changes(tmp_path, scripted_peaks):
    measured = scripted_peaks
    first = cached_peaks(tmp_path, ["cpu"], ["float32"], state=lambda _: QUIET)
    assert measured == [("cpu", "float32")] and first["cpu/float32"].square_gflops == 100.0
    cached_peaks(tmp_path, ["cpu"], ["float32", "float64"], state=lambda _: QUIET)
    assert measured == [("cpu", "float32"), ("cpu", "float64")]  # only the missing dtype
    cached_peaks(tmp_path, ["cpu"], ["float32"], refresh=True, state=lambda _: QUIET)
    assert len(measured) == 3
    stored = json.loads(next(tmp_path.glob("peak-*.json")).read_text())
    stored["cpu/float32"]["torch_version"] = "0.0-other"
    next(tmp_path.glob("peak-*.json")).write_text(json.dumps(stored))
    cached_peaks(tmp_path, ["cpu"], ["float32"], state=lambda _: QUIET)
    assert len(measured) == 4  # another torch: measured again


def test_a_hardware_change_under_the_same_host_name_measures_the_peak_again(tmp_path, scripted_peaks):
    cached_peaks(tmp_path, ["cpu"], ["float32"], state=lambda _: QUIET)
    path = next(tmp_path.glob("peak-*.json"))
    stored = json.loads(path.read_text())
    stored["cpu/float32"]["hardware"] = "cpu AuthenticAMD/26/2/0 avx512f"  # the Zen 5 this host once was
    path.write_text(json.dumps(stored))
    cached_peaks(tmp_path, ["cpu"], ["float32"], state=lambda _: QUIET)
    assert len(scripted_peaks) == 2
    assert json.loads(path.read_text())["cpu/float32"]["hardware"] == hardware_identity()["hardware"]


def test_a_peak_measured_on_a_busy_machine_is_flagged_and_never_cached(tmp_path, scripted_peaks):
    cached_peaks(tmp_path, ["cpu"], ["float32"], state=lambda _: QUIET)
    path = next(tmp_path.glob("peak-*.json"))
    before = path.read_bytes()
    states = iter([QUIET, BUSY])  # quiet before, busy after: a burst during the measurement
    busy = cached_peaks(tmp_path, ["cpu"], ["float32", "float64"], state=lambda _: next(states))
    assert busy["cpu/float64"].disturbed and "after: canary 400 us, 4.00x" in busy["cpu/float64"].state
    assert not busy["cpu/float32"].disturbed  # from the cache, measured quietly
    assert path.read_bytes() == before  # the cache is left as it was
    fresh_dir = tmp_path / "fresh"
    cached_peaks(fresh_dir, ["cpu"], ["float32"], state=lambda _: BUSY)
    assert not list(fresh_dir.glob("peak-*.json"))  # nothing cached from a busy machine


def test_percent_of_peak_is_left_out_when_the_peak_was_disturbed(tmp_path):
    path = runs_with_peak(tmp_path)
    run = json.loads(path.read_text())
    run["machine_info"]["peak"]["cpu/float32"]["disturbed"] = True
    path.write_text(json.dumps(run))
    table = load_runs([path])
    assert table["pct_of_peak"].isna().all() and table["floor_s"].isna().all()


def test_measured_peak_is_positive_and_names_its_libraries():
    peak = peak_module.measure_peak("cpu", "float32", Problem(n=8, d_in=16, hidden=8), min_seconds=0.01)
    assert peak.square_gflops == max(peak.square_gflops_by_library.values()) > 0
    assert {"torch", "numpy"} <= set(peak.square_gflops_by_library)


def runs_with_peak(tmp_path):
    small, large = "64x1000x100x10", "4096x1000x1000x10"
    path = write_run(tmp_path / "sweep.json", [
        bench("numpy_manual", "iteration", constant(200e-6), size=small, flops=26_000_000),
        bench("torch_manual", "iteration", constant(100e-6), size=small, flops=26_000_000),
        bench("numpy_manual", "iteration", constant(0.2), size=large, flops=24_000_000_000),
        bench("torch_manual", "iteration", constant(0.15), size=large, flops=24_000_000_000),
    ])
    run = json.loads(path.read_text())
    run["machine_info"]["peak"] = {"cpu/float32": {"square_gflops": 200.0}}
    path.write_text(json.dumps(run))
    return path


def test_percent_of_peak_and_floor(tmp_path):
    table = load_runs([runs_with_peak(tmp_path)])
    row = table[(table["variant"] == "torch_manual") & (table["size"] == "4096x1000x1000x10")].iloc[0]
    assert row["gflops"] == pytest.approx(160.0)
    assert row["peak_gflops"] == 200.0
    assert row["pct_of_peak"] == pytest.approx(80.0)
    assert row["floor_s"] == pytest.approx(0.12)


def test_report_shows_distance_from_peak_and_a_scaling_chart(tmp_path):
    report = build_report(load_runs([runs_with_peak(tmp_path)]))
    text = report.markdown()
    assert "## Distance from the measured peak" in text
    assert "torch_manual reaches 80%" in text
    assert "scaling.png" in report.charts and "iteration.png" in report.charts
    comparison = report.comparison
    assert list(comparison["size"].unique()) == ["64x1000x100x10", "4096x1000x1000x10"]  # by work, not text
    assert {"gflops", "pct_of_peak", "floor_s"} <= set(comparison.columns)


def test_runs_without_a_peak_leave_the_columns_empty(tmp_path):
    path = write_run(tmp_path / "run.json", [bench("torch_manual", "forward", constant(1e-4))])
    row = load_runs([path]).iloc[0]
    assert pd.isna(row["peak_gflops"]) and pd.isna(row["pct_of_peak"]) and pd.isna(row["floor_s"])


def test_sweep_option_selects_the_grid_and_the_iteration(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_run(options):
        seen["options"] = options
        raise RunFailed("stopped before running anything")

    monkeypatch.setattr(cli, "run_suite", fake_run)
    assert main(["run", "--sweep", "--out", str(tmp_path)]) == 1
    assert seen["options"].sizes == ",".join(SWEEP_SIZES) and seen["options"].phases == "iteration"
    main(["run", "--sweep", "--phases", "forward", "--sizes", "8x8x8x8", "--out", str(tmp_path)])
    assert seen["options"].sizes == "8x8x8x8" and seen["options"].phases == "forward"
    capsys.readouterr()


def test_peak_command_refuses_an_absent_device(capsys):
    if peak_module.torch.cuda.is_available():
        pytest.skip("cuda is present here")
    assert main(["peak", "--devices", "cuda"]) == 2
    assert "cuda is not available" in capsys.readouterr().err


@pytest.mark.parametrize("busy", [False, True])
def test_the_peak_command_names_its_cache_only_when_it_wrote_it(tmp_path, capsys, monkeypatch, scripted_peaks, busy):
    monkeypatch.setattr(peak_module, "machine_state", lambda _: BUSY if busy else QUIET)
    assert main(["peak", "--devices", "cpu", "--dtypes", "float32", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    named = [line.removeprefix("peak: ") for line in out.splitlines() if line.startswith("peak: ")]
    if busy:
        assert named == [] and not list(tmp_path.glob("peak-*.json")) and "were not cached" in err
    else:
        assert len(named) == 1 and Path(named[0]).is_file()
