"""TruthfulQA as a `Task` (best answer vs incorrect answers) and as `MCItem`s for MC1/MC2.

File: ``truthfulqa/TruthfulQA.csv``, the v1 CSV (header ``Type, Category, Question, Best Answer,
Correct Answers, Incorrect Answers, Source``; answers ``;``-separated) without the curated MC
choice sets, so MC1 is the best answer against every incorrect answer and MC2 all correct
against all incorrect answers (shared/data/README.md). Splits: rows 0-299 train, 300-399 dev,
400-816 test.

Prompt: the standard TruthfulQA question-answer format, ``"Q: {question}\\nA:"``, each answer
following with one leading space. Answers are stripped, blanks dropped, duplicates kept once,
and each ends with a period (TruthfulQA's own MC scoring closes its answers so), unless
``add_periods=False``. An answer listed both as correct and as incorrect (two dev rows do) is
dropped from both: it cannot separate them.

SADI ran TruthfulQA 5-shot (its Table 3; the prompts are not in its released code, methods.md
§1.5). This loader is zero-shot; ``load_task("truthfulqa", n_shot=5)`` prefixes five train
items ``Q: ...\\nA: <best answer>`` drawn per item, which is not SADI's unknown prompt.

For contrastive pairs each `Example` is (prompt, best answer, wrong = the incorrect answers).
The options share first tokens (``" The ..."``), so `evaluate`'s first-token metrics do not
apply; score with `truthfulqa_items` and `steerlens.multiple_choice.mc_scores`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .core import PER_ITEM, Example, Task
from .files import Row, build, data_file, read_csv, take
from .items import per_item
from .paper import resolve_data_dir

TRUTHFULQA_TEMPLATE = "Q: {question}\nA:"
TRUTHFULQA_FILE = "truthfulqa/TruthfulQA.csv"
TRUTHFULQA_SPLITS: dict[str, tuple[int, int | None]] = {
    "train": (0, 300),
    "dev": (300, 400),
    "test": (400, None),
}
_COLUMNS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice item: `prompt`, its `true` answers (the best one first) and `false`
    answers, each written as it follows the prompt (``" Paris."``)."""

    prompt: str
    true: Sequence[str]  # stored as tuples
    false: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "true", tuple(self.true))
        object.__setattr__(self, "false", tuple(self.false))
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"MCItem.prompt must be a non-empty string, got {self.prompt!r}")
        for name in ("true", "false"):
            answers = getattr(self, name)
            if not answers:
                raise ValueError(f"MCItem has no {name} answers (prompt {self.prompt[:60]!r})")
            if any(not isinstance(a, str) or not a.strip() for a in answers):
                raise ValueError(f"MCItem has an empty or non-string {name} answer: {answers!r}")

    @property
    def best(self) -> str:
        """The best true answer (MC1 compares it with every false one)."""
        return str(self.true[0])


def load_truthfulqa(
    data_dir: str | os.PathLike[str] | None = None, *, add_periods: bool = True
) -> Task:
    """TruthfulQA as task ``"truthfulqa"``; ``per_item(task, "true_answers", split)`` holds
    every item's correct answers, the best one first (see `truthfulqa_items`)."""
    root = resolve_data_dir(data_dir)
    path = data_file(root, TRUTHFULQA_FILE, f"{TRUTHFULQA_FILE} (see shared/data/README.md)")
    rows = read_csv(path, header=True)
    if rows and (missing := [c for c in _COLUMNS if c not in rows[0][1]]):
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}")
    splits: dict[str, tuple[Example, ...]] = {}
    true: dict[str, tuple[tuple[str, ...], ...]] = {}
    for split, (start, stop) in TRUTHFULQA_SPLITS.items():
        built = build(
            take(rows, start, stop, path, "truthfulqa"),
            lambda row: _item(row, add_periods),
            path,
            "truthfulqa",
        )
        splits[split] = tuple(ex for ex, _ in built)
        true[split] = tuple(t for _, t in built)
    info = {
        "source": "truthfulqa",
        "data_dir": str(root),
        "template": TRUTHFULQA_TEMPLATE,
        "add_periods": add_periods,
        "note": "zero-shot; SADI ran TruthfulQA 5-shot with prompts it did not release",
        PER_ITEM: {"true_answers": true},
    }
    return Task("truthfulqa", splits["train"], splits["dev"], splits["test"], info=info)


def truthfulqa_items(task: Task, split: str) -> list[MCItem]:
    """`split` of a TruthfulQA task (k-shot or chat formatted, limited or not) as `MCItem`s."""
    trues = per_item(task, "true_answers", split)  # checks the split and the alignment
    examples: tuple[Example, ...] = getattr(task, split)
    items = []
    for ex, true in zip(examples, trues, strict=True):
        spaced = ex.answer.startswith(" ")  # chat style strips the answers' leading space
        rest = [t if spaced else t.lstrip() for t in true[1:]]
        items.append(MCItem(ex.prompt, (ex.answer, *rest), ex.wrong))
    return items


def split_answers(text: str, *, add_periods: bool = True) -> list[str]:
    """``"a; b ;; a"`` -> ``["a.", "b."]``: stripped, blanks dropped, first occurrence kept."""
    out: list[str] = []
    for part in text.split(";"):
        answer = _close(part.strip(), add_periods)
        if answer and answer not in out:
            out.append(answer)
    return out


def _item(row: Row, add_periods: bool) -> tuple[Example, tuple[str, ...]]:
    question = row["Question"].strip()
    best = _close(row["Best Answer"].strip(), add_periods)
    if not question or not best:
        raise ValueError("empty question or best answer")
    correct = split_answers(row["Correct Answers"], add_periods=add_periods)
    incorrect = split_answers(row["Incorrect Answers"], add_periods=add_periods)
    both = (set(correct) & set(incorrect)) - {best}
    true = [best, *(a for a in correct if a != best and a not in both)]
    false = [a for a in incorrect if a != best and a not in both]
    if not false:
        raise ValueError("no incorrect answers")
    prompt = TRUTHFULQA_TEMPLATE.format(question=question)
    example = Example(prompt, " " + best, tuple(" " + a for a in false))
    return example, tuple(" " + a for a in true)


def _close(answer: str, add_periods: bool) -> str:
    return answer + "." if add_periods and answer and not answer.endswith(".") else answer
