"""The ablations' figures (`steerlens.experiments.ablations`), from their JSON-shaped rows.

| builder                 | ablation                                      | input (ablations.*)        |
|-------------------------|-----------------------------------------------|----------------------------|
| `steer_less_figure`     | AUSteer Table 12: accuracy versus k units     | `steer_less_curve` rows    |
| `promotion_figure`      | AUSteer Table 13: promotion vs suppression    | `promotion_vs_suppression` |
| `adaptive_figure`       | AUSteer Table 3: adaptive vs fixed strength   | `adaptive_vs_fixed`        |
| `ablation_pairs_figure` | SADI Fig. 4 / AUSteer Fig. 13, tuned on dev   | `pairs_curve` rows         |

Every row carries the test scores as `row["test"]`: `accuracy`, `accuracy_ci` ([lo, hi], 95%
bootstrap), `restricted`, `restricted_ci` and `n` (test items); the unsteered row is the one with
`k == 0` (steer-less), the key "vanilla" (promotion, adaptive) or `method == "none"` (pairs). Both
protocols are drawn in the colours of `method_comparison`; the unsteered scores as dashed lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ._style import COLORS, PROTOCOLS, SYMBOLS, _finish, _pct, _where

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


def _error_bars(plus: np.ndarray, minus: np.ndarray) -> dict[str, Any]:
    return {
        "type": "data",
        "symmetric": False,
        "array": plus,
        "arrayminus": minus,
        "visible": True,
        "thickness": 1.5,
    }


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


def _title(text: str, task: str | None, rows: Sequence[Row]) -> str:
    """`text`, with the task and the number of test items where known."""
    where = _where(task, _n_test(rows))
    return f"{text} ({where})" if where else text


# ---- accuracy versus the number of steered units -----------------------------------------------


def steer_less_figure(
    rows: Sequence[Row], *, task: str | None = None, title: str | None = None
) -> go.Figure:
    """Test accuracy (%) against the number of steered atomic units k (log axis), both protocols
    with 95% bootstrap intervals; the k = 0 row (unsteered) as dashed lines.

    `rows` are `steerlens.experiments.ablations.steer_less_curve` rows: `k`, `site`, `strength`, `test`, ...
    """
    steered = sorted((r for r in rows if int(r["k"]) > 0), key=lambda r: int(r["k"]))
    if not steered:
        raise ValueError("steer_less_figure needs rows with k > 0")
    base = next((r for r in rows if int(r["k"]) == 0), None)
    ks = [int(r["k"]) for r in steered]
    hover = [_describe(r) for r in steered]
    fig = go.Figure()
    for i, (metric, name, color) in enumerate(_protocols(steered)):
        y, plus, minus = _scores(steered, metric)
        fig.add_trace(
            go.Scatter(
                x=ks,
                y=y,
                error_y=_error_bars(plus, minus),
                mode="lines+markers",
                marker={"size": 8, "symbol": SYMBOLS[i]},
                line={"color": color, "width": 2.5},
                name=name,
                text=hover,
                hovertemplate="k=%{x}: %{y:.1f}%<br>%{text}<extra>" + name + "</extra>",
            )
        )
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
    return _finish(fig, title or _title(head, task, rows))


# ---- grouped bars: promotion / suppression, adaptive / fixed -----------------------------------


def _bars(result: Mapping[str, Row], title: str) -> go.Figure:
    """One group per arm (the unsteered one named "unsteered"), one bar per protocol."""
    if not result:
        raise ValueError("an ablation figure needs at least one arm")
    arms = list(result)
    rows = [result[a] for a in arms]
    names = ["unsteered" if a in _UNSTEERED else a for a in arms]
    hover = [_describe(r) for r in rows]
    fig = go.Figure()
    for metric, name, color in _protocols(rows):
        y, plus, minus = _scores(rows, metric)
        fig.add_trace(
            go.Bar(
                x=names,
                y=y,
                error_y=_error_bars(plus, minus),
                marker_color=color,
                name=name,
                text=hover,
                hovertemplate="%{x}: %{y:.1f}%<br>%{text}<extra>" + name + "</extra>",
                textposition="none",
            )
        )
    _unsteered_lines(fig, next((result[a] for a in arms if a in _UNSTEERED), None), annotate=False)
    fig.update_xaxes(title_text="arm (setting and strength tuned on dev)")
    fig.update_yaxes(title_text=_CI, range=[0, 100])
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": 1.08, "x": 0})
    return _finish(fig, title)


def promotion_figure(
    result: Mapping[str, Row], *, task: str | None = None, title: str | None = None
) -> go.Figure:
    """Grouped bars: unsteered, suppression of the least important units, AUSteer promotion; test
    accuracy (%) under both protocols with 95% bootstrap intervals.

    `result` is `steerlens.experiments.ablations.promotion_vs_suppression`'s: arm -> row.
    """
    head = "Promotion (AUSteer) versus suppression of the least important units"
    rows = list(result.values())
    return _bars(result, title or _title(head, task, rows))


def adaptive_figure(
    result: Mapping[str, Row], *, task: str | None = None, title: str | None = None
) -> go.Figure:
    """Grouped bars: unsteered, AUSteer's adaptive strength and fixed strengths on the same units;
    test accuracy (%) under both protocols with 95% bootstrap intervals.

    `result` is `steerlens.experiments.ablations.adaptive_vs_fixed`'s: variant -> row.
    """
    head = "Adaptive (AUSteer) versus fixed strength on the same units"
    rows = list(result.values())
    return _bars(result, title or _title(head, task, rows))


# ---- accuracy versus the number of contrastive pairs -------------------------------------------


def _over_seeds(
    sub: Sequence[Row], metric: str, *, seeded: bool
) -> tuple[list[int], np.ndarray, dict[str, Any], list[str]]:
    """Per pair count: the score (%), its error bars and a hover text; the row's 95% interval,
    or with `seeded` the mean over the count's rows (seeds) and their range."""
    ns = sorted({int(r["n_pairs"]) for r in sub})
    groups = [[r for r in sub if int(r["n_pairs"]) == n] for n in ns]
    text = [_describe(g[0]) if len(g) == 1 else f"mean of {len(g)} seeds" for g in groups]
    if not seeded:
        y, plus, minus = _scores([g[0] for g in groups], metric)
        return ns, y, _error_bars(plus, minus), text
    values = [_pct([r["test"][metric] for r in g]) for g in groups]
    y = np.array([v.mean() for v in values])
    plus = np.array([v.max() for v in values]) - y
    minus = y - np.array([v.min() for v in values])
    return ns, y, _error_bars(plus, minus), text


