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
``<out>/cells/``, written atomically (a temporary file, then `os.replace`): a "dev" record as soon
as the cell's setting is chosen, the final "done" record after its test pass. A later run with
the same settings reuses every finished record, skips the dev sweep of cells with a dev record,
and computes nothing else twice (a record written under other settings is recomputed); a
progress bar counts the remaining cells. The tables (``results.md``, ``results.csv``) are rebuilt
from the records at the end of every run, also after an error or an interrupt.

Shared passes (same numbers, less time): methods that steer the last prompt token share one dev
sweep per (task, format) and one test pass, with each cell's strength folded into its mask's
weights (`fold_strength`), so the prompt prefix runs once per item; the test pass also gives the
unsteered row. Every-position methods get one dev sweep each (from their first steered layer) and
one evaluation on test.

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
from .tokens import prompt_ids

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

# The reproduction's grids (K or layer, strength). Last-prompt-token methods cost one extra token
# per cell on a shared prefix, so their grids reach the papers' large strengths (SADI's official
# grids use strength = 1 + delta up to 80); every-position methods cost a forward pass from their
# first steered layer per cell, so they get about 6 cells each. Settings None keep run.py's
# (CAA's layers at 1/3, 1/2 and 2/3 of the depth).
Grids = dict[str, tuple[tuple[Any, ...] | None, tuple[float, ...]]]
REPRODUCE_GRIDS: Grids = {
    "sadi-head": ((1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 19.0)),
    "sadi-neuron": ((5, 30, 100, 300), (0.5, 2.0, 9.0, 29.0)),
    "sadi-hidden": ((2, 4, 8, 16), (0.5, 2.0, 9.0, 19.0)),
    "sadi-head-fixed-vector": ((1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 19.0)),
    "sadi-head-random": ((1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 19.0)),
    "austeer-attention": ((10, 100), (2.0, 8.0, 32.0)),
    "austeer-ffn": ((10, 100), (2.0, 8.0, 32.0)),
    "caa": (None, (0.5, 2.0)),  # None: keep run.py's depth-relative layers
    "iti": ((4, 16), (1.0, 4.0, 16.0)),
}

