"""The ablations' figures (`steerlens.experiments.ablations`), from their JSON-shaped rows.

| builder                 | ablation                                      | input (ablations.*)        |
|-------------------------|-----------------------------------------------|----------------------------|
| `steer_less_figure`     | AUSteer Table 12: accuracy versus k units     | `steer_less_curve` rows    |
| `promotion_figure`      | AUSteer Table 13: promotion vs suppression    | `promotion_vs_suppression` |
| `adaptive_figure`       | AUSteer Table 3: adaptive vs fixed strength   | `adaptive_vs_fixed`        |
| `ablation_pairs_figure` | SADI Fig. 4 / AUSteer Fig. 13, tuned on dev   | `pairs_curve` rows         |

Every row carries the test scores as `row["test"]`: `accuracy`, `accuracy_ci` ([lo, hi], 95%
bootstrap), `restricted`, `restricted_ci` and `n` (test items); the unsteered row is the one with
`k == 0` (steer-less), the key "vanilla" (promotion, adaptive) or `method == "none"` (pairs).

Rows that also carry the paired difference to the unsteered model (`test.delta_<metric>` =
[mean, lo, hi], written by the ablations since 2026-12) are drawn as that difference in points
with its paired 95% interval, around a zero line that names the unsteered scores; the protocols
sit side by side at each x, so that equal values never hide a series. Older rows are drawn as
accuracies with the unsteered scores as dashed lines. The protocols take the colours of
`method_comparison`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ._style import COLORS, GREY, PROTOCOLS, SYMBOLS, _error_bars, _finish, _pct, _where

__all__ = ["ablation_pairs_figure", "adaptive_figure", "promotion_figure", "steer_less_figure"]

Row = Mapping[str, Any]

_SITE_NAMES = {"head": "AUSteer-attention", "mlp_out": "AUSteer-FFN"}
_CI = "test accuracy (%; bars: 95% bootstrap intervals)"
_CORNER = {"accuracy": "top left", "restricted": "bottom right", "paper": "bottom left"}
_UNSTEERED = ("vanilla", "none")


def _scores(rows: Sequence[Row], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test `metric` (%) of each row and the distances to its 95% interval: (y, plus, minus)."""
    y = _pct([r["test"][metric] for r in rows])
    lo, hi = (_pct([r["test"][f"{metric}_ci"][i] for r in rows]) for i in (0, 1))
    return y, hi - y, y - lo


def _protocols(rows: Sequence[Row]) -> tuple[tuple[str, str, str], ...]:
    """The protocols every row's test scores carry (older records lack `paper`)."""
    return tuple(p for p in PROTOCOLS if all(p[0] in r["test"] for r in rows))


def _n_test(rows: Sequence[Row]) -> int | None:
    """The number of test items, from the first row that carries it."""
    for r in rows:
        n = (r.get("test") or {}).get("n")
        if n is not None:
            return int(n)
    return None


def _describe(row: Row) -> str:
    """The chosen setting of one row, e.g. "k=100, strength 8" (hover text)."""
    if not row.get("n_units") and row.get("setting") in (None, "", "-"):
        return "no steering"
    name = row.get("setting_name") or ("k" if "k" in row else "setting")
    text = f"{name}={row.get('setting')}"
    if "factor" in row:
        text += f", factor {float(row['factor']):g}"
    elif row.get("strength") is not None:
        text += f", strength {float(row['strength']):g}"
    if row.get("n_activations"):
        text += f", {int(row['n_activations'])} activations"
    return text


def _unsteered_lines(fig: go.Figure, base: Row | None, *, annotate: bool) -> None:
    """Dashed lines at the unsteered test scores, one per protocol, in the protocol's colour."""
    if base is None:
        return
    for metric, _, color in _protocols([base]):
        value = 100 * float(base["test"][metric])
        note = (
            {
                "annotation_text": f"unsteered {value:.1f}%",
                "annotation_position": _CORNER[metric],
                "annotation_font_color": color,
            }
            if annotate
            else {}
        )
        fig.add_hline(y=value, line={"dash": "dash", "color": color, "width": 1}, **note)


def _title(text: str, task: str | None, rows: Sequence[Row], model: str | None = None) -> str:
    """`text`, with the task, the model and the number of test items where known."""
    where = _where(task, _n_test(rows))
    where = ", ".join(p for p in (where, model) if p)
    return f"{text} ({where})" if where else text


_DELTA = "Δ test accuracy vs unsteered (points, paired 95% CI)"


def _paired(rows: Sequence[Row]) -> bool:
    """Whether every row carries the paired difference for every protocol it scores."""
    return bool(rows) and all(
        f"delta_{m}" in r["test"] for r in rows for m, _, _ in _protocols(rows)
    )


