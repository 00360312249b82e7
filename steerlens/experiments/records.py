"""Result records: one typed schema for every row that `run`, `reproduce` and the ablations write.

A `Record` is one method on one (model, task, prompt format): the setting chosen on dev, the
dev grid it was chosen from, and the test scores under both protocols with bootstrap intervals
and per-item flags (so paired differences can be computed later from the records alone). It
serialises to the JSON cell records of `steerlens reproduce` (`FORMAT_VERSION` 2: version 1's keys
plus the `paper` protocol)
and to the rows of every results table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .._io import atomic_write_text
from ..evaluate import METRICS, EvalResult
from ..mask import Mask
from ..methods import BASELINE
from ..stats import N_BOOT, flags_to_str
from ..tune import Choice

FORMAT_VERSION = 2  # 2: the `paper` protocol (scores, flags, dev score); 1's records are not reused
Stage = Literal["dev", "done"]
UNIT_LABELS = 20  # a record lists the labels of at most this many chosen units


def jsonable(value: Any) -> Any:
    """numpy / torch scalars and tuples as plain JSON values."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class TestScores:
    """Test accuracy under the three protocols with 95% intervals and the per-item flags.

    Records written before the `paper` protocol existed read back with `paper` NaN and no flags.
    """

    n: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    restricted: float
    restricted_ci: tuple[float, float]
    correct: str  # "0101...": per-item full-vocabulary hits
    correct_restricted: str
    paper: float = math.nan
    paper_ci: tuple[float, float] = (math.nan, math.nan)
    correct_paper: str = ""

    @classmethod
    def of(cls, result: EvalResult, *, n_boot: int = N_BOOT, seed: int = 0) -> TestScores:
        paper_flags = result.correct_paper
        return cls(
            n=result.n,
            accuracy=result.accuracy,
            accuracy_ci=result.ci("accuracy", n_boot=n_boot, seed=seed),
            restricted=result.restricted,
            restricted_ci=result.ci("restricted", n_boot=n_boot, seed=seed),
            correct=flags_to_str(result.correct),
            correct_restricted=flags_to_str(result.correct_restricted),
            paper=result.paper,
            paper_ci=result.ci("paper", n_boot=n_boot, seed=seed),
            correct_paper="" if paper_flags is None else flags_to_str(paper_flags),
        )

    def metric(self, name: str) -> float:
        return {"accuracy": self.accuracy, "restricted": self.restricted, "paper": self.paper}[name]

    def ci(self, name: str = "accuracy") -> tuple[float, float]:
        return {
            "accuracy": self.accuracy_ci,
            "restricted": self.restricted_ci,
            "paper": self.paper_ci,
        }[name]

    def flags(self, name: str) -> str:
        """Per-item flags under `name` as a "0101..." string ("" when not recorded)."""
        return {
            "accuracy": self.correct,
            "restricted": self.correct_restricted,
            "paper": self.correct_paper,
        }[name]

    def to_json(self, *, flags: bool = True) -> dict[str, Any]:
        out = {k: jsonable(v) for k, v in dataclasses.asdict(self).items()}
        if not flags:
            for key in ("correct", "correct_restricted", "correct_paper"):
                out.pop(key)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TestScores:
        def pair(key: str) -> tuple[float, float]:
            lo, hi = data.get(key) or (math.nan, math.nan)
            return (math.nan if lo is None else float(lo), math.nan if hi is None else float(hi))

        paper = data.get("paper")
        return cls(
            n=int(data["n"]),
            accuracy=float(data["accuracy"]),
            accuracy_ci=pair("accuracy_ci"),
            restricted=float(data["restricted"]),
            restricted_ci=pair("restricted_ci"),
            correct=str(data.get("correct", "")),
            correct_restricted=str(data.get("correct_restricted", "")),
            paper=math.nan if paper is None else float(paper),
            paper_ci=pair("paper_ci"),
            correct_paper=str(data.get("correct_paper", "")),
        )


