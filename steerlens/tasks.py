"""Tasks: multiple-choice examples split into train (masks), dev (tuning) and test (reported once).

An `Example` is one prompt with its correct answer and one or more wrong answers. Answers carry
their own leading whitespace exactly as they follow the prompt (``" Positive"`` after
``"Answer:"``, ``"A"`` after ``"Answer:\\n"``), so the contrastive texts are ``prompt + answer``
and the label tokenization is explicit and testable.

Entry points: `load_task` (built-in name, paper-benchmark name or ``.jsonl`` path, then
`format_task`), `load_jsonl` for a user's own file, `format_task` for k-shot and chat prompts,
and `Task.with_limits` to take the first N rows of each split.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PromptStyle = Literal["raw", "chat"]
PROMPT_STYLES: tuple[str, ...] = ("raw", "chat")


@dataclass(frozen=True)
class Example:
    """One multiple-choice item: `prompt` + `answer` is right, `prompt` + any of `wrong` is not."""

    prompt: str
    answer: str
    wrong: tuple[str, ...]

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
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]
    style: str = "raw"
    n_shot: int = 0
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for split in ("train", "dev", "test"):
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
        return dataclasses.replace(
            self, train=kept["train"], dev=kept["dev"], test=kept["test"], info=info
        )


def _not_none(d: dict[str, int | None]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------------------------
# JSONL: a user's own task file
# --------------------------------------------------------------------------------------------

SPLITS: tuple[str, ...] = ("train", "dev", "test")
_FIELDS: tuple[str, ...] = ("prompt", "answer", "wrong")
_JSONL_FORMAT = (
    'one JSON object per line: {"prompt": str, "answer": str, "wrong": str | [str, ...], '
    '"split": "train" | "dev" | "test" (optional)}'
)


@dataclass(frozen=True)
class JsonlRecord:
    """One parsed JSONL line: its 1-based line number, the example and its split (or None)."""

    line: int
    example: Example
    split: str | None


def load_jsonl(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> Task:
    """Load a task from a JSONL file of examples (see `_JSONL_FORMAT`).

    Lines that give a ``"split"`` keep it; a file without split fields is shuffled with `seed`
    and cut into train / dev / test by `fractions`. Every problem in the file is a
    `ValueError` naming the file and line, so a user can fix the file directly.

    Args:
        path: the ``.jsonl`` file.
        name: task name; defaults to the file's stem.
        seed: shuffle seed, used only when the file has no split fields.
        fractions: train, dev, test fractions (non-negative, summing to 1).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {str(path)!r} does not exist or is not a file")
    records = parse_jsonl(path.read_bytes(), source=str(path))
    info = {"source": str(path)}
    return task_from_records(
        records, name or path.stem, source=str(path), seed=seed, fractions=fractions, info=info
    )


def parse_jsonl(data: bytes, *, source: str) -> list[JsonlRecord]:
    """Parse JSONL bytes into records; each line is decoded on its own so errors name the line."""
    records = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # tolerate a UTF-8 byte-order mark
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{source}, line {number}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                "save the file as UTF-8"
            ) from None
        if not text.strip():
            continue
        records.append(_parse_line(text, number, source))
    return records


def _parse_line(text: str, number: int, source: str) -> JsonlRecord:
    where = f"{source}, line {number}"
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{where}: not valid JSON ({err}); expected {_JSONL_FORMAT}") from None
    if not isinstance(obj, dict):
        raise ValueError(
            f"{where}: expected a JSON object, got {type(obj).__name__}; expected {_JSONL_FORMAT}"
        )
    missing = [f for f in _FIELDS if f not in obj]
    if missing:
        raise ValueError(
            f"{where}: missing field(s) {', '.join(map(repr, missing))}; expected {_JSONL_FORMAT}"
        )
    prompt = _check_str(obj["prompt"], "prompt", where)
    answer = _check_str(obj["answer"], "answer", where)
    wrong_value = obj["wrong"]
    if isinstance(wrong_value, list):
        if not wrong_value:
            raise ValueError(f"{where}: 'wrong' is an empty list; give at least one wrong answer")
        wrong = tuple(_check_str(w, "wrong", where) for w in wrong_value)
    else:
        wrong = (_check_str(wrong_value, "wrong", where),)
    split = obj.get("split")
    if "split" in obj and split not in SPLITS:
        raise ValueError(
            f"{where}: unknown split {split!r}; use one of {', '.join(SPLITS)} "
            "or leave the field out on every line"
        )
    try:
        example = Example(prompt=prompt, answer=answer, wrong=wrong)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    return JsonlRecord(number, example, split)


