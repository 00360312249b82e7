"""Architectures: a TransformerLens config from a Hugging Face config, for the families tested.

TransformerLens 3.9 derives configs from official model names; for a local directory it reads
the Hugging Face config only for some families, and picks the family by substrings of the path
(a local ``.../Llama-2-7b-hf`` or ``.../gemma-2-2b`` directory never has its own config read).
Here the config is always read from the model's own `config.json` (or its GGUF metadata), so a
local copy, a fine-tune or a GGUF of any size loads with its true shape. The weights are then
converted by TransformerLens' own per-family functions, chosen by `original_architecture`.

| family             | Hugging Face class      | what differs from Llama                         |
|--------------------|-------------------------|-------------------------------------------------|
| Llama, Mistral     | `LlamaForCausalLM`, ... | (gated SiLU MLP, RMSNorm, rotary, grouped KV)   |
| Qwen2              | `Qwen2ForCausalLM`      | biases on Q, K, V                               |
| Gemma-2            | `Gemma2ForCausalLM`     | norms after attention and MLP, soft-capping, sliding window |
| Gemma-3 (text)     | `Gemma3ForCausalLM`     | Gemma-2's, plus Q/K norms and a local rotary base |
| GPT-2              | `GPT2LMHeadModel`       | LayerNorm, learned positions, plain GELU MLP    |
| GPT-NeoX, Pythia   | `GPTNeoXForCausalLM`    | parallel attention and MLP, partial rotary      |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._backend import HookedTransformerConfig

_MAX_CTX = 8192  # TransformerLens allocates n_ctx x n_ctx masks; longer prompts are not studied


def _get(hf: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(hf, name, None)
        if value is not None:
            return value
    return default


def _rope_theta(hf: Any, layer_type: str = "full_attention") -> float:
    """Rotary base: transformers 5 keeps it in `rope_parameters` (per layer type for Gemma-3),
    4.x in `rope_theta` (and `rope_local_base_freq` for Gemma-3's local layers)."""
    params = getattr(hf, "rope_parameters", None) or {}
    if layer_type in params and isinstance(params[layer_type], dict):
        params = params[layer_type]
    if "rope_theta" in params:
        return float(params["rope_theta"])
    if layer_type == "sliding_attention":
        return float(_get(hf, "rope_local_base_freq", default=10000.0))
    return float(_get(hf, "rope_theta", default=10000.0))


def _rope_scaling(hf: Any) -> dict[str, Any]:
    """Llama-3's frequency-dependent rotary scaling, where the config asks for it."""
    params = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {}
    if params.get("rope_type", params.get("type")) != "llama3":
        return {}
    return {
        "use_NTK_by_parts_rope": True,
        "NTK_original_ctx_len": params.get("original_max_position_embeddings", 8192),
        "NTK_by_parts_low_freq_factor": params.get("low_freq_factor", 1.0),
        "NTK_by_parts_high_freq_factor": params.get("high_freq_factor", 4.0),
        "NTK_by_parts_factor": params.get("factor", 1.0),
    }


def _heads(hf: Any) -> dict[str, Any]:
    n_heads = hf.num_attention_heads
    n_kv = _get(hf, "num_key_value_heads", default=n_heads)
    d_head = _get(hf, "head_dim", default=hf.hidden_size // n_heads)
    return {
        "n_heads": n_heads,
        "d_head": d_head,
        "n_key_value_heads": n_kv if n_kv != n_heads else None,
        "rotary_dim": d_head,
    }


def _llama(hf: Any) -> dict[str, Any]:
    return {
        "d_model": hf.hidden_size,
        **_heads(hf),
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": hf.rms_norm_eps,
        "act_fn": _get(hf, "hidden_act", "hidden_activation"),
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_base": _rope_theta(hf),
        "final_rms": True,
        "gated_mlp": True,
        **_rope_scaling(hf),
    }


def _qwen2(hf: Any) -> dict[str, Any]:
    return {**_llama(hf), "default_prepend_bos": False}  # Qwen2 has no BOS token


def _attn_types(hf: Any, first: str) -> list[str]:
    """Per layer "local" (sliding window) or "global"; Gemma-2 alternates from a local layer."""
    types = getattr(hf, "layer_types", None)
    if types is None:
        other = "global" if first == "local" else "local"
        types = [first if i % 2 == 0 else other for i in range(hf.num_hidden_layers)]
        return types
    return ["local" if t == "sliding_attention" else "global" for t in types]


def _gemma2(hf: Any) -> dict[str, Any]:
    return {
        **_llama(hf),
        "use_attn_scale": True,
        "attn_scale": math.sqrt(hf.query_pre_attn_scalar),
        "use_local_attn": True,
        "window_size": hf.sliding_window,
        "attn_types": _attn_types(hf, "local"),
        "attn_scores_soft_cap": _get(hf, "attn_logit_softcapping", default=-1.0),
        "output_logits_soft_cap": _get(hf, "final_logit_softcapping", default=-1.0),
        "use_normalization_before_and_after": True,
    }


def _gemma3(hf: Any) -> dict[str, Any]:
    return {
        **_gemma2(hf),
        "use_qk_norm": True,
        "rotary_base": _rope_theta(hf, "full_attention"),
        "rotary_base_local": _rope_theta(hf, "sliding_attention"),
    }


def _gpt2(hf: Any) -> dict[str, Any]:
    return {
        "d_model": hf.n_embd,
        "d_head": hf.n_embd // hf.n_head,
        "n_heads": hf.n_head,
        "d_mlp": _get(hf, "n_inner", default=4 * hf.n_embd),
        "n_layers": hf.n_layer,
        "n_ctx": hf.n_positions,
        "eps": hf.layer_norm_epsilon,
        "act_fn": hf.activation_function,
        "use_attn_scale": getattr(hf, "scale_attn_weights", True),
        "scale_attn_by_inverse_layer_idx": getattr(hf, "scale_attn_by_inverse_layer_idx", False),
        "normalization_type": "LN",
    }


def _neox(hf: Any) -> dict[str, Any]:
    d_head = hf.hidden_size // hf.num_attention_heads
    params = getattr(hf, "rope_parameters", None) or {}
    fraction = params.get("partial_rotary_factor", _get(hf, "rotary_pct", default=1.0))
    return {
        "d_model": hf.hidden_size,
        "d_head": d_head,
        "n_heads": hf.num_attention_heads,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": hf.layer_norm_eps,
        "act_fn": hf.hidden_act,
        "parallel_attn_mlp": getattr(hf, "use_parallel_residual", True),
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": round(fraction * d_head),
        "rotary_base": _rope_theta(hf),
        "normalization_type": "LN",
        "default_prepend_bos": False,
    }


FAMILIES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "LlamaForCausalLM": _llama,
    "MistralForCausalLM": _llama,
    "Qwen2ForCausalLM": _qwen2,
    "Gemma2ForCausalLM": _gemma2,
    "Gemma3ForCausalLM": _gemma3,
    "GPT2LMHeadModel": _gpt2,
    "GPTNeoXForCausalLM": _neox,
}
"""Hugging Face classes steerlens builds configs for; their weights load through TransformerLens."""


_MODEL_TYPES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
}


