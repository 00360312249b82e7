"""What single units write: their logit-lens tokens and steered next tokens (AUSteer Fig. 4), and
a plain-text table of per-prompt effects.

| builder         | paper figure                       | input                                  |
|-----------------|------------------------------------|----------------------------------------|
| `unit_writes`   | AUSteer Fig. 4: what a unit writes | `steerlens.analysis.UnitWrites`        |
| `effects_table` | (text) a mask's per-prompt effects | `steerlens.analysis.prompt_effects`    |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._style import COLORS, GREY, HEIGHT, _finish, _pct

if TYPE_CHECKING:
    from ..analysis import UnitWrites

__all__ = ["effects_table", "unit_writes"]


# ---- 8. what a unit writes -------------------------------------------------------------------


def unit_writes(
    writes: UnitWrites | Sequence[UnitWrites], *, title: str | None = None
) -> go.Figure:
    """For each unit (one row): the tokens its write direction promotes through `W_U` (left), and
    the top next tokens when it alone is steered strongly on one prompt, with their unsteered
    probabilities (right)."""
    rows = list(writes) if isinstance(writes, Sequence) else [writes]
    if not rows:
        raise ValueError("unit_writes needs at least one UnitWrites")
    titles = []
    for w in rows:
        titles += [
            f"{w.label}: write direction through W_U",
            f"{w.label}: next token when scaled by 1+{w.strength:g}",
        ]
    fig = make_subplots(
        rows=len(rows),
        cols=2,
        subplot_titles=titles,
        horizontal_spacing=0.2,
        vertical_spacing=0.3 / len(rows),
    )
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
        fig.update_yaxes(
            autorange="reversed", type="category", title_text="promoted token", row=r, col=1
        )
        fig.update_yaxes(
            autorange="reversed",
            type="category",
            title_text="top next token (steered)",
            row=r,
            col=2,
        )
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


# ---- per-prompt effects ----------------------------------------------------------------------


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
