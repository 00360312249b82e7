"""JSONL task files: parse them line by line, group the lines into a `Task` (by split or seed).

One JSON object per line gives an `Example` and, optionally, its split. Every problem in a file
is a `ValueError` naming the file and line, so a user can fix the file directly.

A file is a *generation* task, scored on generated text (`evaluate_generation`), when its lines
have no ``"wrong"`` field or give a ``"match"`` rule: ``"number"`` (the last number of the text,
or the one after ``####``; the default when every answer holds a number) or ``"exact"`` (the
first line, normalised), optionally with ``"extract"``, a regular expression whose first group
(or whole match) is the answer. A line without ``"wrong"`` gets the most similar other answer
of its split as the negative of its contrastive pair (`tasks.negatives`, AUSteer's rule).
`Task.info["generation"]` then holds the rule and the generation lengths.
"""

from __future__ import annotations

import json
import os
import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..numbers import extract_number
from .core import SPLITS, Example, Task
from .negatives import NegativeRule, choose_negatives

_FIELDS: tuple[str, ...] = ("prompt", "answer")
_JSONL_FORMAT = (
    'one JSON object per line: {"prompt": str, "answer": str, "wrong": str | [str, ...], '
    '"split": "train" | "dev" | "test" (optional)}; for a task scored on generated text, '
    'leave out "wrong" or give "match": "number" | "exact" (and optionally "extract": regex)'
)
MATCHES: tuple[str, ...] = ("number", "exact")
# How a generation task from a file generates: exact answers are read from the first line.
GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "number": {"max_new_tokens": 50, "stop": []},
    "exact": {"max_new_tokens": 32, "stop": ["\n"]},
}


@dataclass(frozen=True)
class JsonlRecord:
    """One parsed JSONL line: its 1-based line number, texts, split and scoring rule.

    `wrong` is empty for a generation line whose negative is picked from its split; `match` and
    `extract` are None unless the line gives them.
    """

    line: int
    prompt: str
    answer: str
    wrong: tuple[str, ...]
    split: str | None
    match: str | None = None
    extract: str | None = None

    @property
    def generation(self) -> bool:
        return not self.wrong or self.match is not None or self.extract is not None

    @property
    def example(self) -> Example:
        """The line as an `Example` (a generation line without "wrong" has none yet)."""
        if not self.wrong:
            raise ValueError(f"line {self.line} has no wrong answer yet (a generation line)")
        return Example(self.prompt, self.answer, self.wrong)


