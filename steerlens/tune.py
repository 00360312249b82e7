"""Tuning: sweep each arm's grid on dev, choose one cell by one rule, score test once.

This is the only place steerlens chooses a setting. `steerlens run`, `steerlens reproduce`, the
ablations and the figures all call `choose_on_dev` and `score_on_test` (or `tune`, which runs
both), so they pick the same cell from the same grid.

The rule (`choose`): the cell with the best dev score under `metric`; ties go to the better score
under the other protocol, then to the first cell in grid order (the smaller setting, then the
smaller strength, for sorted grids). Ties are common when a prompt format leaves full-vocabulary
accuracy at 0 for every cell.

Arms that steer the same positions share one sweep: each cell's strength is folded into its
mask's weights (`fold_strength`), so for last-token masks the prompt prefix runs once per item
for every cell of every arm, and the unsteered model runs once per split. The numbers equal
steering each cell on its own (tested).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Executor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._backend import HookedTransformer
from ._types import Metric
from .evaluate import METRICS, EncodedItems, EvalResult, evaluate
from .mask import Mask
from .sweep import Grid2D, choose, choose_cell, grid_rows, sweep

ArmT = TypeVar("ArmT", bound=Hashable)


@dataclass(frozen=True)
class Grid:
    """The cells one arm may choose from: labelled masks (setting -> mask) x strengths."""

    masks: Mapping[Hashable, Mask]
    strengths: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.masks:
            raise ValueError("A grid needs at least one mask")
        if not self.strengths:
            raise ValueError("A grid needs at least one strength")
        object.__setattr__(self, "strengths", tuple(float(a) for a in self.strengths))


@dataclass(frozen=True)
class Choice:
    """The dev-chosen cell of one arm, with the whole dev grid it was chosen from (one score
    grid per protocol: `accuracy`, `restricted`, and `paper` when the items carry answer texts)."""

    setting: Hashable
    strength: float
    mask: Mask
    settings: list[Hashable]
    strengths: list[float]
    grids: dict[str, Grid2D]
    seconds: float = 0.0

    @property
    def index(self) -> tuple[int, int]:
        return self.settings.index(self.setting), self.strengths.index(self.strength)

    def dev(self, metric: str) -> float:
        """The chosen cell's dev score under `metric` (NaN when that protocol was not scored)."""
        grid = self.grids.get(metric)
        return float("nan") if grid is None else float(grid[self.index])

    @property
    def dev_accuracy(self) -> float:
        return self.dev("accuracy")

    @property
    def dev_restricted(self) -> float:
        return self.dev("restricted")

    def rows(self) -> list[dict[str, object]]:
        """The dev grid as records (setting, strength, one score per protocol)."""
        return grid_rows(self.settings, self.strengths, self.grids)


@dataclass(frozen=True)
class Tuned:
    """One arm tuned on dev and scored once on test."""

    choice: Choice
    test: EvalResult


@dataclass(frozen=True)
class TuneResult(Generic[ArmT]):
    """Every arm's choice and test score, with the unsteered model on the same items."""

    arms: dict[ArmT, Tuned]
    dev_baseline: EvalResult
    test_baseline: EvalResult


def fold_strength(mask: Mask, strength: float) -> Mask:
    """The same mask with `strength` folded into its weights: steering it with strength 1 applies
    exactly `a + strength * w * a` (or `a + strength * w * v`), so masks with different strengths
    can share one sweep."""
    return dataclasses.replace(mask, weights=mask.weights * float(strength))


