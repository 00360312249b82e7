"""JSONL task files: parse them line by line, group the lines into a `Task` (by split or seed).

One JSON object per line gives an `Example` and, optionally, its split. Every problem in a file
is a `ValueError` naming the file and line, so a user can fix the file directly.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import SPLITS, Example, Task

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
