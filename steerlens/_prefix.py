"""A prefix that every text of a run shares (k-shot demonstrations), computed once.

With the same k demonstrations before every item, the first hundreds of tokens of every text are
the same. `shared_prefix` finds the longest common token prefix of a run's texts, runs it once
into a KV cache (batch 1), and each batch then starts from a copy of that cache and runs only
the rest of its texts (`PrefixCache.extend`). Only token ids are compared, so the texts need not
say where the demonstrations end, and the numbers equal running every text in full (tested).

Steering stays exact: hooks active while the prefix runs see it as part of every text. Masks that
steer every position steer it; masks that steer the last prompt token (or from it on) leave it
alone, since the prefix always ends before any text's last prompt token; the pass over the rest
of the texts counts as a fresh pass for them (`in_prefix` / `continues_prompt`, read by `steer`).
A clamp mask (SADI as released) needs a clean pass of whole texts: no prefix is shared then.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from ._backend import HookedTransformer, is_bridge
from ._clamp import prepass_active
from ._passes import final_resid, repeat_cache
from .tokens import left_pad, pad_id

# Below this many shared tokens a separate pass costs more than it saves.
MIN_SHARED_TOKENS = 32

_ROLE: ContextVar[str | None] = ContextVar("steerlens_prefix_role", default=None)
_ENABLED: ContextVar[bool] = ContextVar("steerlens_shared_prefix", default=True)


def in_prefix() -> bool:
    """Whether the current forward pass is a shared prefix (no prompt ends in it)."""
    return _ROLE.get() == "prefix"


def continues_prompt() -> bool:
    """Whether the current pass continues a shared prefix: to steering, a fresh pass."""
    return _ROLE.get() == "continue"


def in_answers() -> bool:
    """Whether the current pass runs answer tokens after their prompts' KV cache (no prompt
    token in it): masks that steer the last prompt token leave it alone, masks that steer from
    it on steer every position."""
    return _ROLE.get() == "answers"


@contextmanager
def scoring_answers() -> Iterator[None]:
    """Within this block, forward passes continue prompts with answer tokens (`in_answers`)."""
    with _role("answers"):
        yield


@contextmanager
def _role(role: str) -> Iterator[None]:
    token = _ROLE.set(role)
    try:
        yield
    finally:
        _ROLE.reset(token)


@contextmanager
def no_shared_prefix() -> Iterator[None]:
    """Within this block every text runs in full (the reference the shared prefix must equal)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def common_length(seqs: Sequence[Sequence[int]], keep: int = 1) -> int:
    """Length of the token prefix all `seqs` share, leaving each at least `keep` tokens of its own.

    >>> common_length([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 3]], keep=1)
    2
    """
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - keep
    first = seqs[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return max(n, 0)


@dataclass
class PrefixCache:
    """The shared prefix's KV cache (batch 1, frozen) and its length in tokens."""

    length: int
    cache: TransformerLensKeyValueCache

    def extend(
        self, model: HookedTransformer, rows: Sequence[Sequence[int]], *, freeze: bool
    ) -> tuple[Tensor, Tensor, TransformerLensKeyValueCache]:
        """The rest of each row after the prefix, left-padded (tokens, attention mask), and a copy
        of the cache for that many rows (`freeze=False`: the next pass appends to it)."""
        rest = [list(r[self.length :]) for r in rows]
        tokens, mask = left_pad(rest, pad_id(model), model.cfg.device)
        cache = repeat_cache(self.cache, len(rows), frozen=freeze)
        return tokens, mask, cache


def shared_prefix(
    model: HookedTransformer, seqs: Sequence[Sequence[int]], *, keep: int = 1
) -> PrefixCache | None:
    """Run the prefix all `seqs` share once, under the hooks active now; None when there is
    none worth sharing, when sharing is off (`no_shared_prefix`) or a clamp's clean pre-pass is
    active (it must see whole texts), and on the TransformerLens 4 bridge (no KV cache)."""
    if not _ENABLED.get() or prepass_active(model) or is_bridge(model):
        return None
    n = common_length(seqs, keep)
    if n < MIN_SHARED_TOKENS:
        return None
    cfg = model.cfg
    cache = TransformerLensKeyValueCache.init_cache(cfg, cfg.device, 1)
    tokens = torch.tensor([list(seqs[0][:n])], device=cfg.device)
    with torch.inference_mode(), _role("prefix"):
        final_resid(model, tokens, past_kv_cache=cache)
    cache.freeze()
    return PrefixCache(n, cache)


@contextmanager
def continuing() -> Iterator[None]:
    """Within this block, forward passes continue a shared prefix (see `continues_prompt`)."""
    with _role("continue"):
        yield
