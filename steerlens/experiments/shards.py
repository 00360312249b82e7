"""Shards of a reproduction: the plan split over machines (or a Slurm array), whole groups each.

A group, one (model, task, format), is the unit: its cells share the collected differences and
the unsteered passes. Every shard writes its cells as records under ``<out>/cells/`` exactly as
a serial run does (a record's `spec` names its whole configuration, so a stale or foreign record
is recomputed, never reused), and a final run without ``--shard`` over the same directory
computes nothing and assembles the tables from the records.
"""

from __future__ import annotations

from collections.abc import Sequence

from .cells import Cell

Group = tuple[str | None, str, int]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(1, 4)``: shards are numbered from 1 on the command line, from 0 here."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard {text!r}: give I/N, e.g. 1/2") from None
    if not sep or n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: give I/N with 1 <= I <= N")
    return i - 1, n


def groups_of(cells: Sequence[Cell]) -> list[Group]:
    """The (model, task, format) groups of `cells`, in plan order."""
    return list(dict.fromkeys(c.group for c in cells))


def shard_of(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard `index` (from 0) of `count`: whole groups, the i-th to shard i mod N."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    mine = set(groups_of(cells)[index::count])
    return [c for c in cells if c.group in mine]
