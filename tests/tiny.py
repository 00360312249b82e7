"""A tiny Llama-shaped HookedTransformer with a byte-level tokenizer, built offline in ~0.1 s."""

from __future__ import annotations

import os

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<bos>", "<eos>", "<pad>"]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte plus BOS/EOS/PAD: deterministic, no merges, no download."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(SPECIALS + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 0)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    # TransformerLens reloads tokenizers lacking these init kwargs by name; this one has no name.
    fast.init_kwargs.update(name_or_path="tiny-bytes", add_bos_token=True)
    return fast


def tiny_model(seed: int = 0, *, n_layers: int = 2, device: str | None = None) -> HookedTransformer:
    """2 layers, d_model 32, 4 query / 2 KV heads of 8, gated SiLU MLP of 64, RMSNorm, rotary.

    Built on the CPU (the same weights whatever the device), then moved to `device`
    (default `$STEERLENS_TEST_DEVICE`, else "cpu").
    """
    tokenizer = byte_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=32,
        n_heads=4,
        n_key_value_heads=2,
        d_head=8,
        d_mlp=64,
        d_vocab=len(tokenizer),
        n_ctx=64,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=8,
        gated_mlp=True,
        final_rms=True,
        default_prepend_bos=True,
        model_name="tiny-llama",
        seed=seed,
        device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    torch.manual_seed(seed)
    with torch.no_grad():  # TL initialises RMS weights to 1 and biases to 0; make them non-trivial
        for name, p in model.named_parameters():
            if name.endswith(".w") or name.startswith("blocks") and ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    device = device or os.environ.get("STEERLENS_TEST_DEVICE", "cpu")
    if device != "cpu":
        model = model.to(device)
        model.cfg.device = device
    return model.eval()
