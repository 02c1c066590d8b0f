"""`twolayer count`: the op and byte counts against hand counts from the code, the callgrind dumps'
parsing, the deterministic verdict, the join with timings, the reports, and every refusal."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from one_line import assert_one_line
from synthetic_runs import DATA

from twolayer.analysis.counters import compare_counters
from twolayer.cases import plan_cases
from twolayer.cli import main
from twolayer.count.callgrind import CountError, callgrind_totals, dumps_in_order
from twolayer.count.driver import INSTALL_VALGRIND, CountOptions, count_instructions, count_rows, count_selection
from twolayer.count.worker import count_ops
from twolayer.devices import device_absent_reason
from twolayer.report.counters import counters_markdown, counters_report_files, framework_overhead
from twolayer.results.counters import counters_frame, read_counters
from twolayer.results.table import load_runs
from twolayer.schema import COUNTERS_FILE, EMPTY

TINY = "8x16x8x2"  # small enough that Valgrind's share of a CI run stays small
HAS_VALGRIND = shutil.which("valgrind") is not None


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ops_of(variant, phases="forward,backward,step,iteration", size="64x1000x100x10", calls=3):
    counted = count_ops({"variants": variant, "devices": "cpu", "phases": phases, "sizes": size, "calls": calls,
                         "warmup": 2})["counts"]
    return {key.split("-")[1]: value for key, value in counted.items()}


@pytest.mark.slow
def test_torch_manual_ops_match_a_count_by_hand_from_its_code():
    counts = ops_of("torch_manual")
    per_phase = {phase: set(value["aten_ops"]) for phase, value in counts.items()}
    # forward: mm, clamp, mm, sub, pow, sum
    assert per_phase["forward"] == {6}
    # step: (mul, sub_) for each weight
    assert per_phase["step"] == {4}
    # backward: sub, mul; t, mm; t, mm; clone; lt; the masked assignment; t, mm
    (backward,) = per_phase["backward"]
    assert 12 <= backward <= 14  # the masked assignment is index_put_ plus the scalar's tensor, by torch version
    assert per_phase["iteration"] == {6 + backward + 4}  # the iteration is exactly its phases
    assert {value["ops_counted_by"] for value in counts.values()} == {"dispatch_mode"}


@pytest.mark.slow
def test_a_compiled_graph_is_counted_by_the_profiler_and_left_working():
    counts = ops_of("torch_compile", phases="forward", calls=2)["forward"]
    # the generated code calls out for its two matmuls; relu, loss and the subtraction are fused
    assert counts["aten_ops"] == [2, 2] and counts["ops_counted_by"] == "profiler"
    assert min(counts["alloc_bytes"]) > 0


def test_bytes_allocated_follow_the_code():
    torch_manual = ops_of("torch_manual", phases="step")["step"]["alloc_bytes"]
    w1_bytes = 1000 * 100 * 4  # `lr * grad_w1` is a temporary the size of w1, in float32
    assert min(torch_manual) >= w1_bytes
    numpy_manual = ops_of("numpy_manual", phases="forward,step")
    assert numpy_manual["step"]["aten_ops"] is None  # not torch: not applicable, never zero
    # by hand, in float32, plus Python's few small objects: step's one temporary is `lr * grad_w1`;
    # forward's new h is made while the last call's is held (then let go, as h_relu's and y_pred's)
    python_objects = 4096  # a few hundred bytes here; far below h's 25,600 that a counted setup would add
    assert all(w1_bytes <= found < w1_bytes + python_objects for found in numpy_manual["step"]["alloc_bytes"])
    h_bytes = 64 * 100 * 4
    assert all(h_bytes <= found < h_bytes + python_objects for found in numpy_manual["forward"]["alloc_bytes"])
    fused = ops_of("numpy_fused", phases="step")["step"]["alloc_bytes"]
    assert max(fused) < 4096  # preallocated buffers and in-place updates: no array allocated


def test_autograd_holds_more_than_the_hand_written_forward():
    manual = ops_of("torch_manual", phases="forward")["forward"]["alloc_bytes"]
    module = min(ops_of("module_linear", phases="forward")["forward"]["alloc_bytes"])
    # each new activation is made while the previous call's is held, then that one is let go:
    # one h (64x100 float32) at a time, the largest
    assert manual == [64 * 100 * 4] * 3
    assert module > manual[0]  # autograd keeps its graph's saved tensors


@pytest.mark.slow
def test_bytes_are_counted_the_same_in_every_process():
    """The profiler reports a free only for a block it saw allocated, and inherits stale sizes at
    reused addresses: the frees of an earlier call's outputs were seen or not by the process's
    history (torch_manual's forward read 25-58 KiB). Counted in fresh processes, the figures agree."""
    import subprocess
    import sys

    script = ("import json; from twolayer.count.worker import count_ops; print(json.dumps(count_ops({'variants': "
              "'torch_manual,numpy_manual', 'devices': 'cpu', 'phases': 'forward,iteration', 'calls': 3, "
              "'warmup': 2})['counts']))")
    seen = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        counts = json.loads(done.stdout.strip().splitlines()[-1])
        seen.append({name: value["alloc_bytes"] for name, value in counts.items()})
    assert seen[0] == seen[1] == seen[2]
    # and call to call, the first counted call too (it frees what the uncounted one before it left);
    # numpy's figure holds Python's small objects too, which its first call may add a few bytes of
    for name, values in seen[0].items():
        assert len(set(values if name.endswith("torch_manual") else values[1:])) == 1, (name, values)


def test_a_call_is_measured_only_inside_its_own_window():
    """Memory events are split among the counted calls by their annotations; the uncounted call
    before them, and what happens between calls (setup), count for none."""
    from twolayer.count.worker import COUNTED, peak_bytes, torch_peak_bytes_per_call

    class Event:
        def __init__(self, name, start, end=None, nbytes=0):
            self._name, self._start, self._end, self._nbytes = name, start, end or start, nbytes

        def name(self):
            return self._name

        def start_ns(self):
            return self._start

        def end_ns(self):
            return self._end

        def nbytes(self):
            return self._nbytes

        def device_type(self):
            from torch._C._autograd import DeviceType

            return DeviceType.CPU

    events = [Event("[memory]", 5, nbytes=999),  # the uncounted call before
              Event(f"{COUNTED}1", 30, 40), Event(f"{COUNTED}0", 10, 20),  # out of order: sorted by index
              Event("[memory]", 12, nbytes=100), Event("[memory]", 14, nbytes=-100), Event("[memory]", 13, nbytes=50),
              Event("[memory]", 25, nbytes=777),  # setup between the calls
              Event("[memory]", 31, nbytes=10), Event("[memory]", 33, nbytes=-10)]
    assert torch_peak_bytes_per_call(events) == [150, 10]
    assert peak_bytes([(2, -5), (1, 8)]) == 8


def write_dump(path, total, word="totals"):
    path.write_text(f"# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\ncmd: python\npart: 1\n"
                    f"events: Ir\nfn=(1) main\n0 {total}\n\n{word}: {total}\n")


def test_callgrind_dumps_are_read_in_the_order_they_were_written(tmp_path):
    for part, total in ((10, 5), (2, 7), (1, 9)):
        write_dump(tmp_path / f"callgrind.out.{part}", total)
    write_dump(tmp_path / "callgrind.out", 0)  # the final dump at exit: nothing collected
    write_dump(tmp_path / "callgrind.out.3", 11, word="summary")  # older Valgrind
    ordered = dumps_in_order(tmp_path, "callgrind.out")
    assert [p.name for p in ordered] == ["callgrind.out.1", "callgrind.out.2", "callgrind.out.3", "callgrind.out.10"]
    assert [callgrind_totals(p) for p in ordered] == [9, 7, 11, 5]
    (tmp_path / "broken").write_text("events: Ir\n")
    with pytest.raises(CountError, match="without a total"):
        callgrind_totals(tmp_path / "broken")


def record_with(rows, **info):
    return {"twolayer": {"kind": "counters", "run_id": "r1", "commit": "abc", "threads": 1, "calls": 10,
                         "valgrind": "valgrind-3.19.0", "machine": {"cpu_model": "Test CPU"}, **info},
            "benchmarks": rows}


def row(variant, phase, instructions, aten_ops=None, alloc_bytes=None, device="cpu"):
    return {"device": device, "variant": variant, "phase": phase, "dtype": "float32", "dtype_mode": "float32",
            "size": "64x1000x100x10", "instructions": instructions, "aten_ops": aten_ops, "alloc_bytes": alloc_bytes}


def test_a_deterministic_verdict_needs_no_interval_but_a_threshold():
    base = counters_frame(record_with([row("torch_manual", "forward", 1_000_000), row("torch_manual", "step", 100_000),
                                       row("numpy_manual", "forward", 500_000), row("module_linear", "step", None)]))
    new = counters_frame(record_with([row("torch_manual", "forward", 1_030_000), row("torch_manual", "step", 100_900),
                                      row("numpy_manual", "forward", 480_000), row("module_linear", "step", 5),
                                      row("nn_sequential", "step", 7)]))
    table = compare_counters(base, new, "instructions", 0.02).set_index(["variant", "phase"])
    assert table.loc[("torch_manual", "forward"), "verdict"] == "slower"  # +3%: the planted extra op
    assert table.loc[("torch_manual", "forward"), "ratio"] == pytest.approx(1.03)
    assert table.loc[("torch_manual", "step"), "verdict"] == "unchanged"  # +0.9%: within the measured spread
    assert table.loc[("numpy_manual", "forward"), "verdict"] == "faster"
    assert table.loc[("module_linear", "step"), "verdict"] == "not_counted"  # never "unchanged" for a missing count
    assert table.loc[("nn_sequential", "step"), "verdict"] == "only_in_new"
    with pytest.raises(ValueError, match="unknown metric"):
        compare_counters(base, new, "seconds", 0.02)


def test_rows_record_what_was_counted_and_leave_the_rest_empty():
    cases = plan_cases("torch_manual,numpy_manual", "cpu", "step")
    instructions = {case.id: 1000.0 + index for index, case in enumerate(cases)}
    instructions[f"{EMPTY}/cpu"] = 300.0
    ops = {cases[0].id: {"aten_ops": [4, 4], "alloc_bytes": [10, 12], "ops_counted_by": "dispatch_mode"}}
    rows = count_rows(cases, instructions, ops)
    first = next(r for r in rows if r["variant"] == cases[0].variant)
    assert first["aten_ops"] == 4 and first["alloc_bytes"] == 11 and first["instructions"] == 1000.0
    other = next(r for r in rows if r["variant"] == cases[1].variant)
    assert other["aten_ops"] is None and other["alloc_bytes"] is None
    assert any(r["variant"] == EMPTY and r["phase"] == "overhead" and r["instructions"] == 300.0 for r in rows)


def test_the_ranking_is_what_each_iteration_adds_over_torch_manual():
    frame = counters_frame(record_with([row("torch_manual", "iteration", 2_000_000),
                                        row("module_linear", "iteration", 3_500_000),
                                        row("numpy_manual", "iteration", 1_500_000)]))
    ranking = framework_overhead(frame)
    assert list(ranking["variant"]) == ["numpy_manual", "torch_manual", "module_linear"]
    assert list(ranking["added"]) == [-500_000, 0, 1_500_000]


def test_counts_join_the_timings_of_their_own_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(DATA / "cpu_run.json", run / "cpu_run.json")
    timed = load_runs([run / "cpu_run.json"])
    assert timed["instructions"].isna().all()  # not counted: empty, never zero
    pick = timed[timed["phase"] != "overhead"].iloc[0]
    (run / COUNTERS_FILE).write_text(json.dumps(record_with(
        [{**row(pick["variant"], pick["phase"], 123_456, aten_ops=6, alloc_bytes=800), "dtype": pick["dtype"],
          "dtype_mode": pick["dtype_mode"], "size": pick["size"]}])))
    table = load_runs([run / "cpu_run.json"])
    joined = table[(table["variant"] == pick["variant"]) & (table["phase"] == pick["phase"])].iloc[0]
    assert joined["instructions"] == 123_456 and joined["aten_ops"] == 6 and joined["alloc_bytes"] == 800
    assert table["instructions"].notna().sum() == 1 and len(table) == len(timed)


def test_a_counters_only_report_and_compare_from_the_cli(tmp_path, capsys):
    for name, forward in (("base", 1_000_000), ("head", 1_040_000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / COUNTERS_FILE).write_text(json.dumps(record_with(
            [row("torch_manual", "forward", forward, 6, 100), row("torch_manual", "iteration", 2_000_000, 22, 900),
             row("module_linear", "iteration", 3_000_000, 40, 2000)])))
    code, out, err = run_cli(capsys, "report", tmp_path / "head" / COUNTERS_FILE)
    assert code == 0, err
    report = (tmp_path / "head" / "report.md").read_text()
    assert "Counters per call" in report and "adds over torch_manual" in report and "module_linear" in report
    assert len(pd.read_csv(tmp_path / "head" / "summary.csv")) == 3
    code, out, err = run_cli(capsys, "compare", tmp_path / "base", tmp_path / "head", "--metric", "instructions")
    assert code == 1, err  # +4% beyond the default 2%
    verdicts = pd.read_csv(tmp_path / "head" / "compare.csv").set_index(["variant", "phase"])["verdict"]
    assert verdicts[("torch_manual", "forward")] == "slower" and verdicts[("module_linear", "iteration")] == "unchanged"
    code, out, err = run_cli(capsys, "compare", tmp_path / "base", tmp_path / "head", "--metric", "instructions",
                             "--threshold", "5")
    assert code == 0, err
    code, out, err = run_cli(capsys, "compare", DATA / "cpu_run.json", tmp_path / "head", "--metric", "aten_ops")
    assert code == 2
    assert_one_line(err, "no counters.json beside it")


def test_not_a_counters_file_is_one_line(tmp_path, capsys):
    (tmp_path / COUNTERS_FILE).write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(ValueError, match="not a `twolayer count` result"):
        read_counters(tmp_path)
    code, out, err = run_cli(capsys, "report", tmp_path / COUNTERS_FILE)
    assert code == 2
    assert_one_line(err, "not a `twolayer count` result")


def test_without_valgrind_count_says_how_to_install_it_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run_cli(capsys, "count", "--variants", "torch_manual", "--out", tmp_path / "results")
    assert code == 2
    assert_one_line(err, "valgrind is not installed")
    assert INSTALL_VALGRIND in err and "apt-get install -y valgrind" in err
    assert not (tmp_path / "results").exists()
    code, out, err = run_cli(capsys, "count", "--metrics", "cycles", "--out", tmp_path / "results")
    assert code == 2
    assert_one_line(err, "unknown metric")


def test_instructions_are_each_dump_over_the_calls_counted(tmp_path, monkeypatch):
    """One dump per benchmark holds all its counted calls: the figure is per call."""
    import twolayer.count.driver as counters

    def fake_callgrind(command, what, log, environment=None, timeout_s=None):
        dumps = Path(next(a for a in command if a.startswith("--callgrind-out-file=")).split("=", 1)[1]).parent
        Path(command[-1]).write_text(json.dumps({"order": [{"id": "case-a", "device": "cpu"},
                                                           {"id": EMPTY, "device": "cpu"}],
                                                 "calls": 4, "threads": 1, "seconds": {}}))
        write_dump(dumps / "callgrind.out.1", 4000)
        write_dump(dumps / "callgrind.out.2", 400)
        write_dump(dumps / "callgrind.out", 0)  # the dump at exit: nothing collected

    monkeypatch.setattr(counters, "run_worker", fake_callgrind)
    per_call, _ = count_instructions(tmp_path / "plan.json", tmp_path, CountOptions())
    assert per_call == {"case-a": 1000, f"{EMPTY}/cpu": 100}


def test_a_counters_report_says_what_was_counted_in_its_units():
    record = record_with([row("torch_manual", "forward", 123_456, aten_ops=6, alloc_bytes=102_400)], calls=10, warmup=2)
    frame = counters_frame(record)
    assert frame["count_calls"].eq(10).all() and frame["counted_threads"].eq(1).all()
    report = counters_report_files(frame, Path("out"))[Path("out/report.md")]
    assert "10 counted calls per benchmark" in report
    header, _, cells = counters_markdown(frame).split("### cpu float32 64x1000x100x10\n\n")[1].splitlines()[:3]
    values = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in cells.split("|")]))
    assert values["forward kinstr"] == "123.5" and values["forward aten_ops"] == "6"
    assert values["forward alloc_kib"] == "100"  # 102,400 bytes are 100 KiB


