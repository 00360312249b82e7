"""Tiny random Hugging Face models of each architecture family, built in code and saved as a
local model directory (config.json, safetensors, tokenizer), with no download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers as hf

from tests.tiny import byte_tokenizer, save_random_model, vocabulary_of

_SHAPE = {"num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 128}
_ROTARY = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}


def _gemma(**extra: Any) -> dict[str, Any]:
    return {
        **_SHAPE,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "query_pre_attn_scalar": 16,  # not d_head, so the scale is checked
        "sliding_window": 4,  # shorter than the test prompts, so local layers differ
        "layer_types": ["sliding_attention", "full_attention"],
        **extra,
    }


FAMILIES: dict[str, tuple[type, type, dict[str, Any]]] = {
    "llama": (
        hf.LlamaConfig,
        hf.LlamaForCausalLM,
        {**_SHAPE, **_ROTARY, "hidden_size": 32, "intermediate_size": 64, "num_key_value_heads": 2},
    ),
    "qwen2": (
        hf.Qwen2Config,
        hf.Qwen2ForCausalLM,
        {**_SHAPE, **_ROTARY, "hidden_size": 32, "intermediate_size": 64, "num_key_value_heads": 2},
    ),
    "gemma2": (
        hf.Gemma2Config,
        hf.Gemma2ForCausalLM,
        _gemma(attn_logit_softcapping=5.0, final_logit_softcapping=3.0, **_ROTARY),
    ),
    "gemma3": (
        hf.Gemma3TextConfig,
        hf.Gemma3ForCausalLM,
        _gemma(
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            }
        ),
    ),
    "gpt2": (
        hf.GPT2Config,
        hf.GPT2LMHeadModel,
        {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128},
    ),
    "neox": (
        hf.GPTNeoXConfig,
        hf.GPTNeoXForCausalLM,
        {
            **_SHAPE,
            "hidden_size": 32,
            "intermediate_size": 64,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
            },
        },
    ),
}
"""Per family: config class, model class, and a tiny shape (2 layers, d_model 32, 4 heads)."""


def build_family(family: str, where: Path, *, seed: int = 0) -> Path:
    """Save a random model of `family` with the byte tokenizer under `where/family`
    (`save_random_model`: every parameter perturbed)."""
    config_cls, model_cls, shape = FAMILIES[family]
    tokenizer = byte_tokenizer()
    config = config_cls(**shape, **vocabulary_of(tokenizer))
    return save_random_model(config, model_cls, tokenizer, where / family, seed=seed)


def hf_model(path: Path) -> Any:
    """The saved model back as a Hugging Face model (float32, eval mode)."""
    return hf.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
