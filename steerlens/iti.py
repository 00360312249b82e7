"""ITI (Li et al., 2023, Inference-Time Intervention) as its authors' code runs it.

The released code (github likenneth/honest_llama: `utils.py` `train_probes`, `get_top_heads`,
`get_com_directions`; `validation/validate_2fold.py`; `interveners.py`) does, per attention head:

1. Features: the head's output (`o_proj`'s input, TransformerLens `hook_z`) at the last token of
   each text, prompt + correct answer labelled 1, prompt + wrong answer labelled 0.
2. A logistic-regression probe per head (sklearn `LogisticRegression(max_iter=1000)`: L2 penalty,
   C = 1, unpenalised intercept) on a train part of the texts, scored by its accuracy on a
   held-out part (`val_ratio=0.2`, split by question, so all answers of a question stay on one
   side). The K heads of highest held-out accuracy are steered (K = 48, alpha = 15).
3. Direction: the mass-mean shift (mean of the correct texts' activations minus mean of the
   wrong ones, over the train and held-out parts), normalised to unit length, times the standard
   deviation of the activations projected on it (`torch.std`, Bessel-corrected, in the current
   `validate_2fold.py`; the older `get_interventions_dict` used `np.std`).
4. `b[0, -1] += alpha * std * unit_direction`: at the last position of every forward pass.

Here the texts are the pairs of a `Differences` collected with `keep_sides=True`; the split is by
pair (both texts of a pair on the same side, as honest_llama keeps a question's answers together):
`torch.randperm(n_pairs, generator=torch.Generator().manual_seed(seed))`, the first
`int(n_pairs * (1 - val_fraction))` pairs train the probes, the rest score them. The direction and
its std use every text (honest_llama takes the std over a separate, unlabelled set of prompts;
here the same texts). Ties in held-out accuracy go to the lower layer, then the lower head
(honest_llama's reversed `np.argsort` orders ties arbitrarily).

The probes are fitted here by Newton's method in float64 on exactly sklearn's objective,
`0.5 * |w|^2 + C * sum_i logloss_i` (intercept unpenalised), all heads at once: it reaches that
objective's unique minimum, needs no new dependency, and batches the ~1000 probes of a 7B model
instead of fitting them one by one. sklearn's lbfgs stops near that minimum (`tol=1e-4`), so a
held-out text within its tolerance of the boundary can be classed differently there; the unit
tests check that sklearn run to a tight tolerance gives these probes and accuracies.
"""

from __future__ import annotations

import math
import warnings

import torch
from jaxtyping import Float
from torch import Tensor

from .differences import Differences
from .mask import Mask
from .select import rank_units

ITI_HEADS = 48
"""ITI's K: heads steered in a 32-layer, 32-head model (`validate_2fold.py --num_heads`)."""
ITI_ALPHA = 15.0
"""ITI's alpha (`validate_2fold.py --alpha`)."""
ITI_MODEL_HEADS = 1024
"""Heads of the models ITI's defaults were set for (LLaMA-7B: 32 layers x 32 heads)."""
VAL_FRACTION = 0.2
"""Share of the pairs held out to score the probes (`validate_2fold.py --val_ratio`)."""


def scaled_k(k: int, n_heads: int, reference: int = ITI_MODEL_HEADS) -> int:
    """`k` heads of a `reference`-head model, scaled to a model of `n_heads` heads (rounded half
    up, at least 1).

    >>> scaled_k(48, 1024), scaled_k(48, 270), scaled_k(48, 8)
    (48, 13, 1)
    """
    return max(1, math.floor(k * n_heads / reference + 0.5))


def iti_default_k(n_heads: int) -> int:
    """ITI's K (48 of 1024 heads) for a model with `n_heads` heads in all (layers x heads)."""
    return scaled_k(ITI_HEADS, n_heads)


