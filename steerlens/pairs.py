"""Contrastive pairs as token ids: each example's (prompt + answer, prompt + wrong) texts, written
as steerlens' templates do or as SADI's or AUSteer's released code writes them."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ._backend import HookedTransformer
from ._types import PairFormat
from .tasks import Example
from .tokens import answer_ids, fit_contexts, prompt_ids

PAIR_FORMATS: tuple[PairFormat, ...] = ("template", "sadi", "austeer")


def pair_text(prompt: str, answer: str, pair_format: PairFormat) -> str:
    """One contrastive text as a released code writes it: SADI joins the stripped prompt and
    answer with one space (`steering.py`), AUSteer appends the stripped answer to the prompt with
    no separator (`Answer:Yes`, `steer.py`)."""
    if pair_format == "sadi":
        return f"{prompt.strip()} {answer.strip()}"
    if pair_format == "austeer":
        return prompt + answer.strip()
    raise ValueError(f"pair_format must be one of {PAIR_FORMATS}, got {pair_format!r}")


def contrastive_ids(
    model: HookedTransformer,
    examples: Sequence[Example],
    *,
    seed: int = 0,
    pair_format: PairFormat = "template",
) -> list[tuple[list[int], list[int]]]:
    """Token ids of each example's positive (prompt+answer) and negative (prompt+wrong) text.

    With several wrong answers one is drawn per example, reproducibly from `seed` (as SADI does).
    `pair_format="template"` writes prompt ids followed by the answer's own ids (the answer's
    spelling decides its spacing); "sadi" and "austeer" write each text as that released code
    does (`pair_text`) and tokenize it whole.
    """
    if pair_format not in PAIR_FORMATS:
        raise ValueError(f"pair_format must be one of {PAIR_FORMATS}, got {pair_format!r}")
    rng = random.Random(seed)
    texts = []
    for ex in examples:
        wrong = ex.wrong[0] if len(ex.wrong) == 1 else rng.choice(ex.wrong)
        if pair_format == "template":
            p = prompt_ids(model, ex.prompt)
            texts += [p + answer_ids(model, ex.answer), p + answer_ids(model, wrong)]
        else:
            texts += [
                prompt_ids(model, pair_text(ex.prompt, a, pair_format)) for a in (ex.answer, wrong)
            ]
    fitted = fit_contexts(texts, model.cfg.n_ctx, what="contrastive text", stacklevel=4)
    return list(zip(fitted[0::2], fitted[1::2], strict=True))


__all__ = ["PAIR_FORMATS", "contrastive_ids", "pair_text"]
