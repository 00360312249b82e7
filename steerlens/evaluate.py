"""Evaluation: multiple-choice accuracy under three protocols, batched, with bootstrap intervals.

- `accuracy`: the argmax of the next-token distribution over the full vocabulary after the
  prompt is exactly the correct answer's first token (token ids; case- and space-sensitive).
- `restricted`: the correct option has the highest log-probability among the options (summed
  over an option's tokens when it has several).
- `paper`: the papers' released metric, a string match (`steerlens.answers`): the argmax counts
  when its decoded form, with SADI's punctuation removed, stripped and lowercased, equals the
  gold answer treated the same way; a gold answer that no single token spells is compared with
  the decoded argmaxes at its teacher-forced answer positions.

Evaluation runs whatever hooks are active, so `with steer(...): evaluate(...)` scores the steered
model. Only the logits actually needed are computed (the last prompt position, or the answer
positions), not the unembedding of every position. On the TransformerLens 4 bridge every text runs
in full (no KV cache, no shared prefix); the numbers are the same (tested on both backends).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from ._backend import HookedTransformer, is_bridge
from ._clamp import prepass_active
from ._passes import final_resid, logits_of, matmul_layout, next_logp, repeat_cache, select_rows
from ._prefix import PrefixCache, continuing, scoring_answers, shared_prefix
from ._types import Metric
from .answers import AnswerSpace, checked_options, matches, spelling_ids, warn_near_misses
from .stats import N_BOOT, bootstrap_ci, paired_bootstrap_ci
from .steer import prompt_end
from .tasks import Example
from .tokens import batches, fit_contexts, left_pad, pad_id, prompt_ids, tokenizer_of

METRICS: tuple[Metric, ...] = ("accuracy", "restricted", "paper")


@dataclass(frozen=True)
class EvalResult:
    """Per-item outcomes of one evaluation; each metric is a fraction in [0, 1].

    `correct_paper` is None when the items were encoded without their answer texts (then `paper`
    is NaN).
    """

    correct: Bool[Tensor, " item"]
    correct_restricted: Bool[Tensor, " item"]
    answer_logprob: Float[Tensor, " item"]
    correct_paper: Bool[Tensor, " item"] | None = None

    @property
    def n(self) -> int:
        return int(self.correct.numel())

    @property
    def accuracy(self) -> float:
        """Full-vocabulary argmax is the answer's first token (exact token id)."""
        return float(self.correct.float().mean())

    @property
    def restricted(self) -> float:
        """Accuracy when only the answer options compete."""
        return float(self.correct_restricted.float().mean())

    @property
    def paper(self) -> float:
        """The papers' string-match accuracy (NaN when the answer texts are unknown)."""
        if self.correct_paper is None:
            return math.nan
        return float(self.correct_paper.float().mean())

    def flags(self, metric: str) -> Bool[Tensor, " item"] | None:
        """Per-item outcomes under `metric`."""
        _check_metric(metric)
        return {
            "accuracy": self.correct,
            "restricted": self.correct_restricted,
            "paper": self.correct_paper,
        }[metric]

    def metric(self, name: str) -> float:
        _check_metric(name)
        return {"accuracy": self.accuracy, "restricted": self.restricted, "paper": self.paper}[name]

    def ci(
        self, metric: str = "accuracy", *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
    ) -> tuple[float, float]:
        """Percentile bootstrap interval of a metric over test items (`steerlens.stats`)."""
        flags = self.flags(metric)
        if flags is None:
            return (math.nan, math.nan)
        return bootstrap_ci(flags.numpy(), n_boot=n_boot, level=level, seed=seed)

    def delta(
        self,
        other: EvalResult,
        metric: str = "accuracy",
        *,
        level: float = 0.95,
        n_boot: int = N_BOOT,
        seed: int = 0,
    ) -> tuple[float, float, float]:
        """`(mean, lo, hi)` of this result minus `other` on the same items (a paired bootstrap):
        the effect of steering when `other` is the unsteered model. Far narrower than the two
        accuracies' own intervals, since the items' difficulty cancels."""
        mine, theirs = self.flags(metric), other.flags(metric)
        if mine is None or theirs is None:
            return (math.nan, math.nan, math.nan)
        if mine.shape != theirs.shape:
            raise ValueError(f"delta needs results on the same items ({self.n} vs {other.n} items)")
        return paired_bootstrap_ci(
            mine.numpy(), theirs.numpy(), n_boot=n_boot, level=level, seed=seed
        )

    def __repr__(self) -> str:
        return (
            f"EvalResult(n={self.n}, accuracy={self.accuracy:.4f}, "
            f"restricted={self.restricted:.4f}, paper={self.paper:.4f})"
        )


