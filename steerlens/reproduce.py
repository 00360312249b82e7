"""Reproduction runner: every method of the main job on the papers' benchmarks, resumable.

For each model x benchmark task x prompt format, `run_reproduction` runs "none" and every
method of `steerlens.run`'s method table (`_methods`): it collects paired differences from the
train split, chooses K (or CAA's layer) and the strength on the dev split only, scores the test
split once with the chosen setting, and records test accuracy under both protocols
(full-vocabulary argmax, the papers' metric, and option-restricted log-probability) with 95%
bootstrap intervals over test items, the paired difference to "none" with its own interval, the
number of steered activations, the number of contrastive pairs, and the paper's published number
for the same cell where there is one (`PUBLISHED`; those are LLaMA2-7B-Chat numbers, so compare
the direction and size of gains, not the level).

Checkpointing: each (model, task, format, method) cell is one JSON record under
``<out>/cells/``, written atomically (a temporary file, then `os.replace`) the moment the cell
finishes. A later run with the same settings reuses every finished record and computes only the
missing ones (a record written under other settings is recomputed); a progress bar counts the
remaining cells. The tables (``results.md``, ``results.csv``) are rebuilt from the records at the
end of every run, so an interrupted run loses at most the cell in progress.

Choosing on dev: the cell with the best dev score under `metric` (default: the papers'
full-vocabulary accuracy); ties, which are common when a format leaves full-vocabulary accuracy
at 0, go to the better score under the other protocol, then to the earlier (smaller) setting and
strength in grid order.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from .collect import Differences, collect_differences
from .evaluate import METRICS, EncodedItems, EvalResult, encode_items, evaluate
from .mask import Mask
from .models import EMBEDDED_MODEL, load_model, model_fingerprint
from .paper_tasks import PAPER_TASKS
from .run import METHOD_NAMES, Method, _methods
from .steer import steer
from .sweep import SweepResult, sweep
from .tasks import Task, load_task

FORMAT_VERSION = 1
BASELINE = "none"
ALL_METHODS: tuple[str, ...] = (BASELINE, *METHOD_NAMES)

# ------------------------------------------------------------------------------------------------
# Published numbers (accuracy %, LLaMA2-7B-Chat, zero-shot), from docs/methods.md
# ------------------------------------------------------------------------------------------------

_SADI_T1 = "SADI Table 1 (LLaMA2-7B-Chat)"
_SADI_T4 = "SADI Table 4 (LLaMA2-7B-Chat)"
_AU_LOG = "AUSteer authors' run log (LLaMA2-7B-Chat)"


def _row(source: str, **values: float) -> dict[str, tuple[float, str]]:
    return {task: (value, source) for task, value in values.items()}


PUBLISHED: dict[str, dict[str, tuple[float, str]]] = {
    "none": _row(_SADI_T1, copa=70.80, storycloze=65.06, sst2=88.63, boolq=70.52, winogrande=50.91),
    "iti": _row(_SADI_T1, copa=77.20, storycloze=68.50, sst2=91.38, boolq=74.10, winogrande=52.80),
    "caa": _row(_SADI_T1, copa=75.20, storycloze=74.65, sst2=91.16, boolq=74.98, winogrande=52.64),
    "sadi-hidden": _row(
        _SADI_T1, copa=81.00, storycloze=55.99, sst2=92.15, boolq=76.25, winogrande=52.64
    ),
    "sadi-neuron": _row(
        _SADI_T1, copa=82.20, storycloze=67.57, sst2=88.69, boolq=70.40, winogrande=51.93
    ),
    "sadi-head": _row(
        _SADI_T1, copa=78.80, storycloze=79.75, sst2=92.20, boolq=74.35, winogrande=53.04
    ),
    "sadi-head-random": _row(_SADI_T4, copa=72.40, storycloze=71.87, sst2=91.48, winogrande=52.88),
    "sadi-head-fixed-vector": _row(
        _SADI_T4, copa=71.20, storycloze=69.42, sst2=91.43, winogrande=52.56
    ),
    # The authors' log runs one module per task (the best); BoolQ used attention, COPA and
    # WinoGrande the FFN output (COPA 82.8 and WinoGrande 53.28 also in AUSteer Table 13).
    "austeer-attention": _row(_AU_LOG + ", attention, k=100, alpha=15", boolq=76.27),
    "austeer-ffn": {
        "copa": (82.80, _AU_LOG + ", ffn, k=16, alpha=50"),
        "winogrande": (53.28, _AU_LOG + ", ffn, k=2, alpha=100"),
    },
}


def published(method: str, task: str) -> tuple[float, str] | None:
    """`(accuracy %, source)` the papers report for this method and task, or None."""
    return PUBLISHED.get(method, {}).get(task)


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------

QUICK_GRIDS: dict[str, tuple[tuple[Any, ...], tuple[float, ...]]] = {
    "sadi-head": ((1, 4), (0.5, 1.0)),
    "austeer-ffn": ((10, 30), (1.0, 4.0)),
}


@dataclass
class ReproduceConfig:
    """What a reproduction depends on; every cell record carries the parts that shape it.

    `shots` lists the prompt formats: 0 is the papers' raw zero-shot template, k > 0 puts k
    train demonstrations (prompt + answer) before each prompt. `grids` overrides a method's
    `(settings, strengths)`; methods without an override use `steerlens.run`'s grid.
    """

    models: tuple[str | None, ...] = (None,)
    tasks: tuple[str, ...] = PAPER_TASKS
    shots: tuple[int, ...] = (0, 4)
    style: str = "raw"
    data_dir: str | None = None
    n_train: int | None = 150
    n_dev: int | None = 100
    n_test: int | None = 250
    methods: tuple[str, ...] = ALL_METHODS
    grids: dict[str, tuple[tuple[Any, ...], tuple[float, ...]]] = field(default_factory=dict)
    metric: str = "accuracy"
    batch_size: int = 16
    seed: int = 0
    n_boot: int = 2000
    device: str | None = None
    out: str = "runs/reproduce"

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(ALL_METHODS)
        if unknown:
            raise ValueError(f"Unknown methods {sorted(unknown)}; valid: {list(ALL_METHODS)}")
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric {self.metric!r}; valid: {METRICS}")
        unknown = set(self.grids) - set(METHOD_NAMES)
        if unknown:
            raise ValueError(f"Grids given for unknown methods {sorted(unknown)}")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.shots):
            raise ValueError(f"shots must be non-negative ints, got {self.shots}")


def quick_config(**changes: Any) -> ReproduceConfig:
    """CI-sized run: 2 tasks, 24 pairs, 16 dev, 24 test items, SADI-head and AUSteer-FFN + none."""
    base = ReproduceConfig(
        tasks=("sst2", "copa"),
        shots=(0,),
        n_train=24,
        n_dev=16,
        n_test=24,
        methods=(BASELINE, "sadi-head", "austeer-ffn"),
        grids=dict(QUICK_GRIDS),
        n_boot=500,
        out="runs/reproduce-quick",
    )
    return dataclasses.replace(base, **changes)


def model_label(model: str | None) -> str:
    return model or EMBEDDED_MODEL


def format_label(n_shot: int) -> str:
    return f"{n_shot}-shot"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


@dataclass(frozen=True)
class Cell:
    """One entry of the table: a method on one task, prompt format and model."""

    model: str | None
    task: str
    n_shot: int
    method: str

    @property
    def group(self) -> tuple[str | None, str, int]:
        return (self.model, self.task, self.n_shot)

    def filename(self) -> str:
        parts = (model_label(self.model), self.task, format_label(self.n_shot), self.method)
        return "__".join(_slug(p) for p in parts) + ".json"


def method_grid(config: ReproduceConfig, method: Method) -> Method:
    """The method with the config's grid override applied, if any."""
    if method.name not in config.grids:
        return method
    settings, strengths = config.grids[method.name]
    return dataclasses.replace(method, settings=tuple(settings), strengths=tuple(strengths))