def split_pairs(
    n_pairs: int, *, val_fraction: float = VAL_FRACTION, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """`(train, held_out)` pair indices: a seeded permutation, the first
    `int(n_pairs * (1 - val_fraction))` pairs for training."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    n_train = int(n_pairs * (1 - val_fraction))
    if n_train < 1 or n_train >= n_pairs:
        raise ValueError(
            f"ITI's probes need pairs to train on and pairs held out: {n_pairs} pairs with "
            f"val_fraction={val_fraction} leave {n_train} for training and "
            f"{n_pairs - n_train} held out; collect more pairs"
        )
    order = torch.randperm(n_pairs, generator=torch.Generator().manual_seed(seed))
    return order[:n_train], order[n_train:]


def fit_probes(
    x: Float[Tensor, "probe text feature"],
    y: Float[Tensor, " text"],
    *,
    c: float = 1.0,
    max_iter: int = 100,
) -> tuple[Float[Tensor, "probe feature"], Float[Tensor, " probe"]]:
    """Weights and intercepts of independent L2 logistic regressions (labels `y` in {0, 1}), one
    per probe, minimising sklearn's `0.5 * |w|^2 + c * sum(logloss)` (intercept unpenalised).

    Damped Newton steps in float64 (a backtracking line search until the Newton decrement is
    small, then full steps), and three full steps more once every probe is there: quadratic
    convergence takes the parameters to float64 precision.
    """
    n_probes, n_texts, n_features = x.shape
    xa = torch.cat([x.double(), torch.ones(n_probes, n_texts, 1, dtype=torch.float64)], -1)
    t = y.double().expand(n_probes, n_texts)
    penalty = torch.ones(n_features + 1, dtype=torch.float64)
    penalty[-1] = 0.0  # sklearn does not penalise the intercept
    curvature = torch.diag(penalty)
    curvature[-1, -1] = 1e-12  # the step only: a guard should every text's p saturate
    theta = torch.zeros(n_probes, n_features + 1, dtype=torch.float64)

    def objective(th: Tensor) -> Tensor:
        z = (xa @ th.unsqueeze(-1)).squeeze(-1)
        loss = torch.nn.functional.softplus(z) - t * z
        return 0.5 * (penalty * th * th).sum(-1) + c * loss.sum(-1)

    value, polish = objective(theta), 0
    for _ in range(max_iter):
        p = torch.sigmoid((xa @ theta.unsqueeze(-1)).squeeze(-1))
        grad = c * (xa.transpose(1, 2) @ (p - t).unsqueeze(-1)).squeeze(-1) + penalty * theta
        hess = c * (xa * (p * (1 - p)).unsqueeze(-1)).transpose(1, 2) @ xa + curvature
        step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
        decrement = (grad * step).sum(-1)  # twice the predicted decrease, >= 0
        near = decrement <= 1e-8 * (1 + value.abs())
        size = torch.ones(n_probes, dtype=torch.float64)
        accepted = near.clone()
        for _ in range(40):  # backtracking (Armijo) line search for probes still far away
            if bool(accepted.all()):
                break
            trial = objective(theta - size.unsqueeze(-1) * step)
            accepted |= trial <= value - 1e-4 * size * decrement
            size = torch.where(accepted, size, size / 2)
        theta = theta - torch.where(accepted, size, 0.0).unsqueeze(-1) * step
        value = objective(theta)
        polish += bool(near.all())
        if polish == 3:
            break
    return theta[:, :-1], theta[:, -1]


def _sides(diffs: Differences) -> tuple[Tensor, Tensor]:
    if diffs.site != "head":
        raise ValueError(f"ITI works on attention heads; collect site 'head', not {diffs.site!r}")
    if diffs.positive is None or diffs.negative is None:
        raise ValueError(
            "ITI (iti-released) trains probes on each text's activations, which these "
            "differences lack: collect with collect_differences(..., keep_sides=True)"
        )
    return diffs.positive, diffs.negative


def _per_head(acts: Tensor) -> Tensor:
    """`[text, layer, head, d_head]` -> `[layer * head, text, d_head]`."""
    return acts.flatten(1, 2).transpose(0, 1)


def probe_accuracies(
    diffs: Differences, *, val_fraction: float = VAL_FRACTION, seed: int = 0, c: float = 1.0
) -> Float[Tensor, "layer head"]:
    """Held-out accuracy of each head's logistic-regression probe (correct text 1, wrong 0)."""
    pos, neg = _sides(diffs)
    train, held = split_pairs(diffs.n_pairs, val_fraction=val_fraction, seed=seed)
    n_layers, n_heads = pos.shape[1], pos.shape[2]
    width = pos.shape[3] + 1
    # probes per chunk: the design matrix and the Hessians stay near 2^23 float64 values each
    chunk = max(1, 2**23 // (width * max(2 * len(train), width)))
    x_train = _per_head(torch.cat([pos[train], neg[train]]))
    x_held = _per_head(torch.cat([pos[held], neg[held]])).double()
    y_train = torch.cat([torch.ones(len(train)), torch.zeros(len(train))])
    y_held = torch.cat([torch.ones(len(held)), torch.zeros(len(held))]).bool()
    acc = torch.empty(n_layers * n_heads, dtype=torch.float64)
    for start in range(0, n_layers * n_heads, chunk):
        rows = slice(start, start + chunk)
        w, b = fit_probes(x_train[rows], y_train, c=c)
        predicted = torch.einsum("ptf,pf->pt", x_held[rows], w) + b.unsqueeze(-1) > 0
        acc[rows] = (predicted == y_held).double().mean(-1)
    return acc.reshape(n_layers, n_heads).float()


def iti_directions(diffs: Differences) -> Float[Tensor, "layer head d_head"]:
    """Each head's `std * unit mass-mean shift` (alpha 1): the unit direction of mean(correct) -
    mean(wrong) over every text, times the Bessel-corrected std of every text's projection on it.
    A head whose mean shift is zero gets a zero vector."""
    pos, neg = _sides(diffs)
    pos64, neg64 = pos.double(), neg.double()
    shift = pos64.mean(0) - neg64.mean(0)
    norm = shift.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, shift / norm.clamp_min(1e-300), torch.zeros_like(shift))
    projections = (torch.cat([pos64, neg64]) * unit).sum(-1)  # [text, layer, head]
    std = projections.std(0, correction=1)
    return (std.unsqueeze(-1) * unit).float()


def iti_released_mask(
    diffs: Differences,
    k: int,
    *,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    c: float = 1.0,
) -> Mask:
    """ITI as released: the `k` heads whose probes score best on held-out pairs, each shifted by
    `strength * std * unit mass-mean direction` at the last position of every forward pass
    (`positions="each_last"`), so `strength` is ITI's alpha (15 in the paper).

    Needs differences at site "head" collected with `keep_sides=True`. Scores are the held-out
    accuracies; `iti_default_k(n_heads)` is ITI's K scaled to the model.
    """
    _sides(diffs)  # the clear errors first
    total = diffs.n_layers * diffs.unit_shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= total:
        raise ValueError(f"k must be an int between 1 and {total} (the model's heads), got {k!r}")
    acc = probe_accuracies(diffs, val_fraction=val_fraction, seed=seed, c=c)
    layers, indices, scores = rank_units(acc, k)
    vectors = iti_directions(diffs)[layers, indices]
    flat = vectors.norm(dim=-1) == 0
    if bool(flat.any()):
        warnings.warn(
            f"{int(flat.sum())} of the {k} ITI heads have no mean shift between correct and wrong "
            "texts; they are not steered",
            stacklevel=2,
        )
    return Mask.from_differences(
        diffs,
        info={"k": k, "val_fraction": val_fraction, "seed": seed, "C": c},
        unit="head",
        method="iti-released",
        layers=layers,
        indices=indices,
        scores=scores,
        weights=torch.ones(k),
        operation="add",
        positions="each_last",
        vectors=vectors,
    )


__all__ = [
    "ITI_ALPHA",
    "ITI_HEADS",
    "ITI_MODEL_HEADS",
    "VAL_FRACTION",
    "fit_probes",
    "iti_default_k",
    "iti_directions",
    "iti_released_mask",
    "probe_accuracies",
    "scaled_k",
    "split_pairs",
]
