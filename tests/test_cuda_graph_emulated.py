"""`cuda_graph`'s own logic, tested on the cpu under emulated capture and replay (emulated_cuda_graphs.py).

The real variant needs a GPU; these tests run its unchanged code with torch.cuda's graph, stream and
sync calls emulated, so what it does with the graphs is checked everywhere: that the warm-up runs
on a side stream ordered against the default one, that capture runs nothing and the warm-up's
updates are undone, that every replay reads and writes the same static tensors, and that nothing
captured waits on the host. The cuda tests in test_gradients.py and test_training.py run the
real thing where a GPU is.
"""

import numpy as np
import pytest
import torch
from emulated_cuda_graphs import CaptureError, EmulatedGraph, emulate_cuda_graphs
from test_gradients import TOLERANCE, reference_for, relative_error
from test_training import FINAL_LOSS_TOLERANCE, trajectory

import twolayer.variants.cuda_graph as cuda_graph_module
from twolayer.measure.phases import phase_call
from twolayer.problem import Problem, make_weights
from twolayer.train import train
from twolayer.variants import build, resolve
from twolayer.variants.tensors import to_tensor

SMALL = {"n": 16, "d_in": 50, "hidden": 20, "d_out": 5}


@pytest.fixture
def emulation(monkeypatch):
    return emulate_cuda_graphs(monkeypatch)


@pytest.fixture
def graphs(monkeypatch, emulation):
    """The emulated graphs, with the variant's tensors made on the cpu though it asks for cuda."""
    asked = []

    def on_cpu(array, device, requires_grad=False):
        asked.append(device)
        return to_tensor(array, "cpu", requires_grad)

    monkeypatch.setattr(cuda_graph_module, "to_tensor", on_cpu)
    yield emulation.graphs
    assert asked and set(asked) == {"cuda"}, f"cuda_graph put tensors on {sorted(set(asked))}"


def make(problem):
    return cuda_graph_module.CudaGraph(resolve("cuda_graph", problem), "cuda")


# The emulation itself: it must refuse and defer what CUDA refuses and defers, or the tests below prove nothing.

def test_emulated_capture_runs_nothing_and_replay_runs_everything(emulation):
    w = torch.ones(3)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        w.sub_(1.0)
        doubled = w * 2
        positive = doubled > 0
    assert w.tolist() == [1.0, 1.0, 1.0]  # captured, not run
    assert torch.isnan(doubled).all() and positive.all()  # memory nothing has written yet
    graph.replay()
    assert w.tolist() == [0.0, 0.0, 0.0] and doubled.tolist() == [0.0, 0.0, 0.0] and not positive.any()
    graph.replay()
    assert w.tolist() == [-1.0, -1.0, -1.0] and doubled.tolist() == [-2.0, -2.0, -2.0]


