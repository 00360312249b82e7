"""The inspector's state: selection, layer filter, edits, export, comparison, views."""

from __future__ import annotations

import pytest

from steerlens import Mask, collect_differences, inspect, sadi_mask
from steerlens.analysis import show_token
from steerlens.collect import collect_activations
from tests.reference import make_examples


@pytest.fixture
def setup(model):
    examples = make_examples(12)
    diffs = collect_differences(model, examples, site="head", progress=False)
    other_diffs = collect_differences(model, make_examples(12, seed=3), site="head", progress=False)
    mask, pool = sadi_mask(diffs, 2), sadi_mask(diffs, 6)
    other = sadi_mask(other_diffs, 3)
    insp = inspect(
        model, examples, mask, other, diffs=diffs, pool=pool, prompts=["ab cd:", "xyz:"], n_dev=8
    )
    return insp, diffs, mask, pool, other


def test_units_filter_and_select(setup, model) -> None:
    insp, diffs, mask, _, _ = setup
    units = sorted(mask.unit_set())
    assert sorted(insp.units()) == units
    layer = units[0][0]
    insp.filter((layer, layer))
    assert all(u[0] == layer for u in insp.units()) and insp.units()
    insp.filter(None)
    with pytest.raises(ValueError, match="layers must satisfy"):
        insp.filter((1, 0))
    info = insp.select(*units[0])
    assert insp.selected == units[0] and info.rank is not None
    assert info.score == pytest.approx(float(mask.scores[info.rank]))
    width = mask.unit_shape[1]  # a head's sign counts run over its dims x the pairs
    assert info.n_pos + info.n_neg <= diffs.n_pairs * width and info.n_pos + info.n_neg > 0
    # logit lens: the head's write along its mean difference, through the final norm and W_U
    direction = diffs.mean[info.layer, info.index] @ model.blocks[info.layer].attn.W_O[info.index]
    logits = (direction * model.ln_final.w) @ model.W_U
    expected = [show_token(model.tokenizer.decode([int(i)])) for i in logits.topk(8).indices]
    assert info.promoted == expected and len(info.suppressed) == 8
    acts = collect_activations(model, ["ab cd:", "xyz:"], "head", progress=False)
    head = acts[:, info.layer, info.index].norm(dim=-1)
    assert list(info.activations.values()) == pytest.approx(head.tolist(), rel=1e-5)
    with pytest.raises(ValueError, match="outside the site"):
        insp.select(99, 0)


def test_edit_export_and_compare(setup, tmp_path) -> None:
    insp, _, mask, pool, other = setup
    first = insp.units()[0]
    assert insp.remove(*first).k == 1 and first not in insp.edited.unit_set()
    with pytest.raises(ValueError, match="not in the edited mask"):
        insp.remove(*first)
    with pytest.raises(ValueError, match="last unit"):
        insp.remove(*insp.units()[0])
    extra = next(u for u in pool.unit_set() if u not in mask.unit_set())
    insp.add(*extra)
    assert insp.edited.k == 2 and extra in insp.edited.unit_set()
    row = insp.row_of(pool, *extra)
    assert float(insp.edited.scores[-1]) == pytest.approx(float(pool.scores[row]))
    with pytest.raises(ValueError, match="already in"):
        insp.add(*extra)
    outside = next(
        (layer, i)
        for layer in range(mask.n_layers)
        for i in range(mask.units_per_layer)
        if (layer, i) not in pool.unit_set()
    )
    with pytest.raises(ValueError, match="not in the pool"):
        insp.add(*outside)
    saved = Mask.load(
        insp.export(tmp_path / "edited.safetensors") and tmp_path / "edited.safetensors"
    )
    assert saved.unit_set() == insp.edited.unit_set()
    comparison = insp.compare()
    assert comparison["jaccard"] == pytest.approx(insp.edited.jaccard(other))
    assert set(comparison["shared"]) == insp.edited.unit_set() & other.unit_set()


def test_single_unit_effect_generation_and_views(setup) -> None:
    insp, *_ = setup
    unit = insp.units()[0]
    info = insp.unit_info(*unit, effect=True)
    for d, lo, hi in info.effect.values():
        assert lo <= d <= hi
    texts = insp.generations("ab cd:", max_new_tokens=3)
    assert set(texts) == {"unsteered", "steered"}
    insp.select(*unit)
    fig = insp.figure()
    assert sorted(zip(fig.data[0].y, fig.data[0].x, strict=True)) == sorted(insp.units())
    assert (
        fig.data[-1].name.startswith("selected") and (fig.data[-1].y[0], fig.data[-1].x[0]) == unit
    )
    assert len(fig.data) == 3  # mask, other, selection


def test_widget_click_selects_a_unit(setup) -> None:
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from plotly.callbacks import Points

    insp, *_ = setup
    box = insp.widget()
    fig = box.children[1]
    trace = fig.data[0]
    points = Points(
        point_inds=[1], xs=[trace.x[1]], ys=[trace.y[1]], trace_name=trace.name, trace_index=0
    )
    trace._dispatch_on_click(points, None)
    assert insp.selected == (int(trace.y[1]), int(trace.x[1]))
    assert insp.selected[1] == int(trace.x[1]) and "rank" in box.children[2].value


def test_report_is_self_contained(setup, tmp_path) -> None:
    insp, *_ = setup
    path = insp.report(tmp_path / "report.html", units=2, prompts=["ab cd:"])
    text = path.read_text()
    assert "<script src=" not in text and "window.Plotly = Plotly" in text  # plotly.js inside
    assert text.count("<h3>") == 3 and "Against the other mask" in text  # 2 units, 1 generation
    assert "steered alone, accuracy" in text
