"""Evaluation: both metrics against one-example-at-a-time reference runs, steered and unsteered."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from steerlens import (
    EvalResult,
    Example,
    austeer_mask,
    collect_differences,
    encode_items,
    evaluate,
    fixed_vector_mask,
    sadi_mask,
    steer,
)
from steerlens.tokens import answer_ids
from tests import reference as ref

eval_mod = importlib.import_module("steerlens.evaluate")  # `steerlens.evaluate` is the function

pytestmark = pytest.mark.filterwarnings("ignore:strength .* flips the sign")


@pytest.fixture
def biased(model):
    """The tiny model with its unembedding nudged toward "Y" and "N", so that the full-vocab
    argmax is the gold token for some prompts and not for others."""
    with torch.no_grad():
        for letter in "YN":
            model.unembed.b_U[answer_ids(model, letter)[0]] += 3.0
    return model


def _reference(model, examples, hooks_for=None) -> list[dict]:
    return [ref.evaluate_one(model, ex.prompt, ex.options, hooks_for) for ex in examples]


def _assert_matches(result: EvalResult, expected: list[dict]) -> None:
    assert result.correct.tolist() == [e["hit"] for e in expected]
    assert result.correct_restricted.tolist() == [e["win"] for e in expected]
    torch.testing.assert_close(
        result.answer_logprob, torch.tensor([e["gold_lp"] for e in expected]), atol=1e-5, rtol=1e-5
    )


def test_accuracy_matches_reference(biased, examples) -> None:
    """Full-vocab argmax accuracy and restricted accuracy equal single unpadded runs."""
    result = evaluate(biased, examples, batch_size=4, progress=False)
    expected = _reference(biased, examples)
    _assert_matches(result, expected)
    assert 0 < result.accuracy < 1  # the data exercises both outcomes
    assert 0 < result.restricted < 1
    assert result.accuracy == pytest.approx(np.mean([e["hit"] for e in expected]))
    assert result.n == len(examples)


def test_restricted_multi_token_matches_summed_logprobs(model, multi_examples) -> None:
    """Multi-token options (different lengths, 2-3 options) are scored by summed log-probs."""
    result = evaluate(model, multi_examples, batch_size=3, progress=False)
    expected = _reference(model, multi_examples)
    _assert_matches(result, expected)
    assert len({len(answer_ids(model, o)) for ex in multi_examples for o in ex.options}) > 1
    assert 0 < result.restricted < 1


def test_option_logprobs_equal_reference_scores(model, multi_examples) -> None:
    """The batched per-option log-prob sums equal the reference's, option by option."""
    items = encode_items(model, multi_examples)
    with torch.inference_mode():
        scores, _ = eval_mod._option_logprobs(model, items, range(len(multi_examples)))
    for i, e in enumerate(_reference(model, multi_examples)):
        n = len(e["scores"])
        torch.testing.assert_close(scores[i, :n], torch.tensor(e["scores"]), atol=1e-4, rtol=1e-5)
        assert bool(torch.isneginf(scores[i, n:]).all())


@pytest.mark.parametrize("batch_size", [1, 2, 5, 100])
@pytest.mark.parametrize("which", ["single", "multi"])
def test_batch_size_invariance(
    biased, examples, multi_examples, which: str, batch_size: int
) -> None:
    """Per-item outcomes do not depend on the batch size."""
    data = examples if which == "single" else multi_examples
    base = evaluate(biased, data, batch_size=3, progress=False)
    other = evaluate(biased, data, batch_size=batch_size, progress=False)
    assert torch.equal(base.correct, other.correct)
    assert torch.equal(base.correct_restricted, other.correct_restricted)
    torch.testing.assert_close(base.answer_logprob, other.answer_logprob, atol=1e-5, rtol=1e-5)


def test_encoded_items_equal_examples(biased, multi_examples) -> None:
    """Passing encode_items(...) gives the same result as passing the examples."""
    a = evaluate(biased, multi_examples, progress=False)
    b = evaluate(biased, encode_items(biased, multi_examples), progress=False)
    assert torch.equal(a.correct_restricted, b.correct_restricted)
    assert torch.equal(a.answer_logprob, b.answer_logprob)


@pytest.fixture
def masks(model, examples):
    def get(name: str):
        method, _, site = name.partition(":")
        diffs = collect_differences(model, examples, site, progress=False)
        if method == "sadi":
            return sadi_mask(diffs, 3)
        if method == "austeer":
            return austeer_mask(diffs, 6)
        return fixed_vector_mask(sadi_mask(diffs, 2), diffs)

    return get


def _hooks_for(mask, strength):
    """Reference hooks, given the column of the last prompt token of a single unpadded run."""
    return lambda t: ref.mask_hooks(mask, strength, t if mask.positions == "last" else None)


@pytest.mark.parametrize(
    "name", ["sadi:head", "sadi:neuron", "austeer:mlp_out", "fixed_vector:resid"]
)
def test_steered_multi_token_scoring_steers_last_prompt_token(
    model, masks, multi_examples, name
) -> None:
    """Under steer, option log-probs equal single runs with an explicit hook at the last prompt
    token (SADI) or at every position (AUSteer), not at the last answer token."""
    mask, strength = masks(name), 4.0
    hooks_for = _hooks_for(mask, strength)
    items = encode_items(model, multi_examples)
    with torch.inference_mode():
        plain, _ = eval_mod._option_logprobs(model, items, range(len(multi_examples)))
        with steer(model, mask, strength):
            scores, _ = eval_mod._option_logprobs(model, items, range(len(multi_examples)))
            result = evaluate(model, multi_examples, batch_size=3, progress=False)
    expected = _reference(model, multi_examples, hooks_for)
    for i, e in enumerate(expected):
        n = len(e["scores"])
        torch.testing.assert_close(scores[i, :n], torch.tensor(e["scores"]), atol=1e-4, rtol=1e-5)
    _assert_matches(result, expected)
    assert not torch.allclose(scores, plain, atol=1e-3)  # the steering mattered


