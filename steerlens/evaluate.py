"""Evaluation: multiple-choice accuracy under both protocols, batched, with bootstrap intervals.

- `accuracy` (the papers' protocol): the argmax of the next-token distribution over the full
  vocabulary after the prompt equals the correct answer's first token.
- `restricted`: the correct option has the highest log-probability among the options (summed
  over an option's tokens when it has several).

Evaluation runs whatever hooks are active, so `with steer(...): evaluate(...)` scores the steered
model. Only the logits actually needed are computed (the last prompt position, or the answer
positions), not the unembedding of every position.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from ._passes import matmul_layout, next_logp
from .steer import prompt_end
from .tasks import Example
from .tokens import answer_ids, batches, fit_contexts, left_pad, pad_id, prompt_ids

METRICS = ("accuracy", "restricted")


@dataclass(frozen=True)
class EvalResult:
    """Per-item outcomes of one evaluation; `accuracy` and `restricted` are fractions in [0, 1]."""

    correct: Bool[Tensor, " item"]
    correct_restricted: Bool[Tensor, " item"]
    answer_logprob: Float[Tensor, " item"]

    @property
    def n(self) -> int:
        return int(self.correct.numel())

    @property
    def accuracy(self) -> float:
        """Full-vocabulary argmax accuracy (the papers' metric)."""
        return float(self.correct.float().mean())

    @property
    def restricted(self) -> float:
        """Accuracy when only the answer options compete."""
        return float(self.correct_restricted.float().mean())

    def metric(self, name: str) -> float:
        if name not in METRICS:
            raise ValueError(f"Unknown metric {name!r}; valid: {METRICS}")
        return self.accuracy if name == "accuracy" else self.restricted

    def ci(
        self, metric: str = "accuracy", *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
    ) -> tuple[float, float]:
        """Percentile bootstrap interval of a metric over test items."""
        flags = (self.correct if metric == "accuracy" else self.correct_restricted).numpy()
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}; valid: {METRICS}")
        rng = np.random.default_rng(seed)
        means = flags[rng.integers(0, len(flags), size=(n_boot, len(flags)))].mean(1)
        alpha = (1 - level) / 2
        return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))

    def __repr__(self) -> str:
        return (
            f"EvalResult(n={self.n}, accuracy={self.accuracy:.4f}, "
            f"restricted={self.restricted:.4f})"
        )


@dataclass(frozen=True)
class EncodedItems:
    """Token ids of a list of examples, encoded once and reused across many evaluations."""

    prompts: list[list[int]]
    options: list[list[list[int]]]  # per item, per option (correct first), token ids

    @property
    def single_token(self) -> bool:
        return all(len(o) == 1 for opts in self.options for o in opts)


def encode_items(model: HookedTransformer, examples: Sequence[Example]) -> EncodedItems:
    """Encode prompts and options; prompts longer than the context keep their last tokens."""
    if not examples:
        raise ValueError("evaluate() got no examples (is the split empty?)")
    options = [[answer_ids(model, o) for o in ex.options] for ex in examples]
    room = [model.cfg.n_ctx - max(len(o) for o in opts) for opts in options]
    prompts = fit_contexts([prompt_ids(model, ex.prompt) for ex in examples], room, what="prompt")
    return EncodedItems(prompts, options)


def _last_logits(model: HookedTransformer, tokens: Tensor, mask: Tensor) -> Tensor:
    """Log-probs of the next token after each row's last position, `[batch, vocab]`."""
    resid = model(tokens, attention_mask=mask, stop_at_layer=model.cfg.n_layers)
    return next_logp(model, resid)


