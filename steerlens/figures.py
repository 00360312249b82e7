"""Figures: plotly builders that turn steerlens objects into the SADI and AUSteer paper figures.

Every builder takes steerlens objects (`Differences`, `Mask`, `SweepResult`, results rows, or the
records of `steerlens.analysis`), never the model, and returns a `plotly.graph_objects.Figure`.
`save_figure` writes it as interactive HTML and, where kaleido finds a Chrome or Chromium, as PNG.

| builder              | paper figure                                   | input                        |
|----------------------|------------------------------------------------|------------------------------|
| `head_heatmap`       | SADI: signed mean difference per head          | head `Differences`, `Mask`   |
| `layer_distribution` | SADI: where the top-100 units sit              | label -> `Mask`              |
| `overlap_matrix`     | SADI / AUSteer Fig. 12: cross-task overlap     | label -> `Mask` (per family) |
| `sweep_heatmap`      | AUSteer Fig. 10: accuracy over K x strength    | `SweepResult`                |
| `pairs_curve`        | SADI Fig. 4 / AUSteer Fig. 13: data efficiency | `pairs_curve_data` records   |
| `au_score_map`       | AUSteer Fig. 11: score `s` over layer x dim    | label -> `Differences`       |
| `unit_vs_block`      | AUSteer Fig. 2: single dims versus the head    | `UnitScan`                   |
| `unit_writes`        | AUSteer Fig. 4: what a unit writes             | `UnitWrites`                 |
| `method_comparison`  | the main job's results table                   | `run_job` rows or CSV rows   |

The data behind figures 5, 7 and 8 needs the model; `pairs_curve_data`, `single_unit_scan` and
`unit_writes_data` (from `steerlens.analysis`, re-exported here) compute it. `show` displays a
figure in a notebook as a PNG where static export works, else as interactive HTML.

Colours: the Okabe-Ito palette for categories, RdBu (centred on zero) for signed values, Viridis
for scores and accuracies; all three stay distinguishable under common colour-vision deficiencies.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .analysis import (
    UnitScan,
    UnitWrites,
    pairs_curve_data,
    prompt_effects,
    single_unit_scan,
    unit_writes_data,
)
from .collect import Differences
from .mask import Mask
from .select import austeer_scores, sadi_scores
from .sweep import SweepResult

__all__ = [
    # builders (figures 1-8 and the method comparison)
    "head_heatmap",
    "layer_distribution",
    "overlap_matrix",
    "sweep_heatmap",
    "pairs_curve",
    "au_score_map",
    "unit_vs_block",
    "unit_writes",
    "method_comparison",
    # data, saving, display
    "COLORS",
    "UnitScan",
    "UnitWrites",
    "effects_table",
    "layer_counts",
    "overlap_counts",
    "pairs_curve_data",
    "pairs_summary",
    "png_export",
    "prompt_effects",
    "save_figure",
    "show",
    "single_unit_scan",
    "static_export_problem",
    "unit_writes_data",
]

COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe-Ito colours (blue, orange, green, purple, sky blue, vermillion, yellow, black)."""
DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"
GREY = "#7f7f7f"
WIDTH, HEIGHT = 900, 600

TEMPLATE = go.layout.Template(pio.templates["simple_white"])
TEMPLATE.layout.update(
    font={"family": "Arial, Helvetica, sans-serif", "size": 13},
    colorway=list(COLORS),
    title={"x": 0.02, "xanchor": "left", "font": {"size": 16}},
    margin={"l": 70, "r": 30, "t": 80, "b": 60},
    legend={"bgcolor": "rgba(255,255,255,0.7)"},
    shapedefaults={"line": {"width": 2}, "opacity": 1},  # simple_white's are invisible lines
)


def _finish(fig: go.Figure, title: str, *, width: int = WIDTH, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title_text=title, width=width, height=height)
    return fig


def _pct(x: Any) -> Any:
    return 100 * np.asarray(x, dtype=float)


def _metric_name(metric: str) -> str:
    return "restricted accuracy" if metric == "restricted" else metric


def _about(obj: Differences | Mask) -> str:
    task = f"{obj.task}, " if obj.task else ""
    return f"{task}{obj.model_name}"


