"""Mask: dense views, set comparisons, text views, exact save/load round trips, strict loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from steerlens import Mask
from steerlens.mask import FORMAT_VERSION
from tests.checking import OFF_TYPE

UNIT_SHAPES = {"head": (3, 4), "neuron": (10,), "mlp_out": (6,), "resid": (6,)}


def make_mask(
    units: list[tuple[int, int]],
    *,
    site: str = "mlp_out",
    unit: str = "dim",
    weights: list[float] | None = None,
    operation: str = "scale",
    vectors: torch.Tensor | None = None,
    n_layers: int = 3,
    **extra,
) -> Mask:
    """A mask over `units` with scores k, k-1, ... so the order given is the ranking."""
    k = len(units)
    fields = dict(
        site=site,
        unit=unit,
        method="hand",
        layers=torch.tensor([u[0] for u in units], dtype=torch.long),
        indices=torch.tensor([u[1] for u in units], dtype=torch.long),
        scores=torch.arange(k, 0, -1).float(),
        weights=torch.tensor(weights if weights is not None else [1.0] * k),
        operation=operation,
        positions="last",
        model_name="tiny",
        fingerprint="f" * 16,
        n_layers=n_layers,
        unit_shape=UNIT_SHAPES.get(site, (6,)),
        vectors=vectors,
    )
    fields.update(extra)
    return Mask(**fields)


def assert_same_mask(a: Mask, b: Mask) -> None:
    """Every field equal; tensors bit-identical with matching dtypes (NaN equal to NaN)."""
    for f in Mask.__dataclass_fields__:
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape, f
            assert torch.equal(x.isnan(), y.isnan()), f
            assert torch.equal(torch.nan_to_num(x, nan=0.0), torch.nan_to_num(y, nan=0.0)), f
        else:
            assert x == y, f


# ---- views -------------------------------------------------------------------------------------


def test_to_dense_positions_and_values() -> None:
    """to_dense puts 1 / weights / scores exactly at the selected (layer, index) cells."""
    mask = make_mask([(2, 5), (0, 0), (1, 3)], weights=[0.5, -0.25, 2.0])
    for values, expected in [
        ("mask", [1.0, 1.0, 1.0]),
        ("weights", [0.5, -0.25, 2.0]),
        ("scores", [3.0, 2.0, 1.0]),
    ]:
        dense = mask.to_dense(values)
        assert dense.shape == (3, 6)
        want = torch.zeros(3, 6)
        for (layer, idx), v in zip([(2, 5), (0, 0), (1, 3)], expected, strict=True):
            want[layer, idx] = v
        assert torch.equal(dense, want)
    with pytest.raises(ValueError):
        mask.to_dense("bogus")


@pytest.mark.parametrize(("unit", "width"), [("head", 3), ("dim", 12)])
def test_to_dense_head_site(unit: str, width: int) -> None:
    """At the head site, dense columns are heads (unit='head') or flattened hook_z entries."""
    mask = make_mask([(1, 2), (0, 1)], site="head", unit=unit)
    dense = mask.to_dense()
    assert dense.shape == (3, width)
    assert dense.sum() == 2 and dense[1, 2] == 1 and dense[0, 1] == 1


def test_intersection_and_jaccard() -> None:
    """Set comparisons count shared (layer, index) units, independent of order and weights."""
    a = make_mask([(0, 1), (1, 2), (2, 3)])
    b = make_mask([(2, 3), (0, 1), (0, 2), (1, 1)], weights=[9.0, 9.0, 9.0, 9.0])
    assert a.intersection(b) == {(0, 1), (2, 3)} == b.intersection(a)
    assert a.jaccard(b) == pytest.approx(2 / 5) == b.jaccard(a)
    assert a.jaccard(a) == 1.0
    assert a.jaccard(make_mask([(1, 1)])) == 0.0
    assert a.top(1).jaccard(a) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "other",
    [
        dict(site="resid"),
        dict(site="head", unit="head"),
        dict(site="head", unit="dim"),
    ],
)
def test_comparing_different_sites_raises(other: dict) -> None:
    """Masks at different sites or of different unit kinds cannot be compared."""
    a = make_mask([(0, 1)])
    b = make_mask([(0, 1)], **other)
    with pytest.raises(ValueError, match="Cannot compare"):
        a.jaccard(b)
    with pytest.raises(ValueError, match="Cannot compare"):
        b.intersection(a)


@pytest.mark.parametrize(
    ("site", "unit", "label"),
    [
        ("head", "head", "L1.H2"),
        ("head", "dim", "L1.H0.d2"),
        ("neuron", "dim", "L1.N2"),
        ("mlp_out", "dim", "L1.D2"),
        ("resid", "dim", "L1.D2"),
    ],
)
def test_table_and_repr_contain_unit_labels(site: str, unit: str, label: str) -> None:
    """repr shows the method, k and a ranked table with readable unit labels."""
    mask = make_mask([(1, 2), (0, 0)], site=site, unit=unit, weights=[0.75, -0.5])
    text = repr(mask)
    assert label in text and "hand" in text and "k=2" in text
    lines = mask.table().splitlines()
    assert len(lines) == 3 and label in lines[1]
    assert "-0.5" in lines[2]


def test_table_truncates() -> None:
    """A long mask's table shows the first n rows and says how many are left."""
    mask = make_mask([(0, i) for i in range(6)])
    table = mask.table(n=4)
    assert len(table.splitlines()) == 6 and "2 more" in table