def _check_str(value: Any, field_name: str, where: str) -> str:
    """A JSON string that can be encoded as UTF-8 (no lone surrogate escapes such as \\ud800)."""
    if not isinstance(value, str):
        kind = "a string or a list of strings" if field_name == "wrong" else "a string"
        raise ValueError(f"{where}: {field_name!r} must be {kind}, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{where}: {field_name!r} holds an unpaired surrogate escape; "
            "remove it or use the real character"
        ) from None
    if not value.strip():
        raise ValueError(f"{where}: {field_name!r} is empty; give non-blank text")
    return value


def task_from_records(
    records: Sequence[JsonlRecord],
    name: str,
    *,
    source: str,
    seed: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    info: dict[str, Any] | None = None,
) -> Task:
    """Group parsed records into a `Task`: by their split fields, or by a seeded shuffle."""
    if not records:
        raise ValueError(
            f"{source}: no examples (the file is empty or blank); expected {_JSONL_FORMAT}"
        )
    with_split = [r for r in records if r.split is not None]
    info = dict(info or {})
    if with_split and len(with_split) != len(records):
        first_missing = next(r for r in records if r.split is None)
        raise ValueError(
            f"{source}, line {first_missing.line}: no 'split' field, but line "
            f"{with_split[0].line} has one; give 'split' on every line or on none"
        )
    if with_split:
        splits = {s: tuple(r.example for r in records if r.split == s) for s in SPLITS}
        info["splits_from"] = "file"
    else:
        splits = _seeded_split([r.example for r in records], seed, fractions)
        info.update(splits_from="seed", seed=seed, fractions=tuple(fractions))
    for split in ("train", "test"):
        if not splits[split]:
            raise ValueError(
                f"{source}: the {split} split is empty; add {split} examples "
                "(or, without split fields, more lines / a larger fraction)"
            )
    if not splits["dev"]:
        warnings.warn(
            f"{source}: the dev split is empty, so nothing can be tuned on it",
            UserWarning,
            stacklevel=3,
        )
    return Task(name, splits["train"], splits["dev"], splits["test"], info=info)


def _seeded_split(
    examples: list[Example], seed: int, fractions: Sequence[float]
) -> dict[str, tuple[Example, ...]]:
    """Shuffle deterministically with `seed`, then cut by `fractions` (test gets the rest)."""
    fr = tuple(fractions)
    numbers = all(isinstance(f, (int, float)) and f >= 0 for f in fr)  # `f >= 0` rejects NaN
    if len(fr) != 3 or not numbers or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions={fractions!r}: give three non-negative numbers "
            "(train, dev, test) that sum to 1"
        )
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_train = round(fr[0] * n)
    n_dev = min(round(fr[1] * n), n - n_train)
    cuts = {
        "train": order[:n_train],
        "dev": order[n_train : n_train + n_dev],
        "test": order[n_train + n_dev :],
    }
    return {s: tuple(examples[i] for i in idx) for s, idx in cuts.items()}


# --------------------------------------------------------------------------------------------
# Prompt formats: k-shot demonstrations and chat templates
# --------------------------------------------------------------------------------------------

DEMO_SEPARATOR = "\n\n"


