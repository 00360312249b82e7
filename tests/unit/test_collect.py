"""Collection: batched, left-padded last-token activations and paired differences vs the reference."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from steerlens import Example, collect_activations, collect_differences
from steerlens.collect import Differences
from steerlens.models import model_fingerprint
from steerlens.sites import unit_shape
from steerlens.tokens import prompt_ids
from tests import reference as ref

SITES = ("head", "neuron", "mlp_out", "resid")
ATOL = 1e-5
collect_mod = importlib.import_module("steerlens.collect")


def _pairs(examples: list[Example]) -> list[tuple[str, str, str]]:
    return [(ex.prompt, ex.answer, ex.wrong[0]) for ex in examples]


def _counts_consistent(count: torch.Tensor, pair_diffs: torch.Tensor, sign: int) -> None:
    """`count` lies between the reference counts of clearly-signed and weakly-signed diffs.

    Differences within float noise of 0 may legitimately land on either side, so only units whose
    sign is unambiguous are required to match exactly.
    """
    d = sign * pair_diffs
    strict = (d > 1e-5).sum(0)
    loose = (d > -1e-5).sum(0)
    assert bool((count >= strict).all()) and bool((count <= loose).all())


@pytest.mark.parametrize("site", SITES)
def test_padded_batches_equal_unpadded_single_runs(model, site: str) -> None:
    """Left-padded batched collection equals one unpadded run per text (mixed lengths)."""
    texts = ["a", "hello there", "xyz: 12", "The quick brown fox jumps", "ok"]
    acts = collect_activations(model, texts, site, batch_size=3, progress=False)
    assert acts.shape == (len(texts), model.cfg.n_layers, *unit_shape(site, model.cfg))
    for i, text in enumerate(texts):
        expected = ref.last_token_acts(model, prompt_ids(model, text), site)
        torch.testing.assert_close(acts[i], expected, atol=ATOL, rtol=0)


def test_collect_activations_accepts_token_ids(model) -> None:
    """Token-id inputs are used as given (no BOS added) and match the string form."""
    texts = ["abc", "defgh"]
    ids = [prompt_ids(model, t) for t in texts]
    from_text = collect_activations(model, texts, "resid", progress=False)
    from_ids = collect_activations(model, ids, "resid", progress=False)
    torch.testing.assert_close(from_text, from_ids, atol=ATOL, rtol=0)
    no_bos = collect_activations(model, [i[1:] for i in ids], "resid", progress=False)
    assert not torch.allclose(no_bos, from_ids, atol=1e-3)


def test_collect_activations_multi_site_dict(model) -> None:
    """Several sites at once give a dict equal to single-site runs; one site gives a tensor."""
    texts = ["one", "three", "fifteen chars.."]
    both = collect_activations(model, texts, ["neuron", "attention"], progress=False)
    assert set(both) == {"neuron", "head"}
    for site in both:
        single = collect_activations(model, texts, site, progress=False)
        assert isinstance(single, torch.Tensor)
        torch.testing.assert_close(both[site], single, atol=ATOL, rtol=0)


def test_collect_activations_errors(model) -> None:
    """No texts, no site, duplicate sites and unknown sites raise ValueError."""
    with pytest.raises(ValueError, match="no texts"):
        collect_activations(model, [], "head", progress=False)
    with pytest.raises(ValueError):
        collect_activations(model, ["a"], [], progress=False)
    with pytest.raises(ValueError, match="Duplicate"):
        collect_activations(model, ["a"], ["ffn", "mlp_out"], progress=False)
    with pytest.raises(ValueError, match="valid sites"):
        collect_activations(model, ["a"], "bogus", progress=False)


@pytest.mark.parametrize("site", SITES)
def test_differences_match_reference(model, examples, site: str) -> None:
    """mean, n_pos, n_neg, sq_mean equal the statistics of unpadded per-pair differences."""
    diffs = collect_differences(model, examples, site, batch_size=3, progress=False)
    pairs = ref.pair_differences(model, _pairs(examples), site)
    assert diffs.n_pairs == len(examples) and diffs.site == site
    assert diffs.mean.shape == (model.cfg.n_layers, *unit_shape(site, model.cfg))
    torch.testing.assert_close(diffs.mean, pairs.mean(0), atol=ATOL, rtol=0)
    torch.testing.assert_close(diffs.sq_mean, pairs.pow(2).mean(0), atol=ATOL, rtol=1e-4)
    _counts_consistent(diffs.n_pos, pairs, +1)
    _counts_consistent(diffs.n_neg, pairs, -1)
    assert diffs.fingerprint == model_fingerprint(model)
    assert diffs.model_name == model.cfg.model_name
    assert diffs.pairs is None


def test_differences_nontrivial(model, examples) -> None:
    """The test data gives a mix of positive and negative differences (so count tests can fail)."""
    diffs = collect_differences(model, examples, "mlp_out", progress=False)
    assert 0 < int(diffs.n_pos.sum()) < diffs.n_pos.numel() * diffs.n_pairs
    assert int((diffs.n_pos + diffs.n_neg == diffs.n_pairs).sum()) == diffs.n_pos.numel()


def test_keep_pairs_and_subset(model, examples) -> None:
    """Kept per-pair diffs are in example order; subset() reproduces the full and partial stats."""
    diffs = collect_differences(
        model, examples, "head", keep_pairs=True, batch_size=4, progress=False
    )
    pairs = ref.pair_differences(model, _pairs(examples), "head")
    assert diffs.pairs is not None and diffs.pairs.shape == pairs.shape
    torch.testing.assert_close(diffs.pairs, pairs, atol=ATOL, rtol=0)

    full = diffs.subset(range(len(examples)))
    torch.testing.assert_close(full.mean, diffs.mean, atol=1e-6, rtol=0)
    assert torch.equal(full.n_pos, diffs.n_pos) and torch.equal(full.n_neg, diffs.n_neg)

    idx = [7, 0, 3]
    part = diffs.subset(idx)
    assert part.n_pairs == 3
    torch.testing.assert_close(part.mean, diffs.pairs[idx].mean(0), atol=1e-6, rtol=0)
    assert torch.equal(part.n_pos, (diffs.pairs[idx] > 0).sum(0))
    assert torch.equal(part.n_neg, (diffs.pairs[idx] < 0).sum(0))
    torch.testing.assert_close(part.sq_mean, diffs.pairs[idx].pow(2).mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(part.r_pos, part.n_pos.float() / 3)
    assert torch.equal(part.subset([1]).mean, diffs.pairs[0])  # subsets compose


def test_subset_errors(model, examples) -> None:
    """subset() needs keep_pairs=True and a non-empty index list."""
    diffs = collect_differences(model, examples[:2], "resid", progress=False)
    with pytest.raises(ValueError, match="keep_pairs"):
        diffs.subset([0])
    kept = collect_differences(model, examples[:2], "resid", keep_pairs=True, progress=False)
    with pytest.raises(ValueError):
        kept.subset([])


@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_differences_independent_of_batch_size(model, examples, batch_size: int) -> None:
    """Statistics do not depend on how pairs are batched."""
    base = collect_differences(
        model, examples, "neuron", batch_size=3, keep_pairs=True, progress=False
    )
    other = collect_differences(
        model, examples, "neuron", batch_size=batch_size, keep_pairs=True, progress=False
    )
    torch.testing.assert_close(other.mean, base.mean, atol=ATOL, rtol=0)
    torch.testing.assert_close(other.pairs, base.pairs, atol=ATOL, rtol=0)
    # counts agree wherever the sign is not within float noise of zero
    clear = base.pairs.abs() > 1e-5
    assert torch.equal(((other.pairs > 0) & clear).sum(0), ((base.pairs > 0) & clear).sum(0))


def test_multi_site_differences_equal_single_site(model, examples) -> None:
    """One pass over several sites gives the same Differences as one run per site."""
    multi = collect_differences(model, examples, ["resid", "head", "neuron"], progress=False)
    assert set(multi) == {"resid", "head", "neuron"}
    for site, d in multi.items():
        single = collect_differences(model, examples, site, progress=False)
        assert d.site == site
        torch.testing.assert_close(d.mean, single.mean, atol=ATOL, rtol=0)
        assert torch.equal(d.n_pos, single.n_pos) and torch.equal(d.n_neg, single.n_neg)


def test_identical_sequences_warn_and_count(model) -> None:
    """Pairs that truncate to the same tokens warn, count in n_identical, and diff exactly 0."""
    tail = "x" * (model.cfg.n_ctx + 4)  # answers longer than the context lose their first token
    same = Example("p:", "A" + tail, ("B" + tail,))
    normal = [Example("abc:", "Y", ("N",)), Example("defg:", "N", ("Y",))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diffs = collect_differences(
            model, [normal[0], same, normal[1]], "mlp_out", keep_pairs=True, progress=False
        )
    messages = [str(w.message) for w in caught]
    assert any("1 of 3 pairs have identical" in m for m in messages), messages
    assert any("truncated from the left" in m for m in messages), messages
    assert diffs.n_identical == 1
    assert bool((diffs.pairs[1] == 0).all())
    assert bool((diffs.pairs[[0, 2]] != 0).any())
    # zero differences count as neither positive nor negative
    assert bool((diffs.n_pos + diffs.n_neg <= 2).all())
    torch.testing.assert_close(diffs.mean, diffs.pairs.mean(0), atol=1e-6, rtol=0)


def test_no_identical_warning_for_distinct_pairs(model, examples) -> None:
    """Distinct pairs give n_identical == 0 and no 'identical' warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diffs = collect_differences(model, examples[:3], "head", progress=False)
    assert diffs.n_identical == 0


