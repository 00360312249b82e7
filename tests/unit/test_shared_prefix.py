"""A prefix shared by every text (k-shot demonstrations) runs once; the numbers equal running
every text in full, steered or not, in evaluation, collection and sweeps."""

from __future__ import annotations

import importlib

import pytest
import torch

from steerlens import austeer_mask, collect_differences, evaluate, sadi_mask, steer, sweep
from steerlens._prefix import MIN_SHARED_TOKENS, common_length, no_shared_prefix, shared_prefix
from steerlens.baselines import caa_mask
from steerlens.evaluate import encode_items
from steerlens.iti import iti_released_mask
from steerlens.tasks import Example
from tests.checking import needs_kv_cache
from tests.reference import make_examples

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*flips the sign", "ignore:.*truncated"),
    needs_kv_cache,
]
DEMOS = "the quick brown fox jumps over the lazy dog: Y\n\n"  # 40 tokens


def _few_shot(examples: list[Example], multi: bool = False) -> list[Example]:
    out = []
    for ex in examples:
        answer, wrong = (
            (ex.answer + " yes", (ex.wrong[0] + " no",)) if multi else (ex.answer, ex.wrong)
        )
        out.append(Example(DEMOS + ex.prompt, answer, wrong))
    return out


@pytest.fixture
def items(model):
    return encode_items(model, _few_shot(make_examples(10)))


@pytest.fixture
def masks(model):
    diffs = collect_differences(
        model, make_examples(12), site=["head", "resid"], keep_sides=True, progress=False
    )
    return {
        "none": (None, 0.0),
        "sadi": (sadi_mask(diffs["head"], 2), 4.0),
        "austeer": (austeer_mask(diffs["head"], 5), 8.0),
        "caa-from": (caa_mask(diffs["resid"], 1, positions="from"), 2.0),
        "iti-each-last": (iti_released_mask(diffs["head"], 2), 5.0),
    }


def test_the_prefix_is_long_enough_to_share(model, items) -> None:
    n = common_length(items.prompts)
    assert n >= MIN_SHARED_TOKENS and all(len(p) > n for p in items.prompts)
    assert shared_prefix(model, items.prompts) is not None
    with no_shared_prefix():
        assert shared_prefix(model, items.prompts) is None
    assert shared_prefix(model, [p[-8:] for p in items.prompts]) is None  # nothing shared


def _same(a, b) -> None:
    assert torch.equal(a.correct, b.correct) and torch.equal(
        a.correct_restricted, b.correct_restricted
    )
    assert torch.allclose(a.answer_logprob, b.answer_logprob, atol=1e-4)


@pytest.mark.parametrize("name", ["none", "sadi", "austeer", "caa-from", "iti-each-last"])
@pytest.mark.parametrize("multi", [False, True])
def test_evaluation_equals_running_every_text_in_full(model, masks, name, multi) -> None:
    items = encode_items(model, _few_shot(make_examples(10), multi=multi))
    mask, strength = masks[name]
    ctx = steer(model, mask, strength) if mask is not None else torch.no_grad()
    with ctx:
        fast = evaluate(model, items, batch_size=4, progress=False)
        with no_shared_prefix():
            full = evaluate(model, items, batch_size=4, progress=False)
    _same(fast, full)
    if mask is not None:  # steering changed what the prefix path computes
        plain = evaluate(model, items, progress=False)
        assert not torch.allclose(fast.answer_logprob, plain.answer_logprob, atol=1e-3)


@pytest.mark.parametrize("pair_format", ["template", "sadi", "austeer"])
def test_collection_equals_running_every_text_in_full(model, pair_format) -> None:
    examples = _few_shot(make_examples(10))
    kw = {"site": ["head", "neuron", "resid"], "pair_format": pair_format, "progress": False}
    fast = collect_differences(model, examples, batch_size=4, keep_sides=True, **kw)
    with no_shared_prefix():
        full = collect_differences(model, examples, batch_size=4, keep_sides=True, **kw)
    for site in kw["site"]:
        assert torch.allclose(fast[site].mean, full[site].mean, atol=1e-5)
        assert torch.allclose(fast[site].sq_mean, full[site].sq_mean, atol=1e-5)
        assert torch.allclose(fast[site].positive, full[site].positive, atol=1e-5)


