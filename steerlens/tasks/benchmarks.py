"""Names of the further benchmarks (MMLU, XNLI, XCOPA, TruthfulQA) for `load_task`.

- ``"mmlu"``: all of `MMLU_SUBJECTS` pooled; ``"mmlu:<subject>"`` one subject;
  ``"mmlu:<a>,<b>"`` several; a ``"+released"`` suffix gives SADI's released rows
  (`load_mmlu(..., released_rows=True)`).
- ``"xnli-en"``, ``"xnli-fr"``, ``"xnli-es"``, ``"xnli-zh"``; ``"xcopa-fr"``.
- ``"truthfulqa"``: best answer vs incorrect answers (score MC1/MC2 with
  `steerlens.multiple_choice`).
"""

from __future__ import annotations

import os

from .core import Task
from .mmlu import load_mmlu
from .truthfulqa import load_truthfulqa
from .xcopa import XCOPA_LANGUAGES, load_xcopa
from .xnli import XNLI_LANGUAGES, load_xnli

BENCHMARK_TASKS: tuple[str, ...] = (
    "mmlu",
    *(f"xnli-{lang}" for lang in XNLI_LANGUAGES),
    *(f"xcopa-{lang}" for lang in XCOPA_LANGUAGES),
    "truthfulqa",
)
MMLU_PREFIX = "mmlu:"
RELEASED_SUFFIX = "+released"


def is_benchmark_name(name: str) -> bool:
    """Whether `name` is for `load_benchmark_task` (its subject or language is checked there)."""
    key = name.lower().removesuffix(RELEASED_SUFFIX)
    return key in BENCHMARK_TASKS or key.startswith((MMLU_PREFIX, "xnli-", "xcopa-"))


def load_benchmark_task(name: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    """Load benchmark `name` (see the module docstring) from `data_dir` (`resolve_data_dir`)."""
    key = name.lower()
    released = key.endswith(RELEASED_SUFFIX)
    key = key.removesuffix(RELEASED_SUFFIX)
    if key == "mmlu" or key.startswith(MMLU_PREFIX):
        subjects = key.removeprefix(MMLU_PREFIX).split(",") if key != "mmlu" else None
        return load_mmlu(subjects, data_dir, released_rows=released)
    if released:
        raise ValueError(f"{RELEASED_SUFFIX!r} applies to MMLU names only, got {name!r}")
    if key.startswith("xnli-"):
        return load_xnli(key.removeprefix("xnli-"), data_dir)
    if key.startswith("xcopa-"):
        return load_xcopa(key.removeprefix("xcopa-"), data_dir)
    if key == "truthfulqa":
        return load_truthfulqa(data_dir)
    raise ValueError(f"unknown benchmark {name!r}; use one of {', '.join(BENCHMARK_TASKS)}")