def test_several_wrong_answers_seeded(model) -> None:
    """With several wrong answers one is drawn per example, reproducibly from the seed."""
    exs = [Example(f"q{i} is:", "A", ("B", "C", "D")) for i in range(6)]
    a = collect_differences(model, exs, "resid", seed=3, keep_pairs=True, progress=False)
    b = collect_differences(model, exs, "resid", seed=3, keep_pairs=True, progress=False)
    assert torch.equal(a.pairs, b.pairs)
    for i, ex in enumerate(exs):
        candidates = ref.pair_differences(
            model, [(ex.prompt, ex.answer, w) for w in ex.wrong], "resid"
        )
        gaps = (candidates - a.pairs[i]).flatten(1).abs().max(1).values
        assert float(gaps.min()) < ATOL  # the kept diff is one of the wrong answers' diffs


def test_collect_differences_empty_examples(model) -> None:
    """No examples is a ValueError that names the likely cause."""
    with pytest.raises(ValueError, match="no examples"):
        collect_differences(model, [], "head", progress=False)


def test_differences_repr_and_properties(model, examples) -> None:
    """Differences exposes layer count, unit shape, rates, and a short repr without tensors."""
    d = collect_differences(model, examples, "head", task="demo", progress=False)
    assert isinstance(d, Differences)
    assert d.n_layers == model.cfg.n_layers
    assert d.unit_shape == (model.cfg.n_heads, model.cfg.d_head)
    torch.testing.assert_close(d.r_pos + d.r_neg, (d.n_pos + d.n_neg).float() / d.n_pairs)
    text = repr(d)
    assert "head" in text and "demo" in text and "tensor" not in text


