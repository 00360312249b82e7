"""Tokens: how prompts and answers become token ids, and how ragged sequences become a batch.

A prompt is tokenized with the model's BOS convention (``default_prepend_bos``); an answer is
tokenized on its own without special tokens and appended. Working on ids rather than on the
concatenated string makes "the answer's first token" well defined, whatever the tokenizer does
at the prompt/answer boundary. Batches are left-padded with an attention mask, so position -1 is
every row's real last token.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer


def prompt_ids(model: HookedTransformer, prompt: str) -> list[int]:
    """Token ids of `prompt`, with BOS when the model prepends one by default."""
    ids = _tokenizer(model).encode(prompt, add_special_tokens=False)
    bos = model.tokenizer.bos_token_id
    return ([bos] if model.cfg.default_prepend_bos and bos is not None else []) + list(ids)


def answer_ids(model: HookedTransformer, answer: str) -> list[int]:
    """Token ids of an answer continuing a prompt (no BOS, no special tokens)."""
    ids = list(_tokenizer(model).encode(answer, add_special_tokens=False))
    if not ids:
        raise ValueError(f"Answer {answer!r} tokenizes to nothing")
    return ids


def _tokenizer(model: HookedTransformer):  # type: ignore[no-untyped-def]
    if model.tokenizer is None:
        raise ValueError("The model has no tokenizer; steerlens needs one to encode text")
    return model.tokenizer


def fit_context(ids: Sequence[int], n_ctx: int, *, what: str = "text") -> list[int]:
    """Keep the last `n_ctx` tokens (the answer must survive), warning once per call site."""
    if len(ids) <= n_ctx:
        return list(ids)
    warnings.warn(
        f"A {what} of {len(ids)} tokens exceeds the model's context of {n_ctx}; "
        "keeping its last tokens (truncated from the left).",
        stacklevel=3,
    )
    return list(ids[-n_ctx:])


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: str | torch.device
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Stack ragged id lists right-aligned; returns tokens and attention mask (1 = real token)."""
    width = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            tokens[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return tokens.to(device), mask.to(device)


def pad_id(model: HookedTransformer) -> int:
    """Pad token id (falls back to EOS, then 0); its value never matters under the mask."""
    tok = model.tokenizer
    for value in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)):
        if value is not None:
            return int(value)
    return 0


def batches(n: int, size: int) -> list[range]:
    """Consecutive index ranges of at most `size` covering `range(n)`."""
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    return [range(i, min(i + size, n)) for i in range(0, n, size)]