def test_counts_join_each_run_s_own_timings_when_runs_are_read_together(tmp_path):
    paths = []
    for run_id, instructions in (("run-a", 100), ("run-b", 200)):
        folder = tmp_path / run_id
        folder.mkdir()
        run = json.loads((DATA / "cpu_run.json").read_text())
        run["twolayer"]["run_id"] = run_id
        (folder / "benchmarks.json").write_text(json.dumps(run))
        pick = load_runs([folder / "benchmarks.json"]).query("phase != 'overhead'").iloc[0]
        (folder / COUNTERS_FILE).write_text(json.dumps(record_with(
            [{**row(pick["variant"], pick["phase"], instructions), "dtype": pick["dtype"],
              "dtype_mode": pick["dtype_mode"], "size": pick["size"]}], run_id=run_id)))
        paths.append(folder / "benchmarks.json")
    table = load_runs(paths)
    counted = table.dropna(subset=["instructions"]).set_index("run_id")["instructions"]
    assert counted.to_dict() == {"run-a": 100, "run-b": 200}


@pytest.mark.slow
def test_ops_and_bytes_alone_need_no_valgrind(tmp_path, capsys, monkeypatch):
    import twolayer.count.driver as environment  # where the count reads the machine's facts

    facts = environment.machine_facts()
    monkeypatch.setattr(environment, "machine_facts", lambda: {**facts, "torch_threads": 4, "numpy_threads": 4})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run_cli(capsys, "count", "--variants", "torch_manual,numpy_manual", "--phases", "step",
                             "--sizes", TINY, "--metrics", "aten_ops,alloc_bytes", "--calls", "2",
                             "--out", tmp_path / "results")
    assert code == 0, err
    (run_dir,) = (tmp_path / "results").iterdir()
    table = read_counters(run_dir)
    torch_step = table[table["variant"] == "torch_manual"].iloc[0]
    assert torch_step["aten_ops"] == 4 and pd.isna(torch_step["instructions"])
    assert pd.isna(table[table["variant"] == "numpy_manual"].iloc[0]["aten_ops"])
    assert table["counted_threads"].eq(1).all()
    machine = json.loads((run_dir / COUNTERS_FILE).read_text())["twolayer"]["machine"]
    assert (machine["torch_threads"], machine["numpy_threads"]) == (1, 1)  # what the counts ran with, not the driver
    assert (run_dir / "report.md").is_file() and (run_dir / "summary.csv").is_file()


