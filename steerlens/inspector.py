"""Inspect a mask unit by unit: live in Jupyter, or as a static, self-contained HTML report.

`inspect(model, task, mask)` returns an `Inspector`. Its state (the selected unit, a layer filter,
the edited mask) changes through plain methods, so the same views serve the live widget
(`Inspector.widget()`: a clickable layer x unit map beside the selected unit's details) and the
shared report (`Inspector.report(path)`: one HTML file with plotly.js inside, readable offline).

For a unit, `unit_info` gives its score and weight, its sign counts over the pairs (with the
`Differences` the mask came from), the tokens its write direction promotes and suppresses through
the unembedding (a logit lens that ignores the final norm's scale), its activation at the last
token of chosen prompts and, on request, the effect of steering it alone on the dev items: the
paired accuracy difference to no steering with a 95% bootstrap interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch

from ._backend import HookedTransformer
from .collect import Differences, collect_activations
from .evaluate import EncodedItems, EvalResult, encode_items, evaluate
from .generate import generate
from .mask import Mask
from .stats import paired_bootstrap_ci
from .steer import steer
from .tasks import Example, Task

Unit = tuple[int, int]  # (layer, index within the layer), as `Mask.unit_set`


@dataclass(frozen=True)
class UnitInfo:
    """What `Inspector.unit_info` reports about one unit."""

    label: str
    layer: int
    index: int
    rank: int | None  # position in the edited mask; None when not in it
    score: float
    weight: float
    n_pos: int | None
    n_neg: int | None
    promoted: list[str]
    suppressed: list[str]
    activations: dict[str, float]
    effect: dict[str, tuple[float, float, float]] | None = None  # metric -> (Δ, lo, hi)


@dataclass
class Inspector:
    """State of one inspection: the mask as given, its edited copy, the selection and filter.

    `pool` holds the units that can be added (a larger mask of the same ranking; default: the
    mask itself, so removed units can come back). `other` is a second mask to compare with.
    """

    model: HookedTransformer
    mask: Mask
    dev: Sequence[Example] = ()
    prompts: Sequence[str] = ()
    diffs: Differences | None = None
    other: Mask | None = None
    pool: Mask | None = None
    strength: float = 1.0
    edited: Mask = field(init=False)
    selected: Unit | None = None
    layers: tuple[int, int] | None = None  # shown layer range, inclusive
    # the dev items encoded and scored unsteered once, for every single-unit effect
    _dev_items: EncodedItems | None = field(default=None, init=False, repr=False)
    _unsteered: EvalResult | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mask.k == 0:
            raise ValueError("inspect() needs a mask with at least one unit")
        if self.other is not None:
            self.mask._check_comparable(self.other)
        self.pool = self.pool or self.mask
        self.mask._check_comparable(self.pool)
        self.edited = self.mask

    # ---- state -----------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        """The edited mask's units in rank order, within the layer filter."""
        out = list(zip(self.edited.layers.tolist(), self.edited.indices.tolist(), strict=True))
        if self.layers is not None:
            lo, hi = self.layers
            out = [u for u in out if lo <= u[0] <= hi]
        return out

    def filter(self, layers: tuple[int, int] | None) -> None:
        """Show only units in layers `lo..hi` (None: all)."""
        if layers is not None:
            lo, hi = layers
            if not 0 <= lo <= hi < self.mask.n_layers:
                raise ValueError(f"layers must satisfy 0 <= lo <= hi < {self.mask.n_layers}")
        self.layers = layers

    def select(self, layer: int, index: int) -> UnitInfo:
        """Select a unit (any unit of the site, in the mask or not) and return its details."""
        self._check_unit(layer, index)
        self.selected = (int(layer), int(index))
        return self.unit_info(layer, index)

    def remove(self, layer: int, index: int) -> Mask:
        """Drop a unit from the edited mask."""
        units = zip(self.edited.layers.tolist(), self.edited.indices.tolist(), strict=True)
        keep = [i for i, u in enumerate(units) if u != (layer, index)]
        if len(keep) == self.edited.k:
            raise ValueError(f"unit ({layer}, {index}) is not in the edited mask")
        if not keep:
            raise ValueError("cannot remove the last unit of the mask")
        self.edited = self.edited.subset(torch.tensor(keep), info=self._edit_info())
        return self.edited

    def add(self, layer: int, index: int) -> Mask:
        """Append a unit of `pool` (with its score, weight and vector) to the edited mask."""
        if (layer, index) in self.edited.unit_set():
            raise ValueError(f"unit ({layer}, {index}) is already in the edited mask")
        assert self.pool is not None
        row = self.row_of(self.pool, layer, index)
        if row is None:
            raise ValueError(
                f"unit ({layer}, {index}) is not in the pool; give inspect(..., pool=...) a larger "
                "mask of the same ranking (for example sadi_mask(diffs, k=200))"
            )
        extra = self.pool.subset(torch.tensor([row]))
        vectors = None
        if self.edited.vectors is not None and extra.vectors is not None:
            vectors = torch.cat([self.edited.vectors, extra.vectors])
        self.edited = dataclasses.replace(
            self.edited,
            layers=torch.cat([self.edited.layers, extra.layers]),
            indices=torch.cat([self.edited.indices, extra.indices]),
            scores=torch.cat([self.edited.scores, extra.scores]),
            weights=torch.cat([self.edited.weights, extra.weights]),
            vectors=vectors,
            info=self._edit_info(),
        )
        return self.edited

    def export(self, path: str | Path | None = None) -> Mask:
        """The edited mask (saved to `path` when given, as `Mask.save`)."""
        if path is not None:
            self.edited.save(path)
        return self.edited

    def compare(self) -> dict[str, Any]:
        """The edited mask against `other`: shared units, each side's own, and the Jaccard index."""
        if self.other is None:
            raise ValueError("no second mask to compare with: inspect(..., other=mask)")
        a, b = self.edited.unit_set(), self.other.unit_set()
        return {
            "shared": sorted(a & b),
            "only_mask": sorted(a - b),
            "only_other": sorted(b - a),
            "jaccard": self.edited.jaccard(self.other),
        }

    # ---- what a unit does ------------------------------------------------------------------
    def unit_info(self, layer: int, index: int, *, effect: bool = False, top: int = 8) -> UnitInfo:
        """Details of one unit; `effect=True` also steers it alone on the dev items."""
        self._check_unit(layer, index)
        rank = self.row_of(self.edited, layer, index)
        source = self.edited if rank is not None else self.pool
        row = rank if rank is not None else self.row_of(self.pool, layer, index)
        score = float(source.scores[row]) if row is not None and source is not None else math.nan
        weight = float(source.weights[row]) if row is not None and source is not None else math.nan
        n_pos, n_neg = self._signs(layer, index)
        promoted, suppressed = self._logit_lens(layer, index, top)
        info = UnitInfo(
            label=self.mask.unit_name(layer, index),
            layer=int(layer),
            index=int(index),
            rank=rank,
            score=score,
            weight=weight,
            n_pos=n_pos,
            n_neg=n_neg,
            promoted=promoted,
            suppressed=suppressed,
            activations=self._activations(layer, index),
        )
        return dataclasses.replace(info, effect=self._effect(layer, index)) if effect else info

    def generations(self, prompt: str, *, max_new_tokens: int = 24) -> dict[str, str]:
        """The unsteered and the edited mask's steered continuation of `prompt` (greedy)."""
        plain = generate(self.model, [prompt], max_new_tokens=max_new_tokens, progress=False)
        steered = generate(
            self.model,
            [prompt],
            mask=self.edited,
            strength=self.strength,
            max_new_tokens=max_new_tokens,
            progress=False,
        )
        return {"unsteered": plain.texts[0], "steered": steered.texts[0]}

    # ---- views (`inspector_views`) -------------------------------------------------------------
    def figure(self) -> go.Figure:
        """The layer x unit map: the edited mask's units by score, `other`'s as rings, the
        selected unit starred."""
        from .inspector_views import unit_map

        return unit_map(self)

    def widget(self) -> Any:
        """A live view for Jupyter: click a unit on the map for its details; filter by layer;
        add or remove units; type a prompt for steered and unsteered generations."""
        from .inspector_views import live_widget

        return live_widget(self)

    def report(
        self, path: str | Path, *, units: int = 5, effect: bool = True, prompts: Sequence[str] = ()
    ) -> Path:
        """Write a self-contained HTML report: the map, the top `units` units' details (with
        their steering effect on the dev items when `effect`), the comparison with `other`, and
        steered against unsteered generations for `prompts`."""
        from .inspector_views import write_report

        return write_report(self, path, units=units, effect=effect, prompts=prompts)

    # ---- internals ---------------------------------------------------------------------------
    def _edit_info(self) -> dict[str, Any]:
        return {**self.mask.info, "edited_from": self.mask.method}

    def _check_unit(self, layer: int, index: int) -> None:
        if not (0 <= layer < self.mask.n_layers and 0 <= index < self.mask.units_per_layer):
            raise ValueError(
                f"unit ({layer}, {index}) is outside the site: layers 0..{self.mask.n_layers - 1},"
                f" indices 0..{self.mask.units_per_layer - 1}"
            )

    @staticmethod
    def row_of(mask: Mask | None, layer: int, index: int) -> int | None:
        """The row of unit `(layer, index)` in `mask`, or None."""
        if mask is None:
            return None
        hits = ((mask.layers == layer) & (mask.indices == index)).nonzero()
        return int(hits[0, 0]) if hits.numel() else None

    def _signs(self, layer: int, index: int) -> tuple[int | None, int | None]:
        d = self.diffs
        if d is None:
            return None, None
        pos, neg = d.n_pos[layer].reshape(-1), d.n_neg[layer].reshape(-1)
        if self.mask.unit == "head":  # a head's dims together: counts over dims x pairs
            width = self.mask.unit_shape[1]
            block = slice(index * width, (index + 1) * width)
            return int(pos[block].sum()), int(neg[block].sum())
        return int(pos[index]), int(neg[index])

    def _logit_lens(self, layer: int, index: int, top: int) -> tuple[list[str], list[str]]:
        from .analysis import show_token, write_direction  # model-running analysis: on use only

        model = self.model
        with torch.no_grad():
            if self.mask.unit == "head":
                w_o = model.blocks[layer].attn.W_O[index].float()  # [d_head, d_model]
                if self.diffs is not None:  # the head's write along its mean difference
                    weights = self.diffs.mean[layer, index].float().to(w_o.device)
                else:
                    weights = torch.ones(w_o.shape[0], device=w_o.device)
                direction = weights @ w_o
            else:
                try:
                    direction = write_direction(model, self.mask.site, layer, index).float()
                except ValueError:  # a site without a write direction of its own (gate, ...)
                    return [], []
            norm_w = getattr(model.ln_final, "w", None)
            if norm_w is not None:
                direction = direction * norm_w.float()
            logits = direction @ model.W_U.float()
        tok = model.tokenizer
        assert tok is not None

        def names(ids: torch.Tensor) -> list[str]:
            return [show_token(str(tok.decode([int(i)]))) for i in ids]

        return names(logits.topk(top).indices), names((-logits).topk(top).indices)

    def _activations(self, layer: int, index: int) -> dict[str, float]:
        prompts = list(self.prompts) or [ex.prompt for ex in self.dev[:3]]
        if not prompts:
            return {}
        acts = collect_activations(self.model, prompts, self.mask.site, progress=False)
        assert isinstance(acts, torch.Tensor)
        flat = acts[:, layer].reshape(len(prompts), -1)
        if self.mask.unit == "head":
            width = self.mask.unit_shape[1]
            values = flat[:, index * width : (index + 1) * width].norm(dim=-1)  # |z| of the head
        else:
            values = flat[:, index]
        return {p: float(v) for p, v in zip(prompts, values, strict=True)}

    def _effect(self, layer: int, index: int) -> dict[str, tuple[float, float, float]] | None:
        if not self.dev:
            return None
        assert self.pool is not None
        source = self.edited if self.row_of(self.edited, layer, index) is not None else self.pool
        row = self.row_of(source, layer, index)
        if row is None:
            return None
        alone = source.subset(torch.tensor([row]))
        if self._dev_items is None or self._unsteered is None:
            self._dev_items = encode_items(self.model, self.dev)
            self._unsteered = evaluate(self.model, self._dev_items, progress=False)
        with steer(self.model, alone, self.strength):
            steered = evaluate(self.model, self._dev_items, progress=False)
        return {m: _paired(steered, self._unsteered, m) for m in ("accuracy", "restricted")}


def _paired(a: EvalResult, b: EvalResult, metric: str) -> tuple[float, float, float]:
    fa, fb = a.flags(metric), b.flags(metric)
    assert fa is not None and fb is not None
    return paired_bootstrap_ci(fa.numpy(), fb.numpy())


def inspect(
    model: HookedTransformer,
    task: Task | Sequence[Example],
    mask: Mask,
    other: Mask | None = None,
    *,
    diffs: Differences | None = None,
    pool: Mask | None = None,
    strength: float = 1.0,
    prompts: Sequence[str] = (),
    n_dev: int = 32,
) -> Inspector:
    """Start inspecting `mask` on `task` (its first `n_dev` dev items measure single-unit
    effects; `prompts`, default three dev prompts, show activations). Give the `Differences` the
    mask came from for sign counts, `other` to compare, `pool` for units that can be added."""
    dev = list(task.dev if isinstance(task, Task) else task)[:n_dev]
    return Inspector(model, mask, dev, tuple(prompts), diffs, other, pool, strength)


__all__ = ["Inspector", "UnitInfo", "inspect"]
