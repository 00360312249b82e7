"""What steering does to generated text besides the answer: fluency and repetition.

- `continuation_perplexity`: the perplexity of each continuation under the *unsteered* model, so
  a setting that wins accuracy by writing text the model itself finds improbable shows up;
- `distinct_n`: unique word n-grams over all n-grams of a set of texts (Li et al. 2016);
- `repetition_rate`: per text, the share of word n-grams that repeat an earlier one
  (`seq-rep-n`, Welleck et al. 2020), averaged over the texts that have an n-gram.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ._backend import HookedTransformer
from ._passes import final_resid, logits_of, matmul_layout
from .tokens import batches, left_pad, pad_id, prompt_ids


def continuation_perplexity(
    model: HookedTransformer,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
) -> Float[Tensor, " text"]:
    """`exp(mean negative log-likelihood)` of each continuation's tokens given its prompt, under
    whatever hooks are active (call it outside `steer` for the unsteered model). NaN for an empty
    continuation. A prompt too long for the context keeps its last tokens."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    heads = [prompt_ids(model, p) if isinstance(p, str) else list(p) for p in prompts]
    out = torch.full((len(heads),), math.nan)
    todo = [i for i, c in enumerate(continuations) if len(c)]
    with torch.inference_mode(), matmul_layout(model):
        for chunk in batches(len(todo), batch_size):
            idx = [todo[j] for j in chunk]
            room = model.cfg.n_ctx  # a long prompt keeps its end (pass `Generation.prompts`)
            keep = [max(1, room - len(continuations[i])) for i in idx]
            seqs = [heads[i][-k:] + list(continuations[i]) for i, k in zip(idx, keep, strict=True)]
            if any(len(seq) > room for seq in seqs):
                raise ValueError(f"a continuation longer than the context ({room} tokens)")
            tokens, mask = left_pad(seqs, pad_id(model), model.cfg.device)
            resid = final_resid(model, tokens, attention_mask=mask)
            width = tokens.shape[1]
            # position p predicts token p + 1: the continuation's tokens sit in the last n columns,
            # so only the n positions before them are unembedded
            lengths = [len(continuations[i]) for i in idx]
            rows = torch.cat(
                [resid[row, width - n - 1 : width - 1] for row, n in enumerate(lengths)]
            )
            logp = logits_of(model, rows).float().log_softmax(-1).cpu()
            targets = torch.tensor([t for i in idx for t in continuations[i]])
            nll = -logp.gather(1, targets[:, None])[:, 0]
            for i, part in zip(idx, nll.split(lengths), strict=True):
                out[i] = float(part.mean().exp())
    return out


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Unique word n-grams / all word n-grams over `texts` (NaN when there are none).

    >>> round(distinct_n(["a b a b", "a b c"], 1), 4)
    0.4286
    """
    grams = [g for t in texts for g in _ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def repetition_rate(texts: Sequence[str], n: int = 4) -> float:
    """Mean over texts of `1 - unique n-grams / n-grams` (texts shorter than n words skipped;
    NaN when none is long enough).

    >>> round(repetition_rate(["a b a b", "a b c"], 2), 4)
    0.1667
    """
    rates = []
    for t in texts:
        grams = _ngrams(t, n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else math.nan