# ---- 1. head-by-layer heatmap ----------------------------------------------------------------


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each entry (1 = largest), ties to the earlier position, same shape as `scores`."""
    order = np.argsort(-scores.ravel(), kind="stable")
    ranks = np.empty(scores.size, dtype=int)
    ranks[order] = np.arange(1, scores.size + 1)
    return ranks.reshape(scores.shape)


def _mask_heads(mask: Mask) -> list[tuple[int, int]]:
    """The (layer, head) cells a head-site mask touches, in mask order, without repeats."""
    if mask.site != "head":
        raise ValueError(f"head_heatmap marks head-site masks, got site {mask.site!r}")
    d_head = mask.unit_shape[1]
    cells: dict[tuple[int, int], None] = {}
    for layer, index in zip(mask.layers.tolist(), mask.indices.tolist(), strict=True):
        cells[(layer, index if mask.unit == "head" else index // d_head)] = None
    return list(cells)


def head_heatmap(
    diffs: Differences, mask: Mask | None = None, *, by: str = "signed", title: str | None = None
) -> go.Figure:
    """SADI's head score (mean paired difference of `hook_z`, averaged over `d_head`) per head.

    Layers run along x and heads along y, so `fig.data[0].z[head][layer]` is the score of that
    head. The colour scale is centred on zero; hover shows layer, head, value and rank (1 = the
    largest score under `by`). Heads selected by `mask` (a head mask, or the heads holding a dim
    mask's units) are outlined.
    """
    if diffs.site != "head":
        raise ValueError(f"head_heatmap needs head differences (site 'head'), got {diffs.site!r}")
    scores = sadi_scores(diffs, by=by).double().numpy()  # [layer, head]
    n_layers, n_heads = scores.shape
    rank = _ranks(scores)
    fig = go.Figure(
        go.Heatmap(
            z=scores.T,
            x=list(range(n_layers)),
            y=list(range(n_heads)),
            customdata=rank.T,
            colorscale=DIVERGING,
            zmid=0,
            colorbar={"title": {"text": "mean Δ hook_z<br>(avg over d_head)"}},
            hovertemplate="layer %{x}<br>head %{y}<br>value %{z:.4g}<br>rank %{customdata}"
            "<extra></extra>",
            name="head score",
        )
    )
    if mask is not None:
        cells = _mask_heads(mask)
        fig.add_trace(
            go.Scatter(
                x=[c[0] for c in cells],
                y=[c[1] for c in cells],
                mode="markers",
                marker={
                    "symbol": "square-open",
                    "size": max(10, min(26, 560 // max(n_layers, n_heads))),
                    "color": "black",
                    "line": {"width": 2.5},
                },
                name=f"selected by {mask.method} (K={mask.k})",
                customdata=[rank[layer, head] for layer, head in cells],
                hovertemplate="selected: layer %{x}, head %{y}<br>score rank %{customdata}"
                "<extra></extra>",
            )
        )
        fig.update_layout(legend={"orientation": "h", "y": -0.15, "x": 0})
    fig.update_xaxes(title_text="layer", dtick=max(1, n_layers // 15), showgrid=False)
    fig.update_yaxes(title_text="head", dtick=1, showgrid=False)
    kind = "|mean difference|" if by == "abs" else "signed mean difference"
    return _finish(
        fig,
        title or f"SADI head scores: {kind} per head ({_about(diffs)}, {diffs.n_pairs} pairs)",
    )


# ---- 2. top-100 distribution across layers -----------------------------------------------------


def layer_counts(mask: Mask) -> np.ndarray:
    """Number of the mask's units in each layer, `[n_layers]`."""
    return np.bincount(mask.layers.numpy(), minlength=mask.n_layers)


def layer_distribution(masks: Mapping[str, Mask], *, title: str | None = None) -> go.Figure:
    """Where each mask's units sit: counts per layer (top row) and each unit's score (bottom row).

    One column per mask, e.g. {"neurons (hook_post)": sadi_mask(neuron_diffs, 100), ...}.
    """
    if not masks:
        raise ValueError("layer_distribution needs at least one mask")
    labels = list(masks)
    fig = make_subplots(
        rows=2,
        cols=len(labels),
        shared_xaxes=True,
        vertical_spacing=0.08,
        horizontal_spacing=0.07,
        subplot_titles=labels,
        row_heights=[0.45, 0.55],
    )
    for c, label in enumerate(labels, start=1):
        m = masks[label]
        color = COLORS[(c - 1) % len(COLORS)]
        layers = list(range(m.n_layers))
        fig.add_trace(
            go.Bar(
                x=layers,
                y=layer_counts(m),
                marker_color=color,
                name=label,
                showlegend=False,
                hovertemplate="layer %{x}: %{y} units<extra>" + label + "</extra>",
            ),
            row=1,
            col=c,
        )
        fig.add_trace(
            go.Scatter(
                x=m.layers.tolist(),
                y=m.scores.tolist(),
                mode="markers",
                marker={"color": color, "size": 6, "opacity": 0.7},
                text=[m.label(i) for i in range(m.k)],
                customdata=list(range(1, m.k + 1)),
                name=label,
                showlegend=False,
                hovertemplate="%{text} (rank %{customdata})<br>score %{y:.4g}<extra></extra>",
            ),
            row=2,
            col=c,
        )
        fig.update_xaxes(range=[-0.5, m.n_layers - 0.5], row=1, col=c)
        fig.update_xaxes(title_text="layer", range=[-0.5, m.n_layers - 0.5], row=2, col=c)
    fig.update_yaxes(title_text="selected units (count)", row=1, col=1)
    fig.update_yaxes(title_text="score (mean Δ activation)", row=2, col=1)
    first = masks[labels[0]]
    ks = sorted({m.k for m in masks.values()})
    k_text = f"top-{ks[0]}" if len(ks) == 1 else "top-k"
    return _finish(fig, title or f"Where the {k_text} units sit across layers ({_about(first)})")


# ---- 3. cross-task overlap --------------------------------------------------------------------


def overlap_counts(masks: Mapping[str, Mask]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`(labels, shared, jaccard)`: units shared by each pair of masks, and their Jaccard index.

    The diagonal of `shared` holds each mask's size; both matrices are symmetric.
    """
    labels = list(masks)
    n = len(labels)
    shared = np.zeros((n, n), dtype=int)
    jaccard = np.zeros((n, n))
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            shared[i, j] = len(masks[a].intersection(masks[b]))
            jaccard[i, j] = masks[a].jaccard(masks[b])
    return labels, shared, jaccard


def overlap_matrix(
    masks: Mapping[str, Mask] | Mapping[str, Mapping[str, Mask]], *, title: str | None = None
) -> go.Figure:
    """Task-by-task overlap of selected units: shared count (left) and Jaccard index (right).

    `masks` is label -> `Mask` (one family), or family -> (label -> `Mask`) for one row per family
    (e.g. SADI heads, AUSteer attention AUs, AUSteer FFN AUs).
    """
    if not masks:
        raise ValueError("overlap_matrix needs masks")
    first = next(iter(masks.values()))
    families: dict[str, Mapping[str, Mask]] = (
        {"": masks} if isinstance(first, Mask) else dict(masks)  # type: ignore[dict-item]
    )
    names = list(families)
    titles = []
    for name in names:
        sizes = sorted({m.k for m in families[name].values()})
        k = f"k={sizes[0]}" if len(sizes) == 1 else "k varies"
        prefix = f"{name}: " if name else f"{k}: "
        titles += [prefix + "shared units (count)", prefix + "Jaccard index"]
    fig = make_subplots(
        rows=len(names),
        cols=2,
        subplot_titles=titles,
        horizontal_spacing=0.16,
        vertical_spacing=0.25 / max(1, len(names) - 1) if len(names) > 1 else 0.1,
    )
    for r, name in enumerate(names, start=1):
        labels, shared, jac = overlap_counts(families[name])
        common = {"x": labels, "y": labels, "xgap": 2, "ygap": 2}
        fig.add_trace(
            go.Heatmap(
                z=shared,
                text=shared,
                texttemplate="%{text}",
                colorscale=SEQUENTIAL,
                zmin=0,
                zmax=int(shared.max()),
                showscale=False,  # counts are printed in the cells; each family has its own range
                hovertemplate="%{y} ∩ %{x}: %{z} units<extra></extra>",
                name=f"{name} shared",
                **common,
            ),
            row=r,
            col=1,
        )
        fig.add_trace(
            go.Heatmap(
                z=jac,
                text=np.round(jac, 2),
                texttemplate="%{text}",
                colorscale=SEQUENTIAL,
                coloraxis="coloraxis",
                hovertemplate="Jaccard(%{y}, %{x}) = %{z:.3f}<extra></extra>",
                name=f"{name} Jaccard",
                **common,
            ),
            row=r,
            col=2,
        )
        for c in (1, 2):
            fig.update_yaxes(
                autorange="reversed", title_text="task" if c == 1 else None, row=r, col=c
            )
            fig.update_xaxes(title_text="task" if r == len(names) else None, row=r, col=c)
    fig.update_layout(
        coloraxis={
            "colorscale": SEQUENTIAL,
            "cmin": 0,
            "cmax": 1,
            "colorbar": {"title": {"text": "Jaccard"}, "len": 0.8},
        },
    )
    height = max(HEIGHT, 270 * len(names) + 110)
    return _finish(fig, title or "Cross-task overlap of the selected units", height=height)


# ---- 4. accuracy over K and strength -----------------------------------------------------------


def sweep_heatmap(
    result: SweepResult,
    *,
    metric: str | None = None,
    setting_name: str = "K",
    split: str = "dev",
    label: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """Accuracy (%) over the sweep grid: settings (K) on y, strengths on x, best cell starred.

    `fig.data[0].z[i][j]` is `100 * grid[i, j]` for `result.settings[i]`, `result.strengths[j]`;
    the star sits at `result.best` when `metric` is the sweep's own metric (the default).
    `label` names the method in the title (default: the masks' method).
    """
    metric = metric or result.metric
    grid = result.accuracy if metric == "accuracy" else result.restricted
    if metric == result.metric:
        best_setting, best_strength, _ = result.best
    else:
        i, j = np.unravel_index(int(np.argmax(grid)), grid.shape)
        best_setting, best_strength = result.settings[i], result.strengths[j]
    xs = [f"{s:g}" for s in result.strengths]
    ys = [str(s) for s in result.settings]
    z = _pct(grid)
    bi, bj = result.settings.index(best_setting), result.strengths.index(best_strength)
    text = np.round(z, 1).astype(object)
    text[bi, bj] = ""  # the best cell's value is written under its star
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            text=text,
            texttemplate="%{text}",
            colorscale=SEQUENTIAL,
            colorbar={"title": {"text": f"{split} {_metric_name(metric)}<br>(%)"}},
            xgap=1,
            ygap=1,
            hovertemplate=setting_name
            + " = %{y}<br>strength %{x}<br>"
            + metric
            + " %{z:.1f}%<extra></extra>",
            name=metric,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[f"{best_strength:g}"],
            y=[str(best_setting)],
            mode="markers+text",
            text=[f"<b>{z[bi, bj]:.1f}</b>"],
            textposition="bottom center",
            textfont={"color": "black"},
            marker={
                "symbol": "star",
                "size": 18,
                "color": "white",
                "line": {"color": "black", "width": 1.5},
            },
            name=f"best on {split}: {setting_name}={best_setting}, strength {best_strength:g}",
            showlegend=True,
            hoverinfo="name",
        )
    )
    base = 100 * result.baseline.metric(metric)
    fig.update_xaxes(title_text="strength (δ / α, multiplicative)", type="category")
    fig.update_yaxes(title_text=f"{setting_name} (units steered)", type="category")
    fig.update_layout(
        legend={"orientation": "h", "y": 1.0, "x": 1, "xanchor": "right", "yanchor": "bottom"}
    )
    name = label or result.method or "steering"
    return _finish(
        fig,
        title
        or f"{name}: {split} {_metric_name(metric)} over {setting_name} and strength (unsteered {base:.1f}%)",
    )


# ---- 5. accuracy versus number of contrastive pairs -------------------------------------------


def pairs_summary(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Per method: `n` (pair counts), `mean`, `std`, `min`, `max`, `seeds` over seeds (`n_pairs > 0`)."""
    by: dict[str, dict[int, list[float]]] = {}
    for r in records:
        n = int(r["n_pairs"])
        if n > 0:
            by.setdefault(str(r["method"]), {}).setdefault(n, []).append(float(r["accuracy"]))
    out = {}
    for method, cells in by.items():
        ns = sorted(cells)
        vals = [np.asarray(cells[n]) for n in ns]
        out[method] = {
            "n": np.asarray(ns),
            "mean": np.array([v.mean() for v in vals]),
            "std": np.array([v.std() for v in vals]),
            "min": np.array([v.min() for v in vals]),
            "max": np.array([v.max() for v in vals]),
            "seeds": np.array([len(v) for v in vals]),
        }
    return out


def pairs_curve(
    records: Iterable[Mapping[str, Any]],
    *,
    metric: str = "accuracy",
    split: str = "test",
    title: str | None = None,
) -> go.Figure:
    """Accuracy (%) versus the number of contrastive pairs behind the mask, one line per method.

    `records` come from `steerlens.analysis.pairs_curve_data`: `method`, `n_pairs`, `seed`,
    `accuracy`; lines show the mean over seeds, error bars the standard deviation, and records
    with `n_pairs=0` (the unsteered score) a dashed reference line.
    """
    records = list(records)
    summary = pairs_summary(records)
    if not summary:
        raise ValueError("pairs_curve needs records with n_pairs > 0")
    fig = go.Figure()
    for i, (method, s) in enumerate(summary.items()):
        fig.add_trace(
            go.Scatter(
                x=s["n"],
                y=_pct(s["mean"]),
                error_y={"type": "data", "array": _pct(s["std"]), "visible": True},
                mode="lines+markers",
                marker={"size": 8, "symbol": ["circle", "square", "diamond", "triangle-up"][i % 4]},
                line={"color": COLORS[i % len(COLORS)], "width": 2.5},
                name=method,
                showlegend=True,
                customdata=np.stack([_pct(s["min"]), _pct(s["max"]), s["seeds"]], axis=-1),
                hovertemplate="%{x} pairs: mean %{y:.1f}%<br>range %{customdata[0]:.1f} to "
                "%{customdata[1]:.1f} (%{customdata[2]} seeds)<extra>" + method + "</extra>",
            )
        )
    base = [float(r["accuracy"]) for r in records if int(r["n_pairs"]) == 0]
    if base:
        fig.add_hline(
            y=100 * base[0],
            line={"dash": "dash", "color": GREY},
            annotation_text=f"unsteered {100 * base[0]:.1f}%",
            annotation_position="bottom left",
        )
    ns = sorted({int(n) for s in summary.values() for n in s["n"]})
    fig.update_xaxes(title_text="contrastive pairs used to build the mask (count, log scale)",
                     type="log", tickvals=ns, ticktext=[str(n) for n in ns])  # fmt: skip
    fig.update_yaxes(title_text=f"{split} {_metric_name(metric)} (%)")
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"})
    seeds = int(max(s["seeds"].max() for s in summary.values()))
    return _finish(
        fig,
        title
        or f"{split.capitalize()} {_metric_name(metric)} versus number of contrastive pairs "
        f"(mean ± s.d. over up to {seeds} random subsets)",
    )


# ---- 6. AU score map --------------------------------------------------------------------------


def au_score_map(
    diffs: Differences | Mapping[str, Differences],
    *,
    masks: Mapping[str, Mask] | None = None,
    title: str | None = None,
) -> go.Figure:
    """AUSteer's score `s = max(r_pos, r_neg)` of every atomic unit, layer (y) by dimension (x).

    One panel per entry of `diffs` (label -> differences; heads are flattened to
    `head * d_head + d`, so `fig.data[i].z` equals `austeer_scores(diffs)[0]`). Units of
    `masks[label]` are marked with crosses; dotted lines separate heads.
    """
    panels = {"": diffs} if isinstance(diffs, Differences) else dict(diffs)
    if not panels:
        raise ValueError("au_score_map needs differences")
    labels = list(panels)
    fig = make_subplots(rows=len(labels), cols=1, subplot_titles=labels, vertical_spacing=0.2)
    for r, label in enumerate(labels, start=1):
        d = panels[label]
        s, beta = austeer_scores(d)
        s_np = s.float().numpy()  # float32 keeps the HTML small; s is a fraction of the pairs
        n_layers, width = s_np.shape
        is_head = d.site == "head"
        d_head = d.unit_shape[1] if is_head else 1
        channels = [np.where(beta.numpy() < 0, -1, 1)]  # majority sign
        hover = "layer %{y}<br>dim %{x}"
        if is_head:
            channels += [np.arange(width) // d_head, np.arange(width) % d_head]
            hover += " (head %{customdata[1]}, d %{customdata[2]})"
        custom = np.stack([np.broadcast_to(c, s_np.shape) for c in channels], axis=-1)
        fig.add_trace(
            go.Heatmap(
                z=s_np,
                x=list(range(width)),
                y=list(range(n_layers)),
                customdata=custom.astype(np.int8),
                coloraxis="coloraxis",
                hovertemplate=hover
                + "<br>s = %{z:.3f} (majority sign %{customdata[0]})<extra></extra>",
                name=label or d.site,
            ),
            row=r,
            col=1,
        )
        if is_head:
            for h in range(1, d.unit_shape[0]):
                fig.add_vline(x=h * d_head - 0.5, line={"color": "white", "width": 1, "dash": "dot"},
                              row=r, col=1)  # fmt: skip
        mask = (masks or {}).get(label)
        if mask is not None:
            fig.add_trace(
                go.Scatter(
                    x=mask.indices.tolist(),
                    y=mask.layers.tolist(),
                    mode="markers",
                    marker={
                        "symbol": "x-thin-open",
                        "size": 7,
                        "color": "#D55E00",
                        "line": {"width": 1.5},
                    },
                    name=f"top-{mask.k} AUs",
                    showlegend=r == 1,
                    text=[mask.label(i) for i in range(mask.k)],
                    hovertemplate="%{text}<extra>selected</extra>",
                ),
                row=r,
                col=1,
            )
        fig.update_yaxes(title_text="layer", row=r, col=1)
        axis = "dimension (head × d_head + d)" if is_head else "dimension"
        fig.update_xaxes(title_text=axis, range=[-0.5, width - 0.5], showgrid=False, row=r, col=1)
    fig.update_layout(
        coloraxis={
            "colorscale": SEQUENTIAL,
            "colorbar": {"title": {"text": "score s<br>(fraction)"}},
        },
        legend={"orientation": "h", "y": -0.12, "x": 0},
    )
    first = panels[labels[0]]
    return _finish(
        fig,
        title
        or f"AUSteer score s (sign consistency) per atomic unit ({_about(first)}, "
        f"{first.n_pairs} pairs)",
        height=max(HEIGHT, 350 * len(labels)),
    )


# ---- 7. single unit versus block -------------------------------------------------------------


def unit_vs_block(scan: UnitScan, *, split: str = "test", title: str | None = None) -> go.Figure:
    """Accuracy (%) when steering each single dimension of one head, versus the whole head.

    One line per strength over the scanned dimensions, the whole head at the same strength as a
    dashed line of the same colour, and grey / black reference lines for the unsteered model and
    `scan.references` (e.g. the tuned SADI mask).
    """
    fig = go.Figure()
    for i, s in enumerate(scan.strengths):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(
            go.Scatter(
                x=scan.dims,
                y=_pct(scan.accuracy[s]),
                mode="lines+markers",
                marker={"size": 8},
                line={"color": color},
                name=f"single dim, strength {s:g}",
                hovertemplate="dim %{x}: %{y:.1f}%<extra>strength " + f"{s:g}</extra>",
            )
        )
        fig.add_hline(y=100 * scan.block[s], line={"dash": "dash", "color": color, "width": 2})
        fig.add_trace(  # legend entry for the dashed line
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line={"dash": "dash", "color": color},
                name=f"whole head, strength {s:g}: {100 * scan.block[s]:.1f}%",
            )  # fmt: skip
        )
    refs = {"unsteered": scan.baseline, **scan.references}
    styles = [{"color": GREY, "dash": "dot"}, {"color": "black", "dash": "dashdot"}]
    for i, (label, value) in enumerate(refs.items()):
        style = styles[min(i, 1)]
        fig.add_hline(y=100 * value, line={**style, "width": 2})
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=style,
                                 name=f"{label}: {100 * value:.1f}%"))  # fmt: skip
    fig.update_xaxes(title_text=f"dimension d of head L{scan.layer}.H{scan.head} (hook_z index)",
                     tickvals=scan.dims)  # fmt: skip
    values = [v for s in scan.strengths for v in scan.accuracy[s]] + list(scan.block.values())
    values += list(refs.values())
    lo, hi = 100 * min(values), 100 * max(values)
    pad = max(2.0, 0.08 * (hi - lo))
    fig.update_yaxes(title_text=f"{split} {_metric_name(scan.metric)} (%)",
                     range=[max(0.0, lo - pad), min(100.0, hi + pad)])  # fmt: skip
    fig.update_layout(legend={"orientation": "h", "y": -0.18, "x": 0})
    n = f", {scan.n_items} items" if scan.n_items else ""
    task = f"{scan.task}, " if scan.task else ""
    return _finish(
        fig,
        title
        or f"Single dimension versus whole head L{scan.layer}.H{scan.head} ({task}{split}{n})",
        height=650,
    )


# ---- 8. what a unit writes -------------------------------------------------------------------


def unit_writes(
    writes: UnitWrites | Sequence[UnitWrites], *, title: str | None = None
) -> go.Figure:
    """For each unit (one row): the tokens its write direction promotes through `W_U` (left), and
    the top next tokens when it alone is steered strongly on one prompt, with their unsteered
    probabilities (right)."""
    rows = [writes] if isinstance(writes, UnitWrites) else list(writes)
    if not rows:
        raise ValueError("unit_writes needs at least one UnitWrites")
    titles = []
    for w in rows:
        titles += [f"{w.label}: write direction through W_U",
                   f"{w.label}: next token when scaled by 1+{w.strength:g}"]  # fmt: skip
    fig = make_subplots(rows=len(rows), cols=2, subplot_titles=titles, horizontal_spacing=0.2,
                        vertical_spacing=0.3 / len(rows))  # fmt: skip
    for r, w in enumerate(rows, start=1):
        fig.add_trace(
            go.Bar(
                y=w.static_tokens,
                x=w.static_logits,
                orientation="h",
                marker_color=COLORS[0],
                name="logit per unit activation",
                showlegend=r == 1,
                hovertemplate="%{y}: %{x:.3g}<extra></extra>",
            ),
            row=r,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                y=w.steered_tokens,
                x=_pct(w.clean_probs),
                orientation="h",
                marker_color=GREY,
                name="unsteered",
                showlegend=r == 1,
                hovertemplate="%{y}: %{x:.2f}%<extra>unsteered</extra>",
            ),
            row=r,
            col=2,
        )
        fig.add_trace(
            go.Bar(
                y=w.steered_tokens,
                x=_pct(w.steered_probs),
                orientation="h",
                marker_color=COLORS[5],
                name="steered",
                showlegend=r == 1,
                hovertemplate="%{y}: %{x:.2f}%<extra>steered</extra>",
            ),
            row=r,
            col=2,
        )
        fig.update_yaxes(autorange="reversed", type="category", title_text="promoted token",
                         row=r, col=1)  # fmt: skip
        fig.update_yaxes(autorange="reversed", type="category", title_text="top next token (steered)",
                         row=r, col=2)  # fmt: skip
        fig.update_xaxes(title_text="logit change per unit activation", row=r, col=1)
        fig.update_xaxes(title_text="next-token probability (%)", row=r, col=2)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.12, "x": 0})
    prompt = rows[0].prompt.strip().replace("\n", " ")
    prompt = prompt if len(prompt) <= 90 else prompt[:87] + "..."
    fig.update_layout(title_subtitle_text=f"steered prompt: “{prompt}”", margin_t=100)
    return _finish(
        fig,
        title
        or "What a unit writes: its logit-lens tokens (left) and next tokens when steered (right)",
        height=max(HEIGHT, 320 * len(rows) + 100),
    )