@contextmanager
def _quiet_flips() -> Iterator[None]:
    """Large AUSteer strengths may flip a unit's sign, which its formula allows: the sweeps'
    warning about it is noise for a tuning grid that contains such cells on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flip.* sign")
        yield


def choose_on_dev(
    model: HookedTransformer,
    dev: EncodedItems,
    arms: Mapping[ArmT, Grid],
    *,
    metric: Metric = "accuracy",
    batch_size: int = 16,
    progress: bool = False,
    on_choice: Callable[[ArmT, Choice, EvalResult], None] | None = None,
) -> tuple[EvalResult, dict[ArmT, Choice]]:
    """Sweep every arm's grid on `dev` and choose one cell per arm (`choose_cell`).

    Arms whose masks steer the same positions share one sweep. `on_choice(arm, choice,
    unsteered dev scores)` is called as soon as each arm is chosen (checkpointing). Returns the unsteered dev scores and
    `{arm: Choice}` in the order of `arms`.
    """
    _check_metric(metric)
    groups: dict[str, dict[tuple[ArmT, Hashable, float], Mask]] = {}
    for arm, grid in arms.items():
        for setting, mask in grid.masks.items():
            for a in grid.strengths:
                groups.setdefault(mask.positions, {})[(arm, setting, a)] = fold_strength(mask, a)
    chosen: dict[ArmT, Choice] = {}
    baseline: EvalResult | None = None
    for cells in groups.values():
        clock = time.perf_counter()
        with _quiet_flips():
            res = sweep(
                model, dev, cells, [1.0], metric=metric, batch_size=batch_size, progress=progress
            )
        baseline = baseline or res.baseline
        index = {label: n for n, label in enumerate(res.settings)}
        members = list(dict.fromkeys(label[0] for label in cells))
        seconds = (time.perf_counter() - clock) / len(members)
        for arm in members:
            grid = arms[arm]
            settings, strengths = list(grid.masks), list(grid.strengths)
            pick = [index[(arm, s, a)] for s in settings for a in strengths]
            shape = (len(settings), len(strengths))
            grids = {m: g[pick, 0].reshape(shape) for m, g in res.grids.items()}
            i, j = choose_cell(grids, metric)
            chosen[arm] = Choice(
                settings[i],
                strengths[j],
                grid.masks[settings[i]],
                settings,
                strengths,
                grids,
                seconds,
            )
            if on_choice is not None:
                on_choice(arm, chosen[arm], res.baseline)
    if baseline is None:
        baseline = evaluate(model, dev, batch_size=batch_size, progress=False)
    return baseline, {arm: chosen[arm] for arm in arms}


def score_on_test(
    model: HookedTransformer,
    test: EncodedItems,
    chosen: Mapping[ArmT, tuple[Mask, float]],
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[EvalResult, dict[ArmT, EvalResult]]:
    """Score each arm's `(mask, strength)` on `test` once; also the unsteered model.

    Masks that steer the same positions share one pass per item (strengths folded).
    """
    groups: dict[str, dict[ArmT, Mask]] = {}
    for arm, (mask, strength) in chosen.items():
        groups.setdefault(mask.positions, {})[arm] = fold_strength(mask, strength)
    scored: dict[ArmT, EvalResult] = {}
    baseline: EvalResult | None = None
    for masks in groups.values():
        with _quiet_flips():
            res = sweep(model, test, masks, [1.0], batch_size=batch_size, progress=progress)
        baseline = baseline or res.baseline
        scored.update(zip(res.settings, res.results, strict=True))
    if baseline is None:
        baseline = evaluate(model, test, batch_size=batch_size, progress=False)
    return baseline, {arm: scored[arm] for arm in chosen}


def tune(
    model: HookedTransformer,
    dev: EncodedItems,
    test: EncodedItems,
    arms: Mapping[ArmT, Grid],
    *,
    metric: Metric = "accuracy",
    batch_size: int = 16,
    progress: bool = False,
    workers: int = 1,
    load: Callable[[], HookedTransformer] | None = None,
) -> TuneResult[ArmT]:
    """For each arm: choose the best dev cell, then score test once with it (see module doc).

    With `workers` > 1 the arms are split into that many parts of near-equal cost, each tuned in
    a process of its own with `torch.get_num_threads() // workers` threads; the result equals a
    serial run's (each arm's sweep and test pass are independent of the others). A worker gets
    the model from `load()` (picklable, e.g. `functools.partial(load_model, name)`), or else as a
    pickled copy of `model`.

    >>> result = tune(model, dev, test, {"sadi": Grid({4: mask.top(4)}, (0.5, 1.0))})  # doctest: +SKIP
    >>> result.arms["sadi"].test.accuracy  # doctest: +SKIP
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers > 1 and len(arms) > 1:
        return _tune_in_workers(model, dev, test, arms, metric, batch_size, progress, workers, load)
    dev_base, choices = choose_on_dev(
        model, dev, arms, metric=metric, batch_size=batch_size, progress=progress
    )
    picked = {arm: (c.mask, c.strength) for arm, c in choices.items()}
    test_base, scored = score_on_test(model, test, picked, batch_size=batch_size, progress=progress)
    tuned = {arm: Tuned(choices[arm], scored[arm]) for arm in arms}
    return TuneResult(tuned, dev_base, test_base)


