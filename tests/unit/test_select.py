"""Selection: SADI and AUSteer masks against the reference, hand-built sign counts, tie-breaks."""

from __future__ import annotations

import pytest
import torch

from steerlens import austeer_mask, collect_differences, sadi_mask
from steerlens.collect import Differences
from steerlens.select import austeer_scores, rank_units, sadi_scores
from tests import reference as ref

SITES = ("head", "neuron", "mlp_out", "resid")


def _hand_diffs(
    n_pos: list[list[int]],
    n_neg: list[list[int]],
    n_pairs: int,
    *,
    site: str = "mlp_out",
    mean: torch.Tensor | None = None,
) -> Differences:
    """A Differences with crafted sign counts (`[layer, unit]`), as collection would report them."""
    pos, neg = torch.tensor(n_pos), torch.tensor(n_neg)
    assert bool((pos + neg <= n_pairs).all())
    m = torch.zeros(pos.shape) if mean is None else mean
    return Differences(
        site=site,
        model_name="hand",
        fingerprint="0" * 16,
        n_pairs=n_pairs,
        mean=m.float(),
        n_pos=pos,
        n_neg=neg,
        sq_mean=m.float().pow(2),
    )


def _units(mask) -> list[tuple[int, int]]:
    return list(zip(mask.layers.tolist(), mask.indices.tolist(), strict=True))


@pytest.fixture
def collected(model, examples):
    """Per-site Differences from the package, and the reference's unpadded per-pair diffs."""

    def get(site: str) -> tuple[Differences, torch.Tensor]:
        diffs = collect_differences(model, examples, site, progress=False)
        pairs = ref.pair_differences(
            model, [(e.prompt, e.answer, e.wrong[0]) for e in examples], site
        )
        return diffs, pairs

    return get


# ---- SADI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["signed", "abs"])
@pytest.mark.parametrize("site", SITES)
def test_sadi_mask_matches_reference(collected, site: str, by: str) -> None:
    """SADI's units and scores are the reference's top-K of the (head-averaged) mean difference."""
    diffs, pairs = collected(site)
    scores = ref.sadi_scores(pairs, site, by=by)
    k = 5
    mask = sadi_mask(diffs, k, by=by)
    assert _units(mask) == ref.top_units(scores, k)
    expected = torch.tensor([float(scores[u]) for u in ref.top_units(scores, k)])
    torch.testing.assert_close(mask.scores, expected, atol=1e-5, rtol=0)
    assert mask.unit == ("head" if site == "head" else "dim")
    assert (mask.method, mask.operation, mask.positions) == ("sadi", "scale", "last")
    assert torch.equal(mask.weights, torch.ones(k))
    assert mask.site == site and mask.n_layers == diffs.n_layers
    assert mask.info["k"] == k and mask.info["by"] == by and mask.info["n_pairs"] == diffs.n_pairs


def test_sadi_signed_differs_from_abs(collected) -> None:
    """Signed SADI keeps the most positive units; abs also admits strongly negative ones."""
    diffs, _ = collected("neuron")
    signed, absolute = sadi_mask(diffs, 6), sadi_mask(diffs, 6, by="abs")
    assert bool((signed.scores[:-1] >= signed.scores[1:]).all())
    assert bool((absolute.scores >= 0).all())
    scores = sadi_scores(diffs)
    assert float(scores[signed.layers, signed.indices].min()) >= float(
        scores.flatten().sort().values[-6]
    )
    assert signed.unit_set() != absolute.unit_set()  # the data has large negative means


