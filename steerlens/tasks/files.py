"""Reading benchmark files row by row, for the loaders of MMLU, XNLI, XCOPA and TruthfulQA.

Every reader returns ``(number, row)`` pairs, the number being the row's line (JSONL) or record
(CSV) in the file, so that a bad row is reported where it is. `build` turns a row range into
`Example`s and names the file and row of any row that does not fit the README's format.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .core import Example

Row = Any  # a JSON object (dict) or a CSV record (a list, or a dict with a header)
T = TypeVar("T")


def data_file(root: Path, rel: str, layout: str) -> Path:
    """`root / rel`, or FileNotFoundError naming it and the expected `layout`."""
    path = root / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected layout: {layout}")
    return path


def read_jsonl(path: Path) -> list[tuple[int, Row]]:
    """One JSON object per non-blank line."""
    rows = []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if line.strip():
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err})") from None
    return rows


def read_csv(path: Path, *, header: bool) -> list[tuple[int, Row]]:
    """CSV records (quoted fields may span lines): dicts after a header, else lists; numbered
    from 1 counting the header."""
    text = io.StringIO(_text(path), newline="")
    reader: Any = csv.DictReader(text) if header else csv.reader(text)
    return list(enumerate(reader, start=2 if header else 1))


def take(rows: Sequence[T], start: int, stop: int | None, path: Path, what: str) -> Sequence[T]:
    """`rows[start:stop]`, or ValueError when the file is too short for the split."""
    need = stop if stop is not None else start + 1
    if len(rows) < need:
        raise ValueError(
            f"{path} has {len(rows)} rows, fewer than the {need} the {what} splits need; "
            "restore it (see SHA256SUMS in the data directory)"
        )
    return rows[start:stop]


def build(
    rows: Sequence[tuple[int, Row]], builder: Callable[[Row], T], path: Path, what: str
) -> tuple[T, ...]:
    """`builder` applied to every row; a row it cannot use is a ValueError naming file and row."""
    out = []
    for number, row in rows:
        try:
            out.append(builder(row))
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{path}, row {number}: cannot build a {what} example ({err!r}); "
                "the file does not match shared/data/README.md"
            ) from None
    return tuple(out)


def strings(row: Row, keys: Sequence[str]) -> dict[str, str]:
    """The string fields `keys` of a JSON row; ValueError naming one that is not a string."""
    out = {k: row[k] for k in keys}
    for k, v in out.items():
        if not isinstance(v, str):
            raise ValueError(f"field {k!r} must be a string, got {v!r}")
    return out


def example(template: str, labels: Sequence[str], fields: dict[str, str], label: int) -> Example:
    """The template filled with the stripped fields; `labels[label]` right, the others wrong."""
    if isinstance(label, bool) or label not in range(len(labels)):
        raise ValueError(f"label must be one of 0..{len(labels) - 1}, got {label!r}")
    prompt = template.format(**{k: v.strip() for k, v in fields.items()})
    wrong = tuple(x for i, x in enumerate(labels) if i != label)
    return Example(prompt, labels[label], wrong)


def _text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path.read_text(encoding="utf-8")
