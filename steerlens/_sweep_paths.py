"""How a sweep runs its cells: every cell from scratch, or sharing what the cells share.

- last-token masks: each prompt's prefix (all tokens but the last) runs once into a frozen KV
  cache; each cell then runs one token per prompt (`_sweep_prefix_cached`);
- every-position masks: the residual stream below a cell's first steered layer is the unsteered
  one, so it is computed once and each cell starts from it (`_sweep_from_layer`), unless every
  prompt starts with the same demonstrations: then each cell is evaluated over that prefix,
  which runs once per cell (`_prefix`);
- a prefix every prompt shares (k-shot demonstrations) runs once per sweep for last-token masks;
- on an accelerator several cells share a forward pass, stacked along the batch (`_groups`).

`steerlens.sweep` chooses the path; the numbers equal evaluating every cell from scratch (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from ._backend import HookedTransformer
from ._clamp import reuse_clean_passes
from ._passes import next_logp, repeat_cache
from ._prefix import MIN_SHARED_TOKENS, common_length, shared_prefix
from ._types import Positions
from .evaluate import EncodedItems, EvalResult, evaluate, score_first_tokens
from .mask import Mask
from .steer import packed_steering_hooks, prompt_end, steer
from .tokens import batches, left_pad, pad_id


def run_cells(
    model: HookedTransformer,
    items: EncodedItems,
    cells: list[tuple[Mask, float]],
    batch_size: int,
    progress: bool,
    shared: bool,
    positions: set[Positions],
    settings_per_pass: int | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    # "from" and "each_last" masks steer a single-token-answer item where a "last" mask does
    if (
        shared
        and positions <= {"last", "from", "each_last"}
        and min(len(p) for p in items.prompts) >= 2
    ):
        return _sweep_prefix_cached(model, items, cells, batch_size, progress, settings_per_pass)
    # with demonstrations every prompt shares, evaluating each cell over the shared prefix
    # (`_prefix`) does less work than running whole prompts from a cell's first layer
    if shared and positions == {"all"} and common_length(items.prompts) < MIN_SHARED_TOKENS:
        return _sweep_from_layer(model, items, cells, batch_size, progress, settings_per_pass)
    baseline = evaluate(model, items, batch_size=batch_size, progress=False)
    results = []
    for mask, strength in tqdm(cells, desc="sweep", disable=not progress, leave=False):
        with steer(model, mask, strength):
            results.append(evaluate(model, items, batch_size=batch_size, progress=False))
    return baseline, results


class _Tally:
    """Per-item outcomes of one setting, filled batch by batch."""

    def __init__(self, n: int, texts: bool) -> None:
        self.hit = torch.zeros(n, dtype=torch.bool)
        self.win = torch.zeros(n, dtype=torch.bool)
        self.lp = torch.zeros(n)
        self.paper = torch.zeros(n, dtype=torch.bool) if texts else None

    def add(self, logp: Tensor, items: EncodedItems, idx: list[int]) -> None:
        self.hit[idx], self.lp[idx], self.win[idx], paper = score_first_tokens(
            logp.cpu(), items, idx
        )
        if self.paper is not None and paper is not None:
            self.paper[idx] = paper

    def result(self) -> EvalResult:
        return EvalResult(self.hit, self.win, self.lp, self.paper)


def _run_keeping(
    model: HookedTransformer, layers: Iterable[int], *args: object, **kwargs: object
) -> tuple[Tensor, dict[int, Tensor]]:
    """`model(*args, **kwargs)`, also returning the residual stream entering each of `layers`."""
    kept: dict[int, Tensor] = {}

    def keep(layer: int) -> Callable[[Tensor, object], None]:
        return lambda act, hook: kept.__setitem__(layer, act)

    hooks = [(f"blocks.{layer}.hook_resid_pre", keep(layer)) for layer in layers]
    with model.hooks(fwd_hooks=list(hooks)):
        out = model(*args, **kwargs)
    return out, kept


def _bookkeeping(
    items: EncodedItems, cells: list[tuple[Mask, float]], batch_size: int
) -> tuple[list[int], _Tally, list[_Tally], list[int], list[range]]:
    """What both fast paths track: items longest first, the unsteered and per-cell tallies, each
    cell's first steered layer (below it a cell equals the unsteered model), and the batches."""
    n = len(items.prompts)
    order = sorted(range(n), key=lambda i: -len(items.prompts[i]))
    base, tallies = _Tally(n, items.has_texts), [_Tally(n, items.has_texts) for _ in cells]
    starts = [int(m.layers.min()) for m, _ in cells]
    return order, base, tallies, starts, batches(n, batch_size)