def _check_metric(name: str) -> None:
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; valid: {METRICS}")


@dataclass(frozen=True)
class EncodedItems:
    """Token ids of a list of examples, encoded once and reused across many evaluations.

    `golds` are the correct answers' texts and `spellings` the token ids that spell each one
    (for the `paper` metric); empty when the items were built from ids alone.
    """

    prompts: list[list[int]]
    options: list[list[list[int]]]  # per item, per option (correct first), token ids
    golds: list[str] = field(default_factory=list)
    spellings: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def single_token(self) -> bool:
        return all(len(o) == 1 for opts in self.options for o in opts)

    @property
    def has_texts(self) -> bool:
        return len(self.golds) == len(self.prompts)

    def subset(self, idx: Sequence[int]) -> EncodedItems:
        """The items at `idx`, in that order."""
        texts = self.has_texts
        return EncodedItems(
            [self.prompts[i] for i in idx],
            [self.options[i] for i in idx],
            [self.golds[i] for i in idx] if texts else [],
            [self.spellings[i] for i in idx] if texts else [],
        )


def encode_items(
    model: HookedTransformer, examples: Sequence[Example], *, answer_space: AnswerSpace = "keep"
) -> EncodedItems:
    """Encode prompts and options; prompts longer than the context keep their last tokens.

    Answers are checked against how the tokenizer splits `prompt + answer` (`answers.check_answers`):
    a mismatch warns once with the fix, options that share a first token raise. With
    `answer_space="auto"` each answer gets the whitespace a model writes after its prompt.
    """
    if not examples:
        raise ValueError("evaluate() got no examples (is the split empty?)")
    examples, options = checked_options(model, examples, answer_space=answer_space)
    room = [model.cfg.n_ctx - max(len(o) for o in opts) for opts in options]
    prompts = fit_contexts([prompt_ids(model, ex.prompt) for ex in examples], room, what="prompt")
    tok = tokenizer_of(model)
    golds = [ex.answer for ex in examples]
    return EncodedItems(prompts, options, golds, [spelling_ids(tok, g) for g in golds])


def _prompt_pass(
    model: HookedTransformer,
    prompts: list[list[int]],
    prefix: PrefixCache | None,
    *,
    keep: bool = False,
) -> tuple[Tensor, TransformerLensKeyValueCache | None]:
    """Log-probs of the next token after each prompt, `[batch, vocab]`, and with `keep` the
    prompts' KV cache (row `i` holds prompt `i`) for their answers to continue; with a shared
    prefix, only the rest of each prompt runs, over a copy of the prefix's cache."""
    cfg = model.cfg
    if prefix is None:
        tokens, mask = left_pad(prompts, pad_id(model), cfg.device)
        cache = (
            TransformerLensKeyValueCache.init_cache(cfg, cfg.device, len(prompts)) if keep else None
        )
        resid = final_resid(model, tokens, attention_mask=mask, past_kv_cache=cache)
    else:
        tokens, mask, cache = prefix.extend(model, prompts, freeze=not keep)
        with continuing():
            resid = final_resid(model, tokens, attention_mask=mask, past_kv_cache=cache)
    return next_logp(model, resid), cache if keep else None


