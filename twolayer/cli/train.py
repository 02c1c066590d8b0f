"""`twolayer train`: train one variant and print its loss log, as the tutorial does."""

from __future__ import annotations

import argparse

from twolayer.cli.args import (
    UsageError,
    non_negative_int,
    positive_float,
    positive_int,
)
from twolayer.devices import KNOWN_DEVICES
from twolayer.problem import DTYPES, Problem
from twolayer.train import train
from twolayer.variants import VARIANTS, build, resolve, variant_device_reason


def add_parser(commands) -> None:
    training = commands.add_parser("train", help="train one variant and print its loss log, as the tutorial does")
    training.add_argument("variant", metavar="VARIANT", choices=list(VARIANTS), help=", ".join(VARIANTS))
    training.add_argument("--device", default="cpu", choices=KNOWN_DEVICES)
    training.add_argument("--dtype", choices=DTYPES, default=None, help="default: the variant's tutorial dtype")
    training.add_argument("--iterations", type=non_negative_int, default=Problem.iterations)
    training.add_argument("--seed", type=non_negative_int, default=Problem.seed)
    training.add_argument("--every", type=positive_int, default=50, help="log the loss every E iterations")
    training.add_argument("--learning-rate", type=positive_float, default=None,
                          help="default: the variant's tutorial rate")
    training.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    reason = variant_device_reason(args.variant, args.device)
    if reason is not None:
        raise UsageError(reason)
    problem = resolve(
        args.variant,
        Problem(iterations=args.iterations, seed=args.seed, dtype=args.dtype, learning_rate=args.learning_rate),
    )
    print(f"# {args.variant} on {args.device}, {problem.dtype}, learning rate {problem.learning_rate:g}, seed {problem.seed}")
    variant = build(args.variant, problem, args.device)
    final = train(variant, problem.iterations, every=args.every, log=lambda it, loss: print(it, loss))
    print(f"final loss {final}")
    return 0