def test_n_activations_counts_scalars() -> None:
    """#acts is k for dims and k * d_head for whole heads."""
    assert make_mask([(0, 0), (1, 1)], site="head", unit="head").n_activations == 8
    assert make_mask([(0, 0), (1, 1)], site="head", unit="dim").n_activations == 2
    assert len(make_mask([(0, 0), (1, 1), (2, 2)])) == 3


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(units=[(0, 1), (0, 1)]), "twice"),
        (dict(units=[(3, 0)]), "layers"),
        (dict(units=[(-1, 0)]), "layers"),
        (dict(units=[(0, 6)]), "indices"),
        (dict(units=[(0, 3)], site="head", unit="head"), "indices"),
        (dict(units=[(0, 0)], operation="add"), "vectors"),
        (dict(units=[(0, 0)], operation="add", vectors=torch.ones(1, 2)), "vectors"),
        (dict(units=[(0, 0)], vectors=torch.ones(1, 1)), "vectors"),
        (dict(units=[(0, 0)], unit="head"), "unit"),
        (dict(units=[(0, 0)], operation="multiply"), "operation"),
        (dict(units=[(0, 0)], positions="first"), "positions"),
        (dict(units=[(0, 0)], weights=[math.inf]), "finite"),
        (dict(units=[(0, 0)], site="hidden"), "site"),
    ],
)
def test_constructor_validation(kwargs: dict, match: str) -> None:
    """Invalid masks are rejected at construction with a ValueError naming the problem (or, for
    a value outside an annotation, the run-time type check's error naming the parameter)."""
    units = kwargs.pop("units")
    with pytest.raises(OFF_TYPE, match=match):
        make_mask(units, **kwargs)


@pytest.mark.parametrize(
    ("site", "unit", "shape", "operation"),
    [
        ("head", "head", (3,), "scale"),
        ("head", "dim", (12,), "scale"),
        ("head", "head", (3,), "add"),
        ("mlp_out", "dim", (2, 3), "scale"),
        ("resid", "dim", (6, 1), "add"),
    ],
)
def test_constructor_rejects_unit_shape_of_wrong_rank(site, unit, shape, operation) -> None:
    """unit_shape must be [n_heads, d_head] at the head site and [width] elsewhere, positive."""
    vectors = torch.ones(1, 1) if operation == "add" else None
    with pytest.raises(ValueError, match="unit.shape"):
        make_mask(
            [(0, 0)], site=site, unit=unit, unit_shape=shape, operation=operation, vectors=vectors
        )


def test_constructor_rejects_float_indices() -> None:
    """layers and indices must be integer tensors."""
    with pytest.raises(OFF_TYPE):
        make_mask([(0, 1)], layers=torch.tensor([0.0]))
    with pytest.raises(OFF_TYPE):
        make_mask([(0, 1)], indices=torch.tensor([1.0]))


def test_constructor_rejects_mismatched_lengths() -> None:
    """layers, indices, scores and weights must all have length k."""
    with pytest.raises(OFF_TYPE, match="1-d tensor|parameter 'weights'"):
        make_mask([(0, 0), (1, 1)], weights=[1.0])


# ---- files -------------------------------------------------------------------------------------