def cell_spec(config: ReproduceConfig, cell: Cell) -> dict[str, Any]:
    """Everything that determines a cell's result; a stored record is reused only if it matches."""
    spec: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": model_label(cell.model),
        "task": cell.task,
        "style": config.style,
        "n_shot": cell.n_shot,
        "method": cell.method,
        "n_train": config.n_train,
        "n_dev": config.n_dev,
        "n_test": config.n_test,
        "metric": config.metric,
        "seed": config.seed,
    }
    if cell.method != BASELINE:
        m = method_grid(config, _methods(30)[cell.method])  # the grid does not depend on depth
        spec["settings"] = [_jsonable(s) for s in m.settings]
        spec["strengths"] = list(m.strengths)
    return json.loads(json.dumps(spec))  # normalise tuples to lists, as stored


def plan(config: ReproduceConfig) -> list[Cell]:
    """All cells of the config, grouped by (model, task, format), methods in table order."""
    return [
        Cell(model, task, n_shot, method)
        for model in config.models
        for task in config.tasks
        for n_shot in config.shots
        for method in config.methods
    ]


# ------------------------------------------------------------------------------------------------
# Records: atomic writes, tolerant reads
# ------------------------------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same directory and `os.replace`.

    Readers see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Write one cell record as JSON, atomically."""
    return atomic_write_text(path, json.dumps(record, indent=1, default=_jsonable) + "\n")


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A cell record, or None when the file is missing or not a complete record."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not {"spec", "test"} <= set(record):
        return None
    return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def flags_to_str(flags: torch.Tensor | Sequence[bool]) -> str:
    return "".join("1" if bool(f) else "0" for f in flags)


def str_to_flags(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")


def bootstrap_ci(
    flags: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item 0/1 flags (as `EvalResult.ci`)."""
    flags = np.asarray(flags, dtype=float)
    if flags.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = flags[rng.integers(0, flags.size, size=(n_boot, flags.size))].mean(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap_ci(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """`(mean(a - b), lo, hi)`: the difference of two methods on the same items, resampling items."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_ci needs flags on the same items ({a.shape} vs {b.shape})")
    diff = a - b
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, level=level, seed=seed)
    return float(diff.mean()), lo, hi


def verdict(lo: float, hi: float) -> str:
    """'+' when an interval of a difference lies above 0, '-' below, '0' when it contains 0."""
    if math.isnan(lo) or math.isnan(hi):
        return "?"
    return "+" if lo > 0 else "-" if hi < 0 else "0"


# ------------------------------------------------------------------------------------------------
# Tuning on dev, scoring on test (shared with steerlens.ablations)
# ------------------------------------------------------------------------------------------------


def choose_cell(result: SweepResult, metric: str = "accuracy") -> tuple[Hashable, float, int, int]:
    """`(setting, strength, i, j)` of the best dev cell: best `metric`, then the other protocol,
    then the earlier setting and strength in grid order."""
    primary = result.accuracy if metric == "accuracy" else result.restricted
    secondary = result.restricted if metric == "accuracy" else result.accuracy
    best: tuple[float, float] | None = None
    where = (0, 0)
    for i in range(primary.shape[0]):
        for j in range(primary.shape[1]):
            key = (float(primary[i, j]), float(secondary[i, j]))
            if best is None or key > best:
                best, where = key, (i, j)
    i, j = where
    return result.settings[i], result.strengths[j], i, j


def eval_summary(result: EvalResult, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Both protocols' accuracy, 95% intervals and per-item flags of one evaluation, as plain data."""
    acc = result.correct.numpy()
    res = result.correct_restricted.numpy()
    return {
        "n": result.n,
        "accuracy": result.accuracy,
        "accuracy_ci": list(bootstrap_ci(acc, n_boot=n_boot, seed=seed)),
        "restricted": result.restricted,
        "restricted_ci": list(bootstrap_ci(res, n_boot=n_boot, seed=seed)),
        "correct": flags_to_str(result.correct),
        "correct_restricted": flags_to_str(result.correct_restricted),
    }


def tune_and_score(
    model: HookedTransformer,
    dev: EncodedItems,
    test: EncodedItems,
    masks: Mapping[Hashable, Mask],
    strengths: Sequence[float],
    *,
    metric: str = "accuracy",
    batch_size: int = 16,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Sweep `masks` x `strengths` on dev, pick one cell (`choose_cell`), score test once.

    Returns plain data: the chosen setting and strength, its mask's size, dev scores under both
    protocols, the test summary (`eval_summary`) and the whole dev grid.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flip.* sign")
        result = sweep(
            model, dev, dict(masks), strengths, metric=metric, batch_size=batch_size,
            progress=progress,
        )  # fmt: skip
        setting, strength, i, j = choose_cell(result, metric)
        mask = result.masks[setting]
        with steer(model, mask, strength):
            scored = evaluate(model, test, batch_size=batch_size, progress=progress)
    return {
        "setting": _jsonable(setting),
        "strength": float(strength),
        "n_units": mask.k,
        "n_activations": mask.n_activations,
        "dev_accuracy": float(result.accuracy[i, j]),
        "dev_restricted": float(result.restricted[i, j]),
        "dev_baseline": {
            "accuracy": result.baseline.accuracy,
            "restricted": result.baseline.restricted,
        },
        "test": eval_summary(scored, n_boot=n_boot, seed=seed),
        "grid": [{**row, "setting": _jsonable(row["setting"])} for row in result.rows()],
        "mask": mask,
    }


# ------------------------------------------------------------------------------------------------
# The runner
# ------------------------------------------------------------------------------------------------

TaskLoader = Callable[[str, int, HookedTransformer], Task]


def default_task_loader(config: ReproduceConfig) -> TaskLoader:
    """Load a benchmark task by name in the config's style with `n_shot` demonstrations."""

    def load(name: str, n_shot: int, model: HookedTransformer) -> Task:
        task = load_task(
            name, data_dir=config.data_dir, style=config.style, n_shot=n_shot,
            tokenizer=model.tokenizer, seed=config.seed,
        )  # fmt: skip
        return task.with_limits(train=config.n_train, dev=config.n_dev, test=config.n_test)

    return load


@dataclass
class _Group:
    """What the cells of one (model, task, format) share: the task, encoded splits, differences."""

    task: Task
    dev: EncodedItems
    test: EncodedItems
    diffs: dict[str, Differences]
    seconds: dict[str, float]


def _prepare(
    config: ReproduceConfig,
    model: HookedTransformer,
    task_name: str,
    n_shot: int,
    sites: Iterable[str],
    load: TaskLoader,
    progress: bool,
) -> _Group:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    task = load(task_name, n_shot, model)
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    seconds["load and encode"] = time.perf_counter() - clock
    clock = time.perf_counter()
    sites = sorted(set(sites))
    diffs: dict[str, Differences] = {}
    if sites:
        got = collect_differences(
            model, task.train, site=sites, batch_size=max(1, config.batch_size // 2),
            seed=config.seed, task=task.name, progress=progress,
        )  # fmt: skip
        assert isinstance(got, dict)
        diffs = got
    seconds["collect differences"] = time.perf_counter() - clock
    return _Group(task, dev, test, diffs, seconds)


def run_cell(
    config: ReproduceConfig,
    model: HookedTransformer,
    group: _Group,
    cell: Cell,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Compute one cell's record (nothing is written here)."""
    clock = time.perf_counter()
    task = group.task
    record: dict[str, Any] = {
        "spec": cell_spec(config, cell),
        "model": model_label(cell.model),
        "fingerprint": model_fingerprint(model),
        "task": cell.task,
        "format": format_label(cell.n_shot),
        "method": cell.method,
        "sizes": {"train_pairs": len(task.train), "dev": len(task.dev), "test": len(task.test)},
        "published": published(cell.method, cell.task),
    }
    if cell.method == BASELINE:
        dev = evaluate(model, group.dev, batch_size=config.batch_size, progress=progress)
        test = evaluate(model, group.test, batch_size=config.batch_size, progress=progress)
        record.update(
            site="-", setting_name="-", setting=None, strength=0.0, n_units=0, n_activations=0,
            n_pairs=0, dev_accuracy=dev.accuracy, dev_restricted=dev.restricted,
            test=eval_summary(test, n_boot=config.n_boot, seed=config.seed), grid=[],
        )  # fmt: skip
    else:
        method = method_grid(config, _methods(model.cfg.n_layers)[cell.method])
        masks = method.grid(group.diffs, method.settings)
        out = tune_and_score(
            model, group.dev, group.test, masks, method.strengths, metric=config.metric,
            batch_size=config.batch_size, n_boot=config.n_boot, seed=config.seed,
            progress=progress,
        )  # fmt: skip
        mask = out.pop("mask")
        diffs = group.diffs[method.site]
        record.update(
            site=method.site, setting_name=method.setting_name, n_pairs=diffs.n_pairs,
            n_identical_pairs=diffs.n_identical, units=[mask.label(i) for i in range(min(mask.k, 20))],
            **out,
        )  # fmt: skip
    record["seconds"] = time.perf_counter() - clock
    return record


def run_reproduction(
    config: ReproduceConfig,
    *,
    model: HookedTransformer | None = None,
    task_loader: TaskLoader | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) every cell of `config`; write records, then the tables.

    Args:
        model: use this model for every entry of `config.models` (tests); else each is loaded.
        task_loader: `(task name, n_shot, model) -> Task` (tests); else `default_task_loader`.

    Returns:
        `{"records": [...], "computed": [cell filenames computed now], "reused": [...],
        "out": Path, "table": markdown, "seconds": wall time of this call}`.
    """
    start = time.perf_counter()
    out = Path(config.out)
    cells_dir = out / "cells"
    load = task_loader or default_task_loader(config)
    cells = plan(config)
    records: dict[Cell, dict[str, Any]] = {}
    for cell in cells:
        stored = read_record(cells_dir / cell.filename())
        if stored is not None and stored["spec"] == cell_spec(config, cell):
            records[cell] = stored
    remaining = [c for c in cells if c not in records]
    reused = [c.filename() for c in records]
    computed: list[str] = []
    bar = tqdm(total=len(remaining), desc="reproduce cells", disable=not progress, unit="cell")
    try:
        for model_name in dict.fromkeys(c.model for c in remaining):
            todo = [c for c in remaining if c.model == model_name]
            current = model if model is not None else load_model(model_name, device=config.device)
            methods = _methods(current.cfg.n_layers)
            for key in dict.fromkeys(c.group for c in todo):
                group_cells = [c for c in todo if c.group == key]
                sites = {methods[c.method].site for c in group_cells if c.method != BASELINE}
                bar.set_postfix_str(f"{key[1]} {format_label(key[2])}: preparing")
                group = _prepare(config, current, key[1], key[2], sites, load, False)
                prep = {"seconds": group.seconds, "spec_sites": sorted(sites)}
                for cell in group_cells:
                    bar.set_postfix_str(f"{cell.task} {format_label(cell.n_shot)} {cell.method}")
                    record = run_cell(config, current, group, cell)
                    record["prepare"] = prep
                    write_record(cells_dir / cell.filename(), record)
                    records[cell] = record
                    computed.append(cell.filename())
                    bar.update(1)
    finally:
        bar.close()
        ordered = [records[c] for c in cells if c in records]
        if ordered:
            write_tables(config, ordered, out, seconds=time.perf_counter() - start)
    ordered = [records[c] for c in cells]
    return {
        "records": ordered,
        "computed": computed,
        "reused": reused,
        "out": out,
        "table": results_markdown(config, ordered),
        "seconds": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "model", "task", "format", "method", "site", "setting_name", "setting", "strength", "n_units",
    "n_activations", "n_pairs", "n_dev", "n_test", "dev_accuracy", "dev_restricted",
    "test_accuracy", "test_accuracy_lo", "test_accuracy_hi", "delta_accuracy",
    "delta_accuracy_lo", "delta_accuracy_hi", "test_restricted", "test_restricted_lo",
    "test_restricted_hi", "delta_restricted", "delta_restricted_lo", "delta_restricted_hi",
    "protocols", "published", "published_source", "seconds",
)  # fmt: skip


def _baselines(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {
        (r["model"], r["task"], r["format"]): r for r in records if r["method"] == BASELINE
    }


def table_rows(
    records: Sequence[Mapping[str, Any]], *, n_boot: int = 2000, seed: int = 0
) -> list[dict[str, Any]]:
    """One flat row per record, with the paired difference to "none" under both protocols."""
    base = _baselines(records)
    rows = []
    for r in records:
        t = r["test"]
        row: dict[str, Any] = {
            "model": r["model"], "task": r["task"], "format": r["format"], "method": r["method"],
            "site": r["site"], "setting_name": r["setting_name"], "setting": r["setting"],
            "strength": r["strength"], "n_units": r["n_units"], "n_activations": r["n_activations"],
            "n_pairs": r["n_pairs"], "n_dev": r["sizes"]["dev"], "n_test": t["n"],
            "dev_accuracy": r["dev_accuracy"], "dev_restricted": r["dev_restricted"],
            "test_accuracy": t["accuracy"], "test_accuracy_lo": t["accuracy_ci"][0],
            "test_accuracy_hi": t["accuracy_ci"][1], "test_restricted": t["restricted"],
            "test_restricted_lo": t["restricted_ci"][0], "test_restricted_hi": t["restricted_ci"][1],
            "published": (r.get("published") or [None, ""])[0],
            "published_source": (r.get("published") or [None, ""])[1],
            "seconds": r.get("seconds", math.nan),
        }  # fmt: skip
        b = base.get((r["model"], r["task"], r["format"]))
        marks = []
        for proto, key in (("accuracy", "correct"), ("restricted", "correct_restricted")):
            if b is None or r["method"] == BASELINE or len(b["test"][key]) != len(t[key]):
                d = lo = hi = math.nan
            else:
                d, lo, hi = paired_bootstrap_ci(
                    str_to_flags(t[key]), str_to_flags(b["test"][key]), n_boot=n_boot, seed=seed
                )
            row[f"delta_{proto}"], row[f"delta_{proto}_lo"], row[f"delta_{proto}_hi"] = d, lo, hi
            marks.append(verdict(lo, hi))
        row["protocols"] = "" if r["method"] == BASELINE or b is None else "/".join(marks)
        rows.append(row)
    return rows


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _ci(x: float, lo: float, hi: float) -> str:
    return f"{_pct(x)} [{_pct(lo)}, {_pct(hi)}]"


def _delta(x: float, lo: float, hi: float) -> str:
    if math.isnan(x):
        return "–"
    return f"{100 * x:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _setting(row: Mapping[str, Any]) -> str:
    if row["method"] == BASELINE:
        return "–"
    return f"{row['setting_name']}={row['setting']}, s={row['strength']:g}"


def detail_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one line per method of one (model, task, format)."""
    lines = [
        "| method | setting (dev) | #acts | pairs | dev full / restr. | test full-vocab [95% CI] "
        "| Δ full vs none | test restricted [95% CI] | Δ restr. vs none | +/−/0 | paper |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = "–" if r["published"] is None else f"{r['published']:.2f}"
        lines.append(
            f"| {r['method']} | {_setting(r)} | {r['n_activations']} | {r['n_pairs'] or '–'} | "
            f"{_pct(r['dev_accuracy'])} / {_pct(r['dev_restricted'])} | "
            f"{_ci(r['test_accuracy'], r['test_accuracy_lo'], r['test_accuracy_hi'])} | "
            f"{_delta(r['delta_accuracy'], r['delta_accuracy_lo'], r['delta_accuracy_hi'])} | "
            f"{_ci(r['test_restricted'], r['test_restricted_lo'], r['test_restricted_hi'])} | "
            f"{_delta(r['delta_restricted'], r['delta_restricted_lo'], r['delta_restricted_hi'])} | "
            f"{r['protocols'] or '–'} | {paper} |"
        )
    return "\n".join(lines)


def summary_table(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> str:
    """Markdown: methods x tasks of one (model, format), test `metric` with the paper's number."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["task"]): r for r in rows}
    key = "test_accuracy" if metric == "accuracy" else "test_restricted"
    head = "| method | " + " | ".join(f"{t} (paper)" for t in tasks) + " |"
    lines = [head, "|---|" + "---|" * len(tasks)]
    for m in methods:
        cells = []
        for t in tasks:
            r = by.get((m, t))
            if r is None:
                cells.append("")
                continue
            paper = "" if r["published"] is None else f" ({r['published']:.1f})"
            cells.append(f"{_pct(r[key])}{paper}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(
    config: ReproduceConfig, records: Sequence[Mapping[str, Any]], *, seconds: float | None = None
) -> str:
    """The whole results document: sizes, summary matrices, then one detailed table per task."""
    rows = table_rows(records, n_boot=config.n_boot, seed=config.seed)
    compute = sum(r.get("seconds", 0.0) for r in records)
    prepare = {
        (r["model"], r["task"], r["format"]): sum(r.get("prepare", {}).get("seconds", {}).values())
        for r in records
    }
    sizes = sorted(
        {(r["task"], r["sizes"]["train_pairs"], r["sizes"]["dev"], r["sizes"]["test"]) for r in records}
    )
    parts = [
        "# steerlens reproduction results\n",
        "`full` = full-vocabulary argmax equals the gold label's first token (the papers' "
        "metric); `restr.` = the gold option has the highest log-probability among the options. "
        f"K / layer and strength chosen on dev by `{config.metric}` (ties: the other protocol, "
        "then the smaller setting); test scored once. Intervals: 95% percentile bootstrap over "
        "test items; Δ = paired difference to `none` on the same items; +/−/0 = whether the Δ "
        "interval lies above 0, below 0 or contains it (full / restricted). `paper` = the "
        "published LLaMA2-7B-Chat number for the cell (source in results.csv): compare the "
        "direction and size of gains, not the level.\n",
        "Sizes (first rows of each split): "
        + "; ".join(f"{t}: {p} pairs, dev {d}, test {n}" for t, p, d, n in sizes)
        + ".\n",
        f"Compute: {compute + sum(prepare.values()):.0f} s in cells and preparation"
        + (f"; this invocation {seconds:.0f} s wall" if seconds is not None else "")
        + ".\n",
    ]
    for model_name in dict.fromkeys(r["model"] for r in rows):
        for fmt in dict.fromkeys(r["format"] for r in rows if r["model"] == model_name):
            sub = [r for r in rows if r["model"] == model_name and r["format"] == fmt]
            parts.append(f"## {model_name}, {fmt} ({config.style} template)\n")
            parts.append("Test accuracy, full vocabulary (paper's number in brackets):\n")
            parts.append(summary_table(sub, "accuracy") + "\n")
            parts.append("Test accuracy, restricted to the options:\n")
            parts.append(summary_table(sub, "restricted") + "\n")
            for task in dict.fromkeys(r["task"] for r in sub):
                cell_rows = [r for r in sub if r["task"] == task]
                prep = prepare.get((model_name, task, fmt), 0.0)
                parts.append(f"### {task}, {fmt}\n")
                parts.append(detail_table(cell_rows) + "\n")
                parts.append(
                    f"Time: {sum(r['seconds'] for r in cell_rows):.0f} s in cells "
                    f"+ {prep:.0f} s preparation.\n"
                )
    return "\n".join(parts)


def results_csv(config: ReproduceConfig, records: Sequence[Mapping[str, Any]]) -> str:
    rows = table_rows(records, n_boot=config.n_boot, seed=config.seed)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def write_tables(
    config: ReproduceConfig,
    records: Sequence[Mapping[str, Any]],
    out: str | os.PathLike[str],
    *,
    seconds: float | None = None,
) -> dict[str, Path]:
    """Write results.md, results.csv and config.json to `out` (each atomically)."""
    out = Path(out)
    paths = {
        "md": atomic_write_text(out / "results.md", results_markdown(config, records, seconds=seconds)),
        "csv": atomic_write_text(out / "results.csv", results_csv(config, records)),
        "config": atomic_write_text(
            out / "config.json", json.dumps(dataclasses.asdict(config), indent=2, default=str)
        ),
    }
    return paths


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


_UNSET: Any = object()


def _limit(text: str) -> int | None:
    return None if text.lower() in ("all", "none") else int(text)


def add_parser(sub: Any) -> None:
    """`steerlens reproduce`: the papers' benchmarks, every method, resumable."""
    d = ReproduceConfig()
    p = sub.add_parser(
        "reproduce",
        help="all methods on the papers' benchmarks: tune on dev, score test once, resumable",
    )
    p.add_argument("--data", "--data-dir", dest="data_dir", default=None,
                   help="benchmark directory (default: $STEERLENS_DATA or ../shared/data)")
    p.add_argument("--models", nargs="+", default=None,
                   help="model names (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--tasks", nargs="+", default=None, choices=PAPER_TASKS)
    p.add_argument("--shots", nargs="+", type=int, default=None,
                   help=f"prompt formats as numbers of demonstrations (default {list(d.shots)})")
    p.add_argument("--style", default=None, choices=["raw", "chat"])
    p.add_argument("--n-train", type=_limit, default=_UNSET,
                   help=f"contrastive pairs, or 'all' (default {d.n_train})")
    p.add_argument("--n-dev", type=_limit, default=_UNSET, help=f"dev items (default {d.n_dev})")
    p.add_argument("--n-test", type=_limit, default=_UNSET, help=f"test items (default {d.n_test})")
    p.add_argument("--methods", nargs="+", default=None, choices=ALL_METHODS)
    p.add_argument("--metric", default=None, choices=list(METRICS),
                   help="dev metric that picks K and strength (default accuracy)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help=f"output directory (default {d.out})")
    p.add_argument("--quick", action="store_true",
                   help="CI size: sst2+copa, 0-shot, 24 pairs, 16 dev, 24 test, 2 methods + none")
    p.add_argument("--no-progress", action="store_true")  # fmt: skip


def config_from_args(args: Any) -> ReproduceConfig:
    config = quick_config() if args.quick else ReproduceConfig()
    changes = {
        "data_dir": args.data_dir,
        "models": tuple(args.models) if args.models else None,
        "tasks": tuple(args.tasks) if args.tasks else None,
        "shots": tuple(args.shots) if args.shots else None,
        "style": args.style,
        "methods": tuple(args.methods) if args.methods else None,
        "metric": args.metric,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
        "out": args.out,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    for name in ("n_train", "n_dev", "n_test"):
        if getattr(args, name, _UNSET) is not _UNSET:
            changes[name] = getattr(args, name)  # None = the whole split
    return dataclasses.replace(config, **changes)


def main(args: Any) -> int:
    config = config_from_args(args)
    result = run_reproduction(config, progress=not args.no_progress)
    print(f"{len(result['computed'])} cells computed, {len(result['reused'])} reused; "
          f"wrote {result['out']}/results.md and results.csv ({result['seconds']:.0f} s)")  # fmt: skip
    return 0


COMMAND = (add_parser, main)