def load_jsonl(
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    negatives: NegativeRule = "auto",
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
        negatives: how a generation line without "wrong" gets its negative
            (`tasks.negatives.choose_negatives`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {str(path)!r} does not exist or is not a file")
    records = parse_jsonl(path.read_bytes(), source=str(path))
    info = {"source": str(path)}
    return task_from_records(
        records,
        name or path.stem,
        source=str(path),
        seed=seed,
        fractions=fractions,
        info=info,
        negatives=negatives,
    )


def is_generation_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a JSONL task file scored on generated text (see the module docstring);
    False for anything else (a task name, a missing file)."""
    path = Path(path)
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    return any(r.generation for r in parse_jsonl(path.read_bytes(), source=str(path)))


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
    wrong_value = obj.get("wrong")
    if isinstance(wrong_value, list):
        if not wrong_value:
            raise ValueError(f"{where}: 'wrong' is an empty list; give at least one wrong answer")
        wrong = tuple(_check_str(w, "wrong", where) for w in wrong_value)
    else:
        wrong = () if "wrong" not in obj else (_check_str(wrong_value, "wrong", where),)
    match, extract = _rule(obj, where)
    split = obj.get("split")
    if "split" in obj and split not in SPLITS:
        raise ValueError(
            f"{where}: unknown split {split!r}; use one of {', '.join(SPLITS)} "
            "or leave the field out on every line"
        )
    record = JsonlRecord(number, prompt, answer, wrong, split, match, extract)
    if wrong:
        try:
            record.example  # noqa: B018  (validates the example)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
    return record


def _rule(obj: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    """A line's optional scoring rule: `match` and the `extract` regular expression."""
    match, extract = obj.get("match"), obj.get("extract")
    if "match" in obj and match not in MATCHES:
        raise ValueError(f"{where}: 'match' must be one of {', '.join(MATCHES)}, got {match!r}")
    if "extract" in obj:
        if not isinstance(extract, str) or not extract:
            raise ValueError(f"{where}: 'extract' must be a non-empty regular expression")
        try:
            re.compile(extract)
        except re.error as err:
            raise ValueError(
                f"{where}: 'extract' is not a valid regular expression ({err})"
            ) from None
    return match, extract


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
    negatives: NegativeRule = "auto",
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
        grouped = {s: [r for r in records if r.split == s] for s in SPLITS}
        info["splits_from"] = "file"
    else:
        grouped = _seeded_split(list(records), seed, fractions)
        info.update(splits_from="seed", seed=seed, fractions=tuple(fractions))
    if any(r.generation for r in records):
        _check_generation_file(records, source)
        splits = _generation_splits(grouped, source, info, negatives)
    else:
        splits = {s: tuple(r.example for r in rows) for s, rows in grouped.items()}
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


def _check_generation_file(records: Sequence[JsonlRecord], source: str) -> None:
    """A multiple-choice file with a line that lost its "wrong" is refused, not re-read as a
    generation task: that takes no "wrong" anywhere, or a "match" / "extract" rule."""
    if any(r.match is not None or r.extract is not None for r in records):
        return
    with_wrong = next((r for r in records if r.wrong), None)
    if with_wrong is not None:
        line = next(r.line for r in records if not r.wrong)
        raise ValueError(
            f"{source}, line {line}: missing field 'wrong' (line {with_wrong.line} has one); "
            f'expected {_JSONL_FORMAT}. To score the file on generated text, give "match"'
        )


def _generation_splits(
    grouped: dict[str, list[JsonlRecord]],
    source: str,
    info: dict[str, Any],
    negatives: NegativeRule,
) -> dict[str, tuple[Example, ...]]:
    """Examples of a generation file: one scoring rule for the file, negatives picked per split."""
    records = [r for rows in grouped.values() for r in rows]
    rule: dict[str, Any] = {}
    for name in ("match", "extract"):
        given = {getattr(r, name): r.line for r in records if getattr(r, name) is not None}
        if len(given) > 1:
            (a, line_a), (b, line_b) = list(given.items())[:2]
            raise ValueError(
                f"{source}: lines {line_a} and {line_b} give different {name!r} rules "
                f"({a!r}, {b!r}); a task is scored by one rule"
            )
        rule[name] = next(iter(given), None)
    if rule["match"] is None:
        rule["match"] = (
            "number" if all(extract_number(r.answer) is not None for r in records) else "exact"
        )
    numeric = rule["match"] == "number"
    if numeric:
        for r in records:
            if extract_number(r.answer) is None:
                raise ValueError(
                    f"{source}, line {r.line}: answer {r.answer!r} holds no number, but the task "
                    'is scored by number; give "match": "exact" for text answers'
                )
    out: dict[str, tuple[Example, ...]] = {}
    notes = set()
    for split, rows in grouped.items():
        missing = [r for r in rows if not r.wrong]
        picks: dict[int, str] = {}
        if missing:
            try:
                indices, note = choose_negatives(
                    [r.answer for r in rows], negatives, numeric=numeric
                )
            except ValueError as err:
                raise ValueError(
                    f"{source}: cannot pick negatives for the {split} split ({err}); "
                    f'give "wrong" on line {missing[0].line} or add lines with other answers'
                ) from None
            notes.add(note)
            picks = {i: rows[j].answer for i, j in enumerate(indices)}
        out[split] = tuple(
            Example(r.prompt, r.answer, r.wrong or (picks[i],)) for i, r in enumerate(rows)
        )
    info["generation"] = {**GENERATION_DEFAULTS[rule["match"]], **rule}
    info["negatives"] = " / ".join(sorted(notes)) or "given in the file"
    return out


def _seeded_split(
    examples: list[JsonlRecord], seed: int, fractions: Sequence[float]
) -> dict[str, list[JsonlRecord]]:
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
    return {s: [examples[i] for i in idx] for s, idx in cuts.items()}
