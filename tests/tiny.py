"""A tiny Llama-shaped HookedTransformer with a byte-level tokenizer, built offline in ~0.1 s
(on TransformerLens 4: the same shape as a Hugging Face model, saved and booted as a bridge)."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import torch
import transformers as hf
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from steerlens._backend import BRIDGE, HookedTransformer, HookedTransformerConfig

SPECIALS = ["<bos>", "<eos>", "<pad>"]


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte, plus a space merged with the character after it (as byte-level BPE
    tokenizers write " Yes" or " A" as one word-initial token) and BOS/EOS/PAD: deterministic,
    no download."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    space = "Ġ"  # the byte-level alphabet's space
    merges = [(space, ch) for ch in alphabet if ch != space]
    vocab = {ch: i for i, ch in enumerate(SPECIALS + alphabet + [a + b for a, b in merges])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
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


def tiny_model(
    seed: int = 0,
    *,
    n_layers: int = 2,
    device: str | None = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
    gated: bool = True,
) -> HookedTransformer:
    """2 layers, d_model 32, 4 query / 2 KV heads of 8, gated SiLU MLP of 64, RMSNorm, rotary.

    `gated=False` gives a plain (GPT-style) GELU MLP with biases instead of the gated one.

    Built on the CPU (the same weights whatever the device), then moved to `device`
    (default `$STEERLENS_TEST_DEVICE`, else "cpu"). `tokenizer` defaults to `byte_tokenizer()`.
    On TransformerLens 4 the same shape is saved as a Hugging Face model and booted as a bridge
    (other random weights; the gated MLP has no biases there).
    """
    tokenizer = tokenizer or byte_tokenizer()
    device = device or os.environ.get("STEERLENS_TEST_DEVICE", "cpu")
    if BRIDGE:
        import steerlens

        path = _saved_hf_model(seed, n_layers, gated, tokenizer)
        return steerlens.load_model(str(path), device=device).eval()
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=32,
        n_heads=4,
        n_key_value_heads=2,
        d_head=8,
        d_mlp=64,
        d_vocab=len(tokenizer),
        n_ctx=64,
        act_fn="silu" if gated else "gelu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=8,
        gated_mlp=gated,
        final_rms=True,
        default_prepend_bos=True,
        model_name="tiny-llama" if gated else "tiny-plain-mlp",
        seed=seed,
        device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    torch.manual_seed(seed)
    with torch.no_grad():  # TL initialises RMS weights to 1 and biases to 0; make them non-trivial
        for name, p in model.named_parameters():
            if name.endswith(".w") or name.startswith("blocks") and ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    if device != "cpu":
        model = model.to(device)
        model.cfg.device = device
    return model.eval()


@functools.cache
def _where() -> Path:
    return Path(tempfile.mkdtemp(prefix="steerlens-tiny-"))


def _saved_hf_model(
    seed: int, n_layers: int, gated: bool, tokenizer: PreTrainedTokenizerFast
) -> Path:
    """`tiny_model`'s shape as a Hugging Face model (Llama; GPT-2 for the plain MLP), every
    parameter perturbed, saved once per process and arguments: what a TransformerLens 4 bridge
    boots from."""
    name = str(tokenizer.init_kwargs.get("name_or_path", "tokenizer"))
    out = _where() / f"{name}-{seed}-{n_layers}-{gated}"
    if out.exists():
        return out
    special = vocabulary_of(tokenizer)
    if gated:
        config: hf.PretrainedConfig = hf.LlamaConfig(
            num_hidden_layers=n_layers,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            **special,
        )
        model_cls: type = hf.LlamaForCausalLM
    else:
        config = hf.GPT2Config(
            n_layer=n_layers,
            n_embd=32,
            n_head=4,
            n_inner=64,
            n_positions=64,
            activation_function="gelu",
        )
        config.update(special)
        model_cls = hf.GPT2LMHeadModel
    return save_random_model(config, model_cls, tokenizer, out, seed=seed)


def vocabulary_of(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | bool | None]:
    """A Hugging Face config's vocabulary fields for `tokenizer` (untied unembedding)."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
    }


def save_random_model(
    config: hf.PretrainedConfig,
    model_cls: type,
    tokenizer: PreTrainedTokenizerFast,
    out: Path,
    *,
    seed: int = 0,
) -> Path:
    """Save a random `model_cls(config)` and `tokenizer` as a local model directory at `out`.

    Every parameter, norm weights and biases included, gets noise, so no term is trivially 1 or
    0 and a wrongly mapped weight shows in the logits.
    """
    config.architectures = [model_cls.__name__]
    torch.manual_seed(seed)
    model = model_cls(config).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """A LLaMA-style (SentencePiece) tokenizer built offline: a "▁" marks a word start and is
    prepended to every text, as the original LLaMA tokenizer does, so `" Yes"` alone becomes
    `▁ ▁Yes` while `Answer: Yes` ends in `▁Yes`, and `"A"` alone is `▁A` while `Answer:\nA`
    ends in `A` (the cases of the fidelity audit)."""
    words = ["Answer", "Yes", "No", "A", "B", "Positive", "Negative", "the", "is", "it"]
    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:.,?!\n ")
    pieces = ["<unk>", "<s>", "</s>", "▁"] + [f"▁{w}" for w in words] + words + chars
    vocab = [(p, -float(len(p) == 1)) for p in dict.fromkeys(pieces)]  # prefer whole words
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    # the original LLaMA tokenizer.json: prepend "▁", spaces become "▁", no pre-tokenizer
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
    )
    fast.init_kwargs.update(name_or_path="tiny-sentencepiece", add_bos_token=True)
    return fast
