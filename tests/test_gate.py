"""The paired gate: its pairing and verdicts on scripted sides (a co-tenant's bursts, a per-process
offset, a real slowdown), the worker's protocol, and one real gate of this checkout against itself."""

import io
import json
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from twolayer.analysis.compare import bootstrap_medians
from twolayer.cli import main
from twolayer.gate.driver import GateOptions, gate_case, provenance_warnings, result_rows
from twolayer.gate.matching import matched_cases, undistributed
from twolayer.gate.pairs import Pairs
from twolayer.gate.worker import Worker, serve
from twolayer.gate.workers import GateError, Processes, request_all
from twolayer.measure.phases import PhaseCall
from twolayer.provenance import PROJECT_ROOT
from twolayer.report.verdicts import gate_markdown

CASE = {"id": "cpu-forward-float32-64x1000x100x10-torch_manual", "device": "cpu", "variant": "torch_manual",
        "phase": "forward", "dtype": "float32", "dtype_mode": "float32", "size": "64x1000x100x10", "skip": None}


class Machine:
    """A shared clock and a co-tenant: every `measure` advances time by the block it ran; a burst
    slows everything run while it lasts, on whichever side."""

    def __init__(self, bursts=(), burst_factor=300.0, seed=0):
        self.now, self.bursts, self.burst_factor = 0.0, bursts, burst_factor
        self.rng = np.random.default_rng(seed)

    def slowdown(self) -> float:
        return self.burst_factor if any(start <= self.now < end for start, end in self.bursts) else 1.0

    def clock(self) -> float:
        return self.now


class ScriptedSide:
    """A worker whose calls take `call_s` times this process's fixed offset (the process as a unit
    of noise) times the machine's slowdown at that moment, with 2% jitter."""

    def __init__(self, machine, call_s, offset=1.0):
        self.machine, self.call_s, self.offset = machine, call_s, offset
        self.requests = []

    def request(self, op, **fields):
        self.requests.append((op, fields))
        if op == "prepare":
            return {"probe_round_s": self.call_s, "compile_s": None}
        if op == "measure":
            values, begun = [], self.machine.now
            for _ in range(fields["rounds"]):
                value = self.call_s * self.offset * self.machine.slowdown() * (1 + 0.02 * self.machine.rng.standard_normal())
                self.machine.now += value
                values.append(value)
                if self.machine.now - begun >= fields["max_s"]:
                    break
            return {"values": values}
        if op == "canary":
            return {"canary_s": 100e-6 * self.machine.slowdown(), "load_avg_1m": 1.0, "others_running": 0}
        return {}


def sides(machine, base_s, new_s, offsets=((1.0, 1.0),) * 4):
    return ([ScriptedSide(machine, base_s, b) for b, _ in offsets], [ScriptedSide(machine, new_s, n) for _, n in offsets])


OPTIONS = GateOptions(budget_s=0.2, processes=4)
# A co-tenant that now and then holds a core: 300x bursts of 30-60 ms, about a tenth of the time.
BURSTS = tuple((start, start + length) for start, length in zip(np.arange(0.05, 50, 0.5), np.tile([0.03, 0.06], 100)))


def test_identical_code_under_bursts_is_unchanged():
    machine = Machine(BURSTS)
    bases, news = sides(machine, 100e-6, 100e-6)
    result = gate_case(Processes(bases, news), CASE, OPTIONS, clock=machine.clock)
    assert result.verdict == "unchanged", result
    assert 0.95 < result.interval.low <= result.interval.ratio <= result.interval.high < 1.05


def test_a_25_percent_slowdown_under_bursts_is_slower():
    machine = Machine(BURSTS)
    bases, news = sides(machine, 100e-6, 125e-6)
    result = gate_case(Processes(bases, news), CASE, OPTIONS, clock=machine.clock)
    assert result.verdict == "slower" and result.interval.low > 1.1
    assert result.interval.ratio == pytest.approx(1.25, rel=0.03)


