"""The main job (`steerlens run`): every method on one model and task, tuned on dev, scored once.

`run_job(RunConfig(...))` loads the model and task, collects paired differences at every site the
chosen methods read in one pass over the train split, tunes every method's grid on the dev split
with `steerlens.tune` (the rule every driver shares), scores the test split once, and writes
`results.md`, `results.csv` (the reproduction's columns), `grids.csv` (every dev cell), the chosen
masks and `config.json` to `config.out`. When the test items carry subjects (MMLU), results.md
also shows every row's test accuracy per discipline, and `disciplines.csv` holds it
(`experiments.disciplines`). TruthfulQA, scored by MC1/MC2, runs in `mc_job.run_mc`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._backend import HookedTransformer
from .._io import atomic_write_text
from .._types import Metric
from ..answers import AnswerSpace, respace
from ..collect import Differences
from ..evaluate import METRICS, EvalResult, encode_items
from ..mask import Mask
from ..methods import BASELINE, METHOD_NAMES, METHODS, get_method, published
from ..models import EMBEDDED_MODEL, load_model
from ..sweep import SweepResult
from ..tasks import DemoMode, PromptStyle, Task, format_task, load_task
from ..tokens import tokenizer_of
from ..tune import Choice, Grid, tune
from ._shared import method_differences
from .disciplines import discipline_markdown, discipline_rows, disciplines_csv, item_subjects
from .mc_job import is_mc_task
from .records import Record
from .report import PROTOCOLS_TEXT, detail_table, grids_csv, results_csv, table_rows

RESULTS_FORMAT = 2  # results.csv has the reproduction's columns since version 2
DEFAULT_SHOTS: dict[str, int] = {"sentiment": 4}
"""Demonstrations when `n_shot` is not given, per task (else 0). The built-in sentiment task is
the default job: zero-shot the embedded model ignores its answer format (48% on a two-way
choice), after 4 shared demonstrations it answers the reviews (89% with seed 0)."""


def default_shots(task: str) -> int:
    """`DEFAULT_SHOTS[task]`, 0 for every other task."""
    return DEFAULT_SHOTS.get(task, 0)


CONTROLS: tuple[str, ...] = tuple(
    m for m in METHOD_NAMES if METHODS[m].control and not METHODS[m].released
)
"""The ablation controls `steerlens run --controls` adds: as many units at random places, a fixed
vector on the method's units, AUSteer's units ranked by mean difference."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; saved next to its results as config.json."""

    model: str | None = None
    task: str = "sentiment"
    data_dir: str | None = None
    style: PromptStyle = "raw"
    n_shot: int = 0  # `steerlens run` without --n-shot: `default_shots(task)`
    demos: DemoMode = "shared"
    n_train: int | None = 150
    n_dev: int | None = 100
    n_test: int | None = 300
    # steerlens' own variants of the methods; the released ones (`Method.released`) and the
    # ablation controls (`Method.control`, `CONTROLS`) are chosen by name
    methods: tuple[str, ...] = tuple(
        m for m in METHOD_NAMES if not METHODS[m].released and not METHODS[m].control
    )
    metric: Metric = "accuracy"
    answer_space: AnswerSpace = "keep"
    batch_size: int = 32
    seed: int = 0
    device: str | None = None
    out: str = "runs/main"
    workers: int = 1  # processes that tune the methods side by side (`tune(..., workers=)`)

    def __post_init__(self) -> None:
        for name in self.methods:
            get_method(name)  # an unknown name lists the valid ones
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric {self.metric!r}; valid: {METRICS}")
        for name in ("n_train", "n_dev", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None (the whole split), got {value}")
        if self.answer_space not in ("keep", "auto"):
            raise ValueError(f"answer_space must be 'keep' or 'auto', got {self.answer_space!r}")
        if self.batch_size < 1 or self.n_shot < 0:
            raise ValueError("batch_size must be >= 1 and n_shot >= 0")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass(frozen=True)
class RunResult:
    """What `run_job` computed: one record per row ("none" first), each method's dev choice
    (its whole grid) and chosen mask, the timings and where the files went."""

    records: list[Record]
    choices: dict[str, Choice]
    dev_baseline: EvalResult
    timings: dict[str, float]
    out: Path
    table: str
    metric: Metric = "accuracy"
    task: Task | None = field(default=None, repr=False)
    disciplines: list[dict[str, Any]] | None = None  # MMLU: `discipline_rows`, else None

    def sweep(self, method: str) -> SweepResult:
        """A method's dev grid as a `SweepResult` (for `figures.sweep_heatmap`)."""
        c = self.choices[method]
        masks: dict[Hashable, Mask] = {c.setting: c.mask}
        grids = {m: np.asarray(g) for m, g in c.grids.items()}
        return SweepResult(
            list(c.settings),
            list(c.strengths),
            self.metric,
            grids["accuracy"],
            grids["restricted"],
            self.dev_baseline,
            method,
            masks,
            paper=grids.get("paper"),
        )

    def record(self, method: str) -> Record:
        return next(r for r in self.records if r.method == method)


def load_raw_task(config: RunConfig) -> Task:
    """The unformatted task (cheap, no model): bad names or paths fail here, early."""
    return load_task(config.task, data_dir=config.data_dir, seed=config.seed)


def prepare_task(config: RunConfig, model: HookedTransformer, raw: Task | None = None) -> Task:
    """The task formatted for the model, keeping the first rows of each split; with
    `answer_space="auto"`, answers spelled as they continue their prompts (`answers.respace`)."""
    raw = raw if raw is not None else load_raw_task(config)
    task = format_task(
        raw,
        config.style,
        tokenizer=model.tokenizer,
        n_shot=config.n_shot,
        seed=config.seed,
        demos=config.demos,
    )
    task = task.with_limits(train=config.n_train, dev=config.n_dev, test=config.n_test)
    if config.answer_space == "auto":
        tok = tokenizer_of(model)
        task = dataclasses.replace(
            task,
            train=respace(tok, task.train),
            dev=respace(tok, task.dev),
            test=respace(tok, task.test),
        )
    return task


def run_job(
    config: RunConfig,
    *,
    model: HookedTransformer | None = None,
    diffs: Mapping[str, Differences] | None = None,
    progress: bool = True,
) -> RunResult:
    """Run every configured method; write the tables, grids, masks and config.

    `diffs` (`Method.differences_key` -> differences of this config's train split: the site,
    for methods with the template's texts) skips the collection, for a caller that has them.
    """
    raw = load_raw_task(config)
    if "generation" in raw.info:
        raise ValueError(
            f"{config.task} is scored on generated text: run it with `steerlens run` or "
            "run_generation(GenerationConfig(task=...))"
        )
    if is_mc_task(raw):
        raise ValueError(
            f"{config.task} is scored by MC1/MC2 over whole answers (its answers share first "
            "tokens): run it with `steerlens run --task truthfulqa` or run_mc(McConfig(...))"
        )
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    load = None
    if model is None:
        model = load_model(config.model, device=config.device)
        load = functools.partial(load_model, config.model, device=config.device)
    timings["load model"] = time.perf_counter() - clock

    clock = time.perf_counter()
    task = prepare_task(config, model, raw)
    methods = [get_method(name) for name in config.methods]
    keys = {m.differences_key for m in methods}
    sides = {m.differences_key for m in methods if m.needs_sides}
    if (
        diffs is None
        or not keys <= set(diffs)
        or any(diffs[k].positive is None for k in sides)  # ITI's probes read each text
    ):
        diffs = method_differences(
            model, task, methods, batch_size=config.batch_size, seed=config.seed, progress=progress
        )
    timings["collect differences"] = time.perf_counter() - clock

    clock = time.perf_counter()
    n_layers = model.cfg.n_layers
    arms = {}
    for m in methods:
        settings, strengths = m.grid_spec("run", n_layers)
        arms[m.name] = Grid(m.grid(diffs[m.differences_key], settings), strengths)
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    if not dev.single_token:
        warnings.warn(
            "Some answer options span several tokens: every grid cell is evaluated in full.",
            stacklevel=2,
        )
    result = tune(
        model,
        dev,
        test,
        arms,
        metric=config.metric,
        batch_size=config.batch_size,
        progress=progress,
        workers=config.workers,
        load=load,
    )
    timings["tune on dev and score test"] = time.perf_counter() - clock

    common = {
        "model": config.model or EMBEDDED_MODEL,
        "task": task.name,
        "format": f"{task.n_shot}-shot",
        "extra": {
            "sizes": {"train_pairs": len(task.train), "dev": len(task.dev), "test": len(task.test)}
        },
    }
    records = [
        Record.unsteered(
            result.dev_baseline, published=published(BASELINE, task.name), **common
        ).scored(result.test_baseline, seed=config.seed)
    ]
    for m in methods:
        tuned = result.arms[m.name]
        record = Record.from_choice(
            m.name,
            tuned.choice,
            site=m.site,
            setting_name=m.setting_name,
            n_pairs=diffs[m.differences_key].n_pairs,
            dev_baseline=result.dev_baseline,
            published=m.paper(task.name),
            **common,
        )
        records.append(record.scored(tuned.test, seed=config.seed))
    choices = {name: t.choice for name, t in result.arms.items() if isinstance(name, str)}
    subjects = item_subjects(task, "test")
    by_discipline = None if subjects is None else discipline_rows(records, subjects)
    out, table = write_results(config, task, records, choices, timings, by_discipline)
    return RunResult(
        records,
        choices,
        result.dev_baseline,
        timings,
        out,
        table,
        config.metric,
        task,
        by_discipline,
    )


def write_results(
    config: RunConfig,
    task: Task,
    records: list[Record],
    choices: dict[str, Choice],
    timings: dict[str, float],
    disciplines: list[dict[str, Any]] | None = None,
) -> tuple[Path, str]:
    """Write results.md, results.csv, grids.csv, config.json and the chosen masks to `config.out`;
    with `disciplines` (`discipline_rows`), their tables in results.md and disciplines.csv."""
    out = Path(config.out)
    rows = table_rows(records, seed=config.seed)
    table = detail_table(rows)
    sizes = f"train {len(task.train)} pairs, dev {len(task.dev)}, test {len(task.test)}"
    header = (
        f"# steerlens results: {task.name} ({task.style}, {task.n_shot}-shot)\n\n"
        f"Model: {config.model or EMBEDDED_MODEL + ' (embedded)'}; {sizes}. Dev metric: "
        f"`{config.metric}`. {PROTOCOLS_TEXT} `published` = the published LLaMA2-7B-Chat number "
        "where there is one (compare the direction of gains, not the level).\n\n"
    )
    timing = "\n".join(f"- {k}: {v:.1f} s" for k, v in timings.items())
    extra = ""
    if disciplines is not None:
        extra = "\n\n" + discipline_markdown(disciplines)
        atomic_write_text(out / "disciplines.csv", disciplines_csv(disciplines))
    atomic_write_text(out / "results.md", header + table + extra + f"\n\nWall time:\n{timing}\n")
    atomic_write_text(out / "results.csv", results_csv(rows))
    atomic_write_text(out / "grids.csv", grids_csv(records))
    for name, choice in choices.items():
        choice.mask.save(out / "masks" / f"{name}.safetensors")
    meta = {
        "format_version": RESULTS_FORMAT,
        "config": dataclasses.asdict(config),
        "timings_s": timings,
        "task": repr(task),
    }
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2, default=str))
    return out, table
