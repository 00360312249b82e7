"""The papers' ablations on the tiny model: row shapes, paired differences, the masks they build,
and the driver that writes data and figures."""

from __future__ import annotations

import json

import pytest
import torch

from steerlens import austeer_mask, collect_differences, evaluate, figures
from steerlens.analysis import pair_subsets
from steerlens.baselines import fixed_strength, suppression_mask
from steerlens.experiments import ablations as abl
from steerlens.tasks import Task
from tests.reference import make_examples

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign", "ignore:.*pairs have identical")


@pytest.fixture
def task() -> Task:
    return Task(
        "ab", make_examples(16, seed=5), make_examples(10, seed=6), make_examples(12, seed=7)
    )


@pytest.fixture
def setup(model, task):
    diffs = collect_differences(model, task.train, site="mlp_out", progress=False)
    return diffs, abl.Splits.of(model, task)


def test_steer_less_curve_rows_and_figure(model, setup) -> None:
    diffs, splits = setup
    config = abl.AblationConfig(ks=(1, 4, 1000), strengths=(1.0, 4.0), batch_size=4, n_boot=100)
    rows = abl.steer_less_curve(model, diffs, splits, config)
    assert [r["k"] for r in rows] == [0, 1, 4, 64]  # k is capped at the 64 units of the tiny model
    assert rows[0]["n_activations"] == 0 and rows[-1]["n_activations"] == 64
    for r in rows:
        lo, hi = r["test"]["accuracy_ci"]
        assert lo <= r["test"]["accuracy"] <= hi
        assert "correct" not in r["test"]
    assert "delta_accuracy" not in rows[0]["test"]  # the unsteered row
    for r in rows[1:]:  # paired with the unsteered row on the same items
        for metric in ("accuracy", "restricted"):
            d, lo, hi = r["test"][f"delta_{metric}"]
            assert lo <= d <= hi
            assert d == pytest.approx(r["test"][metric] - rows[0]["test"][metric])
    plain = evaluate(model, splits.test, batch_size=4, progress=False)
    assert rows[0]["test"]["accuracy"] == pytest.approx(plain.accuracy)
    json.dumps(rows)  # plain data
    fig = figures.steer_less_figure(rows)
    assert fig.layout.xaxis.type == "category" and len(fig.data) >= 2  # paired: k side by side


def test_suppression_mask_takes_the_least_important_units(model, setup) -> None:
    diffs, splits = setup
    top = austeer_mask(diffs, 64)
    low = suppression_mask(diffs, 5)
    last5 = list(zip(top.layers.tolist(), top.indices.tolist(), strict=True))[-5:]
    assert low.unit_set() == set(last5)
    assert torch.equal(low.weights, torch.ones(5))
    config = abl.AblationConfig(
        unit_counts=(4,),
        strengths=(1.0,),
        fractions=(0.5,),
        factors=(0.5,),
        batch_size=4,
        n_boot=100,
    )
    result = abl.promotion_vs_suppression(model, diffs, splits, config)
    assert list(result) == ["vanilla", "suppression", "promotion"]
    assert result["suppression"]["factor"] == pytest.approx(0.5)
    assert result["suppression"]["n_units"] == 32
    figures.promotion_figure(result)


def test_adaptive_vs_fixed_uses_the_same_units(model, setup) -> None:
    diffs, splits = setup
    config = abl.AblationConfig(unit_counts=(4,), strengths=(2.0,), batch_size=4, n_boot=100)
    result = abl.adaptive_vs_fixed(model, diffs, splits, config)
    assert list(result) == ["vanilla", "adaptive", "fixed", "fixed-signed"]
    assert {result[v]["n_units"] for v in ("adaptive", "fixed", "fixed-signed")} == {4}
    mask = austeer_mask(diffs, 4)
    fixed = fixed_strength(mask, signed=True)
    assert torch.equal(fixed.weights.abs(), torch.ones(4))
    assert torch.equal(torch.sign(fixed.weights), torch.sign(mask.weights))
    with pytest.raises(ValueError, match="variants must be among"):
        abl.adaptive_vs_fixed(model, diffs, splits, config, variants=("nope",))
    figures.adaptive_figure(result)


def test_pairs_curve_uses_the_shared_pair_subsets(model, task) -> None:
    config = abl.AblationConfig(n_pairs=(4, 8, 100), batch_size=4, n_boot=100, quick=True)
    rows = abl.pairs_curve(model, task, abl.Splits.of(model, task), config, seeds=(0, 1))
    steered = [r for r in rows if r["method"] != "none"]
    assert sorted({r["n_pairs"] for r in steered}) == [4, 8, 16]
    expected = set(pair_subsets(16, (4, 8, 16), (0, 1)))
    assert {(r["n_pairs"], r["seed"]) for r in steered if r["method"] == "sadi-head"} == expected
    assert expected == {(4, 0), (4, 1), (8, 0), (8, 1), (16, 0)}
    assert len(figures.ablation_pairs_figure(rows).data) >= 4


def test_pair_subsets_are_seeded_sorted_and_distinct() -> None:
    subsets = pair_subsets(20, (5, 20), (0, 1))
    assert subsets[(20, 0)] is None and (20, 1) not in subsets
    a, b = subsets[(5, 0)], subsets[(5, 1)]
    assert a == sorted(a) and len(set(a)) == 5 and a != b
    assert pair_subsets(20, (5,), (0,)) == {(5, 0): a}


def test_run_ablations_writes_data_and_figures(tmp_path, model, task, monkeypatch) -> None:
    saved = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: saved.append(path) or [path])
    config = abl.AblationConfig(ks=(1, 8), n_pairs=(4, 16), batch_size=4, n_boot=50, quick=True)
    results = abl.run_ablations(
        model, task, tmp_path / "abl", config, figures_dir=tmp_path / "figs"
    )
    assert list(results) == list(abl.ABLATIONS)
    for name in abl.ABLATIONS:
        record = json.loads((tmp_path / "abl" / f"ablation-{name}-ab-0shot.json").read_text())
        assert record["ablation"] == name and record["data"]
    assert [p.name for p in saved] == [f"ablation-{n}-ab-0shot" for n in abl.ABLATIONS]
    with pytest.raises(ValueError, match="Unknown ablations"):
        abl.AblationConfig(which=("steer-more",))