# ---- method comparison -------------------------------------------------------------------------


def _row_fields(row: Any) -> dict[str, Any]:
    """Normalize a `MethodResult` or a results.csv row (dict of strings) into plain numbers."""
    if isinstance(row, Mapping):
        get = row.get
        out = {
            "method": str(get("method")),
            "accuracy": float(get("test_accuracy")),  # type: ignore[arg-type]
            "accuracy_lo": float(get("test_accuracy_lo")),  # type: ignore[arg-type]
            "accuracy_hi": float(get("test_accuracy_hi")),  # type: ignore[arg-type]
            "restricted": float(get("test_restricted")),  # type: ignore[arg-type]
            "restricted_lo": float(get("test_restricted_lo")),  # type: ignore[arg-type]
            "restricted_hi": float(get("test_restricted_hi")),  # type: ignore[arg-type]
            "n_activations": int(float(get("n_activations") or 0)),
            "setting": f"{get('setting_name')}={get('setting')}",
            "strength": float(get("strength") or 0),
            "n_test": int(float(get("n_test") or 0)),
        }
    else:
        lo, hi = row.test.ci("accuracy")
        rlo, rhi = row.test.ci("restricted")
        out = {
            "method": row.method,
            "accuracy": row.test.accuracy,
            "accuracy_lo": lo,
            "accuracy_hi": hi,
            "restricted": row.test.restricted,
            "restricted_lo": rlo,
            "restricted_hi": rhi,
            "n_activations": row.n_activations,
            "setting": f"{row.setting_name}={row.setting}",
            "strength": row.strength,
            "n_test": row.test.n,
        }
    if out["method"] == "none":
        out["setting"] = "unsteered"
    return out


