"""Sweeps: choose a mask size and strength on the dev split, then score the test split once.

The grid is (setting, strength), where a setting is usually K (`mask.top(k)`), or any labelled
mask (CAA's layer, for instance). Ties go to the earlier setting and the smaller strength in the
order given, so a sorted grid prefers the smaller intervention.

A sweep reuses what the settings share (when every option is a single token):
- masks that steer only the last prompt token (SADI): each prompt's prefix (all tokens but the
  last) runs once into a frozen KV cache; each setting then runs one token per prompt;
- masks that steer every position: everything below the lowest steered layer is identical for
  all settings, so the residual stream there is computed once and each setting starts from it.
On an accelerator several settings also share each forward pass, stacked along the batch
(`settings_per_pass`; with the prompt KV cache repeated for last-token masks): the same
arithmetic in far fewer kernel launches.
Both give the same numbers as evaluating every setting from scratch (tested). On the
TransformerLens 4 bridge, which has no TransformerLens KV cache, every setting runs from scratch.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

import numpy as np
from jaxtyping import Float, Integer, Real

from ._backend import HookedTransformer, is_bridge
from ._clamp import reuse_clean_passes
from ._passes import matmul_layout
from ._sweep_paths import run_cells
from ._types import Metric
from .evaluate import (
    METRICS,
    EncodedItems,
    EvalResult,
    encode_items,
)
from .mask import Mask
from .steer import check_mask
from .tasks import Example

Grid2D = Float[np.ndarray, "setting strength"]
SettingT = TypeVar("SettingT", bound=Hashable)
Strengths = Sequence[float] | Real[np.ndarray, " strength"]
Sizes = Sequence[int] | Integer[np.ndarray, " k"]


def choose(primary: Grid2D, *tie_breaks: Grid2D) -> tuple[int, int]:
    """`(i, j)` of the best cell: highest `primary`, ties to the higher value of each
    `tie_breaks` grid in turn, then to the first cell in row-major order.

    >>> choose(np.array([[0.5, 0.5]]), np.array([[0.1, 0.2]]))
    (0, 1)
    """
    grids = (primary, *tie_breaks)
    if primary.size == 0 or any(g.shape != primary.shape for g in grids):
        raise ValueError(f"choose needs grids of one non-empty shape, got {primary.shape}")
    flat = [g.ravel() for g in grids]
    keys = [tuple(float(g[c]) for g in flat) for c in range(primary.size)]
    best = max(range(len(keys)), key=lambda c: (_nan_low(keys[c]), -c))
    i, j = np.unravel_index(best, primary.shape)
    return int(i), int(j)


def _nan_low(key: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(-math.inf if math.isnan(v) else v for v in key)


def choose_cell(grids: Mapping[str, Grid2D], metric: Metric) -> tuple[int, int]:
    """`choose` with the `metric` grid first and the other protocols (in `METRICS` order) as the
    tie-breaks: the single rule by which every steerlens driver picks a setting."""
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; valid: {METRICS}")
    if metric not in grids:
        raise ValueError(f"No {metric!r} scores in this grid (were the answer texts encoded?)")
    others = [grids[m] for m in METRICS if m != metric and m in grids]
    return choose(grids[metric], *others)


def grid_rows(
    settings: Sequence[Hashable], strengths: Sequence[float], grids: Mapping[str, Grid2D]
) -> list[dict[str, object]]:
    """A dev grid as records: setting, strength and each protocol's score per cell."""
    return [
        {"setting": s, "strength": a, **{m: float(g[i, j]) for m, g in grids.items()}}
        for i, s in enumerate(settings)
        for j, a in enumerate(strengths)
    ]


@dataclass
class SweepResult(Generic[SettingT]):
    """Dev scores over the grid: `accuracy[i, j]` is for `settings[i]` at `strengths[j]`.

    `metric` names the grid that picks the best cell; `paper` is None when the items carry no
    answer texts.
    """

    settings: list[SettingT]
    strengths: list[float]
    metric: Metric
    accuracy: np.ndarray
    restricted: np.ndarray
    baseline: EvalResult
    method: str = ""
    masks: dict[SettingT, Mask] = field(default_factory=dict, repr=False)
    results: list[EvalResult] = field(default_factory=list, repr=False)  # row-major over the grid
    paper: np.ndarray | None = None

    @property
    def grids(self) -> dict[str, np.ndarray]:
        """Each available protocol's grid, by metric name."""
        out = {"accuracy": self.accuracy, "restricted": self.restricted}
        return out if self.paper is None else {**out, "paper": self.paper}

    @property
    def scores(self) -> np.ndarray:
        """The grid of the metric that chooses the best cell."""
        return self.grids[self.metric]

    @property
    def best(self) -> tuple[SettingT, float, float]:
        """`(setting, strength, score)` of the best cell by `choose_cell` (ties: the other
        protocols, then the first in grid order)."""
        i, j = choose_cell(self.grids, self.metric)
        return self.settings[i], self.strengths[j], float(self.scores[i, j])

    @property
    def best_mask(self) -> Mask:
        return self.masks[self.best[0]]

    def rows(self) -> list[dict[str, object]]:
        """The grid as records (for tables and CSV)."""
        return grid_rows(self.settings, self.strengths, self.grids)


