"""What every subcommand's arguments share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

Subparsers = Any  # argparse's _SubParsersAction is private
UNSET: Any = object()  # "not given on the command line": keep the config's default


def split_size(text: str) -> int | None:
    """A split size: a positive int, or "all" (None: the whole split)."""
    return None if text.lower() in ("all", "none") else int(text)


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The arguments the user gave (not `UNSET`), as config fields."""
    return {n: getattr(args, n) for n in names if getattr(args, n, UNSET) is not UNSET}


def set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)
