"""What every driver does the same way: collect a task's differences at several sites."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Sequence

from .._backend import HookedTransformer
from .._types import PairFormat
from ..collect import Differences, collect_differences
from ..methods import Method
from ..tasks import Task


def task_differences(
    model: HookedTransformer,
    task: Task,
    sites: Iterable[str],
    *,
    batch_size: int,
    seed: int = 0,
    keep_pairs: bool = False,
    keep_sides: bool = False,
    pair_format: PairFormat = "template",
    progress: bool = False,
) -> dict[str, Differences]:
    """Paired differences of `task.train` at `sites`, in one pass.

    `batch_size` counts texts per forward pass, as everywhere in the drivers; a pair is two texts,
    so collection takes half as many pairs per batch. Warnings about identical pairs are kept
    out of driver output (the records carry the count instead).
    """
    names = sorted(set(sites))
    if not names:
        return {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pairs (have identical|end in the same)")
        return collect_differences(
            model,
            task.train,
            site=names,
            batch_size=max(1, batch_size // 2),
            seed=seed,
            task=task.name,
            keep_pairs=keep_pairs,
            keep_sides=keep_sides,
            pair_format=pair_format,
            progress=progress,
        )


def method_differences(
    model: HookedTransformer,
    task: Task,
    methods: Sequence[Method],
    *,
    batch_size: int,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Differences]:
    """The differences every method reads, by `Method.differences_key`: one collection per pair
    format, each text's activations kept where a method needs them (ITI's probes)."""
    out: dict[str, Differences] = {}
    for fmt in dict.fromkeys(m.pair_format for m in methods):
        group = [m for m in methods if m.pair_format == fmt]
        diffs = task_differences(
            model,
            task,
            {m.site for m in group},
            batch_size=batch_size,
            seed=seed,
            keep_sides=any(m.needs_sides for m in group),
            pair_format=fmt,
            progress=progress,
        )
        sided = {m.site for m in group if m.needs_sides}
        for m in group:  # each text's activations only where a method reads them
            d = diffs[m.site]
            if m.site not in sided and d.positive is not None:
                d = dataclasses.replace(d, positive=None, negative=None)
            out[m.differences_key] = d
    return out
