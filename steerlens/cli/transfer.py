"""`steerlens transfer`: a method tuned on each source task, scored on every target task."""

from __future__ import annotations

import argparse

from ..evaluate import METRICS
from ..experiments.transfer import TransferConfig, run_transfer
from ..methods import METHOD_NAMES
from ..tasks import DEMO_MODES
from ._common import UNSET, Subparsers, given, set_threads, split_size


def _transfer_parser(sub: Subparsers) -> None:
    d = TransferConfig()
    p = sub.add_parser(
        "transfer",
        help="cross-task / cross-lingual transfer: a mask tuned on each source's dev split, "
        "scored on every target's test split",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        default=UNSET,
        metavar="TASK",
        help=f"source tasks, also the targets unless --targets (default {' '.join(d.tasks)}; "
        "e.g. copa xcopa-fr)",
    )
    p.add_argument("--targets", nargs="+", default=UNSET, metavar="TASK", help="target tasks")
    p.add_argument("--method", default=UNSET, choices=METHOD_NAMES, help=f"default {d.method}")
    p.add_argument("--model", default=UNSET, help="model name (default: embedded)")
    p.add_argument("--data", "--data-dir", dest="data_dir", default=UNSET)
    p.add_argument("--style", default=UNSET, choices=["raw", "chat"])
    p.add_argument("--n-shot", type=int, default=UNSET, help=f"default {d.n_shot}")
    p.add_argument("--demos", default=UNSET, choices=DEMO_MODES)
    p.add_argument("--n-train", type=split_size, default=UNSET, help=f"default {d.n_train}")
    p.add_argument("--n-dev", type=split_size, default=UNSET, help=f"default {d.n_dev}")
    p.add_argument("--n-test", type=split_size, default=UNSET, help=f"default {d.n_test}")
    p.add_argument(
        "--grid",
        default=UNSET,
        choices=["run", "quick", "reproduce"],
        help=f"the method's registry grid (default {d.grid})",
    )
    p.add_argument(
        "--metric",
        default=UNSET,
        choices=list(METRICS),
        help=f"dev metric that picks K and strength (default {d.metric})",
    )
    p.add_argument("--batch-size", type=int, default=UNSET)
    p.add_argument("--seed", type=int, default=UNSET)
    p.add_argument("--device", default=UNSET)
    p.add_argument("--out", default=UNSET, help=f"output directory (default {d.out})")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")


def transfer_config(args: argparse.Namespace) -> TransferConfig:
    """The `TransferConfig` of parsed `steerlens transfer` arguments."""
    names = ["method", "model", "data_dir", "style", "n_shot", "demos", "n_train", "n_dev"]
    names += ["n_test", "grid", "metric", "batch_size", "seed", "device", "out"]
    changes = given(args, names)
    for name in ("tasks", "targets"):
        if getattr(args, name) is not UNSET:
            changes[name] = tuple(getattr(args, name))
    return TransferConfig(**changes)


def _transfer_main(args: argparse.Namespace) -> int:
    config = transfer_config(args)
    set_threads(args.threads)
    result = run_transfer(config, progress=not args.no_progress)
    print(result.table)
    print(f"wrote {result.out}/results.md and results.csv ({result.seconds:.0f} s wall)")
    return 0
