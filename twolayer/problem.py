"""The problem every variant solves: sizes, hyperparameters, and the seeded data and weights.

Data and initial weights are drawn once in float64 from numpy's seeded generator and then cast,
so that every variant of a given dtype starts from bit-identical x, y, W1 and W2. Each array
begins on a 64-byte boundary (`twolayer.alignment`), so that where malloc happened to put it
cannot make a build fast or slow.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from twolayer.alignment import aligned_copy

DTYPES = ("float32", "float64")
Init = Literal["normal", "xavier_normal", "linear_default"]


@dataclass(frozen=True)
class Problem:
    """What is trained: the tutorial's network and its hyperparameters."""

    n: int = 64  # batch size N of the tutorial
    d_in: int = 1000  # input width D_in
    hidden: int = 100  # hidden width H
    d_out: int = 10  # output width D_out
    iterations: int = 500  # the tutorial logs iterations 0..500
    # None: each variant's own tutorial rate (1e-6 for the SGD sections, 1e-4 for Adam).
    learning_rate: float | None = None
    seed: int = 0  # the tutorial is unseeded; a seed makes runs and comparisons repeatable
    # None: each variant's tutorial dtype (numpy float64, torch float32).
    dtype: str | None = None

    def __post_init__(self) -> None:
        for field in ("n", "d_in", "hidden", "d_out"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {self.iterations!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.learning_rate is not None:
            rate = self.learning_rate
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"learning_rate must be a finite positive number, got {rate!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")

    @property
    def size_label(self) -> str:
        """`NxD_inxHxD_out`, the form `--sizes` takes."""
        return f"{self.n}x{self.d_in}x{self.hidden}x{self.d_out}"

    def with_defaults(self, dtype: str, learning_rate: float) -> Problem:
        """This problem with the unset dtype and learning rate filled in from a variant's tutorial."""
        return replace(
            self,
            dtype=self.dtype or dtype,
            learning_rate=self.learning_rate if self.learning_rate is not None else learning_rate,
        )


TUTORIAL = (64, 1000, 100, 10)  # N, D_in, H, D_out of the tutorial, where its SGD rate of 1e-6 was tuned
# Beyond this many elements of x, W1 and relu(x W1) together (8 MiB each in float64), the curvature
# is taken from its large-size formula, in microseconds, rather than from the arrays.
CURVATURE_ELEMENTS_LIMIT = 1 << 20


def sgd_rate_scale(problem: Problem) -> float:
    """How to scale the tutorial's SGD rate for another size so that training stays finite.

    SGD on the summed L2 loss is stable while the rate stays under about 2 / (the loss's largest
    curvature), and the tutorial's 1e-6 is near that edge at its own size (scaled with N * D_in * H
    alone, 118 of 360 small sizes went infinite within ten iterations). So the rate is scaled by
    the tutorial's `initial_curvature` over this size's: the same place relative to the edge.
    Where the curvature is larger than the tutorial's it is halved again, because the curvature
    grows in the first iterations (at 4096x1000x1000x10 the loss climbs 1000-fold before it falls
    without that). Exactly 1 at the tutorial's size.
    """
    if (problem.n, problem.d_in, problem.hidden, problem.d_out) == TUTORIAL:
        return 1.0
    ratio = initial_curvature(*TUTORIAL) / initial_curvature(problem.n, problem.d_in, problem.hidden, problem.d_out)
    return ratio if ratio >= 1 else ratio / 2


@functools.lru_cache(maxsize=64)
def initial_curvature(n: int, d_in: int, hidden: int, d_out: int) -> float:
    """A figure proportional to the largest curvature of the summed L2 loss at the start.

    The loss's Gauss-Newton curvature is at most twice the squared norm of the network's Jacobian,
    whose two blocks have norms |relu(x W1)| (for W2) and at most |x| |W2| (for W1), |.| the
    largest singular value; this returns |relu(x W1)|^2 + |x|^2 |W2|^2 (half that bound; the
    Hessian's other term, from the residuals, adds about a tenth at the start) for the seed-0 data
    and `randn` weights, the SGD sections' initialisation, whatever the run's seed, so that a size
    has one rate. Beyond `CURVATURE_ELEMENTS_LIMIT` the same figure from random-matrix theory: an
    a x b matrix of N(0, 1) draws has |.|^2 about (sqrt(a) + sqrt(b))^2, and relu(x W1) holds a
    mean of sqrt(D_in / 2 pi) in every entry (a rank-one part of N H D_in / 2 pi) plus spread. The
    formula is within 1.5% of the arrays' figure at the sweep's sizes beyond the tutorial's, 4.6%
    above it at the tutorial's, and far above it at tiny sizes (where it is not used).
    """
    if n * d_in + d_in * hidden + n * hidden > CURVATURE_ELEMENTS_LIMIT:
        spread = d_in * (0.5 - 1 / (2 * math.pi))
        relu_part = d_in / (2 * math.pi) * n * hidden + spread * (math.sqrt(n) + math.sqrt(hidden)) ** 2
        return relu_part + (math.sqrt(n) + math.sqrt(d_in)) ** 2 * (math.sqrt(hidden) + math.sqrt(d_out)) ** 2
    problem = Problem(n=n, d_in=d_in, hidden=hidden, d_out=d_out, seed=0, dtype="float64")
    x, weights = make_data(problem).x, make_weights(problem)
    return largest_singular_value_squared(np.maximum(x @ weights.w1, 0)) + \
        largest_singular_value_squared(x) * largest_singular_value_squared(weights.w2)


def largest_singular_value_squared(matrix: np.ndarray) -> float:
    """The largest eigenvalue of the smaller of the matrix's two Gram matrices, by Lanczos (ARPACK,
    from a fixed start, so that every process gets the same figure)."""
    from scipy.sparse.linalg import eigsh

    gram = matrix.T @ matrix if matrix.shape[1] <= matrix.shape[0] else matrix @ matrix.T
    if gram.shape[0] <= 2:
        return float(np.linalg.eigvalsh(gram)[-1])
    (value,) = eigsh(gram, k=1, which="LA", v0=np.ones(gram.shape[0]), return_eigenvectors=False)
    return float(value)


def parse_size(text: str) -> tuple[int, int, int, int]:
    """Parse `N x D_in x H x D_out`, e.g. `64x1000x100x10`."""
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"bad size {text!r}: expected four positive integers NxD_INxHxD_OUT, e.g. 64x1000x100x10")
    n, d_in, hidden, d_out = (int(p) for p in parts)
    return n, d_in, hidden, d_out