@pytest.mark.skipif(device_absent_reason("cuda") is None, reason="cuda is present here: its counts are tested below")
def test_counting_cuda_without_a_gpu_is_refused_in_one_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, "count", "--variants", "torch_manual", "--devices", "cuda",
                             "--metrics", "aten_ops", "--out", tmp_path)
    assert code == 2 and "cuda is not available here" in err
    assert_one_line(err)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VALGRIND, reason="valgrind is not installed (apt-get install -y valgrind)")
def test_instructions_under_callgrind_are_per_call_and_see_a_planted_op(tmp_path, capsys):
    """One Valgrind process for the selection: the tiny size's forward and iteration of
    torch_manual, and numpy_fused's step; more work counts more instructions."""
    code, out, err = run_cli(capsys, "count", "--variants", "torch_manual,numpy_fused", "--phases",
                             "forward,step,iteration", "--sizes", TINY, "--calls", "3", "--out", tmp_path)
    assert code == 0, err
    (run_dir,) = tmp_path.iterdir()
    table = read_counters(run_dir).set_index(["variant", "phase"])
    forward = table.loc[("torch_manual", "forward"), "instructions"]
    iteration = table.loc[("torch_manual", "iteration"), "instructions"]
    empty = table.loc[(EMPTY, "overhead"), "instructions"]
    assert 0 < empty < forward < iteration
    assert table.loc[("numpy_fused", "step"), "instructions"] > empty
    assert table.loc[("torch_manual", "forward"), "aten_ops"] == 6
    assert "Counters per call" in (run_dir / "report.md").read_text()
    spent = json.loads((run_dir / COUNTERS_FILE).read_text())["twolayer"]["spent"]  # where the time went
    assert spent["instructions_s"] >= spent["import_s"] > 0 and spent["ops_s"] > 0
    assert f"{EMPTY}/cpu" in spent["benchmarks_s"] and len(spent["benchmarks_s"]) == len(table)  # 6 and the empty call