@dataclass(frozen=True)
class Record:
    """One results-table row: a method (or "none") tuned on dev and scored on test."""

    method: str
    model: str = ""
    task: str = ""
    format: str = ""
    stage: Stage = "dev"
    site: str = "-"
    setting_name: str = "-"
    setting: Any = None
    strength: float = 0.0
    n_units: int = 0
    n_activations: int = 0
    n_pairs: int = 0
    dev_accuracy: float = float("nan")
    dev_restricted: float = float("nan")
    dev_paper: float = float("nan")
    dev_baseline: dict[str, float] = field(default_factory=dict)
    grid: list[dict[str, Any]] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    test: TestScores | None = None
    published: tuple[float, str] | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # spec, sizes, timings, provenance

    @classmethod
    def from_choice(
        cls,
        method: str,
        choice: Choice,
        *,
        site: str,
        setting_name: str,
        n_pairs: int,
        dev_baseline: EvalResult,
        **fields: Any,
    ) -> Record:
        """The dev stage of a method's record, from the tuning's `Choice`."""
        mask: Mask = choice.mask
        return cls(
            method=method,
            stage="dev",
            site=site,
            setting_name=setting_name,
            setting=jsonable(choice.setting),
            strength=choice.strength,
            n_units=mask.k,
            n_activations=mask.n_activations,
            n_pairs=n_pairs,
            dev_accuracy=choice.dev_accuracy,
            dev_restricted=choice.dev_restricted,
            dev_paper=choice.dev("paper"),
            dev_baseline={m: dev_baseline.metric(m) for m in METRICS},
            grid=[{**r, "setting": jsonable(r["setting"])} for r in choice.rows()],
            units=[mask.label(u) for u in range(min(mask.k, UNIT_LABELS))],
            seconds=choice.seconds,
            **fields,
        )

    @classmethod
    def unsteered(cls, dev: EvalResult, **fields: Any) -> Record:
        """The "none" row's dev stage."""
        return cls(
            method=BASELINE,
            dev_accuracy=dev.accuracy,
            dev_restricted=dev.restricted,
            dev_paper=dev.paper,
            **fields,
        )

    def scored(
        self,
        test: EvalResult,
        *,
        n_boot: int = N_BOOT,
        seed: int = 0,
        seconds: float = 0.0,
        **extra: Any,
    ) -> Record:
        """This record with its test scores: stage "done"."""
        return dataclasses.replace(
            self,
            stage="done",
            test=TestScores.of(test, n_boot=n_boot, seed=seed),
            seconds=self.seconds + seconds,
            extra={**self.extra, **extra},
        )

    # ---- JSON (the reproduction's cell records) ----------------------------------------------
    def to_json(self, *, flags: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.extra,
            "model": self.model,
            "task": self.task,
            "format": self.format,
            "method": self.method,
            "published": None if self.published is None else list(self.published),
            "stage": self.stage,
            "site": self.site,
            "setting_name": self.setting_name,
            "setting": jsonable(self.setting),
            "strength": self.strength,
            "n_units": self.n_units,
            "n_activations": self.n_activations,
            "n_pairs": self.n_pairs,
            "dev_accuracy": self.dev_accuracy,
            "dev_restricted": self.dev_restricted,
            "dev_paper": self.dev_paper,
            "dev_baseline": self.dev_baseline,
            "grid": self.grid,
            "units": self.units,
            "seconds": self.seconds,
        }
        if self.test is not None:
            out["test"] = self.test.to_json(flags=flags)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        known = {f.name for f in dataclasses.fields(cls)} - {"test", "published", "extra"}
        published = data.get("published")
        return cls(
            **{k: data[k] for k in known if k in data},
            test=TestScores.from_json(data["test"]) if "test" in data else None,
            published=None if not published else (float(published[0]), str(published[1])),
            extra={k: v for k, v in data.items() if k not in known | {"test", "published"}},
        )


def write_record(path: str | os.PathLike[str], record: Record) -> Path:
    """Write one record as JSON, atomically."""
    return atomic_write_text(path, json.dumps(record.to_json(), indent=1, default=jsonable) + "\n")


def read_record(path: str | os.PathLike[str]) -> Record | None:
    """A record, or None when the file is missing or not a complete record."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        return None
    if data.get("stage") not in ("dev", "done") or (data["stage"] == "done" and "test" not in data):
        return None
    try:
        return Record.from_json(data)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
