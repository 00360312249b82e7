"""Section 7: the tools a researcher would otherwise run, beside steerlens on the same model, texts
and batches, in the same process.

- The plain Hugging Face forward of the same weights, with forward hooks keeping every layer's
  last-token output: the floor every Hugging Face-based steering library (repeng, pyvene,
  steering-vectors) runs on.
- nnsight 0.8 (`pip install -e .[bench]`), a real interpretability library, doing the same jobs
  through its tracing API. Skipped, and said so, where it is not installed.
- Generation: `steerlens.generate` unsteered and steered, and Hugging Face `generate`
  (`_generation.py`).

Every peer computes what steerlens computes: the mean last-token difference over the pairs at
every layer's residual output, the gold answer's log-probability with a fixed vector added at one
layer; the section asserts that they agree before it reports a ratio.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from steerlens import (
    EncodedItems,
    Example,
    caa_mask,
    collect_differences,
    evaluate,
    steer,
)
from steerlens.models import cache_dir, embedded_gguf_path
from steerlens.pairs import contrastive_ids
from steerlens.tokens import batches, left_pad, pad_id, prompt_ids

if __package__:  # python -m benchmarks.run
    from ._harness import Clock, race
else:  # python benchmarks/run.py: this directory is on sys.path
    from _harness import Clock, race

Ids = Sequence[Sequence[int]]


# ---- the Hugging Face model of the same weights ------------------------------------------------


def hf_model(shape_only: str | None = None) -> Any:
    """The embedded model as a Hugging Face `LlamaForCausalLM` (dequantized from its GGUF once,
    then kept in steerlens' cache), or, for `--shape-only DIR`, random weights of its shape (the
    benchmark then builds its TransformerLens model from these, so both hold the same weights)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if shape_only:
        cfg = LlamaConfig.from_dict(json.loads((Path(shape_only) / "hf_config.json").read_text()))
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).float().eval()
    gguf = embedded_gguf_path()
    saved = cache_dir() / f"{gguf.stem}-hf"
    if not (saved / "config.json").exists():
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        config = LlamaConfig.from_dict(
            {k: v for k, v in quantized.config.to_dict().items() if k != "quantization_config"}
        )
        plain = LlamaForCausalLM(config)  # the dequantized weights, savable
        plain.load_state_dict(quantized.state_dict())
        plain.save_pretrained(str(saved))
    return AutoModelForCausalLM.from_pretrained(str(saved), dtype=torch.float32).eval()


def padded(ids: Ids, pad: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded inputs for Hugging Face, positions counted from each row's first real token
    (as TransformerLens does with an attention mask; Hugging Face's forward would count pads)."""
    tokens, mask = left_pad(ids, pad, device)
    return {
        "input_ids": tokens,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
    }


def check_same_model(model: HookedTransformer, hf: Any, texts: Ids) -> float:
    """Max |logit difference| between the two models on `texts` (asserted below 1e-3)."""
    with torch.inference_mode():
        inputs = padded(texts, pad_id(model), model.cfg.device)
        ours = model(inputs["input_ids"], attention_mask=inputs["attention_mask"])[:, -1]
        theirs = hf(**inputs).logits[:, -1]
    diff = float((ours - theirs).abs().max())
    assert diff < 1e-3, f"the Hugging Face and TransformerLens models differ by {diff}"
    return diff


# ---- collection: every layer's last-token residual output, mean difference over pairs ----------


@contextlib.contextmanager
def last_token_hooks(
    layers: Sequence[torch.nn.Module], into: list[list[torch.Tensor]]
) -> Iterator[None]:
    """Forward hooks that append each layer's last-token output to `into[layer]`."""

    def keep(i: int) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            into[i].append(hidden[:, -1].clone())

        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def mean_difference(per_layer: list[list[torch.Tensor]]) -> torch.Tensor:
    """[layer, d_model] mean of (positive - negative) from rows stored as alternating sides."""
    acts = torch.stack([torch.cat(rows) for rows in per_layer])  # layer, text, d_model
    return (acts[:, 0::2] - acts[:, 1::2]).mean(1)


def hf_collect(hf: Any, texts: Ids, batch_size: int, pad: int) -> torch.Tensor:
    layers = hf.model.layers
    kept: list[list[torch.Tensor]] = [[] for _ in layers]
    with torch.inference_mode(), last_token_hooks(layers, kept):
        for chunk in batches(len(texts), batch_size):
            hf.model(**padded([texts[i] for i in chunk], pad, hf.device))
    return mean_difference(kept)


def nnsight_version() -> str | None:
    """nnsight's version, or None where the `bench` extra is not installed."""
    try:
        import nnsight
    except ImportError:
        return None
    return str(nnsight.__version__)


def nnsight_available() -> bool:
    return nnsight_version() is not None


def wrap_nnsight(hf: Any) -> Any:
    from nnsight import NNsight

    return NNsight(hf)


def nnsight_collect(wrapped: Any, texts: Ids, batch_size: int, pad: int) -> torch.Tensor:
    base = wrapped.model
    n_layers = len(base.layers)
    kept: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
    with torch.inference_mode():
        for chunk in batches(len(texts), batch_size):
            inputs = padded([texts[i] for i in chunk], pad, wrapped.device)
            saved = []
            with wrapped.trace(**inputs):
                for layer in range(n_layers):
                    saved.append(base.layers[layer].output[:, -1].save())
            for layer in range(n_layers):
                kept[layer].append(saved[layer])
    return mean_difference(kept)


# ---- evaluation with a fixed vector added at one layer, every position ------------------------


def gold_logprobs(logits: torch.Tensor, golds: Sequence[int]) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), -1)
    return logp[torch.arange(len(golds)), torch.tensor(golds, device=logp.device)]