def _option_logprobs(
    model: HookedTransformer,
    items: EncodedItems,
    rows: range,
    prefix: PrefixCache | None = None,
    prompted: tuple[Tensor, TransformerLensKeyValueCache] | None = None,
) -> tuple[Tensor, list[list[int]]]:
    """Summed log-probs of every option of the items in `rows`, `[len(rows), n_options]`, and
    the argmax token at each position of each item's correct option (teacher-forced).

    Each prompt runs once (or pass `prompted`: `_prompt_pass(..., keep=True)` of these rows);
    its next-token log-probs score every option's first token, and the options' other tokens
    continue its KV cache, one row per option. Under a clamp (its clean pre-pass must see whole
    texts), and on the TransformerLens 4 bridge (no TransformerLens KV cache), every
    (prompt, option) runs in full instead (`_teacher_forced_logprobs`); the two agree (tested).
    """
    if _whole_texts(model):
        return _teacher_forced_logprobs(model, items, rows, prefix)
    prompts = [items.prompts[i] for i in rows]
    first, cache = prompted or _prompt_pass(model, prompts, prefix, keep=True)
    assert cache is not None
    n_opts = max(len(items.options[i]) for i in rows)
    out = torch.full((len(rows), n_opts), float("-inf"))
    first = first.cpu()  # one transfer, not one per option
    top = first.argmax(-1)
    gold_argmax = [[int(top[r])] for r in range(len(rows))]
    for r, i in enumerate(rows):
        for j, o in enumerate(items.options[i]):
            out[r, j] = first[r, o[0]]
    longer = [
        (r, j) for r, i in enumerate(rows) for j, o in enumerate(items.options[i]) if len(o) > 1
    ]
    if not longer:
        return out, gold_argmax
    rests = [items.options[rows[r]][j][:-1] for r, j in longer]
    width = max(len(t) for t in rests)
    tokens = torch.full((len(longer), width), pad_id(model), dtype=torch.long)
    attn = torch.zeros_like(tokens)
    for k, t in enumerate(rests):
        tokens[k, : len(t)] = torch.tensor(t)
        attn[k, : len(t)] = 1
    device = model.cfg.device
    rows_cache = select_rows(cache, torch.tensor([r for r, _ in longer], device=device))
    with scoring_answers():
        resid = final_resid(
            model, tokens.to(device), attention_mask=attn.to(device), past_kv_cache=rows_cache
        )
    logp = logits_of(model, resid).float().log_softmax(-1).cpu()
    for k, (r, j) in enumerate(longer):
        target = items.options[rows[r]][j][1:]
        picked = logp[k, torch.arange(len(target)), torch.tensor(target)]
        out[r, j] += picked.sum()
        if j == 0:
            gold_argmax[r] += logp[k, : len(target)].argmax(-1).tolist()
    return out, gold_argmax


def _teacher_forced_logprobs(
    model: HookedTransformer,
    items: EncodedItems,
    rows: range,
    prefix: PrefixCache | None = None,
) -> tuple[Tensor, list[list[int]]]:
    """`_option_logprobs` with every (item, option) one full row: the prompt left-padded to end
    at a shared column, the option right-padded after it, so `prompt_end` tells last-prompt-token
    steering where to act. With a shared prefix, the rows hold the rest of each prompt after it,
    over copies of its cache.
    """
    pairs = [(i, j) for i in rows for j in range(len(items.options[i]))]
    skip = prefix.length if prefix is not None else 0
    end = max(len(items.prompts[i]) for i in rows) - 1 - skip
    width = end + 1 + max(len(items.options[i][j]) for i, j in pairs)
    pad = pad_id(model)
    tokens = torch.full((len(pairs), width), pad, dtype=torch.long)
    attn = torch.zeros_like(tokens)
    for r, (i, j) in enumerate(pairs):
        p, o = items.prompts[i][skip:], items.options[i][j]
        tokens[r, end + 1 - len(p) : end + 1] = torch.tensor(p)
        tokens[r, end + 1 : end + 1 + len(o)] = torch.tensor(o)
        attn[r, end + 1 - len(p) : end + 1 + len(o)] = 1
    device = model.cfg.device
    extra = {} if prefix is None else {"past_kv_cache": repeat_cache(prefix.cache, len(pairs))}
    with prompt_end(end), continuing() if prefix is not None else nullcontext():
        resid = final_resid(model, tokens.to(device), attention_mask=attn.to(device), **extra)
    logp = logits_of(model, resid[:, end:-1]).float().log_softmax(-1)
    target = tokens[:, end + 1 :].to(device)
    picked = logp.gather(-1, target.unsqueeze(-1))[..., 0] * attn[:, end + 1 :].to(device)
    scores = picked.sum(-1).cpu()
    n_opts = max(len(items.options[i]) for i in rows)
    out = torch.full((len(rows), n_opts), float("-inf"))
    argmax = logp.argmax(-1).cpu()
    gold_argmax: list[list[int]] = [[] for _ in rows]
    for r, (i, j) in enumerate(pairs):
        out[i - rows.start, j] = scores[r]
        if j == 0:
            gold_argmax[i - rows.start] = argmax[r, : len(items.options[i][0])].tolist()
    return out, gold_argmax


