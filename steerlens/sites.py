"""Sites: where in the model activations are read and steered, and what one unit there is.

| site      | hook (layer L)              | activation per token          | unit          |
|-----------|-----------------------------|-------------------------------|---------------|
| `head`    | `blocks.L.attn.hook_z`      | `[n_heads, d_head]`           | head or dim   |
| `neuron`  | `blocks.L.mlp.hook_post`    | `[d_mlp]`                     | neuron        |
| `mlp_out` | `blocks.L.hook_mlp_out`     | `[d_model]`                   | hidden dim    |
| `resid`   | `blocks.L.hook_resid_post`  | `[d_model]`                   | hidden dim    |

SADI-HEAD and AUSteer-attention read `head`; SADI-NEURON reads `neuron`; SADI-HIDDEN and
AUSteer-FFN read `mlp_out` (the MLP output before the residual add, as the official codes do);
CAA reads `resid`.
"""

from __future__ import annotations

from typing import Literal

from transformer_lens import HookedTransformerConfig

Site = Literal["head", "neuron", "mlp_out", "resid"]
SITES: dict[str, str] = {
    "head": "attn.hook_z",
    "neuron": "mlp.hook_post",
    "mlp_out": "hook_mlp_out",
    "resid": "hook_resid_post",
}
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


def unit_shape(site: str, cfg: HookedTransformerConfig) -> tuple[int, ...]:
    """Shape of one token's activation at `site` (without batch and position)."""
    site = resolve_site(site)
    if site == "head":
        return (cfg.n_heads, cfg.d_head)
    if site == "neuron":
        if cfg.d_mlp is None:
            raise ValueError("This model has no MLP neurons (cfg.d_mlp is None)")
        return (cfg.d_mlp,)
    return (cfg.d_model,)