def arm_cost(grid: Grid, items: EncodedItems, n_layers: int) -> float:
    """A sweep's cost in token-forwards per item, for splitting arms among workers: a last-token
    cell runs one token, an every-position cell the whole prompt from its first steered layer."""
    tokens = sum(len(p) for p in items.prompts) / max(1, len(items.prompts))
    per_strength = sum(
        tokens * (n_layers - int(m.layers.min())) / n_layers if m.positions == "all" else 1.0
        for m in grid.masks.values()
    )
    return per_strength * len(grid.strengths)


def _tune_part(
    source: HookedTransformer | Callable[[], HookedTransformer],
    key: int,
    dev: EncodedItems,
    test: EncodedItems,
    arms: Mapping[ArmT, Grid],
    metric: Metric,
    batch_size: int,
    threads: int,
) -> tuple[TuneResult[ArmT], float]:
    """One worker's share of `tune`, and the CPU seconds it took."""
    from ._workers import worker_model

    start = time.process_time()
    model = worker_model(source, key, threads)
    result = tune(model, dev, test, arms, metric=metric, batch_size=batch_size)
    return result, time.process_time() - start


def tune_in_parts(
    executor: Executor,
    parts: int,
    model: HookedTransformer,
    dev: EncodedItems,
    test: EncodedItems,
    arms: Mapping[ArmT, Grid],
    *,
    metric: Metric = "accuracy",
    batch_size: int = 16,
    load: Callable[[], HookedTransformer] | None = None,
    threads: int = 1,
    on_part: Callable[[TuneResult[ArmT], float], object] | None = None,
) -> TuneResult[ArmT]:
    """`tune`, with the arms split into `parts` of near-equal cost (`arm_cost`) and each part
    tuned by `executor` (`steerlens._workers.pool`); `on_part(the part's result, its worker's CPU
    seconds)` as each part finishes (to checkpoint). Each part runs its own unsteered passes; everything else equals one
    `tune` call."""
    from ._workers import balanced, model_source

    costs = {arm: arm_cost(grid, dev, model.cfg.n_layers) for arm, grid in arms.items()}
    source = model_source(model, load)
    jobs = {
        executor.submit(
            _tune_part,
            source,
            id(model),
            dev,
            test,
            {a: arms[a] for a in part},
            metric,
            batch_size,
            threads,
        ): part
        for part in balanced(costs, parts)
    }
    done: list[TuneResult[ArmT]] = []
    try:
        for job in as_completed(jobs):
            result, cpu = job.result()
            done.append(result)
            if on_part is not None:
                on_part(result, cpu)
    finally:
        for job in jobs:
            job.cancel()
    tuned = {arm: r.arms[arm] for r in done for arm in r.arms}
    return TuneResult(
        {arm: tuned[arm] for arm in arms}, done[0].dev_baseline, done[0].test_baseline
    )


def _tune_in_workers(
    model: HookedTransformer,
    dev: EncodedItems,
    test: EncodedItems,
    arms: Mapping[ArmT, Grid],
    metric: Metric,
    batch_size: int,
    progress: bool,
    workers: int,
    load: Callable[[], HookedTransformer] | None,
) -> TuneResult[ArmT]:
    import torch
    from tqdm.auto import tqdm

    from ._workers import pool

    parts = min(workers, len(arms))
    with (
        pool(parts) as executor,
        tqdm(total=len(arms), desc=f"tune ({parts} workers)", disable=not progress) as bar,
    ):
        return tune_in_parts(
            executor,
            parts,
            model,
            dev,
            test,
            arms,
            metric=metric,
            batch_size=batch_size,
            load=load,
            threads=max(1, torch.get_num_threads() // parts),
            on_part=lambda part, _cpu: bar.update(len(part.arms)),
        )


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; valid: {METRICS}")


__all__ = [
    "Choice",
    "Grid",
    "TuneResult",
    "Tuned",
    "choose",
    "choose_cell",
    "choose_on_dev",
    "fold_strength",
    "score_on_test",
    "tune",
]
