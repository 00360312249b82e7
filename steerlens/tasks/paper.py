"""Paper benchmarks (COPA, SST-2, BoolQ, StoryCloze, Winogrande) as `Task`s with SADI's templates.

The data are read from a directory outside the repository (never copied into it); the layout
and the train / dev / test row ranges are those of ``shared/data/README.md``. Prompt templates
are the official SADI code's (``load_dataset.py``), text unchanged; fields are stripped as there.

Label tokenization is explicit: `PAPER_LABELS` gives each task's option strings exactly as
they follow the prompt. COPA's template ends in ``"Answer:\\n"``, after which a tokenizer
starts the answer as ``"A"`` with no leading space; every other template ends in
``"Answer:"``, so its answers carry one leading space (``" A"``, ``" Yes"``, ``" Positive"``).
SADI's own code joins ``prompt + " " + answer`` everywhere, which for COPA yields the
improbable ``"\\n A"``; here the space belongs to the answer and is decided per template.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .core import Example, Task

PAPER_TASKS: tuple[str, ...] = ("copa", "sst2", "boolq", "storycloze", "winogrande")

ENV_VAR = "STEERLENS_DATA"

# Option strings exactly as they follow the prompt, in option order (correct one picked per row).
PAPER_LABELS: dict[str, tuple[str, str]] = {
    "copa": ("A", "B"),  # template ends "Answer:\n": the answer starts the new line, no space
    "sst2": (" Positive", " Negative"),  # the rest end "Answer:": one leading space
    "boolq": (" Yes", " No"),
    "storycloze": (" A", " B"),
    "winogrande": (" A", " B"),
}

# SADI load_dataset.py templates, verbatim.
TEMPLATES: dict[str, str] = {
    "copa": (
        "Question:\n{premise} Based on the previous passage, choose the most reasonable "
        "{question}.\nA:{choice1}\nB:{choice2}\n\nAnswer:\n"
    ),
    "sst2": (
        "Consider the sentiment expression in this sentence and respond briefly with "
        "'positive' or 'negative'.\n\n{text}\n\nAnswer:"
    ),
    "boolq": (
        "Is the answer to the question encapsulated in the passage? Please confirm with "
        "'yes' or 'no'.\n\nPassage: {passage}\n\nQuestion: {question}\n\nAnswer:"
    ),
    "storycloze": (
        "{sents}\nQuestion: What is a possible continuation for the story given the following "
        "options?\nA: {quiz1} B: {quiz2}\nAnswer:"
    ),
    "winogrande": (
        "Please fill in the blanks. Write A or B as the answer.\n\nSentence: {sentence}\n"
        "A. {option1}\nB. {option2}\nAnswer:"
    ),
}

# (file, first row, end row or None for "to the end") per split; rows count from 0, no header.
PAPER_SPLITS: dict[str, dict[str, tuple[str, int, int | None]]] = {
    "copa": {
        "train": ("copa/train.jsonl", 0, 300),
        "dev": ("copa/train.jsonl", 300, 400),
        "test": ("copa/test.jsonl", 0, None),
    },
    "sst2": {
        "train": ("sst2/train.txt", 0, 1000),
        "dev": ("sst2/train.txt", 1000, 1200),
        "test": ("sst2/test.txt", 0, None),
    },
    "boolq": {
        "train": ("boolq/dev.jsonl", 0, 1000),
        "dev": ("boolq/dev.jsonl", 1000, 1200),
        "test": ("boolq/dev.jsonl", 1200, None),
    },
    "storycloze": {
        "train": ("storycloze/val.csv", 0, 374),
        "dev": ("storycloze/val.csv", 374, 474),
        "test": ("storycloze/val.csv", 474, None),
    },
    "winogrande": {
        "train": ("winogrande/train_m.jsonl", 0, 1000),
        "dev": ("winogrande/train_m.jsonl", 1000, 1200),
        "test": ("winogrande/dev.jsonl", 0, None),
    },
}

_LAYOUT = (
    "expected layout: copa/{train,test}.jsonl, sst2/{train,test}.txt, boolq/dev.jsonl, "
    "storycloze/val.csv, winogrande/{train_m,dev}.jsonl (see shared/data/README.md)"
)

Row = dict[str, Any]


def normalize_name(name: str) -> str:
    """``"SST-2"``, ``"story_cloze"`` → ``"sst2"``, ``"storycloze"``."""
    return name.lower().replace("-", "").replace("_", "")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark directory: `data_dir`, else ``$STEERLENS_DATA``, else ``../shared/data``."""
    if data_dir is not None:
        chosen, origin = Path(data_dir), f"data_dir={os.fspath(data_dir)!r}"
    elif os.environ.get(ENV_VAR):
        chosen, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}={os.environ[ENV_VAR]!r}"
    else:
        chosen, origin = Path("../shared/data"), "the default ../shared/data"
    if not chosen.is_dir():
        raise FileNotFoundError(
            f"benchmark data directory not found ({origin}, resolved from {Path.cwd()}); pass "
            f"data_dir=... or set the environment variable {ENV_VAR}; {_LAYOUT}"
        )
    return chosen


