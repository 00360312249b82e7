"""Command line: `steerlens run | reproduce | ablations | figures | math | transfer`.

All argument parsing lives in this package, one module per subcommand. Each subcommand builds its
driver's config dataclass from the arguments, with the defaults read from that dataclass, so a
default is written once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ._common import Subparsers
from .ablations import _ablations_main, _ablations_parser
from .figures import _figures_main, _figures_parser
from .math import _math_main, _math_parser
from .reproduce import _reproduce_main, _reproduce_parser, parse_grid, reproduce_config
from .run import _run_main, _run_parser
from .transfer import _transfer_main, _transfer_parser, transfer_config

USAGE = """Find the units of a language model that matter for a task, steer the model with them
(SADI, AUSteer and the baselines), and measure the result with intervals. Every command tunes on
a dev split and scores the test split once; `steerlens COMMAND --help` lists its options.
Start with `steerlens run` (the embedded SmolLM2-135M model on the built-in sentiment task)."""

Command = tuple[Callable[[Subparsers], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "run": (_run_parser, _run_main),
    "reproduce": (_reproduce_parser, _reproduce_main),
    "ablations": (_ablations_parser, _ablations_main),
    "figures": (_figures_parser, _figures_main),
    "math": (_math_parser, _math_main),
    "transfer": (_transfer_parser, _transfer_main),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlens", description=USAGE)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `steerlens` console script; user errors exit 2 with one line."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"steerlens {args.command}: error: {err}", file=sys.stderr)
        return 2


__all__ = [
    "COMMANDS",
    "build_parser",
    "main",
    "parse_grid",
    "reproduce_config",
    "transfer_config",
]
