"""AUSteer's "activation-difference localisation" ablation (AUSteer Table 3, SADI-style ranking).

The same atomic units, adaptive strengths and every-position scaling as `austeer_mask`, but the
units are ranked by the magnitude of their mean paired difference instead of AUSteer's sign
consistency `s`. Comparing the two isolates what AUSteer's localisation adds: the paper reports
83.12 against 83.96 for AUSteer-FFN (Gemma2-9B-it, mean over five tasks).
"""

from __future__ import annotations

from .collect import Differences
from .mask import Mask
from .select import austeer_scores, rank_units


def mean_difference_mask(diffs: Differences, k: int) -> Mask:
    """The `k` atomic units with the largest `|mean difference|`, steered as AUSteer steers.

    Each unit's weight is AUSteer's signed consistency `beta_i`, so `steer(..., strength=alpha)`
    applies `x_i <- x_i * (1 + alpha * beta_i)` at every position, exactly as `austeer_mask`.
    """
    _, beta = austeer_scores(diffs)
    layers, indices, values = rank_units(diffs.mean.flatten(1).abs(), k)
    return Mask.from_differences(
        diffs,
        unit="dim",
        method="mean-difference",
        layers=layers,
        indices=indices,
        scores=values.float(),
        weights=beta[layers, indices].float(),
        operation="scale",
        positions="all",
        info={"k": k, "ranking": "|mean difference|"},
    )


__all__ = ["mean_difference_mask"]
