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

from jaxtyping import TypeCheckError

# `pytest.raises(OFF_TYPE)`: rejected, by steerlens's own check or by the run-time type check.
OFF_TYPE = (ValueError, TypeCheckError)


def warning_file(fn: Callable[..., Any], caller: str) -> str:
    """The file that a `stacklevel=2` warning raised in `fn` names when `caller` calls `fn`:
    `caller`, or the checker's wrapper where the run-time checks wrap `fn`."""
    return fn.__code__.co_filename if hasattr(fn, "__wrapped__") else caller