def architecture_of(hf_config: Any) -> str:
    """The Hugging Face class a config names: its first `architectures` entry, else (a config
    built in code, or read from GGUF metadata) the class of its `model_type`."""
    names = getattr(hf_config, "architectures", None)
    if names:
        return str(names[0])
    model_type = str(getattr(hf_config, "model_type", ""))
    return _MODEL_TYPES.get(model_type, model_type or "model of unknown type")


def tl_config(
    hf_config: Any, *, name: str, device: str, dtype: torch.dtype
) -> HookedTransformerConfig:
    """TransformerLens config for a Hugging Face config of one of `FAMILIES`.

    Raises ValueError naming the supported classes for any other architecture.
    """
    architecture = architecture_of(hf_config)
    if architecture not in FAMILIES:
        raise ValueError(
            f"Model {name!r} is a {architecture}; steerlens loads local models of these "
            f"architectures: {', '.join(FAMILIES)}. Other TransformerLens models load by their "
            "official name (transformer_lens.loading.OFFICIAL_MODEL_NAMES)."
        )
    fields = FAMILIES[architecture](hf_config)
    fields["n_ctx"] = min(fields["n_ctx"], _MAX_CTX)
    return HookedTransformerConfig(
        **fields,
        d_vocab=hf_config.vocab_size,
        original_architecture=architecture,
        model_name=name,
        device=device,
        dtype=dtype,
    )