@dataclass(frozen=True)
class Data:
    x: np.ndarray  # (N, D_in)
    y: np.ndarray  # (N, D_out)


@dataclass(frozen=True)
class Weights:
    """Initial weights in the tutorial's (in, out) layout: h = x @ w1, y_pred = relu(h) @ w2."""

    w1: np.ndarray  # (D_in, H)
    w2: np.ndarray  # (H, D_out)
    b1: np.ndarray  # (H,), used only by the variant with bias
    b2: np.ndarray  # (D_out,)


def _resolved_dtype(problem: Problem) -> np.dtype:
    if problem.dtype is None:
        raise ValueError("problem.dtype is unset; call Problem.with_defaults first")
    return np.dtype(problem.dtype)


def make_data(problem: Problem) -> Data:
    """x and y drawn from N(0, 1), as `randn` does in every section of the tutorial."""
    rng = np.random.default_rng([problem.seed, 0])
    dtype = _resolved_dtype(problem)
    x = rng.standard_normal((problem.n, problem.d_in))
    y = rng.standard_normal((problem.n, problem.d_out))
    return Data(x=aligned_copy(x, dtype), y=aligned_copy(y, dtype))


def make_weights(problem: Problem, init: Init = "normal") -> Weights:
    """Initial weights by the tutorial's schemes, all from one seeded stream.

    normal: `randn` / `nn.init.normal_` (sections 1-7);
    xavier_normal: `nn.init.xavier_normal_` (section 8), the same draws scaled by sqrt(2/(fan_in+fan_out));
    linear_default: `nn.Linear`'s default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (section 9).
    Biases always follow `nn.Linear`'s default (section 6 keeps it).
    """
    dtype = _resolved_dtype(problem)
    shape1, shape2 = (problem.d_in, problem.hidden), (problem.hidden, problem.d_out)
    rng = np.random.default_rng([problem.seed, 1])
    if init == "normal":
        w1, w2 = rng.standard_normal(shape1), rng.standard_normal(shape2)
    elif init == "xavier_normal":
        w1 = rng.standard_normal(shape1) * math.sqrt(2.0 / sum(shape1))
        w2 = rng.standard_normal(shape2) * math.sqrt(2.0 / sum(shape2))
    elif init == "linear_default":
        w1 = rng.uniform(-1.0, 1.0, shape1) / math.sqrt(problem.d_in)
        w2 = rng.uniform(-1.0, 1.0, shape2) / math.sqrt(problem.hidden)
    else:
        raise ValueError(f"unknown init {init!r}")
    bias_rng = np.random.default_rng([problem.seed, 2])
    b1 = bias_rng.uniform(-1.0, 1.0, problem.hidden) / math.sqrt(problem.d_in)
    b2 = bias_rng.uniform(-1.0, 1.0, problem.d_out) / math.sqrt(problem.hidden)
    return Weights(*(aligned_copy(a, dtype) for a in (w1, w2, b1, b2)))
