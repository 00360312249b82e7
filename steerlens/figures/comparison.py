"""The main job's method comparison: test accuracy per method under each protocol, and below it
each method's paired difference to the unsteered model (`method_comparison`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..stats import paired_bootstrap_ci, str_to_flags
from ._style import GREY, PROTOCOLS, _error_bars, _finish, _pct, _where

__all__ = ["method_comparison"]


def _row_fields(row: Any) -> dict[str, Any] | None:
    """Normalize a results row into plain numbers; None for a row without test scores.

    A row is an object with `method`, `setting_name`, `setting`, `strength`, `n_activations` and
    `test` (with `accuracy`, `restricted`, `n` and `ci(metric)`), or a results.csv row (a dict of
    strings with `test_accuracy`, `test_accuracy_lo`, ... and `n_test`).
    """
    if isinstance(row, Mapping):
        get = row.get
        if get("test_accuracy") in (None, ""):
            return None
        out = {
            "method": str(get("method")),
            "n_activations": int(float(get("n_activations") or 0)),
            "setting": f"{get('setting_name')}={get('setting')}",
            "strength": float(get("strength") or 0),
            "n_test": int(float(get("n_test") or 0)),
        }
        for key, _, _ in PROTOCOLS:
            for suffix in ("", "_lo", "_hi"):
                for name, column in ((key, f"test_{key}"), (f"delta_{key}", f"delta_{key}")):
                    value = get(column + suffix)
                    out[name + suffix] = math.nan if value in (None, "") else float(value)
    else:
        if getattr(row, "test", None) is None:
            return None
        out = {
            "method": row.method,
            "n_activations": row.n_activations,
            "setting": f"{row.setting_name}={row.setting}",
            "strength": row.strength,
            "n_test": row.test.n,
        }
        for key, _, _ in PROTOCOLS:
            has = key in ("accuracy", "restricted") or hasattr(row.test, key)
            out[key] = getattr(row.test, key) if has else math.nan
            out[f"{key}_lo"], out[f"{key}_hi"] = row.test.ci(key) if has else (math.nan, math.nan)
            flags = row.test.flags(key) if has and hasattr(row.test, "flags") else ""
            out[f"flags_{key}"] = str_to_flags(flags) if flags else None
    if out["method"] == "none":
        out["setting"] = "unsteered"
    return out


def _deltas(data: list[dict[str, Any]], key: str) -> np.ndarray | None:
    """`[row, (mean, lo, hi)]` paired differences to the unsteered row under `key`, from the CSV's
    delta columns or from per-item flags; None when the rows carry neither."""
    base = next((d for d in data if d["method"] == "none"), None)
    out = []
    for d in data:
        if d["method"] == "none":
            out.append((0.0, 0.0, 0.0))
        elif not math.isnan(d.get(f"delta_{key}", math.nan)):
            out.append(tuple(d[f"delta_{key}{s}"] for s in ("", "_lo", "_hi")))
        elif (
            base is not None
            and d.get(f"flags_{key}") is not None
            and base.get(f"flags_{key}") is not None
        ):
            out.append(paired_bootstrap_ci(d[f"flags_{key}"], base[f"flags_{key}"]))
        else:
            return None
    return np.array(out, dtype=float)


def method_comparison(
    rows: Iterable[Any],
    *,
    title: str | None = None,
    task: str | None = None,
    chance: float | None = None,
) -> go.Figure:
    """Test accuracy (%) per method with 95% bootstrap intervals, under each protocol; below it,
    where the rows allow, each method's paired difference to unsteered with its paired 95%
    interval (the effect, which the accuracies' wide intervals hide).

    `rows` are the main job's result records (objects with `method`, `setting_name`, `setting`,
    `strength`, `n_activations` and `test` scores with per-item flags) or the rows of its
    results.csv (`csv.DictReader`, with its `delta_*` columns); rows without test scores are
    left out. The unsteered row ("none") is named "unsteered", its scores also drawn as dashed
    lines; `chance` (a fraction: picking an option at random) as a dotted grey line.
    """
    from plotly.subplots import make_subplots

    data = [d for d in map(_row_fields, rows) if d is not None]
    if not data:
        raise ValueError("method_comparison needs results rows")
    methods = [d["method"] if d["method"] != "none" else "unsteered" for d in data]
    protocols = [p for p in PROTOCOLS if not np.isnan([d[p[0]] for d in data]).all()]
    deltas = {key: _deltas(data, key) for key, _, _ in protocols}
    paired = len(data) > 1 and all(v is not None for v in deltas.values())
    fig = make_subplots(
        rows=2 if paired else 1,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.62, 0.38] if paired else None,
        vertical_spacing=0.06,
    )
    for key, name, color in protocols:
        y = np.array([d[key] for d in data], dtype=float)
        fig.add_trace(
            go.Bar(
                x=methods,
                y=_pct(y),
                error_y=_error_bars(
                    _pct(np.array([d[f"{key}_hi"] for d in data]) - y),
                    _pct(y - np.array([d[f"{key}_lo"] for d in data])),
                ),
                marker_color=color,
                name=name,
                legendgroup=key,
                offsetgroup=key,
                # every bar carries its value, so a 0% bar is visible as "0.0", not a gap
                text=[f"{v:.1f}" for v in _pct(y)],
                textposition="outside",
                # many bars: vertical labels, which do not run into each other
                textangle=-90 if len(data) * len(protocols) > 12 else 0,
                textfont={"size": 10},
                cliponaxis=False,
                customdata=np.array(
                    [[d["setting"], f"{d['strength']:g}", d["n_activations"]] for d in data],
                    dtype=object,
                ),
                hovertemplate="%{x}: %{y:.1f}%<br>%{customdata[0]}, strength %{customdata[1]}, "
                "%{customdata[2]} activations<extra>" + name + "</extra>",
            ),
            row=1,
            col=1,
        )
        base = [d for d in data if d["method"] == "none"]
        if base:
            fig.add_hline(
                y=100 * base[0][key],
                line={"dash": "dash", "color": color, "width": 1},
                row=1,
                col=1,
            )
        delta = deltas[key]
        if paired and delta is not None:
            d = _pct(delta)
            fig.add_trace(
                go.Bar(
                    x=methods,
                    y=d[:, 0],
                    error_y=_error_bars(d[:, 2] - d[:, 0], d[:, 0] - d[:, 1]),
                    marker_color=color,
                    name=name,
                    legendgroup=key,
                    offsetgroup=key,
                    showlegend=False,
                    hovertemplate="%{x}: %{y:+.1f} points vs unsteered<extra>" + name + "</extra>",
                ),
                row=2,
                col=1,
            )
    if chance is not None:
        fig.add_hline(
            y=100 * chance,
            line={"dash": "dot", "color": GREY, "width": 1.5},
            annotation_text=f"chance {100 * chance:.1f}% (an option at random)",
            annotation_position="top right",
            annotation_font_color=GREY,
            row=1,
            col=1,
        )
    fig.update_xaxes(tickangle=-30)
    fig.update_xaxes(title_text="method (K and strength tuned on dev)", row=2 if paired else 1)
    fig.update_yaxes(title_text="test accuracy (%)", range=[0, 100], row=1, col=1)
    if paired:
        fig.add_hline(y=0, line={"color": GREY, "width": 1}, row=2, col=1)
        fig.update_yaxes(title_text="Δ vs unsteered (points)", row=2, col=1)
    fig.update_layout(
        barmode="group",
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        margin={"t": 110},
    )
    where = _where(task, data[0]["n_test"])
    about = f"{where}; " if where else ""
    bars = "bars: 95% bootstrap intervals" + ("; below: paired differences" if paired else "")
    return _finish(
        fig, title or f"Method comparison ({about}{bars})", height=800 if paired else 600
    )