@pytest.mark.parametrize("flags, capability, march", [
    ("fpu sse2 avx avx2 fma avx512f avx512vl amx_tile", "avx2", "x86-64-v3"),
    ("fpu sse2 avx", "default", "x86-64"),
])
def test_under_valgrind_torch_is_held_to_an_isa_valgrind_emulates(tmp_path, monkeypatch, flags, capability, march):
    """On an AVX-512 cpu inductor would build `-march=native` kernels that die under Valgrind."""
    import platform

    import twolayer.count.callgrind as counters  # where the environment under Valgrind is made

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(counters, "CPUINFO", str(cpuinfo))
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert counters.valgrind_environment() == {"PYTHONHASHSEED": "0", "ATEN_CPU_CAPABILITY": capability,
                                               "TORCHINDUCTOR_CPP_MARCH": march}


def test_a_worker_killed_by_an_illegal_instruction_is_named_in_one_line(tmp_path):
    import sys

    from twolayer.count.driver import run_worker

    script = ("import os, signal; print('==1== vex amd64->IR: unhandled instruction bytes: 0x62 0xF3'); "
              "print('==1== I   refs:      0', flush=True); os.kill(os.getpid(), signal.SIGILL)")
    with pytest.raises(CountError) as raised:
        run_worker([sys.executable, "-c", script], "instruction", tmp_path / "log")
    assert "\n" not in str(raised.value)
    assert "illegal instruction" in str(raised.value) and "unhandled instruction bytes: 0x62" in str(raised.value)


