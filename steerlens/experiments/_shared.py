"""What every driver does the same way: collect a task's differences at several sites."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from transformer_lens import HookedTransformer

from ..collect import Differences, collect_differences
from ..tasks import Task


def task_differences(
    model: HookedTransformer,
    task: Task,
    sites: Iterable[str],
    *,
    batch_size: int,
    seed: int = 0,
    keep_pairs: bool = False,
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
            progress=progress,
        )