def method_comparison(
    rows: Iterable[Any], *, title: str | None = None, task: str | None = None
) -> go.Figure:
    """Test accuracy (%) per method with 95% bootstrap intervals, both protocols.

    `rows` are `run_job(...)["rows"]` (`MethodResult`s) or the rows of its results.csv
    (`csv.DictReader`). The unsteered row ("none") is drawn first and as dashed lines.
    """
    data = [_row_fields(r) for r in rows]
    if not data:
        raise ValueError("method_comparison needs results rows")
    methods = [d["method"] if d["method"] != "none" else "unsteered" for d in data]
    fig = go.Figure()
    for i, (key, name) in enumerate([("accuracy", "full-vocabulary accuracy"),
                                     ("restricted", "restricted to the options")]):  # fmt: skip
        y = np.array([d[key] for d in data])
        fig.add_trace(
            go.Bar(
                x=methods,
                y=_pct(y),
                error_y={
                    "type": "data",
                    "array": _pct(np.array([d[f"{key}_hi"] for d in data]) - y),
                    "arrayminus": _pct(y - np.array([d[f"{key}_lo"] for d in data])),
                    "visible": True,
                    "thickness": 1.5,
                },
                marker_color=COLORS[i],
                name=name,
                customdata=np.array(
                    [[d["setting"], f"{d['strength']:g}", d["n_activations"]] for d in data],
                    dtype=object,
                ),  # fmt: skip
                hovertemplate="%{x}: %{y:.1f}%<br>%{customdata[0]}, strength %{customdata[1]}, "
                "%{customdata[2]} activations<extra>" + name + "</extra>",
            )
        )
        base = [d for d in data if d["method"] == "none"]
        if base:
            fig.add_hline(
                y=100 * base[0][key], line={"dash": "dash", "color": COLORS[i], "width": 1}
            )
    n = data[0]["n_test"]
    fig.update_xaxes(title_text="method (K and strength tuned on dev)", tickangle=-30)
    fig.update_yaxes(title_text="test accuracy (%)", range=[0, 100])
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": 1.08, "x": 0})
    where = f"{task}, " if task else ""
    return _finish(
        fig,
        title or f"Method comparison ({where}{n} test items; bars: 95% bootstrap intervals)",
    )