@overload
def sweep(
    model: HookedTransformer,
    examples: Sequence[Example] | EncodedItems,
    masks: Mask,
    strengths: Strengths,
    *,
    ks: Sizes,
    metric: Metric = ...,
    batch_size: int = ...,
    fast: bool = ...,
    settings_per_pass: int | None = ...,
    progress: bool = ...,
) -> SweepResult[int]: ...


@overload
def sweep(
    model: HookedTransformer,
    examples: Sequence[Example] | EncodedItems,
    masks: Mapping[SettingT, Mask],
    strengths: Strengths,
    *,
    ks: None = ...,
    metric: Metric = ...,
    batch_size: int = ...,
    fast: bool = ...,
    settings_per_pass: int | None = ...,
    progress: bool = ...,
) -> SweepResult[SettingT]: ...


def sweep(
    model: HookedTransformer,
    examples: Sequence[Example] | EncodedItems,
    masks: Mask | Mapping[Any, Mask],
    strengths: Strengths,
    *,
    ks: Sizes | None = None,
    metric: Metric = "accuracy",
    batch_size: int = 32,
    fast: bool = True,
    settings_per_pass: int | None = None,
    progress: bool = True,
) -> SweepResult[Any]:
    """Evaluate every (mask, strength) on `examples` (the dev split) and keep the grid.

    Args:
        masks: one mask swept over `ks` through `mask.top(k)`, or a mapping label -> mask.
        strengths: the strengths to try (SADI's delta, AUSteer's alpha, an additive coefficient).
        ks: mask sizes, with a single mask.
        metric: "accuracy" (full-vocabulary argmax, the papers') or "restricted" chooses the best.
        fast: reuse shared computation across settings (see the module docstring); False
            evaluates every setting from scratch.
        settings_per_pass: how many settings share one forward pass in the fast paths (stacked
            along the batch). Default: 1 on a CPU, where packing saves no arithmetic; on an
            accelerator as many as fit `_sweep_paths.PACKED_TOKENS` tokens per pass.
    """
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; valid: {METRICS}")
    if len(strengths) == 0:
        raise ValueError("sweep() needs at least one strength")
    if settings_per_pass is not None and (
        isinstance(settings_per_pass, bool)
        or not isinstance(settings_per_pass, int)
        or settings_per_pass < 1
    ):
        raise ValueError(f"settings_per_pass must be a positive int, got {settings_per_pass!r}")
    grid: dict[Any, Mask]
    if isinstance(masks, Mask):
        if ks is None or len(ks) == 0:
            raise ValueError("Sweeping one mask needs ks (the mask sizes to try)")
        # Python ints, also from a NumPy array: the settings and the masks' info go into JSON
        grid = {k: masks.top(k) for k in map(operator.index, ks)}
    else:
        if ks is not None:
            raise ValueError("Pass ks only with a single mask")
        grid = dict(masks)
    if not grid:
        raise ValueError("sweep() got no masks")
    items = examples if isinstance(examples, EncodedItems) else encode_items(model, examples)
    labels = list(grid)
    cells = [(grid[label], float(a)) for label in labels for a in strengths]
    positions = {m.positions for m in grid.values()}
    shared = (
        fast
        and not is_bridge(model)  # both fast paths run over TransformerLens' KV cache
        and items.single_token
        and (len(positions) == 1 or positions <= {"last", "from", "each_last"})
    )
    for mask in grid.values():  # packed passes bypass `steer`, so check here what it checks
        check_mask(model, mask)
    _warn_sign_flips(cells)
    if any(m.operation == "clamp" for m in grid.values()):
        if settings_per_pass not in (None, 1):
            warnings.warn(
                "clamp masks run one setting per pass (each needs its own clean pre-pass); "
                f"settings_per_pass={settings_per_pass} is ignored",
                stacklevel=2,
            )
        settings_per_pass = 1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="strength .* flips the sign")
        # one re-layout for every pass; a clamp's clean pass is shared by the cells of a batch
        with matmul_layout(model), reuse_clean_passes():
            baseline, results = run_cells(
                model, items, cells, batch_size, progress, shared, positions, settings_per_pass
            )
    shape = (len(labels), len(strengths))
    acc = np.array([r.accuracy for r in results]).reshape(shape)
    restricted = np.array([r.restricted for r in results]).reshape(shape)
    paper = np.array([r.paper for r in results]).reshape(shape) if items.has_texts else None
    method = next(iter(grid.values())).method
    floats = [float(s) for s in strengths]
    return SweepResult(
        labels, floats, metric, acc, restricted, baseline, method, grid, results, paper
    )


def _warn_sign_flips(cells: list[tuple[Mask, float]]) -> None:
    flips = [(m.k, a) for m, a in cells if m.operation == "scale" and (1 + a * m.weights < 0).any()]
    if flips:
        warnings.warn(
            f"{len(flips)} of {len(cells)} sweep settings flip the sign of some units "
            f"(factor 1 + strength * weight < 0, e.g. k={flips[0][0]}, strength={flips[0][1]}); "
            "AUSteer's formula allows this.",
            stacklevel=3,
        )
