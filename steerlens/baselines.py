"""Baselines and ablations the papers compare SADI and AUSteer with, as `Mask`s.

- `caa_mask`: CAA (Rimsky et al., 2024), add the mean residual-stream difference at one layer.
- `iti_mask`: ITI (Li et al., 2023), add each top head's mean difference ("mass mean shift").
  ITI ranks heads by trained probe accuracy; here heads are ranked by how much of their
  difference energy the mean direction carries, `|mean|^2 / mean(|diff|^2)` (1 when every pair
  differs along the same vector), which needs no probe training.
- `fixed_vector_mask`: SADI's "fixed steering" ablation, add `delta * m * mean_difference` on a
  mask's units instead of scaling the input's own activations.
- `random_mask`: the same number of units, placed at random (seeded).
- `suppression_mask`, `fixed_strength`: AUSteer's suppression and fixed-strength ablations.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from ._types import Positions
from .collect import Differences
from .mask import Mask
from .select import austeer_mask, rank_units


def _vectors(diffs: Differences, mask: Mask) -> Tensor:
    mean = diffs.mean if mask.unit == "head" else diffs.mean.flatten(1).unsqueeze(-1)
    return mean[mask.layers, mask.indices].reshape(mask.k, mask.unit_width).float()


def fixed_vector_mask(mask: Mask, diffs: Differences) -> Mask:
    """Same units as `mask`, but steer by adding the mean difference (`a <- a + delta * m * D`)."""
    if (diffs.site, diffs.fingerprint) != (mask.site, mask.fingerprint):
        raise ValueError("fixed_vector_mask needs differences from the mask's site and model")
    return dataclasses.replace(
        mask,
        method="fixed_vector",
        operation="add",
        weights=torch.ones(mask.k),
        vectors=_vectors(diffs, mask),
    )


def random_mask(mask: Mask, *, seed: int = 0) -> Mask:
    """Same site, unit kind, k and weights as `mask`, at units drawn uniformly without replacement."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(mask.n_layers * mask.units_per_layer, generator=gen)[: mask.k]
    return dataclasses.replace(
        mask,
        method="random",
        layers=flat // mask.units_per_layer,
        indices=flat % mask.units_per_layer,
        scores=torch.full((mask.k,), float("nan")),
        info={**mask.info, "seed": seed, "like": mask.method},
    )


def caa_mask(diffs: Differences, layer: int, *, positions: Positions = "all") -> Mask:
    """CAA: add the mean difference of a `d_model` site (usually "resid") at `layer`.

    `positions="all"` adds it at every position (steerlens' default); `positions="from"` only from
    the end of the prompt on (answer and generated tokens), as CAA's released code does.
    """
    if diffs.site not in ("resid", "mlp_out"):
        raise ValueError(
            f"CAA steers the residual stream; collect site 'resid', not {diffs.site!r}"
        )
    if not -diffs.n_layers <= layer < diffs.n_layers:
        raise ValueError(f"layer must be in [0, {diffs.n_layers}), got {layer}")
    layer %= diffs.n_layers
    width = diffs.unit_shape[0]
    vec = diffs.mean[layer].float()
    return Mask.from_differences(
        diffs,
        info={"layer": layer},
        unit="dim",
        method="caa",
        layers=torch.full((width,), layer, dtype=torch.long),
        indices=torch.arange(width),
        scores=vec.abs(),
        weights=torch.ones(width),
        operation="add",
        positions=positions,
        vectors=vec.unsqueeze(-1),
    )


def iti_scores(diffs: Differences) -> Tensor:
    """Per-head share of the difference energy along the mean direction, `[layer, head]`."""
    if diffs.site != "head":
        raise ValueError(f"ITI works on attention heads; collect site 'head', not {diffs.site!r}")
    signal = diffs.mean.pow(2).sum(-1)
    total = diffs.sq_mean.sum(-1).clamp_min(1e-12)
    return signal / total


def iti_mask(diffs: Differences, k: int) -> Mask:
    """ITI: the `k` heads whose differences are most consistent, each shifted by its mean difference."""
    layers, indices, values = rank_units(iti_scores(diffs), k)
    return Mask.from_differences(
        diffs,
        info={"k": k},
        unit="head",
        method="iti",
        layers=layers,
        indices=indices,
        scores=values,
        weights=torch.ones(k),
        operation="add",
        positions="all",
        vectors=diffs.mean[layers, indices].float(),
    )


def suppression_mask(diffs: Differences, n_units: int) -> Mask:
    """The `n_units` least important atomic units (lowest AUSteer score), weight 1 each.

    With `steer(..., strength=factor - 1)` each is scaled by `factor` (< 1 suppresses; AUSteer
    Table 13).
    """
    total = diffs.n_layers * math.prod(diffs.unit_shape)
    full = austeer_mask(diffs, total)
    least_first = torch.arange(total - 1, -1, -1)
    ranked = full.subset(
        least_first,
        method="suppression",
        weights=torch.ones(total),
        info={**full.info, "k": total, "order": "least important first"},
    )
    return ranked.top(n_units)


def fixed_strength(mask: Mask, *, signed: bool = False) -> Mask:
    """The same units with one strength for all: weights 1 (or the sign of the mask's weight,
    zeros counted positive); AUSteer Table 3's "fixed strength" ablation."""
    weights = torch.sign(mask.weights) if signed else torch.ones(mask.k)
    weights = torch.where(weights == 0, torch.ones_like(weights), weights)
    return dataclasses.replace(mask, weights=weights, method=f"{mask.method}-fixed")