def ablation_pairs_figure(
    rows: Sequence[Row], *, task: str | None = None, title: str | None = None
) -> go.Figure:
    """Test accuracy (%) against the number of contrastive pairs, one colour per method: solid for
    full-vocabulary accuracy, dashed for the option-restricted one; the unsteered row
    (`method == "none"`) as dashed lines.

    `rows` are `steerlens.experiments.ablations.pairs_curve` rows: `method`, `n_pairs`, `seed`, `test`, ...
    Error bars are 95% bootstrap intervals, or the range over seeds where a count has several.
    """
    methods = [m for m in dict.fromkeys(str(r["method"]) for r in rows) if m not in _UNSTEERED]
    if not methods:
        raise ValueError("ablation_pairs_figure needs rows of at least one method")
    by_method = {m: [r for r in rows if str(r["method"]) == m] for m in methods}
    seeded = any(len({int(r["n_pairs"]) for r in sub}) < len(sub) for sub in by_method.values())
    fig = go.Figure()
    for i, (method, sub) in enumerate(by_method.items()):
        color, symbol = COLORS[i % len(COLORS)], SYMBOLS[i % len(SYMBOLS)]
        for metric, name, _ in _protocols(sub):
            ns, y, errors, text = _over_seeds(sub, metric, seeded=seeded)
            label = f"{method} ({name})"
            fig.add_trace(
                go.Scatter(
                    x=ns,
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
                    hovertemplate="%{x} pairs: %{y:.1f}%<br>%{text}<extra>" + label + "</extra>",
                )
            )
    _unsteered_lines(
        fig, next((r for r in rows if str(r["method"]) in _UNSTEERED), None), annotate=True
    )
    ns = sorted({int(r["n_pairs"]) for r in rows if str(r["method"]) not in _UNSTEERED})
    fig.update_xaxes(
        title_text="contrastive pairs used to build the mask (count)",
        tickvals=ns,
        ticktext=[str(n) for n in ns],
    )
    spread = (
        "mean over seeds; bars: range over seeds" if seeded else "bars: 95% bootstrap intervals"
    )
    fig.update_yaxes(title_text=f"test accuracy (%; {spread})")
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.15, "yanchor": "top"})
    head = "Accuracy versus number of contrastive pairs"
    return _finish(fig, title or _title(head, task, rows), height=650)
