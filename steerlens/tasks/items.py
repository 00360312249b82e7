"""Per-item fields of a task (an MMLU item's subject, a TruthfulQA item's true answers).

A loader stores them in ``task.info["per_item"]`` as ``{field: {split: tuple}}``, aligned with
the split's examples; `Task.with_limits` cuts them with the split and `format_task` keeps them.
`per_item` reads one back and refuses a tuple that no longer lines up with its split.
"""

from __future__ import annotations

from typing import Any

from .core import PER_ITEM, SPLITS, Task


def per_item(task: Task, field: str, split: str) -> tuple[Any, ...]:
    """The values of per-item `field` for the examples of `split` (``"train"``/``"dev"``/``"test"``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    fields = task.info.get(PER_ITEM, {})
    if field not in fields:
        have = ", ".join(sorted(fields)) or "none"
        raise ValueError(f"{task.name!r} has no per-item field {field!r} (it has: {have})")
    values = tuple(fields[field][split])
    n = len(getattr(task, split))
    if len(values) != n:
        raise ValueError(
            f"{task.name!r}: per-item {field!r} of {split} has {len(values)} values for {n} "
            "examples; cut a task with Task.with_limits, not by slicing its splits"
        )
    return values