def _delta_scores(rows: Sequence[Row], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired difference to unsteered (points) of each row and the distances to its interval."""
    d = _pct([r["test"][f"delta_{metric}"] for r in rows]).reshape(len(rows), 3)
    return d[:, 0], d[:, 2] - d[:, 0], d[:, 0] - d[:, 1]


def _zero_line(fig: go.Figure, base: Row | None) -> None:
    """The unsteered model at Δ = 0, its scores under each protocol in the annotation."""
    text = "unsteered"
    if base is not None:
        text += ": " + ", ".join(
            f"{100 * float(base['test'][m]):.1f}% {name}" for m, name, _ in _protocols([base])
        )
    fig.add_hline(
        y=0,
        line={"dash": "dash", "color": GREY, "width": 1},
        annotation_text=text,
        annotation_position="top right",
        annotation_font_color=GREY,
    )


# ---- accuracy versus the number of steered units -----------------------------------------------


def steer_less_figure(
    rows: Sequence[Row],
    *,
    task: str | None = None,
    model: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """Test accuracy against the number of steered atomic units k, each protocol with 95%
    intervals: the paired difference to unsteered where the rows carry it (protocols side by
    side at each k), else accuracies on a log axis with the k = 0 row (unsteered) as dashed lines.

    `rows` are `steerlens.experiments.ablations.steer_less_curve` rows: `k`, `site`, `strength`, `test`, ...
    """
    steered = sorted((r for r in rows if int(r["k"]) > 0), key=lambda r: int(r["k"]))
    if not steered:
        raise ValueError("steer_less_figure needs rows with k > 0")
    base = next((r for r in rows if int(r["k"]) == 0), None)
    paired = _paired(steered)
    ks = [int(r["k"]) for r in steered]
    hover = [_describe(r) for r in steered]
    fig = go.Figure()
    for i, (metric, name, color) in enumerate(_protocols(steered)):
        y, plus, minus = (_delta_scores if paired else _scores)(steered, metric)
        unit = "points" if paired else "%"
        fig.add_trace(
            go.Scatter(
                x=[str(k) for k in ks] if paired else ks,
                y=y,
                error_y=_error_bars(plus, minus),
                mode="lines+markers",
                marker={"size": 8, "symbol": SYMBOLS[i]},
                line={"color": color, "width": 2.5},
                name=name,
                text=hover,
                hovertemplate="k=%{x}: %{y:+.1f} " + unit + "<br>%{text}<extra>" + name + "</extra>"
                if paired
                else "k=%{x}: %{y:.1f}%<br>%{text}<extra>" + name + "</extra>",
            )
        )
    if paired:
        _zero_line(fig, base)
        fig.update_xaxes(title_text="steered atomic units k (count)", type="category")
        fig.update_yaxes(title_text=_DELTA)
        fig.update_layout(scattermode="group")
    else:
        _unsteered_lines(fig, base, annotate=True)
        fig.update_xaxes(
            title_text="steered atomic units k (count, log scale)",
            type="log",
            tickvals=ks,
            ticktext=[str(k) for k in ks],
        )
        fig.update_yaxes(title_text=_CI)
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"})
    site = str(steered[0].get("site") or "")
    head = f"Steer less: {_SITE_NAMES.get(site, site) or 'AUSteer'} accuracy versus steered units"
    return _finish(fig, title or _title(head, task, rows, model))


# ---- grouped bars: promotion / suppression, adaptive / fixed -----------------------------------


def _bars(result: Mapping[str, Row], title: str) -> go.Figure:
    """One group per arm, one bar per protocol: the paired difference to unsteered where the rows
    carry it (the unsteered arm is then the zero line), else accuracies (the unsteered arm named
    "unsteered", its scores also as dashed lines)."""
    if not result:
        raise ValueError("an ablation figure needs at least one arm")
    base = next((result[a] for a in result if a in _UNSTEERED), None)
    paired = _paired([r for a, r in result.items() if a not in _UNSTEERED])
    arms = [a for a in result if not (paired and a in _UNSTEERED)]
    rows = [result[a] for a in arms]
    names = ["unsteered" if a in _UNSTEERED else a for a in arms]
    hover = [_describe(r) for r in rows]
    fig = go.Figure()
    for metric, name, color in _protocols(rows):
        y, plus, minus = (_delta_scores if paired else _scores)(rows, metric)
        fig.add_trace(
            go.Bar(
                x=names,
                y=y,
                error_y=_error_bars(plus, minus),
                marker_color=color,
                name=name,
                text=hover,
                hovertemplate=("%{x}: %{y:+.1f} points" if paired else "%{x}: %{y:.1f}%")
                + "<br>%{text}<extra>"
                + name
                + "</extra>",
                textposition="none",
            )
        )
    fig.update_xaxes(title_text="arm (setting and strength tuned on dev)")
    if paired:
        _zero_line(fig, base)
        fig.update_yaxes(title_text=_DELTA)
    else:
        _unsteered_lines(fig, base, annotate=False)
        fig.update_yaxes(title_text=_CI, range=[0, 100])
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": 1.08, "x": 0})
    return _finish(fig, title)


def promotion_figure(
    result: Mapping[str, Row],
    *,
    task: str | None = None,
    model: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """Grouped bars: suppression of the least important units and AUSteer promotion against
    unsteered, under each protocol with 95% intervals (paired differences where carried).

    `result` is `steerlens.experiments.ablations.promotion_vs_suppression`'s: arm -> row.
    """
    head = "Promotion (AUSteer) versus suppression of the least important units"
    return _bars(result, title or _title(head, task, list(result.values()), model))


def adaptive_figure(
    result: Mapping[str, Row],
    *,
    task: str | None = None,
    model: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """Grouped bars: AUSteer's adaptive strength and fixed strengths on the same units against
    unsteered, under each protocol with 95% intervals (paired differences where carried).

    `result` is `steerlens.experiments.ablations.adaptive_vs_fixed`'s: variant -> row.
    """
    head = "Adaptive (AUSteer) versus fixed strength on the same units"
    return _bars(result, title or _title(head, task, list(result.values()), model))


# ---- accuracy versus the number of contrastive pairs -------------------------------------------


def _over_seeds(
    sub: Sequence[Row], metric: str, *, seeded: bool, paired: bool
) -> tuple[list[int], np.ndarray, dict[str, Any], list[str]]:
    """Per pair count: the score (% or, `paired`, points to unsteered), its error bars and a
    hover text; the row's 95% interval, or with `seeded` the mean over the count's rows (seeds)
    and their range."""
    ns = sorted({int(r["n_pairs"]) for r in sub})
    groups = [[r for r in sub if int(r["n_pairs"]) == n] for n in ns]
    text = [_describe(g[0]) if len(g) == 1 else f"mean of {len(g)} seeds" for g in groups]
    scores = _delta_scores if paired else _scores
    if not seeded:
        y, plus, minus = scores([g[0] for g in groups], metric)
        return ns, y, _error_bars(plus, minus), text
    values = [scores(g, metric)[0] for g in groups]
    y = np.array([v.mean() for v in values])
    plus = np.array([v.max() for v in values]) - y
    minus = y - np.array([v.min() for v in values])
    return ns, y, _error_bars(plus, minus), text


def ablation_pairs_figure(
    rows: Sequence[Row],
    *,
    task: str | None = None,
    model: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """Test accuracy against the number of contrastive pairs, one colour per method: solid for
    full-vocabulary accuracy, dashed for the option-restricted one. Where the rows carry it, the
    paired difference to unsteered (series side by side at each count, the unsteered model as
    the zero line); else accuracies with the unsteered row (`method == "none"`) as dashed lines.

    `rows` are `steerlens.experiments.ablations.pairs_curve` rows: `method`, `n_pairs`, `seed`, `test`, ...
    Error bars are 95% intervals, or the range over seeds where a count has several.
    """
    methods = [m for m in dict.fromkeys(str(r["method"]) for r in rows) if m not in _UNSTEERED]
    if not methods:
        raise ValueError("ablation_pairs_figure needs rows of at least one method")
    by_method = {m: [r for r in rows if str(r["method"]) == m] for m in methods}
    seeded = any(len({int(r["n_pairs"]) for r in sub}) < len(sub) for sub in by_method.values())
    paired = _paired([r for sub in by_method.values() for r in sub])
    base = next((r for r in rows if str(r["method"]) in _UNSTEERED), None)
    fig = go.Figure()
    for i, (method, sub) in enumerate(by_method.items()):
        color, symbol = COLORS[i % len(COLORS)], SYMBOLS[i % len(SYMBOLS)]
        for metric, name, _ in _protocols(sub):
            ns, y, errors, text = _over_seeds(sub, metric, seeded=seeded, paired=paired)
            label = f"{method} ({name})"
            value = "%{y:+.1f} points" if paired else "%{y:.1f}%"
            fig.add_trace(
                go.Scatter(
                    x=[str(n) for n in ns] if paired else ns,
                    y=y,
                    error_y={**errors, "color": color},
                    mode="lines+markers",
                    marker={
                        "size": 8,
                        "symbol": symbol if metric == "accuracy" else f"{symbol}-open",
                        "color": color,
                    },
                    line={
                        "color": color,
                        "width": 2.5,
                        "dash": "solid" if metric == "accuracy" else "dash",
                    },
                    name=label,
                    text=text,
                    hovertemplate=f"%{{x}} pairs: {value}<br>%{{text}}<extra>{label}</extra>",
                )
            )
    ns = sorted({int(r["n_pairs"]) for r in rows if str(r["method"]) not in _UNSTEERED})
    if paired:
        _zero_line(fig, base)
        fig.update_xaxes(
            title_text="contrastive pairs used to build the mask (count)", type="category"
        )
        fig.update_layout(scattermode="group")
        seeds = "Δ test accuracy vs unsteered (points, mean over seeds; bars: range over seeds)"
        fig.update_yaxes(title_text=seeds if seeded else _DELTA)
    else:
        _unsteered_lines(fig, base, annotate=True)
        fig.update_xaxes(
            title_text="contrastive pairs used to build the mask (count)",
            tickvals=ns,
            ticktext=[str(n) for n in ns],
        )
        what = (
            "mean over seeds; bars: range over seeds" if seeded else "bars: 95% bootstrap intervals"
        )
        fig.update_yaxes(title_text=f"test accuracy (%; {what})")
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.15, "yanchor": "top"})
    head = "Accuracy versus number of contrastive pairs"
    return _finish(fig, title or _title(head, task, rows, model), height=650)