# ---- saving ----------------------------------------------------------------------------------


def _find_browser() -> str | None:
    """A Chrome/Chromium kaleido can drive: `$BROWSER_PATH`, else one on PATH or in the usual places."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:  # older kaleido without choreographer
        return None
    try:
        return Chromium.find_browser(skip_local=False)
    except Exception:  # a best-effort search; any failure means "not found"
        return None


def static_export_problem() -> str | None:
    """Why PNG/SVG export cannot work here (a one-line reason), or None when it can."""
    if importlib.util.find_spec("kaleido") is None:
        return "kaleido is not installed (pip install 'kaleido>=1')"
    from importlib.metadata import version

    major = int(version("kaleido").split(".")[0])
    if major < 1:
        return f"kaleido {version('kaleido')} is too old for plotly's exporter (pip install 'kaleido>=1')"
    if _find_browser() is None:
        return (
            "no Chrome/Chromium found for kaleido (install Debian's `chromium`, e.g. via "
            "scripts/setup.sh, or set BROWSER_PATH)"
        )
    return None


@contextmanager
def png_export() -> Iterator[None]:
    """Keep one browser running for many `save_figure` calls (a few seconds saved per image)."""
    if static_export_problem() is not None:
        yield
        return
    import kaleido

    try:
        kaleido.start_sync_server(silence_warnings=True)
    except Exception as err:  # no shared browser: each save_figure starts its own, or says why not
        print(
            f"steerlens: could not start kaleido's browser once for all figures ({err})",
            file=sys.stderr,
        )
        yield
        return
    try:
        yield
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


def save_figure(
    fig: go.Figure,
    path_stem: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("png",),
    width: int | None = None,
    height: int | None = None,
    scale: float = 1.0,
    include_plotlyjs: str | bool = "cdn",
) -> list[Path]:
    """Write `path_stem`.html (always) and `path_stem`.png / .svg via kaleido where it can.

    Without kaleido or a browser the HTML is still written and one line on stderr says why the
    static formats were skipped. `include_plotlyjs="cdn"` keeps each HTML file small (the page
    loads plotly.js from its CDN); pass True for a self-contained file.

    Returns:
        The paths written.
    """
    stem = Path(path_stem)
    if stem.suffix in (".html", ".png", ".svg"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    fig.write_html(html, include_plotlyjs=include_plotlyjs, full_html=True)
    written = [html]
    static = [f for f in formats if f != "html"]
    if not static:
        return written
    problem = static_export_problem()
    if problem is not None:
        print(
            f"steerlens: skipped {'/'.join(static).upper()} for {stem.name}: {problem}",
            file=sys.stderr,
        )
        return written
    w = width or fig.layout.width or WIDTH
    h = height or fig.layout.height or HEIGHT
    for fmt in static:
        path = stem.with_suffix(f".{fmt}")
        try:
            with warnings.catch_warnings():  # plotly's note when png_export() keeps a browser
                warnings.filterwarnings("ignore", message="The kopts argument is ignored")
                fig.write_image(path, format=fmt, width=w, height=h, scale=scale)
        except Exception as err:  # the browser can fail in many ways; the HTML is already saved
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"steerlens: skipped {fmt.upper()} for {stem.name}: {first}", file=sys.stderr)
            continue
        written.append(path)
    return written


# ---- notebooks -------------------------------------------------------------------------------

_SERVER_STARTED = False


def _start_export_server() -> None:
    """Start kaleido's browser once per process and stop it at exit (notebooks show many figures)."""
    global _SERVER_STARTED
    if _SERVER_STARTED:
        return
    import atexit

    import kaleido

    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)
    _SERVER_STARTED = True


