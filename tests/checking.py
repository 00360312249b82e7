"""What tests expect while the suite checks steerlens's annotations at run time.

pyproject.toml's `--jaxtyping-packages` wraps every function and dataclass of steerlens in
jaxtyping + beartype for the test run. Two things differ from normal use there:
- a value outside a parameter's annotation (a metric that is not a `Metric`, a float tensor
  where an `Int[Tensor, ...]` goes, tensors of different lengths sharing a dimension name)
  raises jaxtyping's `TypeCheckError` before the function's own check raises its `ValueError`;
- a checked function is one frame deeper, so a warning it raises with `stacklevel=2` names the
  checker's wrapper instead of the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jaxtyping import TypeCheckError

from steerlens._backend import BRIDGE

# `pytest.raises(OFF_TYPE)`: rejected, by steerlens's own check or by the run-time type check.
OFF_TYPE = (ValueError, TypeCheckError)


# For tests of what runs over TransformerLens 3's KV cache (shared prompts and prefixes, a sweep's
# shared passes): on the 4.x bridge those paths are off and every text runs in full.
needs_kv_cache = pytest.mark.skipif(
    BRIDGE, reason="a TransformerLens 3 KV-cache path, off on the TransformerLens 4 bridge"
)


def warning_file(fn: Callable[..., Any], caller: str) -> str:
    """The file that a `stacklevel=2` warning raised in `fn` names when `caller` calls `fn`:
    `caller`, or the checker's wrapper where the run-time checks wrap `fn`."""
    return fn.__code__.co_filename if hasattr(fn, "__wrapped__") else caller
