"""Accuracy figures: over the sweep grid, over the number of pairs, per single unit (the method
comparison is `comparison.py`).

| builder              | paper figure                                   | input                        |
|----------------------|------------------------------------------------|------------------------------|
| `sweep_heatmap`      | AUSteer Fig. 10: accuracy over K x strength    | `SweepResult`                |
| `pairs_curve`        | SADI Fig. 4 / AUSteer Fig. 13: data efficiency | `pairs_curve_data` records   |
| `unit_vs_block`      | AUSteer Fig. 2: single dims versus the head    | `UnitScan`                   |

`pairs_summary` returns the numbers behind `pairs_curve`. The records come from
`steerlens.analysis`, which this module does not import (drawing never runs the model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from ..stats import paired_bootstrap_ci, str_to_flags
from ._style import (
    COLORS,
    DIVERGING,
    GREY,
    SYMBOLS,
    _error_bars,
    _finish,
    _metric_name,
    _pct,
)

if TYPE_CHECKING:
    from ..analysis import UnitScan
    from ..sweep import SweepResult

__all__ = [
    "pairs_curve",
    "pairs_deltas",
    "pairs_summary",
    "sweep_heatmap",
    "unit_vs_block",
]


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
    Colours diverge from the unsteered score (blue above it, red below), so a grid in which
    nothing beats no steering reads as such; a best cell that does not beat it says so.
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
    base = 100 * result.baseline.metric(metric)
    best_name = f"best on {split}: {setting_name}={best_setting}, strength {best_strength:g}"
    if not z[bi, bj] > base:
        best_name += f" (no better than unsteered, {base:.1f}%)"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            text=text,
            texttemplate="%{text}",
            **_centred_scale(z, base),
            colorbar={
                "title": {
                    "text": f"{split} {_metric_name(metric)}<br>(%; white = unsteered {base:.1f})"
                }
            },
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
            name=best_name,
            showlegend=True,
            hoverinfo="name",
        )
    )
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


MIN_SPAN = 10.0  # percentage points from unsteered to full colour, at least


def _centred_scale(z: np.ndarray, base: float) -> dict[str, Any]:
    """`DIVERGING` with white at `base` and equal colour per point either side of it, over the
    range the values span (plotly's `zmid` would widen the bar symmetrically, past 100%). Full
    colour needs at least `MIN_SPAN` points from `base`, so that one item on a small split reads
    as a tint, not as a finding."""
    from plotly.colors import sample_colorscale

    lo, hi = float(min(np.nanmin(z), base)), float(max(np.nanmax(z), base))
    span = max(base - lo, hi - base, MIN_SPAN)
    stops = np.linspace(0.0, 1.0, 21)
    values = lo + stops * (hi - lo)
    colors = sample_colorscale(DIVERGING, list(0.5 + (values - base) / (2 * span)))
    return {"colorscale": list(zip(stops.tolist(), colors, strict=True)), "zmin": lo, "zmax": hi}


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


def pairs_deltas(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]] | None:
    """Per method: `n` (pair counts) and `delta`, `lo`, `hi`: the paired difference to unsteered
    of the per-item hits averaged over seeds, with its 95% bootstrap interval (fractions). None
    when the records carry no per-item `flags` (older records)."""
    records = list(records)
    if not records or any(not r.get("flags") for r in records):
        return None
    out = {}
    for method in dict.fromkeys(str(r["method"]) for r in records):
        mine = [r for r in records if str(r["method"]) == method]
        base = next((r for r in mine if int(r["n_pairs"]) == 0), None)
        if base is None:
            return None
        ns = sorted({int(r["n_pairs"]) for r in mine if int(r["n_pairs"]) > 0})
        rows = []
        for n in ns:
            flags = [str_to_flags(str(r["flags"])) for r in mine if int(r["n_pairs"]) == n]
            rows.append(
                paired_bootstrap_ci(np.mean(flags, axis=0), str_to_flags(str(base["flags"])))
            )
        d = np.array(rows, dtype=float).reshape(len(ns), 3)
        out[method] = {"n": np.asarray(ns), "delta": d[:, 0], "lo": d[:, 1], "hi": d[:, 2]}
    return out


def pairs_curve(
    records: Iterable[Mapping[str, Any]],
    *,
    metric: str = "accuracy",
    split: str = "test",
    title: str | None = None,
) -> go.Figure:
    """Accuracy versus the number of contrastive pairs behind the mask, one line per method.

    `records` come from `steerlens.analysis.pairs_curve_data`: `method`, `n_pairs`, `seed`,
    `accuracy` and per-item `flags`. With flags, each point is the paired difference to
    unsteered (points) of the hits averaged over seeds, with its paired 95% bootstrap interval,
    the methods side by side at each count and unsteered as the zero line. Without (older
    records): the mean accuracy over seeds with the standard deviation, and the unsteered score
    (`n_pairs=0`) as a dashed line.
    """
    records = list(records)
    summary = pairs_summary(records)
    if not summary:
        raise ValueError("pairs_curve needs records with n_pairs > 0")
    deltas = pairs_deltas(records)
    seeds = int(max(s["seeds"].max() for s in summary.values()))
    fig = go.Figure()
    for i, (method, s) in enumerate(summary.items()):
        style = {
            "mode": "lines+markers",
            "marker": {"size": 8, "symbol": SYMBOLS[i % len(SYMBOLS)]},
            "line": {"color": COLORS[i % len(COLORS)], "width": 2.5},
            "name": method,
        }
        span = np.stack([_pct(s["mean"]), _pct(s["min"]), _pct(s["max"]), s["seeds"]], axis=-1)
        hover = (
            "accuracy mean %{customdata[0]:.1f}%, range %{customdata[1]:.1f} to "
            "%{customdata[2]:.1f} (%{customdata[3]} seeds)<extra>" + method + "</extra>"
        )
        if deltas is not None:
            d = deltas[method]
            fig.add_trace(
                go.Scatter(
                    x=[str(n) for n in d["n"]],
                    y=_pct(d["delta"]),
                    error_y=_error_bars(_pct(d["hi"] - d["delta"]), _pct(d["delta"] - d["lo"])),
                    customdata=span,
                    hovertemplate="%{x} pairs: %{y:+.1f} points<br>" + hover,
                    **style,
                )
            )
        else:
            fig.add_trace(
                go.Scatter(
                    x=s["n"],
                    y=_pct(s["mean"]),
                    error_y={"type": "data", "array": _pct(s["std"]), "visible": True},
                    customdata=span,
                    hovertemplate="%{x} pairs: " + hover,
                    **style,
                )
            )
    base = [float(r["accuracy"]) for r in records if int(r["n_pairs"]) == 0]
    unsteered = f"unsteered {100 * base[0]:.1f}%" if base else None
    ns = sorted({int(n) for s in summary.values() for n in s["n"]})
    name = _metric_name(metric)
    if deltas is not None:
        fig.add_hline(
            y=0,
            line={"dash": "dash", "color": GREY},
            annotation_text=unsteered or "unsteered",
            annotation_position="bottom left",
        )
        fig.update_xaxes(
            title_text="contrastive pairs used to build the mask (count)", type="category"
        )
        fig.update_yaxes(title_text=f"Δ {split} {name} vs unsteered (points; bars: paired 95%)")
        fig.update_layout(scattermode="group")
        head = f"Δ {split} {name} versus contrastive pairs (paired to unsteered; {seeds} subsets)"
    else:
        if unsteered:
            fig.add_hline(
                y=100 * base[0],
                line={"dash": "dash", "color": GREY},
                annotation_text=unsteered,
                annotation_position="bottom left",
            )
        fig.update_xaxes(
            title_text="contrastive pairs used to build the mask (count, log scale)",
            type="log",
            tickvals=ns,
            ticktext=[str(n) for n in ns],
        )
        fig.update_yaxes(title_text=f"{split} {name} (%)")
        head = (
            f"{split.capitalize()} {name} versus number of contrastive pairs "
            f"(mean ± s.d. over up to {seeds} random subsets)"
        )
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"})
    return _finish(fig, title or head)


# ---- 7. single unit versus block -------------------------------------------------------------


def unit_vs_block(scan: UnitScan, *, split: str = "test", title: str | None = None) -> go.Figure:
    """Steering each single dimension of one head, versus the whole head, at each strength.

    With the scan's paired differences (`UnitScan.delta`): each dimension's and the whole head's
    difference to the unsteered model (points) with its paired 95% interval, the strengths side
    by side at each x and the whole head as the last x, so no series hides another; the
    unsteered model is the zero line and `scan.references` dash-dotted lines. Older scans: the
    accuracies, as below.
    """
    if scan.delta:
        return _unit_vs_block_paired(scan, split=split, title=title)
    return _unit_vs_block_levels(scan, split=split, title=title)


def _unit_vs_block_paired(scan: UnitScan, *, split: str, title: str | None) -> go.Figure:
    xs = [f"d{d}" for d in scan.dims] + ["whole head"]
    fig = go.Figure()
    for i, s in enumerate(scan.strengths):
        d = _pct(np.array([*scan.delta[s], scan.block_delta[s]], dtype=float))
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=d[:, 0],
                error_y=_error_bars(d[:, 2] - d[:, 0], d[:, 0] - d[:, 1]),
                mode="markers",
                marker={
                    "size": 8,
                    "symbol": SYMBOLS[i % len(SYMBOLS)],
                    "color": COLORS[i % len(COLORS)],
                },
                name=f"strength {s:g}",
                hovertemplate="%{x}: %{y:+.1f} points<extra>strength " + f"{s:g}</extra>",
            )
        )
    base = 100 * scan.baseline
    fig.add_hline(
        y=0,
        line={"dash": "dash", "color": GREY, "width": 1.5},
        annotation_text=f"unsteered {base:.1f}%",
        annotation_position="top left",
        annotation_font_color=GREY,
    )
    for label, value in scan.references.items():
        fig.add_hline(
            y=100 * value - base, line={"color": "black", "dash": "dashdot", "width": 1.5}
        )
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                line={"color": "black", "dash": "dashdot"},
                name=f"{label}: {100 * value - base:+.1f}",
            )
        )
    fig.add_vline(x=len(scan.dims) - 0.5, line={"color": GREY, "width": 1, "dash": "dot"})
    fig.update_xaxes(
        title_text=f"dimension d of head L{scan.layer}.H{scan.head} (hook_z index), then the whole head",
        type="category",
    )
    fig.update_yaxes(
        title_text=f"Δ {split} {_metric_name(scan.metric)} vs unsteered (points; bars: paired 95%)"
    )
    fig.update_layout(scattermode="group", legend={"orientation": "h", "y": -0.18, "x": 0})
    n = f", {scan.n_items} items" if scan.n_items else ""
    task = f"{scan.task}, " if scan.task else ""
    return _finish(
        fig,
        title
        or f"Single dimension versus whole head L{scan.layer}.H{scan.head} ({task}{split}{n})",
        height=650,
    )


def _unit_vs_block_levels(scan: UnitScan, *, split: str, title: str | None) -> go.Figure:
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
            )
        )
    refs = {"unsteered": scan.baseline, **scan.references}
    styles = [{"color": GREY, "dash": "dot"}, {"color": "black", "dash": "dashdot"}]
    for i, (label, value) in enumerate(refs.items()):
        style = styles[min(i, 1)]
        fig.add_hline(y=100 * value, line={**style, "width": 2})
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="lines", line=style, name=f"{label}: {100 * value:.1f}%"
            )
        )
    fig.update_xaxes(
        title_text=f"dimension d of head L{scan.layer}.H{scan.head} (hook_z index)",
        tickvals=scan.dims,
    )
    values = [v for s in scan.strengths for v in scan.accuracy[s]] + list(scan.block.values())
    values += list(refs.values())
    lo, hi = 100 * min(values), 100 * max(values)
    pad = max(2.0, 0.08 * (hi - lo))
    fig.update_yaxes(
        title_text=f"{split} {_metric_name(scan.metric)} (%)",
        range=[max(0.0, lo - pad), min(100.0, hi + pad)],
    )
    fig.update_layout(legend={"orientation": "h", "y": -0.18, "x": 0})
    n = f", {scan.n_items} items" if scan.n_items else ""
    task = f"{scan.task}, " if scan.task else ""
    return _finish(
        fig,
        title
        or f"Single dimension versus whole head L{scan.layer}.H{scan.head} ({task}{split}{n})",
        height=650,
    )