def show(fig: go.Figure, *, static: bool | None = None, scale: float = 1.0) -> None:
    """Display `fig` in a notebook: a PNG (light, visible on code hosts) where kaleido and a browser
    work, else interactive HTML that loads plotly.js from its CDN.

    Args:
        static: force PNG (True) or HTML (False); default PNG when static export is possible.
    """
    from IPython.display import HTML, Image, display

    problem = static_export_problem()
    if static is None:
        static = problem is None
    if static:
        if problem is not None:
            raise RuntimeError(f"Cannot render a PNG: {problem}")
        _start_export_server()
        w, h = fig.layout.width or WIDTH, fig.layout.height or HEIGHT
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            png = fig.to_image(format="png", width=w, height=h, scale=scale)
        display(Image(png))
    else:
        display(HTML(fig.to_html(include_plotlyjs="cdn", full_html=False)))


def effects_table(rows: Sequence[Mapping[str, Any]], *, width: int = 60) -> str:
    """`prompt_effects` records as a plain-text table (prompt tail, answer, before -> after)."""
    head = f"{'prompt (end)':<{width}}  {'answer':<10} {'before':<12} {'P(ans)':>7}  {'after':<12} {'P(ans)':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        prompt = str(r["prompt"]).replace("\n", " ")
        prompt = prompt if len(prompt) <= width else "..." + prompt[-(width - 3) :]
        lines.append(
            f"{prompt:<{width}}  {r['answer']!s:<10} {r['before']!s:<12} {100 * float(r['p_before']):6.1f}%"
            f"  {r['after']!s:<12} {100 * float(r['p_after']):6.1f}%"
        )
    return "\n".join(lines)
