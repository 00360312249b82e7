"""`steerlens figures`: the paper-style figure set and its index."""

from __future__ import annotations

import argparse

from ..experiments import (
    FiguresConfig,
    make_figure_sets,
)
from ._common import Subparsers


def _figures_parser(sub: Subparsers) -> None:
    d = FiguresConfig()
    p = sub.add_parser("figures", help="regenerate the paper-style figure set and its index")
    p.add_argument(
        "--out", default="figures", help="output directory; other tasks go to OUT/<task>"
    )
    p.add_argument(
        "--task",
        nargs="+",
        default=None,
        help="built-in tasks, paper benchmarks or "
        f".jsonl paths (default: {d.task}, plus every benchmark with --data-dir)",
    )
    p.add_argument("--data-dir", default=None, help="benchmark data directory (paper tasks)")
    p.add_argument("--model", default=None, help="model name or local HF directory")
    p.add_argument(
        "--overlap-tasks",
        nargs="+",
        default=None,
        help="tasks compared in the overlap figure (default: the built-in tasks)",
    )
    p.add_argument(
        "--n-shot",
        type=int,
        default=None,
        help="shared demonstrations before every prompt (default: 4 for the built-in sentiment "
        "task, 0 otherwise); with k > 0 the set opens with a positive control",
    )
    p.add_argument("--n-train", type=int, default=d.n_train, help="contrastive pairs")
    p.add_argument("--n-dev", type=int, default=d.n_dev, help="dev items (tuning)")
    p.add_argument("--n-test", type=int, default=d.n_test, help="test items")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=list(d.seeds), help="pair-subsample seeds"
    )
    p.add_argument(
        "--formats",
        nargs="*",
        default=list(d.formats),
        choices=["png", "svg"],
        help="static formats besides HTML (none: HTML only)",
    )


def _figures_main(args: argparse.Namespace) -> int:
    config = FiguresConfig(
        data_dir=args.data_dir,
        model_name=args.model,
        overlap_tasks=tuple(args.overlap_tasks) if args.overlap_tasks else None,
        n_shot=args.n_shot,
        n_train=args.n_train,
        n_dev=args.n_dev,
        n_test=args.n_test,
        seeds=tuple(args.seeds),
        formats=tuple(args.formats),
    )
    for out, entries in make_figure_sets(args.out, args.task, config).items():
        for e in entries:
            print(f"{out}/{e.name}: {', '.join(p.suffix[1:] for p in e.paths)}")
    return 0