def _sweep_prefix_cached(
    model: HookedTransformer,
    items: EncodedItems,
    cells: list[tuple[Mask, float]],
    batch_size: int,
    progress: bool,
    settings_per_pass: int | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    cfg = model.cfg
    order, base, tallies, starts, chunks = _bookkeeping(items, cells, batch_size)
    with torch.inference_mode():
        common = shared_prefix(model, items.prompts, keep=2)  # k-shot demonstrations, once
        for chunk in tqdm(chunks, desc="sweep", disable=not progress, leave=False):
            idx = [order[i] for i in chunk]
            heads = [items.prompts[i][:-1] for i in idx]
            if common is None:
                prefix, mask = left_pad(heads, pad_id(model), cfg.device)
                cache = TransformerLensKeyValueCache.init_cache(cfg, cfg.device, len(idx))
            else:
                prefix, mask, cache = common.extend(model, heads, freeze=False)
            last = torch.tensor([[items.prompts[i][-1]] for i in idx], device=cfg.device)
            ones = torch.ones_like(last)
            # a one-token pass reads the whole cache: count it in the pass's size
            groups = _groups(
                starts, settings_per_pass, cfg.device or "cpu", prefix.numel() + len(idx)
            )
            model(prefix, attention_mask=mask, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
            cache.freeze()
            resid, entering = _run_keeping(
                model,
                {starts[g[0]] for g in groups},
                last,
                attention_mask=ones,
                past_kv_cache=cache,
                stop_at_layer=cfg.n_layers,
            )
            base.add(next_logp(model, resid), items, idx)
            full_mask = cache.append_attention_mask(ones)  # prefix + last (frozen: not stored)

            def over_cache(
                copies: int,
                cache: TransformerLensKeyValueCache = cache,
                full_mask: Tensor = full_mask,
            ) -> dict[str, object]:
                return {
                    "past_kv_cache": cache if copies == 1 else repeat_cache(cache, copies),
                    "attention_mask": full_mask.repeat(copies, 1),
                }

            steered = _steered_passes(
                model, cells, groups, starts, entering, over_cache, last_token=True
            )
            with reuse_clean_passes():  # a clamp's clean passes, shared within this batch only
                for c, logp in steered:
                    tallies[c].add(logp, items, idx)
    return base.result(), [t.result() for t in tallies]


def _steered_passes(
    model: HookedTransformer,
    cells: list[tuple[Mask, float]],
    groups: list[list[int]],
    starts: list[int],
    entering: Mapping[int, Tensor],
    pass_kwargs: Callable[[int], dict[str, object]],
    *,
    last_token: bool,
) -> Iterator[tuple[int, Tensor]]:
    """Run each group of cells from the residual stream entering its lowest start layer (cells
    that start later pass through the layers in between unsteered): one cell alone through
    `steer`, several stacked along the batch. `pass_kwargs(copies)` gives the forward's other
    arguments for that many stacked copies of the batch. Yields (cell, next-token log-probs)."""
    cfg = model.cfg
    for group in groups:
        start, n = starts[group[0]], len(group)
        x = entering[start]
        if n == 1:
            (c,) = group
            where = prompt_end(-1) if last_token else nullcontext()
            with steer(model, *cells[c]), where:
                resid = model(x, start_at_layer=start, stop_at_layer=cfg.n_layers, **pass_kwargs(1))
            yield c, next_logp(model, resid)
            continue
        # a last-token pass has one token per row, so steering all its positions is the same
        hooks = packed_steering_hooks(
            [cells[c] for c in group], x.shape[0], device=cfg.device or "cpu", dtype=cfg.dtype
        )
        with model.hooks(fwd_hooks=list(hooks)):
            resid = model(
                x.repeat(n, 1, 1),
                start_at_layer=start,
                stop_at_layer=cfg.n_layers,
                **pass_kwargs(n),
            )
        logp = next_logp(model, resid).unflatten(0, (n, x.shape[0]))
        yield from zip(group, logp, strict=True)


def _sweep_from_layer(
    model: HookedTransformer,
    items: EncodedItems,
    cells: list[tuple[Mask, float]],
    batch_size: int,
    progress: bool,
    settings_per_pass: int | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    cfg = model.cfg
    order, base, tallies, starts, chunks = _bookkeeping(items, cells, batch_size)
    with torch.inference_mode():
        for chunk in tqdm(chunks, desc="sweep", disable=not progress, leave=False):
            idx = [order[i] for i in chunk]
            tokens, mask = left_pad([items.prompts[i] for i in idx], pad_id(model), cfg.device)
            groups = _groups(starts, settings_per_pass, cfg.device or "cpu", tokens.numel())
            resid, entering = _run_keeping(
                model,
                {starts[g[0]] for g in groups},
                tokens,
                attention_mask=mask,
                stop_at_layer=cfg.n_layers,
            )
            base.add(next_logp(model, resid), items, idx)

            def padded(copies: int, mask: Tensor = mask) -> dict[str, object]:
                return {"attention_mask": mask.repeat(copies, 1)}

            for c, logp in _steered_passes(
                model, cells, groups, starts, entering, padded, last_token=False
            ):
                tallies[c].add(logp, items, idx)
    return base.result(), [t.result() for t in tallies]


# Tokens one packed pass may hold on an accelerator, cached prompt tokens included: enough to
# amortise per-kernel overhead at little memory (for a 7B model in 16-bit, 32k tokens of activations
# or of repeated KV cache are a few GB to 16 GB; pass `settings_per_pass` to go lower).
PACKED_TOKENS = 32768


def _groups(
    starts: list[int], per_pass: int | None, device: torch.device | str, batch_tokens: int
) -> list[list[int]]:
    """Cells in groups that share a forward pass, ordered by start layer (a group starts at its
    first cell's). `per_pass` None: one cell a pass on a CPU, where the arithmetic is the cost
    whatever the batch; on an accelerator as many as fit `PACKED_TOKENS`."""
    if per_pass is None:
        cpu = torch.device(device).type == "cpu"
        per_pass = 1 if cpu else max(1, PACKED_TOKENS // max(1, batch_tokens))
    order = sorted(range(len(starts)), key=lambda c: (starts[c], c))
    return [order[i : i + per_pass] for i in range(0, len(order), per_pass)]
