"""Tasks: multiple-choice examples split into train (masks), dev (tuning) and test (reported once).

Entry points: `load_task` (built-in name, paper-benchmark name, further-benchmark name or
``.jsonl`` path, then `format_task`), `load_jsonl` for a user's own file, `format_task` for k-shot
and chat prompts, and `Task.with_limits` to take the first N rows of each split.

Modules: `core` (`Example`, `Task`, `PromptStyle`), `jsonl` (parsing a task file, the seeded
split), `format` (k-shot and chat prompts), `builtin` (the small tasks shipped as package data
under ``steerlens/data/``), `paper` (the five paper benchmarks, read from a data directory),
`mmlu` with `mmlu_disciplines`, `xnli`, `xcopa` and `truthfulqa` (further benchmarks from the
same directory, named in `benchmarks`), `files` (their row readers) and `items` (per-item fields
such as an MMLU item's subject).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .benchmarks import BENCHMARK_TASKS, is_benchmark_name, load_benchmark_task
from .builtin import BUILTIN_TASKS, load_builtin
from .core import PER_ITEM, PROMPT_STYLES, SPLITS, Example, PromptStyle, Task
from .format import DEMO_MODES, DEMO_SEPARATOR, DemoMode, format_task
from .items import per_item
from .jsonl import JsonlRecord, is_generation_file, load_jsonl, parse_jsonl, task_from_records
from .mmlu import MMLU_LABELS, MMLU_SUBJECTS, MMLU_TEMPLATE, load_mmlu
from .mmlu_disciplines import (
    DISCIPLINES,
    MMLU_DISCIPLINES,
    DisciplineScore,
    discipline_accuracy,
    discipline_of,
)
from .paper import (
    ENV_VAR,
    PAPER_LABELS,
    PAPER_SPLITS,
    PAPER_TASKS,
    TEMPLATES,
    load_paper_task,
    normalize_name,
    resolve_data_dir,
)
from .truthfulqa import TRUTHFULQA_TEMPLATE, MCItem, load_truthfulqa, truthfulqa_items
from .xcopa import XCOPA_LANGUAGES, load_xcopa
from .xnli import NLI_LABELS, NLI_TEMPLATE, XNLI_LANGUAGES, load_xnli

__all__ = [
    "BENCHMARK_TASKS",
    "BUILTIN_TASKS",
    "DEMO_MODES",
    "DEMO_SEPARATOR",
    "DISCIPLINES",
    "ENV_VAR",
    "MMLU_DISCIPLINES",
    "MMLU_LABELS",
    "MMLU_SUBJECTS",
    "MMLU_TEMPLATE",
    "NLI_LABELS",
    "NLI_TEMPLATE",
    "PAPER_LABELS",
    "PAPER_SPLITS",
    "PAPER_TASKS",
    "PER_ITEM",
    "PROMPT_STYLES",
    "SPLITS",
    "TEMPLATES",
    "TRUTHFULQA_TEMPLATE",
    "XCOPA_LANGUAGES",
    "XNLI_LANGUAGES",
    "DisciplineScore",
    "DemoMode",
    "Example",
    "JsonlRecord",
    "MCItem",
    "PromptStyle",
    "Task",
    "discipline_accuracy",
    "discipline_of",
    "format_task",
    "is_benchmark_name",
    "is_generation_file",
    "load_benchmark_task",
    "load_builtin",
    "load_jsonl",
    "load_mmlu",
    "load_paper_task",
    "load_task",
    "load_truthfulqa",
    "load_xcopa",
    "load_xnli",
    "normalize_name",
    "parse_jsonl",
    "per_item",
    "resolve_data_dir",
    "task_from_records",
    "task_names",
    "truthfulqa_items",
]


def task_names() -> tuple[str, ...]:
    """Names `load_task` accepts besides a path: the built-in tasks, the paper tasks, then the
    further benchmarks (``"mmlu:<subject>"`` also loads one MMLU subject)."""
    return (*BUILTIN_TASKS, *PAPER_TASKS, *BENCHMARK_TASKS)


def load_task(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    style: PromptStyle = "raw",
    n_shot: int = 0,
    tokenizer: Any = None,
    seed: int = 0,
    demos: DemoMode = "shared",
) -> Task:
    """Load a task by built-in name, benchmark name or ``.jsonl`` path, then format it.

    `data_dir` is used by the benchmarks only (see `steerlens.tasks.paper` and
    `steerlens.tasks.benchmarks`); `seed` fixes
    both the split of a JSONL file without split fields and the k-shot demonstrations, which
    `demos` shares between all prompts or draws per prompt (`format_task`).
    """
    key = os.fspath(name_or_path)
    if key in BUILTIN_TASKS:
        task = load_builtin(key)
    elif normalize_name(key) in PAPER_TASKS:
        task = load_paper_task(key, data_dir=data_dir)
    elif is_benchmark_name(key) and not key.endswith(".jsonl"):
        task = load_benchmark_task(key, data_dir=data_dir)
    elif key.endswith(".jsonl") or Path(key).is_file():
        if not Path(key).is_file():
            raise FileNotFoundError(
                f"task file {key!r} does not exist; give an existing .jsonl "
                f"path or one of the names {', '.join(task_names())}"
            )
        task = load_jsonl(key, seed=seed)
    else:
        raise ValueError(
            f"unknown task {key!r}; use one of {', '.join(task_names())}, "
            "or a path to a .jsonl file"
        )
    return format_task(task, style, tokenizer=tokenizer, n_shot=n_shot, seed=seed, demos=demos)
