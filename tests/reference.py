"""A slow, obvious re-derivation of SADI / AUSteer in plain torch, for parity tests.

Everything here runs one example at a time, without padding, through `model.run_with_cache` or
`model.run_with_hooks`, with loops where a loop is clearer than a vectorised expression. From
steerlens it takes only the tokenization helpers (`prompt_ids`, `answer_ids`: the texts are
defined as "prompt ids + answer ids as steerlens.tokens builds them"), `Example` for test data,
and, in `mask_hooks`, a Mask's plain data (units, weights, vectors). No collection, selection,
steering or evaluation code of the package is used, so a test comparing the package with this
module compares two derivations.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from steerlens._backend import HookedTransformer
from steerlens.tasks import Example
from steerlens.tokens import answer_ids, prompt_ids

HOOKS = {
    "head": "attn.hook_z",
    "neuron": "mlp.hook_post",
    "mlp_out": "hook_mlp_out",
    "resid": "hook_resid_post",
    "gate": "mlp.hook_post",  # steered here; read as act_fn(mlp.hook_pre)
}
ACT_FNS = {"silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu}
Hook = tuple[str, Callable[[Tensor, object], Tensor]]


def name(site: str, layer: int) -> str:
    """Hook name of a canonical site at a layer."""
    return f"blocks.{layer}.{HOOKS[site]}"


# ------------------------------------------------------------------------------------------------
# texts and activations
# ------------------------------------------------------------------------------------------------


def text_ids(
    model: HookedTransformer, prompt: str, answer: str, pair_format: str = "template"
) -> list[int]:
    """Prompt ids (with BOS) followed by the answer's ids; or, as SADI's released code writes a
    text ("sadi": stripped prompt, one space, stripped answer) or AUSteer's ("austeer": prompt
    and stripped answer, no separator), that string tokenized whole."""
    if pair_format == "sadi":
        return prompt_ids(model, prompt.strip() + " " + answer.strip())
    if pair_format == "austeer":
        return prompt_ids(model, prompt + answer.strip())
    return prompt_ids(model, prompt) + answer_ids(model, answer)


def last_token_acts(model: HookedTransformer, ids: Sequence[int], site: str) -> Tensor:
    """`[layer, *unit]` activation at the last token of one unpadded sequence ("gate": the MLP's
    activation function applied to `hook_pre`)."""
    read = "mlp.hook_pre" if site == "gate" else HOOKS[site]
    hooks = [f"blocks.{layer}.{read}" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([list(ids)]), names_filter=hooks)
    acts = [cache[h][0, -1].float().cpu() for h in hooks]
    if site == "gate":
        acts = [ACT_FNS[str(model.cfg.act_fn)](a) for a in acts]
    return torch.stack(acts)


def pair_differences(
    model: HookedTransformer,
    pairs: Sequence[tuple[str, str, str]],
    site: str,
    pair_format: str = "template",
) -> Tensor:
    """`[pair, layer, *unit]`: a(prompt + answer) - a(prompt + wrong), one pair at a time."""
    out = []
    for prompt, answer, wrong in pairs:
        pos = last_token_acts(model, text_ids(model, prompt, answer, pair_format), site)
        neg = last_token_acts(model, text_ids(model, prompt, wrong, pair_format), site)
        out.append(pos - neg)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------
# selection
# ------------------------------------------------------------------------------------------------


def sadi_scores(pair_diffs: Tensor, site: str, *, by: str = "signed") -> Tensor:
    """`[layer, unit]` SADI score: mean over pairs; a head's score averages its d_head entries."""
    n_pairs, n_layers = pair_diffs.shape[0], pair_diffs.shape[1]
    total = torch.zeros(pair_diffs.shape[1:], dtype=torch.float64)
    for i in range(n_pairs):
        total += pair_diffs[i].double()
    mean = total / n_pairs
    if site == "head":
        mean = torch.stack([mean[layer].sum(-1) / mean.shape[-1] for layer in range(n_layers)])
    return (mean.abs() if by == "abs" else mean).float()


def top_units(scores: Tensor, k: int) -> list[tuple[int, int]]:
    """The k best `(layer, index)` by score; ties go to the lower layer, then the lower index."""
    n_layers, n_units = scores.shape
    units = [(layer, i) for layer in range(n_layers) for i in range(n_units)]
    units.sort(key=lambda u: (-float(scores[u[0], u[1]]), u[0], u[1]))
    return units[:k]