def _option_logprobs(model: HookedTransformer, items: EncodedItems, rows: range) -> Tensor:
    """Summed log-probs of every option of the items in `rows`, `[len(rows), n_options]`.

    Each (item, option) is one row: the prompt left-padded to end at a shared column, the option
    right-padded after it, so `prompt_end` tells last-prompt-token steering where to act.
    """
    pairs = [(i, j) for i in rows for j in range(len(items.options[i]))]
    end = max(len(items.prompts[i]) for i in rows) - 1
    width = end + 1 + max(len(items.options[i][j]) for i, j in pairs)
    pad = pad_id(model)
    tokens = torch.full((len(pairs), width), pad, dtype=torch.long)
    attn = torch.zeros_like(tokens)
    for r, (i, j) in enumerate(pairs):
        p, o = items.prompts[i], items.options[i][j]
        tokens[r, end + 1 - len(p) : end + 1] = torch.tensor(p)
        tokens[r, end + 1 : end + 1 + len(o)] = torch.tensor(o)
        attn[r, end + 1 - len(p) : end + 1 + len(o)] = 1
    device = model.cfg.device
    with prompt_end(end):
        resid = model(
            tokens.to(device), attention_mask=attn.to(device), stop_at_layer=model.cfg.n_layers
        )
    logp = model.unembed(model.ln_final(resid[:, end:-1])).float().log_softmax(-1)
    target = tokens[:, end + 1 :].to(device)
    picked = logp.gather(-1, target.unsqueeze(-1))[..., 0] * attn[:, end + 1 :].to(device)
    scores = picked.sum(-1).cpu()
    n_opts = max(len(items.options[i]) for i in rows)
    out = torch.full((len(rows), n_opts), float("-inf"))
    for r, (i, j) in enumerate(pairs):
        out[i - rows.start, j] = scores[r]
    return out


def evaluate(
    model: HookedTransformer,
    examples: Sequence[Example] | EncodedItems,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> EvalResult:
    """Score `examples` (a split such as `task.test`) under both protocols.

    Pass `encode_items(model, examples)` instead of the examples to skip re-tokenizing in loops.
    """
    items = examples if isinstance(examples, EncodedItems) else encode_items(model, examples)
    n = len(items.prompts)
    order = sorted(range(n), key=lambda i: -len(items.prompts[i]))
    correct = torch.zeros(n, dtype=torch.bool)
    restricted = torch.zeros(n, dtype=torch.bool)
    answer_lp = torch.zeros(n)
    pad, device = pad_id(model), model.cfg.device
    chunks = batches(n, batch_size)
    with torch.inference_mode(), matmul_layout(model):
        for chunk in tqdm(
            chunks, desc="evaluating", disable=not progress or len(chunks) < 2, leave=False
        ):
            idx = [order[i] for i in chunk]
            tokens, mask = left_pad([items.prompts[i] for i in idx], pad, device)
            logp = _last_logits(model, tokens, mask).cpu()
            correct[idx], answer_lp[idx], first_restricted = score_first_tokens(logp, items, idx)
            if all(len(o) == 1 for i in idx for o in items.options[i]):
                restricted[idx] = first_restricted
            else:
                sub = _option_logprobs(model, _subset(items, idx), range(len(idx)))
                scores = [row[: len(items.options[i])] for row, i in zip(sub, idx, strict=True)]
                restricted[idx] = torch.tensor([bool((s[0] > s[1:]).all()) for s in scores])
    return EvalResult(correct, restricted, answer_lp)


def score_first_tokens(
    logp: Float[Tensor, "batch vocab"], items: EncodedItems, idx: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Per row: full-vocab argmax hit, gold first-token log-prob, first-token option win."""
    firsts = [[o[0] for o in items.options[i]] for i in idx]
    gold = torch.tensor([f[0] for f in firsts])
    finite = ~(torch.isnan(logp) | torch.isposinf(logp)).any(-1)  # -inf is a valid log-prob
    if not finite.all():
        warnings.warn(
            "Non-finite logits for some items (counted as wrong); a steering strength this "
            "large breaks the model's forward pass.",
            stacklevel=3,
        )
    hit = (logp.argmax(-1) == gold) & finite
    gold_lp = logp.gather(-1, gold.unsqueeze(-1))[:, 0]
    wins = torch.tensor(
        [bool((logp[r, f[0]] > logp[r, f[1:]]).all()) for r, f in enumerate(firsts)]
    )
    return hit, gold_lp, wins & finite


def _subset(items: EncodedItems, idx: Sequence[int]) -> EncodedItems:
    return EncodedItems([items.prompts[i] for i in idx], [items.options[i] for i in idx])
