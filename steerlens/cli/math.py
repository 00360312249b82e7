"""`steerlens math`: math word problems answered by generation, steered (SVAMP, MAWPS, GSM8K)."""

from __future__ import annotations

import argparse
import dataclasses

from ..experiments.generation_job import GenerationConfig, run_generation
from ..methods import METHOD_NAMES
from ..tasks.math import MATH_TASKS
from ..tasks.negatives import NEGATIVE_RULES
from ._common import UNSET, Subparsers, given, set_threads, split_size
from .reproduce import parse_grid


def _math_parser(sub: Subparsers) -> None:
    d = GenerationConfig()
    p = sub.add_parser(
        "math",
        help="math word problems by generation: tune each method on dev, score test once, "
        "with the side effects on the text",
    )
    p.add_argument("--task", default=UNSET, choices=MATH_TASKS, help=f"default {d.task}")
    p.add_argument("--data", "--data-dir", dest="data_dir", default=UNSET)
    p.add_argument("--model", default=UNSET, help="model name (default: embedded)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=UNSET,
        choices=METHOD_NAMES,
        help=f"default {' '.join(d.methods)}; others use their quick grid",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="METHOD=SETTINGS:STRENGTHS",
        help="a method's grid, e.g. sadi-head=4:2 (repeatable); METHOD=run: its quick grid",
    )
    p.add_argument(
        "--negatives",
        default=UNSET,
        choices=NEGATIVE_RULES,
        help="wrong answers of the pairs: MiniLM (AUSteer's; optional extra), the nearest "
        "other number, or auto (MiniLM when installed)",
    )
    p.add_argument("--n-train", type=split_size, default=UNSET, help=f"default {d.n_train}")
    p.add_argument("--n-dev", type=split_size, default=UNSET, help=f"default {d.n_dev}")
    p.add_argument("--n-test", type=split_size, default=UNSET, help=f"default {d.n_test}")
    p.add_argument(
        "--max-new-tokens", type=int, default=UNSET, help="default: the task's (AUSteer's)"
    )
    p.add_argument(
        "--max-perplexity-ratio",
        type=float,
        default=UNSET,
        help="choose only among cells whose median perplexity is at most this times the "
        "unsteered text's",
    )
    p.add_argument("--batch-size", type=int, default=UNSET)
    p.add_argument("--device", default=UNSET)
    p.add_argument("--out", default=UNSET, help=f"output directory (default {d.out})")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")


def math_config(args: argparse.Namespace) -> GenerationConfig:
    """The `GenerationConfig` of parsed `steerlens math` arguments."""
    names = ["task", "data_dir", "model", "n_train", "n_dev", "n_test", "max_new_tokens"]
    changes = given(
        args, [*names, "negatives", "max_perplexity_ratio", "batch_size", "device", "out"]
    )
    if args.methods is not UNSET:
        changes["methods"] = tuple(args.methods)
    if args.grid:
        grids = dict(GenerationConfig().grids)
        for name, grid in map(parse_grid, args.grid):
            if grid is None:
                grids.pop(name, None)
            else:
                settings, strengths = grid
                grids[name] = (settings or (), strengths)
        changes["grids"] = grids
    return dataclasses.replace(GenerationConfig(), **changes)


def _math_main(args: argparse.Namespace) -> int:
    config = math_config(args)
    set_threads(args.threads)
    result = run_generation(config, progress=not args.no_progress)
    print(f"wrote {result.out}/results.md and results.json ({result.seconds:.0f} s wall)")
    return 0
