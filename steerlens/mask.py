"""Mask: the selected units of a model at one site, with scores, per-unit weights and provenance.

A unit is either a whole attention head (`unit="head"`, SADI-HEAD, ITI) or one coordinate of the
site's activation (`unit="dim"`: a neuron, a hidden dimension, or one `hook_z` entry flattened as
`head * d_head + d`, AUSteer's atomic unit). Units are stored best first, so `mask.top(k)` is the
top-k mask of the same ranking.

A mask steers in one of three ways (see `steerlens.steer`):
- `operation="scale"`: `a <- a + strength * weight * a` on the selected units (SADI, AUSteer);
- `operation="add"`: `a <- a + strength * weight * vector` (CAA, ITI, fixed-vector ablation);
- `operation="clamp"`: SADI as its authors' code runs it. At the last prompt token the site is
  overwritten in *every* layer with its clean (unsteered) value, the selected units with
  `clean + strength * weight * clean`; the clean values come from an unsteered pre-pass.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ._io import atomic_write
from ._types import Operation, Positions, UnitKind
from .sites import SITES

if TYPE_CHECKING:
    from .collect import Differences

FORMAT_VERSION = 1
OPERATIONS = ("scale", "add", "clamp")
POSITIONS = ("last", "all", "from", "each_last")
UNITS = ("head", "dim")
_META_KEYS = {
    "format_version",
    "site",
    "unit",
    "method",
    "operation",
    "positions",
    "model_name",
    "fingerprint",
    "n_layers",
    "unit_shape",
    "task",
    "info",
}
_TENSOR_KEYS = {"layers", "indices", "scores", "weights", "vectors"}


@dataclass(frozen=True, eq=False)
class Mask:
    """Selected units at one site. Build with `sadi_mask`, `austeer_mask`, ... not by hand."""

    site: str
    unit: UnitKind
    method: str
    layers: Int[Tensor, " k"]
    indices: Int[Tensor, " k"]
    scores: Float[Tensor, " k"]
    weights: Float[Tensor, " k"]
    operation: Operation
    positions: Positions
    model_name: str
    fingerprint: str
    n_layers: int
    unit_shape: Sequence[int]  # any sequence; stored as a tuple
    vectors: Float[Tensor, "k width"] | None = None
    task: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit_shape", tuple(int(x) for x in self.unit_shape))
        if self.site not in SITES:
            raise ValueError(f"Unknown site {self.site!r}; valid: {list(SITES)}")
        rank = 2 if self.site == "head" else 1
        if len(self.unit_shape) != rank or min(self.unit_shape) < 1:
            raise ValueError(
                f"unit_shape {self.unit_shape} does not fit site {self.site!r} "
                f"(expected {rank} positive sizes)"
            )
        for name in ("layers", "indices"):
            t = getattr(self, name)
            if isinstance(t, Tensor) and (t.is_floating_point() or t.dtype == torch.bool):
                raise ValueError(f"Mask.{name} must hold integers, got {t.dtype}")
        if self.unit not in UNITS or (self.unit == "head" and self.site != "head"):
            raise ValueError(f"unit must be one of {UNITS} ('head' only at site 'head')")
        if self.operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {OPERATIONS}, got {self.operation!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        k = self.layers.numel()
        for name in ("layers", "indices", "scores", "weights"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.dim() != 1 or t.numel() != k:
                raise ValueError(f"Mask.{name} must be a 1-d tensor of length {k}")
        if k and (self.layers.min() < 0 or self.layers.max() >= self.n_layers):
            raise ValueError(f"Mask layers must lie in [0, {self.n_layers})")
        if k and (self.indices.min() < 0 or self.indices.max() >= self.units_per_layer):
            raise ValueError(f"Mask indices must lie in [0, {self.units_per_layer})")
        if len(set(zip(self.layers.tolist(), self.indices.tolist(), strict=True))) != k:
            raise ValueError("Mask has a unit selected twice")
        if not torch.isfinite(self.weights).all():
            raise ValueError("Mask weights must be finite")
        if self.operation == "add":
            if self.vectors is None or self.vectors.shape != (k, self.unit_width):
                raise ValueError(f"An 'add' mask needs vectors of shape ({k}, {self.unit_width})")
        elif self.vectors is not None:
            raise ValueError("Only an 'add' mask carries vectors")
        if self.operation == "clamp" and self.positions != "last":
            raise ValueError("A 'clamp' mask steers the last prompt token (positions='last')")

    @classmethod
    def from_differences(
        cls,
        diffs: Differences,
        *,
        unit: UnitKind,
        method: str,
        layers: Int[Tensor, " k"],
        indices: Int[Tensor, " k"],
        scores: Float[Tensor, " k"],
        weights: Float[Tensor, " k"],
        operation: Operation,
        positions: Positions,
        vectors: Float[Tensor, "k width"] | None = None,
        info: dict[str, Any] | None = None,
    ) -> Mask:
        """A mask of units selected from `diffs`: site, model and task provenance come from it,
        and `info` records the number of pairs besides what the selection adds."""
        return cls(
            site=diffs.site,
            unit=unit,
            method=method,
            layers=layers,
            indices=indices,
            scores=scores,
            weights=weights,
            operation=operation,
            positions=positions,
            model_name=diffs.model_name,
            fingerprint=diffs.fingerprint,
            n_layers=diffs.n_layers,
            unit_shape=diffs.unit_shape,
            vectors=vectors,
            task=diffs.task,
            info={"n_pairs": diffs.n_pairs, "pair_format": diffs.pair_format, **(info or {})},
        )

    # ---- shape facts -------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Number of selected units."""
        return int(self.layers.numel())

    def __len__(self) -> int:
        return self.k

    @property
    def units_per_layer(self) -> int:
        """Units one layer offers: heads for `unit='head'`, else all coordinates of the site."""
        return self.unit_shape[0] if self.unit == "head" else math.prod(self.unit_shape)

    @property
    def unit_width(self) -> int:
        """Scalars per unit: `d_head` for a head, 1 for a dim."""
        return self.unit_shape[1] if self.unit == "head" else 1

    @property
    def n_activations(self) -> int:
        """Scalar activations steered per token position (the papers' '#Acts')."""
        return self.k * self.unit_width

    # ---- views ---------------------------------------------------------------------------------
    def top(self, k: int) -> Mask:
        """The first `k` units (the best `k` of the same ranking)."""
        if not 0 < k <= self.k:
            raise ValueError(f"top(k) needs 0 < k <= {self.k}, got {k}")
        return self.subset(slice(0, k), info={**self.info, "k": k})

    def subset(self, rows: slice | Tensor, **changes: Any) -> Mask:
        """The units at `rows` (a slice or index tensor), in that order; `changes` replace other
        fields (e.g. `info`)."""
        fields: dict[str, Any] = {
            "layers": self.layers[rows],
            "indices": self.indices[rows],
            "scores": self.scores[rows],
            "weights": self.weights[rows],
            "vectors": None if self.vectors is None else self.vectors[rows],
        }
        return dataclasses.replace(self, **{**fields, **changes})

    def to_dense(self, values: str = "mask") -> Float[Tensor, "layer unit"]:
        """Dense `[layer, unit]` tensor: 1 on selected units ("mask"), or their "weights"/"scores"."""
        table = {"mask": torch.ones(self.k), "weights": self.weights, "scores": self.scores}
        if values not in table:
            raise ValueError(f"values must be one of {list(table)}")
        dense = torch.zeros(self.n_layers, self.units_per_layer)
        dense[self.layers, self.indices] = table[values].float()
        return dense

    def unit_set(self) -> set[tuple[int, int]]:
        """The selected units as a set of `(layer, index)`."""
        return set(zip(self.layers.tolist(), self.indices.tolist(), strict=True))

    def intersection(self, other: Mask) -> set[tuple[int, int]]:
        """Units selected by both masks (same site and unit kind)."""
        self._check_comparable(other)
        return self.unit_set() & other.unit_set()

    def jaccard(self, other: Mask) -> float:
        """|A and B| / |A or B| of the selected units; 0.0 for two empty masks."""
        self._check_comparable(other)
        a, b = self.unit_set(), other.unit_set()
        return len(a & b) / len(a | b) if a | b else 0.0

    def _check_comparable(self, other: Mask) -> None:
        if (self.site, self.unit, self.unit_shape) != (other.site, other.unit, other.unit_shape):
            raise ValueError(
                f"Cannot compare a {self.site}/{self.unit} mask with a {other.site}/{other.unit} mask"
            )

    def label(self, i: int) -> str:
        """Readable name of unit `i`, e.g. `L12.H3`, `L12.H3.d17`, `L12.N1024`, `L12.D5`."""
        return self.unit_name(int(self.layers[i]), int(self.indices[i]))

    def unit_name(self, layer: int, idx: int) -> str:
        """Readable name of any unit of this mask's site and kind (selected or not)."""
        if self.unit == "head":
            return f"L{layer}.H{idx}"
        if self.site == "head":
            d_head = self.unit_shape[1]
            return f"L{layer}.H{idx // d_head}.d{idx % d_head}"
        return f"L{layer}.{'N' if self.site in ('neuron', 'gate') else 'D'}{idx}"

    def table(self, n: int = 10) -> str:
        """The top `n` units as a plain-text table (rank, unit, layer, index, score, weight)."""
        lines = [f"{'rank':>4}  {'unit':<14}{'layer':>5}{'index':>7}{'score':>11}{'weight':>9}"]
        for i in range(min(n, self.k)):
            lines.append(
                f"{i + 1:>4}  {self.label(i):<14}{int(self.layers[i]):>5}{int(self.indices[i]):>7}"
                f"{float(self.scores[i]):>11.4g}{float(self.weights[i]):>9.3g}"
            )
        if self.k > n:
            lines.append(f"  ... {self.k - n} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        head = (
            f"Mask({self.method}, site={self.site}, unit={self.unit}, k={self.k}, "
            f"#acts={self.n_activations}, {self.operation} at {self.positions} positions, "
            f"model={self.model_name}, task={self.task})"
        )
        return head + "\n" + self.table()

    # ---- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a `.safetensors` file: tensors plus JSON metadata in its header (no pickle)."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {
            name: getattr(self, name).detach().cpu().contiguous()
            for name in _TENSOR_KEYS
            if getattr(self, name) is not None
        }
        meta = {key: getattr(self, key) for key in _META_KEYS - {"format_version"}}
        meta["format_version"] = FORMAT_VERSION
        # a crash never leaves a half-written mask or a stray temporary file behind
        atomic_write(
            path, lambda tmp: save_file(tensors, str(tmp), metadata={"steerlens": json.dumps(meta)})
        )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Mask:
        """Read a mask written by `save`, checking its format version and schema."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No mask file at {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error types for corrupt files
            raise ValueError(f"{path} is not a readable mask file ({err})") from err
        if "steerlens" not in header:
            raise ValueError(f"{path} has no steerlens metadata; was it written by Mask.save?")
        try:
            meta = json.loads(header["steerlens"])
        except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}: corrupt mask metadata ({err})") from None
        if not isinstance(meta, dict) or set(meta) != _META_KEYS:
            found = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{path}: mask metadata keys {found} != expected {sorted(_META_KEYS)}")
        if meta.pop("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: mask format version is not {FORMAT_VERSION}")
        if not set(tensors) <= _TENSOR_KEYS or not _TENSOR_KEYS - {"vectors"} <= set(tensors):
            raise ValueError(f"{path}: unexpected tensors {sorted(tensors)}")
        problem = _schema_problem(meta, tensors)
        if problem:
            raise ValueError(f"{path}: invalid mask ({problem})")
        try:
            arrays: dict[str, Any] = {k: tensors.get(k) for k in _TENSOR_KEYS}
            return cls(**meta, **arrays)
        except Exception as err:  # any other inconsistency: still a bad file, not a crash
            raise ValueError(f"{path}: invalid mask ({err})") from err


_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
_MAX_SIZE = 2**40  # far above any model's layers or units; rejects absurd (overflowing) sizes


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_SIZE


def _schema_problem(meta: dict[str, Any], tensors: dict[str, Tensor]) -> str | None:
    """What is wrong with the types of a loaded header and its tensors, or None."""
    for key in ("site", "unit", "method", "operation", "positions", "model_name", "fingerprint"):
        if not isinstance(meta[key], str):
            return f"{key} must be a string, got {type(meta[key]).__name__}"
    if meta["task"] is not None and not isinstance(meta["task"], str):
        return f"task must be a string or null, got {type(meta['task']).__name__}"
    if not isinstance(meta["info"], dict):
        return f"info must be an object, got {type(meta['info']).__name__}"
    if not _is_size(meta["n_layers"]):
        return f"n_layers must be a positive int, got {meta['n_layers']!r}"
    shape = meta["unit_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_size(x) for x in shape):
        return f"unit_shape must be a list of positive ints, got {shape!r}"
    for name, tensor in tensors.items():
        allowed = _INT_DTYPES if name in ("layers", "indices") else _FLOAT_DTYPES
        if tensor.dtype not in allowed:
            return f"tensor {name!r} has dtype {tensor.dtype}"
    return None