def test_subset_recounts_identical_pairs(model) -> None:
    """n_identical of a subset counts only the identical pairs inside the subset."""
    tail = "x" * (model.cfg.n_ctx + 4)
    exs = [
        Example("abc:", "Y", ("N",)),
        Example("p:", "A" + tail, ("B" + tail,)),
        Example("de:", "N", ("Y",)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diffs = collect_differences(model, exs, "resid", keep_pairs=True, progress=False)
    assert diffs.subset([1]).n_identical == 1
    assert diffs.subset([0, 2]).n_identical == 0


@pytest.mark.parametrize("site", ["head", ["neuron", "resid"]])
def test_failure_midway_leaves_no_hooks_and_no_inference_mode(
    model, examples, monkeypatch, site
) -> None:
    """If collection fails between batches (e.g. non-finite activations), its capture hooks are
    removed and inference mode is not left switched on."""
    calls = []

    def failing(acts, s):
        calls.append(s)
        if len(calls) == 2:
            raise FloatingPointError("injected")

    monkeypatch.setattr(collect_mod, "_check_finite", failing)
    with pytest.raises(FloatingPointError, match="injected"):
        collect_differences(model, examples, site, batch_size=2, progress=False)
    assert not torch.is_inference_mode_enabled()
    assert all(not hp.fwd_hooks and not hp._forward_hooks for hp in model.hook_dict.values())
    calls.clear()
    with pytest.raises(FloatingPointError, match="injected"):
        collect_activations(model, ["ab", "cd", "ef"], site, batch_size=1, progress=False)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_non_finite_activations_raise(model, examples) -> None:
    """NaN activations raise FloatingPointError naming the site and layer."""
    with torch.no_grad():
        model.blocks[1].mlp.W_out[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="layers \\[1\\]"):
        collect_differences(model, examples[:2], "mlp_out", progress=False)


def test_bad_batch_size(model, examples) -> None:
    """batch_size < 1 is a ValueError."""
    with pytest.raises(ValueError, match="batch_size"):
        collect_differences(model, examples, "head", batch_size=0, progress=False)
