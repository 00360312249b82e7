"""Command line: `steerlens run` (the main job) and other subcommands.

Each subcommand is a pair (add its arguments to a subparser, run it from the parsed arguments)
registered in `COMMANDS`; a subcommand's module may live elsewhere in the package.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from . import ablations, figure_set, reproduce
from .run import METHOD_NAMES, RunConfig, run_job


def _limit(text: str) -> int | None:
    return None if text.lower() in ("all", "none") else int(text)


def _run_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="all methods on one task: tune on dev, score test, write a table")
    d = RunConfig()
    p.add_argument("--model", default=None, help="TransformerLens name or local HF directory "
                   "(default: embedded SmolLM2-135M-Instruct)")  # fmt: skip
    p.add_argument("--task", default=d.task, help="built-in name (sentiment, larger, arithmetic), "
                   "paper benchmark (copa, sst2, boolq, storycloze, winogrande) or a .jsonl path")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="benchmark data directory (or $STEERLENS_DATA)")
    p.add_argument("--style", default=d.style, choices=["raw", "chat"], help="prompt format")
    p.add_argument("--n-shot", type=int, default=d.n_shot, help="train demonstrations per prompt")
    p.add_argument("--n-train", type=_limit, default=d.n_train, help="contrastive pairs ('all')")
    p.add_argument("--n-dev", type=_limit, default=d.n_dev, help="dev items for tuning ('all')")
    p.add_argument("--n-test", type=_limit, default=d.n_test, help="test items ('all')")
    p.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES)
    p.add_argument("--metric", default=d.metric, choices=["accuracy", "restricted"],
                   help="dev metric that picks K and strength")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--out", default=d.out, help="output directory")


def _run_main(args: argparse.Namespace) -> int:
    config = RunConfig(
        model=args.model, task=args.task, data_dir=args.data_dir, style=args.style,
        n_shot=args.n_shot, n_train=args.n_train, n_dev=args.n_dev, n_test=args.n_test,
        methods=tuple(args.methods), metric=args.metric, batch_size=args.batch_size,
        seed=args.seed, device=args.device, out=args.out,
    )  # fmt: skip
    start = time.perf_counter()
    result = run_job(config)
    print(result["table"])
    print(f"\nwrote {result['out']}/results.md and results.csv "
          f"({time.perf_counter() - start:.0f} s in all)")  # fmt: skip
    return 0


Command = tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]  # type: ignore[type-arg]
COMMANDS: dict[str, Command] = {
    "run": (_run_parser, _run_main),
    "figures": figure_set.COMMAND,
    "reproduce": reproduce.COMMAND,
    "ablations": ablations.COMMAND,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `steerlens` console script."""
    parser = argparse.ArgumentParser(prog="steerlens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"steerlens {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
