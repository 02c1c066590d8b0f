"""Variants reproduce the tutorial's behaviour: equal trajectories where the maths is equal, and convergence."""

import math

import pytest
from device_params import DEVICES

from twolayer.problem import Problem
from twolayer.train import NonFiniteLoss, train
from twolayer.variants import VARIANTS, build, resolve, run_iteration, variant_device_reason

SAME_MATHS = ["numpy_manual", "torch_manual", "torch_autograd", "torch_optim", "torch_mseloss", "nn_sequential_optim"]
BITWISE_PAIRS = [("torch_manual", "torch_autograd"), ("torch_optim", "torch_mseloss")]
# Each variant beyond the tutorial, and the eager variant whose maths it shares.
EAGER_TWINS = {"numpy_fused": "numpy_manual", "torch_compile": "torch_manual", "cuda_graph": "torch_manual",
               "torch_compile_graphs": "torch_manual", "jax_jit": "numpy_manual"}
# Final-loss agreement after 500 iterations: float64 rounding differs only in the last bits;
# float32 loss sits near 1e-5 after a 12-decade fall, so reordered sums may differ by a percent.
FINAL_LOSS_TOLERANCE = {"float64": 1e-9, "float32": 0.02}


def skip_unless_usable(name, device):
    reason = variant_device_reason(name, device)
    if reason is not None:
        pytest.skip(reason)


def trajectory(name, problem, iterations, device="cpu", after_forward=None):
    """The losses of `iterations` iterations; `after_forward(variant)` is called after each forward."""
    variant = build(name, resolve(name, problem), device)
    losses = []
    for _ in range(iterations):
        variant.forward()
        losses.append(variant.loss())
        if after_forward is not None:
            after_forward(variant)
        variant.backward()
        variant.step()
    return losses


def test_same_maths_same_trajectory_in_float64():
    problem = Problem(dtype="float64")
    reference = trajectory("numpy_manual", problem, 100)
    assert reference[-1] < reference[0] * 1e-3  # it did train
    for name in SAME_MATHS[1:]:
        losses = trajectory(name, problem, 100)
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses, reference))
        assert worst < 1e-9, f"{name} drifts from numpy_manual by {worst:.2e}"


def clamp_passes_gradient_at_zero() -> bool:
    """The tutorial's hand-written backward keeps the gradient where h is exactly 0
    (`grad_h[h < 0] = 0`); torch's `clamp(min=0)` did too up to torch 2.13, and gives none there
    from 2.14, as relu does."""
    import torch

    point = torch.zeros(1, requires_grad=True)
    point.clamp(min=0).sum().backward()
    return point.grad.item() == 1.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("first, second", BITWISE_PAIRS)
def test_bitwise_identical_pairs(first, second, dtype):
    problem = Problem(dtype=dtype)
    if first == "torch_manual" and not clamp_passes_gradient_at_zero():
        # bit for bit up to the first forward whose h holds an exact zero: there the hand-written
        # backward passes the gradient and autograd's clamp, in this torch, does not
        zeros = []
        losses = trajectory(first, problem, 100, after_forward=lambda v: zeros.append(bool((v.h == 0).any())))
        cut = zeros.index(True) + 1 if True in zeros else None
        assert losses[:cut] == trajectory(second, problem, 100)[:cut]
        return
    assert trajectory(first, problem, 100) == trajectory(second, problem, 100)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_converges_like_the_tutorial(name, seed):
    """The tutorial's SGD logs fall from about 3e7 to 1e-5..1e-3 at 500; Adam's by 3 to 11 decades."""
    info = VARIANTS[name]
    skip_unless_usable(name, info.devices[0])
    variant = build(name, Problem(seed=seed), info.devices[0])
    logged = {}
    final = train(variant, 500, log=logged.__setitem__)
    assert sorted(logged) == list(range(0, 501, 50))
    if info.optimizer == "sgd":
        assert 1e6 < logged[0] < 1e8
        assert final < 1e-2
    else:
        assert final < logged[0] * 1e-3
    assert all(logged[a] > logged[b] for a, b in zip(range(0, 451, 50), range(50, 501, 50)) if logged[b] > 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(EAGER_TWINS))
def test_beyond_variants_end_where_their_eager_twin_ends(name, dtype):
    device = VARIANTS[name].devices[0]
    skip_unless_usable(name, device)
    problem = Problem(dtype=dtype, seed=4)
    final = train(build(name, problem, device), 500)
    twin = train(build(EAGER_TWINS[name], problem, device), 500)
    assert final == pytest.approx(twin, rel=FINAL_LOSS_TOLERANCE[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_every_torch_variant_trains_on_each_device(device):
    for name, info in VARIANTS.items():
        if device not in info.devices or variant_device_reason(name, device):
            continue
        variant = build(name, Problem(seed=3), device)
        variant.forward()
        start = variant.loss()
        for _ in range(20):
            run_iteration(variant)
        variant.forward()
        assert variant.loss() < start, name


def test_divergence_stops_training_with_a_clear_error():
    variant = build("torch_manual", Problem(learning_rate=10.0))
    with pytest.raises(NonFiniteLoss, match="loss became (inf|nan) at iteration"):
        train(variant, 50)


def test_training_returns_the_loss_after_the_last_update():
    problem = Problem(dtype="float64", iterations=3)
    logged = []
    final = train(build("numpy_manual", problem), 3, every=1, log=lambda it, loss: logged.append((it, loss)))
    assert [it for it, _ in logged] == [0, 1, 2, 3]
    assert final == logged[-1][1]
    assert math.isclose(final, trajectory("numpy_manual", problem, 4)[-1], rel_tol=0, abs_tol=0)
