"""Loading on TransformerLens 4: a `TransformerBridge` around the Hugging Face model itself.

The bridge runs the Hugging Face modules, so no weight conversion is needed: a local directory
boots directly, and a GGUF file is dequantized once into a Hugging Face directory in the cache.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ._backend import HookedTransformer


def boot(
    source: str | Path, device: str, dtype: torch.dtype, name: str | None = None
) -> HookedTransformer:
    """A bridge from a local Hugging Face directory or a hub name, as steerlens' 3.x models are:
    unprocessed weights (no folded norms, no centring), TransformerLens' hook names (cache keys
    included: `compatibility mode`), left padding, and `cfg.original_architecture` set."""
    from transformer_lens import TransformerBridge  # type: ignore[attr-defined]  # 4.x only

    model = TransformerBridge.boot_transformers(str(source), device=device, dtype=dtype)
    model.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    model.tokenizer.padding_side = "left"
    model.cfg.original_architecture = model.cfg.original_architecture or model.cfg.architecture
    model.cfg.model_name = name or model.cfg.model_name
    return model.eval()


def gguf_directory(gguf: Path, entry: Path) -> Path:
    """`entry`: the GGUF dequantized to float32 and saved as a Hugging Face directory, once."""
    if (entry / "config.json").exists():
        return entry
    from transformers import AutoModelForCausalLM, AutoTokenizer

    warnings.warn(f"steerlens: converting {gguf.name} once, caching it in {entry}", stacklevel=3)
    tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    hf.config.quantization_config = None
    hf.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(entry)
    except OSError:
        if not (entry / "config.json").exists():
            raise
    return entry