def load_paper_task(name: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    """Load paper benchmark `name` (one of `PAPER_TASKS`) with the README's splits."""
    key = normalize_name(name)
    if key not in PAPER_TASKS:
        raise ValueError(f"unknown paper task {name!r}; use one of {', '.join(PAPER_TASKS)}")
    root = resolve_data_dir(data_dir)
    splits = {
        split: tuple(_examples(key, root, *spec)) for split, spec in PAPER_SPLITS[key].items()
    }
    info = {
        "source": "paper",
        "data_dir": str(root),
        "template": TEMPLATES[key],
        "labels": PAPER_LABELS[key],
    }
    return Task(key, splits["train"], splits["dev"], splits["test"], info=info)


def _examples(key: str, root: Path, rel: str, start: int, stop: int | None) -> Iterator[Example]:
    path = root / rel
    rows = list(_ROW_READERS[Path(rel).suffix](path))
    if len(rows) < (stop or start + 1):
        raise ValueError(
            f"{path} has {len(rows)} rows, fewer than the {stop or start + 1} the "
            f"{key} splits need; restore it (see SHA256SUMS in the data directory)"
        )
    for number, row in rows[start:stop]:
        try:
            yield _BUILDERS[key](row)
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{path}, row {number}: cannot build a {key} example ({err!r}); "
                "the file does not match shared/data/README.md"
            ) from None


def _example(task: str, fields: dict[str, str], correct: int) -> Example:
    """Fill the task's template and pick the option `correct` (0 or 1) as the answer."""
    if correct not in (0, 1):
        raise ValueError(f"label must select option 0 or 1, got {correct!r}")
    labels = PAPER_LABELS[task]
    prompt = TEMPLATES[task].format(**{k: v.strip() for k, v in fields.items()})
    return Example(prompt, labels[correct], (labels[1 - correct],))


def _copa(row: Row) -> Example:
    fields = {k: row[k] for k in ("premise", "question", "choice1", "choice2")}
    return _example("copa", fields, int(row["label"]))


def _sst2(row: Row) -> Example:
    return _example("sst2", {"text": row["text"]}, {"1": 0, "0": 1}[row["label"]])


def _boolq(row: Row) -> Example:
    if not isinstance(row["answer"], bool):
        raise ValueError(f"answer must be true or false, got {row['answer']!r}")
    fields = {"passage": row["passage"], "question": row["question"]}
    return _example("boolq", fields, 0 if row["answer"] else 1)


def _storycloze(row: Row) -> Example:
    sents = " ".join(row[f"InputSentence{i}"].strip() for i in range(1, 5))
    fields = {
        "sents": sents,
        "quiz1": row["RandomFifthSentenceQuiz1"],
        "quiz2": row["RandomFifthSentenceQuiz2"],
    }
    return _example("storycloze", fields, {"1": 0, "2": 1}[row["AnswerRightEnding"].strip()])


def _winogrande(row: Row) -> Example:
    fields = {k: row[k] for k in ("sentence", "option1", "option2")}
    return _example("winogrande", fields, {"1": 0, "2": 1}[row["answer"].strip()])


_BUILDERS: dict[str, Callable[[Row], Example]] = {
    "copa": _copa,
    "sst2": _sst2,
    "boolq": _boolq,
    "storycloze": _storycloze,
    "winogrande": _winogrande,
}


def _read_jsonl(path: Path) -> Iterator[tuple[int, Row]]:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err})") from None


def _read_sst(path: Path) -> Iterator[tuple[int, Row]]:
    """``<label> <sentence>`` per line."""
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            label, _, text = line.partition(" ")
            yield number, {"label": label, "text": text}


def _read_csv(path: Path) -> Iterator[tuple[int, Row]]:
    """Rows after the header; the number is the row's 1-based record index in the file."""
    yield from enumerate(csv.DictReader(io.StringIO(_read_text(path))), start=2)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {_LAYOUT}")
    return path.read_text(encoding="utf-8")


_ROW_READERS: dict[str, Callable[[Path], Iterator[tuple[int, Row]]]] = {
    ".jsonl": _read_jsonl,
    ".txt": _read_sst,
    ".csv": _read_csv,
}
