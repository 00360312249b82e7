"""Print markdown tables comparing two `steerlens reproduce` output directories cell by cell:
steerlens' default variants against the released ones (`reproduce --released`).

    python scripts/compare_modes.py runs/reproduce runs/reproduce-released

Each method is paired with its released variant (`sadi-head` with `sadi-head-released`, ...).
Every number is read from the cell records' per-item flags; nothing is recomputed. When the two
runs scored different numbers of test items, both are scored on the first items they share (the
splits are taken from the start, so those are the same rows).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAIRS = [
    ("none", "none"),
    ("sadi-head", "sadi-head-released"),
    ("sadi-neuron", "sadi-neuron-released"),
    ("sadi-hidden", "sadi-hidden-released"),
    ("austeer-attention", "austeer-attention-released"),
    ("austeer-ffn", "austeer-ffn-released"),
    ("caa", "caa-released"),
    ("iti", "iti-released"),
]
TASKS = ("copa", "sst2", "boolq", "storycloze", "winogrande")


def cells(root: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for path in (root / "cells").glob("*.json"):
        record = json.loads(path.read_text())
        if record.get("stage") == "done":
            out[(record["task"], record["method"])] = record
    return out


FLAGS = ("correct", "correct_paper", "correct_restricted")  # full / paper / restricted


def scores(record: dict | None, n: int) -> str:
    """Full / paper / restricted test accuracy (%) over the first `n` test items."""
    if record is None:
        return "– / – / –"
    t = record["test"]
    values = [t[f][:n].count("1") / n for f in FLAGS]
    return " / ".join(f"{100 * v:.1f}" for v in values)


def shared_n(*records: dict | None) -> int:
    return min(len(r["test"]["correct"]) for r in records if r is not None)


def setting(record: dict | None) -> str:
    if record is None or record["method"] == "none":
        return "–"
    name = "layer" if record.get("setting_name") == "layer" else "K"
    return f"{name}={record['setting']}, s={record['strength']:g}"


def main(default_dir: str, released_dir: str) -> None:
    default, released = cells(Path(default_dir)), cells(Path(released_dir))
    for task in TASKS:
        if not any(key[0] == task for key in released):
            continue
        rows = [(default.get((task, p)), released.get((task, r)), p) for p, r in PAIRS]
        n = shared_n(*(rec for a, b, _ in rows for rec in (a, b)))
        print(
            f"\n#### {task}: test accuracy on the first {n} items, full / paper / restricted (%)\n"
        )
        print("| method | default | setting (dev) | released | setting (dev) |")
        print("|---|---|---|---|---|")
        for a, b, plain in rows:
            print(f"| {plain} | {scores(a, n)} | {setting(a)} | {scores(b, n)} | {setting(b)} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
