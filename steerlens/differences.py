"""`Differences`: the statistics of paired last-token differences at one site, per layer and unit.

`collect_differences` builds them; selection (`sadi_mask`, `austeer_mask`, ...) reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass(frozen=True)
class Differences:
    """Statistics of paired last-token differences `a(prompt+answer) - a(prompt+wrong)` at a site.

    Shapes use `unit` for the site's per-token activation shape: `[n_heads, d_head]` for heads,
    `[d_mlp]` for neurons, `[d_model]` for `mlp_out` and `resid`.

    Attributes:
        mean: signed mean difference over pairs (SADI's D-bar), `[layer, *unit]`.
        n_pos / n_neg: number of pairs whose difference is > 0 / < 0 (AUSteer's counts).
        sq_mean: mean squared difference (spread of the differences).
        pairs: every pair's difference `[pair, layer, *unit]`, only with `keep_pairs=True`.
        n_identical: pairs whose two texts were identical token sequences (difference 0).
        n_same_last: pairs whose two texts end in the same token (identical ones included).
        pair_flags: per pair, (identical, same last token), only with `keep_pairs=True`.
        positive / negative: every pair's last-token activation of its correct / wrong text
            `[pair, layer, *unit]`, only with `keep_sides=True` (ITI's probes train on them).
        pair_format: how the pair's texts were written (`collect_differences(pair_format=)`).

    Frozen: derive a changed copy with `dataclasses.replace`.
    """

    site: str
    model_name: str
    fingerprint: str
    n_pairs: int
    mean: Float[Tensor, " layer *unit"]
    n_pos: Int[Tensor, " layer *unit"]
    n_neg: Int[Tensor, " layer *unit"]
    sq_mean: Float[Tensor, " layer *unit"]
    pairs: Float[Tensor, "pair layer *unit"] | None = None
    task: str | None = None
    n_identical: int = 0
    n_same_last: int = 0
    pair_flags: Bool[Tensor, "pair 2"] | None = None
    pair_format: str = "template"
    positive: Float[Tensor, "pair layer *unit"] | None = None
    negative: Float[Tensor, "pair layer *unit"] | None = None

    @property
    def n_layers(self) -> int:
        return int(self.mean.shape[0])

    @property
    def unit_shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape[1:])

    @property
    def r_pos(self) -> Float[Tensor, " layer *unit"]:
        """Fraction of pairs with a positive difference."""
        return self.n_pos.float() / self.n_pairs

    @property
    def r_neg(self) -> Float[Tensor, " layer *unit"]:
        """Fraction of pairs with a negative difference."""
        return self.n_neg.float() / self.n_pairs

    def subset(self, indices: Sequence[int] | Tensor) -> Differences:
        """Statistics of a subset of the pairs (needs `keep_pairs=True` or `keep_sides=True` at
        collection); the subset keeps what was kept (differences, sides, flags) for its pairs."""
        sides = None
        if self.positive is not None and self.negative is not None:
            sides = (self.positive, self.negative)
        if self.pairs is None and sides is None:
            raise ValueError("subset() needs per-pair differences: collect with keep_pairs=True")
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.numel() == 0:
            raise ValueError("subset() needs at least one pair")
        flags = None if self.pair_flags is None else self.pair_flags[idx]
        sides = None if sides is None else (sides[0][idx], sides[1][idx])
        if self.pairs is not None:
            values = self.pairs[idx]
        else:
            assert sides is not None
            values = sides[0] - sides[1]  # as collection computes each pair's difference
        return reduce_pairs(
            values, self, keep_pairs=self.pairs is not None, pair_flags=flags, sides=sides
        )

    def __repr__(self) -> str:
        return (
            f"Differences(site={self.site!r}, model={self.model_name!r}, pairs={self.n_pairs}, "
            f"shape={tuple(self.mean.shape)}, task={self.task!r})"
        )


def reduce_pairs(
    values: Tensor,
    like: Differences,
    *,
    keep_pairs: bool,
    pair_flags: Bool[Tensor, "pair 2"] | None = None,
    sides: tuple[Tensor, Tensor] | None = None,
) -> Differences:
    """`like` with its statistics recomputed from per-pair `values` `[pair, layer, *unit]`; with
    `pair_flags` (the same pairs' flags), also the flags and the counts they give; with `sides`
    (the same pairs' positive and negative activations), those (else no sides are kept)."""
    flags: dict[str, Any] = {}
    if pair_flags is not None:
        flags = {
            "pair_flags": pair_flags,
            "n_identical": int(pair_flags[:, 0].sum()),
            "n_same_last": int(pair_flags[:, 1].sum()),
        }
    return dataclasses.replace(
        like,
        n_pairs=int(values.shape[0]),
        mean=values.mean(0),
        n_pos=(values > 0).sum(0),
        n_neg=(values < 0).sum(0),
        sq_mean=values.pow(2).mean(0),
        pairs=values if keep_pairs else None,
        positive=None if sides is None else sides[0],
        negative=None if sides is None else sides[1],
        **flags,
    )