@pytest.mark.parametrize("name", ["sadi", "austeer", "caa-from", "iti-each-last"])
def test_sweeps_equal_evaluating_every_cell_in_full(model, masks, items, name, monkeypatch) -> None:
    import steerlens._prefix as prefix_mod

    shared = []
    real = prefix_mod.shared_prefix

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        shared.append(out is not None)
        return out

    for module in ("steerlens._sweep_paths", "steerlens.evaluate"):
        monkeypatch.setattr(importlib.import_module(module), "shared_prefix", spy)
    mask, _ = masks[name]
    kw = {"strengths": [1.0, 4.0], "batch_size": 4, "progress": False}
    fast = sweep(model, items, {"m": mask}, **kw)
    assert shared and all(shared)  # the fast sweep ran over the shared prefix
    with no_shared_prefix():
        full = sweep(model, items, {"m": mask}, fast=False, **kw)
    assert len(fast.results) == len(full.results) == 2
    for a, b in zip(fast.results, full.results, strict=True):
        _same(a, b)
    unsteered = evaluate(model, items, progress=False)
    assert not torch.allclose(fast.results[1].answer_logprob, unsteered.answer_logprob, atol=1e-3)


def test_a_clamp_mask_runs_whole_texts(model, items) -> None:
    diffs = collect_differences(model, make_examples(12), site="head", progress=False)
    clamp = sadi_mask(diffs, 2, mode="released")
    with steer(model, clamp, 9.0):
        assert shared_prefix(model, items.prompts) is None  # the clean pass needs whole texts
        fast = evaluate(model, items, batch_size=4, progress=False)
        with no_shared_prefix():
            full = evaluate(model, items, batch_size=4, progress=False)
    _same(fast, full)
    assert shared_prefix(model, items.prompts) is not None  # only while the clamp is active


@pytest.mark.parametrize("name", ["none", "sadi", "austeer", "caa-from", "iti-each-last"])
@pytest.mark.parametrize("with_prefix", [False, True])
def test_answers_continuing_the_prompt_cache_equal_whole_texts(
    model, masks, name, with_prefix
) -> None:
    """Multi-token options scored over each prompt's KV cache (one prompt pass, then the
    options' other tokens) equal one teacher-forced row per (prompt, option), steered alike."""
    from steerlens.evaluate import _option_logprobs, _teacher_forced_logprobs

    examples = _few_shot(make_examples(6), multi=True)
    if not with_prefix:
        examples = [Example(ex.prompt[len(DEMOS) :], ex.answer, ex.wrong) for ex in examples]
    items = encode_items(model, examples)
    assert any(len(o) > 1 for opts in items.options for o in opts)
    rows = range(len(examples))
    mask, strength = masks[name]
    ctx = steer(model, mask, strength) if mask is not None else torch.no_grad()
    with torch.inference_mode(), ctx:
        prefix = shared_prefix(model, items.prompts)
        assert (prefix is not None) == with_prefix
        cached, cached_argmax = _option_logprobs(model, items, rows, prefix)
        full, full_argmax = _teacher_forced_logprobs(model, items, rows, prefix)
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-5)
    assert cached_argmax == full_argmax
    if mask is not None:
        with torch.inference_mode():
            unsteered, _ = _teacher_forced_logprobs(model, items, rows)
        assert not torch.allclose(full, unsteered, atol=1e-3)  # the steering mattered


def test_answers_under_a_clamp_run_whole_texts(model, masks, monkeypatch) -> None:
    """A clamp's clean pre-pass must see whole texts: option scoring falls back to full rows."""
    eval_mod = importlib.import_module("steerlens.evaluate")
    diffs = collect_differences(model, make_examples(12), site="head", progress=False)
    clamp = sadi_mask(diffs, 2, mode="released")
    items = encode_items(model, _few_shot(make_examples(4), multi=True))
    calls = []
    real = eval_mod._teacher_forced_logprobs
    monkeypatch.setattr(
        eval_mod, "_teacher_forced_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with steer(model, clamp, 9.0):
        evaluate(model, items, batch_size=4, progress=False)
    assert calls
    calls.clear()
    evaluate(model, items, batch_size=4, progress=False)
    assert not calls