def test_process_offsets_widen_the_interval_instead_of_reading_as_a_change():
    """Two processes of identical code 15% apart, steadily (as numpy_manual's step was, 0.84): with
    one process pair that would be a confident false `faster`; across four it is not."""
    machine = Machine()
    one_pair = GateOptions(budget_s=0.2, processes=1, retimes=0)
    bases, news = sides(machine, 100e-6, 100e-6, offsets=((1.0, 0.85),))
    assert gate_case(Processes(bases, news), CASE, one_pair, clock=machine.clock).verdict == "faster"
    bases, news = sides(machine, 100e-6, 100e-6, offsets=((1.0, 0.85), (0.95, 1.0), (1.0, 1.06), (1.04, 1.0)))
    result = gate_case(Processes(bases, news), CASE, OPTIONS, clock=machine.clock)
    assert result.verdict != "faster"
    assert result.interval.low < 0.97 and result.interval.high > 1.01


def test_an_undecidable_interval_is_retimed_a_bounded_number_of_times_then_inconclusive():
    machine = Machine()
    # an 8% difference whose processes spread it 4% either way: the interval reaches past the
    # threshold, and more pairs from the same processes cannot narrow it
    bases, news = sides(machine, 100e-6, 108e-6, offsets=((1.0, 0.96), (1.0, 1.04), (0.97, 1.0), (1.03, 1.0)))
    result = gate_case(Processes(bases, news), CASE, GateOptions(budget_s=0.1, processes=4, retimes=2),
                       clock=machine.clock)
    assert result.verdict == "inconclusive" and result.timings == 3
    assert "within the 10% threshold, but the interval reaches beyond it" in result.reason
    assert "after 3 timings" in result.reason and "in 4 process pairs" in result.reason
    assert "canary" in result.reason  # the machine's state is printed with it


class ClosableSide(ScriptedSide):
    def close(self):
        self.requests.append(("close", {}))


