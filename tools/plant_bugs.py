"""Plant, one at a time, the bugs that the suite once let through, and check that `pytest` fails.

    python tools/plant_bugs.py [NAME ...]

Each plant is applied to a copy of this checkout's files (tracked and untracked, as they are
now), and the copy's full suite runs with `pytest -x`; a first run without any plant must pass.
A plant that leaves the suite green is a hole in the tests: the script then exits 1. Not
collected by `pytest` itself (its name does not start with `test_`): it runs the suite once per
plant, a few minutes in all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Plant:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (path, old text, new text): every occurrence replaced


def plant(name: str, what: str, *edits: tuple[str, str, str]) -> Plant:
    return Plant(name, what, edits)


PLANTS = [
    plant("adam-rate", "module_params' Adam rate 1e-4 -> 1e-3 (registry)",
          ("twolayer/variants/__init__.py", '"float32", 1e-4, "adam", "mean", "xavier_normal"',
           '"float32", 1e-3, "adam", "mean", "xavier_normal"')),
    plant("no-bias", "nn_sequential loses its bias, in the variant and the registry together",
          ("twolayer/variants/nn_sequential.py", "bias=True", "bias=False"),
          ("twolayer/variants/nn_sequential.py", "weights.w1, weights.b1)", "weights.w1)"),
          ("twolayer/variants/nn_sequential.py", "weights.w2, weights.b2)", "weights.w2)"),
          ("twolayer/variants/nn_sequential.py", '            "b1": to_numpy64(first.bias.grad),\n', ""),
          ("twolayer/variants/nn_sequential.py", '            "b2": to_numpy64(second.bias.grad),\n', ""),
          ("twolayer/variants/__init__.py", '"sum", "normal", bias=True)', '"sum", "normal")')),
    plant("sync-in-forward", "variant.loss() (a host sync) inside the timed forward of bench/test_phases.py",
          ("bench/test_phases.py", "    plan = time_call(benchmark, phase_call(variant, case.phase), budget, case.device,\n",
           "    call = phase_call(variant, case.phase)\n"
           "    timed = call.target\n"
           "    if case.phase == 'forward':\n"
           "        call = type(call)(lambda: (timed(), variant.loss()), call.setup)\n"
           "    plan = time_call(benchmark, call, budget, case.device,\n")),
    plant("no-warmup", "pedantic(..., warmup_rounds=0) in twolayer/measure/harness.py, the planned count still recorded",
          ("twolayer/measure/harness.py", "rounds=plan.rounds, warmup_rounds=plan.warmup_rounds)",
           "rounds=plan.rounds, warmup_rounds=0)")),
    plant("faster-ignores-threshold", "compare's `faster` verdict ignores the threshold",
          ("twolayer/analysis/compare.py", "if interval.high < 1 / (1 + threshold):", "if interval.high < 1:")),
    plant("no-canary-after", "canary_after_s no longer recorded",
          ("twolayer/measure/harness.py", '    benchmark.extra_info["canary_after_s"] = canary_seconds()\n',
           "    canary_seconds()\n")),
    plant("flops-ignore-adam-bias", "BenchCase.flops() ignores Adam and bias",
          ("twolayer/cases.py", "return phase_flops(self.problem, self.phase, info.optimizer, info.bias)",
           "return phase_flops(self.problem, self.phase)")),
    plant("first-probe-counted", "timing.plan_rounds stops ignoring the first probe call",
          ("twolayer/measure/timing.py", "per_round = max(min(samples[1:]), 1e-9)", "per_round = max(min(samples), 1e-9)")),
    plant("device-time-without-lead", "device time no longer queues the spinning lead before the start event",
          ("twolayer/measure/device_time.py", "        stream.sleep(lead_cycles)\n        start.record()", "        start.record()")),
    plant("backward-sums-stale-gradients", "backward's setup runs a whole iteration again, summing into the last "
          "timed backward's gradients",
          ("twolayer/measure/phases.py", "        if timed_backward_before:\n            variant.step()\n        else:\n"
           "            whole_iteration()\n", "        whole_iteration()\n")),
    plant("history-in-file-order", "history orders commits as the files came, not by commit time",
          ("twolayer/analysis/history.py", '.drop_duplicates("commit").sort_values(["commit_time", "commit"])',
           '.drop_duplicates("commit")')),
    plant("new-cpu-blamed-on-code", "a step where the cpu changed is labelled code (or versions), not hardware",
          ("twolayer/analysis/history.py", '"hardware" if differs(HARDWARE) else "versions"', '"versions"')),
    plant("alloc-without-priming", "the count's memory recording starts at the first counted call, whose frees of what "
          "the uncounted calls left the profiler then cannot see",
          ("twolayer/count/worker.py", "for index in range(-1, calls):  # call -1", "for index in range(0, calls):  # call -1")),
    plant("cuda-callgrind-failure-fatal", "cuda's instructions failing under Valgrind fails the whole count",
          ("twolayer/count/driver.py", '        if device == "cpu":\n            raise\n', "        raise\n")),
    # Found by a mutation review (2026-11-30): twelve plausible bugs the suite let through, each now caught.
    plant("adam-betas", "module_linear's Adam with betas (0.9, 0.99) instead of the default (0.9, 0.999)",
          ("twolayer/variants/module_linear.py", "Adam(self.model.parameters(), lr=problem.learning_rate)",
           "Adam(self.model.parameters(), lr=problem.learning_rate, betas=(0.9, 0.99))")),
    plant("zero-grad-in-forward", "module_params zeroes its gradients at the start of forward, not at the end of step",
          ("twolayer/variants/module_params.py", "    def forward(self) -> None:\n",
           "    def forward(self) -> None:\n        self.optimizer.zero_grad()\n"),
          ("twolayer/variants/module_params.py", "        self.optimizer.step()\n        self.optimizer.zero_grad()\n",
           "        self.optimizer.step()\n")),
    plant("backward-work-in-forward", "numpy_manual's forward computes backward's 2 * (y_pred - y)",
          ("twolayer/variants/numpy_manual.py", "        self._loss = np.square(self.y_pred - self.y).sum()\n",
           "        self._loss = np.square(self.y_pred - self.y).sum()\n"
           "        self.grad_y_pred = 2.0 * (self.y_pred - self.y)\n"),
          ("twolayer/variants/numpy_manual.py", "        grad_y_pred = 2.0 * (self.y_pred - self.y)\n",
           "        grad_y_pred = self.grad_y_pred\n")),
    plant("compiled-first-call-forever", "torch_compile's calls all take the first-call path (a sync, the cost overwritten)",
          ("twolayer/variants/torch_compile.py",
           "        self.call = self.compiled  # later calls go straight to the compiled code\n", "")),
    plant("pooled-disturbed-all", "a --repeat row is disturbed only if every pass was",
          ("twolayer/results/table.py", 'first["disturbed"] = bool(group["disturbed"].any())',
           'first["disturbed"] = bool(group["disturbed"].all())')),
    plant("pooled-iqr-stale", "a --repeat row keeps its first pass's iqr_fraction (and noisy)",
          ("twolayer/results/table.py",
           '            first["iqr_fraction"] = first["iqr_s"] / first["median_s"] if first["median_s"] > 0 else np.nan\n',
           "")),
    plant("pooled-stddev-population", "a --repeat row's stddev without Bessel's correction",
          ("twolayer/results/table.py", '"stddev_s": float(raw.std(ddof=1))', '"stddev_s": float(raw.std())')),
    plant("dirty-commit-unmarked", "a run from uncommitted changes is labelled with its commit alone",
          ("twolayer/results/table.py", ' + ("-dirty" if commit.get("dirty") else "")', "")),
    plant("unchanged-bound-asymmetric", "compare's `unchanged` lower bound 1 - threshold, not 1 / (1 + threshold)",
          ("twolayer/analysis/compare.py", "if interval.low >= 1 / (1 + threshold) and", "if interval.low >= 1 - threshold and")),
    plant("blas-not-compared", "compare does not warn when the two sides' numpy BLAS differ",
          ("twolayer/analysis/compare.py", '"torch_blas", "numpy_blas",', '"torch_blas",')),
    plant("numpy-threads-from-torch", "numpy_threads recorded from torch's thread count",
          ("twolayer/measure/harness.py", '"numpy_threads": numpy_threads(),', '"numpy_threads": torch.get_num_threads(),')),
    plant("numpy-setup-bytes-counted", "numpy's alloc_bytes start before the phase's setup",
          ("twolayer/count/worker.py",
           "            if call.setup is not None:\n                call.setup()\n"
           "            start, _ = tracemalloc.get_traced_memory()\n            tracemalloc.reset_peak()\n",
           "            start, _ = tracemalloc.get_traced_memory()\n            tracemalloc.reset_peak()\n"
           "            if call.setup is not None:\n                call.setup()\n")),
    plant("machine-speed-unchecked", "compare ignores that the machine ran slower in one side's runs",
          ("twolayer/analysis/compare.py", "    speed = speed or machine_speed(base, new)\n", "    speed = None\n")),
    plant("machine-speed-either-way", "compare distrusts every verdict where the machine's speed changed",
          ("twolayer/analysis/compare.py", "        return verdict(without, threshold) != verdict(interval, threshold)",
           "        return True")),
    plant("history-pools-disturbed", "history pools a commit's disturbed runs with its calm ones",
          ("twolayer/analysis/history.py", "    calm = positions[~columns[\"disturbed\"][positions]]", "    calm = positions")),
    plant("history-machine-blamed-on-code", "a step where the machine ran slower is labelled code",
          ("twolayer/analysis/history.py", '"machine" if machine else "code"', '"code"')),
    plant("gate-times-setup", "the gate worker starts its clock before the setup",
          ("twolayer/gate/worker.py",
           "            if call.setup is not None:\n                call.setup()\n            start = self.clock()\n",
           "            start = self.clock()\n            if call.setup is not None:\n                call.setup()\n")),
    plant("gate-always-abba", "every instance of the gate starts with the base",
          ("twolayer/gate/driver.py", "if (count + instance) % 2 == 0 else", "if count % 2 == 0 else")),
    plant("gate-interval-90", "the gate's interval over processes is the central 90%",
          ("twolayer/gate/pairs.py", "            tail = (1 - CONFIDENCE) / 2 * 100", "            tail = (1 - CONFIDENCE) * 100")),
    plant("counters-joined-across-runs", "counts joined to timings without the run id",
          ("twolayer/results/table.py", '    keys = ["run_id", *COUNTER_KEY]', "    keys = list(COUNTER_KEY)")),
    plant("instructions-per-dump", "instructions not divided by the counted calls",
          ("twolayer/count/driver.py", 'per_call[name] = callgrind_totals(path) / result["calls"]',
           "per_call[name] = callgrind_totals(path)")),
    plant("cuda-count-waits", "on cuda the counted window holds the final synchronisation",
          ("twolayer/count/worker.py", 'counted = (call.work or call.target) if case.device == "cuda" else call.target',
           "counted = call.target")),
    plant("weak-scaling-summed", "weak-scaling ddp steps with the ranks' summed gradients",
          ("twolayer/variants/ddp.py", 'self.loss_scale = float(self.world_size) if scaling == "strong" else 1.0',
           "self.loss_scale = float(self.world_size)")),
    plant("co-tenant-threads-ignored", "a benchmark that shared its cores with a co-tenant is not disturbed",
          ("twolayer/disturbance.py", "    return bool(others and cores and threads and others + threads > cores)",
           "    return False")),
    plant("retime-interrupt-loses-run", "Ctrl-C while retiming throws the whole run away",
          ("twolayer/run/driver.py",
           "        except (RunInterrupted, KeyboardInterrupt):  # every benchmark had been timed once: all kept\n"
           "            raise keep_result(", "        except ZeroDivisionError:\n            raise keep_result(")),
    plant("history-charts-merge-world-sizes", "the history's charts put a ddp variant's world sizes on one line",
          ("twolayer/report/history.py", "    table, changes = labelled(history.table), labelled(history.changes)",
           "    table, changes = history.table, history.changes")),
]


def copy_checkout(destination: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


class StalePlant(Exception):
    """The code a plant edits has changed: the plant must be updated, it proves nothing as it is."""


def apply(tree: Path, path: str, old: str, new: str) -> None:
    target = tree / path
    text = target.read_text(encoding="utf-8")
    if old not in text:
        raise StalePlant(f"{path} no longer holds {old!r}: update the plant")
    target.write_text(text.replace(old, new), encoding="utf-8")


def run_plant(plant: Plant, tests: tuple[str, ...] = ()) -> tuple[bool, float, str]:
    with tempfile.TemporaryDirectory(prefix=f"plant-{plant.name}-") as temporary:
        tree = Path(temporary)
        copy_checkout(tree)
        for edit in plant.edits:
            apply(tree, *edit)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        module = subprocess.run([sys.executable, "-c", "import twolayer; print(twolayer.__file__)"], cwd=tree, env=env,
                                capture_output=True, text=True, check=True).stdout.strip()
        if not Path(module).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"plant_bugs: the copy imports {module}, not its own twolayer")
        start = time.perf_counter()
        suite = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=tree, env=env,
                               capture_output=True, text=True)
        failed = [line for line in suite.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        return suite.returncode != 0, time.perf_counter() - start, (failed[0] if failed else suite.stdout[-300:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"plants to run (default: all of {', '.join(p.name for p in PLANTS)})")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the first run, without any plant, that must pass (or a red suite would read as caught)")
    parser.add_argument("--tests", default="",
                        help="comma-separated test files or ids to run instead of the whole suite (a quicker check)")
    args = parser.parse_args()
    tests = tuple(filter(None, args.tests.split(",")))
    names = args.names
    if not args.no_baseline:
        failed, seconds, first = run_plant(Plant("baseline", "no plant", ()), tests)
        print(f"{'RED' if failed else 'green'}  {'baseline':<26} {seconds:6.1f} s  the copy as it is", flush=True)
        if failed:
            print(f"plant_bugs: the suite fails without any plant ({first}): nothing to learn from the plants",
                  file=sys.stderr)
            return 2
    unknown = set(names) - {p.name for p in PLANTS}
    if unknown:
        print(f"plant_bugs: unknown plant {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    missed = stale_plants = 0
    for plant in PLANTS:
        if names and plant.name not in names:
            continue
        try:
            caught, seconds, first = run_plant(plant, tests)
        except StalePlant as stale:
            stale_plants += 1
            print(f"STALE   {plant.name:<26} {'':>8}  {plant.what}\n        {stale}", flush=True)
            continue
        missed += not caught
        print(f"{'caught' if caught else 'MISSED'}  {plant.name:<26} {seconds:6.1f} s  {plant.what}\n        {first}",
              flush=True)
    return 1 if missed or stale_plants else 0


if __name__ == "__main__":
    sys.exit(main())
