"""Reproduction runner (`steerlens reproduce`): every method on the papers' benchmarks, resumable.

For each model x benchmark task x prompt format, `run_reproduction` runs "none" and every chosen
method of the registry (`steerlens.methods.METHODS`): it collects paired differences from the
train split, tunes each method's reproduction grid on dev with `steerlens.tune`, scores test once,
and records both protocols with 95% bootstrap intervals, the paired difference to "none", the
number of steered activations and pairs, and the paper's published number for the cell where
there is one (LLaMA2-7B-Chat numbers: compare the direction and size of gains, not the level).

Checkpointing: each (model, task, format, method) cell is one JSON record under ``<out>/cells/``,
written atomically: a "dev" record as soon as the cell's setting is chosen, the "done" record
after its test pass. A rerun with the same settings reuses every finished record, skips the dev
sweep of cells with a dev record, and computes nothing twice; a record written under other
settings (its `spec` differs) is recomputed. The tables are rebuilt from the records at the end of
every run, also after an error or an interrupt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._backend import HookedTransformer
from .._io import atomic_write_text
from .._workers import pool
from ..evaluate import EncodedItems, EvalResult, encode_items
from ..methods import BASELINE, get_method, published
from ..models import load_model, model_fingerprint
from ..tasks import Task, load_task
from ..tune import Choice, Grid, TuneResult, choose_on_dev, score_on_test, tune_in_parts
from ._shared import method_differences
from .cells import (
    Cell,
    ReproduceConfig,
    cell_spec,
    format_label,
    model_label,
    plan,
    run_identity,
    spec_id,
)
from .records import Record, jsonable, read_record, write_record
from .report import reproduction_markdown, results_csv, table_rows
from .shards import claim, groups_of, record_layers, shard_of, stored_layers

TaskLoader = Callable[[str, int, HookedTransformer], Task]


def default_task_loader(config: ReproduceConfig) -> TaskLoader:
    """Load a benchmark task by name in the config's style with `n_shot` demonstrations."""

    def load(name: str, n_shot: int, model: HookedTransformer) -> Task:
        task = load_task(
            name,
            data_dir=config.data_dir,
            style=config.style,
            n_shot=n_shot,
            tokenizer=model.tokenizer,
            seed=config.seed,
            demos=config.demos,
        )
        return task.with_limits(train=config.n_train, dev=config.n_dev, test=config.n_test)

    return load


@dataclass(frozen=True)
class _Workers:
    """A pool of worker processes for a run, how many, and how each gets its model."""

    executor: Executor
    count: int
    load: Callable[[], HookedTransformer] | None
    threads: int
    cpu: list[float] = dataclasses.field(default_factory=list)  # each finished part's CPU time


@dataclass
class _Group:
    """What the cells of one (model, task, format) share: the task, encoded splits, differences."""

    task: Task
    dev: EncodedItems
    test: EncodedItems
    diffs: dict[str, Any]
    seconds: dict[str, float]


def _prepare(
    config: ReproduceConfig, model: HookedTransformer, cells: Sequence[Cell], load: TaskLoader
) -> _Group:
    clock = time.perf_counter()
    task = load(cells[0].task, cells[0].n_shot, model)
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    seconds = {"load and encode": time.perf_counter() - clock}
    clock = time.perf_counter()
    methods = [get_method(c.method) for c in cells if c.method != BASELINE]
    diffs = method_differences(model, task, methods, batch_size=config.batch_size, seed=config.seed)
    seconds["collect differences"] = time.perf_counter() - clock
    return _Group(task, dev, test, diffs, seconds)


def _header(
    config: ReproduceConfig, model: HookedTransformer, group: _Group, cell: Cell
) -> dict[str, Any]:
    task = group.task
    return {
        "model": model_label(cell.model),
        "task": cell.task,
        "format": format_label(cell.n_shot),
        "published": published(cell.method, cell.task),
        "extra": {
            "spec": cell_spec(config, cell, model.cfg.n_layers),
            "fingerprint": model_fingerprint(model),
            "sizes": {"train_pairs": len(task.train), "dev": len(task.dev), "test": len(task.test)},
        },
    }


