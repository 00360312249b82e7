"""XCOPA (French) as a `Task`: COPA's SADI template and labels on the French rows.

Files: ``xcopa/fr.train.jsonl`` and ``xcopa/fr.test.jsonl``, as COPA (``premise``, ``choice1``,
``choice2``, ``question`` cause/effect, ``label`` 0/1). Splits (shared/data/README.md): train =
train rows 0-299, dev = rows 300-399, test = the whole test file. The template is COPA's
English one (``TEMPLATES["copa"]``), whose ``{question}`` slot takes the file's English
``cause``/``effect``; the answers are COPA's ``"A"``/``"B"`` after ``"Answer:\\n"`` (no space).
"""

from __future__ import annotations

import os

from .core import Example, Task
from .files import Row, build, data_file, example, read_jsonl, strings, take
from .paper import PAPER_LABELS, TEMPLATES, resolve_data_dir

XCOPA_LANGUAGES: tuple[str, ...] = ("fr",)

XCOPA_SPLITS: dict[str, tuple[str, int, int | None]] = {
    "train": ("xcopa/{lang}.train.jsonl", 0, 300),
    "dev": ("xcopa/{lang}.train.jsonl", 300, 400),
    "test": ("xcopa/{lang}.test.jsonl", 0, None),
}

_LAYOUT = "xcopa/fr.train.jsonl and xcopa/fr.test.jsonl (see shared/data/README.md)"


def load_xcopa(language: str = "fr", data_dir: str | os.PathLike[str] | None = None) -> Task:
    """XCOPA in `language` (only French here) as task ``"xcopa-<language>"``."""
    if language not in XCOPA_LANGUAGES:
        raise ValueError(
            f"unknown XCOPA language {language!r}; use one of {', '.join(XCOPA_LANGUAGES)}"
        )
    root = resolve_data_dir(data_dir)
    name = f"xcopa-{language}"
    splits: dict[str, tuple[Example, ...]] = {}
    for split, (pattern, start, stop) in XCOPA_SPLITS.items():
        path = data_file(root, pattern.format(lang=language), _LAYOUT)
        splits[split] = build(take(read_jsonl(path), start, stop, path, name), _copa, path, name)
    info = {
        "source": "xcopa",
        "data_dir": str(root),
        "language": language,
        "template": TEMPLATES["copa"],
        "labels": PAPER_LABELS["copa"],
    }
    return Task(name, splits["train"], splits["dev"], splits["test"], info=info)


def _copa(row: Row) -> Example:
    fields = strings(row, ("premise", "question", "choice1", "choice2"))
    label = row["label"]
    if isinstance(label, str) and label.strip() in ("0", "1"):
        label = int(label)
    if not isinstance(label, int):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    return example(TEMPLATES["copa"], PAPER_LABELS["copa"], fields, label)