def test_sadi_head_score_is_mean_over_d_head() -> None:
    """A head's SADI score averages its d_head entries: a single spike loses to a broad shift,
    and opposite-signed entries cancel."""
    mean = torch.zeros(1, 3, 4)
    mean[0, 0] = torch.tensor([8.0, 0.0, 0.0, 0.0])  # max entry, average 2.0
    mean[0, 1] = torch.tensor([2.5, 2.5, 2.5, 2.5])  # average 2.5
    mean[0, 2] = torch.tensor([9.0, -9.0, 9.0, -9.0])  # cancels to 0
    diffs = Differences(
        site="head",
        model_name="hand",
        fingerprint="0" * 16,
        n_pairs=1,
        mean=mean,
        n_pos=(mean > 0).long(),
        n_neg=(mean < 0).long(),
        sq_mean=mean.pow(2),
    )
    torch.testing.assert_close(sadi_scores(diffs), torch.tensor([[2.0, 2.5, 0.0]]))
    mask = sadi_mask(diffs, 2)
    assert _units(mask) == [(0, 1), (0, 0)]
    assert mask.unit == "head" and mask.unit_width == 4
    assert _units(sadi_mask(diffs, 3, by="abs"))[-1] == (0, 2)


# ---- AUSteer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_austeer_mask_matches_reference(collected, site: str) -> None:
    """AUSteer's units, scores s and weights beta equal the pair-by-pair reference, ties included."""
    diffs, pairs = collected(site)
    r_pos, r_neg, s, beta = ref.austeer_stats(pairs)
    torch.testing.assert_close(diffs.r_pos.flatten(1), r_pos)
    torch.testing.assert_close(diffs.r_neg.flatten(1), r_neg)
    k = 12
    mask = austeer_mask(diffs, k)
    units = ref.top_units(s, k)
    assert _units(mask) == units
    torch.testing.assert_close(mask.scores, torch.tensor([float(s[u]) for u in units]))
    torch.testing.assert_close(mask.weights, torch.tensor([float(beta[u]) for u in units]))
    assert (mask.method, mask.unit, mask.operation, mask.positions) == (
        "austeer",
        "dim",
        "scale",
        "all",
    )
    # with 10 pairs, scores are multiples of 0.1, so the ranking above had to break ties
    assert len(set(s.flatten().tolist())) < s.numel()


def test_austeer_scores_sign_rules() -> None:
    """s = max(r_pos, r_neg) over all pairs; beta takes the majority sign, ties positive;
    zero differences count toward neither side (they only dilute the rates)."""
    n = 10
    diffs = _hand_diffs(
        n_pos=[[6, 2, 4, 3, 0, 10]],
        n_neg=[[4, 8, 4, 3, 0, 0]],
        n_pairs=n,
    )
    s, beta = austeer_scores(diffs)
    torch.testing.assert_close(s, torch.tensor([[0.6, 0.8, 0.4, 0.3, 0.0, 1.0]]))
    torch.testing.assert_close(beta, torch.tensor([[0.6, -0.8, 0.4, 0.3, 0.0, 1.0]]))
    ref_s, ref_beta = ref.austeer_from_rates(diffs.r_pos, diffs.r_neg)
    torch.testing.assert_close(s, ref_s)
    torch.testing.assert_close(beta, ref_beta)
    mask = austeer_mask(diffs, 3)
    assert _units(mask) == [(0, 5), (0, 1), (0, 0)]
    torch.testing.assert_close(mask.weights, torch.tensor([1.0, -0.8, 0.6]))


def test_austeer_tie_break_lower_layer_then_lower_index() -> None:
    """Equal scores are ordered by layer, then index, whatever their sign or position."""
    n = 5
    diffs = _hand_diffs(
        n_pos=[[1, 4, 0, 4], [4, 0, 2, 0], [0, 0, 0, 4]],
        n_neg=[[0, 0, 4, 1], [0, 4, 2, 0], [4, 5, 0, 0]],
        n_pairs=n,
    )  # score 0.8 at (0,1) (0,2) (0,3) (1,0) (1,1) (2,0) (2,3); 1.0 at (2,1)
    mask = austeer_mask(diffs, 5)
    assert _units(mask) == [(2, 1), (0, 1), (0, 2), (0, 3), (1, 0)]
    torch.testing.assert_close(mask.weights, torch.tensor([-1.0, 0.8, -0.8, 0.8, 0.8]))
    s, _ = ref.austeer_from_rates(diffs.r_pos, diffs.r_neg)
    assert _units(mask) == ref.top_units(s, 5)
    assert _units(austeer_mask(diffs, 8))[-3:] == [(1, 1), (2, 0), (2, 3)]


