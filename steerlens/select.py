"""Selection: rank a model's units from paired differences and keep the top k as a `Mask`.

- `sadi_mask` (SADI, ICLR 2025): score = signed mean difference (a head's score is the mean over
  its `d_head` entries); keep the global top-K across layers, most positive first as in the
  official code (or by absolute value). Steers the input's own activations at the last prompt
  token: `a <- a + delta * (m * a)`.
- `austeer_mask` (AUSteer, ICLR 2026): every scalar activation is an atomic unit; score
  `s = max(r_pos, r_neg)` is the sign consistency of the differences; keep the global top-k; each
  unit's weight is `+s` or `-s` (the majority sign, ties positive), so `gamma_i = alpha * weight`
  and `x_i <- x_i * (1 + gamma_i)` at every position.

Ties are broken deterministically: lower layer first, then lower index (a stable sort over the
flattened `[layer, unit]` order, as the official AUSteer code's Python `sorted`).
"""

from __future__ import annotations

import numbers

import torch
from jaxtyping import Float
from torch import Tensor

from ._types import SadiMode
from .collect import Differences
from .mask import Mask


def rank_units(scores: Float[Tensor, "layer unit"], k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k `(layers, indices, values)` of a score map, best first, ties to the lower position.

    >>> rank_units(torch.tensor([[1.0, 3.0], [3.0, 2.0]]), 3)[0].tolist()
    [0, 1, 1]
    """
    n_units = scores.shape[1]
    _check_k(k, scores.numel())
    flat = scores.flatten()
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    return order // n_units, order % n_units, flat[order]


def _check_k(k: int, available: int) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= available:
        raise ValueError(f"k must be between 1 and {available} (the units available), got {k}")


def sadi_scores(diffs: Differences, *, by: str = "signed") -> Float[Tensor, "layer unit"]:
    """SADI's per-unit score: mean difference (heads averaged over `d_head`), signed or absolute."""
    if by not in ("signed", "abs"):
        raise ValueError(f"by must be 'signed' (official SADI) or 'abs', got {by!r}")
    mean = diffs.mean.mean(-1) if diffs.site == "head" else diffs.mean
    return mean.abs() if by == "abs" else mean


def sadi_mask(
    diffs: Differences, k: int, *, by: str = "signed", mode: SadiMode = "formula"
) -> Mask:
    """SADI: the `k` units with the largest mean difference, global across layers.

    Args:
        diffs: paired differences from `collect_differences` (site "head" gives SADI-HEAD with whole
            heads as units, "neuron" SADI-NEURON, "mlp_out" SADI-HIDDEN; "gate" ranks neurons on
            the activation function's output, as the released code does).
        k: number of units (heads, neurons or dims).
        by: "signed" keeps the most positive (the official code); "abs" ranks by |mean|.
        mode: "formula" scales the live activation, `a + delta * (m * a)` (the paper's formula,
            steerlens' default); "released" clamps as the authors' code does (operation "clamp":
            the site at the last prompt token is overwritten in every layer with its clean
            value, the selected units with `clean + delta * clean`).
    """
    if mode not in ("formula", "released"):
        raise ValueError(f"mode must be 'formula' or 'released', got {mode!r}")
    layers, indices, values = rank_units(sadi_scores(diffs, by=by), k)
    return Mask.from_differences(
        diffs,
        info={"k": k, "by": by, "mode": mode},
        unit="head" if diffs.site == "head" else "dim",
        method="sadi",
        layers=layers,
        indices=indices,
        scores=values,
        weights=torch.ones(k),
        operation="clamp" if mode == "released" else "scale",
        positions="last",
    )


def austeer_scores(diffs: Differences) -> tuple[Tensor, Tensor]:
    """AUSteer's `(s, beta)` per atomic unit, both `[layer, unit]` (heads flattened to dims).

    `s = max(r_pos, r_neg)`; `beta = -s` where negative differences are the majority, else `+s`.
    """
    r_pos = diffs.r_pos.flatten(1)
    r_neg = diffs.r_neg.flatten(1)
    s = torch.maximum(r_pos, r_neg)
    beta = torch.where(r_pos < r_neg, -s, s)
    return s, beta


def austeer_mask(diffs: Differences, k: int) -> Mask:
    """AUSteer: the `k` atomic units with the most sign-consistent differences, global.

    Weights are the signed consistencies, so `steer(..., strength=alpha)` applies
    `x_i <- x_i * (1 + alpha * beta_i)` at every position (the paper's adaptive strength).
    """
    s, beta = austeer_scores(diffs)
    layers, indices, values = rank_units(s, k)
    return Mask.from_differences(
        diffs,
        info={"k": k},
        unit="dim",
        method="austeer",
        layers=layers,
        indices=indices,
        scores=values,
        weights=beta[layers, indices].float(),
        operation="scale",
        positions="all",
    )
