"""The TransformerLens backend, detected at import: `HookedTransformer` (3.x, the default) or
`TransformerBridge` (4.x, which wraps the Hugging Face model itself, with the same hook names).

Every module names the model type `HookedTransformer` through this module, so the package imports
on either release. What differs between them is measured in `tests/unit/test_backends.py`:
- 4.x ignores `past_kv_cache=` (a TransformerLens cache stays empty) and `start_at_layer` still
  runs the earlier blocks, so steerlens' KV-cache paths (prompts shared within a pair, a k-shot
  prefix shared by every item, cached generation) are turned off there (`KV_CACHE` False), and
  every pass runs the whole text;
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


def require_kv_cache(model: Any, what: str) -> None:
    """Refuse `what` on a bridge, where it would give wrong numbers, with what works instead."""
    if is_bridge(model):
        raise NotImplementedError(
            f"steerlens.{what} does not run on a TransformerLens 4 TransformerBridge yet: it "
            "runs prompts once into TransformerLens' KV cache and stops passes at the last "
            "block (past_kv_cache, stop_at_layer), which the bridge ignores or answers with "
            "logits. Install TransformerLens 3.9, the default (pip install "
            f"'transformer-lens>=3.9,<4'), for {what}. On the bridge, load_model, the sites, "
            "collect_differences / collect_activations, the masks and steer work."
        )