@pytest.mark.parametrize("name", ["sadi:head", "austeer:neuron"])
def test_steered_single_token_accuracy_matches_reference(biased, examples, name) -> None:
    """With single-token options, steered accuracy equals the reference with explicit hooks."""
    diffs = collect_differences(biased, examples, name.split(":")[1], progress=False)
    mask = sadi_mask(diffs, 3) if name.startswith("sadi") else austeer_mask(diffs, 6)
    with steer(biased, mask, 3.0):
        result = evaluate(biased, examples, batch_size=4, progress=False)
    _assert_matches(result, _reference(biased, examples, _hooks_for(mask, 3.0)))


def test_strength_zero_reproduces_unsteered(biased, masks, multi_examples) -> None:
    """Strength 0 gives exactly the unsteered evaluation."""
    plain = evaluate(biased, multi_examples, progress=False)
    with steer(biased, masks("sadi:head"), 0.0):
        zero = evaluate(biased, multi_examples, progress=False)
    assert torch.equal(plain.answer_logprob, zero.answer_logprob)
    assert torch.equal(plain.correct_restricted, zero.correct_restricted)


def test_long_prompt_keeps_its_end(model) -> None:
    """A prompt longer than the context is truncated from the left, keeping room for options."""
    long = Example("z" * 30 + "abc" * 20 + ":", " yes", (" no",))
    with pytest.warns(UserWarning, match="truncated from the left"):
        items = encode_items(model, [long])
    longest = max(len(answer_ids(model, o)) for o in long.options)
    assert len(items.prompts[0]) == model.cfg.n_ctx - longest
    assert items.prompts[0][-4:] == answer_ids(model, "abc:")
    result = evaluate(model, items, progress=False)
    p = items.prompts[0]
    opts = [answer_ids(model, o) for o in long.options]
    expected = [ref.option_logprob(model, p, o) for o in opts]
    assert bool(result.correct_restricted[0]) == (expected[0] > expected[1])


# ---- EvalResult ----------------------------------------------------------------------------------


def _result(flags: list[bool]) -> EvalResult:
    t = torch.tensor(flags)
    return EvalResult(t, ~t, torch.zeros(len(flags)))


def test_ci_contains_accuracy_and_is_seeded() -> None:
    """Bootstrap bounds bracket the point estimate, repeat with a seed, and widen with level."""
    res = _result([True] * 13 + [False] * 7)
    lo, hi = res.ci(seed=1)
    assert 0 <= lo <= res.accuracy <= hi <= 1 and lo < hi
    assert res.ci(seed=1) == (lo, hi)
    half = 1.96 * (0.65 * 0.35 / 20) ** 0.5  # the normal approximation, as a sanity band
    assert abs(lo - (0.65 - half)) < 0.08 and abs(hi - (0.65 + half)) < 0.08
    lo99, hi99 = res.ci(level=0.99, seed=1)
    assert lo99 <= lo and hi99 >= hi
    rlo, rhi = res.ci("restricted", seed=1)
    assert rlo <= res.restricted <= rhi
    assert _result([True] * 5).ci() == (1.0, 1.0)


def test_ci_of_real_evaluation(biased, examples) -> None:
    """The interval of an actual evaluation contains its accuracy."""
    res = evaluate(biased, examples, progress=False)
    lo, hi = res.ci(n_boot=500, seed=0)
    assert lo <= res.accuracy <= hi


def test_metric_names() -> None:
    """metric() maps names to the two accuracies; unknown names raise (also in ci)."""
    res = _result([True, False, True, True])
    assert res.metric("accuracy") == 0.75 and res.metric("restricted") == 0.25
    with pytest.raises(ValueError):
        res.metric("f1")
    with pytest.raises(ValueError):
        res.ci("f1")
    assert "accuracy=0.7500" in repr(res)


def test_empty_examples_error(model) -> None:
    """Evaluating nothing is a ValueError that names the likely cause."""
    with pytest.raises(ValueError, match="no examples"):
        evaluate(model, [], progress=False)
    with pytest.raises(ValueError, match="no examples"):
        encode_items(model, [])


def test_delta_is_the_paired_bootstrap_difference(biased, multi_examples) -> None:
    from steerlens.stats import paired_bootstrap_ci

    a = evaluate(biased, multi_examples, progress=False)
    b = EvalResult(~a.correct, a.correct_restricted, a.answer_logprob)
    d, lo, hi = b.delta(a)
    assert (d, lo, hi) == paired_bootstrap_ci(b.correct.numpy(), a.correct.numpy())
    assert lo <= d <= hi and a.delta(a) == (0.0, 0.0, 0.0)
    assert math.isnan(b.delta(a, "paper")[0])  # b has no paper flags
    with pytest.raises(ValueError, match="same items"):
        a.delta(evaluate(biased, multi_examples[:2], progress=False))
