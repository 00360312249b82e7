"""Tokens: how prompts and answers become token ids, and how ragged sequences become a batch.

A prompt is tokenized with the model's BOS convention (``default_prepend_bos``); an answer is
tokenized on its own without special tokens and appended. Working on ids rather than on the
concatenated string makes "the answer's first token" well defined, whatever the tokenizer does
at the prompt/answer boundary. Batches are left-padded with an attention mask, so position -1 is
every row's real last token. `matmul_layout` stores the weights the way TransformerLens multiplies
with them while steerlens runs its batches.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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
    """Keep the last `n_ctx` tokens (the answer must survive), warning when it truncates.

    This warns on every truncating call; code that fits many sequences should call
    `fit_contexts`, which warns once for all of them.
    """
    _check_room(len(ids), n_ctx, what)
    if len(ids) <= n_ctx:
        return list(ids)
    warnings.warn(
        f"A {what} of {len(ids)} tokens exceeds the model's context of {n_ctx}; "
        "keeping its last tokens (truncated from the left).",
        stacklevel=3,
    )
    return list(ids[-n_ctx:])


def fit_contexts(
    seqs: Sequence[Sequence[int]],
    n_ctx: int | Sequence[int],
    *,
    what: str = "text",
    stacklevel: int = 3,
) -> list[list[int]]:
    """`fit_context` for many sequences, with one warning for all those it truncates.

    Args:
        seqs: token id lists.
        n_ctx: the room for every sequence, or one room per sequence (e.g. the context minus the
            longest answer option of each item).
        what: what a sequence is, for the warning ("prompt", "contrastive text").
        stacklevel: passed on to `warnings.warn` (3: the caller of the function calling this).
    """
    rooms = [n_ctx] * len(seqs) if isinstance(n_ctx, numbers.Integral) else list(n_ctx)
    if len(rooms) != len(seqs):
        raise ValueError(f"fit_contexts got {len(seqs)} sequences but {len(rooms)} context sizes")
    out, cut = [], []
    for ids, room in zip(seqs, rooms, strict=True):
        _check_room(len(ids), room, what)
        if len(ids) > room:
            cut.append((len(ids), room))
            ids = ids[-room:]
        out.append(list(ids))
    if cut:
        longest = max(n for n, _ in cut)
        if isinstance(n_ctx, numbers.Integral):
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


# TransformerLens brings most weight matrices into `F.linear`'s layout on every forward pass
# (`W.T.contiguous()`, `rearrange` + `reshape`), copying every weight each pass: twice the memory
# traffic of a short pass (a one-token sweep step, the unembedding of one position). Per parameter
# name, the permutation that TransformerLens makes contiguous.
_MATMUL_LAYOUT = {
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
    changed = []
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