def austeer_stats(pair_diffs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`(r_pos, r_neg, s, beta)` per flattened unit `[layer, unit]`, counting pair by pair."""
    flat = pair_diffs.flatten(2)  # [pair, layer, unit]
    n_pairs, n_layers, n_units = flat.shape
    r_pos = torch.zeros(n_layers, n_units)
    r_neg = torch.zeros(n_layers, n_units)
    for layer in range(n_layers):
        for u in range(n_units):
            values = [float(flat[j, layer, u]) for j in range(n_pairs)]
            r_pos[layer, u] = sum(v > 0 for v in values) / n_pairs
            r_neg[layer, u] = sum(v < 0 for v in values) / n_pairs
    return (r_pos, r_neg, *austeer_from_rates(r_pos, r_neg))


def austeer_from_rates(r_pos: Tensor, r_neg: Tensor) -> tuple[Tensor, Tensor]:
    """`s = max(r_pos, r_neg)`; `beta = +s` unless negatives are the strict majority."""
    s = torch.zeros_like(r_pos)
    beta = torch.zeros_like(r_pos)
    for layer in range(r_pos.shape[0]):
        for u in range(r_pos.shape[1]):
            p, n = float(r_pos[layer, u]), float(r_neg[layer, u])
            s[layer, u] = max(p, n)
            beta[layer, u] = -n if n > p else p
    return s, beta


# ------------------------------------------------------------------------------------------------
# steering, by explicit hooks
# ------------------------------------------------------------------------------------------------


def _columns(act: Tensor, column: int | Sequence[int] | None) -> list[int]:
    if column is None:
        return list(range(act.shape[1]))
    return [column] if isinstance(column, int) else list(column)


def scale_hooks(
    site: str,
    units: Sequence[tuple[int, int]],
    factors: Sequence[float],
    *,
    unit: str,
    column: int | Sequence[int] | None,
) -> list[Hook]:
    """Multiply each selected unit by its factor at `column` (None: every position).

    `unit="head"` scales a whole head's d_head vector; `unit="dim"` one coordinate (for the head
    site, coordinate `h * d_head + d` of the flattened hook_z).
    """
    by_layer: dict[int, list[tuple[int, float]]] = {}
    for (layer, idx), f in zip(units, factors, strict=True):
        by_layer.setdefault(layer, []).append((idx, float(f)))

    def make(entries: list[tuple[int, float]]) -> Callable[[Tensor, object], Tensor]:
        def hook(act: Tensor, hook: object) -> Tensor:
            out = act.clone()
            for col in _columns(act, column):
                for idx, f in entries:
                    if site == "head" and unit == "head":
                        out[:, col, idx, :] = act[:, col, idx, :] * f
                    elif site == "head":
                        h, d = divmod(idx, act.shape[-1])
                        out[:, col, h, d] = act[:, col, h, d] * f
                    else:
                        out[:, col, idx] = act[:, col, idx] * f
            return out

        return hook

    return [(name(site, layer), make(entries)) for layer, entries in by_layer.items()]


def add_hooks(
    site: str,
    units: Sequence[tuple[int, int]],
    vectors: Sequence[Tensor],
    *,
    unit: str,
    column: int | Sequence[int] | None,
) -> list[Hook]:
    """Add `vectors[i]` (a d_head vector for heads, a scalar for dims) to each selected unit."""
    by_layer: dict[int, list[tuple[int, Tensor]]] = {}
    for (layer, idx), v in zip(units, vectors, strict=True):
        by_layer.setdefault(layer, []).append((idx, v))

    def make(entries: list[tuple[int, Tensor]]) -> Callable[[Tensor, object], Tensor]:
        def hook(act: Tensor, hook: object) -> Tensor:
            out = act.clone()
            for col in _columns(act, column):
                for idx, v in entries:
                    if site == "head" and unit == "head":
                        out[:, col, idx, :] = act[:, col, idx, :] + v.reshape(-1).to(act.device)
                    elif site == "head":
                        h, d = divmod(idx, act.shape[-1])
                        out[:, col, h, d] = act[:, col, h, d] + v.reshape(()).to(act.device)
                    else:
                        out[:, col, idx] = act[:, col, idx] + v.reshape(()).to(act.device)
            return out

        return hook

    return [(name(site, layer), make(entries)) for layer, entries in by_layer.items()]


def mask_hooks(mask, strength: float, column: int | Sequence[int] | None) -> list[Hook]:
    """Explicit hooks applying a steerlens `Mask`'s units with the papers' formulas.

    Scale masks multiply unit i by `1 + strength * weight_i` (SADI: weight 1, so `1 + delta`;
    AUSteer: weight beta_i, so `1 + alpha * beta_i`); add masks add `strength * weight_i * v_i`.
    Only the mask's data (units, weights, vectors) is read, none of its steering code.
    """
    units = list(zip(mask.layers.tolist(), mask.indices.tolist(), strict=True))
    if mask.operation == "scale":
        factors = [1 + strength * float(w) for w in mask.weights]
        return scale_hooks(mask.site, units, factors, unit=mask.unit, column=column)
    vectors = [strength * float(w) * v for w, v in zip(mask.weights, mask.vectors, strict=True)]
    return add_hooks(mask.site, units, vectors, unit=mask.unit, column=column)


def released_sadi_hooks(
    model: HookedTransformer,
    prompt: Sequence[int],
    site: str,
    units: Sequence[tuple[int, int]],
    strength: float,
    *,
    unit: str,
) -> list[Hook]:
    """SADI as its authors' code steers (their `strength` is steerlens' 1 + delta).

    Run the prompt alone and keep the site at its last token in every layer; in the steered run,
    overwrite that token of the site in every layer with the kept values, the selected units
    multiplied by `strength`. At site "gate" the kept value is the MLP's activation-function
    output; a gated MLP then multiplies it by its live linear branch and adds `b_in`.
    """
    n_layers, column = model.cfg.n_layers, len(prompt) - 1
    read = "mlp.hook_pre" if site == "gate" else HOOKS[site]
    names = [f"blocks.{layer}.{read}" for layer in range(n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([list(prompt)]), names_filter=names)
    kept = []
    for layer in range(n_layers):
        value = cache[names[layer]][0, -1].clone()
        if site == "gate":
            value = ACT_FNS[str(model.cfg.act_fn)](value)
        kept.append(value)
    for layer, idx in units:
        if site == "head" and unit == "head":
            kept[layer][idx, :] = kept[layer][idx, :] * strength
        elif site == "head":
            h, d = divmod(idx, kept[layer].shape[-1])
            kept[layer][h, d] = kept[layer][h, d] * strength
        else:
            kept[layer][idx] = kept[layer][idx] * strength
    gated = site == "gate" and bool(model.cfg.gated_mlp)
    linear: dict[int, Tensor] = {}

    def keep_linear(layer: int) -> Callable[[Tensor, object], Tensor]:
        def hook(act: Tensor, hook: object) -> Tensor:
            linear[layer] = act[0, column].clone()
            return act

        return hook

    def overwrite(layer: int) -> Callable[[Tensor, object], Tensor]:
        def hook(act: Tensor, hook: object) -> Tensor:
            out = act.clone()
            value = kept[layer]
            if gated:
                bias = getattr(model.blocks[layer].mlp, "b_in", None)  # a bridge: inside linear
                value = value * linear[layer] + (0 if bias is None else bias)
            out[0, column] = value
            return out

        return hook

    hooks: list[Hook] = []
    for layer in range(n_layers):
        if gated:
            hooks.append((f"blocks.{layer}.mlp.hook_pre_linear", keep_linear(layer)))
        hooks.append((name(site, layer), overwrite(layer)))
    return hooks


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------


def next_token_logprobs(
    model: HookedTransformer, ids: Sequence[int], hooks: Sequence[Hook] = ()
) -> Tensor:
    """Log-probs over the vocabulary after the last token of one unpadded sequence."""
    with torch.no_grad():
        logits = model.run_with_hooks(torch.tensor([list(ids)]), fwd_hooks=list(hooks))
    return logits[0, -1].float().log_softmax(-1).cpu()


def option_logprob(
    model: HookedTransformer,
    prompt: Sequence[int],
    option: Sequence[int],
    hooks: Sequence[Hook] = (),
) -> float:
    """Sum over the option's tokens of log p(token | prompt + previous option tokens)."""
    ids = list(prompt) + list(option)
    with torch.no_grad():
        logits = model.run_with_hooks(torch.tensor([ids]), fwd_hooks=list(hooks))
    logp = logits[0].float().log_softmax(-1)
    total = 0.0
    for j, tok in enumerate(option):
        total += float(logp[len(prompt) - 1 + j, tok])
    return total


