"""Forward-pass helpers with nothing to do with tokens: weight layout, KV caches, the next token.

- `matmul_layout`: store the weights the way TransformerLens multiplies with them for a block.
- `repeat_cache`: a frozen prompt cache shared by several continuations per row.
- `final_resid` / `logits_of`: a pass that stops before the unembedding, and the logits of the
  positions a caller needs (soft-capped where the model caps them), on either backend.
- `next_logp`: next-token log-probs from the final residual stream at the last position.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

from ._backend import HookedTransformer, is_bridge

# TransformerLens brings most weight matrices into `F.linear`'s layout on every forward pass
# (`W.T.contiguous()`, `rearrange` + `reshape`), copying every weight each pass: twice the memory
# traffic of a short pass (a one-token sweep step, the unembedding of one position). Per parameter
# name, the permutation that TransformerLens makes contiguous.
_MATMUL_LAYOUT: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(("W_Q", "W_K", "W_V", "_W_K", "_W_V"), (0, 2, 1)),  # [head, d_model, d_head]
    "W_O": (2, 0, 1),  # [head, d_head, d_model]
    **dict.fromkeys(("W_in", "W_gate", "W_out", "W_U"), (1, 0)),
}


@contextmanager
def matmul_layout(model: HookedTransformer, *, unembed: bool = True) -> Iterator[None]:
    """Within this block the weights are stored in the layout TransformerLens multiplies with.

    Values and shapes are unchanged (results are bitwise identical), only strides change, so
    those per-pass copies become free views. The original layout is restored on exit; nested
    blocks do nothing. `unembed=False` leaves `W_U` alone (for passes that stop before it).
    """
    changed: list[tuple[torch.nn.Parameter, tuple[int, ...]]] = []
    with torch.inference_mode(False), torch.no_grad():  # parameters must stay normal tensors
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            perm = _MATMUL_LAYOUT.get(leaf) if unembed or leaf != "W_U" else None
            if perm is None or p.dim() != len(perm) or p.permute(perm).is_contiguous():
                continue
            changed.append((p, p.stride()))
            inverse = sorted(range(len(perm)), key=perm.__getitem__)
            p.data = p.data.permute(perm).contiguous().permute(inverse)
    try:
        yield
    finally:
        with torch.inference_mode(False), torch.no_grad():
            for p, stride in changed:
                like = torch.empty_strided(p.shape, stride, dtype=p.dtype, device=p.device)
                p.data = like.copy_(p)


def repeat_cache(
    cache: TransformerLensKeyValueCache, n: int, *, frozen: bool = True
) -> TransformerLensKeyValueCache:
    """A copy of `cache` with its batch repeated `n` times block-wise (as `Tensor.repeat`): row
    `g * batch + i` continues row `i`, so `n` continuations of every row run in one pass. Frozen
    by default; `frozen=False` lets the next pass append to the copy."""
    entries = [
        TransformerLensKeyValueCacheEntry(
            e.past_keys.repeat(n, 1, 1, 1), e.past_values.repeat(n, 1, 1, 1), frozen=frozen
        )
        for e in cache.entries
    ]
    return TransformerLensKeyValueCache(
        entries, cache.previous_attention_mask.repeat(n, 1), frozen=frozen
    )


def select_rows(cache: TransformerLensKeyValueCache, rows: Tensor) -> TransformerLensKeyValueCache:
    """A frozen copy of `cache` holding its batch rows `rows` (repeats allowed), in that order:
    one continuation per row of `rows`, none of which appends to the cache."""
    entries = [
        TransformerLensKeyValueCacheEntry(e.past_keys[rows], e.past_values[rows], frozen=True)
        for e in cache.entries
    ]
    return TransformerLensKeyValueCache(entries, cache.previous_attention_mask[rows], frozen=True)


def final_resid(
    model: HookedTransformer, tokens: Tensor, **kwargs: Any
) -> Float[Tensor, "batch pos d_model"]:
    """`model(tokens, **kwargs)` stopped after the last block: the residual stream before
    `ln_final`, so callers unembed only the positions they score (`logits_of`).

    TransformerLens 3 stops at `stop_at_layer=n_layers`; the 4.x bridge answers that with the full
    logits, so there the pass is stopped by a hook at `ln_final`'s input instead. The bridge has
    no TransformerLens KV cache: `past_kv_cache=None` is dropped there, a cache refused.
    """
    if not is_bridge(model):
        return model(tokens, stop_at_layer=model.cfg.n_layers, **kwargs)
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    if kwargs.pop("past_kv_cache", None) is not None:
        raise ValueError("a TransformerLens 4 bridge has no TransformerLens KV cache")

    def stop(act: Tensor, hook: object) -> None:
        raise StopAtLayerException(act)

    with model.hooks(fwd_hooks=[("ln_final.hook_in", stop)]):
        return model(tokens, **kwargs)


def logits_of(
    model: HookedTransformer, resid: Float[Tensor, "*batch d_model"]
) -> Float[Tensor, "*batch vocab"]:
    """Logits from the final residual stream: `ln_final`, the unembedding and, on models that cap
    their logits (Gemma-2's `final_logit_softcapping`), the cap `c·tanh(logits / c)`, exactly as
    the model's own forward pass computes them (on the bridge: its architecture's own transform)."""
    logits = model.unembed(model.ln_final(resid))
    if is_bridge(model):
        adapter: Any = model.adapter
        return cast(Tensor, adapter.apply_output_logits_transform(logits))
    cap = float(getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0)
    return cap * torch.tanh(logits / cap) if cap > 0 else logits


def next_logp(
    model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch vocab"]:
    """Next-token log-probs `[batch, vocab]` (float32) from the final residual stream at the last
    position: `logits_of` that position only, not of every position."""
    return logits_of(model, resid[:, -1:])[:, 0].float().log_softmax(-1)
