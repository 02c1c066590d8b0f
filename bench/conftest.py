"""pytest-benchmark fixtures for the twolayer suite: options, parametrisation, provenance.

`pytest` runs every benchmark body once (the project's addopts disable timing); `twolayer run`,
or `pytest bench --benchmark-enable`, times them.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from twolayer import SUITE_VERSION
from twolayer.cases import plan_cases
from twolayer.devices import device_absent_reason
from twolayer.measure.timing import QUICK, Budget
from twolayer.provenance import machine_facts, set_threads
from twolayer.variants.ddp import (
    DEFAULT_COLLECTIVE_TIMEOUT_S,
    join_from_environment,
    leave_world_of_one,
    rank_threads,
    rank_zeros,
)

SETTINGS = pytest.StashKey[dict]()
# The harness's own rows per device (bench/test_overhead.py): cuda adds the launch floor's two.
OVERHEAD_ROWS = {"cpu": ("harness_empty", "harness_sync"),
                 "cuda": ("harness_empty", "harness_sync", "harness_launch", "harness_graph")}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("twolayer", "twolayer benchmark selection")
    group.addoption("--tl-variants", default=None, help="comma-separated variants (default: all)")
    group.addoption("--tl-devices", default=None, help="comma-separated devices (default: every one present)")
    group.addoption("--tl-phases", default=None, help="comma-separated phases: forward,backward,step,iteration")
    group.addoption("--tl-dtypes", default=None, help="float32, float64 or tutorial (default: float32)")
    group.addoption("--tl-sizes", default=None, help="comma-separated NxD_INxHxD_OUT (default: 64x1000x100x10)")
    group.addoption("--tl-threads", type=int, default=None, help="torch and BLAS threads (recorded either way)")
    group.addoption("--tl-budget-s", type=float, default=None, help="seconds of timing per benchmark")
    group.addoption("--tl-quick", action="store_true", help="a short run: few rounds per benchmark")
    group.addoption("--tl-run-id", default=None, help="recorded in the JSON; set by `twolayer run`")
    group.addoption("--tl-peak-file", default=None, help="matmul peaks to record with the run; set by `twolayer run`")
    group.addoption("--tl-repeat", type=int, default=1,
                    help="passes over the selection, each in its own shuffled order (default: 1, in order)")
    group.addoption("--tl-shuffle-seed", type=int, default=None, help="seed of the passes' order (default: random)")
    group.addoption("--tl-quiet-canary-s", type=float, default=None,
                    help="this machine's known quiet canary, recorded with the run; set by `twolayer run`")
    group.addoption("--tl-scaling", default=None, help="ddp: strong (N rows split across ranks, default) or weak")
    group.addoption("--tl-collective-timeout-s", type=float, default=DEFAULT_COLLECTIVE_TIMEOUT_S,
                    help="ddp: seconds a collective waits for a rank that died or hung before the run fails")


def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    try:
        cases = plan_cases(option.tl_variants, option.tl_devices, option.tl_phases, option.tl_dtypes,
                           option.tl_sizes, quick=option.tl_quick, scaling=option.tl_scaling)
        budget = QUICK if option.tl_quick else Budget()
        if option.tl_budget_s is not None:
            budget = replace(budget, seconds=option.tl_budget_s)
        if option.tl_threads is not None and option.tl_threads < 1:
            raise ValueError(f"--tl-threads must be a positive integer, got {option.tl_threads}")
        if option.tl_repeat < 1:
            raise ValueError(f"--tl-repeat must be a positive integer, got {option.tl_repeat}")
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    distributed = [case for case in cases if case.scaling and case.skip_reason is None]
    if distributed and distributed[0].world_size > 1:  # launched by torchrun: join its job before any case runs
        joined(join_from_environment, {case.device for case in distributed}, option.tl_collective_timeout_s)
        if option.tl_threads is None:
            option.tl_threads = rank_threads()  # the cores shared among this machine's ranks
    if option.tl_threads is not None:
        set_threads(option.tl_threads)
    seed = option.tl_shuffle_seed if option.tl_shuffle_seed is not None else random.SystemRandom().randrange(2**31)
    if distributed and distributed[0].world_size > 1:
        seed = joined(rank_zeros, seed)  # every rank runs the benchmarks in one order, so that their collectives meet
    config.stash[SETTINGS] = {"cases": cases, "budget": budget, "run_id": option.tl_run_id,
                              "repeat": option.tl_repeat, "shuffle_seed": seed if option.tl_repeat > 1 else None}


def joined(collective, *args):
    """A collective of the ranks' start: a peer that never came, or hung, fails this rank with one
    line (a distributed error is a RuntimeError), and leaves it for the launcher's report."""
    try:
        return collective(*args)
    except RuntimeError as error:
        from twolayer.run.rank_pytest import JOINING, record_failure

        lines = str(error).strip().splitlines()
        message = f"{JOINING}{lines[0] if lines else type(error).__name__}"
        record_failure(message)
        raise pytest.UsageError(message) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    """A ddp world of one made in this process is taken down while nothing holds it (a launched
    rank's group is left by `twolayer.run.rank_pytest`)."""
    leave_world_of_one()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = metafunc.config.stash[SETTINGS]
    if "case" in metafunc.fixturenames:
        params = [
            pytest.param(case, id=case.id, marks=pytest.mark.skip(reason=case.skip_reason) if case.skip_reason else ())
            for case in settings["cases"]
        ]
        metafunc.parametrize("case", params)
    if "overhead_device" in metafunc.fixturenames:
        devices = sorted({case.device: device_absent_reason(case.device) for case in settings["cases"]}.items())
        params = [
            pytest.param(device, what, id=f"{device}-{what}", marks=pytest.mark.skip(reason=reason) if reason else ())
            for device, reason in devices for what in OVERHEAD_ROWS.get(device, OVERHEAD_ROWS["cpu"])
        ]
        metafunc.parametrize(("overhead_device", "what"), params)
    if "pass_index" in metafunc.fixturenames and settings["repeat"] > 1:
        metafunc.parametrize("pass_index", range(1, settings["repeat"] + 1), ids=lambda k: f"pass{k}")