def test_austeer_head_units_are_flattened_dims() -> None:
    """At the head site AUSteer's units are single hook_z entries, index = head * d_head + d."""
    pos = torch.zeros(2, 3, 4, dtype=torch.long)
    pos[1, 2, 3] = 7
    pos[0, 1, 0] = 6
    diffs = Differences(
        site="head",
        model_name="hand",
        fingerprint="0" * 16,
        n_pairs=8,
        mean=torch.zeros(2, 3, 4),
        n_pos=pos,
        n_neg=torch.zeros_like(pos),
        sq_mean=torch.zeros(2, 3, 4),
    )
    mask = austeer_mask(diffs, 2)
    assert mask.unit == "dim" and mask.units_per_layer == 12
    assert _units(mask) == [(1, 2 * 4 + 3), (0, 1 * 4 + 0)]
    assert mask.label(0) == "L1.H2.d3"


# ---- k validation and top() ------------------------------------------------------------------


@pytest.mark.parametrize("builder", [sadi_mask, austeer_mask], ids=["sadi", "austeer"])
@pytest.mark.parametrize(
    ("k", "error"),
    [
        (0, ValueError),
        (-2, ValueError),
        (10_000, ValueError),
        (2.0, TypeError),
        (True, TypeError),
        ("3", TypeError),
    ],
)
def test_bad_k_raises(collected, builder, k, error) -> None:
    """k must be an int between 1 and the number of units available."""
    diffs, _ = collected("head")
    with pytest.raises(error):
        builder(diffs, k)


def test_k_equal_to_all_units_is_allowed(collected) -> None:
    """k may select every unit (heads for SADI-HEAD, every hook_z entry for AUSteer)."""
    diffs, _ = collected("head")
    n_heads = diffs.n_layers * diffs.unit_shape[0]
    assert sadi_mask(diffs, n_heads).k == n_heads
    with pytest.raises(ValueError):
        sadi_mask(diffs, n_heads + 1)  # heads, not dims, are SADI-HEAD's units
    n_dims = n_heads * diffs.unit_shape[1]
    assert austeer_mask(diffs, n_dims).k == n_dims


@pytest.mark.parametrize("method", ["sadi", "sadi_abs", "austeer"])
def test_top_k_equals_building_with_k(collected, method: str) -> None:
    """`mask.top(k)` is exactly the mask built with k (units, scores, weights)."""
    diffs, _ = collected("mlp_out")
    build = {
        "sadi": lambda k: sadi_mask(diffs, k),
        "sadi_abs": lambda k: sadi_mask(diffs, k, by="abs"),
        "austeer": lambda k: austeer_mask(diffs, k),
    }[method]
    big = build(20)
    for k in (1, 3, 20):
        small, direct = big.top(k), build(k)
        assert _units(small) == _units(direct)
        assert torch.equal(small.scores, direct.scores) and torch.equal(
            small.weights, direct.weights
        )
        assert small.info["k"] == k
    for bad in (0, 21):
        with pytest.raises(ValueError):
            big.top(bad)


def test_rank_units_reference() -> None:
    """rank_units equals the obvious sort on random score maps with forced ties."""
    gen = torch.Generator().manual_seed(5)
    for _ in range(20):
        scores = torch.randint(0, 4, (3, 5), generator=gen).float()
        layers, indices, values = rank_units(scores, 7)
        expected = ref.top_units(scores, 7)
        assert list(zip(layers.tolist(), indices.tolist(), strict=True)) == expected
        assert values.tolist() == [float(scores[u]) for u in expected]