def scripted_call(log: list):
    """A phase call that logs its setups and targets; its target runs one real aten op."""
    import torch

    from twolayer.measure.phases import PhaseCall

    x = torch.ones(2, 2)
    return PhaseCall(target=lambda: (log.append("target"), x.mm(x)), setup=lambda: log.append("setup"))


def test_a_cuda_count_runs_each_measure_on_its_own_call_with_its_setup(monkeypatch):
    """Dispatched ops, the device memory peak and the launches each come from their own call of
    the phase, each after its setup; launches and kernels from the profiler's events."""
    import twolayer.measure.device_memory as device_memory
    import twolayer.measure.launches as launches
    from twolayer.count.worker import count_on_cuda

    log = []
    call = scripted_call(log)

    def peak(phase_call):
        phase_call.setup(), phase_call.target()
        return 1536

    def profiled(phase_call, device):
        assert device == "cuda"
        phase_call.setup(), phase_call.target()
        return "recorded"

    monkeypatch.setattr(device_memory, "phase_peak_bytes", peak)
    monkeypatch.setattr(launches, "profiled", profiled)
    monkeypatch.setattr(launches, "tally_of", lambda recorded: launches.tally(
        [("cudaLaunchKernel", "cuda_runtime", 0), ("cudaGraphLaunch", "cuda_runtime", 0),
         ("ampere_sgemm", "kernel", 2000), ("relu", "kernel", 1000), ("copy", "gpu_memcpy", 500)]))
    counted = count_on_cuda(call, compiled=False, launches_seen=True)
    assert counted == {"alloc_bytes": 1536, "aten_ops": 1, "launches": 2, "gpu_kernels": 3}
    assert log == ["setup", "target"] * 3
    log.clear()
    blind = count_on_cuda(call, compiled=False, launches_seen=False)  # no CUPTI: launches left out, not zero
    assert blind == {"alloc_bytes": 1536, "aten_ops": 1} and log == ["setup", "target"] * 2


