"""Batched generation, steered or not: left-padded batches over a KV cache.

`generate(model, prompts, mask=..., strength=...)` applies a mask while generating exactly as
`steer` does in any forward pass: SADI's last-token masks steer the prefill's last token (or
every generated token with `every_generated=True`), AUSteer's every position of every pass,
CAA-as-released every position from the prompt's end on. Greedy by default; with a temperature,
each prompt samples from its own generator seeded by `seed` and the prompt's index, so a
sampled text does not depend on the batch it ran in.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from ._backend import HookedTransformer, is_bridge
from ._passes import final_resid, matmul_layout, next_logp
from .mask import Mask
from .steer import prompt_end, steer
from .tokens import batches, fit_contexts, left_pad, pad_id, prompt_ids, tokenizer_of

STOP_REASONS = ("stop", "eos", "length")


@dataclass(frozen=True)
class Generation:
    """Generated continuations, one per prompt.

    Attributes:
        texts: each continuation, cut before the first stop string (EOS not included).
        tokens: the generated ids of each continuation (up to the one that completed a stop
            string or before EOS).
        logprobs: log-probability of each generated token under the (steered) model.
        stopped: why each generation ended: "stop" (a stop string), "eos" or "length".
        prompts: the prompt ids each continuation follows (a prompt too long for the context and
            the new tokens keeps its last tokens).
    """

    texts: list[str]
    tokens: list[list[int]]
    logprobs: list[list[float]]
    stopped: list[str]
    prompts: list[list[int]]

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        counts = {r: self.stopped.count(r) for r in STOP_REASONS if r in self.stopped}
        return f"Generation(n={len(self)}, stopped={counts})"


def _encode(
    model: HookedTransformer, prompts: Sequence[str] | Sequence[Sequence[int]]
) -> list[list[int]]:
    if isinstance(prompts, str):
        raise TypeError("generate() takes a list of prompts, not a single string")
    seqs = [prompt_ids(model, p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
    if not seqs:
        raise ValueError("generate() got no prompts")
    if any(not s for s in seqs):
        raise ValueError("generate() got an empty prompt")
    return seqs


def _check(max_new_tokens: int, temperature: float, batch_size: int, stop: Sequence[str]) -> None:
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(stop, str) or any(not isinstance(s, str) or not s for s in stop):
        raise ValueError(f"stop must be a list of non-empty strings, got {stop!r}")


def generate(
    model: HookedTransformer,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    *,
    mask: Mask | None = None,
    strength: float = 0.0,
    every_generated: bool = False,
    max_new_tokens: int = 50,
    stop: Sequence[str] = (),
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
    use_cache: bool | None = None,
    progress: bool = True,
) -> Generation:
    """Generate a continuation of each prompt, steered by `mask` at `strength` if given.

    Args:
        prompts: strings (tokenized with the model's BOS convention) or token-id lists.
        mask, strength, every_generated: as `steer`; no mask generates unsteered.
        max_new_tokens: the most tokens generated per prompt.
        stop: strings that end a generation; the text is cut before the first one.
        temperature: 0 for greedy decoding, else sampling from softmax(logits / temperature).
        seed: sampling seed; prompt `i` samples from a generator seeded with `seed + i`.
        batch_size: prompts per forward pass (left-padded).
        use_cache: extend a KV cache each step (the default on TransformerLens 3); False re-runs
            the whole sequence every step with the prompt's end marked (`prompt_end`), steering
            as the cached run does (slower; the only way on the TransformerLens 4 bridge, which
            has no TransformerLens KV cache).
    """
    _check(max_new_tokens, temperature, batch_size, stop)
    bridge = is_bridge(model)
    if use_cache is None:
        use_cache = not bridge
    if use_cache and bridge:
        raise ValueError(
            "use_cache=True needs TransformerLens' KV cache, which a TransformerLens 4 bridge "
            "ignores; leave use_cache unset (the bridge re-runs the whole sequence each step)"
        )
    # without a KV cache each step re-runs the whole sequence, which holds the prompt's last token
    # and every generated one: steering them all is steering "from" the prompt's end on
    steers_generated = mask is not None and (every_generated or mask.positions == "each_last")
    whole = not use_cache and steers_generated
    seqs = fit_contexts(_encode(model, prompts), model.cfg.n_ctx - max_new_tokens)
    eos = tokenizer_of(model).eos_token_id
    out = Generation(
        [""] * len(seqs), [[] for _ in seqs], [[] for _ in seqs], [""] * len(seqs), seqs
    )
    steering = (
        nullcontext()
        if mask is None
        else steer(model, mask, strength, positions="from")
        if whole
        else steer(model, mask, strength, every_generated=every_generated)
    )
    chunks = batches(len(seqs), batch_size)
    with steering, torch.inference_mode(), matmul_layout(model):
        for chunk in tqdm(chunks, desc="generating", disable=not progress, leave=False):
            _generate_batch(
                model,
                seqs,
                list(chunk),
                out,
                max_new_tokens,
                stop,
                temperature,
                seed,
                eos,
                use_cache,
            )
    return out


def _generate_batch(
    model: HookedTransformer,
    seqs: list[list[int]],
    rows: list[int],
    out: Generation,
    max_new_tokens: int,
    stop: Sequence[str],
    temperature: float,
    seed: int,
    eos: int | None,
    use_cache: bool,
) -> None:
    cfg, pad = model.cfg, pad_id(model)
    tokens, attention = left_pad([seqs[i] for i in rows], pad, cfg.device)
    gens = [torch.Generator().manual_seed(seed + i) for i in rows] if temperature > 0 else []
    cache = (
        TransformerLensKeyValueCache.init_cache(cfg, cfg.device, len(rows)) if use_cache else None
    )
    done = [False] * len(rows)
    decoder = tokenizer_of(model)
    step_input, step_mask = tokens, attention
    end = tokens.shape[1] - 1  # the prompts' last column (left-padded)
    for _ in range(max_new_tokens):
        with nullcontext() if use_cache else prompt_end(end):
            resid = final_resid(model, step_input, attention_mask=step_mask, past_kv_cache=cache)
        logp = next_logp(model, resid).cpu()  # unembeds the last position only
        chosen = _choose(logp, temperature, gens)
        for j, i in enumerate(rows):
            if done[j]:
                continue
            token = int(chosen[j])
            if eos is not None and token == eos:
                done[j], out.stopped[i] = True, "eos"
                continue
            out.tokens[i].append(token)
            out.logprobs[i].append(float(logp[j, token]))
            text = str(decoder.decode(out.tokens[i]))
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text, done[j], out.stopped[i] = text[:cut], True, "stop"
            out.texts[i] = text
        if all(done):
            break
        new = chosen.to(tokens.device).unsqueeze(1)
        if use_cache:
            step_input, step_mask = new, torch.ones_like(new)
        else:
            step_input = torch.cat([step_input, new], dim=1)
            step_mask = torch.cat([step_mask, torch.ones_like(new)], dim=1)
    for j, i in enumerate(rows):
        if not done[j]:
            out.stopped[i] = "length"


def _choose(logp: Tensor, temperature: float, gens: list[torch.Generator]) -> Tensor:
    if temperature == 0:
        return logp.argmax(-1)
    probs = (logp / temperature).softmax(-1)
    return torch.stack([torch.multinomial(probs[j], 1, generator=g)[0] for j, g in enumerate(gens)])