def hf_steered_eval(
    hf: Any, items: EncodedItems, layer: int, vector: torch.Tensor | None, batch_size: int, pad: int
) -> torch.Tensor:
    """The gold answer's log-probability with `vector` added to `layer`'s output everywhere."""

    def add(_module: torch.nn.Module, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0] + vector, *output[1:])
        return output + vector

    handle = hf.model.layers[layer].register_forward_hook(add) if vector is not None else None
    out = []
    try:
        with torch.inference_mode():
            for chunk in batches(len(items.prompts), batch_size):
                inputs = padded([items.prompts[i] for i in chunk], pad, hf.device)
                hidden = hf.model(**inputs).last_hidden_state[:, -1]
                golds = [items.options[i][0][0] for i in chunk]
                out.append(gold_logprobs(hf.lm_head(hidden), golds))
    finally:
        if handle is not None:
            handle.remove()
    return torch.cat(out)


def nnsight_steered_eval(
    wrapped: Any, items: EncodedItems, layer: int, vector: torch.Tensor, batch_size: int, pad: int
) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for chunk in batches(len(items.prompts), batch_size):
            inputs = padded([items.prompts[i] for i in chunk], pad, wrapped.device)
            with wrapped.trace(**inputs, logits_to_keep=1):
                wrapped.model.layers[layer].output[:] += vector
                last = wrapped.lm_head.output[:, -1].save()
            out.append(gold_logprobs(last, [items.options[i][0][0] for i in chunk]))
    return torch.cat(out)


# ---- the section -------------------------------------------------------------------------------


