"""MMLU's four disciplines and accuracy grouped by them (SADI's Table 2: "weighted acc.").

`MMLU_DISCIPLINES` maps each of MMLU's 57 subjects to STEM, humanities, social sciences or
other, the grouping of Hendrycks et al.'s MMLU code (subject -> subcategory -> category). The
shared data directory holds 54 of them (not college_biology, high_school_geography,
high_school_us_history); the map keeps all 57 so that a fuller copy groups the same way.
`discipline_accuracy` pools a discipline's items, so its accuracy weights subjects by size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import Bool
from torch import Tensor

DISCIPLINES: tuple[str, ...] = ("STEM", "humanities", "social sciences", "other")

_BY_DISCIPLINE: dict[str, tuple[str, ...]] = {
    "STEM": (
        "abstract_algebra",
        "astronomy",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "electrical_engineering",
        "elementary_mathematics",
        "high_school_biology",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_mathematics",
        "high_school_physics",
        "high_school_statistics",
        "machine_learning",
    ),
    "humanities": (
        "formal_logic",
        "high_school_european_history",
        "high_school_us_history",
        "high_school_world_history",
        "international_law",
        "jurisprudence",
        "logical_fallacies",
        "moral_disputes",
        "moral_scenarios",
        "philosophy",
        "prehistory",
        "professional_law",
        "world_religions",
    ),
    "social sciences": (
        "econometrics",
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_macroeconomics",
        "high_school_microeconomics",
        "high_school_psychology",
        "human_sexuality",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
    ),
    "other": (
        "anatomy",
        "business_ethics",
        "clinical_knowledge",
        "college_medicine",
        "global_facts",
        "human_aging",
        "management",
        "marketing",
        "medical_genetics",
        "miscellaneous",
        "nutrition",
        "professional_accounting",
        "professional_medicine",
        "virology",
    ),
}

# subject -> discipline, subjects in alphabetical order
MMLU_DISCIPLINES: dict[str, str] = dict(
    sorted((s, d) for d, subjects in _BY_DISCIPLINE.items() for s in subjects)
)


class DisciplineScore(NamedTuple):
    """Pooled accuracy of one discipline's items (NaN when it has none), with its counts."""

    accuracy: float
    correct: int
    n: int


def discipline_of(subject: str) -> str:
    """The discipline of MMLU `subject` (``"abstract_algebra"`` -> ``"STEM"``)."""
    if subject not in MMLU_DISCIPLINES:
        raise ValueError(
            f"unknown MMLU subject {subject!r}; valid subjects: {', '.join(MMLU_DISCIPLINES)}"
        )
    return MMLU_DISCIPLINES[subject]


def discipline_accuracy(
    correct: Bool[Tensor, " item"] | Bool[np.ndarray, " item"] | Sequence[bool],
    subjects: Sequence[str],
) -> dict[str, DisciplineScore]:
    """Accuracy per discipline (`DISCIPLINES` order) over the items' `correct` flags, pooled over
    each discipline's items, so a subject counts by its number of items.

    `subjects[i]` is item i's subject, e.g. ``per_item(task, "subject", "test")``.

    >>> discipline_accuracy([True, False, True], ["anatomy", "virology", "astronomy"])["other"]
    DisciplineScore(accuracy=0.5, correct=1, n=2)
    """
    flags = np.asarray(correct.cpu() if isinstance(correct, Tensor) else correct)
    if flags.ndim != 1 or flags.dtype != bool:
        raise ValueError(f"correct must be one bool flag per item, got {flags.dtype} {flags.shape}")
    if isinstance(subjects, str) or len(subjects) != len(flags):
        raise ValueError(
            f"got {len(flags)} correct flags but "
            f"{'a string' if isinstance(subjects, str) else len(subjects)} subjects; "
            "give one subject per item"
        )
    of_item = np.array([discipline_of(s) for s in subjects], dtype=object)
    out = {}
    for discipline in DISCIPLINES:
        mine = flags[of_item == discipline] if len(flags) else flags
        hits = int(mine.sum())
        out[discipline] = DisciplineScore(
            hits / len(mine) if len(mine) else math.nan, hits, int(len(mine))
        )
    return out
