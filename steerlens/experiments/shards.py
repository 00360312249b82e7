"""Shards of a reproduction: the plan split over machines (or a Slurm array), whole groups each.

A group, one (model, task, format), is the unit: its cells share the collected differences and
the unsteered passes. Every shard writes its cells as records under ``<out>/cells/`` exactly as
a serial run does (a record's `spec` names its whole configuration, so a stale or foreign record
is recomputed, never reused), and a final run without ``--shard`` over the same directory
computes nothing and assembles the tables from the records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .cells import Cell, slug

Group = tuple[str | None, str, int]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(1, 4)``: shards are numbered from 1 on the command line, from 0 here."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard {text!r}: give I/N, e.g. 1/2") from None
    if not sep or n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: give I/N with 1 <= I <= N")
    return i - 1, n


def groups_of(cells: Sequence[Cell]) -> list[Group]:
    """The (model, task, format) groups of `cells`, in plan order."""
    return list(dict.fromkeys(c.group for c in cells))


def shard_of(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard `index` (from 0) of `count`: whole groups, the i-th to shard i mod N."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    mine = set(groups_of(cells)[index::count])
    return [c for c in cells if c.group in mine]


IDENTITY_FILE = "identity.json"


def claim(out: Path, identity: Mapping[str, Any], shard: tuple[int, int] | None) -> None:
    """Record the run's identity in `out`; refuse a shard whose configuration differs from the
    one already recorded there, since its tables would mix two configurations.

    A run without a shard may change the configuration: it records the new one (its cells have
    other spec hashes, so no record of the old configuration is reused).
    """
    path = out / IDENTITY_FILE
    text = json.dumps(identity, indent=1, sort_keys=True) + "\n"
    if _create(path, text):
        return
    stored = _read(path)
    if stored == dict(identity):
        return
    if shard is not None and stored is not None:
        differ = sorted(k for k in {*stored, *identity} if stored.get(k) != identity.get(k))
        raise ValueError(
            f"{out} holds a reproduction with another configuration (differing: "
            f"{', '.join(differ)}); every shard writing there must share it. Give this run "
            f"its own --out, or delete {path} if the old records should be left behind."
        )
    atomic_write_text(path, text)


def _create(path: Path, text: str) -> bool:
    """Write `path` only if it does not exist, atomically (two shards may start at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)  # fails if another process published first
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_layers(out: Path, model: str, n_layers: int) -> None:
    """Note a model's layer count (its grids depend on it), so assembly needs no model."""
    path = out / "models" / f"{slug(model)}.json"
    if _read(path) != {"n_layers": n_layers}:
        atomic_write_text(path, json.dumps({"n_layers": n_layers}) + "\n")


def stored_layers(out: Path, model: str) -> int | None:
    """The layer count a shard noted for `model`, or None before any shard loaded it."""
    data = _read(out / "models" / f"{slug(model)}.json")
    return int(data["n_layers"]) if data and "n_layers" in data else None