def cuda_cases(variants="torch_manual", phases="forward"):
    """Cases on cuda, made from cpu ones: what plan_cases returns on a machine with a GPU."""
    import dataclasses

    return [dataclasses.replace(case, device="cuda") for case in plan_cases(variants, "cpu", phases)]


def fake_counting(monkeypatch, cases, cuda_instructions, cuda_ops=None):
    """count_selection with its two workers scripted: the ops worker counts every case, the
    callgrind worker each device's cases (cuda's raising `cuda_instructions` if it is an error)."""
    import twolayer.count.driver as counters

    monkeypatch.setattr(counters, "plan_cases", lambda *args, **kwargs: cases)
    monkeypatch.setattr(counters, "valgrind_version", lambda valgrind: "valgrind-3.19.0")
    def ops(plan_path, work, device):
        assert json.loads(plan_path.read_text())["devices"] == device  # a process a device
        if device == "cuda" and cuda_ops is not None:
            raise cuda_ops
        return ({case.id: {"aten_ops": [6, 6], "alloc_bytes": [1024, 1024],
                           "launches": [7, 7] if device == "cuda" else None,
                           "gpu_kernels": [8, 8] if device == "cuda" else None, "ops_counted_by": "dispatch_mode"}
                 for case in cases if case.device == device}, None)

    monkeypatch.setattr(counters, "count_ops", ops)
    devices_counted = []

    def instructions(plan_path, work, options, device):
        devices_counted.append((device, json.loads(plan_path.read_text())["devices"]))
        if device == "cuda" and isinstance(cuda_instructions, Exception):
            raise cuda_instructions
        return ({case.id: 1000.0 for case in cases if case.device == device} | {f"{EMPTY}/{device}": 10.0},
                {"import_s": 60.0, "benchmarks_s": {f"{EMPTY}/{device}": 1.0}})

    monkeypatch.setattr(counters, "count_instructions", instructions)
    return devices_counted


