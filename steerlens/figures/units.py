"""Where the selected units sit: per-head scores, per-layer counts, cross-task overlap, AU scores.

| builder              | paper figure                                   | input                        |
|----------------------|------------------------------------------------|------------------------------|
| `head_heatmap`       | SADI: signed mean difference per head          | head `Differences`, `Mask`   |
| `layer_distribution` | SADI: where the top-100 units sit              | label -> `Mask`              |
| `overlap_matrix`     | SADI / AUSteer Fig. 12: cross-task overlap     | label -> `Mask` (per family) |
| `au_score_map`       | AUSteer Fig. 11: score `s` over layer x dim    | label -> `Differences`       |

`layer_counts` and `overlap_counts` return the numbers behind figures 2 and 3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..collect import Differences
from ..mask import Mask
from ..select import austeer_scores, sadi_scores
from ._style import COLORS, DIVERGING, HEIGHT, SEQUENTIAL, _about, _finish

__all__ = [
    "au_score_map",
    "head_heatmap",
    "layer_counts",
    "layer_distribution",
    "overlap_counts",
    "overlap_matrix",
]


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


def random_overlap(masks: Sequence[Mask]) -> float:
    """Units two of `masks` would share by chance: `k_a * k_b / N` for two random sets of their
    sizes among the N units of the site, averaged over pairs (the reference an overlap needs).
    """
    if len(masks) < 2:
        return float("nan")
    total = masks[0].n_layers * masks[0].units_per_layer
    pairs = [(a.k, b.k) for i, a in enumerate(masks) for b in masks[i + 1 :]]
    return sum(ka * kb / total for ka, kb in pairs) / len(pairs)


def overlap_matrix(
    masks: Mapping[str, Mask] | Mapping[str, Mapping[str, Mask]], *, title: str | None = None
) -> go.Figure:
    """Task-by-task overlap of selected units: shared count (left) and Jaccard index (right);
    each count panel's title gives the overlap two random masks of these sizes would have.

    `masks` is label -> `Mask` (one family), or family -> (label -> `Mask`) for one row per family
    (e.g. SADI heads, AUSteer attention AUs, AUSteer FFN AUs).
    """
    if not masks:
        raise ValueError("overlap_matrix needs masks")
    first = next(iter(masks.values()))
    families: dict[str, Mapping[str, Mask]] = (
        {"": cast("Mapping[str, Mask]", masks)}
        if isinstance(first, Mask)
        else dict(cast("Mapping[str, Mapping[str, Mask]]", masks))
    )
    names = list(families)
    titles = []
    for name in names:
        group = list(families[name].values())
        sizes = sorted({m.k for m in group})
        k = f"k={sizes[0]}" if len(sizes) == 1 else "k varies"
        prefix = f"{name}: " if name else f"{k}: "
        chance = random_overlap(group)
        titles += [
            prefix + f"shared units (random ≈ {chance:.2g})",
            prefix + "Jaccard index",
        ]
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
                fig.add_vline(
                    x=h * d_head - 0.5,
                    line={"color": "white", "width": 1, "dash": "dot"},
                    row=r,
                    col=1,
                )
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
                        "color": COLORS[5],
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
        fig.update_yaxes(
            title_text="layer", range=[-0.5, n_layers - 0.5], tickmode="auto", row=r, col=1
        )
        ticks = (
            {  # one label per head, at its centre
                "tickvals": [h * d_head + (d_head - 1) / 2 for h in range(d.unit_shape[0])],
                "ticktext": [f"H{h}" for h in range(d.unit_shape[0])],
            }
            if is_head
            else {}
        )
        axis = "head (its d_head dimensions between dotted lines)" if is_head else "dimension"
        fig.update_xaxes(
            title_text=axis, range=[-0.5, width - 0.5], showgrid=False, row=r, col=1, **ticks
        )
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
