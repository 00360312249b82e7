"""Figures: plotly builders that turn steerlens objects into the SADI and AUSteer paper figures.

Every builder takes steerlens objects (`Differences`, `Mask`, `SweepResult`, results rows, or the
records of `steerlens.analysis`), never the model, and returns a `plotly.graph_objects.Figure`.
`save_figure` writes it as interactive HTML and, where kaleido finds a Chrome or Chromium, as PNG.

| builder                 | paper figure                                   | input                        |
|-------------------------|------------------------------------------------|------------------------------|
| `head_heatmap`          | SADI: signed mean difference per head          | head `Differences`, `Mask`   |
| `layer_distribution`    | SADI: where the top-100 units sit              | label -> `Mask`              |
| `overlap_matrix`        | SADI / AUSteer Fig. 12: cross-task overlap     | label -> `Mask` (per family) |
| `sweep_heatmap`         | AUSteer Fig. 10: accuracy over K x strength    | `SweepResult`                |
| `pairs_curve`           | SADI Fig. 4 / AUSteer Fig. 13: data efficiency | `pairs_curve_data` records   |
| `au_score_map`          | AUSteer Fig. 11: score `s` over layer x dim    | label -> `Differences`       |
| `unit_vs_block`         | AUSteer Fig. 2: single dims versus the head    | `UnitScan`                   |
| `unit_writes`           | AUSteer Fig. 4: what a unit writes             | `UnitWrites`                 |
| `method_comparison`     | the main job's results table                   | `run_job` rows or CSV rows   |
| `steer_less_figure`     | AUSteer Table 12: accuracy versus k            | `ablations` rows             |
| `promotion_figure`      | AUSteer Table 13: promotion vs suppression     | `ablations` arms             |
| `adaptive_figure`       | AUSteer Table 3: adaptive vs fixed strength    | `ablations` arms             |
| `ablation_pairs_figure` | SADI Fig. 4 / AUSteer Fig. 13, tuned on dev    | `ablations` rows             |

Modules: `units` (where units sit), `accuracy` (accuracy figures), `ablation` (the ablations'
figures), `writes` (what units write), `export` (saving and showing), `_style` (the palette and
template every builder shares).

The data behind figures 5, 7 and 8 needs the model: `steerlens.analysis` (`pairs_curve_data`,
`single_unit_scan`, `unit_writes_data`, `prompt_effects`) computes it. This package never imports
it; the old names `figures.pairs_curve_data` etc. still work for one release with a
`DeprecationWarning`. `show` displays a figure in a notebook as a PNG where static export works,
else as interactive HTML.

Colours: the Okabe-Ito palette for categories, RdBu (centred on zero) for signed values, Viridis
for scores and accuracies; all three stay distinguishable under common colour-vision deficiencies.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from ._style import COLORS
from .ablation import ablation_pairs_figure, adaptive_figure, promotion_figure, steer_less_figure
from .accuracy import pairs_curve, pairs_summary, sweep_heatmap, unit_vs_block
from .comparison import method_comparison
from .export import png_export, save_figure, show, static_export_problem
from .units import (
    au_score_map,
    head_heatmap,
    layer_counts,
    layer_distribution,
    overlap_counts,
    overlap_matrix,
)
from .writes import effects_table, unit_writes

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
    # the ablations' figures
    "steer_less_figure",
    "promotion_figure",
    "adaptive_figure",
    "ablation_pairs_figure",
    # numbers behind figures, text, saving, display
    "COLORS",
    "effects_table",
    "layer_counts",
    "overlap_counts",
    "pairs_summary",
    "png_export",
    "save_figure",
    "show",
    "static_export_problem",
]

_MOVED = frozenset(
    {
        "pairs_curve_data",
        "single_unit_scan",
        "unit_writes_data",
        "prompt_effects",
        "UnitScan",
        "UnitWrites",
    }
)
"""Names that moved to `steerlens.analysis` (they need the model); kept here for one release."""


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"steerlens.figures.{name} moved to steerlens.analysis; import it from there "
            "(the alias in steerlens.figures goes away in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("..analysis", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
