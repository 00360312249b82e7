"""Figures: the data each builder plots (not just that a file appears), and saving without a browser."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from steerlens import analysis, figures
from steerlens.analysis import (
    UnitScan,
    UnitWrites,
    pairs_curve_data,
    single_unit_scan,
    unit_writes_data,
)
from steerlens.collect import Differences, collect_differences
from steerlens.evaluate import EvalResult
from steerlens.figures import export, units
from steerlens.figures._style import COLORS, TEMPLATE
from steerlens.select import austeer_mask, austeer_scores, sadi_mask, sadi_scores
from steerlens.sweep import SweepResult
from tests.checking import warning_file


def make_diffs(
    site: str = "head",
    *,
    n_layers: int = 3,
    unit: tuple[int, ...] = (4, 8),
    n_pairs: int = 12,
    seed: int = 0,
    task: str = "t",
) -> Differences:
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.randn((n_pairs, n_layers, *unit), generator=gen) + 0.3
    return Differences(
        site=site,
        model_name="hand-built",
        fingerprint="f" * 16,
        n_pairs=n_pairs,
        mean=pairs.mean(0),
        n_pos=(pairs > 0).sum(0),
        n_neg=(pairs < 0).sum(0),
        sq_mean=pairs.pow(2).mean(0),
        pairs=pairs,
        task=task,
    )


def titles_and_axes(fig: go.Figure) -> None:
    """The figure has a title and at least one titled x and y axis."""
    assert fig.layout.title.text
    x_titles = [fig.layout[k].title.text for k in fig.layout if k.startswith("xaxis")]
    y_titles = [fig.layout[k].title.text for k in fig.layout if k.startswith("yaxis")]
    assert any(x_titles) and any(y_titles)


def eval_result(acc: float, n: int = 20) -> EvalResult:
    hits = torch.zeros(n, dtype=torch.bool)
    hits[: round(acc * n)] = True
    return EvalResult(hits, hits.clone(), torch.zeros(n))


# ---- 1 ----
def test_head_heatmap_cells_are_the_scores_and_marks_are_the_mask():
    diffs = make_diffs()
    mask = sadi_mask(diffs, 3)
    fig = figures.head_heatmap(diffs, mask)
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z, sadi_scores(diffs).double().numpy().T)  # [head, layer]
    marked = set(zip(fig.data[1].x, fig.data[1].y, strict=True))
    assert marked == mask.unit_set()
    ranks = np.asarray(fig.data[0].customdata)
    best_layer, best_head = int(mask.layers[0]), int(mask.indices[0])
    assert ranks[best_head, best_layer] == 1
    assert sorted(ranks.ravel().tolist()) == list(range(1, z.size + 1))
    assert fig.data[0].zmid == 0
    assert "rank" in fig.data[0].hovertemplate and "layer" in fig.data[0].hovertemplate
    titles_and_axes(fig)


def test_head_heatmap_marks_heads_of_a_dim_mask_and_rejects_other_sites():
    diffs = make_diffs()
    au = austeer_mask(diffs, 5)
    fig = figures.head_heatmap(diffs, au)
    expected = {(int(layer), int(i) // 8) for layer, i in zip(au.layers, au.indices, strict=True)}
    assert set(zip(fig.data[1].x, fig.data[1].y, strict=True)) == expected
    with pytest.raises(ValueError, match="head"):
        figures.head_heatmap(make_diffs("mlp_out", unit=(16,)))


# ---- 2 ----
def test_layer_distribution_counts_and_scores():
    neuron = sadi_mask(make_diffs("neuron", unit=(20,)), 10)
    hidden = sadi_mask(make_diffs("mlp_out", unit=(12,), seed=1), 7)
    fig = figures.layer_distribution({"neurons": neuron, "dims": hidden})
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    dots = [t for t in fig.data if isinstance(t, go.Scatter)]
    for bar, dot, m in zip(bars, dots, (neuron, hidden), strict=True):
        assert list(bar.y) == np.bincount(m.layers.numpy(), minlength=m.n_layers).tolist()
        assert sum(bar.y) == m.k
        np.testing.assert_allclose(dot.y, m.scores.numpy())
        assert list(dot.x) == m.layers.tolist()
    titles_and_axes(fig)


# ---- 3 ----
def test_overlap_matrix_diagonal_sizes_symmetric_jaccard():
    masks = {f"task{i}": sadi_mask(make_diffs(seed=i), k) for i, k in enumerate((3, 5, 4))}
    labels, shared, jac = figures.overlap_counts(masks)
    assert labels == list(masks)
    assert np.diag(shared).tolist() == [3, 5, 4]
    np.testing.assert_array_equal(shared, shared.T)
    np.testing.assert_allclose(jac, jac.T)
    np.testing.assert_allclose(np.diag(jac), 1.0)
    a, b = masks["task0"], masks["task1"]
    assert shared[0, 1] == len(a.unit_set() & b.unit_set())
    assert jac[0, 1] == pytest.approx(a.jaccard(b))
    fig = figures.overlap_matrix(masks)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), shared)
    np.testing.assert_allclose(np.asarray(fig.data[1].z), jac)
    total = a.n_layers * a.units_per_layer  # chance: k_a * k_b / N, averaged over the 3 pairs
    chance = (3 * 5 + 3 * 4 + 5 * 4) / 3 / total
    assert units.random_overlap(list(masks.values())) == pytest.approx(chance)
    assert f"random ≈ {chance:.2g}" in fig.layout.annotations[0].text
    titles_and_axes(fig)


def test_overlap_matrix_one_row_per_family():
    heads = {f"t{i}": sadi_mask(make_diffs(seed=i), 3) for i in range(3)}
    aus = {f"t{i}": austeer_mask(make_diffs(seed=i), 6) for i in range(3)}
    fig = figures.overlap_matrix({"heads": heads, "AUs": aus})
    assert len(fig.data) == 4
    assert np.diag(np.asarray(fig.data[2].z)).tolist() == [6, 6, 6]


# ---- 4 ----
def test_sweep_heatmap_grid_and_best_marker():
    acc = np.array([[0.1, 0.5, 0.3], [0.2, 0.4, 0.7]])
    result = SweepResult(
        [1, 4], [0.5, 1.0, 2.0], "accuracy", acc, acc / 2, eval_result(0.25), "sadi"
    )
    fig = figures.sweep_heatmap(result)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), 100 * acc)
    setting, strength, _ = result.best
    assert (fig.data[1].x[0], fig.data[1].y[0]) == (f"{strength:g}", str(setting)) == ("2", "4")
    assert list(fig.data[0].y) == ["1", "4"] and list(fig.data[0].x) == ["0.5", "1", "2"]
    assert "25.0%" in fig.layout.title.text  # the unsteered score
    # colours diverge from the unsteered score (white at 25%), over the values' range only
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax) == pytest.approx((10.0, 70.0))
    white = (25.0 - heat.zmin) / (heat.zmax - heat.zmin)
    stops = np.array([s[0] for s in heat.colorscale])
    mid = heat.colorscale[int(np.argmin(abs(stops - white)))][1]
    assert min(int(v) for v in mid[4:-1].split(",")) > 200  # near white
    assert heat.colorscale[0][1] != heat.colorscale[-1][1]
    # one dev item above unsteered is a tint, not full colour
    small = SweepResult(
        [1], [1.0, 2.0], "accuracy", np.array([[0.25, 0.275]]), acc[:1, :2], eval_result(0.25)
    )
    top = figures.sweep_heatmap(small).data[0].colorscale[-1][1]
    assert min(int(v) for v in top[4:-1].split(",")) > 150  # pale, far from RdBu's dark red
    assert "no better than unsteered" not in fig.data[1].name  # 70% beats 25%
    titles_and_axes(fig)


def test_sweep_heatmap_says_when_the_best_cell_only_ties_unsteered():
    acc = np.array([[0.25, 0.1], [0.2, 0.25]])
    result = SweepResult([1, 4], [0.5, 1.0], "accuracy", acc, acc, eval_result(0.25), "sadi")
    fig = figures.sweep_heatmap(result)
    assert "no better than unsteered, 25.0%" in fig.data[1].name


def test_sweep_heatmap_other_metric_marks_its_own_best():
    acc = np.array([[0.9, 0.1]])
    res = np.array([[0.2, 0.6]])
    result = SweepResult([8], [1.0, 2.0], "accuracy", acc, res, eval_result(0.5))
    fig = figures.sweep_heatmap(result, metric="restricted")
    np.testing.assert_allclose(np.asarray(fig.data[0].z), 100 * res)
    assert fig.data[1].x[0] == "2"


# ---- 5 ----
def test_pairs_curve_mean_and_spread():
    records = [
        {"method": "a", "n_pairs": 10, "seed": 0, "accuracy": 0.4},
        {"method": "a", "n_pairs": 10, "seed": 1, "accuracy": 0.6},
        {"method": "a", "n_pairs": 20, "seed": 0, "accuracy": 0.7},
        {"method": "b", "n_pairs": 10, "seed": 0, "accuracy": 0.2},
        {"method": "a", "n_pairs": 0, "seed": 0, "accuracy": 0.3},
    ]
    fig = figures.pairs_curve(records)
    a, b = fig.data[0], fig.data[1]
    assert (a.name, b.name) == ("a", "b")
    assert list(a.x) == [10, 20]
    np.testing.assert_allclose(a.y, [50.0, 70.0])
    np.testing.assert_allclose(a.error_y.array, [10.0, 0.0])
    assert fig.layout.shapes[0].y0 == pytest.approx(30.0)  # the unsteered line
    titles_and_axes(fig)


def test_pairs_curve_draws_paired_differences_of_seed_averaged_hits():
    from steerlens.stats import paired_bootstrap_ci, str_to_flags

    base, seeds = "0011", {0: "1011", 1: "0111"}
    records = [{"method": "a", "n_pairs": 0, "seed": 0, "accuracy": 0.5, "flags": base}]
    records += [
        {"method": "a", "n_pairs": 10, "seed": s, "accuracy": 0.75, "flags": f}
        for s, f in seeds.items()
    ]
    records.append({"method": "a", "n_pairs": 20, "seed": 0, "accuracy": 0.5, "flags": base})
    fig = figures.pairs_curve(records)
    (a,) = fig.data
    assert list(a.x) == ["10", "20"] and fig.layout.scattermode == "group"
    mean_hits = np.mean([str_to_flags(f) for f in seeds.values()], axis=0)
    d, lo, hi = paired_bootstrap_ci(mean_hits, str_to_flags(base))
    np.testing.assert_allclose(a.y, [100 * d, 0.0])
    np.testing.assert_allclose(a.error_y.array[0], 100 * (hi - d))
    assert fig.layout.shapes[0].y0 == 0 and "unsteered 50.0%" in fig.layout.annotations[0].text
    assert "paired" in fig.layout.yaxis.title.text
    titles_and_axes(fig)


# ---- 6 ----
def test_au_score_map_is_the_austeer_score_and_marks_the_mask():
    head, mlp = make_diffs(), make_diffs("mlp_out", unit=(16,), seed=2)
    masks = {"attention": austeer_mask(head, 5), "ffn": austeer_mask(mlp, 4)}
    fig = figures.au_score_map({"attention": head, "ffn": mlp}, masks=masks)
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    marks = [t for t in fig.data if isinstance(t, go.Scatter)]
    for h, m, d, mask in zip(heat, marks, (head, mlp), masks.values(), strict=True):
        np.testing.assert_allclose(np.asarray(h.z), austeer_scores(d)[0].double().numpy())
        assert set(zip(m.y, m.x, strict=True)) == mask.unit_set()
    assert np.asarray(heat[0].z).shape == (3, 32)  # heads flattened: 4 heads x d_head 8
    assert list(fig.layout.xaxis.ticktext) == ["H0", "H1", "H2", "H3"]  # heads named
    assert list(fig.layout.xaxis.tickvals) == [3.5, 11.5, 19.5, 27.5]
    assert tuple(fig.layout.yaxis.range) == (-0.5, 2.5)  # no tick past the last layer
    titles_and_axes(fig)


# ---- 7 ----
def test_unit_vs_block_lines():
    scan = UnitScan(
        layer=2,
        head=1,
        dims=[0, 4],
        strengths=[1.0, 8.0],
        accuracy={1.0: [0.5, 0.6], 8.0: [0.2, 0.9]},
        block={1.0: 0.55, 8.0: 0.3},
        baseline=0.4,
        references={"SADI": 0.65},
        n_items=10,
    )
    fig = figures.unit_vs_block(scan)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    np.testing.assert_allclose(lines[1].y, [20.0, 90.0])
    levels = sorted(round(s.y0, 6) for s in fig.layout.shapes)
    assert levels == [30.0, 40.0, 55.0, 65.0]
    titles_and_axes(fig)


def test_unit_vs_block_draws_paired_differences_with_the_head_beside_its_dims():
    scan = UnitScan(
        layer=2,
        head=1,
        dims=[0, 4],
        strengths=[1.0, 8.0],
        accuracy={1.0: [0.4, 0.5], 8.0: [0.4, 0.2]},
        block={1.0: 0.4, 8.0: 0.3},
        baseline=0.4,
        references={"SADI": 0.5},
        n_items=10,
        delta={
            1.0: [(0.0, 0.0, 0.0), (0.1, 0.0, 0.2)],
            8.0: [(0.0, -0.1, 0.1), (-0.2, -0.4, -0.1)],
        },
        block_delta={1.0: (0.0, 0.0, 0.0), 8.0: (-0.1, -0.3, 0.0)},
    )
    fig = figures.unit_vs_block(scan)
    points = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in points] == ["strength 1", "strength 8"]
    assert list(points[1].x) == ["d0", "d4", "whole head"]
    np.testing.assert_allclose(points[1].y, [0.0, -20.0, -10.0])
    np.testing.assert_allclose(points[1].error_y.arrayminus, [10.0, 20.0, 20.0])
    assert fig.layout.scattermode == "group"  # equal values sit side by side, none hidden
    levels = sorted(round(s.y0, 6) for s in fig.layout.shapes if s.y0 is not None)
    assert 0.0 in levels and 10.0 in levels  # unsteered, and the reference 50% - 40%
    assert "paired 95%" in fig.layout.yaxis.title.text
    titles_and_axes(fig)


# ---- 8 ----
def test_unit_writes_bars():
    w = UnitWrites(
        label="L3.H1.d5",
        site="head",
        layer=3,
        index=69,
        static_tokens=["␣yes", "␣no"],
        static_logits=[2.0, 1.0],
        prompt="Q?",
        strength=100.0,
        steered_tokens=["A", "B"],
        steered_probs=[0.7, 0.1],
        clean_probs=[0.05, 0.2],
    )
    fig = figures.unit_writes([w, w])
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 6
    assert list(bars[0].y) == ["␣yes", "␣no"] and list(bars[0].x) == [2.0, 1.0]
    np.testing.assert_allclose(bars[2].x, [70.0, 10.0])
    np.testing.assert_allclose(bars[1].x, [5.0, 20.0])
    titles_and_axes(fig)


# ---- method comparison ----
def test_method_comparison_from_csv_rows():
    text = (
        "method,site,setting_name,setting,strength,n_units,n_activations,dev,test_accuracy,"
        "test_accuracy_lo,test_accuracy_hi,test_restricted,test_restricted_lo,test_restricted_hi,n_test\n"
        "none,-,-,-,0.0,0,0,0.4,0.40,0.30,0.50,0.55,0.45,0.65,60\n"
        "sadi-head,head,K,4,1.0,4,256,0.6,0.60,0.48,0.72,0.70,0.58,0.80,60\n"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    fig = figures.method_comparison(rows)
    acc = fig.data[0]
    assert list(acc.x) == ["unsteered", "sadi-head"]
    np.testing.assert_allclose(acc.y, [40.0, 60.0])
    assert list(acc.text) == ["40.0", "60.0"]  # values on the bars (a 0% bar reads "0.0")
    np.testing.assert_allclose(acc.error_y.array, [10.0, 12.0])
    np.testing.assert_allclose(acc.error_y.arrayminus, [10.0, 12.0])
    np.testing.assert_allclose(fig.data[1].y, [55.0, 70.0])
    titles_and_axes(fig)


def test_method_comparison_from_result_objects():
    class Scores:
        def __init__(self, acc: float, res: float) -> None:
            self.accuracy, self.restricted, self.n = acc, res, 40

        def ci(self, metric: str) -> tuple[float, float]:
            value = getattr(self, metric)
            return value - 0.1, value + 0.05

    rows = [
        SimpleNamespace(
            method="none",
            setting_name="-",
            setting="-",
            strength=0.0,
            n_activations=0,
            test=Scores(0.0, 0.5),
        ),
        SimpleNamespace(
            method="austeer-ffn",
            setting_name="K",
            setting=30,
            strength=8.0,
            n_activations=30,
            test=Scores(0.6, 0.8),
        ),
        SimpleNamespace(
            method="dev-only", setting_name="K", setting=1, strength=1.0, n_activations=1, test=None
        ),  # no test scores: left out
    ]
    fig = figures.method_comparison(rows, task="sst2")
    assert list(fig.data[0].x) == ["unsteered", "austeer-ffn"]
    np.testing.assert_allclose(fig.data[0].y, [0.0, 60.0])  # a zero score is still a bar
    np.testing.assert_allclose(fig.data[0].error_y.arrayminus, [10.0, 10.0])
    np.testing.assert_allclose(fig.data[1].y, [50.0, 80.0])
    assert [t.marker.color for t in fig.data] == [COLORS[0], COLORS[1]]
    assert "sst2" in fig.layout.title.text and "40 test items" in fig.layout.title.text


def test_method_comparison_draws_paired_differences_and_chance():
    """Below the accuracies, each method's paired difference to unsteered: from the CSV's delta
    columns, or from per-item flags (equal to `paired_bootstrap_ci`); chance as a dotted line."""
    from steerlens.stats import paired_bootstrap_ci, str_to_flags

    text = (
        "method,setting_name,setting,strength,n_activations,n_test,test_accuracy,test_accuracy_lo,"
        "test_accuracy_hi,delta_accuracy,delta_accuracy_lo,delta_accuracy_hi,test_restricted,"
        "test_restricted_lo,test_restricted_hi,delta_restricted,delta_restricted_lo,"
        "delta_restricted_hi\n"
        "none,-,-,0,0,60,0.4,0.3,0.5,nan,nan,nan,0.5,0.4,0.6,nan,nan,nan\n"
        "caa,L,3,1,576,60,0.45,0.35,0.55,0.05,0.01,0.09,0.5,0.4,0.6,0.0,-0.02,0.02\n"
    )
    fig = figures.method_comparison(list(csv.DictReader(io.StringIO(text))), chance=0.5)
    below = [t for t in fig.data if t.yaxis == "y2"]
    assert [t.name for t in below] == ["full-vocabulary accuracy", "restricted to the options"]
    np.testing.assert_allclose(below[0].y, [0.0, 5.0])
    np.testing.assert_allclose(below[0].error_y.arrayminus, [0.0, 4.0])
    np.testing.assert_allclose(below[1].error_y.array, [0.0, 2.0])
    assert not any(t.showlegend for t in below)
    chance = [s for s in fig.layout.shapes if s.line.dash == "dot"]
    assert len(chance) == 1 and chance[0].y0 == pytest.approx(50.0)
    assert any("chance 50.0%" in a.text for a in fig.layout.annotations)

    class Scores:
        def __init__(self, flags: str) -> None:
            self.correct = flags
            self.accuracy = self.restricted = str_to_flags(flags).mean()
            self.n = len(flags)

        def ci(self, metric: str) -> tuple[float, float]:
            return self.accuracy - 0.1, self.accuracy + 0.1

        def flags(self, metric: str) -> str:
            return self.correct

    rows = [
        SimpleNamespace(
            method=m, setting_name="K", setting=1, strength=1.0, n_activations=1, test=Scores(f)
        )
        for m, f in [("none", "0101010101"), ("sadi-head", "1101110101")]
    ]
    fig = figures.method_comparison(rows)
    below = [t for t in fig.data if t.yaxis == "y2"]
    expect = paired_bootstrap_ci(str_to_flags("1101110101"), str_to_flags("0101010101"))
    np.testing.assert_allclose(below[0].y, [0.0, 100 * expect[0]])
    np.testing.assert_allclose(below[0].error_y.arrayminus[1], 100 * (expect[0] - expect[1]))


# ---- the ablations' figures ----
def scores(acc: float, res: float, *, n: int = 50, half: float = 0.1) -> dict[str, Any]:
    """The `test` entry of an ablation row (JSON-shaped, as `steerlens.ablations` writes it)."""
    return {
        "n": n,
        "accuracy": acc,
        "accuracy_ci": [max(0.0, acc - half), min(1.0, acc + half)],
        "restricted": res,
        "restricted_ci": [max(0.0, res - half), min(1.0, res + half)],
    }


def unsteered(acc: float = 0.3, res: float = 0.5) -> dict[str, Any]:
    return {
        "setting": None,
        "strength": 0.0,
        "n_units": 0,
        "n_activations": 0,
        "dev_accuracy": acc,
        "dev_restricted": res,
        "test": scores(acc, res),
    }


def steered(setting: Any, acc: float, res: float, **extra: Any) -> dict[str, Any]:
    return {
        "setting": setting,
        "strength": 8.0,
        "n_units": 10,
        "n_activations": 10,
        "dev_accuracy": acc,
        "dev_restricted": res,
        "test": scores(acc, res),
        **extra,
    }


def in_house_style(fig: go.Figure) -> None:
    assert fig.layout.template.layout.colorway == TEMPLATE.layout.colorway
    assert list(fig.layout.template.layout.colorway) == list(COLORS)
    titles_and_axes(fig)


def test_steer_less_figure_lines_intervals_and_baseline():
    rows = [
        {"k": 0, "site": "mlp_out", **unsteered()},
        {"k": 10, "site": "mlp_out", "n_pairs": 20, **steered(10, 0.4, 0.6)},
        {"k": 1, "site": "mlp_out", "n_pairs": 20, **steered(1, 0.0, 0.2)},
    ]
    fig = figures.steer_less_figure(rows, task="sst2")
    assert len(fig.data) == 2
    acc, res = fig.data
    assert list(acc.x) == [1, 10]  # sorted by k, the unsteered row left out
    np.testing.assert_allclose(acc.y, [0.0, 40.0])  # accuracy 0.0 is drawn, not dropped
    np.testing.assert_allclose(acc.error_y.array, [10.0, 10.0])
    np.testing.assert_allclose(acc.error_y.arrayminus, [0.0, 10.0])  # interval clipped at 0
    np.testing.assert_allclose(res.y, [20.0, 60.0])
    assert (acc.line.color, res.line.color) == (COLORS[0], COLORS[1])
    assert fig.layout.xaxis.type == "log"
    assert sorted(s.y0 for s in fig.layout.shapes) == pytest.approx([30.0, 50.0])
    assert "sst2" in fig.layout.title.text and "50 test items" in fig.layout.title.text
    assert "k=10, strength 8" in acc.text[1]
    in_house_style(fig)


@pytest.mark.parametrize("builder", ["promotion_figure", "adaptive_figure"])
def test_ablation_bar_figures(builder):
    if builder == "promotion_figure":
        arms = {
            "vanilla": {"site": "mlp_out", **unsteered()},
            "suppression": {
                "site": "mlp_out",
                "setting_name": "fraction of units",
                "factor": 0.05,
                **steered(0.9, 0.0, 0.1),
            },
            "promotion": {"site": "mlp_out", "setting_name": "k", **steered(10, 0.6, 0.7)},
        }
        names = ["unsteered", "suppression", "promotion"]
    else:
        arms = {
            "vanilla": {"site": "mlp_out", **unsteered()},
            "adaptive": {"site": "mlp_out", "setting_name": "k", **steered(10, 0.0, 0.1)},
            "fixed": {"site": "mlp_out", "setting_name": "k", **steered(100, 0.6, 0.7)},
        }
        names = ["unsteered", "adaptive", "fixed"]
    fig = getattr(figures, builder)(arms, task="sst2")
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == len(fig.data) == 2
    acc, res = bars
    assert list(acc.x) == list(res.x) == names
    np.testing.assert_allclose(acc.y, [30.0, 0.0, 60.0])  # the 0.0 arm keeps its bar
    np.testing.assert_allclose(res.y, [50.0, 10.0, 70.0])
    np.testing.assert_allclose(acc.error_y.arrayminus, [10.0, 0.0, 10.0])
    assert (acc.marker.color, res.marker.color) == (COLORS[0], COLORS[1])
    assert fig.layout.barmode == "group"
    assert sorted(s.y0 for s in fig.layout.shapes) == pytest.approx([30.0, 50.0])
    assert "sst2" in fig.layout.title.text and "50 test items" in fig.layout.title.text
    in_house_style(fig)
    if builder == "promotion_figure":
        assert "factor 0.05" in acc.text[1]


def test_ablation_pairs_figure_colours_per_method_and_dash_per_protocol():
    rows = [
        {"method": "none", "n_pairs": 0, "seed": None, **unsteered()},
        {
            "method": "sadi-head",
            "n_pairs": 25,
            "seed": 0,
            "setting_name": "K",
            **steered(4, 0.5, 0.6),
        },
        {
            "method": "sadi-head",
            "n_pairs": 10,
            "seed": 0,
            "setting_name": "K",
            **steered(1, 0.0, 0.4),
        },
        {
            "method": "austeer-ffn",
            "n_pairs": 10,
            "seed": 0,
            "setting_name": "K",
            **steered(30, 0.2, 0.3),
        },
        {
            "method": "austeer-ffn",
            "n_pairs": 25,
            "seed": 0,
            "setting_name": "K",
            **steered(30, 0.7, 0.8),
        },
    ]
    fig = figures.ablation_pairs_figure(rows, task="sst2")
    assert [t.name for t in fig.data] == [
        "sadi-head (full-vocabulary accuracy)",
        "sadi-head (restricted to the options)",
        "austeer-ffn (full-vocabulary accuracy)",
        "austeer-ffn (restricted to the options)",
    ]
    assert [t.line.color for t in fig.data] == [COLORS[0], COLORS[0], COLORS[1], COLORS[1]]
    assert [t.line.dash for t in fig.data] == ["solid", "dash"] * 2
    assert all(list(t.x) == [10, 25] for t in fig.data)
    np.testing.assert_allclose(fig.data[0].y, [0.0, 50.0])
    np.testing.assert_allclose(fig.data[3].y, [30.0, 80.0])
    np.testing.assert_allclose(fig.data[0].error_y.array, [10.0, 10.0])
    assert sorted(s.y0 for s in fig.layout.shapes) == pytest.approx([30.0, 50.0])
    assert "sst2" in fig.layout.title.text and "50 test items" in fig.layout.title.text
    assert "95% bootstrap" in fig.layout.yaxis.title.text
    in_house_style(fig)


def test_ablation_pairs_figure_averages_seeds():
    rows = [
        {"method": "a", "n_pairs": 10, "seed": 0, **steered(1, 0.2, 0.4)},
        {"method": "a", "n_pairs": 10, "seed": 1, **steered(1, 0.4, 0.6)},
        {"method": "a", "n_pairs": 20, "seed": 0, **steered(1, 0.7, 0.8)},
    ]
    fig = figures.ablation_pairs_figure(rows)
    np.testing.assert_allclose(fig.data[0].y, [30.0, 70.0])
    np.testing.assert_allclose(fig.data[0].error_y.array, [10.0, 0.0])  # range over the seeds
    assert "range over seeds" in fig.layout.yaxis.title.text and not fig.layout.shapes
    with pytest.raises(ValueError):
        figures.ablation_pairs_figure([{"method": "none", "n_pairs": 0, **unsteered()}])


def with_delta(row: dict[str, Any], acc: tuple[float, float, float], res: tuple) -> dict:
    """`row` carrying paired differences to unsteered ([mean, lo, hi], fractions)."""
    return {
        **row,
        "test": {**row["test"], "delta_accuracy": list(acc), "delta_restricted": list(res)},
    }


def test_ablation_figures_draw_paired_differences_side_by_side():
    """Rows with paired differences: Δ in points with the paired interval, protocols grouped at
    each x (none hidden behind another), a zero line naming the unsteered scores, the unsteered
    arm left out of the bars, and the model in the title."""
    base = {"k": 0, "site": "mlp_out", **unsteered(0.62, 0.62)}
    rows = [
        base,
        with_delta(
            {"k": 10, "site": "mlp_out", **steered(10, 0.64, 0.64)},
            (0.02, -0.01, 0.05),
            (0.02, -0.01, 0.05),
        ),
        with_delta(
            {"k": 1, "site": "mlp_out", **steered(1, 0.62, 0.62)}, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
        ),
    ]
    fig = figures.steer_less_figure(rows, task="sst2", model="SmolLM2")
    acc, res = fig.data
    assert list(acc.x) == ["1", "10"] and fig.layout.xaxis.type == "category"
    np.testing.assert_allclose(acc.y, [0.0, 2.0])
    np.testing.assert_allclose(acc.error_y.array, [0.0, 3.0])
    np.testing.assert_allclose(acc.error_y.arrayminus, [0.0, 3.0])
    np.testing.assert_allclose(res.y, acc.y)  # equal series, drawn side by side:
    assert fig.layout.scattermode == "group"
    assert [s.y0 for s in fig.layout.shapes] == [0]
    note = fig.layout.annotations[0].text
    assert "62.0% full-vocabulary accuracy" in note and "62.0% restricted" in note
    assert "paired 95%" in fig.layout.yaxis.title.text
    assert "SmolLM2" in fig.layout.title.text and "50 test items" in fig.layout.title.text
    in_house_style(fig)

    arms = {
        "vanilla": {"site": "mlp_out", **unsteered(0.62, 0.62)},
        "adaptive": with_delta(
            {"site": "mlp_out", "setting_name": "k", **steered(10, 0.5, 0.6)},
            (-0.12, -0.2, -0.04),
            (-0.02, -0.05, 0.01),
        ),
    }
    fig = figures.adaptive_figure(arms, task="sst2", model="SmolLM2")
    acc, res = fig.data
    assert list(acc.x) == ["adaptive"]  # the unsteered arm is the zero line
    np.testing.assert_allclose([acc.y[0], res.y[0]], [-12.0, -2.0])
    np.testing.assert_allclose(acc.error_y.arrayminus, [8.0])
    assert [s.y0 for s in fig.layout.shapes] == [0] and fig.layout.barmode == "group"
    assert "SmolLM2" in fig.layout.title.text

    pairs = [
        {"method": "none", "n_pairs": 0, "seed": None, **unsteered(0.62, 0.62)},
        *(
            with_delta(
                {"method": "sadi-head", "n_pairs": n, "seed": seed, **steered(1, 0.6, 0.6)},
                (d, d - 0.05, d + 0.05),
                (d, d - 0.05, d + 0.05),
            )
            for n, seed, d in [(10, 0, 0.01), (10, 1, 0.03), (20, 0, -0.02), (20, 1, -0.02)]
        ),
    ]
    fig = figures.ablation_pairs_figure(pairs, task="sst2", model="SmolLM2")
    np.testing.assert_allclose(fig.data[0].y, [2.0, -2.0])  # mean Δ over the seeds
    np.testing.assert_allclose(fig.data[0].error_y.array, [1.0, 0.0])  # their range
    assert list(fig.data[0].x) == ["10", "20"] and fig.layout.scattermode == "group"
    assert "range over seeds" in fig.layout.yaxis.title.text


# ---- the package's layout ----
MOVED = (
    "pairs_curve_data",
    "single_unit_scan",
    "unit_writes_data",
    "prompt_effects",
    "UnitScan",
    "UnitWrites",
)


def test_figures_does_not_import_the_model_running_analysis():
    code = (
        "import sys, steerlens, steerlens.figures; "
        "assert 'steerlens.analysis' not in sys.modules, 'analysis imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_public_names():
    assert all(hasattr(figures, name) for name in figures.__all__)
    assert not set(MOVED) & set(figures.__all__)
    assert {
        "steer_less_figure",
        "promotion_figure",
        "adaptive_figure",
        "ablation_pairs_figure",
    } <= set(figures.__all__)
    assert all(hasattr(analysis, name) for name in analysis.__all__)
    assert set(MOVED) <= set(analysis.__all__)


@pytest.mark.parametrize("name", MOVED)
def test_moved_names_warn_and_return_the_analysis_objects(name):
    with pytest.warns(DeprecationWarning, match="moved to steerlens.analysis") as record:
        obj = getattr(figures, name)
    assert obj is getattr(analysis, name)
    assert record[0].filename == warning_file(figures.__getattr__, __file__)
    with pytest.raises(AttributeError):
        figures.no_such_figure  # noqa: B018


# ---- compute helpers on the tiny model ----
def test_analysis_helpers_on_tiny_model(model, examples):
    diffs = collect_differences(
        model, examples, site=["head", "mlp_out"], keep_pairs=True, progress=False
    )
    head = sadi_mask(diffs["head"], 2)
    records = pairs_curve_data(
        model,
        diffs,
        examples[:4],
        {
            "sadi": ("head", lambda d: sadi_mask(d, 2), 1.0),
            "austeer": ("mlp_out", lambda d: austeer_mask(d, 3), 0.5),
        },
        sizes=[3, 10, 50],
        seeds=(0, 1),
    )
    cells = {(r["method"], r["n_pairs"], r["seed"]) for r in records}
    assert cells == {
        (m, n, s) for m in ("sadi", "austeer") for n, s in [(3, 0), (3, 1), (10, 0), (0, 0)]
    }
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records)
    for r in records:  # per-item hits, whose mean is the accuracy
        assert len(r["flags"]) == 4 and r["flags"].count("1") / 4 == pytest.approx(r["accuracy"])

    scan = single_unit_scan(model, head, examples[:4], [0.0, 2.0], step=4, references={"SADI": 0.5})
    assert scan.dims == [0, 4]
    # strength 0 changes nothing: every single dim and the block score the unsteered accuracy
    assert scan.accuracy[0.0] == [scan.baseline] * 2 and scan.block[0.0] == scan.baseline
    assert scan.delta[0.0] == [(0.0, 0.0, 0.0)] * 2 and scan.block_delta[0.0] == (0.0, 0.0, 0.0)
    for s in scan.strengths:  # each difference is the accuracies' difference
        for acc, (d, lo, hi) in zip(scan.accuracy[s], scan.delta[s], strict=True):
            assert d == pytest.approx(acc - scan.baseline) and lo <= d <= hi

    au = austeer_mask(diffs["head"], 3)
    w = unit_writes_data(model, au, examples[0].prompt, strength=50.0, top=5)
    assert len(w.static_tokens) == len(w.steered_tokens) == 5
    assert w.label == au.label(0)
    d_head = model.cfg.d_head
    layer, idx = int(au.layers[0]), int(au.indices[0])
    direction = model.blocks[layer].attn.W_O[idx // d_head, idx % d_head] * model.ln_final.w
    expected = (direction @ model.W_U).topk(5).values
    np.testing.assert_allclose(w.static_logits, expected.detach().numpy(), rtol=1e-5)
    assert sum(w.steered_probs) <= 1.0 + 1e-6


# ---- saving ----
def test_save_figure_writes_html_and_skips_png_without_browser(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(export, "_find_browser", lambda: None)
    fig = figures.head_heatmap(make_diffs())
    with pytest.warns(UserWarning) as record:
        paths = figures.save_figure(fig, tmp_path / "sub" / "heat")
    assert paths == [tmp_path / "sub" / "heat.html"]
    assert "plotly" in paths[0].read_text().lower()
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "skipped PNG" in messages[0] and "Chrome" in messages[0]
    # the warning points at the caller
    assert record[0].filename == warning_file(figures.save_figure, __file__)
    assert capsys.readouterr().err == ""  # library code warns, never prints


def test_saved_html_loads_plotly_from_beside_it_not_the_internet(tmp_path, monkeypatch):
    import re

    monkeypatch.setattr(export, "_find_browser", lambda: None)
    fig = figures.head_heatmap(make_diffs())
    with pytest.warns(UserWarning):
        (html,) = figures.save_figure(fig, tmp_path / "heat")
        figures.save_figure(fig, tmp_path / "again")
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html.read_text())
    assert scripts == ["plotly.min.js"]  # a relative path: opens offline
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000  # one shared copy
    assert "cdn.plot.ly" not in html.read_text()


def test_save_figure_skips_png_without_kaleido(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a)
    )
    assert "kaleido" in figures.static_export_problem()
    with pytest.warns(UserWarning, match="kaleido"):
        paths = figures.save_figure(go.Figure(), tmp_path / "empty.png", formats=("png", "svg"))
    assert paths == [tmp_path / "empty.html"]


def test_save_figure_reports_a_failing_exporter(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "static_export_problem", lambda: None)

    def boom(*args, **kwargs):
        raise RuntimeError("browser crashed\nlong trace")

    monkeypatch.setattr(go.Figure, "write_image", boom)
    with pytest.warns(UserWarning, match="browser crashed") as record:
        paths = figures.save_figure(go.Figure(), tmp_path / "x")
    assert paths == [tmp_path / "x.html"]
    assert "long trace" not in str(record[0].message)  # only the first line of the error


def test_png_export_warns_when_the_shared_browser_fails(monkeypatch):
    kaleido = pytest.importorskip("kaleido")
    monkeypatch.setattr(export, "static_export_problem", lambda: None)

    def fail(**kwargs: Any) -> None:
        raise RuntimeError("no display")

    monkeypatch.setattr(kaleido, "start_sync_server", fail)
    with pytest.warns(UserWarning, match="no display") as record, figures.png_export():
        pass
    assert record[0].filename == __file__  # past contextlib, at the `with` statement


# ---- the figure set, end to end on the tiny model ----
def _jsonl_tasks(tmp_path) -> list[str]:
    import json

    from tests.reference import make_examples

    paths = []
    for i, name in enumerate(("alpha", "beta")):
        rows = make_examples(24, seed=i)
        path = tmp_path / f"{name}.jsonl"
        split = ["train"] * 12 + ["dev"] * 6 + ["test"] * 6
        path.write_text(
            "\n".join(
                json.dumps(
                    {"prompt": ex.prompt, "answer": ex.answer, "wrong": list(ex.wrong), "split": s}
                )
                for ex, s in zip(rows, split, strict=True)
            )
        )
        paths.append(str(path))
    return paths


def test_make_figures_on_tiny_model(model, tmp_path, monkeypatch):
    from steerlens.experiments.figure_set import FiguresConfig, make_figures

    paths = _jsonl_tasks(tmp_path)
    monkeypatch.setattr(export, "static_export_problem", lambda: "no browser in this test")
    out = tmp_path / "figs"
    out.mkdir()
    (out / "ablation-pairs-sst2-4shot.html").write_text("<html></html>")  # `steerlens ablations`
    config = FiguresConfig(
        task=paths[0],
        overlap_tasks=tuple(paths),
        methods=("sadi-head", "sadi-neuron"),
        n_train=12,
        n_dev=6,
        n_test=6,
        pair_sizes=(4,),
        seeds=(0, 1),
        scan_strengths=(1.0,),
        formats=("png",),
    )
    with pytest.warns(UserWarning, match="no browser in this test"):
        entries = make_figures(out, config, model=model, progress=False)
    names = [e.name for e in entries]
    assert names == [
        "fig1_head_heatmap",
        "fig2_top100_layers",
        "fig3_cross_task_overlap",
        "fig4a_sadi-head_sweep",
        "fig5_pairs_curve",
        "fig6_au_score_map",
        "fig7_unit_vs_block",
        "fig8_unit_writes",
        "fig9_method_comparison",
    ]
    for e in entries:
        assert [p.suffix for p in e.paths] == [".html"] and e.paths[0].exists()
        assert e.caption.endswith(".") and e.title
    index = (out / "README.md").read_text()
    assert all(f"({name}.html)" in index for name in names)
    assert "## Ablations" in index and "(ablation-pairs-sst2-4shot.html)" in index
    assert (out / "main_job_results.md").exists()


def test_k_shot_figure_sets_open_with_a_positive_control(model, tmp_path):
    """With k-shot prompts the set opens with the task after k demonstrations that all carry
    one answer (the first such seed), scored as a method comparison with paired differences."""
    from steerlens import format_task, load_task
    from steerlens.experiments.figure_set import FiguresConfig, make_figures
    from steerlens.experiments.paper_figures import one_label_seed

    path = _jsonl_tasks(tmp_path)[0]
    raw = load_task(path)
    seed = one_label_seed(raw, 2)
    assert seed is not None
    rows = format_task(raw, n_shot=2, seed=seed).info["format"]["demo_rows"]
    assert len({raw.train[j].answer for j in rows}) == 1
    assert all(  # earlier seeds mix answers
        len(
            {
                raw.train[j].answer
                for j in format_task(raw, n_shot=2, seed=s).info["format"]["demo_rows"]
            }
        )
        > 1
        for s in range(seed)
    )
    config = FiguresConfig(
        task=path,
        overlap_tasks=(path,),
        methods=("sadi-head",),
        n_shot=2,
        n_train=8,
        n_dev=4,
        n_test=6,
        pair_sizes=(4,),
        seeds=(0,),
        scan_strengths=(1.0,),
        formats=(),
    )
    entries = make_figures(tmp_path / "figs", config, model=model, progress=False)
    control = entries[0]
    assert control.name == "fig0_positive_control" and control.number == "0"
    assert f"demonstration seed {seed}" in control.caption and "2 demonstrations" in control.title
    assert all(f"{m} " in control.caption for m in ("sadi-head", "austeer-attention", "caa"))


def test_show_without_static_export_never_loads_plotly_from_a_cdn(monkeypatch) -> None:
    """The HTML fallback of `figures.show` works offline: plotly.js is written into the notebook."""
    import IPython.display

    shown: list[Any] = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    fig = go.Figure(go.Bar(y=[1, 2]))
    figures.show(fig, static=False)
    figures.show(fig, static=False)
    bundles = [b for b in shown if isinstance(b, dict)]
    html = [str(b.get("text/html", "")) for b in bundles]
    assert bundles and not any("cdn.plot.ly" in h or "cdn.jsdelivr" in h for h in html)
    figure_bundles = [b for b in bundles if "application/vnd.plotly.v1+json" in b]
    assert len(figure_bundles) == 2  # JupyterLab renders this; classic Notebook the HTML beside it
    # plotly.js itself is inline, once per kernel, before the first figure that needs it
    inline = [h for h in html if "window.Plotly = Plotly" in h]
    assert len(inline) <= 1
