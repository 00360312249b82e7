"""Analyses behind the paper-style figures that need the model: data in, plain records out.

- `pairs_curve_data`: accuracy when masks are built from subsampled contrastive pairs (SADI
  Fig. 4, AUSteer Fig. 13).
- `single_unit_scan`: accuracy when steering each single dimension of one head versus the whole
  head (AUSteer Fig. 2).
- `unit_writes_data`: the tokens one unit promotes, statically (its write direction through the
  unembedding) and when steered strongly on one prompt (AUSteer Fig. 4).
- `prompt_effects`: each prompt's top next token and answer probability, unsteered and steered.

The builders in `steerlens.figures` turn these records into figures without touching the model.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._backend import HookedTransformer
from ._types import Metric
from .collect import Differences
from .evaluate import EncodedItems, EvalResult, encode_items
from .mask import Mask
from .stats import flags_to_str
from .steer import steer
from .sweep import sweep
from .tasks import Example
from .tokens import answer_ids, prompt_ids

__all__ = [
    "UnitScan",
    "UnitWrites",
    "pair_subsets",
    "pairs_curve_data",
    "prompt_effects",
    "show_token",
    "single_unit_scan",
    "unit_writes_data",
    "write_direction",
]

MaskBuilder = Callable[[Differences], Mask]


# ---- accuracy versus number of contrastive pairs --------------------------------------------


def pair_subsets(
    total: int, sizes: Sequence[int], seeds: Sequence[int]
) -> dict[tuple[int, int], list[int] | None]:
    """Which pairs each (size, seed) of a pairs curve keeps: a seeded random subset of `n` of
    the `total` pairs (sorted), or None for all of them (scored once, under the first seed).
    Sizes outside `1..total` are dropped.

    >>> pair_subsets(4, [2, 4, 9], [0, 1])[(4, 0)] is None
    True
    """
    out: dict[tuple[int, int], list[int] | None] = {}
    for n in sorted({int(s) for s in sizes if 0 < s <= total}):
        for seed in seeds if n < total else list(seeds)[:1]:
            out[(n, seed)] = (
                None
                if n == total
                else sorted(random.Random(seed * 100_003 + n).sample(range(total), n))
            )
    return out


def pairs_curve_data(
    model: HookedTransformer,
    diffs: Mapping[str, Differences],
    examples: Sequence[Example] | EncodedItems,
    methods: Mapping[str, tuple[str, MaskBuilder, float]],
    *,
    sizes: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    metric: Metric = "accuracy",
    batch_size: int = 32,
) -> list[dict[str, object]]:
    """Score masks built from random subsets of the pairs, for several sizes and seeds.

    Args:
        diffs: site -> differences collected with `keep_pairs=True`.
        examples: the items to score (usually the test split).
        methods: name -> (site, mask builder taking `Differences`, strength).
        sizes: numbers of pairs to keep; sizes above the number collected are dropped.
        seeds: one random subset per seed; the full set is scored once (every seed would pick it).

    Returns:
        One record per (method, size, seed): `method`, `n_pairs`, `seed`, `accuracy` (a fraction
        under `metric`) and `flags` (its per-item hits, "0101..."), plus one record per method
        with `n_pairs=0` holding the unsteered score.
    """
    items = examples if isinstance(examples, EncodedItems) else encode_items(model, examples)
    records: list[dict[str, object]] = []
    for name, (site, build, strength) in methods.items():
        d = diffs[site]
        total = d.n_pairs
        grid: dict[tuple[int, int], Mask] = {}
        for (n, seed), idx in pair_subsets(total, sizes, seeds).items():
            grid[(n, seed)] = build(d if idx is None else d.subset(idx))
        if not grid:
            raise ValueError(f"No usable pair counts in {list(sizes)} (collected {total} pairs)")
        result = sweep(
            model, items, grid, [strength], metric=metric, batch_size=batch_size, progress=False
        )
        for (n, seed), cell in zip(result.settings, result.results, strict=True):
            records.append(_pairs_record(name, n, seed, cell, metric))
        records.append(_pairs_record(name, 0, 0, result.baseline, metric))
    return records


def _pairs_record(
    method: str, n: int, seed: int, result: EvalResult, metric: Metric
) -> dict[str, object]:
    flags = result.flags(metric)
    return {
        "method": method,
        "n_pairs": n,
        "seed": seed,
        "accuracy": result.metric(metric),
        "flags": "" if flags is None else flags_to_str(flags),
    }


# ---- single unit versus block -----------------------------------------------------------------


@dataclass
class UnitScan:
    """Accuracy of steering each single dimension of one head, and of the whole head.

    `accuracy[strength][i]` is for dimension `dims[i]`; `block[strength]` for the whole head;
    `delta` and `block_delta` the same cells' paired differences to the unsteered model on the
    same items, `(mean, lo, hi)` (95% bootstrap), empty in scans made before they existed.
    """

    layer: int
    head: int
    dims: list[int]
    strengths: list[float]
    accuracy: dict[float, list[float]]
    block: dict[float, float]
    baseline: float
    references: dict[str, float] = field(default_factory=dict)
    metric: str = "accuracy"
    n_items: int = 0
    task: str | None = None
    delta: dict[float, list[tuple[float, float, float]]] = field(default_factory=dict)
    block_delta: dict[float, tuple[float, float, float]] = field(default_factory=dict)


def _single_dims(
    head_mask: Mask, layer: int, head: int, dims: Sequence[int]
) -> dict[Hashable, Mask]:
    d_head = head_mask.unit_shape[1]
    out: dict[Hashable, Mask] = {}
    for d in dims:
        out[d] = dataclasses.replace(
            head_mask,
            unit="dim",
            method="single-dim",
            layers=torch.tensor([layer]),
            indices=torch.tensor([head * d_head + d]),
            scores=torch.tensor([float("nan")]),
            weights=torch.ones(1),
            vectors=None,
            info={"layer": layer, "head": head, "dim": d},
        )
    return out


def single_unit_scan(
    model: HookedTransformer,
    head_mask: Mask,
    examples: Sequence[Example] | EncodedItems,
    strengths: Sequence[float],
    *,
    rank: int = 0,
    step: int = 4,
    references: Mapping[str, float] | None = None,
    metric: Metric = "accuracy",
    batch_size: int = 32,
) -> UnitScan:
    """Steer every `step`-th dimension of one head alone, and the whole head, at each strength.

    Args:
        head_mask: a head mask ("scale", unit "head", e.g. `sadi_mask` at site "head"); its unit
            at position `rank` (0 = best) is scanned, with the mask's positions.
        strengths: multiplicative strengths (`a <- a + strength * a` on the steered units).
        references: extra horizontal lines, label -> score (e.g. the tuned SADI mask's score).
    """
    if head_mask.unit != "head" or head_mask.operation != "scale":
        raise ValueError(
            "single_unit_scan needs a 'scale' head mask (e.g. sadi_mask at site 'head')"
        )
    layer, head = int(head_mask.layers[rank]), int(head_mask.indices[rank])
    dims = list(range(0, head_mask.unit_shape[1], step))
    grid = _single_dims(head_mask, layer, head, dims)
    block = dataclasses.replace(head_mask.subset(slice(rank, rank + 1)), info={"k": 1})
    grid["block"] = block
    result = sweep(
        model, examples, grid, list(strengths), metric=metric, batch_size=batch_size, progress=False
    )
    scores = result.accuracy if metric == "accuracy" else result.restricted
    floats = [float(s) for s in strengths]
    n = len(floats)
    deltas = [r.delta(result.baseline, metric) for r in result.results]  # row-major: cell, strength
    return UnitScan(
        layer=layer,
        head=head,
        dims=dims,
        strengths=floats,
        accuracy={s: [float(scores[i, j]) for i in range(len(dims))] for j, s in enumerate(floats)},
        block={s: float(scores[len(dims), j]) for j, s in enumerate(floats)},
        baseline=result.baseline.metric(metric),
        references=dict(references or {}),
        metric=metric,
        n_items=result.baseline.n,
        task=head_mask.task,
        delta={s: [deltas[i * n + j] for i in range(len(dims))] for j, s in enumerate(floats)},
        block_delta={s: deltas[len(dims) * n + j] for j, s in enumerate(floats)},
    )


# ---- what a unit writes ----------------------------------------------------------------------


@dataclass
class UnitWrites:
    """The tokens one unit promotes: statically, and when steered strongly on one prompt.

    `static_*`: the unit's write direction (times the final norm's weight) through `W_U`, the top
    tokens and their logit change per unit of activation. `steered_*` / `clean_*`: the top next
    tokens after `prompt` when the unit is scaled by `1 + strength`, and the same tokens'
    probabilities without steering.
    """

    label: str
    site: str
    layer: int
    index: int
    static_tokens: list[str]
    static_logits: list[float]
    prompt: str
    strength: float
    steered_tokens: list[str]
    steered_probs: list[float]
    clean_probs: list[float]
    clean_top: list[str] = field(default_factory=list)


def show_token(text: str) -> str:
    """A token made visible: leading/trailing spaces as '␣', newlines as '\\n'."""
    return text.replace(" ", "␣").replace("\n", "\\n") or "∅"


def write_direction(model: HookedTransformer, site: str, layer: int, index: int) -> Tensor:
    """The `d_model` vector one unit adds to the residual stream per unit of its activation."""
    if site == "head":
        d_head = model.cfg.d_head
        return model.blocks[layer].attn.W_O[index // d_head, index % d_head].detach()
    if site == "neuron":
        return model.blocks[layer].mlp.W_out[index].detach()
    if site in ("mlp_out", "resid"):
        out = torch.zeros(model.cfg.d_model, device=model.W_U.device)
        out[index] = 1.0
        return out
    raise ValueError(f"Unknown site {site!r}")


def _token_strings(model: HookedTransformer, ids: Sequence[int]) -> list[str]:
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ValueError("the model has no tokenizer")
    return [show_token(str(tokenizer.decode([int(i)]))) for i in ids]


def unit_writes_data(
    model: HookedTransformer,
    mask: Mask,
    prompt: str,
    *,
    rank: int = 0,
    strength: float = 100.0,
    top: int = 8,
) -> UnitWrites:
    """What the unit at position `rank` of a dim `mask` writes, statically and when steered.

    Static: the write direction times the final norm's weight, through `W_U` (a logit lens that
    ignores the norm's scale). Steered: the unit alone scaled by `1 + strength` at every position
    of `prompt`; the top next tokens are read after the prompt.
    """
    if mask.unit != "dim":
        raise ValueError("unit_writes_data needs a mask of single dimensions (unit 'dim')")
    layer, index = int(mask.layers[rank]), int(mask.indices[rank])
    with torch.no_grad():
        direction = write_direction(model, mask.site, layer, index).float()
        norm_w = getattr(model.ln_final, "w", None)
        scaled = direction * norm_w.float() if norm_w is not None else direction
        logits = scaled @ model.W_U.float()
        static = logits.topk(top)
    single = dataclasses.replace(
        mask.subset(slice(rank, rank + 1)),
        method="single-unit",
        weights=torch.ones(1),
        positions="all",
        info={"rank": rank},
    )
    tokens = torch.tensor([prompt_ids(model, prompt)], device=model.cfg.device)
    with torch.inference_mode():
        clean = model(tokens)[0, -1].float().softmax(-1)
        with steer(model, single, strength):
            steered = model(tokens)[0, -1].float().softmax(-1)
    top_ids = steered.topk(top).indices
    return UnitWrites(
        label=mask.label(rank),
        site=mask.site,
        layer=layer,
        index=index,
        static_tokens=_token_strings(model, static.indices.tolist()),
        static_logits=[float(x) for x in static.values],
        prompt=prompt,
        strength=float(strength),
        steered_tokens=_token_strings(model, top_ids.tolist()),
        steered_probs=[float(steered[i]) for i in top_ids],
        clean_probs=[float(clean[i]) for i in top_ids],
        clean_top=_token_strings(model, clean.topk(top).indices.tolist()),
    )


# ---- per-prompt effect of a mask ---------------------------------------------------------------


def prompt_effects(
    model: HookedTransformer, mask: Mask, strength: float, examples: Sequence[Example]
) -> list[dict[str, object]]:
    """Each example's top next token and answer probability, unsteered and steered.

    Returns one record per example: `prompt`, `answer`, `before` / `after` (the argmax next token)
    and `p_before` / `p_after` (the probability of the answer's first token).
    """
    rows: list[dict[str, object]] = []
    with torch.inference_mode():
        for ex in examples:
            tokens = torch.tensor([prompt_ids(model, ex.prompt)], device=model.cfg.device)
            gold = answer_ids(model, ex.answer)[0]
            before = model(tokens)[0, -1].float().softmax(-1)
            with steer(model, mask, strength):
                after = model(tokens)[0, -1].float().softmax(-1)
            rows.append(
                {
                    "prompt": ex.prompt,
                    "answer": show_token(ex.answer),
                    "before": _token_strings(model, [int(before.argmax())])[0],
                    "p_before": float(before[gold]),
                    "after": _token_strings(model, [int(after.argmax())])[0],
                    "p_after": float(after[gold]),
                }
            )
    return rows
