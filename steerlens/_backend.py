"""The TransformerLens backend, detected at import: `HookedTransformer` (3.x, the default) or
`TransformerBridge` (4.x, which wraps the Hugging Face model itself, with the same hook names).

Every module names the model type `HookedTransformer` through this module, so the package imports
on either release. What differs between them is measured in `tests/unit/test_backends.py`:
- 4.x ignores `past_kv_cache=` (a TransformerLens cache stays empty) and `start_at_layer` still
  runs the earlier blocks, so steerlens' KV-cache paths (prompts shared within a pair, a k-shot
  prefix shared by every item, options continuing their prompt's cache, a sweep's shared passes,
  cached generation) are turned off there (`KV_CACHE` False), and every pass runs the whole
  text: the same numbers, more arithmetic;
- 4.x answers `stop_at_layer=n_layers` with the logits, so `_passes.final_resid` stops the pass
  with a hook at `ln_final` there;
- 4.x infers no attention mask from a left-padded tensor, which steerlens always passes anyway;
- 4.x keeps the MLP output before Gemma's post-MLP norm at `ln2_post.hook_in` already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import transformer_lens

BACKEND: str
if TYPE_CHECKING:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
else:
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError:  # TransformerLens 4: the old names raise ImportError with a pointer
        from transformer_lens import TransformerBridge as HookedTransformer
        from transformer_lens import TransformerBridgeConfig as HookedTransformerConfig

BACKEND = HookedTransformer.__name__
"""`"HookedTransformer"` (TransformerLens 3.x) or `"TransformerBridge"` (4.x)."""
BRIDGE = BACKEND == "TransformerBridge"
KV_CACHE = not BRIDGE
"""Whether TransformerLens' own KV cache (`past_kv_cache=`) works on this backend."""
TL_VERSION: str = getattr(transformer_lens, "__version__", "unknown")


def is_bridge(model: Any) -> bool:
    """Whether `model` is a TransformerLens 4 `TransformerBridge`."""
    return BRIDGE and isinstance(model, HookedTransformer)


__all__ = [
    "BACKEND",
    "BRIDGE",
    "KV_CACHE",
    "TL_VERSION",
    "HookedTransformer",
    "HookedTransformerConfig",
    "is_bridge",
]