@st.composite
def masks(draw) -> Mask:
    site = draw(st.sampled_from(sorted(UNIT_SHAPES)))
    unit = draw(st.sampled_from(["head", "dim"])) if site == "head" else "dim"
    n_layers = draw(st.integers(1, 4))
    shape = UNIT_SHAPES[site]
    per_layer = shape[0] if unit == "head" else math.prod(shape)
    k = draw(st.integers(0, min(6, n_layers * per_layer)))
    flat = draw(
        st.lists(st.integers(0, n_layers * per_layer - 1), min_size=k, max_size=k, unique=True)
    )
    finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
    weights = draw(st.lists(finite, min_size=k, max_size=k))
    scores = draw(st.lists(st.floats(width=32), min_size=k, max_size=k))
    operation = draw(st.sampled_from(["scale", "add"]))
    width = shape[1] if unit == "head" else 1
    vectors = None
    if operation == "add":
        vec = draw(st.lists(finite, min_size=k * width, max_size=k * width))
        vectors = torch.tensor(vec, dtype=torch.float32).reshape(k, width)
    info = draw(
        st.dictionaries(
            st.sampled_from(["k", "seed", "by", "layer"]),
            st.one_of(st.integers(-5, 5), st.text(max_size=5), st.booleans()),
            max_size=3,
        )
    )
    return Mask(
        site=site,
        unit=unit,
        method=draw(st.sampled_from(["sadi", "austeer", "caa", "iti", "random"])),
        layers=torch.tensor([f // per_layer for f in flat], dtype=torch.long),
        indices=torch.tensor([f % per_layer for f in flat], dtype=torch.long),
        scores=torch.tensor(scores, dtype=torch.float32),
        weights=torch.tensor(weights, dtype=torch.float32),
        operation=operation,
        positions=draw(st.sampled_from(["last", "all"])),
        model_name=draw(st.text(min_size=1, max_size=12)),
        fingerprint=f"{draw(st.integers(0, 2**64 - 1)):016x}",
        n_layers=n_layers,
        unit_shape=shape,
        vectors=vectors,
        task=draw(st.one_of(st.none(), st.text(max_size=8))),
        info=info,
    )


# Under the suite's run-time type checks, beartype samples container items with the `random`
# module when `masks()` builds a Mask, which Hypothesis notes (harmless: nothing here is random).
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mask=masks())
def test_save_load_round_trip(tmp_path: Path, mask: Mask) -> None:
    """save -> load gives back exactly the same mask (scale and add masks, any site/unit)."""
    path = mask.save(tmp_path / "sub" / "m.safetensors")
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    assert_same_mask(Mask.load(path), mask)


def _save_with_meta(path: Path, meta: dict | None, tensors: dict | None = None) -> Path:
    mask = make_mask([(0, 1), (2, 3)])
    tensors = tensors or {n: getattr(mask, n) for n in ("layers", "indices", "scores", "weights")}
    save_file(
        tensors, str(path), metadata=None if meta is None else {"steerlens": json.dumps(meta)}
    )
    return path


def _valid_meta(tmp_path: Path) -> dict:
    path = make_mask([(0, 1), (2, 3)]).save(tmp_path / "ok.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["steerlens"])


def test_load_rejects_truncated_file(tmp_path: Path) -> None:
    """A truncated file is a ValueError, not a crash or a partial mask."""
    path = make_mask([(0, 1), (2, 3)]).save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    for cut in (4, len(data) // 2, len(data) - 3):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            Mask.load(bad)


def test_load_rejects_file_without_metadata(tmp_path: Path) -> None:
    """A plain safetensors file (no steerlens header) is refused."""
    with pytest.raises(ValueError, match="metadata"):
        Mask.load(_save_with_meta(tmp_path / "plain.safetensors", None))


def test_load_rejects_wrong_version(tmp_path: Path) -> None:
    """Another format version is refused rather than guessed."""
    meta = _valid_meta(tmp_path)
    assert meta["format_version"] == FORMAT_VERSION
    meta["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="version"):
        Mask.load(_save_with_meta(tmp_path / "v.safetensors", meta))


@pytest.mark.parametrize("change", ["extra", "missing"])
def test_load_rejects_unknown_or_missing_keys(tmp_path: Path, change: str) -> None:
    """Metadata with an extra or a missing key is refused (never silently dropped or defaulted)."""
    meta = _valid_meta(tmp_path)
    if change == "extra":
        meta["surprise"] = 1
    else:
        del meta["task"]
    with pytest.raises(ValueError, match="keys"):
        Mask.load(_save_with_meta(tmp_path / "k.safetensors", meta))


def test_load_rejects_bad_tensors_and_invalid_content(tmp_path: Path) -> None:
    """Unexpected tensors, missing tensors and masks that fail validation raise ValueError."""
    meta = _valid_meta(tmp_path)
    mask = make_mask([(0, 1), (2, 3)])
    base = {n: getattr(mask, n) for n in ("layers", "indices", "scores", "weights")}
    with pytest.raises(ValueError, match="tensors"):
        Mask.load(
            _save_with_meta(tmp_path / "a.safetensors", meta, {**base, "extra": torch.ones(2)})
        )
    with pytest.raises(ValueError, match="tensors"):
        Mask.load(_save_with_meta(tmp_path / "b.safetensors", meta, {"layers": base["layers"]}))
    dup = {**base, "indices": torch.tensor([1, 1]), "layers": torch.tensor([0, 0])}
    with pytest.raises(ValueError, match="invalid mask"):
        Mask.load(_save_with_meta(tmp_path / "c.safetensors", meta, dup))


def test_load_rejects_unit_shape_of_wrong_rank(tmp_path: Path) -> None:
    """A header whose unit_shape does not fit the site is a ValueError, like any invalid mask."""
    mask = make_mask([(0, 1)], site="head", unit="head", operation="add", vectors=torch.ones(1, 4))
    path = mask.save(tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["steerlens"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta["unit_shape"] = [3]
    with pytest.raises(ValueError):
        Mask.load(_save_with_meta(tmp_path / "bad.safetensors", meta, tensors))


def test_load_never_unpickles(tmp_path: Path) -> None:
    """A pickle (torch.save) file is rejected as unreadable instead of being executed."""
    path = tmp_path / "m.safetensors"
    torch.save({"layers": torch.tensor([0])}, path)
    with pytest.raises(ValueError):
        Mask.load(path)


def test_load_missing_file(tmp_path: Path) -> None:
    """A missing path is a FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        Mask.load(tmp_path / "nope.safetensors")
