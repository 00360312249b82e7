"""TransformerLens KV caches: a frozen prompt cache shared by several continuations per row."""

from __future__ import annotations

from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry


def repeat_cache(cache: TransformerLensKeyValueCache, n: int) -> TransformerLensKeyValueCache:
    """A frozen copy of `cache` with its batch repeated `n` times block-wise (as `Tensor.repeat`):
    row `g * batch + i` continues row `i`, so `n` continuations of every row run in one pass."""
    entries = [
        TransformerLensKeyValueCacheEntry(
            e.past_keys.repeat(n, 1, 1, 1), e.past_values.repeat(n, 1, 1, 1), frozen=True
        )
        for e in cache.entries
    ]
    return TransformerLensKeyValueCache(
        entries, cache.previous_attention_mask.repeat(n, 1), frozen=True
    )