def bench_peers(
    model: HookedTransformer,
    hf: Any,
    examples: Sequence[Example],
    items: EncodedItems,
    prompts: Sequence[str],
    clock: Clock,
    *,
    rounds: int,
    batch_size: int = 16,
    new_tokens: int = 32,
) -> dict[str, Any]:
    """Collection (resid, every layer, last token), steered evaluation (CAA's mean difference at
    the middle layer, every position) and generation, each against the Hugging Face floor."""
    pad = pad_id(model)
    pairs = contrastive_ids(model, examples)
    texts = [t for p in pairs for t in p]  # positive, negative, positive, ...
    out: dict[str, Any] = {"n_pairs": len(pairs), "batch_texts": batch_size}
    out["max_abs_logit_diff_hf"] = check_same_model(model, hf, texts[:8])
    wrapped = wrap_nnsight(hf) if nnsight_available() else None
    out["nnsight"] = nnsight_version()

    # collection: the same texts and batches; steerlens shares each pair's prompt
    ours = collect_differences(model, examples, "resid", batch_size=batch_size // 2, progress=False)
    theirs = hf_collect(hf, texts, batch_size, pad)
    agree = {"hf": float((ours.mean.float() - theirs).abs().max())}
    variants: dict[str, Callable[[], object]] = {
        "steerlens": lambda: collect_differences(
            model, examples, "resid", batch_size=batch_size // 2, progress=False
        ),
        "hf_hooks": lambda: hf_collect(hf, texts, batch_size, pad),
    }
    if wrapped is not None:
        agree["nnsight"] = float(
            (nnsight_collect(wrapped, texts, batch_size, pad) - theirs).abs().max()
        )
        variants["nnsight"] = lambda: nnsight_collect(wrapped, texts, batch_size, pad)
    assert max(agree.values()) < 1e-3, f"collected means disagree: {agree}"
    t = race(clock, rounds, **variants)
    out["collection"] = {
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "max_abs_diff_of_means": agree,
        **{
            f"{k}_vs_hf_hooks": round(t["hf_hooks"] / v, 2) for k, v in t.items() if k != "hf_hooks"
        },
    }

    # steered evaluation: a fixed vector at the middle layer, every position
    layer = model.cfg.n_layers // 2
    mask = caa_mask(ours, layer)
    strength = 2.0
    vector = strength * ours.mean[layer].float()

    def ours_steered() -> torch.Tensor:
        with steer(model, mask, strength):
            return evaluate(model, items, batch_size=batch_size, progress=False).answer_logprob

    agree = {
        "hf": float(
            (ours_steered() - hf_steered_eval(hf, items, layer, vector, batch_size, pad))
            .abs()
            .max()
        )
    }
    variants = {
        "steerlens": ours_steered,
        "steerlens_unsteered": lambda: evaluate(
            model, items, batch_size=batch_size, progress=False
        ),
        "hf_hooks": lambda: hf_steered_eval(hf, items, layer, vector, batch_size, pad),
        "hf_unsteered": lambda: hf_steered_eval(hf, items, layer, None, batch_size, pad),
    }
    if wrapped is not None:
        agree["nnsight"] = float(
            (nnsight_steered_eval(wrapped, items, layer, vector, batch_size, pad) - ours_steered())
            .abs()
            .max()
        )
        variants["nnsight"] = lambda: nnsight_steered_eval(
            wrapped, items, layer, vector, batch_size, pad
        )
    assert max(agree.values()) < 1e-3, f"steered log-probabilities disagree: {agree}"
    t = race(clock, rounds, **variants)
    out["steered_eval"] = {
        "n_items": len(items.prompts),
        "layer": layer,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "max_abs_logprob_diff": agree,
        "steerlens_vs_hf_hooks": round(t["hf_hooks"] / t["steerlens"], 2),
        "steerlens_hooks_overhead": round(t["steerlens"] / t["steerlens_unsteered"], 3),
        **({"nnsight_vs_hf_hooks": round(t["hf_hooks"] / t["nnsight"], 2)} if wrapped else {}),
    }

    # generation: tokens per second, unsteered and steered
    if __package__:  # imported here: `_generation` reads this module's `padded`
        from ._generation import bench_generation
    else:
        from _generation import bench_generation
    out["generation"] = bench_generation(model, hf, prompts, mask, strength, clock, new_tokens)
    return out


def hf_memory(
    model: HookedTransformer, hf: Any, examples: Sequence[Example], kind: str, batch_size: int
) -> dict[str, Any]:
    """Section 2's measurement for the Hugging Face floor: peak resident memory while collecting
    the same pairs with last-token hooks, in batches of `batch_size` texts."""
    if __package__:
        from ._harness import PeakRSS, status_kb
    else:
        from _harness import PeakRSS, status_kb

    pairs = contrastive_ids(model, examples)
    texts = [t for p in pairs for t in p]
    prompts = [len(prompt_ids(model, e.prompt)) for e in examples]
    pad = pad_id(model)
    hf_collect(hf, texts[:4], batch_size, pad)  # warm-up
    before = status_kb("VmRSS")
    peak = PeakRSS()
    peak.reset()
    hf_collect(hf, texts, batch_size, pad)
    top = peak.peak_kb()
    return {
        "tool": "hf_hooks",
        "kind": kind,
        "n_pairs": len(pairs),
        "mean_prompt_tokens": round(sum(prompts) / len(prompts), 1),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(top / 1024, 1),
        "peak_minus_before_mb": round((top - before) / 1024, 1),
        "how": peak.how,
    }
