"""Math word problems answered by generation (SVAMP, MAWPS, GSM8K), as AUSteer runs them.

Templates and generation lengths are AUSteer's (its `main_test.py`, ``../shared/docs/methods.md``
§2.6); splits are ``shared/data/README.md``'s. Each item is an `Example` whose answer is the gold
text (SVAMP: the number, `" 51.0"`; MAWPS and GSM8K: a worked solution ending in `#### n`), so
the gold number is `numbers.extract_number(example.answer)`, and whose wrong answer is, by
AUSteer's rule, the most similar *other* answer of the same split with a different number: by
the MiniLM sentence encoder when its optional wheel is installed, else the answer whose number is
nearest (`tasks.negatives`); `Task.info["negatives"]` records which.

`Task.info["generation"]` holds how to generate (`max_new_tokens`, `stop`) for `evaluate_generation`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..numbers import extract_number
from .core import Example, Task
from .negatives import NegativeRule, choose_negatives
from .paper import resolve_data_dir

MATH_TASKS: tuple[str, ...] = ("svamp", "mawps", "gsm8k")

SVAMP_TEMPLATE = (
    "Answer the following grade-school math word problem. Reply with only the final answer as "
    "a number.\nQuestion: {body} {question}\nAnswer:"
)
STEPWISE_TEMPLATE = (
    "Answer the grade school math word problem below, using step-by-step problem-solving "
    'process. Print the final answer after "####".\nquestion: {question}\nanswer: \n'
)
# AUSteer's LLaMA lengths: SVAMP 50 new tokens, MAWPS 250; GSM8K as MAWPS (its code only).
GENERATION: dict[str, dict[str, Any]] = {
    "svamp": {"max_new_tokens": 50, "stop": ["\nQuestion:", "Answer"]},
    "mawps": {"max_new_tokens": 250, "stop": ["\nquestion:"]},
    "gsm8k": {"max_new_tokens": 250, "stop": ["\nquestion:"]},
}
MATH_SPLITS: dict[str, dict[str, tuple[str, int, int | None]]] = {
    "svamp": {
        "train": ("svamp/SVAMP.json", 0, 600),
        "dev": ("svamp/SVAMP.json", 600, 700),
        "test": ("svamp/SVAMP.json", 700, 1000),
    },
    "mawps": {
        "train": ("mawps/train.csv", 0, 1200),
        "dev": ("mawps/train.csv", 1200, 1537),
        "test": ("mawps/dev.csv", 0, None),
    },
    "gsm8k": {
        "train": ("gsm8k/train.jsonl", 0, 1500),
        "dev": ("gsm8k/train.jsonl", 1500, 2000),
        "test": ("gsm8k/test.jsonl", 0, None),
    },
}


def _number_text(value: float) -> str:
    return str(float(value))  # AUSteer's SVAMP golds read "51.0"


def plain_number(value: float) -> str:
    """`value` without an exponent or trailing zeros: 504.0 -> "504", 1e6 -> "1000000".

    >>> plain_number(504.0), plain_number(1e6), plain_number(2.50)
    ('504', '1000000', '2.5')
    """
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _svamp(row: dict[str, Any]) -> tuple[str, str]:
    prompt = SVAMP_TEMPLATE.format(body=row["Body"].strip(), question=row["Question"].strip())
    return prompt, " " + _number_text(row["Answer"])


def _mawps(row: dict[str, Any]) -> tuple[str, str]:
    question = row["Question"]
    for i, number in enumerate(row["Numbers"].split()):
        question = question.replace(f"number{i}", plain_number(float(number)))
    prompt = STEPWISE_TEMPLATE.format(question=question.strip())
    # the file's equations are prefix expressions over masked numbers, not a worked solution:
    # the answer text is the final line alone
    return prompt, f"#### {plain_number(float(row['Answer']))}"


def _gsm8k(row: dict[str, Any]) -> tuple[str, str]:
    return STEPWISE_TEMPLATE.format(question=row["question"].strip()), row["answer"].strip()


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (see shared/data/README.md)")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list")
        return rows
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(csv.DictReader(io.StringIO(text)))


def with_negatives(
    items: Sequence[tuple[str, str]], negatives: NegativeRule = "auto"
) -> tuple[list[Example], str]:
    """`Example`s of `(prompt, answer)` items, each wrong answer the most similar other answer
    (`negatives.choose_negatives`, compared by gold number), and the rule's note."""
    if any(extract_number(answer) is None for _, answer in items):
        raise ValueError("an answer without a number: the file does not match the README")
    picks, note = choose_negatives([a for _, a in items], negatives, numeric=True)
    return [Example(p, a, (items[j][1],)) for (p, a), j in zip(items, picks, strict=True)], note


def load_math_task(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    n_train: int | None = None,
    n_dev: int | None = None,
    n_test: int | None = None,
    negatives: NegativeRule = "auto",
) -> Task:
    """Load SVAMP, MAWPS or GSM8K with the README's splits and AUSteer's templates.

    `n_train`, `n_dev`, `n_test` keep the first rows of each split (None: all); negatives are
    picked among the rows kept (`negatives="auto"`: by MiniLM when installed, else the nearest
    other gold number; see `tasks.negatives`).
    """
    key = name.lower().replace("-", "")
    if key not in MATH_TASKS:
        raise ValueError(f"unknown math task {name!r}; use one of {', '.join(MATH_TASKS)}")
    root = resolve_data_dir(data_dir)
    build = {"svamp": _svamp, "mawps": _mawps, "gsm8k": _gsm8k}[key]
    splits: dict[str, list[Example]] = {}
    limits = {"train": n_train, "dev": n_dev, "test": n_test}
    notes = set()
    for split, (rel, start, stop) in MATH_SPLITS[key].items():
        rows = _rows(root / rel)
        if len(rows) < (stop or start + 1):
            raise ValueError(f"{root / rel} has {len(rows)} rows; the {key} splits need {stop}")
        rows = rows[start:stop][: limits[split]]
        try:
            items = [build(r) for r in rows]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{root / rel}: cannot build {key} items ({err!r})") from None
        splits[split], note = with_negatives(items, negatives)
        notes.add(note)
    info = {
        "source": "math",
        "data_dir": str(root),
        "generation": dict(GENERATION[key]),
        "negatives": " / ".join(sorted(notes)) + " among the split's rows in use",
    }
    return Task(key, splits["train"], splits["dev"], splits["test"], info=info)