@pytest.mark.slow
def test_a_retime_runs_in_fresh_processes_which_narrow_what_the_old_ones_spread():
    """Identical code whose first four process pairs sit 12% apart: undecidable. Each retime closes
    them and starts four fresh pairs (here with the spread of most processes, 1-2%); pooled over
    the process pairs of all timings, the interval narrows to a decision."""
    machine = Machine()
    spread = ((1.0, 0.88), (1.0, 1.12), (0.88, 1.0), (1.12, 1.0))
    first = [ClosableSide(machine, 100e-6, b) for b, _ in spread], [ClosableSide(machine, 100e-6, n) for _, n in spread]
    started = []

    def fresh():
        offsets = ((1.0, 0.99), (1.01, 1.0), (1.0, 1.02), (0.98, 1.0))
        pair = ([ClosableSide(machine, 100e-6, b) for b, _ in offsets],
                [ClosableSide(machine, 100e-6, n) for _, n in offsets])
        started.append(pair)
        return pair

    options = GateOptions(budget_s=0.1, processes=4, retimes=2)
    stuck = gate_case(Processes(*first), CASE, options, clock=machine.clock)
    assert stuck.verdict == "inconclusive" and stuck.process_pairs == 4  # no way to start fresh ones
    first = [ClosableSide(machine, 100e-6, b) for b, _ in spread], [ClosableSide(machine, 100e-6, n) for _, n in spread]
    pool = Processes(*first, renew=fresh)
    result = gate_case(pool, CASE, options, clock=machine.clock)
    assert result.verdict == "unchanged", result.reason
    assert result.timings == len(started) + 1 and result.process_pairs == 4 * result.timings
    assert sorted(set(result.pair_medians_s["process"])) == list(range(4 * result.timings))
    # each pair knows its timing: the processes of timing t are the t-th four
    assert [p // 4 for p in result.pair_medians_s["process"]] == result.pair_medians_s["timing"]
    assert all(side.requests[-1][0] == "close" for side in (*first[0], *first[1]))  # the old ones are gone
    fresh_sides = (*pool.bases, *pool.news)
    assert all(side.requests[-1][0] == "release" for side in fresh_sides)
    # every fresh process runs a discarded warm-up block before its first timed pair
    for side in fresh_sides:
        ops = [op for op, _ in side.requests]
        assert ops[:3] == ["prepare", "measure", "measure"] and ops.count("prepare") >= 2


def test_pairs_alternate_abba_and_every_side_is_built_afresh_and_released():
    machine = Machine()
    bases, news = sides(machine, 100e-6, 100e-6)
    gate_case(Processes(bases, news), CASE, GateOptions(budget_s=0.01, processes=4, retimes=0), clock=machine.clock)
    order = []
    for name, group in (("base", bases), ("new", news)):
        for process, side in enumerate(group):
            for index, (op, fields) in enumerate(side.requests):
                order.append((name, process, op, fields.get("instance")))
    prepared = [(n, p, i) for n, p, op, i in order if op == "prepare"]
    instances = sorted({i for _, _, i in prepared})
    assert len(instances) >= 8  # min_instances
    assert {(n, i % 4) for n, p, i in prepared} == {(n, p) for n, p, i in prepared}  # round the processes
    assert all(side.requests[-1][0] == "release" for side in (*bases, *news))
    pairs = Pairs(base=[1.0] * 16, new=[1.1] * 16, instance=[i // 2 for i in range(16)], process=[0, 1] * 8)
    assert pairs.interval().ratio == pytest.approx(1.1)


def test_blocks_a_co_tenant_hit_on_one_side_are_left_out_and_counted():
    """Measured under a 2-thread co-tenant: a block is either normal or 50-300x slower, on one side."""
    rng = np.random.default_rng(1)
    base = 180e-6 * (1 + 0.02 * rng.standard_normal(48))
    new = 180e-6 * (1 + 0.02 * rng.standard_normal(48))
    base[[3, 10, 17, 30]] *= 150
    new[[5, 22, 41]] *= 80
    pairs = Pairs(base=list(base), new=list(new), instance=[i // 2 for i in range(48)],
                  process=[(i // 2) % 6 for i in range(48)])
    assert pairs.hit_fraction() == pytest.approx(7 / 48)
    interval = pairs.interval()
    assert 0.97 < interval.low < interval.ratio < interval.high < 1.03
    slower = Pairs(base=list(base), new=list(new * 2), instance=pairs.instance, process=pairs.process)
    assert slower.hit_fraction() == pytest.approx(7 / 48)  # a real slowdown moves its side's quartile too
    assert slower.interval().low > 1.9
    hit_base, hit_new = base.copy(), new.copy()
    hit_base[6::2] *= 150  # from pair 6 on, every pair has a hit block, on alternate sides
    hit_new[7::2] *= 150
    swamped = Pairs(base=list(hit_base), new=list(hit_new), instance=pairs.instance, process=pairs.process)
    assert swamped.hit_fraction() == pytest.approx(44 / 48)  # with the two earlier hits in pairs 3 and 5
    assert np.isnan(swamped.interval().low)  # too few clean instances: undecidable, not a guess


def test_a_generation_of_processes_slower_on_both_sides_is_not_a_hit():
    """Seen on the quiet machine: numpy `step` at 47 us in one generation of worker processes and
    125 us in the next, on both sides alike. Judged per timing, those pairs count; a one-sided
    burst inside the slow generation is still a hit."""
    rng = np.random.default_rng(2)
    level = np.repeat([47e-6, 125e-6, 47e-6], 32)
    base = level * (1 + 0.02 * rng.standard_normal(96))
    new = level * (1 + 0.02 * rng.standard_normal(96))
    new[40] *= 60  # a co-tenant's burst on one side, in the slow generation
    layout = {"instance": [i // 2 for i in range(96)], "process": [(i // 2) % 6 + 6 * (i // 32) for i in range(96)]}
    pairs = Pairs(base=list(base), new=list(new), timing=[i // 32 for i in range(96)], **layout)
    assert pairs.hit_fraction() == pytest.approx(1 / 96)
    interval = pairs.interval()
    assert 0.97 < interval.low < interval.ratio < interval.high < 1.03
    # the same blocks judged against one quartile for all timings: the slow generation reads as hits
    assert Pairs(base=list(base), new=list(new), **layout).hit_fraction() > 0.3


def test_cases_are_matched_by_what_they_time_not_by_test_id():
    renamed = {**CASE, "id": "old-id"}
    only_base = {**CASE, "id": "b", "variant": "numpy_manual"}
    skipped = {**CASE, "id": "s", "variant": "cuda_graph", "skip": "cuda is not available"}
    both, base_only, new_only = matched_cases([renamed, only_base, skipped], [CASE, skipped])
    assert both == [{**CASE, "base_id": "old-id"}] and base_only == [only_base] and new_only == []


def test_a_default_selection_leaves_the_distributed_variants_out():
    ddp = {**CASE, "id": "d", "variant": "ddp", "world_size": 1, "scaling": "strong"}
    unknown = {**CASE, "id": "u", "variant": "from_a_newer_commit"}
    assert undistributed([CASE, ddp, unknown]) == [CASE, unknown]


def converse(*requests):
    replies = io.StringIO()
    serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), replies,
          Worker(clock=iter(np.arange(0, 1000, 0.5)).__next__))
    return [json.loads(line) for line in replies.getvalue().splitlines()]


def test_the_worker_protocol_times_one_call_per_round_with_setup_untimed():
    case = "cpu-forward-float32-8x16x8x2-numpy_manual"
    hello, cases, prepared, measured, cut_short, canary, released, unknown_metric, unknown_case, unknown_op = converse(
        {"op": "hello"},
        {"op": "cases", "variants": "numpy_manual", "devices": "cpu", "phases": "forward", "sizes": "8x16x8x2"},
        {"op": "prepare", "case": case, "instance": 0},
        {"op": "measure", "case": case, "metric": "time_s", "rounds": 3},
        {"op": "measure", "case": case, "metric": "time_s", "rounds": 10, "max_s": 2.0},
        {"op": "canary"},
        {"op": "release", "case": case},
        {"op": "measure", "case": case, "metric": "instructions", "rounds": 1},
        {"op": "measure", "case": "nope", "rounds": 1},
        {"op": "fly"},
        {"op": "quit"},
        {"op": "hello"},  # after quit: never answered
    )
    assert hello["ok"] and hello["protocol"] == 1 and hello["metrics"] == ["time_s"]
    assert hello["root"] == str(PROJECT_ROOT) and "hardware" in hello["machine"]
    assert [c["id"] for c in cases["cases"]] == [case]
    assert prepared["ok"] and prepared["probe_round_s"] == 0.5
    assert measured["values"] == [0.5, 0.5, 0.5]  # the scripted clock ticks 0.5 s a read: one call per value
    assert cut_short["values"] == [0.5, 0.5]  # 2 s allowed: the block stops at the call that passes it
    assert canary["ok"] and canary["canary_s"] > 0
    assert released["ok"] and np.isfinite(released["loss"])
    assert not unknown_metric["ok"] and "unknown metric 'instructions'" in unknown_metric["error"]
    assert not unknown_case["ok"] and "unknown or unprepared case 'nope'" in unknown_case["error"]
    assert not unknown_op["ok"] and "unknown op 'fly'" in unknown_op["error"]


def test_each_build_lands_at_a_new_offset_within_a_cache_line_too():
    """Where an array starts within a cache line moved numpy `step` 2x on an AVX-512 machine: the
    heap shift between builds must reach every 16-byte offset, not whole cache lines only."""
    worker = Worker(clock=iter(np.arange(0, 1e6, 0.5)).__next__)
    worker.rng = random.Random(7)
    case = "cpu-step-float32-8x16x8x2-numpy_manual"
    worker.select({"variants": "numpy_manual", "devices": "cpu", "phases": "step", "sizes": "8x16x8x2"})
    shifts = []
    for instance in range(32):
        worker.prepare({"case": case, "instance": instance})
        shifts.append(len(worker.padding))
    assert {shift % 64 for shift in shifts} == {0, 16, 32, 48}
    assert all(shift % 16 == 0 for shift in shifts) and len(set(shifts)) > 16


@pytest.mark.slow
def test_a_real_gate_of_this_checkout_against_itself(tmp_path, capsys):
    code = main(["gate", str(PROJECT_ROOT), "--variants", "numpy_manual", "--phases", "forward,step", "--sizes",
                 "8x16x8x2", "--budget-s", "0.05", "--processes", "2", "--retimes", "0", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code in (0, 1)  # the verdict is the machine's to give; its shape is what is tested
    table = pd.read_csv(tmp_path / "compare.csv")
    assert list(table["phase"]) == ["forward", "step"]
    assert set(table["verdict"]) <= {"unchanged", "inconclusive", "faster", "slower"}
    assert (table["interval_kind"] == "paired-blocks").all() and (table["pairs"] >= 16).all()
    # a row with too few pairs the machine left alone has no interval, and is inconclusive (seen 2 in 5 runs here)
    bounded = table[table["ratio"].notna()]
    assert (table.loc[table["ratio"].isna(), "verdict"] == "inconclusive").all()
    assert (bounded["ratio_low"] <= bounded["ratio"]).all() and (bounded["ratio"] <= bounded["ratio_high"]).all()
    record = json.loads((tmp_path / "gate.json").read_text())
    assert record["base"]["root"] == record["head"]["root"] == str(PROJECT_ROOT)
    assert set(record["benchmarks"][0]["pair_medians_s"]["process"]) == {0, 1}
    assert (tmp_path / "gate.md").read_text().startswith("### twolayer gate:")
    assert "gate.md" in out


def test_a_base_tree_without_the_worker_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "twolayer").mkdir()
    code = main(["gate", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "predates the paired gate" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "compare.csv").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--variants", "bogus", "unknown variant 'bogus'"),
    ("--phases", "bogus", "unknown phase"),
    ("--sizes", "1x2x3", "1x2x3"),
])
def test_a_bad_selection_is_refused_before_any_worker_starts(tmp_path, capsys, monkeypatch, option, value, message):
    import twolayer.gate.driver as gate

    monkeypatch.setattr(gate, "start_sides", lambda *args, **kwargs: pytest.fail("workers started"))
    code = main(["gate", str(PROJECT_ROOT), option, value, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_worker_keeps_stdout_for_the_protocol():
    """A library that prints must not corrupt the replies: the worker moves stdout to stderr."""
    script = ("import twolayer.gate.worker as worker\n"
              "answer = worker.Worker.handle\n"
              "def chatty(self, request):\n"
              "    print('chatter from a library')\n"
              "    return answer(self, request)\n"
              "worker.Worker.handle = chatty\n"
              "worker.main()\n")
    done = subprocess.run([sys.executable, "-c", script], input='{"op": "fly"}\n{"op": "quit"}\n',
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [json.dumps({"ok": False, "error": "ValueError: unknown op 'fly'"})]
    assert "chatter from a library" in done.stderr


class BurstAtFirstProbe(ScriptedSide):
    def request(self, op, **fields):
        reply = super().request(op, **fields)
        if op == "prepare" and fields["instance"] == 0:
            reply = {**reply, "probe_round_s": reply["probe_round_s"] * 100}  # a co-tenant hit the first probe
        return reply


def test_a_burst_during_the_first_probe_does_not_fix_the_case_at_one_round_blocks():
    machine = Machine()
    bases = [BurstAtFirstProbe(machine, 100e-6) for _ in range(4)]
    news = [BurstAtFirstProbe(machine, 100e-6) for _ in range(4)]
    result = gate_case(Processes(bases, news), CASE, OPTIONS, clock=machine.clock)
    assert result.block_rounds == 200  # 20 ms of 100 us calls, from the later probes
    first_blocks = [f["rounds"] for op, f in bases[0].requests if op == "measure"][:1]
    assert first_blocks == [2]  # the first build's blocks followed its probe, the pair alike on both sides
    for side in (*bases, *news):
        measured = [f["rounds"] for op, f in side.requests if op == "measure"]
        assert measured == sorted(measured)  # never fewer rounds once a faster probe is seen


def test_fresh_processes_that_fail_to_start_leave_nothing_open_to_close_twice():
    machine = Machine()
    spread = ((1.0, 0.88), (1.0, 1.12), (0.88, 1.0), (1.12, 1.0))  # undecidable: a retime is asked for
    bases = [ClosableSide(machine, 100e-6, b) for b, _ in spread]
    news = [ClosableSide(machine, 100e-6, n) for _, n in spread]

    def cannot_start():
        raise GateError("the base worker exited")

    pool = Processes(bases, news, renew=cannot_start)
    with pytest.raises(GateError, match="exited"):
        gate_case(pool, CASE, GateOptions(budget_s=0.1, processes=4, retimes=2), clock=machine.clock)
    assert pool.sides() == ()
    assert all([op for op, _ in side.requests].count("close") == 1 for side in (*bases, *news))


def test_a_request_to_every_worker_is_sent_to_all_before_any_reply_is_read():
    events = []

    class Splitting:
        def __init__(self, name):
            self.name = name

        def send(self, op, **fields):
            events.append(("send", self.name, op, fields))

        def receive(self, op):
            events.append(("receive", self.name, op))
            return {"name": self.name}

    class Whole:  # a side that cannot split a request is asked in turn
        def request(self, op, **fields):
            events.append(("request", "whole", op, fields))
            return {"name": "whole"}

    replies = request_all([Splitting("a"), Whole(), Splitting("b")], "cases", devices="cpu")
    assert [reply["name"] for reply in replies] == ["a", "whole", "b"]
    assert [event[:2] for event in events] == [("send", "a"), ("send", "b"), ("receive", "a"), ("request", "whole"),
                                               ("receive", "b")]
    assert events[0][3] == {"devices": "cpu"}


def test_a_worker_times_the_call_alone_never_its_setup():
    now = [0.0]

    def setup():
        now[0] += 10.0  # a whole iteration, say: never in the value

    def target():
        now[0] += 1.0

    assert Worker(clock=lambda: now[0]).time_rounds(PhaseCall(target=target, setup=setup), 3) == [1.0, 1.0, 1.0]


def test_every_other_instance_starts_with_the_other_side():
    """ABBA in even instances, BAAB in odd ones: neither side is always the first timed after a build."""
    machine = Machine()
    bases, news = sides(machine, 100e-6, 100e-6)
    log = []
    for name, group in (("base", bases), ("new", news)):
        for side in group:
            def request(op, _side=side, _name=name, **fields):
                log.append((_name, op, fields.get("instance")))
                return ScriptedSide.request(_side, op, **fields)
            side.request = request
    options = GateOptions(budget_s=0.01, processes=4, retimes=0)
    gate_case(Processes(bases, news), CASE, options, clock=machine.clock)
    measured, instance = {}, None
    for name, op, fields_instance in log:
        if op == "prepare":
            instance = fields_instance
        elif op == "measure":
            measured.setdefault(instance, []).append(name)
    assert len(measured) >= 8
    for instance, names in measured.items():
        first, second = ("base", "new") if instance % 2 == 0 else ("new", "base")
        expected = [side for count in range(options.pairs_per_instance)
                    for side in ((first, second) if count % 2 == 0 else (second, first))]
        assert names[-len(expected):] == expected, instance  # a process's first instance warms up a block a side first


def test_the_interval_over_processes_is_the_central_95_percent_of_the_bootstrap():
    rng = np.random.default_rng(3)
    pairs = Pairs(base=list(1 + 0.05 * rng.standard_normal(40)), new=list(1.02 + 0.05 * rng.standard_normal(40)),
                  instance=[i // 2 for i in range(40)], process=[(i // 2) % 4 for i in range(40)])
    logs = pairs.instance_log_ratios()
    medians = bootstrap_medians([group.to_numpy() for _, group in logs.groupby(level="process")],
                                np.random.default_rng(0))
    low, high = np.exp(np.percentile(medians, [2.5, 97.5]))
    interval = pairs.interval()
    assert (interval.low, interval.high) == pytest.approx((low, high))


def scripted_result(machine_after_s=400e-6):
    machine = Machine()
    bases, news = sides(machine, 100e-6, 125e-6)
    canaries = iter([100e-6, machine_after_s])
    for side in bases:
        plain = side.request
        side.request = lambda op, _plain=plain, **fields: (
            {"canary_s": next(canaries), "load_avg_1m": 1.0, "others_running": 0} if op == "canary"
            else _plain(op, **fields))
    return gate_case(Processes(bases, news), CASE, GateOptions(budget_s=0.05, processes=4, retimes=0),
                     clock=machine.clock)


def test_the_gate_s_table_and_markdown_say_which_side_is_which():
    result = scripted_result()
    table = result_rows([result], [], [], "base0", "head0", 0.1)
    row = table.iloc[0]
    assert row["base_median_s"] == pytest.approx(100e-6, rel=0.05) and row["new_median_s"] == pytest.approx(125e-6, rel=0.05)
    assert row["canary_before_s"] == 100e-6 and row["canary_after_s"] == 400e-6  # the machine as it was after
    line = next(line for line in gate_markdown(table, 0.1).splitlines() if line.startswith("| slower"))
    cells = [cell.strip() for cell in line.split("|")]
    assert float(cells[7]) == pytest.approx(100, rel=0.05) and float(cells[8]) == pytest.approx(125, rel=0.05)
    assert float(cells[9]) == pytest.approx(1.25, rel=0.05)


@pytest.mark.parametrize("field", ["torch_version", "numpy_version", "cuda_version", "torch_blas", "numpy_blas",
                                   "torch_threads", "numpy_threads", "hardware", "cpu_isa", "cpu_model", "gpu_model",
                                   "gpu_capability", "python_version", "suite_version"])
def test_every_difference_between_the_trees_workers_is_warned_about(field):
    machine = {"torch_version": "2.13.0", "numpy_version": "2.4.6", "cuda_version": None, "torch_blas": "mkl",
               "numpy_blas": "openblas", "torch_threads": 2, "numpy_threads": 2, "hardware": "GenuineIntel/6/167",
               "cpu_isa": "avx512f", "cpu_model": "Xeon", "gpu_model": None, "gpu_capability": None,
               "python_version": "3.11.7", "twolayer_host": "vm"}
    base = {"suite_version": 3, "machine": machine}
    assert provenance_warnings(base, json.loads(json.dumps(base))) == []
    new = json.loads(json.dumps(base))
    if field == "suite_version":
        new["suite_version"] = 4
    else:
        new["machine"][field] = "something else"
    (warning,) = provenance_warnings(base, new)
    assert warning.startswith(f"{field} differs: ")


def test_the_gate_s_options_reach_it_in_their_units(tmp_path, monkeypatch):
    import twolayer.cli.gate as gate  # the command, which calls the driver's run_gate

    seen = {}

    def fake_gate(base_tree, new_tree, out, selection, options):
        seen["options"], seen["selection"] = options, selection
        raise GateError("stop here")

    monkeypatch.setattr(gate, "run_gate", fake_gate)
    assert main(["gate", str(PROJECT_ROOT), "--variants", "numpy_manual", "--block-ms", "20", "--threshold", "5",
                 "--budget-s", "0.3", "--retimes", "1", "--processes", "3", "--out", str(tmp_path)]) == 2
    options = seen["options"]
    assert (options.block_s, options.threshold, options.budget_s, options.retimes, options.processes) == \
        (pytest.approx(0.02), pytest.approx(0.05), 0.3, 1, 3)
    assert seen["selection"]["variants"] == "numpy_manual"
