"""Statistics over per-item 0/1 outcomes: percentile-bootstrap intervals, paired differences.

One implementation serves `EvalResult.ci`, the reproduction tables and the ablations, so every
interval steerlens prints is computed the same way (same resampling, same default seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Bool, Real

N_BOOT = 2000  # bootstrap resamples behind every interval steerlens reports

Flags = Bool[np.ndarray, " item"] | Real[np.ndarray, " item"]  # 0/1 (or any real) per item


def bootstrap_ci(
    flags: Flags | Sequence[float], *, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item values, resampling items.

    >>> bootstrap_ci(np.ones(10))
    (1.0, 1.0)
    """
    values = np.asarray(flags, dtype=float)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap_ci(
    a: Flags, b: Flags, *, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """`(mean(a - b), lo, hi)`: the difference of two methods on the same items."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(
            f"paired_bootstrap_ci needs flags on the same items ({x.shape} vs {y.shape})"
        )
    diff = x - y
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, level=level, seed=seed)
    return float(diff.mean()), lo, hi


def verdict(lo: float, hi: float) -> str:
    """'+' when an interval of a difference lies above 0, '-' below, '0' when it contains 0."""
    if math.isnan(lo) or math.isnan(hi):
        return "?"
    return "+" if lo > 0 else "-" if hi < 0 else "0"


def flags_to_str(flags: torch.Tensor | Sequence[bool]) -> str:
    """Per-item flags as a compact "0101..." string (for JSON records)."""
    return "".join("1" if bool(f) else "0" for f in flags)


def str_to_flags(text: str) -> Bool[np.ndarray, " item"]:
    """Inverse of `flags_to_str`."""
    return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")