def test_each_device_is_counted_in_its_own_callgrind_process(tmp_path, monkeypatch):
    cases = cuda_cases() + plan_cases("torch_manual", "cpu", "forward")
    devices_counted = fake_counting(monkeypatch, cases, None)
    run_dir = count_selection(CountOptions(out=tmp_path), progress=lambda line: None)
    assert devices_counted == [("cpu", "cpu"), ("cuda", "cuda")]
    table = read_counters(run_dir).set_index(["device", "variant"])
    assert table.loc[("cuda", "torch_manual"), "launches"] == 7 and table.loc[("cuda", "torch_manual"), "gpu_kernels"] == 8
    assert pd.isna(table.loc[("cpu", "torch_manual"), "launches"])  # cpu launches nothing: empty, never 0
    assert table.loc[("cuda", "torch_manual"), "instructions"] == 1000.0
    record = json.loads((run_dir / COUNTERS_FILE).read_text())["twolayer"]
    assert record["not_counted"] == {} and record["spent"]["import_s"] == 120.0
    report = (run_dir / "report.md").read_text()
    assert "### cuda float32" in report and "forward launches" in report and "forward gpu_kernels" in report


def test_cuda_instructions_that_cannot_be_counted_are_left_empty_with_the_reason(tmp_path, monkeypatch):
    """The CUDA driver may not run under Valgrind: the cpu counts and cuda's other counters stay,
    cuda's instructions are empty, and counters.json says why."""
    cases = cuda_cases() + plan_cases("torch_manual", "cpu", "forward")
    fake_counting(monkeypatch, cases, CountError("the cuda instruction count failed (exit 1): ioctl"))
    said = []
    run_dir = count_selection(CountOptions(out=tmp_path), progress=said.append)
    table = read_counters(run_dir).set_index(["device", "variant", "phase"])
    assert pd.isna(table.loc[("cuda", "torch_manual", "forward"), "instructions"])
    assert table.loc[("cuda", "torch_manual", "forward"), "aten_ops"] == 6
    assert table.loc[("cpu", "torch_manual", "forward"), "instructions"] == 1000.0
    record = json.loads((run_dir / COUNTERS_FILE).read_text())["twolayer"]
    assert record["not_counted"] == {"instructions/cuda": "the cuda instruction count failed (exit 1): ioctl"}
    assert any("cuda: instructions not counted" in line for line in said)


def test_cuda_ops_that_cannot_be_counted_leave_the_cpu_counts(tmp_path, monkeypatch):
    """A cuda error in the native worker (CUPTI refused, a graph capture failing) costs cuda's
    ops, bytes and launches only; counters.json says why."""
    cases = cuda_cases() + plan_cases("torch_manual", "cpu", "forward")
    fake_counting(monkeypatch, cases, None, cuda_ops=CountError("the cuda op count failed (exit 1): CUPTI"))
    run_dir = count_selection(CountOptions(out=tmp_path), progress=lambda line: None)
    table = read_counters(run_dir).set_index(["device", "variant", "phase"])
    assert table.loc[("cpu", "torch_manual", "forward"), "aten_ops"] == 6
    assert pd.isna(table.loc[("cuda", "torch_manual", "forward"), "aten_ops"])
    assert table.loc[("cuda", "torch_manual", "forward"), "instructions"] == 1000.0
    record = json.loads((run_dir / COUNTERS_FILE).read_text())["twolayer"]
    assert record["not_counted"] == {"aten_ops,alloc_bytes,launches,gpu_kernels/cuda":
                                     "the cuda op count failed (exit 1): CUPTI"}


