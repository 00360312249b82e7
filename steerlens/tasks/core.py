"""The task types: `Example` (one multiple-choice item) and `Task` (its train / dev / test splits).

An `Example` is one prompt with its correct answer and one or more wrong answers. Answers carry
their own leading whitespace exactly as they follow the prompt (``" Positive"`` after
``"Answer:"``, ``"A"`` after ``"Answer:\\n"``), so the contrastive texts are ``prompt + answer``
and the label tokenization is explicit and testable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

PromptStyle = Literal["raw", "chat"]
PROMPT_STYLES: tuple[PromptStyle, ...] = ("raw", "chat")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
# `Task.info[PER_ITEM]`: {field: {split: tuple aligned with that split's examples}}, such as each
# MMLU item's subject; `Task.with_limits` cuts these tuples with their splits.
PER_ITEM = "per_item"


@dataclass(frozen=True)
class Example:
    """One multiple-choice item: `prompt` + `answer` is right, `prompt` + any of `wrong` is not."""

    prompt: str
    answer: str
    wrong: Sequence[str]  # one string or several; stored as a tuple

    def __post_init__(self) -> None:
        if isinstance(self.wrong, str):
            object.__setattr__(self, "wrong", (self.wrong,))
        else:
            object.__setattr__(self, "wrong", tuple(self.wrong))
        for name, value in (("prompt", self.prompt), ("answer", self.answer)):
            if not isinstance(value, str):
                raise TypeError(f"Example.{name} must be a string, got {type(value).__name__}")
        if not self.prompt.strip():
            raise ValueError("Example.prompt is empty")
        if not self.answer.strip():
            raise ValueError(f"Example.answer is empty (prompt {self.prompt[:60]!r})")
        if not self.wrong:
            raise ValueError(f"Example has no wrong answer (prompt {self.prompt[:60]!r})")
        for w in self.wrong:
            if not isinstance(w, str) or not w.strip():
                raise ValueError(f"Example has an empty or non-string wrong answer: {w!r}")
            if w == self.answer:
                raise ValueError(
                    f"Example has a wrong answer equal to the correct one ({w!r}); "
                    f"prompt {self.prompt[:60]!r}"
                )

    @property
    def options(self) -> tuple[str, ...]:
        """All answer options, the correct one first."""
        return (self.answer, *self.wrong)


@dataclass(frozen=True)
class Task:
    """A named task with train / dev / test splits of `Example`s.

    `style` records how the prompts were formatted (``"raw"`` paper template or ``"chat"``) and
    `n_shot` how many train demonstrations precede each prompt.
    """

    name: str
    train: Sequence[Example]  # any sequence; stored as a tuple (as are dev and test)
    dev: Sequence[Example]
    test: Sequence[Example]
    style: PromptStyle = "raw"
    n_shot: int = 0
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for split in SPLITS:
            object.__setattr__(self, split, tuple(getattr(self, split)))

    def __repr__(self) -> str:
        return (
            f"Task({self.name!r}, train={len(self.train)}, dev={len(self.dev)}, "
            f"test={len(self.test)}, style={self.style!r}, n_shot={self.n_shot})"
        )

    def with_limits(
        self, train: int | None = None, dev: int | None = None, test: int | None = None
    ) -> Task:
        """Return a copy whose splits keep only their first N examples (``None`` keeps all).

        Runs subsample from the start of a split so that runs with the same limits score the
        same rows and stay comparable.
        """
        limits = {"train": train, "dev": dev, "test": test}
        kept: dict[str, tuple[Example, ...]] = {}
        for split, limit in limits.items():
            rows: tuple[Example, ...] = getattr(self, split)
            if limit is None:
                kept[split] = rows
                continue
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"with_limits({split}={limit!r}): give a non-negative int or None")
            kept[split] = rows[:limit]
        info = {**self.info, "limits": {**self.info.get("limits", {}), **_not_none(limits)}}
        if PER_ITEM in self.info:  # per-item fields stay aligned with the kept rows
            info[PER_ITEM] = {
                name: {split: tuple(values)[: len(kept[split])] for split, values in by.items()}
                for name, by in self.info[PER_ITEM].items()
            }
        return dataclasses.replace(
            self, train=kept["train"], dev=kept["dev"], test=kept["test"], info=info
        )


def _not_none(d: dict[str, int | None]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v is not None}
