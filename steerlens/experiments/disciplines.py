"""MMLU by discipline for `steerlens run`: each row's test accuracy per discipline.

When a task's test items carry subjects (``per_item(task, "subject", "test")``: MMLU), every
finished record's per-item test flags are grouped by discipline (`discipline_accuracy`: STEM,
humanities, social sciences, other; "pooled" = all items, so each discipline and subject counts
by its number of items), under each protocol. SADI's Table 2 numbers (LLaMA2-7B-Chat, weighted
accuracy under its string metric) stand beside the rows it reports, for the pooled task "mmlu".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._io import csv_text
from ..evaluate import METRICS
from ..methods import BASELINE
from ..stats import str_to_flags
from ..tasks import DISCIPLINES, PER_ITEM, Task, discipline_accuracy, per_item
from .records import Record
from .report import SHORT, pct

POOLED = "pooled"
_SADI_T2 = "SADI Table 2 (LLaMA2-7B-Chat, weighted acc.)"
# method -> (STEM, humanities, social sciences, other), %, in `DISCIPLINES` order
_T2: dict[str, tuple[float, float, float, float]] = {
    BASELINE: (34.26, 46.68, 54.62, 49.71),
    "sadi-hidden": (35.03, 48.99, 55.82, 48.51),
    "sadi-neuron": (37.46, 48.83, 55.74, 50.65),
    "sadi-head": (39.35, 49.76, 56.21, 52.31),
}
DISCIPLINE_PUBLISHED: Mapping[str, Mapping[str, float]] = {
    m: dict(zip(DISCIPLINES, v, strict=True)) for m, v in _T2.items()
}
"""SADI Table 2 by method and discipline (%); the released variants share their method's."""

CSV_COLUMNS = (
    *("model", "task", "format", "method", "protocol", "discipline"),
    *("accuracy", "correct", "n", "published", "published_source"),
)


def item_subjects(task: Task, split: str = "test") -> tuple[str, ...] | None:
    """Each item's subject in `split`, or None when the task's items carry none (not MMLU)."""
    if "subject" not in task.info.get(PER_ITEM, {}):
        return None
    return tuple(str(s) for s in per_item(task, "subject", split))


def _published(method: str, task: str, discipline: str) -> float | None:
    """SADI's Table 2 number for the cell: all subjects pooled only (not one subject's task)."""
    if task not in ("mmlu", "mmlu+released"):
        return None
    return DISCIPLINE_PUBLISHED.get(method.removesuffix("-released"), {}).get(discipline)


def discipline_rows(records: Sequence[Record], subjects: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (finished record, protocol, discipline and "pooled"): accuracy, hits, items.

    A protocol whose flags a record lacks, or whose flags do not line up with `subjects`, is an
    error rather than a wrong table.
    """
    rows = []
    for r in records:
        if r.test is None:
            continue
        for proto in METRICS:
            text = r.test.flags(proto)
            if not text:
                continue  # `paper` of records written before it existed
            if len(text) != len(subjects):
                raise ValueError(
                    f"{r.method}: {len(text)} test flags for {len(subjects)} subjects; the "
                    "records and the task's test split differ"
                )
            scores = discipline_accuracy(str_to_flags(text), list(subjects))
            hits, n = sum(s.correct for s in scores.values()), len(subjects)
            cells = [*((d, s.accuracy, s.correct, s.n) for d, s in scores.items())]
            cells.append((POOLED, hits / n if n else math.nan, hits, n))
            for discipline, acc, correct, count in cells:
                value = _published(r.method, r.task, discipline)
                rows.append(
                    {
                        "model": r.model,
                        "task": r.task,
                        "format": r.format,
                        "method": r.method,
                        "protocol": proto,
                        "discipline": discipline,
                        "accuracy": acc,
                        "correct": correct,
                        "n": count,
                        "published": value,
                        "published_source": "" if value is None else _SADI_T2,
                    }
                )
    return rows


def discipline_table(rows: Sequence[Mapping[str, Any]], protocol: str) -> str:
    """Markdown: methods x disciplines (item counts in the header) under `protocol`, SADI's
    Table 2 number in brackets where it reports one."""
    mine = [r for r in rows if r["protocol"] == protocol]
    columns = [*DISCIPLINES, POOLED]
    counts = {r["discipline"]: r["n"] for r in mine}
    head = " | ".join(f"{d} (n={counts.get(d, 0)})" for d in columns)
    lines = [f"| method | {head} |", "|---" * (len(columns) + 1) + "|"]
    by = {(r["method"], r["discipline"]): r for r in mine}
    for method in dict.fromkeys(r["method"] for r in mine):
        cells = []
        for d in columns:
            r = by[(method, d)]
            paper = "" if r["published"] is None else f" ({r['published']:.1f})"
            cells.append(f"{pct(r['accuracy'])}{paper}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def discipline_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The results.md section: one methods x disciplines table per protocol."""
    parts = [
        "## MMLU by discipline\n",
        "Test accuracy per discipline (STEM, humanities, social sciences, other; `pooled` = "
        "every test item, so disciplines and subjects count by their items), n = test items. "
        f"In brackets: {_SADI_T2}, under SADI's string metric. With `--n-test` the first rows "
        "of the pooled split are kept, so late subjects may be missing.\n",
    ]
    for proto in METRICS:
        if any(r["protocol"] == proto for r in rows):
            parts.append(f"Test accuracy, `{SHORT[proto]}`:\n")
            parts.append(discipline_table(rows, proto) + "\n")
    return "\n".join(parts)


def disciplines_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of `discipline_rows` as CSV with `CSV_COLUMNS`."""
    return csv_text(rows, CSV_COLUMNS)