QUICK_GRIDS: Grids = {
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
    grids: Grids = field(default_factory=lambda: dict(REPRODUCE_GRIDS))
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
    settings = method.settings if settings is None else tuple(settings)
    return dataclasses.replace(method, settings=settings, strengths=tuple(strengths))


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
        m = method_grid(config, _methods(30)[cell.method])
        # CAA's default layers follow the model's depth, which the model name already fixes
        derived = m.setting_name == "layer" and config.grids.get(cell.method, (None,))[0] is None
        spec["settings"] = "by depth" if derived else [_jsonable(s) for s in m.settings]
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
    if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
        return None
    if record.get("stage") not in ("dev", "done") or (
        record["stage"] == "done" and "test" not in record
    ):
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
        raise ValueError(
            f"paired_bootstrap_ci needs flags on the same items ({a.shape} vs {b.shape})"
        )
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


def choose(primary: np.ndarray, secondary: np.ndarray) -> tuple[int, int]:
    """Index `(i, j)` of the best cell of a grid: highest `primary`, ties to higher `secondary`,
    then to the first cell in row-major order (the smaller setting, then the smaller strength)."""
    best: tuple[float, float] | None = None
    where = (0, 0)
    for i in range(primary.shape[0]):
        for j in range(primary.shape[1]):
            key = (float(primary[i, j]), float(secondary[i, j]))
            if best is None or key > best:
                best, where = key, (i, j)
    return where


def _grids(result: SweepResult, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric == "accuracy":
        return result.accuracy, result.restricted
    return result.restricted, result.accuracy


def choose_cell(result: SweepResult, metric: str = "accuracy") -> tuple[Hashable, float, int, int]:
    """`(setting, strength, i, j)` of the best dev cell of a sweep (see `choose`)."""
    i, j = choose(*_grids(result, metric))
    return result.settings[i], result.strengths[j], i, j


def fold_strength(mask: Mask, strength: float) -> Mask:
    """The same mask with `strength` folded into its weights: steering it with strength 1 applies
    exactly `a + strength * w * a` (or `a + strength * w * v`), so masks with different strengths
    can share one `sweep` (and its prefix pass)."""
    return dataclasses.replace(mask, weights=mask.weights * float(strength))


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


def _quiet_sweep(model: HookedTransformer, items: EncodedItems, masks: Mapping[Hashable, Mask],
                 strengths: Sequence[float], metric: str, batch_size: int, progress: bool) -> SweepResult:  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flip.* sign")
        return sweep(model, items, dict(masks), strengths, metric=metric, batch_size=batch_size,
                     progress=progress)  # fmt: skip


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
    """Sweep `masks` x `strengths` on dev, pick one cell (`choose`), score test once.

    Returns plain data: the chosen setting and strength, its mask's size, dev scores under both
    protocols, the test summary (`eval_summary`), the whole dev grid and the chosen mask.
    """
    result = _quiet_sweep(model, dev, masks, strengths, metric, batch_size, progress)
    setting, strength, i, j = choose_cell(result, metric)
    mask = result.masks[setting]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flip.* sign")
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
    dev_baseline: EvalResult | None = None


def _prepare(
    config: ReproduceConfig,
    model: HookedTransformer,
    task_name: str,
    n_shot: int,
    sites: Iterable[str],
    load: TaskLoader,
) -> _Group:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    task = load(task_name, n_shot, model)
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    seconds["load and encode"] = time.perf_counter() - clock
    clock = time.perf_counter()
    diffs: dict[str, Differences] = {}
    if sites:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pairs (have identical|end in the same)")
            got = collect_differences(
                model, task.train, site=sorted(set(sites)), batch_size=max(1, config.batch_size // 2),
                seed=config.seed, task=task.name, progress=False,
            )  # fmt: skip
        assert isinstance(got, dict)
        diffs = got
    seconds["collect differences"] = time.perf_counter() - clock
    return _Group(task, dev, test, diffs, seconds)


def _header(
    config: ReproduceConfig, model: HookedTransformer, group: _Group, cell: Cell
) -> dict[str, Any]:
    task = group.task
    return {
        "spec": cell_spec(config, cell),
        "model": model_label(cell.model),
        "fingerprint": model_fingerprint(model),
        "task": cell.task,
        "format": format_label(cell.n_shot),
        "method": cell.method,
        "sizes": {"train_pairs": len(task.train), "dev": len(task.dev), "test": len(task.test)},
        "published": published(cell.method, cell.task),
    }


def _dev_stage(
    config: ReproduceConfig,
    model: HookedTransformer,
    group: _Group,
    cells: Sequence[Cell],
    done: Callable[[Cell, dict[str, Any]], None],
) -> None:
    """Sweep every method cell on dev and choose its setting; `done(cell, record)` as each is chosen.

    Masks that steer the last prompt token share one sweep (one prefix pass per dev item) through
    `fold_strength`; masks that steer every position get one sweep per method.
    """
    table = _methods(model.cfg.n_layers)
    if cells and not group.dev.single_token:
        warnings.warn(
            "Some answer options span several tokens: sweeps evaluate every grid cell in full "
            "(no shared prefix), which is much slower.",
            stacklevel=2,
        )
    grids: dict[Cell, tuple[Method, dict[Hashable, Mask]]] = {}
    for cell in cells:
        method = method_grid(config, table[cell.method])
        grids[cell] = (method, method.grid(group.diffs, method.settings))
    last = [c for c in cells if next(iter(grids[c][1].values())).positions == "last"]
    batches_: list[list[Cell]] = ([last] if last else []) + [[c] for c in cells if c not in last]
    for batch in batches_:
        clock = time.perf_counter()
        if batch is last:
            combined = {
                (c.method, s, a): fold_strength(m, a)
                for c in batch
                for s, m in grids[c][1].items()
                for a in grids[c][0].strengths
            }
            res = _quiet_sweep(
                model, group.dev, combined, [1.0], config.metric, config.batch_size, False
            )
            index = {label: i for i, label in enumerate(res.settings)}
        else:
            method, masks = grids[batch[0]]
            res = _quiet_sweep(model, group.dev, masks, method.strengths, config.metric,
                               config.batch_size, False)  # fmt: skip
        seconds = (time.perf_counter() - clock) / len(batch)
        group.dev_baseline = res.baseline
        for cell in batch:
            method, masks = grids[cell]
            settings, strengths = list(masks), list(method.strengths)
            if batch is last:
                shape = (len(settings), len(strengths))
                pick = [index[(cell.method, s, a)] for s in settings for a in strengths]
                acc = res.accuracy[pick, 0].reshape(shape)
                restricted = res.restricted[pick, 0].reshape(shape)
            else:
                acc, restricted = res.accuracy, res.restricted
            i, j = choose(
                *((acc, restricted) if config.metric == "accuracy" else (restricted, acc))
            )
            mask = masks[settings[i]]
            diffs = group.diffs[method.site]
            done(cell, {
                "stage": "dev",
                "site": method.site, "setting_name": method.setting_name,
                "setting": _jsonable(settings[i]), "strength": float(strengths[j]),
                "n_units": mask.k, "n_activations": mask.n_activations,
                "n_pairs": diffs.n_pairs, "n_identical_pairs": diffs.n_identical,
                "dev_accuracy": float(acc[i, j]), "dev_restricted": float(restricted[i, j]),
                "dev_baseline": {"accuracy": res.baseline.accuracy,
                                 "restricted": res.baseline.restricted},
                "grid": [
                    {"setting": _jsonable(s), "strength": float(a), "accuracy": float(acc[x, y]),
                     "restricted": float(restricted[x, y])}
                    for x, s in enumerate(settings) for y, a in enumerate(strengths)
                ],
                "units": [mask.label(u) for u in range(min(mask.k, 20))],
                "dev_seconds": seconds,
            })  # fmt: skip


def _chosen_mask(config: ReproduceConfig, model: HookedTransformer, group: _Group,
                 cell: Cell, dev: Mapping[str, Any]) -> Mask:  # fmt: skip
    method = method_grid(config, _methods(model.cfg.n_layers)[cell.method])
    masks = method.grid(group.diffs, method.settings)
    by_json = {json.dumps(_jsonable(s)): m for s, m in masks.items()}
    return by_json[json.dumps(dev["setting"])]


def _test_stage(
    config: ReproduceConfig,
    model: HookedTransformer,
    group: _Group,
    cells: Sequence[Cell],
    devs: Mapping[Cell, Mapping[str, Any]],
) -> dict[Cell, tuple[EvalResult, float]]:
    """Score each cell's chosen setting on test once: `{cell: (result, seconds)}`.

    Last-prompt-token masks (and the unsteered baseline) share one prefix pass per test item;
    every-position masks are evaluated one by one.
    """
    out: dict[Cell, tuple[EvalResult, float]] = {}
    chosen = {
        c: _chosen_mask(config, model, group, c, devs[c]) for c in cells if c.method != BASELINE
    }
    last = [c for c in chosen if chosen[c].positions == "last"]
    base_cell = next((c for c in cells if c.method == BASELINE), None)
    if last:
        clock = time.perf_counter()
        folded = {c.method: fold_strength(chosen[c], devs[c]["strength"]) for c in last}
        res = _quiet_sweep(
            model, group.test, folded, [1.0], config.metric, config.batch_size, False
        )
        share = (time.perf_counter() - clock) / (len(last) + (base_cell is not None))
        for k, c in enumerate(last):
            out[c] = (res.results[k], share)
        if base_cell is not None:
            out[base_cell] = (res.baseline, share)
    if base_cell is not None and base_cell not in out:
        clock = time.perf_counter()
        result = evaluate(model, group.test, batch_size=config.batch_size, progress=False)
        out[base_cell] = (result, time.perf_counter() - clock)
    for c in chosen:
        if c in out:
            continue
        clock = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*flip.* sign")
            with steer(model, chosen[c], devs[c]["strength"]):
                result = evaluate(model, group.test, batch_size=config.batch_size, progress=False)
        out[c] = (result, time.perf_counter() - clock)
    return out


def _baseline_dev(
    config: ReproduceConfig, model: HookedTransformer, group: _Group
) -> dict[str, Any]:
    clock = time.perf_counter()
    if group.dev_baseline is None:
        group.dev_baseline = evaluate(
            model, group.dev, batch_size=config.batch_size, progress=False
        )
    return {
        "stage": "dev", "site": "-", "setting_name": "-", "setting": None, "strength": 0.0,
        "n_units": 0, "n_activations": 0, "n_pairs": 0,
        "dev_accuracy": group.dev_baseline.accuracy, "dev_restricted": group.dev_baseline.restricted,
        "grid": [], "dev_seconds": time.perf_counter() - clock,
    }  # fmt: skip


def run_reproduction(
    config: ReproduceConfig,
    *,
    model: HookedTransformer | None = None,
    task_loader: TaskLoader | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) every cell of `config`; write records as they finish, then the tables.

    Per (model, task, format): collect the differences once, sweep every missing method on dev
    (a "dev"-stage record is written for each as soon as its setting is chosen), then score the
    chosen settings on test (the final record, stage "done"). A rerun reuses finished records,
    skips the dev sweep of cells with a dev-stage record, and computes nothing else twice.

    Args:
        model: use this model for every entry of `config.models` (tests); else each is loaded.
        task_loader: `(task name, n_shot, model) -> Task` (tests); else `default_task_loader`.

    Returns:
        `{"records": [...], "computed": [cell filenames computed now], "reused": [...],
        "out": Path, "table": markdown, "seconds": wall time of this call}`.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    out = Path(config.out)
    cells_dir = out / "cells"
    load = task_loader or default_task_loader(config)
    cells = plan(config)
    records: dict[Cell, dict[str, Any]] = {}
    devs: dict[Cell, dict[str, Any]] = {}
    for cell in cells:
        stored = read_record(cells_dir / cell.filename())
        if stored is None or stored["spec"] != cell_spec(config, cell):
            continue
        (records if stored.get("stage") == "done" else devs)[cell] = stored
    remaining = [c for c in cells if c not in records]
    reused = [c.filename() for c in records]
    computed: list[str] = []
    work = sum(0.5 if c in devs else 1.0 for c in remaining)  # a dev-stage record is half a cell
    bar = tqdm(total=work, desc="reproduce", disable=not progress, unit="cell")
    try:
        for model_name in dict.fromkeys(c.model for c in remaining):
            todo = [c for c in remaining if c.model == model_name]
            current = model if model is not None else load_model(model_name, device=config.device)
            table = _methods(current.cfg.n_layers)
            for key in dict.fromkeys(c.group for c in todo):
                group_cells = [c for c in todo if c.group == key]
                where = f"{model_label(key[0])} {key[1]} {format_label(key[2])}"
                sites = {table[c.method].site for c in group_cells if c.method != BASELINE}
                bar.set_postfix_str(f"{where}: collecting")
                group = _prepare(config, current, key[1], key[2], sites, load)

                def dev_done(
                    cell: Cell,
                    dev: dict[str, Any],
                    group: _Group = group,
                    current: HookedTransformer = current,
                ) -> None:
                    record = {**_header(config, current, group, cell), **dev}
                    write_record(cells_dir / cell.filename(), record)
                    devs[cell] = record
                    bar.update(0.5)

                bar.set_postfix_str(f"{where}: dev sweeps")
                need_dev = [c for c in group_cells if c not in devs and c.method != BASELINE]
                _dev_stage(config, current, group, need_dev, dev_done)
                for cell in group_cells:
                    if cell.method == BASELINE and cell not in devs:
                        devs[cell] = {**_header(config, current, group, cell),
                                      **_baseline_dev(config, current, group)}  # fmt: skip
                bar.set_postfix_str(f"{where}: test")
                scored = _test_stage(config, current, group, group_cells, devs)
                for cell in group_cells:
                    result, seconds = scored[cell]
                    record = {
                        **devs[cell],
                        **_header(config, current, group, cell),
                        "stage": "done",
                        "test": eval_summary(result, n_boot=config.n_boot, seed=config.seed),
                        "test_seconds": seconds,
                        "prepare": {"seconds": group.seconds, "sites": sorted(sites)},
                    }
                    record["seconds"] = record.get("dev_seconds", 0.0) + seconds
                    write_record(cells_dir / cell.filename(), record)
                    records[cell] = record
                    computed.append(cell.filename())
                    bar.update(0.5 if cell.method != BASELINE else 1.0)
    finally:
        bar.close()
        ordered = [records[c] for c in cells if c in records]
        if ordered:
            write_tables(config, ordered, out, seconds=time.perf_counter() - start,
                         cpu_seconds=time.process_time() - cpu_start)  # fmt: skip
    ordered = [records[c] for c in cells]
    return {
        "records": ordered,
        "computed": computed,
        "reused": reused,
        "out": out,
        "table": results_markdown(config, ordered),
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
    }


# ------------------------------------------------------------------------------------------------
# Cost estimate: measure one evaluation per task, count the forward passes of a config
# ------------------------------------------------------------------------------------------------

# Methods whose masks steer the last prompt token (SADI's protocol); the others steer every position.
LAST_TOKEN_METHODS = frozenset(
    {"sadi-head", "sadi-neuron", "sadi-hidden", "sadi-head-fixed-vector", "sadi-head-random"}
)


def _one_token_cost(model: HookedTransformer) -> float:
    """A one-token pass (a sweep cell on a cached prefix) in units of one prompt token's forward:
    the blocks' work for one token plus the unembedding, over the blocks' work for one token."""
    blocks = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks."))
    return 1.0 + model.cfg.d_vocab * model.cfg.d_model / max(blocks, 1)


def count_forwards(
    config: ReproduceConfig,
    train_tokens: Sequence[int],
    dev_tokens: Sequence[int],
    test_tokens: Sequence[int],
    *,
    one_token: float = 1.3,
    n_layers: int = 30,
) -> dict[str, float]:
    """Token-forwards (tokens pushed through all blocks) one (task, format) group of the config
    costs, by stage. Every-position sweeps are counted from layer 0: an upper bound, since a sweep
    cell runs only from its mask's first steered layer (in pilots the runs took 0.6-0.7 of it)."""
    table = _methods(n_layers)
    methods = [method_grid(config, table[m]) for m in config.methods if m != BASELINE]
    last = [m for m in methods if m.name in LAST_TOKEN_METHODS]
    every = [m for m in methods if m.name not in LAST_TOKEN_METHODS]
    n_cells = {m.name: len(dict.fromkeys(m.settings)) * len(m.strengths) for m in methods}
    dev_sum, test_sum = float(sum(dev_tokens)), float(sum(test_tokens))
    dev = 0.0
    if last:
        dev += dev_sum + len(dev_tokens) * one_token * sum(n_cells[m.name] for m in last)
    dev += sum(dev_sum * (1 + n_cells[m.name]) for m in every)
    if not methods and BASELINE in config.methods:
        dev += dev_sum
    test = len(every) * test_sum
    if last or BASELINE in config.methods:
        test += test_sum + len(test_tokens) * one_token * len(last)
    return {"collect": float(sum(train_tokens)) if methods else 0.0, "dev": dev, "test": test}


def estimate(
    config: ReproduceConfig,
    model: HookedTransformer,
    *,
    task_loader: TaskLoader | None = None,
    calibrate: int = 16,
    use_cpu_time: bool = False,
) -> list[dict[str, Any]]:
    """Measure one batched evaluation of each (task, format) and predict the config's run time.

    For each group: times `evaluate` on `calibrate` test items of about the median length (after
    a warm-up) to get seconds per prompt token on this machine, counts the tokens the config's collection, dev
    sweeps and test scoring push through the model (`count_forwards`), and multiplies.
    Wall time is right on an idle machine; on a busy one, `use_cpu_time` with one torch thread
    measures the compute itself (the wall time one idle core would take).
    """
    load = task_loader or default_task_loader(config)
    one = _one_token_cost(model)
    rows = []
    warmed = False
    for task_name in config.tasks:
        for n_shot in config.shots:
            task = load(task_name, n_shot, model)
            dev, test = encode_items(model, task.dev), encode_items(model, task.test)
            pairs = [prompt_ids(model, ex.prompt) for ex in task.train]
            train_tokens = [len(p) + 2 for p in pairs]  # the prompt once, then each side's answer
            # items of about the median length: the run sorts items by length, so its batches
            # carry little padding
            order = sorted(range(len(test.prompts)), key=lambda i: len(test.prompts[i]))
            mid = max(0, len(order) // 2 - calibrate // 2)
            pick = order[mid : mid + calibrate]
            sample = EncodedItems([test.prompts[i] for i in pick], [test.options[i] for i in pick])
            if not warmed:
                evaluate(model, sample, batch_size=config.batch_size, progress=False)
                warmed = True
            clock, cpu = time.perf_counter(), time.process_time()
            evaluate(model, sample, batch_size=config.batch_size, progress=False)
            seconds = time.perf_counter() - clock
            if use_cpu_time:
                seconds = time.process_time() - cpu
            per_token = seconds / sum(len(p) for p in sample.prompts)
            counts = count_forwards(
                config, train_tokens, [len(p) for p in dev.prompts], [len(p) for p in test.prompts],
                one_token=one, n_layers=model.cfg.n_layers,
            )  # fmt: skip
            rows.append({
                "task": task_name, "format": format_label(n_shot),
                "sizes": (len(task.train), len(task.dev), len(task.test)),
                "mean_test_tokens": sum(len(p) for p in test.prompts) / len(test.prompts),
                "ms_per_item": 1000 * seconds / len(sample.prompts),
                "ms_per_token": 1000 * per_token,
                "token_forwards": counts,
                "seconds": {k: v * per_token for k, v in counts.items()},
            })  # fmt: skip
    return rows


def estimate_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of `estimate` rows with a total line."""
    lines = [
        "| task | format | pairs/dev/test | test prompt tokens | ms per test item (measured) "
        "| collect s | dev sweeps s | test s | total min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for r in rows:
        s = r["seconds"]
        t = sum(s.values())
        total += t
        lines.append(
            f"| {r['task']} | {r['format']} | {'/'.join(map(str, r['sizes']))} | "
            f"{r['mean_test_tokens']:.0f} | {r['ms_per_item']:.0f} | {s['collect']:.0f} | "
            f"{s['dev']:.0f} | {s['test']:.0f} | {t / 60:.1f} |"
        )
    lines.append(f"| **all** | | | | | | | | **{total / 60:.1f}** |")
    return "\n".join(lines)


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


def _baselines(
    records: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {(r["model"], r["task"], r["format"]): r for r in records if r["method"] == BASELINE}


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
    config: ReproduceConfig,
    records: Sequence[Mapping[str, Any]],
    *,
    seconds: float | None = None,
    cpu_seconds: float | None = None,
) -> str:
    """The whole results document: sizes, summary matrices, then one detailed table per task."""
    rows = table_rows(records, n_boot=config.n_boot, seed=config.seed)
    compute = sum(r.get("seconds", 0.0) for r in records)
    prepare = {
        (r["model"], r["task"], r["format"]): sum(r.get("prepare", {}).get("seconds", {}).values())
        for r in records
    }
    sizes = sorted(
        {
            (r["task"], r["sizes"]["train_pairs"], r["sizes"]["dev"], r["sizes"]["test"])
            for r in records
        }
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
        + (
            f", {cpu_seconds:.0f} s CPU (torch threads: {torch.get_num_threads()})"
            if cpu_seconds is not None
            else ""
        )
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
    cpu_seconds: float | None = None,
) -> dict[str, Path]:
    """Write results.md, results.csv and config.json to `out` (each atomically)."""
    out = Path(out)
    text = results_markdown(config, records, seconds=seconds, cpu_seconds=cpu_seconds)
    paths = {
        "md": atomic_write_text(out / "results.md", text),
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
    p.add_argument(
        "--data",
        "--data-dir",
        dest="data_dir",
        default=None,
        help="benchmark directory (default: $STEERLENS_DATA or ../shared/data)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="model names (default: the embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument("--tasks", nargs="+", default=None, choices=PAPER_TASKS)
    p.add_argument(
        "--shots",
        nargs="+",
        type=int,
        default=None,
        help=f"prompt formats as numbers of demonstrations (default {list(d.shots)})",
    )
    p.add_argument("--style", default=None, choices=["raw", "chat"])
    p.add_argument(
        "--n-train",
        type=_limit,
        default=_UNSET,
        help=f"contrastive pairs, or 'all' (default {d.n_train})",
    )
    p.add_argument("--n-dev", type=_limit, default=_UNSET, help=f"dev items (default {d.n_dev})")
    p.add_argument("--n-test", type=_limit, default=_UNSET, help=f"test items (default {d.n_test})")
    p.add_argument("--methods", nargs="+", default=None, choices=ALL_METHODS)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="METHOD=SETTINGS:STRENGTHS",
        help="override a method's grid, e.g. sadi-head=1,2,4:0.5,1,2 (repeatable); "
        "--grid METHOD=run uses steerlens.run's default grid",
    )
    p.add_argument(
        "--metric",
        default=None,
        choices=list(METRICS),
        help="dev metric that picks K and strength (default accuracy)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help=f"output directory (default {d.out})")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI size: sst2+copa, 0-shot, 24 pairs, 16 dev, 24 test, 2 methods + none",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="measure one evaluation per task and print the predicted run time; run nothing",
    )
    p.add_argument(
        "--estimate-cpu",
        action="store_true",
        help="with --estimate: time by process CPU time (busy machine, --threads 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; use 1 on a busy machine)",
    )
    p.add_argument("--no-progress", action="store_true")  # fmt: skip


def parse_grid(text: str) -> tuple[str, tuple[tuple[Any, ...], tuple[float, ...]] | None]:
    """``"sadi-head=1,2,4:0.5,1"`` -> ``("sadi-head", ((1, 2, 4), (0.5, 1.0)))``; ``"caa=run"``
    -> ``("caa", None)`` (use steerlens.run's grid)."""
    name, sep, rest = text.partition("=")
    if not sep or name not in METHOD_NAMES:
        raise ValueError(
            f"--grid {text!r}: give METHOD=SETTINGS:STRENGTHS with METHOD in {METHOD_NAMES}"
        )
    if rest == "run":
        return name, None
    settings, sep, strengths = rest.partition(":")
    try:
        parsed = (
            tuple(int(x) for x in settings.split(",")),
            tuple(float(x) for x in strengths.split(",")),
        )
    except ValueError:
        raise ValueError(
            f"--grid {text!r}: settings are ints, strengths numbers, e.g. 1,2,4:0.5,1"
        ) from None
    if not sep or not parsed[0] or not parsed[1]:
        raise ValueError(f"--grid {text!r}: give METHOD=SETTINGS:STRENGTHS")
    return name, parsed


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
    if args.grid:
        changes["grids"] = {**config.grids, **dict(parse_grid(g) for g in args.grid)}
        changes["grids"] = {k: v for k, v in changes["grids"].items() if v is not None}
    for name in ("n_train", "n_dev", "n_test"):
        if getattr(args, name, _UNSET) is not _UNSET:
            changes[name] = getattr(args, name)  # None = the whole split
    return dataclasses.replace(config, **changes)


def main(args: Any) -> int:
    config = config_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.estimate:
        for name in config.models:
            model = load_model(name, device=config.device)
            print(f"{model_label(name)} (torch threads: {torch.get_num_threads()}):")
            print(estimate_table(estimate(config, model, use_cpu_time=args.estimate_cpu)))
        return 0
    result = run_reproduction(config, progress=not args.no_progress)
    print(f"{len(result['computed'])} cells computed, {len(result['reused'])} reused; "
          f"wrote {result['out']}/results.md and results.csv ({result['seconds']:.0f} s wall, "
          f"{result['cpu_seconds']:.0f} s CPU)")  # fmt: skip
    return 0


COMMAND = (add_parser, main)
