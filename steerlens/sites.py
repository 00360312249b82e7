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
  `load_model` adds a hook point at the norm's input for such models; `mlp_out` stays the
  TransformerLens hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

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


def site_reader(model: HookedTransformer, site: str, layer: int) -> Callable[[Tensor], Tensor]:
    """Turns the activation at `read_hook_name(site, layer)` into the site's value."""
    if resolve_site(site) == "gate":
        return model.blocks[layer].mlp.act_fn  # type: ignore[no-any-return]
    return lambda act: act


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
