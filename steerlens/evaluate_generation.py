"""Scoring generated answers: numbers (math word problems) or short exact answers, with what
steering did to the text beside the score.

`evaluate_generation(model, examples, mask=..., strength=...)` generates a continuation of every
prompt (steered when a mask is given), extracts the answer and compares it with the gold: the
number as AUSteer does (`numbers.extract_number`, float equality) or, with `match="exact"`, the
first line of the text against the gold answer, both normalised as the papers compare strings.
Every result also carries the side effects (`text_effects`): the perplexity of each continuation
under the unsteered model, distinct-2 and the 4-gram repetition rate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ._backend import HookedTransformer
from .generate import Generation, generate
from .mask import Mask
from .normalize import normalize
from .numbers import extract_number, same_number
from .stats import N_BOOT, bootstrap_ci, paired_bootstrap_ci
from .tasks import Example
from .text_effects import continuation_perplexity, distinct_n, repetition_rate

Match = Literal["number", "exact"]


@dataclass(frozen=True)
class GenerationResult:
    """Per-item outcomes of one generation run and its side effects on the text."""

    correct: Bool[Tensor, " item"]
    predicted: list[float | str | None]
    generation: Generation
    perplexity: Float[Tensor, " item"]

    @property
    def n(self) -> int:
        return int(self.correct.numel())

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if self.n else math.nan

    @property
    def no_answer(self) -> int:
        """Items whose text gave no answer (no number; an empty first line)."""
        return sum(p is None for p in self.predicted)

    @property
    def median_perplexity(self) -> float:
        values = self.perplexity[~self.perplexity.isnan()]
        return float(values.median()) if values.numel() else math.nan

    @property
    def distinct_2(self) -> float:
        return distinct_n(self.generation.texts, 2)

    @property
    def repetition_4(self) -> float:
        return repetition_rate(self.generation.texts, 4)

    def ci(
        self, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
    ) -> tuple[float, float]:
        """Percentile bootstrap interval of the accuracy over items."""
        return bootstrap_ci(self.correct.numpy(), n_boot=n_boot, level=level, seed=seed)

    def summary(self) -> dict[str, float | int]:
        """The numbers a results table shows."""
        lo, hi = self.ci()
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "accuracy_lo": lo,
            "accuracy_hi": hi,
            "no_answer": self.no_answer,
            "stopped_at_limit": self.generation.stopped.count("length"),
            "median_perplexity": self.median_perplexity,
            "distinct_2": self.distinct_2,
            "repetition_4": self.repetition_4,
        }

    def __repr__(self) -> str:
        return (
            f"GenerationResult(n={self.n}, accuracy={self.accuracy:.4f}, "
            f"no_answer={self.no_answer}, median_perplexity={self.median_perplexity:.2f})"
        )


def gold_of(example: Example, match: Match) -> float | str:
    """The gold a generated answer is compared with: the answer's number, or its normalised text."""
    if match == "exact":
        return normalize(example.answer)
    gold = extract_number(example.answer)
    if gold is None:
        raise ValueError(
            f"answer {example.answer[-60:]!r} holds no number; use match='exact' for text answers"
        )
    return gold


def read_answer(text: str, match: Match, extract: str | None = None) -> float | str | None:
    r"""The answer a generated text gives: its number, or its normalised first line.

    With `extract` (a regular expression), the answer is read from its first match only (the
    first group if it has one); no match gives None.

    >>> read_answer("The answer is (B), not A.", "exact", extract=r"\((\w)\)")
    'b'
    """
    if extract is not None:
        found = re.search(extract, text)
        if found is None:
            return None
        text = found.group(1) if found.re.groups else found.group(0)
    if match == "exact":
        line = normalize(text.strip().split("\n", 1)[0])
        return line or None
    return extract_number(text)


def evaluate_generation(
    model: HookedTransformer,
    examples: Sequence[Example],
    *,
    mask: Mask | None = None,
    strength: float = 0.0,
    every_generated: bool = False,
    match: Match = "number",
    extract: str | None = None,
    max_new_tokens: int = 50,
    stop: Sequence[str] = (),
    batch_size: int = 8,
    progress: bool = True,
) -> GenerationResult:
    """Generate greedily for each example's prompt (steered by `mask` if given) and score it.

    A text with no number (or an empty first line, or no match of `extract`) scores wrong and is
    counted (`no_answer`); a stop string that never occurs ends the text at `max_new_tokens`
    (`stopped_at_limit`). `extract`: a regular expression the answer is read from
    (`read_answer`).
    """
    if match not in ("number", "exact"):
        raise ValueError(f"match must be 'number' or 'exact', got {match!r}")
    if extract is not None:
        try:
            re.compile(extract)
        except re.error as err:
            raise ValueError(
                f"extract={extract!r} is not a valid regular expression ({err})"
            ) from None
    if not examples:
        raise ValueError("evaluate_generation() got no examples")
    golds = [gold_of(ex, match) for ex in examples]
    prompts = [ex.prompt for ex in examples]
    out = generate(
        model,
        prompts,
        mask=mask,
        strength=strength,
        every_generated=every_generated,
        max_new_tokens=max_new_tokens,
        stop=stop,
        batch_size=batch_size,
        progress=progress,
    )
    predicted = [read_answer(t, match, extract) for t in out.texts]
    hits = []
    for p, g in zip(predicted, golds, strict=True):
        if match == "exact":
            hits.append(p is not None and p == g)
        else:
            hits.append(isinstance(p, float) and isinstance(g, float) and same_number(p, g))
    if mask is None:  # the text's own log-probs are the unsteered model's
        perplexity = torch.tensor(
            [math.exp(-sum(lp) / len(lp)) if lp else math.nan for lp in out.logprobs]
        )
    else:
        perplexity = continuation_perplexity(model, out.prompts, out.tokens, batch_size=batch_size)
    return GenerationResult(torch.tensor(hits, dtype=torch.bool), predicted, out, perplexity)


def paired_difference(a: GenerationResult, b: GenerationResult) -> tuple[float, float, float]:
    """`(mean, lo, hi)`: accuracy of `a` minus `b` on the same items, paired bootstrap."""
    return paired_bootstrap_ci(a.correct.numpy(), b.correct.numpy())


__all__ = [
    "GenerationResult",
    "evaluate_generation",
    "gold_of",
    "paired_difference",
    "read_answer",
]