def evaluate_one(
    model: HookedTransformer,
    prompt: str,
    options: Sequence[str],
    hooks_for: Callable[[int], Sequence[Hook]] | None = None,
) -> dict[str, object]:
    """One item: full-vocab argmax hit, gold first-token log-prob, restricted win, option scores.

    `hooks_for(column)` builds the steering hooks given the column of the last prompt token.
    """
    p = prompt_ids(model, prompt)
    opts = [answer_ids(model, o) for o in options]
    hooks = list(hooks_for(len(p) - 1)) if hooks_for else []
    logp = next_token_logprobs(model, p, hooks)
    scores = [option_logprob(model, p, o, hooks) for o in opts]
    return {
        "hit": int(logp.argmax()) == opts[0][0],
        "gold_lp": float(logp[opts[0][0]]),
        "win": all(scores[0] > s for s in scores[1:]),
        "scores": scores,
    }


# ------------------------------------------------------------------------------------------------
# test data
# ------------------------------------------------------------------------------------------------


def make_examples(
    n: int,
    *,
    seed: int = 0,
    answers: tuple[str, str] = ("Y", "N"),
    min_len: int = 2,
    max_len: int = 14,
) -> list[Example]:
    """`n` examples with prompts of mixed lengths; the correct answer alternates between the two."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz "
    out = []
    for i in range(n):
        body = "".join(rng.choice(letters) for _ in range(rng.randint(min_len, max_len)))
        a, b = answers if i % 2 == 0 else answers[::-1]
        out.append(Example(prompt=f"{body}:", answer=a, wrong=(b,)))
    return out