def format_task(
    task: Task,
    style: str = "raw",
    *,
    tokenizer: Any = None,
    n_shot: int = 0,
    seed: int = 0,
) -> Task:
    """Return a new `Task` whose prompts are in `style` with `n_shot` train demonstrations.

    Demonstrations are drawn per example from the train split with a seed derived from
    (`seed`, split, index), so they never include the example itself and do not change when a
    split is truncated. ``"raw"`` joins ``prompt + answer`` demos and the prompt with blank
    lines; ``"chat"`` passes them through ``tokenizer.apply_chat_template`` as earlier
    user/assistant turns and strips the answers' leading whitespace, because the assistant
    turn starts on a fresh line.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {', '.join(PROMPT_STYLES)}")
    if isinstance(n_shot, bool) or not isinstance(n_shot, int) or n_shot < 0:
        raise ValueError(f"n_shot={n_shot!r}: give a non-negative int")
    if task.style != "raw" or task.n_shot != 0:
        raise ValueError(
            f"{task!r} is already formatted; call format_task on the raw, "
            "zero-shot task (for example from load_task(name))"
        )
    if style == "chat" and not callable(getattr(tokenizer, "apply_chat_template", None)):
        raise ValueError(
            "style='chat' needs a tokenizer with apply_chat_template, for example "
            "format_task(task, 'chat', tokenizer=model.tokenizer)"
        )
    if n_shot and len(task.train) <= n_shot:
        raise ValueError(
            f"n_shot={n_shot} needs more than {n_shot} train examples; "
            f"{task.name!r} has {len(task.train)}"
        )
    splits = {
        split: tuple(
            _format_example(ex, split, i, task.train, style, tokenizer, n_shot, seed)
            for i, ex in enumerate(getattr(task, split))
        )
        for split in SPLITS
    }
    info = {**task.info, "format": {"style": style, "n_shot": n_shot, "seed": seed}}
    return Task(task.name, splits["train"], splits["dev"], splits["test"], style, n_shot, info)


def _demos(
    split: str, index: int, train: tuple[Example, ...], n_shot: int, seed: int
) -> list[Example]:
    """`n_shot` train examples, fixed by (seed, split, index); never the train example itself."""
    if n_shot == 0:
        return []
    pool = [j for j in range(len(train)) if not (split == "train" and j == index)]
    rng = random.Random(f"{seed}/{split}/{index}")  # str seeds hash with SHA-512: stable
    return [train[j] for j in rng.sample(pool, n_shot)]


def _format_example(
    ex: Example,
    split: str,
    index: int,
    train: tuple[Example, ...],
    style: str,
    tokenizer: Any,
    n_shot: int,
    seed: int,
) -> Example:
    demos = _demos(split, index, train, n_shot, seed)
    if style == "raw":
        prompt = DEMO_SEPARATOR.join([d.prompt + d.answer for d in demos] + [ex.prompt])
        return Example(prompt, ex.answer, ex.wrong)
    messages = []
    for d in demos:
        messages += [
            {"role": "user", "content": d.prompt},
            {"role": "assistant", "content": d.answer.lstrip()},
        ]
    messages.append({"role": "user", "content": ex.prompt})
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if not isinstance(prompt, str):
        raise ValueError(
            "tokenizer.apply_chat_template(..., tokenize=False) returned "
            f"{type(prompt).__name__}, not str; pass a tokenizer with a chat template"
        )
    try:
        return Example(prompt, ex.answer.lstrip(), tuple(w.lstrip() for w in ex.wrong))
    except ValueError as err:
        raise ValueError(
            f"chat style strips the answers' leading whitespace, which made two "
            f"options equal: {err}"
        ) from None


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------


def task_names() -> tuple[str, ...]:
    """Names `load_task` accepts besides a path: the built-in tasks, then the paper tasks."""
    from steerlens.builtin_tasks import BUILTIN_TASKS
    from steerlens.paper_tasks import PAPER_TASKS

    return (*BUILTIN_TASKS, *PAPER_TASKS)


def load_task(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    style: str = "raw",
    n_shot: int = 0,
    tokenizer: Any = None,
    seed: int = 0,
) -> Task:
    """Load a task by built-in name, paper-benchmark name or ``.jsonl`` path, then format it.

    `data_dir` is used by the paper tasks only (see `steerlens.paper_tasks`); `seed` fixes
    both the split of a JSONL file without split fields and the k-shot demonstrations.
    """
    from steerlens.builtin_tasks import BUILTIN_TASKS, load_builtin
    from steerlens.paper_tasks import PAPER_TASKS, load_paper_task, normalize_name

    key = os.fspath(name_or_path)
    if key in BUILTIN_TASKS:
        task = load_builtin(key)
    elif normalize_name(key) in PAPER_TASKS:
        task = load_paper_task(key, data_dir=data_dir)
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
    return format_task(task, style, tokenizer=tokenizer, n_shot=n_shot, seed=seed)