def _arms(
    config: ReproduceConfig, model: HookedTransformer, group: _Group, cells: Sequence[Cell]
) -> dict[Cell, Grid]:
    arms = {}
    for cell in cells:
        method = get_method(cell.method)
        settings, strengths = config.method_grid(cell.method, model.cfg.n_layers)
        arms[cell] = Grid(method.grid(group.diffs[method.differences_key], settings), strengths)
    return arms


def _run_group(
    config: ReproduceConfig,
    model: HookedTransformer,
    group: _Group,
    cells: Sequence[Cell],
    devs: dict[Cell, Record],
    save: Callable[[Cell, Record], None],
    workers: _Workers | None = None,
) -> None:
    """Dev stage for cells without a dev record (each saved as soon as it is chosen), then one
    test pass for all cells of the group. With `workers`, the cells that need both are tuned in
    parts of near-equal cost, one per worker (`tune.tune_in_parts`); each part's dev records are
    saved as it finishes."""
    arms = _arms(config, model, group, [c for c in cells if c.method != BASELINE])
    need = {c: arms[c] for c in arms if c not in devs}

    def chosen(cell: Any, choice: Choice, dev_base: EvalResult) -> None:
        method = get_method(cell.method)
        diffs = group.diffs[method.differences_key]
        record = Record.from_choice(
            cell.method,
            choice,
            site=method.site,
            setting_name=method.setting_name,
            n_pairs=diffs.n_pairs,
            dev_baseline=dev_base,
            **_header(config, model, group, cell),
        )
        extra = {**record.extra, "n_identical_pairs": diffs.n_identical}
        save(cell, dataclasses.replace(record, extra=extra))

    base_cells = [c for c in cells if c.method == BASELINE and c not in devs]
    scored: dict[Cell, EvalResult] = {}
    test_base: EvalResult | None = None
    clock = time.perf_counter()
    if workers is not None and len(need) > 1:

        def part_done(part: TuneResult[Cell], cpu: float) -> None:
            workers.cpu.append(cpu)
            for cell, arm in part.arms.items():  # checkpoint: a resume skips these dev sweeps
                chosen(cell, arm.choice, part.dev_baseline)

        tuned = tune_in_parts(
            workers.executor,
            workers.count,
            model,
            group.dev,
            group.test,
            need,
            metric=config.metric,
            batch_size=config.batch_size,
            load=workers.load,
            threads=workers.threads,
            on_part=part_done,
        )
        dev_base, test_base = tuned.dev_baseline, tuned.test_baseline
        scored.update((cell, arm.test) for cell, arm in tuned.arms.items())
    elif need or base_cells:
        dev_base, _ = choose_on_dev(
            model,
            group.dev,
            need,
            metric=config.metric,
            batch_size=config.batch_size,
            on_choice=chosen,
        )
    for cell in base_cells:
        base = Record.unsteered(dev_base, **_header(config, model, group, cell))
        save(cell, dataclasses.replace(base, seconds=time.perf_counter() - clock))
    picked = {}
    for cell, grid in arms.items():
        if cell in scored:
            continue
        by_json = {json.dumps(jsonable(s)): m for s, m in grid.masks.items()}
        picked[cell] = (by_json[json.dumps(jsonable(devs[cell].setting))], devs[cell].strength)
    if picked or test_base is None:
        base_now, scored_now = score_on_test(
            model, group.test, picked, batch_size=config.batch_size
        )
        test_base = base_now if test_base is None else test_base
        scored.update(scored_now)
    share = (time.perf_counter() - clock) / len(cells)
    prepare = {"seconds": group.seconds, "sites": sorted(group.diffs)}
    for cell in cells:
        result = test_base if cell.method == BASELINE else scored[cell]
        done = devs[cell].scored(
            result,
            n_boot=config.n_boot,
            seed=config.seed,
            seconds=share,
            test_seconds=share,
            prepare=prepare,
        )
        save(cell, done)


