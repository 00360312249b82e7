"""Tokens: how prompts and answers become token ids, and how ragged sequences become a batch.

A prompt is tokenized with the model's BOS convention (``default_prepend_bos``); an answer is
tokenized on its own without special tokens and appended. Working on ids rather than on the
concatenated string makes "the answer's first token" well defined, whatever the tokenizer does
at the prompt/answer boundary. Batches are left-padded with an attention mask, so position -1 is
every row's real last token.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import cast

import torch
from jaxtyping import Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ._backend import HookedTransformer


def prompt_ids(model: HookedTransformer, prompt: str) -> list[int]:
    """Token ids of `prompt`, with BOS when the model prepends one by default."""
    ids = tokenizer_of(model).encode(prompt, add_special_tokens=False)
    bos = tokenizer_of(model).bos_token_id
    return ([bos] if model.cfg.default_prepend_bos and bos is not None else []) + list(ids)


def answer_ids(model: HookedTransformer, answer: str) -> list[int]:
    """Token ids of an answer continuing a prompt (no BOS, no special tokens)."""
    ids = list(tokenizer_of(model).encode(answer, add_special_tokens=False))
    if not ids:
        raise ValueError(f"Answer {answer!r} tokenizes to nothing")
    return ids


def tokenizer_of(model: HookedTransformer) -> PreTrainedTokenizerBase:
    if model.tokenizer is None:
        raise ValueError("The model has no tokenizer; steerlens needs one to encode text")
    return model.tokenizer


def fit_contexts(
    seqs: Sequence[Sequence[int]],
    n_ctx: int | Sequence[int],
    *,
    what: str = "text",
    stacklevel: int = 3,
) -> list[list[int]]:
    """Keep each sequence's last tokens (the answer must survive); one warning for all cut.

    Args:
        seqs: token id lists.
        n_ctx: the room for every sequence, or one room per sequence (e.g. the context minus the
            longest answer option of each item).
        what: what a sequence is, for the warning ("prompt", "contrastive text").
        stacklevel: passed on to `warnings.warn` (3: the caller of the function calling this).
    """
    one_room = isinstance(n_ctx, numbers.Integral)  # an int, or a NumPy integer
    rooms: list[int] = (
        [cast(int, n_ctx)] * len(seqs) if one_room else list(cast(Sequence[int], n_ctx))
    )
    if len(rooms) != len(seqs):
        raise ValueError(f"fit_contexts got {len(seqs)} sequences but {len(rooms)} context sizes")
    out: list[list[int]] = []
    cut: list[tuple[int, int]] = []
    for ids, room in zip(seqs, rooms, strict=True):
        _check_room(len(ids), room, what)
        if len(ids) > room:
            cut.append((len(ids), room))
            ids = ids[-room:]
        out.append(list(ids))
    if cut:
        longest = max(n for n, _ in cut)
        if one_room:
            limit = f"the model's context of {n_ctx} tokens"
        else:
            fewest = min(r for _, r in cut)
            limit = f"the room the model's context leaves them (as few as {fewest} tokens)"
        warnings.warn(
            f"{len(cut)} of {len(seqs)} {what}s exceed {limit}; the longest has {longest} tokens. "
            "Keeping their last tokens (truncated from the left).",
            stacklevel=stacklevel,
        )
    return out


def _check_room(length: int, room: int, what: str) -> None:
    if isinstance(room, bool) or not isinstance(room, numbers.Integral):
        raise TypeError(f"a context size must be an int, got {type(room).__name__}")
    if room < 1 and length > 0:
        raise ValueError(
            f"No room for a {what} of {length} tokens: the model's context leaves {max(room, 0)} "
            "tokens for it (is an answer option as long as the context?)"
        )


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: str | torch.device | None
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Stack ragged id lists right-aligned; returns tokens and attention mask (1 = real token).

    `device` is where the two tensors go (``None``: the CPU, where they are built).
    """
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
