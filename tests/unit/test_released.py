"""SADI and AUSteer as released: the gate ranking site, the released texts, masks and SADI's
clamp, against `tests/reference.py`'s one-example-at-a-time re-derivation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from steerlens import (
    austeer_mask,
    collect_activations,
    collect_differences,
    evaluate,
    sadi_mask,
    steer,
    sweep,
)
from steerlens._backend import BRIDGE
from steerlens.collect import contrastive_ids
from steerlens.steer import steering_hooks
from steerlens.tasks import Example
from steerlens.tokens import prompt_ids
from tests import reference as ref
from tests.checking import OFF_TYPE
from tests.reference import make_examples
from tests.tiny import tiny_model

SITES = ["head", "gate", "mlp_out"]


@pytest.fixture(params=[True, False], ids=["gated", "plain-mlp"])
def any_model(request):
    return tiny_model(gated=request.param)


def _units(mask) -> list[tuple[int, int]]:
    return list(zip(mask.layers.tolist(), mask.indices.tolist(), strict=True))


def test_gate_site_reads_the_activation_function_output(any_model) -> None:
    texts = ["hello there:", "a b c"]
    gate = collect_activations(any_model, texts, site="gate", progress=False)
    for i, text in enumerate(texts):
        names = [f"blocks.{layer}.mlp.hook_pre" for layer in range(any_model.cfg.n_layers)]
        _, cache = any_model.run_with_cache(
            torch.tensor([prompt_ids(any_model, text)]), names_filter=names
        )
        act = ref.ACT_FNS[any_model.cfg.act_fn]
        expected = torch.stack([act(cache[n][0, -1]) for n in names])
        torch.testing.assert_close(gate[i], expected, atol=1e-6, rtol=1e-5)
    neuron = collect_activations(any_model, texts, site="neuron", progress=False)
    if any_model.cfg.gated_mlp:  # the released ranking site is not hook_post in a gated MLP
        assert (gate - neuron).abs().max() > 1e-2
    else:  # in a plain MLP act_fn(hook_pre) is hook_post
        torch.testing.assert_close(gate, neuron)


@pytest.mark.parametrize("site", SITES)
def test_clamp_matches_the_released_semantics(any_model, site: str) -> None:
    model = any_model
    diffs = collect_differences(model, make_examples(16), site=site, progress=False)
    mask = sadi_mask(diffs, 3, mode="released")
    assert mask.operation == "clamp" and mask.positions == "last"
    delta = 4.0
    items = make_examples(6, seed=5)
    with steer(model, mask, delta):
        got = evaluate(model, items, batch_size=4, progress=False)
    for i, ex in enumerate(items):
        p = prompt_ids(model, ex.prompt)
        hooks = ref.released_sadi_hooks(model, p, site, _units(mask), 1 + delta, unit=mask.unit)
        want = ref.evaluate_one(model, ex.prompt, ex.options, lambda col, hooks=hooks: hooks)
        assert float(got.answer_logprob[i]) == pytest.approx(want["gold_lp"], abs=1e-5)
        assert bool(got.correct[i]) == want["hit"]
        assert bool(got.correct_restricted[i]) == want["win"]


def test_clamp_differs_from_live_scaling_and_is_neutral_at_zero(model) -> None:
    diffs = collect_differences(model, make_examples(16), site="head", progress=False)
    live, clamp = sadi_mask(diffs, 3), sadi_mask(diffs, 3, mode="released")
    tokens = torch.tensor([prompt_ids(model, "hello there:")])
    with torch.no_grad():
        base = model(tokens)
        with steer(model, clamp, 0.0):
            zero = model(tokens)
        with steer(model, clamp, 9.0):
            clamped = model(tokens)
        with steer(model, live, 9.0):
            scaled = model(tokens)
    torch.testing.assert_close(zero, base)
    assert (clamped - scaled).abs().max() > 1e-3
    assert (clamped[0, :-1] - base[0, :-1]).abs().max() == 0  # only the last position changes


def test_clamp_sweep_fast_equals_from_scratch(model) -> None:
    diffs = collect_differences(model, make_examples(16), site="gate", progress=False)
    mask = sadi_mask(diffs, 4, mode="released")
    dev = make_examples(12, seed=3)
    fast = sweep(model, dev, mask, [0.5, 9.0], ks=[1, 4], progress=False)
    slow = sweep(model, dev, mask, [0.5, 9.0], ks=[1, 4], progress=False, fast=False)
    for a, b in zip(fast.results, slow.results, strict=True):
        torch.testing.assert_close(a.answer_logprob, b.answer_logprob, atol=1e-5, rtol=1e-5)
    for (k, _), res in zip([(k, s) for k in (1, 4) for s in (0.5, 9.0)], fast.results, strict=True):
        with steer(model, mask.top(k), _):
            alone = evaluate(model, dev, progress=False)
        torch.testing.assert_close(res.answer_logprob, alone.answer_logprob, atol=1e-5, rtol=1e-5)


def test_clamp_steers_only_the_prefill_of_generate(model) -> None:
    diffs = collect_differences(model, make_examples(16), site="head", progress=False)
    mask = sadi_mask(diffs, 3, mode="released")
    tokens = torch.tensor([prompt_ids(model, "hello there:")])
    with steer(model, mask, 9.0):
        first = model(tokens)[0, -1].argmax()
        out = model.generate(tokens, max_new_tokens=3, do_sample=False, verbose=False)
    assert int(out[0, tokens.shape[1]]) == int(first)
    assert "forward" not in vars(model)  # the clean pre-pass wrapper is gone


def test_clamp_is_removed_on_error_and_refuses_misuse(model) -> None:
    diffs = collect_differences(model, make_examples(16), site="head", progress=False)
    mask = sadi_mask(diffs, 3, mode="released")
    with pytest.raises(RuntimeError, match="boom"), steer(model, mask, 2.0):
        raise RuntimeError("boom")
    assert "forward" not in vars(model)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    with (
        pytest.raises(ValueError, match="last prompt token"),
        steer(model, mask, 2.0, every_generated=True),
    ):
        pass
    with (
        pytest.raises(ValueError, match="one clamp mask per site"),
        steer(model, [mask, mask.top(1)], [1.0, 1.0]),
    ):
        pass
    with pytest.raises(ValueError, match="steer it with steer"):
        steering_hooks(mask, 1.0)
    with pytest.raises(ValueError, match="positions='last'"):
        dataclasses.replace(mask, positions="all")
    with pytest.raises(OFF_TYPE, match="mode must be|parameter 'mode'"):
        sadi_mask(diffs, 3, mode="official")


@pytest.mark.parametrize(
    ("site", "fmt", "method"),
    [("head", "sadi", "sadi"), ("gate", "sadi", "sadi"), ("mlp_out", "sadi", "sadi")]
    + [("head", "austeer", "austeer"), ("mlp_out", "austeer", "austeer")],
)
def test_released_masks_equal_the_re_derivation(any_model, site, fmt, method) -> None:
    """The released methods' masks: the same units (and AUSteer weights) as the one-pair-at-a-time
    re-derivation on the released texts."""
    model, examples = any_model, make_examples(12, seed=7)
    diffs = collect_differences(model, examples, site=site, pair_format=fmt, progress=False)
    pairs = [(ex.prompt, ex.answer, ex.wrong[0]) for ex in examples]
    by_pair = ref.pair_differences(model, pairs, site, pair_format=fmt)
    if method == "sadi":
        mask = sadi_mask(diffs, 5, mode="released")
        assert _units(mask) == ref.top_units(ref.sadi_scores(by_pair, site), 5)
    else:
        mask = austeer_mask(diffs, 5)
        _, _, s, beta = ref.austeer_stats(by_pair)
        units = ref.top_units(s, 5)
        assert _units(mask) == units
        torch.testing.assert_close(mask.weights, torch.stack([beta[u] for u in units]))


def test_released_pair_texts(model) -> None:
    copa = Example(prompt="Pick one.\nAnswer:\n", answer="A", wrong=("B",))
    boolq = Example(prompt="Is it?\n\nAnswer:", answer=" Yes", wrong=(" No",))
    [(pos, neg)] = contrastive_ids(model, [copa], pair_format="sadi")
    assert pos == prompt_ids(model, "Pick one.\nAnswer: A")  # strip, one space: SADI's COPA text
    assert neg == prompt_ids(model, "Pick one.\nAnswer: B")
    [(pos, neg)] = contrastive_ids(model, [boolq], pair_format="austeer")
    assert pos == prompt_ids(model, "Is it?\n\nAnswer:Yes")  # AUSteer: no separator
    [(pos, _)] = contrastive_ids(model, [boolq], pair_format="template")
    assert pos == prompt_ids(model, "Is it?\n\nAnswer: Yes")
    diffs = collect_differences(model, [boolq] * 2, site="head", progress=False, pair_format="sadi")
    assert diffs.pair_format == "sadi" and sadi_mask(diffs, 1).info["pair_format"] == "sadi"
    with pytest.raises(OFF_TYPE, match="pair_format"):
        contrastive_ids(model, [boolq], pair_format="llama")


def test_clean_passes_are_never_shared_across_batches(model) -> None:
    """Equal-length prompts ending alike, one per batch, a clamp from layer 0: every batch's
    KV cache is a new object, and its clean values must be its own (not a freed cache's)."""
    diffs = collect_differences(model, make_examples(16), site="head", progress=False)
    mask = sadi_mask(diffs, 4, mode="released")
    layered = [mask, mask.top(2)]
    words = [a + b for a in "abcd" for b in "xyz"]  # 12 prompts of one length, ending in ":"
    dev = [Example(prompt=f"{w}:", answer="Y", wrong=("N",)) for w in words]
    for m in layered:
        got = sweep(model, dev, {"m": m}, [4.0], batch_size=1, progress=False)
        with steer(model, m, 4.0):
            alone = evaluate(model, dev, batch_size=1, progress=False)
        torch.testing.assert_close(got.results[0].answer_logprob, alone.answer_logprob)


def test_clean_pass_keys_hash_any_dtype() -> None:
    from steerlens._clamp import _digest

    keep: list[object] = []
    a = _digest(torch.ones(3, dtype=torch.bfloat16), keep)
    assert a == _digest(torch.ones(3, dtype=torch.bfloat16), keep)
    assert a != _digest(torch.ones(3, dtype=torch.float32), keep)
    cache = object()
    assert _digest(cache, keep) == id(cache) and keep[-1] is cache


@pytest.mark.skipif(BRIDGE, reason="a bridge's MLP adds its bias inside hook_pre_linear")
def test_gate_scaling_refuses_an_mlp_bias(model) -> None:
    diffs = collect_differences(model, make_examples(8), site="gate", progress=False)
    assert float(model.blocks[0].mlp.b_in.detach().abs().max()) > 0  # the tiny model has a bias
    with pytest.raises(ValueError, match="no bias b_in"), steer(model, sadi_mask(diffs, 2), 1.0):
        pass
    with steer(model, sadi_mask(diffs, 2, mode="released"), 1.0):  # a clamp is exact with it
        pass


@pytest.mark.filterwarnings("ignore:.*flips the sign")
@pytest.mark.parametrize("name", ["austeer-ffn-released", "austeer-attention-released", "caa"])
def test_released_austeer_and_caa_steer_as_re_derived(any_model, name) -> None:
    """AUSteer on its released texts (every position) and CAA as released (from the prompt's
    end on): the same logits as the re-derivation's explicit hooks, gated and plain MLPs."""
    from steerlens import METHODS

    model = any_model
    method = METHODS["caa-released" if name == "caa" else name]
    diffs = collect_differences(
        model, make_examples(12), site=method.site, pair_format=method.pair_format, progress=False
    )
    mask = method.build(diffs, 1 if name == "caa" else 6)
    tokens = torch.tensor([prompt_ids(model, "the quick brown fox:")])
    last = tokens.shape[1] - 1
    column = None if mask.positions == "all" else last
    with torch.no_grad(), steer(model, mask, 3.0):
        got = model(tokens)
    want = model.run_with_hooks(tokens, fwd_hooks=ref.mask_hooks(mask, 3.0, column))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - model(tokens)).abs().max() > 1e-4  # it steers
