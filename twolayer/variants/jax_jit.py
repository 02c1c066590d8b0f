"""Beyond the tutorial (optional extra `jax`): the network in JAX, `jax.jit`-compiled.

forward: the loss under `jax.vjp`, which keeps the residuals backward needs (as autograd's graph
does); backward: the pullback of that forward, jitted; step: the SGD update, jitted;
iteration: `value_and_grad` and the update in one jitted function. JAX dispatches asynchronously:
`synchronize` blocks until the last results are ready, so the clock is read after the work.
"""

from __future__ import annotations

import os
import time

import numpy as np

from twolayer.problem import Problem, make_data, make_weights

# JAX would otherwise reserve 75% of a GPU's memory at start-up, leaving torch a quarter.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
try:
    import jax
    import jax.numpy as jnp
except ImportError:  # the registry reports the variant as unavailable, with the reason
    jax = jnp = None

if jax is not None:
    jax.config.update("jax_enable_x64", True)  # float64 on request, as every variant offers
    # Full-precision float32 matmuls, as torch does by default (JAX uses TF32 on recent GPUs).
    jax.config.update("jax_default_matmul_precision", "highest")

    def _loss(w1, w2, x, y):
        return jnp.sum((jnp.maximum(x @ w1, 0) @ w2 - y) ** 2)

    @jax.jit
    def _forward(w1, w2, x, y):
        return jax.vjp(lambda a, b: _loss(a, b, x, y), w1, w2)

    @jax.jit
    def _backward(pullback, loss):
        return pullback(jnp.ones_like(loss))

    @jax.jit
    def _step(w1, w2, grad_w1, grad_w2, learning_rate):
        return w1 - learning_rate * grad_w1, w2 - learning_rate * grad_w2

    @jax.jit
    def _iteration(w1, w2, x, y, learning_rate):
        loss, (grad_w1, grad_w2) = jax.value_and_grad(_loss, argnums=(0, 1))(w1, w2, x, y)
        return loss, grad_w1, grad_w2, w1 - learning_rate * grad_w1, w2 - learning_rate * grad_w2


def jax_absent_reason(device: str) -> str | None:
    if jax is None:
        return "jax is not installed (pip install 'twolayer[jax]')"
    if device == "cuda":
        try:
            jax.devices("gpu")
        except RuntimeError:
            return "jax has no gpu backend here (install jax[cuda12])"
    return None


def jax_device(device: str):
    platform = {"cpu": "cpu", "cuda": "gpu"}[device]
    return jax.devices(platform)[0]


class JaxJit:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        if jax is None:
            raise ValueError("jax_jit needs jax: pip install 'twolayer[jax]'")
        self.device = device
        target = jax_device(device)
        data, weights = make_data(problem), make_weights(problem)
        put = lambda array: jax.device_put(np.asarray(array), target)  # noqa: E731
        self.x, self.y, self.w1, self.w2 = put(data.x), put(data.y), put(weights.w1), put(weights.w2)
        self.learning_rate = put(np.asarray(problem.learning_rate, dtype=data.x.dtype))  # on the same device
        self._last = self._loss = None
        start = time.perf_counter()
        self._warm_up()
        self.compile_seconds = {"jit": time.perf_counter() - start}

    @staticmethod
    def reset_compile_caches() -> None:
        """Forget compiled executables, so the next instance's warm-up compiles again."""
        jax.clear_caches()

    def _warm_up(self) -> None:
        """Compile every function once on the initial weights, leaving the state as it was."""
        loss, pullback = _forward(self.w1, self.w2, self.x, self.y)
        grad_w1, grad_w2 = _backward(pullback, loss)
        jax.block_until_ready(_step(self.w1, self.w2, grad_w1, grad_w2, self.learning_rate))
        jax.block_until_ready(_iteration(self.w1, self.w2, self.x, self.y, self.learning_rate))

    def forward(self) -> None:
        self._loss, self._pullback = _forward(self.w1, self.w2, self.x, self.y)
        self._last = self._loss

    def backward(self) -> None:
        self.grad_w1, self.grad_w2 = _backward(self._pullback, self._loss)
        self._last = self.grad_w1

    def step(self) -> None:
        self.w1, self.w2 = _step(self.w1, self.w2, self.grad_w1, self.grad_w2, self.learning_rate)
        self._last = self.w2  # one call's outputs are ready together: waiting on one suffices

    def iteration(self) -> None:
        self._loss, self.grad_w1, self.grad_w2, self.w1, self.w2 = _iteration(
            self.w1, self.w2, self.x, self.y, self.learning_rate)
        self._last = self.w2

    def loss(self) -> float:
        return float(self._loss)

    def gradients(self) -> dict[str, np.ndarray]:
        return {"w1": np.asarray(self.grad_w1, dtype=np.float64), "w2": np.asarray(self.grad_w2, dtype=np.float64)}

    def synchronize(self) -> None:
        if self._last is not None:
            jax.block_until_ready(self._last)