def evaluate(
    model: HookedTransformer,
    examples: Sequence[Example] | EncodedItems,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> EvalResult:
    """Score `examples` (a split such as `task.test`) under the three protocols.

    Pass `encode_items(model, examples)` instead of the examples to skip re-tokenizing in loops.
    """
    items = examples if isinstance(examples, EncodedItems) else encode_items(model, examples)
    n = len(items.prompts)
    order = sorted(range(n), key=lambda i: -len(items.prompts[i]))
    correct = torch.zeros(n, dtype=torch.bool)
    restricted = torch.zeros(n, dtype=torch.bool)
    paper = torch.zeros(n, dtype=torch.bool)
    top = torch.zeros(n, dtype=torch.long)
    answer_lp = torch.zeros(n)
    chunks = batches(n, batch_size)
    with torch.inference_mode(), matmul_layout(model):
        prefix = shared_prefix(model, items.prompts)
        for chunk in tqdm(
            chunks, desc="evaluating", disable=not progress or len(chunks) < 2, leave=False
        ):
            idx = [order[i] for i in chunk]
            multi = not all(len(o) == 1 for i in idx for o in items.options[i])
            keep = multi and not _whole_texts(model)
            first, cache = _prompt_pass(model, [items.prompts[i] for i in idx], prefix, keep=keep)
            logp = first.cpu()
            top[idx] = logp.argmax(-1)
            scored = score_first_tokens(logp, items, idx)
            correct[idx], answer_lp[idx], first_restricted, first_paper = scored
            if first_paper is not None:
                paper[idx] = first_paper
            if not multi:
                restricted[idx] = first_restricted
                continue
            prompted = (first, cache) if cache is not None else None
            sub, gold_argmax = _option_logprobs(
                model, items.subset(idx), range(len(idx)), prefix, prompted
            )
            scores = [row[: len(items.options[i])] for row, i in zip(sub, idx, strict=True)]
            restricted[idx] = torch.tensor([bool((s[0] > s[1:]).all()) for s in scores])
            if items.has_texts:  # golds no single token spells: SADI's teacher-forced match
                tok = tokenizer_of(model)
                for r, i in enumerate(idx):
                    if not items.spellings[i]:
                        paper[i] = matches(tok, gold_argmax[r], items.golds[i])
    if items.has_texts:
        firsts = [opts[0][0] for opts in items.options]
        warn_near_misses(tokenizer_of(model), top.tolist(), firsts, items.golds)
    return EvalResult(correct, restricted, answer_lp, paper if items.has_texts else None)


def _whole_texts(model: HookedTransformer) -> bool:
    """Whether options must run as whole texts, not over their prompt's KV cache: under a clamp
    (its clean pre-pass sees whole texts) and on the bridge (no TransformerLens KV cache)."""
    return prepass_active(model) or is_bridge(model)


def score_first_tokens(
    logp: Float[Tensor, "batch vocab"], items: EncodedItems, idx: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Per row: full-vocabulary argmax hit, gold first-token log-prob, first-token option win,
    and the papers' string match of the argmax (None without answer texts; False for golds no
    single token spells, which `evaluate` scores at their answer positions)."""
    firsts = [[o[0] for o in items.options[i]] for i in idx]
    gold = torch.tensor([f[0] for f in firsts])
    finite = ~(torch.isnan(logp) | torch.isposinf(logp)).any(-1)  # -inf is a valid log-prob
    if not finite.all():
        warnings.warn(
            "Non-finite logits for some items (counted as wrong); a steering strength this "
            "large breaks the model's forward pass.",
            stacklevel=3,
        )
    top = logp.argmax(-1)
    hit = (top == gold) & finite
    gold_lp = logp.gather(-1, gold.unsqueeze(-1))[:, 0]
    wins = torch.tensor(
        [bool((logp[r, f[0]] > logp[r, f[1:]]).all()) for r, f in enumerate(firsts)]
    )
    paper = None
    if items.has_texts:
        spelled = [int(top[r]) in items.spellings[i] for r, i in enumerate(idx)]
        paper = torch.tensor(spelled, dtype=torch.bool) & finite
    return hit, gold_lp, wins & finite, paper