def _paths(
    config: ReproduceConfig, cells: Sequence[Cell], cells_dir: Path, n_layers: int
) -> dict[Cell, Path]:
    """Each cell's record file, named by the hash of its spec."""
    return {c: cells_dir / c.filename(spec_id(cell_spec(config, c, n_layers))) for c in cells}


def _usable(
    config: ReproduceConfig, paths: Mapping[Cell, Path], n_layers: int
) -> dict[Cell, Record]:
    """The stored records of the cells that were written under these settings."""
    stored = {c: read_record(path) for c, path in paths.items()}
    return {
        c: r
        for c, r in stored.items()
        if r is not None and r.extra.get("spec") == cell_spec(config, c, n_layers)
    }


def run_reproduction(
    config: ReproduceConfig,
    *,
    model: HookedTransformer | None = None,
    task_loader: TaskLoader | None = None,
    progress: bool = True,
    workers: int = 1,
    threads: int = 1,
    shard: tuple[int, int] | None = None,
) -> ReproduceResult:
    """Run (or resume) every cell of `config`; write records as they finish, then the tables.

    Args:
        model: use this model for every entry of `config.models` (tests); else each is loaded.
        task_loader: `(task name, n_shot, model) -> Task` (tests); else `default_task_loader`.
        workers: tune each group's methods in this many local processes (parts of near-equal
            cost, `tune.tune_in_parts`), each with `threads` torch threads; collection stays in
            this process. The records and tables equal a serial run's.
        shard: `(index, count)`: only the groups of this shard (`shards.shard_of`); a run without
            it over the same directory then assembles the tables from the records.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    out = Path(config.out)
    cells_dir = out / "cells"
    load = task_loader or default_task_loader(config)
    cells = plan(config)
    if shard is not None:
        cells = shard_of(cells, *shard)
    claim(out, run_identity(config), shard)
    records: dict[Cell, Record] = {}
    devs: dict[Cell, Record] = {}
    reused: list[str] = []
    computed: list[str] = []
    paths: dict[Cell, Path] = {}
    bar = tqdm(total=len(cells), desc="reproduce", disable=not progress, unit="cell")
    worker_cpu: list[float] = []
    with contextlib.ExitStack() as stack:  # the pool sees an error or Ctrl-C and stops
        executor = stack.enter_context(pool(workers)) if workers > 1 else None
        try:
            for model_name in dict.fromkeys(c.model for c in cells):
                current = (
                    model if model is not None else load_model(model_name, device=config.device)
                )
                mine = [c for c in cells if c.model == model_name]
                record_layers(out, model_label(model_name), current.cfg.n_layers)
                paths.update(_paths(config, mine, cells_dir, current.cfg.n_layers))
                prior = _usable(config, {c: paths[c] for c in mine}, current.cfg.n_layers)
                reused.extend(
                    paths[c].name for c in mine if c in prior and prior[c].stage == "done"
                )
                helpers = None
                if executor is not None:
                    model_loader = (
                        None
                        if model is not None
                        else functools.partial(load_model, model_name, device=config.device)
                    )
                    helpers = _Workers(executor, workers, model_loader, threads, worker_cpu)
                for c, rec in prior.items():
                    (records if rec.stage == "done" else devs)[c] = rec
                for key in groups_of(mine):
                    group_cells = [c for c in mine if c.group == key]
                    todo = [c for c in group_cells if c not in records]
                    bar.update(len(group_cells) - len(todo))
                    if not todo:
                        continue
                    where = f"{model_label(key[0])} {key[1]} {format_label(key[2])}"
                    bar.set_postfix_str(f"{where}: collecting")
                    group = _prepare(config, current, todo, load)

                    def save(cell: Cell, record: Record) -> None:
                        write_record(paths[cell], record)
                        if record.stage == "done":
                            records[cell] = record
                            computed.append(paths[cell].name)
                            bar.update(1)
                        else:
                            devs[cell] = record

                    bar.set_postfix_str(f"{where}: dev sweeps and test")
                    _run_group(config, current, group, todo, devs, save, helpers)
        finally:
            bar.close()
            ordered = [records[c] for c in cells if c in records]
            if ordered:
                write_tables(
                    config,
                    ordered,
                    out,
                    seconds=time.perf_counter() - start,
                    cpu_seconds=time.process_time() - cpu_start + sum(worker_cpu),
                )
    ordered = [records[c] for c in cells]
    return ReproduceResult(
        ordered,
        computed,
        reused,
        out,
        results_markdown(config, ordered),
        time.perf_counter() - start,
        time.process_time() - cpu_start + sum(worker_cpu),
    )


def assemble(config: ReproduceConfig) -> ReproduceResult:
    """The tables of a sharded run from its records alone: no model is loaded, nothing computed.

    Raises ValueError naming the cells whose records are missing (a shard not run or not done).
    """
    start = time.perf_counter()
    out = Path(config.out)
    cells = plan(config)
    records: dict[Cell, Record] = {}
    for model_name in dict.fromkeys(c.model for c in cells):
        mine = [c for c in cells if c.model == model_name]
        n_layers = stored_layers(out, model_label(model_name))
        if n_layers is not None:
            usable = _usable(config, _paths(config, mine, out / "cells", n_layers), n_layers)
            records.update((c, r) for c, r in usable.items() if r.stage == "done")
    missing = [c for c in cells if c not in records]
    if missing:
        names = ", ".join(f"{model_label(c.model)} {c.task} {c.method}" for c in missing[:5])
        raise ValueError(
            f"{len(missing)} of {len(cells)} cells have no finished record under {out} with "
            f"this configuration (e.g. {names}); run their shards first."
        )
    ordered = [records[c] for c in cells]
    write_tables(config, ordered, out, seconds=0.0, cpu_seconds=0.0)
    reused = [c.filename(spec_id(r.extra["spec"])) for c, r in records.items()]
    return ReproduceResult(
        ordered,
        [],
        reused,
        out,
        results_markdown(config, ordered),
        time.perf_counter() - start,
        0.0,
    )


@dataclass(frozen=True)
class ReproduceResult:
    """Every cell's record (in plan order), which were computed now or reused, and the table."""

    records: list[Record]
    computed: list[str]
    reused: list[str]
    out: Path
    table: str
    seconds: float
    cpu_seconds: float


def results_markdown(
    config: ReproduceConfig,
    records: Sequence[Record],
    *,
    seconds: float | None = None,
    cpu_seconds: float | None = None,
) -> str:
    """The whole results document of a reproduction (`report.reproduction_markdown`)."""
    return reproduction_markdown(
        records,
        metric=config.metric,
        style=config.style,
        n_boot=config.n_boot,
        seed=config.seed,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
    )


def write_tables(
    config: ReproduceConfig,
    records: Sequence[Record],
    out: str | Path,
    *,
    seconds: float | None = None,
    cpu_seconds: float | None = None,
) -> dict[str, Path]:
    """Write results.md, results.csv and config.json to `out` (each atomically)."""
    out = Path(out)
    rows = table_rows(records, n_boot=config.n_boot, seed=config.seed)
    text = results_markdown(config, records, seconds=seconds, cpu_seconds=cpu_seconds)
    return {
        "md": atomic_write_text(out / "results.md", text),
        "csv": atomic_write_text(out / "results.csv", results_csv(rows)),
        "config": atomic_write_text(
            out / "config.json", json.dumps(dataclasses.asdict(config), indent=2, default=str)
        ),
    }
