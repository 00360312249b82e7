"""MMLU as a `Task`: SADI's template, one subject or several pooled, the README's row splits.

Files: ``mmlu/test/<subject>_test.csv`` and ``mmlu/dev/<subject>_dev.csv`` of the data
directory, CSV without header, ``question, A, B, C, D, answer-letter``. Splits per subject (rows
counted from 0, boundaries rounded down): train = every row of the dev file + test rows
[0, 20%), dev = test rows [20%, 30%), test = rows [30%, 100%). A pooled task concatenates the
subjects' splits in the order given; ``per_item(task, "subject", split)`` names each item's
subject, for `discipline_accuracy`.

`released_rows=True` is SADI's released protocol instead: masks and evaluation on the same rows,
the first 501 of each test file (``load_dataset.py`` keeps ``id_line <= 500``) in all three
splits. It scores the rows the masks were built from; ``info["released_rows"]`` says so.

Template: SADI ``load_dataset.py``'s, verbatim; it ends in ``"Answer:"``, so the answers carry
one leading space (``" A"`` .. ``" D"``, see `steerlens.tasks.paper`). The wrong answers are
the three other letters; `contrastive_ids` draws one per item, seeded, as SADI draws one at
random. Fields are stripped, as for the other paper tasks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .core import PER_ITEM, Example, Task
from .files import build, data_file, example, read_csv
from .mmlu_disciplines import MMLU_DISCIPLINES
from .paper import resolve_data_dir

MMLU_TEMPLATE = (
    "Question: {question}\nWhich of the following answers is correct?\nA. {A}\nB. {B}\n"
    "C. {C}\nD. {D}\nState the letter corresponding to the correct answer.\nAnswer:"
)
MMLU_LABELS: tuple[str, ...] = (" A", " B", " C", " D")
TRAIN_PERCENT, DEV_PERCENT = 20, 30  # test rows [0, 20%) train, [20%, 30%) dev, the rest test
RELEASED_ROWS = 501  # SADI's released code: test-file rows 0..500, for masks and evaluation

# The 54 subjects of shared/data (MMLU's 57 less college_biology, high_school_geography and
# high_school_us_history); "mmlu" pools these. `MMLU_DISCIPLINES` lists all 57.
MMLU_SUBJECTS: tuple[str, ...] = tuple(
    s
    for s in MMLU_DISCIPLINES
    if s not in ("college_biology", "high_school_geography", "high_school_us_history")
)

_LAYOUT = "mmlu/test/<subject>_test.csv and mmlu/dev/<subject>_dev.csv (see shared/data/README.md)"


def load_mmlu(
    subjects: str | Sequence[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    released_rows: bool = False,
) -> Task:
    """MMLU `subjects` (one name, a list pooled in that order, or None: all of `MMLU_SUBJECTS`).

    Task name: ``"mmlu"`` for all subjects, ``"mmlu:<subject>"`` for one, ``"mmlu:<a>,<b>"``
    for several; with `released_rows` the name ends in ``"+released"``.
    """
    chosen = check_subjects(subjects)
    root = resolve_data_dir(data_dir)
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for subject in chosen:
        for split, rows in _subject_splits(root, subject, released_rows).items():
            splits[split] += rows
            names[split] += [subject] * len(rows)
    name = "mmlu" if chosen == MMLU_SUBJECTS else "mmlu:" + ",".join(chosen)
    info = {
        "source": "mmlu",
        "data_dir": str(root),
        "template": MMLU_TEMPLATE,
        "labels": MMLU_LABELS,
        "subjects": chosen,
        "released_rows": released_rows,
        PER_ITEM: {"subject": {split: tuple(v) for split, v in names.items()}},
    }
    if released_rows:
        name += "+released"
        info["note"] = (
            "SADI's released protocol: train, dev and test are the same rows, the first "
            f"{RELEASED_ROWS} (or all) of each subject's test file: masks built on scored rows"
        )
    return Task(name, splits["train"], splits["dev"], splits["test"], info=info)


def check_subjects(subjects: str | Sequence[str] | None) -> tuple[str, ...]:
    """`subjects` as a tuple of known MMLU subject names (None: `MMLU_SUBJECTS`)."""
    if subjects is None:
        return MMLU_SUBJECTS
    chosen = (subjects,) if isinstance(subjects, str) else tuple(subjects)
    if not chosen:
        raise ValueError("no MMLU subjects given; pass None for all of them")
    for s in chosen:
        if s not in MMLU_DISCIPLINES:
            raise ValueError(
                f"unknown MMLU subject {s!r}; valid subjects: {', '.join(MMLU_DISCIPLINES)}"
            )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"MMLU subjects listed twice: {', '.join(chosen)}")
    return chosen


def _subject_splits(root: Path, subject: str, released_rows: bool) -> dict[str, list[Example]]:
    test_path = data_file(root, f"mmlu/test/{subject}_test.csv", _LAYOUT)
    test_rows = read_csv(test_path, header=False)
    what = f"MMLU {subject}"
    if released_rows:  # a file shorter than RELEASED_ROWS is used whole, as SADI's loop does
        shared = list(build(test_rows[:RELEASED_ROWS], _mmlu_example, test_path, what))
        return {"train": shared, "dev": list(shared), "test": list(shared)}
    dev_path = data_file(root, f"mmlu/dev/{subject}_dev.csv", _LAYOUT)
    n = len(test_rows)
    train_end, dev_end = n * TRAIN_PERCENT // 100, n * DEV_PERCENT // 100
    if dev_end in (train_end, n):
        raise ValueError(f"{test_path} has {n} rows, too few for MMLU's 20/10/70 split")
    shots = build(read_csv(dev_path, header=False), _mmlu_example, dev_path, what)
    test = build(test_rows, _mmlu_example, test_path, what)
    return {
        "train": [*shots, *test[:train_end]],
        "dev": list(test[train_end:dev_end]),
        "test": list(test[dev_end:]),
    }


def _mmlu_example(row: list[str]) -> Example:
    if len(row) != 6:
        raise ValueError(f"expected 6 fields (question, A, B, C, D, answer), got {len(row)}")
    letter = row[5].strip()
    if letter not in ("A", "B", "C", "D"):
        raise ValueError(f"answer must be A, B, C or D, got {row[5]!r}")
    fields = dict(zip(("question", "A", "B", "C", "D"), row[:5], strict=True))
    return example(MMLU_TEMPLATE, MMLU_LABELS, fields, "ABCD".index(letter))
