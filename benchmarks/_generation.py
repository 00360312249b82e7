"""Section 7's generation rows: `steerlens.generate` unsteered and steered against Hugging Face
`generate` of the same weights, compared by decoding steps per second."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformer_lens import HookedTransformer

from steerlens import generate
from steerlens.tokens import pad_id, prompt_ids

if __package__:  # python -m benchmarks.run
    from ._harness import Clock, race
    from ._peers import padded
else:  # python benchmarks/run.py: this directory is on sys.path
    from _harness import Clock, race
    from _peers import padded


def decoded(rows: int, lengths: Sequence[int], ended: Sequence[bool], limit: int) -> int:
    """Positions a batched greedy loop computed: rows x steps, where it ran until the longest row
    ended (a row that ended on EOS took one more step to produce it) or hit the limit. Rows that
    end early still ride along, so tokens per second would reward whichever variant stops first."""
    return rows * min(limit, max(n + int(e) for n, e in zip(lengths, ended, strict=True)))


def bench_generation(
    model: HookedTransformer,
    hf: Any,
    prompts: Sequence[str],
    mask: Any,
    strength: float,
    clock: Clock,
    new_tokens: int,
) -> dict[str, Any]:
    """Greedy generation of up to `new_tokens` tokens for each prompt, in one batch: steerlens
    unsteered, steered with a fixed vector at every position (each generated token included), and
    Hugging Face's `generate` of the same weights. Steering changes where texts end, so the rate
    compared is of the decoding steps alone: positions decoded after the first (`decoded`) over
    the time beyond a one-token run of the same variant (the prefill and its first token)."""
    positions: dict[str, int] = {}
    tokens: dict[str, int] = {}

    def ours(steered: bool, limit: int) -> Callable[[], None]:
        name = ("steered" if steered else "unsteered") + ("" if limit > 1 else "_prefill")

        def run() -> None:
            gen = generate(
                model,
                prompts,
                mask=mask if steered else None,
                strength=strength,
                max_new_tokens=limit,
                batch_size=len(prompts),
                progress=False,
            )
            lengths = [len(t) for t in gen.tokens]
            ended = [s == "eos" for s in gen.stopped]
            positions[name] = decoded(len(prompts), lengths, ended, limit)
            tokens[name] = sum(lengths)

        return run

    tok = model.tokenizer
    assert tok is not None
    ids = [prompt_ids(model, p) for p in prompts]
    inputs = padded(ids, pad_id(model), hf.device)
    inputs.pop("position_ids")

    def theirs(limit: int) -> Callable[[], None]:
        name = "hf_generate" + ("" if limit > 1 else "_prefill")

        def run() -> None:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gen = hf.generate(
                    **inputs, max_new_tokens=limit, do_sample=False, pad_token_id=pad_id(model)
                )
            new = gen[:, inputs["input_ids"].shape[1] :]
            positions[name] = int(new.numel())
            tokens[name] = int(sum(int((row != tok.eos_token_id).cumprod(0).sum()) for row in new))

        return run

    t = race(
        clock,
        1,
        unsteered=ours(False, new_tokens),
        steered=ours(True, new_tokens),
        hf_generate=theirs(new_tokens),
        unsteered_prefill=ours(False, 1),
        steered_prefill=ours(True, 1),
        hf_generate_prefill=theirs(1),
    )
    rows = len(prompts)
    rate = {
        k: (positions[k] - rows) / max(t[k] - t[f"{k}_prefill"], 1e-9)
        for k in ("unsteered", "steered", "hf_generate")
    }
    return {
        "n_prompts": rows,
        "max_new_tokens": new_tokens,
        "tokens": {k: v for k, v in tokens.items() if not k.endswith("_prefill")},
        "positions_decoded": {k: v for k, v in positions.items() if not k.endswith("_prefill")},
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "positions_per_second": {k: round(v, 1) for k, v in rate.items()},
        "steered_vs_unsteered": round(rate["steered"] / rate["unsteered"], 3),
        "prefill_steered_vs_unsteered": round(t["steered_prefill"] / t["unsteered_prefill"], 3),
        "unsteered_vs_hf_generate": round(rate["unsteered"] / rate["hf_generate"], 2),
    }