@pytest.fixture
def pass_index() -> int:
    """0 in a single pass; 1..K with `--tl-repeat K` (parametrized then)."""
    return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With several passes, run pass 1 whole, then pass 2, ..., each in its own shuffled order,
    so that a slow moment of the machine does not land on the same benchmarks every time."""
    settings = config.stash[SETTINGS]
    if settings["repeat"] < 2:
        return
    rng = random.Random(settings["shuffle_seed"])
    by_pass: dict[int, list[pytest.Item]] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        by_pass.setdefault(callspec.params.get("pass_index", 0) if callspec else 0, []).append(item)
    ordered = []
    for index in sorted(by_pass):
        chunk = by_pass[index]
        rng.shuffle(chunk)
        ordered.extend(chunk)
    items[:] = ordered


@pytest.fixture
def budget(request: pytest.FixtureRequest) -> Budget:
    return request.config.stash[SETTINGS]["budget"]


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info.update(machine_facts())
    if config.option.tl_peak_file:
        machine_info["peak"] = json.loads(Path(config.option.tl_peak_file).read_text(encoding="utf-8"))


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    settings = config.stash[SETTINGS]
    budget = settings["budget"]
    for bench in output_json["benchmarks"]:
        raw = bench["stats"].get("data")
        if raw:  # the clock ticks in nanoseconds: more digits are noise that only bloats the file
            bench["stats"]["data"] = [round(seconds, 9) for seconds in raw]
    output_json["twolayer"] = {
        "suite_version": SUITE_VERSION,
        "run_id": settings["run_id"],
        "budget_s": budget.seconds,
        "min_rounds": budget.min_rounds,
        "max_rounds": budget.max_rounds,
        "repeat": settings["repeat"],
        "shuffle_seed": settings["shuffle_seed"],
        "quiet_canary_s": config.option.tl_quiet_canary_s,
    }
