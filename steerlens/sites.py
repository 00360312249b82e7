"""Sites: where in the model activations are read and steered, and what one unit there is.

| site      | hook (layer L)              | activation per token          | unit          |
|-----------|-----------------------------|-------------------------------|---------------|
| `head`    | `blocks.L.attn.hook_z`      | `[n_heads, d_head]`           | head or dim   |
| `neuron`  | `blocks.L.mlp.hook_post`    | `[d_mlp]`                     | neuron        |
| `mlp_out` | `blocks.L.hook_mlp_out`     | `[d_model]`                   | hidden dim    |
| `resid`   | `blocks.L.hook_resid_post`  | `[d_model]`                   | hidden dim    |
| `gate`    | read `act_fn(mlp.hook_pre)`, steered at `mlp.hook_post` | `[d_mlp]` | neuron |
| `mlp_pre_norm` | `blocks.L.ln2_post.hook_in` | `[d_model]`                | hidden dim    |

SADI-HEAD and AUSteer-attention read `head`; SADI-NEURON reads `neuron`; SADI-HIDDEN and
AUSteer-FFN read `mlp_out` (the MLP output before the residual add, as the official codes do);
CAA reads `resid`.

Two sites exist for fidelity to the released codes:
- `gate`: SADI's released code ranks neurons on the MLP activation function's output,
  `act_fn(W_gate x)` in a gated MLP, not on `hook_post = act_fn(W_gate x) * W_in x + b_in`. The
  site is read there; it is steered at `hook_post`, which scales the gate exactly when `b_in` is 0
  (LLaMA, Qwen, Gemma, SmolLM2; `steer` refuses otherwise). In a non-gated MLP it equals `neuron`.
- `mlp_pre_norm`: in models with a norm after the MLP (Gemma-2), TransformerLens' `hook_mlp_out`
  comes after that norm (`ln2_post`), while the papers steer the MLP's own output before it.
  `load_model` adds a hook point at the norm's input for such models
  (`steerlens.add_pre_norm_hooks`); `mlp_out` stays the TransformerLens hook. `check_site`
  refuses `mlp_pre_norm` where that hook is missing and warns when `mlp_out` sits after a norm.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Literal, cast

import torch
from torch import Tensor
from transformer_lens.utilities.activation_functions import SUPPORTED_ACTIVATIONS

from ._backend import HookedTransformer, HookedTransformerConfig, is_bridge

Site = Literal["head", "neuron", "mlp_out", "resid", "gate", "mlp_pre_norm"]
SITES: dict[str, str] = {
    "head": "attn.hook_z",
    "neuron": "mlp.hook_post",
    "mlp_out": "hook_mlp_out",
    "resid": "hook_resid_post",
    "gate": "mlp.hook_post",
    "mlp_pre_norm": "ln2_post.hook_in",
}
"""The hook each site is steered at (and read at, but for `gate`: see `read_hook_name`)."""
READ_AT: dict[str, str] = {"gate": "mlp.hook_pre"}  # read here, then through `mlp.act_fn`
ALIASES: dict[str, str] = {
    "heads": "head",
    "attn": "head",
    "attention": "head",
    "neurons": "neuron",
    "hidden": "mlp_out",
    "ffn": "mlp_out",
    "mlp": "mlp_out",
    "residual": "resid",
    "resid_post": "resid",
}


def resolve_site(site: str) -> str:
    """Canonical site name; accepts the papers' aliases ("attention", "ffn", "hidden", ...)."""
    if not isinstance(site, str):
        raise TypeError(f"site must be a string, got {type(site).__name__}")
    name = ALIASES.get(site, site)
    if name not in SITES:
        valid = ", ".join([*SITES, *ALIASES])
        raise ValueError(f"Unknown site {site!r}; valid sites: {valid}")
    return name


def hook_name(site: str, layer: int) -> str:
    """TransformerLens hook name of `site` at `layer`, e.g. ``blocks.3.attn.hook_z``."""
    return f"blocks.{layer}.{SITES[resolve_site(site)]}"


