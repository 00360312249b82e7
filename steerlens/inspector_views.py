"""The inspector's views: the layer x unit map, the live widget and the HTML report.

`Inspector.figure`, `Inspector.widget` and `Inspector.report` call these; they read the
inspector's state and change it only through its methods.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from ._io import atomic_write_text
from .figures._style import COLORS, _finish
from .inspector import Inspector, UnitInfo


def unit_map(insp: Inspector) -> go.Figure:
    """The layer x unit map: the edited mask's units by score, `other`'s as rings, the
    selected unit starred."""
    fig = go.Figure()
    units = insp.units()
    rows = [insp.row_of(insp.edited, *u) for u in units]
    fig.add_trace(
        go.Scatter(
            x=[u[1] for u in units],
            y=[u[0] for u in units],
            mode="markers",
            marker={
                "size": 11,
                "color": [float(insp.edited.scores[r]) for r in rows if r is not None],
                "colorscale": "Viridis",
                "colorbar": {"title": {"text": "score"}, "x": 1.02},
                "line": {"width": 0.5, "color": "black"},
            },
            text=[insp.mask.unit_name(*u) for u in units],
            hovertemplate="%{text}<br>layer %{y}, index %{x}<extra>mask</extra>",
            name=f"{insp.edited.method} (k={insp.edited.k})",
        )
    )
    if insp.other is not None:
        others = sorted(insp.other.unit_set())
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
                name=f"other: {insp.other.method}"
                + (f" on {insp.other.task}" if insp.other.task else "")
                + f" (k={insp.other.k})",
            )
        )
    if insp.selected is not None:
        layer, index = insp.selected
        fig.add_trace(
            go.Scatter(
                x=[index],
                y=[layer],
                mode="markers",
                marker={"size": 20, "symbol": "star", "color": COLORS[5]},
                hoverinfo="skip",
                name=f"selected: {insp.mask.unit_name(layer, index)}",
            )
        )
    unit = "head" if insp.mask.unit == "head" else f"{insp.mask.site} unit"
    fig.update_xaxes(title_text=f"{unit} index within the layer")
    fig.update_yaxes(title_text="layer", range=[-0.5, insp.mask.n_layers - 0.5])
    fig.update_layout(
        legend={"orientation": "h", "y": 1.0, "x": 1, "xanchor": "right", "yanchor": "bottom"}
    )
    task = f", task {insp.mask.task}" if insp.mask.task else ""
    return _finish(
        fig,
        f"{insp.edited.method} at {insp.mask.site} ({insp.mask.model_name}{task}): "
        f"{len(units)} units shown",
    )


def live_widget(insp: Inspector) -> Any:
    """A live view for Jupyter: click a unit on the map for its details; filter by layer;
    add or remove units; type a prompt for steered and unsteered generations."""
    import ipywidgets as widgets  # type: ignore[import-untyped]

    fig = go.FigureWidget(unit_map(insp))
    details = widgets.HTML(value="<i>click a unit on the map</i>")
    layers = widgets.IntRangeSlider(
        value=insp.layers or (0, insp.mask.n_layers - 1),
        min=0,
        max=insp.mask.n_layers - 1,
        description="layers",
        continuous_update=False,
    )
    prompt = widgets.Text(placeholder="a prompt to generate from", layout={"width": "60%"})
    run = widgets.Button(description="generate")
    remove = widgets.Button(description="remove selected")
    texts = widgets.HTML()

    def redraw() -> None:
        new = unit_map(insp)
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
        details.value = unit_html(insp.select(layer, index))
        redraw()

    def on_layers(change: dict[str, Any]) -> None:
        insp.filter(tuple(change["new"]))
        redraw()

    def on_remove(_: Any) -> None:
        if insp.selected is not None:
            insp.remove(*insp.selected)
            redraw()

    def on_run(_: Any) -> None:
        if prompt.value.strip():
            out = insp.generations(prompt.value)
            texts.value = generations_html(prompt.value, out, insp.strength)

    fig.data[0].on_click(on_click)
    layers.observe(on_layers, names="value")
    remove.on_click(on_remove)
    run.on_click(on_run)
    controls = widgets.HBox([layers, remove])
    return widgets.VBox([controls, fig, details, widgets.HBox([prompt, run]), texts])


def write_report(
    insp: Inspector,
    path: str | Path,
    *,
    units: int = 5,
    effect: bool = True,
    prompts: Sequence[str] = (),
) -> Path:
    """Write a self-contained HTML report: the map, the top `units` units' details (with
    their steering effect on the dev items when `effect`), the comparison with `other`, and
    steered against unsteered generations for `prompts`."""
    path = Path(path)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>steerlens inspection: {html.escape(insp.edited.method)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style>",
        "</head><body>",
        f"<h1>Mask inspection: {html.escape(repr(insp.edited).splitlines()[0])}</h1>",
        unit_map(insp).to_html(include_plotlyjs=True, full_html=False),
        f"<h2>Top {min(units, insp.edited.k)} units</h2>",
    ]
    for layer, index in insp.units()[:units]:
        parts.append(unit_html(insp.unit_info(layer, index, effect=effect and bool(insp.dev))))
    if insp.other is not None:
        parts.append(compare_html(insp.compare()))
    for prompt in prompts:
        parts.append(generations_html(prompt, insp.generations(prompt), insp.strength))
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return path


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


__all__ = [
    "compare_html",
    "generations_html",
    "live_widget",
    "unit_html",
    "unit_map",
    "write_report",
]
