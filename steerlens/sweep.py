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
Both give the same numbers as evaluating every setting from scratch (tested).
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

import numpy as np
import torch
from jaxtyping import Float, Integer, Real
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from ._passes import matmul_layout, next_logp, repeat_cache
from ._types import Metric, Positions
from .evaluate import (
    METRICS,
    EncodedItems,
    EvalResult,
    encode_items,
    evaluate,
    score_first_tokens,
)
from .mask import Mask
from .steer import check_mask, packed_steering_hooks, prompt_end, steer
from .tasks import Example
from .tokens import batches, left_pad, pad_id

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
            accelerator as many as fit `PACKED_TOKENS` tokens per pass.
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
    shared = fast and items.single_token and len(positions) == 1
    for mask in grid.values():  # packed passes bypass `steer`, so check here what it checks
        check_mask(model, mask)
    _warn_sign_flips(cells)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="strength .* flips the sign")
        with matmul_layout(model):  # one re-layout for every pass of the sweep
            baseline, results = _run_cells(
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


def _run_cells(
    model: HookedTransformer,
    items: EncodedItems,
    cells: list[tuple[Mask, float]],
    batch_size: int,
    progress: bool,
    shared: bool,
    positions: set[Positions],
    settings_per_pass: int | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    if shared and positions == {"last"} and min(len(p) for p in items.prompts) >= 2:
        return _sweep_prefix_cached(model, items, cells, batch_size, progress, settings_per_pass)
    if shared and positions == {"all"}:
        return _sweep_from_layer(model, items, cells, batch_size, progress, settings_per_pass)
    baseline = evaluate(model, items, batch_size=batch_size, progress=False)
    results = []
    for mask, strength in tqdm(cells, desc="sweep", disable=not progress, leave=False):
        with steer(model, mask, strength):
            results.append(evaluate(model, items, batch_size=batch_size, progress=False))
    return baseline, results


class _Tally:
    """Per-item outcomes of one setting, filled batch by batch."""

    def __init__(self, n: int, texts: bool) -> None:
        self.hit = torch.zeros(n, dtype=torch.bool)
        self.win = torch.zeros(n, dtype=torch.bool)
        self.lp = torch.zeros(n)
        self.paper = torch.zeros(n, dtype=torch.bool) if texts else None

    def add(self, logp: Tensor, items: EncodedItems, idx: list[int]) -> None:
        self.hit[idx], self.lp[idx], self.win[idx], paper = score_first_tokens(
            logp.cpu(), items, idx
        )
        if self.paper is not None and paper is not None:
            self.paper[idx] = paper

    def result(self) -> EvalResult:
        return EvalResult(self.hit, self.win, self.lp, self.paper)


def _run_keeping(
    model: HookedTransformer, layers: Iterable[int], *args: object, **kwargs: object
) -> tuple[Tensor, dict[int, Tensor]]:
    """`model(*args, **kwargs)`, also returning the residual stream entering each of `layers`."""
    kept: dict[int, Tensor] = {}

    def keep(layer: int) -> Callable[[Tensor, object], None]:
        return lambda act, hook: kept.__setitem__(layer, act)

    hooks = [(f"blocks.{layer}.hook_resid_pre", keep(layer)) for layer in layers]
    with model.hooks(fwd_hooks=list(hooks)):
        out = model(*args, **kwargs)
    return out, kept


def _sweep_prefix_cached(
    model: HookedTransformer,
    items: EncodedItems,
    cells: list[tuple[Mask, float]],
    batch_size: int,
    progress: bool,
    settings_per_pass: int | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    n, cfg = len(items.prompts), model.cfg
    order = sorted(range(n), key=lambda i: -len(items.prompts[i]))
    base, tallies = _Tally(n, items.has_texts), [_Tally(n, items.has_texts) for _ in cells]
    starts = [int(m.layers.min()) for m, _ in cells]  # below its first steered layer, a cell = base
    chunks = batches(n, batch_size)
    with torch.inference_mode():
        for chunk in tqdm(chunks, desc="sweep", disable=not progress, leave=False):
            idx = [order[i] for i in chunk]
            prefix, mask = left_pad([items.prompts[i][:-1] for i in idx], pad_id(model), cfg.device)
            last = torch.tensor([[items.prompts[i][-1]] for i in idx], device=cfg.device)
            ones = torch.ones_like(last)
            # a one-token pass reads the whole cache: count it in the pass's size
            groups = _groups(
                starts, settings_per_pass, cfg.device or "cpu", prefix.numel() + len(idx)
            )
            cache = TransformerLensKeyValueCache.init_cache(cfg, cfg.device, len(idx))
            model(prefix, attention_mask=mask, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
            cache.freeze()
            resid, entering = _run_keeping(
                model,
                {starts[g[0]] for g in groups},
                last,
                attention_mask=ones,
                past_kv_cache=cache,
                stop_at_layer=cfg.n_layers,
            )
            base.add(next_logp(model, resid), items, idx)
            full_mask = cache.append_attention_mask(ones)  # prefix + last (frozen: not stored)

            def over_cache(
                copies: int,
                cache: TransformerLensKeyValueCache = cache,
                full_mask: Tensor = full_mask,
            ) -> dict[str, object]:
                return {
                    "past_kv_cache": cache if copies == 1 else repeat_cache(cache, copies),
                    "attention_mask": full_mask.repeat(copies, 1),
                }

            steered = _steered_passes(
                model, cells, groups, starts, entering, over_cache, last_token=True
            )
            for c, logp in steered:
                tallies[c].add(logp, items, idx)
    return base.result(), [t.result() for t in tallies]


def _steered_passes(
    model: HookedTransformer,
    cells: list[tuple[Mask, float]],
    groups: list[list[int]],
    starts: list[int],
    entering: Mapping[int, Tensor],
    pass_kwargs: Callable[[int], dict[str, object]],
    *,
    last_token: bool,
) -> Iterator[tuple[int, Tensor]]:
    """Run each group of cells from the residual stream entering its lowest start layer (cells
    that start later pass through the layers in between unsteered): one cell alone through
    `steer`, several stacked along the batch. `pass_kwargs(copies)` gives the forward's other
    arguments for that many stacked copies of the batch. Yields (cell, next-token log-probs)."""
    cfg = model.cfg
    for group in groups:
        start, n = starts[group[0]], len(group)
        x = entering[start]
        if n == 1:
            (c,) = group
            where = prompt_end(-1) if last_token else nullcontext()
            with steer(model, *cells[c]), where:
                resid = model(x, start_at_layer=start, stop_at_layer=cfg.n_layers, **pass_kwargs(1))
            yield c, next_logp(model, resid)
            continue
        # a last-token pass has one token per row, so steering all its positions is the same
        hooks = packed_steering_hooks(
            [cells[c] for c in group], x.shape[0], device=cfg.device or "cpu", dtype=cfg.dtype
        )
        with model.hooks(fwd_hooks=list(hooks)):
            resid = model(
                x.repeat(n, 1, 1),
                start_at_layer=start,
                stop_at_layer=cfg.n_layers,
                **pass_kwargs(n),
            )
        logp = next_logp(model, resid).unflatten(0, (n, x.shape[0]))
        yield from zip(group, logp, strict=True)


def _sweep_from_layer(
    model: HookedTransformer,
    items: EncodedItems,
    cells: list[tuple[Mask, float]],
    batch_size: int,
    progress: bool,
    settings_per_pass: int | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    n, cfg = len(items.prompts), model.cfg
    order = sorted(range(n), key=lambda i: -len(items.prompts[i]))
    base, tallies = _Tally(n, items.has_texts), [_Tally(n, items.has_texts) for _ in cells]
    starts = [int(m.layers.min()) for m, _ in cells]  # below its first steered layer, a cell = base
    chunks = batches(n, batch_size)
    with torch.inference_mode():
        for chunk in tqdm(chunks, desc="sweep", disable=not progress, leave=False):
            idx = [order[i] for i in chunk]
            tokens, mask = left_pad([items.prompts[i] for i in idx], pad_id(model), cfg.device)
            groups = _groups(starts, settings_per_pass, cfg.device or "cpu", tokens.numel())
            resid, entering = _run_keeping(
                model,
                {starts[g[0]] for g in groups},
                tokens,
                attention_mask=mask,
                stop_at_layer=cfg.n_layers,
            )
            base.add(next_logp(model, resid), items, idx)

            def padded(copies: int, mask: Tensor = mask) -> dict[str, object]:
                return {"attention_mask": mask.repeat(copies, 1)}

            for c, logp in _steered_passes(
                model, cells, groups, starts, entering, padded, last_token=False
            ):
                tallies[c].add(logp, items, idx)
    return base.result(), [t.result() for t in tallies]


# Tokens one packed pass may hold on an accelerator, cached prompt tokens included: enough to
# amortise per-kernel overhead at little memory (for a 7B model in 16-bit, 32k tokens of activations
# or of repeated KV cache are a few GB to 16 GB; pass `settings_per_pass` to go lower).
PACKED_TOKENS = 32768


def _groups(
    starts: list[int], per_pass: int | None, device: torch.device | str, batch_tokens: int
) -> list[list[int]]:
    """Cells in groups that share a forward pass, ordered by start layer (a group starts at its
    first cell's). `per_pass` None: one cell a pass on a CPU, where the arithmetic is the cost
    whatever the batch; on an accelerator as many as fit `PACKED_TOKENS`."""
    if per_pass is None:
        cpu = torch.device(device).type == "cpu"
        per_pass = 1 if cpu else max(1, PACKED_TOKENS // max(1, batch_tokens))
    order = sorted(range(len(starts)), key=lambda c: (starts[c], c))
    return [order[i : i + per_pass] for i in range(0, len(order), per_pass)]