def read_hook_name(site: str, layer: int) -> str:
    """The hook `site` is read at: `hook_name`, except `gate` (`mlp.hook_pre`, before `act_fn`)."""
    site = resolve_site(site)
    return f"blocks.{layer}.{READ_AT.get(site, SITES[site])}"


_WARNED_POST_NORM: weakref.WeakSet[HookedTransformer] = weakref.WeakSet()


def has_post_mlp_norm(model: HookedTransformer) -> bool:
    """Whether the model's blocks apply a norm to the MLP output (`ln2_post`, e.g. Gemma-2)."""
    return any(hasattr(block, "ln2_post") for block in model.blocks)


def check_site(model: HookedTransformer, site: str) -> None:
    """Check that `site` can be read and steered on `model`, before any hook is added.

    Raises ValueError naming the missing hook and why it is missing (for `mlp_pre_norm`: the
    model has no norm after the MLP, or `add_pre_norm_hooks` was not called). Warns once per
    model when `mlp_out` is used on a model with a norm after the MLP, where `hook_mlp_out` comes
    after that norm and the papers' FFN/HIDDEN site is `mlp_pre_norm`.
    """
    name = resolve_site(site)
    for layer in range(model.cfg.n_layers):
        for hook in dict.fromkeys((hook_name(name, layer), read_hook_name(name, layer))):
            if hook in model.hook_dict:
                continue
            if name == "mlp_pre_norm" and not has_post_mlp_norm(model):
                why = (
                    "this model has no norm after the MLP; hook_mlp_out (site 'mlp_out') is "
                    "already the MLP output"
                )
            elif name == "mlp_pre_norm":
                why = (
                    "the model has post-MLP norms (ln2_post) but no hook point at their input: "
                    "call steerlens.add_pre_norm_hooks(model) (load_model does)"
                )
            else:
                why = "this model's blocks do not have that hook point"
            raise ValueError(f"Site {site!r} needs hook {hook!r}, which is missing: {why}")
    if name == "mlp_out" and has_post_mlp_norm(model) and model not in _WARNED_POST_NORM:
        _WARNED_POST_NORM.add(model)
        warnings.warn(
            "Site 'mlp_out': this model has a norm after the MLP (ln2_post, e.g. Gemma-2), and "
            "hook_mlp_out comes after ln2_post. SADI-HIDDEN and AUSteer-FFN read and steer the "
            "MLP output before that norm: that is site 'mlp_pre_norm' "
            "(blocks.L.ln2_post.hook_in).",
            UserWarning,
            stacklevel=2,
        )


def site_reader(model: HookedTransformer, site: str, layer: int) -> Callable[[Tensor], Tensor]:
    """Turns the activation at `read_hook_name(site, layer)` into the site's value."""
    if resolve_site(site) == "gate":
        # a bridge's plain (non-gated) MLP has no act_fn module: the config names it
        act_fn = getattr(model.blocks[layer].mlp, "act_fn", None)
        if act_fn is None:
            act_fn = SUPPORTED_ACTIVATIONS[str(model.cfg.act_fn)]
        return cast(Callable[[Tensor], Tensor], act_fn)
    return lambda act: act


def mlp_bias(model: HookedTransformer, layer: int) -> Tensor:
    """The bias a gated MLP adds after `act(gate) * linear` (`[d_mlp]`, detached): TransformerLens
    3's `b_in`. Zeros on the 4.x bridge, whose Hugging Face MLPs add any bias inside the linear
    branch (`hook_pre_linear`), and where an MLP has none."""
    b_in = None if is_bridge(model) else getattr(model.blocks[layer].mlp, "b_in", None)
    if b_in is None:
        return torch.zeros(int(model.cfg.d_mlp or 0), device=model.cfg.device)
    return cast(Tensor, b_in).detach()


def unit_shape(site: str, cfg: HookedTransformerConfig) -> tuple[int, ...]:
    """Shape of one token's activation at `site` (without batch and position)."""
    site = resolve_site(site)
    if site == "head":
        return (cfg.n_heads, cfg.d_head)
    if site in ("neuron", "gate"):
        if cfg.d_mlp is None:
            raise ValueError("This model has no MLP neurons (cfg.d_mlp is None)")
        return (cfg.d_mlp,)
    return (cfg.d_model,)