def test_a_cpu_count_that_fails_fails_the_whole_count_and_writes_nothing(tmp_path, monkeypatch):
    import twolayer.count.driver as counters

    fake_counting(monkeypatch, plan_cases("torch_manual", "cpu", "forward"), None)

    def failing(plan_path, work, options, device):
        raise CountError("the cpu instruction count failed (exit 1): boom")

    monkeypatch.setattr(counters, "count_instructions", failing)
    with pytest.raises(CountError, match="boom"):
        count_selection(CountOptions(out=tmp_path), progress=lambda line: None)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_callgrind_process_past_its_time_is_stopped_with_all_it_started(tmp_path):
    """The worker and what it started (a wrapper that does not exec, inductor's compile workers)."""
    import os
    import sys
    import time

    from twolayer.count.driver import run_worker

    child = tmp_path / "child.pid"
    script = (f"import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(child)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    with pytest.raises(CountError, match="did not finish within 2 s"):
        run_worker([sys.executable, "-c", script], "cuda instruction", tmp_path / "log", timeout_s=2)
    pid = int(child.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # killed: gone, or a zombie until init reaps it
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        raise AssertionError("the worker's child outlived the timeout")


def test_the_valgrind_given_must_exist(tmp_path, capsys):
    code, out, err = run_cli(capsys, "count", "--variants", "torch_manual", "--valgrind", tmp_path / "no-valgrind",
                             "--out", tmp_path)
    assert code == 2 and "not a valgrind that runs here" in err
    assert_one_line(err)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(device_absent_reason("cuda") is not None, reason=device_absent_reason("cuda") or "")
def test_cuda_counts_launches_per_idiom():
    """Eager torch launches a kernel per op or more; a CUDA graph's replay is one launch of many kernels."""
    plan = {"devices": "cuda", "phases": "iteration", "calls": 2, "warmup": 2}
    result = count_ops({**plan, "variants": "torch_manual,cuda_graph"})
    assert result["launches_note"] is None, result["launches_note"]  # CUPTI works: launches are counted
    counts = {key.split("-")[-1]: value for key, value in result["counts"].items()}
    manual, graph = counts["torch_manual"], counts["cuda_graph"]
    assert min(manual["launches"]) >= 10 and min(manual["gpu_kernels"]) >= 10
    assert manual["aten_ops"][0] >= 20 and min(manual["alloc_bytes"]) > 0
    assert graph["launches"] == [1, 1] and min(graph["gpu_kernels"]) >= 10  # the replay: one launch
    assert graph["aten_ops"] == [0, 0]


@pytest.mark.skipif(not HAS_VALGRIND, reason="valgrind is not installed (apt-get install -y valgrind)")
def test_a_carried_valgrind_kit_counts_on_its_own(tmp_path):
    """`.ci/valgrind-kit` copies callgrind for a machine without Valgrind (the lent GPU machine):
    the copy runs from its own folder, with no PATH, and `twolayer count --valgrind` accepts it."""
    import subprocess

    from twolayer.count.driver import valgrind_version
    from twolayer.provenance import PROJECT_ROOT

    kit = tmp_path / "kit"
    subprocess.run([str(PROJECT_ROOT / ".ci" / "valgrind-kit"), str(kit)], check=True, capture_output=True)
    assert valgrind_version(str(kit / "valgrind")).startswith("valgrind-")
    out = tmp_path / "callgrind.out"
    subprocess.run([str(kit / "valgrind"), "--tool=callgrind", f"--callgrind-out-file={out}", "/bin/true"],
                   check=True, capture_output=True, env={"PATH": "/nonexistent"}, cwd=tmp_path)
    assert callgrind_totals(out) > 1000
    assert valgrind_version(str(tmp_path / "absent")) is None


def test_on_cuda_the_counted_window_holds_the_work_never_a_wait_for_the_device(monkeypatch):
    """A host waiting for the device spins as long as the device runs: a count that would not
    repeat. Only `PhaseCall.work` is between collection on and off; the queue is emptied before."""
    from types import SimpleNamespace

    import torch

    import twolayer.count.worker as worker
    from twolayer.measure.phases import PhaseCall

    log = []
    call = PhaseCall(target=lambda: log.extend(["work", "sync"]), setup=lambda: log.append("setup"),
                     work=lambda: log.append("work"))
    monkeypatch.setattr(worker, "counted_cases", lambda plan: [SimpleNamespace(id="cuda-case", device="cuda")])
    monkeypatch.setattr(worker, "prepared", lambda case, warmup: call)
    monkeypatch.setattr(torch._C, "_valgrind_supported_platform", lambda: True)
    monkeypatch.setattr(torch._C, "_valgrind_toggle", lambda: log.append("toggle"))
    monkeypatch.setattr(torch._C, "_valgrind_toggle_and_dump_stats", lambda: log.append("toggle and dump"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: log.append("device sync"))
    result = worker.count_instructions({"calls": 2, "warmup": 0})
    assert [entry["id"] for entry in result["order"]] == [EMPTY, "cuda-case"]
    windows, inside = [], None
    for entry in log:
        if entry == "toggle" and inside is None:
            inside = []
        elif entry.startswith("toggle"):
            windows.append(inside)
            inside = None
        elif inside is not None:
            inside.append(entry)
    assert windows == [[], [], ["work"], ["work"]]  # the empty call twice, then the case's two counted calls
    assert log[-5:] == ["setup", "device sync", "toggle", "work", "toggle and dump"]  # the queue empty first
