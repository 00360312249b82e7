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
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from transformer_lens import HookedTransformer

from ._io import atomic_write_text
from .collect import Differences, collect_activations
from .evaluate import EvalResult, evaluate
from .figures._style import COLORS, _finish
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
        row = self._row(self.pool, layer, index)
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
        rank = self._row(self.edited, layer, index)
        source = self.edited if rank is not None else self.pool
        row = rank if rank is not None else self._row(self.pool, layer, index)
        score = float(source.scores[row]) if row is not None and source is not None else math.nan
        weight = float(source.weights[row]) if row is not None and source is not None else math.nan
        n_pos, n_neg = self._signs(layer, index)
        promoted, suppressed = self._logit_lens(layer, index, top)
        info = UnitInfo(
            label=self._label(layer, index),
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

    # ---- views -----------------------------------------------------------------------------
    def figure(self) -> go.Figure:
        """The layer x unit map: the edited mask's units by score, `other`'s as rings, the
        selected unit starred."""
        fig = go.Figure()
        units = self.units()
        rows = [self._row(self.edited, *u) for u in units]
        fig.add_trace(
            go.Scatter(
                x=[u[1] for u in units],
                y=[u[0] for u in units],
                mode="markers",
                marker={
                    "size": 11,
                    "color": [float(self.edited.scores[r]) for r in rows if r is not None],
                    "colorscale": "Viridis",
                    "colorbar": {"title": {"text": "score"}, "x": 1.02},
                    "line": {"width": 0.5, "color": "black"},
                },
                text=[self._label(*u) for u in units],
                hovertemplate="%{text}<br>layer %{y}, index %{x}<extra>mask</extra>",
                name=f"{self.edited.method} (k={self.edited.k})",
            )
        )
        if self.other is not None:
            others = sorted(self.other.unit_set())
            fig.add_trace(
                go.Scatter(
                    x=[u[1] for u in others],
                    y=[u[0] for u in others],
                    mode="markers",
                    marker={
                        "size": 17,
                        "symbol": "circle-open",
                        "color": COLORS[1],
                        "line": {"width": 2},
                    },
                    hovertemplate="layer %{y}, index %{x}<extra>other</extra>",
                    name=f"other: {self.other.method}"
                    + (f" on {self.other.task}" if self.other.task else "")
                    + f" (k={self.other.k})",
                )
            )
        if self.selected is not None:
            layer, index = self.selected
            fig.add_trace(
                go.Scatter(
                    x=[index],
                    y=[layer],
                    mode="markers",
                    marker={"size": 20, "symbol": "star", "color": COLORS[5]},
                    hoverinfo="skip",
                    name=f"selected: {self._label(layer, index)}",
                )
            )
        unit = "head" if self.mask.unit == "head" else f"{self.mask.site} unit"
        fig.update_xaxes(title_text=f"{unit} index within the layer")
        fig.update_yaxes(title_text="layer", range=[-0.5, self.mask.n_layers - 0.5])
        fig.update_layout(
            legend={"orientation": "h", "y": 1.0, "x": 1, "xanchor": "right", "yanchor": "bottom"}
        )
        task = f", task {self.mask.task}" if self.mask.task else ""
        return _finish(
            fig,
            f"{self.edited.method} at {self.mask.site} ({self.mask.model_name}{task}): "
            f"{len(units)} units shown",
        )

    def widget(self) -> Any:
        """A live view for Jupyter: click a unit on the map for its details; filter by layer;
        add or remove units; type a prompt for steered and unsteered generations."""
        import ipywidgets as widgets  # type: ignore[import-untyped]

        fig = go.FigureWidget(self.figure())
        details = widgets.HTML(value="<i>click a unit on the map</i>")
        layers = widgets.IntRangeSlider(
            value=self.layers or (0, self.mask.n_layers - 1),
            min=0,
            max=self.mask.n_layers - 1,
            description="layers",
            continuous_update=False,
        )
        prompt = widgets.Text(placeholder="a prompt to generate from", layout={"width": "60%"})
        run = widgets.Button(description="generate")
        remove = widgets.Button(description="remove selected")
        texts = widgets.HTML()

        def redraw() -> None:
            new = self.figure()
            with fig.batch_update():
                fig.data = ()
                for trace in new.data:
                    fig.add_trace(trace)
                fig.layout.title = new.layout.title
            for trace in fig.data[:1]:
                trace.on_click(on_click)

        def on_click(trace: Any, points: Any, state: Any) -> None:
            if not points.point_inds:
                return
            i = points.point_inds[0]
            layer, index = int(trace.y[i]), int(trace.x[i])
            details.value = unit_html(self.select(layer, index))
            redraw()

        def on_layers(change: dict[str, Any]) -> None:
            self.filter(tuple(change["new"]))
            redraw()

        def on_remove(_: Any) -> None:
            if self.selected is not None:
                self.remove(*self.selected)
                redraw()

        def on_run(_: Any) -> None:
            if prompt.value.strip():
                out = self.generations(prompt.value)
                texts.value = generations_html(prompt.value, out, self.strength)

        fig.data[0].on_click(on_click)
        layers.observe(on_layers, names="value")
        remove.on_click(on_remove)
        run.on_click(on_run)
        controls = widgets.HBox([layers, remove])
        return widgets.VBox([controls, fig, details, widgets.HBox([prompt, run]), texts])

    def report(
        self, path: str | Path, *, units: int = 5, effect: bool = True, prompts: Sequence[str] = ()
    ) -> Path:
        """Write a self-contained HTML report: the map, the top `units` units' details (with
        their steering effect on the dev items when `effect`), the comparison with `other`, and
        steered against unsteered generations for `prompts`."""
        path = Path(path)
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>steerlens inspection: {html.escape(self.edited.method)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style>",
            "</head><body>",
            f"<h1>Mask inspection: {html.escape(repr(self.edited).splitlines()[0])}</h1>",
            self.figure().to_html(include_plotlyjs=True, full_html=False),
            f"<h2>Top {min(units, self.edited.k)} units</h2>",
        ]
        for layer, index in self.units()[:units]:
            parts.append(unit_html(self.unit_info(layer, index, effect=effect and bool(self.dev))))
        if self.other is not None:
            parts.append(compare_html(self.compare()))
        for prompt in prompts:
            parts.append(generations_html(prompt, self.generations(prompt), self.strength))
        parts.append("</body></html>")
        atomic_write_text(path, "\n".join(parts))
        return path

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
    def _row(mask: Mask | None, layer: int, index: int) -> int | None:
        if mask is None:
            return None
        hits = ((mask.layers == layer) & (mask.indices == index)).nonzero()
        return int(hits[0, 0]) if hits.numel() else None

    def _label(self, layer: int, index: int) -> str:
        return self.mask.unit_name(layer, index)

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
        source = self.edited if self._row(self.edited, layer, index) is not None else self.pool
        row = self._row(source, layer, index)
        if row is None:
            return None
        alone = source.subset(torch.tensor([row]))
        base = evaluate(self.model, self.dev, progress=False)
        with steer(self.model, alone, self.strength):
            steered = evaluate(self.model, self.dev, progress=False)
        return {m: _paired(steered, base, m) for m in ("accuracy", "restricted")}


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


# ---- HTML pieces (the widget and the report share them) -------------------------------------------


def unit_html(info: UnitInfo) -> str:
    """One unit's details as an HTML block."""
    rank = "not in the mask" if info.rank is None else f"rank {info.rank + 1}"
    rows = [
        ("score", f"{info.score:.4g}"),
        ("weight", f"{info.weight:.3g}"),
        ("pairs +/−", "–" if info.n_pos is None else f"{info.n_pos} / {info.n_neg}"),
        ("promotes", " ".join(info.promoted)),
        ("suppresses", " ".join(info.suppressed)),
    ]
    for prompt, value in info.activations.items():
        rows.append((f"activation: {prompt[-60:]}", f"{value:.4g}"))
    if info.effect:
        for metric, (d, lo, hi) in info.effect.items():
            rows.append(
                (f"steered alone, {metric}", f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
            )
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h3>{html.escape(info.label)} ({rank})</h3><table>{body}</table>"


def compare_html(comparison: dict[str, Any]) -> str:
    """The comparison of two masks as an HTML block."""
    return (
        "<h2>Against the other mask</h2>"
        f"<p>Jaccard {comparison['jaccard']:.3f}; shared {len(comparison['shared'])} units; "
        f"only in this mask {len(comparison['only_mask'])}; only in the other "
        f"{len(comparison['only_other'])}.</p>"
        f"<p>Shared (layer, index): {html.escape(str(comparison['shared'][:50]))}</p>"
    )


def generations_html(prompt: str, texts: dict[str, str], strength: float) -> str:
    """Unsteered and steered continuations of a prompt, side by side."""
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in texts.items()
    )
    return (
        f"<h3>Generation (strength {strength:g}): {html.escape(prompt)}</h3><table>{cells}</table>"
    )


__all__ = ["Inspector", "UnitInfo", "inspect"]
