"""Print markdown tables comparing two `steerlens reproduce` output directories cell by cell:
steerlens' default variants against the released ones (`reproduce --released`).

    python scripts/compare_modes.py runs/reproduce runs/reproduce-released

Each method is paired with its released variant (`sadi-head` with `sadi-head-released`, ...).
Every number is read from the cell records; nothing is recomputed.
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


def scores(record: dict | None) -> str:
    if record is None:
        return "– / – / –"
    t = record["test"]
    return f"{100 * t['accuracy']:.1f} / {100 * t['paper']:.1f} / {100 * t['restricted']:.1f}"


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
        print(f"\n#### {task}: test accuracy, full / paper / restricted (%)\n")
        print("| method | default | setting (dev) | released | setting (dev) |")
        print("|---|---|---|---|---|")
        for plain, rel in PAIRS:
            a, b = default.get((task, plain)), released.get((task, rel))
            print(f"| {plain} | {scores(a)} | {setting(a)} | {scores(b)} | {setting(b)} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