def test_emulated_capture_applies_shape_changes_once_and_replays_with_autograd_off(emulation):
    a, b = torch.ones(2, 3), torch.ones(2, 3)
    leaf = torch.zeros(3, requires_grad=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        b.t_()  # metadata only: (3, 2) from now on
        product = a.mm(b)
        with torch.no_grad():
            leaf.sub_(product.sum())  # 12 per replay
        same = torch.ops.aten.is_same_size(a, a)  # a result that is no tensor
    assert b.shape == (3, 2) and same is True
    graph.replay()
    graph.replay()
    assert product.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    assert leaf.tolist() == [-24.0, -24.0, -24.0]


@pytest.mark.parametrize("body", [
    lambda t: t.sum().item(),
    lambda t: t.tolist(),
    lambda t: t.numpy(),
    lambda t: t.cpu(),
    lambda t: torch.cuda.synchronize(),
    lambda t: t[t > 0],
    lambda t: t.__setitem__(t < 0, torch.ones(6)),  # six values: indexing, not masked_fill_
    lambda t: t.nonzero(),
    lambda t: torch.unique(t),
], ids=["item", "tolist", "numpy", "cpu", "synchronize", "boolean-mask-read", "boolean-mask-assign-values",
        "nonzero", "unique"])
def test_emulated_capture_refuses_what_waits_on_the_host(emulation, body):
    t = torch.arange(12.0).reshape(4, 3) - 5.5
    with pytest.raises(CaptureError, match="cannot be captured"), torch.cuda.graph(torch.cuda.CUDAGraph()):
        body(t)


def test_emulated_capture_allows_one_value_through_a_boolean_mask(emulation):
    """ATen turns it into masked_fill_, which CUDA captures."""
    t = torch.tensor([-1.0, 2.0])
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        t[t < 0] = 0.0
    assert t.tolist() == [-1.0, 2.0]
    graph.replay()
    assert t.tolist() == [0.0, 2.0]


def test_emulated_graph_is_captured_once_and_replayed_only_once_captured(emulation):
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(CaptureError, match="never captured"):
        graph.replay()
    t = torch.ones(2)
    with torch.cuda.graph(graph):
        t.add_(1)
    with pytest.raises(CaptureError, match="captured once"), torch.cuda.graph(graph):
        t.add_(1)


# The variant.

def test_captures_an_iteration_graph_and_a_forward_graph_without_synchronising(graphs):
    variant = make(Problem(**SMALL))
    assert len(graphs) == 2 and all(isinstance(g, EmulatedGraph) and g.ops for g in graphs)
    assert all(g.replays == 0 for g in graphs)
    assert set(variant.compile_seconds) == {"capture"}


def test_starts_at_the_initial_weights_after_warm_up_and_capture(graphs):
    problem = resolve("cuda_graph", Problem(**SMALL, dtype="float64"))
    variant = make(problem)
    weights = make_weights(problem)
    np.testing.assert_array_equal(variant.w1.numpy(), weights.w1)
    np.testing.assert_array_equal(variant.w2.numpy(), weights.w2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_first_iteration_applies_the_reference_gradients(graphs, dtype):
    problem = resolve("cuda_graph", Problem(**SMALL, dtype=dtype))
    variant = make(problem)
    variant.iteration()
    expected_loss, expected = reference_for("cuda_graph", problem)
    assert variant.loss() == pytest.approx(expected_loss, rel=TOLERANCE[dtype] * 10)
    actual = variant.gradients()
    assert set(actual) == {"w1", "w2"}
    for param, gradient in expected.items():
        assert relative_error(actual[param], gradient) < TOLERANCE[dtype], param
    expected_w1 = make_weights(problem).w1 - problem.learning_rate * expected["w1"]
    assert relative_error(variant.w1.double().numpy(), expected_w1) < TOLERANCE[dtype]


def test_replayed_losses_follow_torch_manual_in_float64(graphs):
    problem = Problem(dtype="float64")
    variant = make(problem)
    losses = []
    for _ in range(100):
        variant.iteration()
        losses.append(variant.loss())  # the loss before each update, as forward() gives it
    reference = trajectory("torch_manual", problem, 100)
    worst = max(abs(a - b) / abs(b) for a, b in zip(losses, reference))
    assert worst < 1e-9, f"cuda_graph drifts from torch_manual by {worst:.2e}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trains_to_where_torch_manual_ends(graphs, dtype):
    problem = Problem(dtype=dtype, seed=4)
    final = train(make(problem), 500)
    assert final < 1e-2
    twin = train(build("torch_manual", problem), 500)
    assert final == pytest.approx(twin, rel=FINAL_LOSS_TOLERANCE[dtype])


def test_forward_graph_reads_the_current_weights_and_changes_nothing(graphs):
    problem = Problem(dtype="float64")
    variant = make(problem)
    for _ in range(5):
        variant.iteration()
    w1 = variant.w1.clone()
    variant.forward()
    first = variant.loss()
    variant.forward()
    assert variant.loss() == first
    assert torch.equal(variant.w1, w1)
    assert first == pytest.approx(trajectory("torch_manual", problem, 6)[-1], rel=1e-12)
    variant.iteration()  # the next iteration's loss is the one forward just gave
    assert variant.loss() == pytest.approx(first, rel=1e-12)


def test_warms_up_on_a_side_stream_ordered_against_the_default_stream(graphs, emulation):
    """PyTorch's recipe: the side stream waits for the data, warms up, and capture waits for it."""
    make(Problem(**SMALL))
    (wait, side, default), ran, after, *captures = emulation.log
    assert (wait, default) == ("wait", "default") and side.startswith("side")
    warm_up_ops = ran[2]  # an iteration is about a dozen ops; capture needs at least one warm-up
    assert ran[:2] == ("ran", side) and warm_up_ops >= 10 * max(1, cuda_graph_module.WARMUP_ITERATIONS)
    assert after == ("wait", "default", side)
    assert captures == [("capture",), ("capture",)]


def test_gradients_stay_the_iteration_s_after_a_forward(graphs):
    problem = resolve("cuda_graph", Problem(**SMALL, dtype="float64"))
    variant = make(problem)
    variant.iteration()
    first = variant.gradients()
    variant.forward()
    after_forward = variant.gradients()
    for param in first:
        np.testing.assert_array_equal(after_forward[param], first[param])


def test_refuses_what_it_has_not_computed(graphs):
    variant = make(Problem(**SMALL))
    with pytest.raises(RuntimeError, match="no loss before"):
        variant.loss()
    variant.forward()
    with pytest.raises(RuntimeError, match="no gradients before"):
        variant.gradients()  # the iteration graph's outputs are still unwritten
    with pytest.raises(NotImplementedError, match="whole iteration"):
        variant.backward()
    with pytest.raises(NotImplementedError, match="whole iteration"):
        variant.step()


@pytest.mark.parametrize("phase", ["forward", "iteration"])
def test_benchmark_phases_replay_the_right_graph(graphs, phase):
    problem = Problem(dtype="float64")
    variant = make(problem)
    iteration_graph, forward_graph = graphs
    call = phase_call(variant, phase)
    rounds = 3
    for _ in range(rounds):
        if call.setup is not None:
            call.setup()
        call.target()
    if phase == "forward":  # each setup is a whole iteration, each timed call a forward
        assert (iteration_graph.replays, forward_graph.replays) == (rounds, rounds)
        expected = trajectory("torch_manual", problem, rounds + 1)[-1]
    else:
        assert (iteration_graph.replays, forward_graph.replays) == (rounds, 0)
        expected = trajectory("torch_manual", problem, rounds)[-1]
    assert variant.loss() == pytest.approx(expected, rel=1e-12)


def test_other_problem_sizes(graphs):
    problem = resolve("cuda_graph", Problem(n=256, d_in=1000, hidden=400, d_out=10, dtype="float64"))
    variant = make(problem)
    variant.iteration()
    expected_loss, _ = reference_for("cuda_graph", problem)
    assert variant.loss() == pytest.approx(expected_loss, rel=1e-12)
