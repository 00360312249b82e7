"""Steering: what changes where, parity with explicit reference hooks, hook hygiene, generation."""

from __future__ import annotations

import dataclasses
import importlib
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from steerlens import (
    austeer_mask,
    caa_mask,
    collect_differences,
    fixed_vector_mask,
    iti_mask,
    prompt_end,
    sadi_mask,
    steer,
    steering_hooks,
)
from steerlens.mask import Mask
from steerlens.sites import hook_name
from steerlens.tokens import answer_ids, left_pad, prompt_ids
from tests import reference as ref
from tests.tiny import tiny_model

SITES = ("head", "neuron", "mlp_out", "resid")
PROMPTS = ["hello world:", "ab:", "a much longer prompt here:"]

# Large strengths flip some AUSteer units' signs on purpose; test_sign_flip_warns checks the warning.
pytestmark = pytest.mark.filterwarnings("ignore:strength .* flips the sign")


# ---- helpers -----------------------------------------------------------------------------------


def no_hooks_left(model) -> bool:
    """No HookPoint holds a forward or backward hook (TL's lists and torch's own dicts)."""
    return all(
        not hp.fwd_hooks and not hp.bwd_hooks and not hp._forward_hooks and not hp._backward_hooks
        for hp in model.hook_dict.values()
    )


def ids_of(model, text: str) -> torch.Tensor:
    return torch.tensor([prompt_ids(model, text)])


def units(mask: Mask) -> list[tuple[int, int]]:
    return list(zip(mask.layers.tolist(), mask.indices.tolist(), strict=True))


def ref_hooks(mask: Mask, strength: float, column):
    """The reference's explicit hooks for a mask (scale or add) at `column` (None: all)."""
    return ref.mask_hooks(mask, strength, column)


@contextmanager
def capture(model, site: str, store: dict[str, list[torch.Tensor]]) -> Iterator[None]:
    """Record every activation at `site` (all layers, every pass) into `store[hook_name]`."""

    def record(name: str):  # by the name asked for: a bridge's `hook.name` is its own name
        return lambda act, hook: store.setdefault(name, []).append(act.detach().clone())

    names = [hook_name(site, layer) for layer in range(model.cfg.n_layers)]
    with model.hooks(fwd_hooks=[(n, record(n)) for n in names]):
        yield


@pytest.fixture
def diffs(model, examples):
    cache: dict = {}

    def get(site: str):
        if site not in cache:
            cache[site] = collect_differences(model, examples, site, progress=False)
        return cache[site]

    return get


@pytest.fixture
def masks(diffs):
    """Masks of every method by name: SADI per site, AUSteer per site, and the add baselines."""

    def get(name: str) -> Mask:
        method, _, site = name.partition(":")
        if method == "sadi":
            return sadi_mask(diffs(site), 3)
        if method == "austeer":
            return austeer_mask(diffs(site), 5)
        if method == "fixed_vector":
            return fixed_vector_mask(sadi_mask(diffs(site), 2), diffs(site))
        if method == "caa":
            return caa_mask(diffs("resid"), 1)
        if method == "iti":
            return iti_mask(diffs("head"), 2)
        raise KeyError(name)

    return get


ALL_MASKS = (
    [f"sadi:{s}" for s in SITES]
    + [f"austeer:{s}" for s in SITES]
    + [
        "fixed_vector:head",
        "fixed_vector:neuron",
        "caa",
        "iti",
    ]
)


# ---- strength 0 and parity with the reference --------------------------------------------------


@pytest.mark.parametrize("name", ALL_MASKS)
def test_strength_zero_is_bit_identical(model, masks, name: str) -> None:
    """Strength 0 leaves every logit bit-identical, whatever the mask."""
    tokens = ids_of(model, PROMPTS[0])
    before = model(tokens)
    with steer(model, masks(name), 0.0):
        during = model(tokens)
    assert torch.equal(before, during)


@pytest.mark.parametrize("name", ALL_MASKS)
def test_steered_logits_match_reference_hooks(model, masks, name: str) -> None:
    """Steered logits equal a run with the reference's explicit hooks (last column or all)."""
    mask = masks(name)
    strength = 1.5
    tokens = ids_of(model, PROMPTS[2])
    column = tokens.shape[1] - 1 if mask.positions == "last" else None
    expected = model.run_with_hooks(tokens, fwd_hooks=ref_hooks(mask, strength, column))
    with steer(model, mask, strength):
        got = model(tokens)
    assert not torch.allclose(got, model(tokens), atol=1e-4)  # the steering does something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# ---- what changes where ------------------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_sadi_changes_only_selected_units_at_last_position(model, masks, site: str) -> None:
    """SADI scales the selected units at the last position by (1 + delta) and touches nothing
    else at the site; earlier positions equal the unsteered run everywhere."""
    mask, delta = masks(f"sadi:{site}"), 2.0
    tokens = ids_of(model, PROMPTS[0])
    names = [hook_name(site, layer) for layer in range(model.cfg.n_layers)]
    _, clean = model.run_with_cache(tokens, names_filter=names)
    before: dict[str, list[torch.Tensor]] = {}
    with capture(model, site, before), steer(model, mask, delta):
        _, after = model.run_with_cache(tokens, names_filter=names)
    expected_factor = {n: torch.ones(after[n].shape[2:], device=after[n].device) for n in names}
    for layer, idx in units(mask):
        expected_factor[names[layer]][idx] = 1 + delta  # a whole head or one coordinate
    for n in names:
        a, b = after[n], before[n][0]
        torch.testing.assert_close(a[:, -1], b[:, -1] * expected_factor[n], atol=1e-6, rtol=1e-6)
        assert torch.equal(a[:, :-1], b[:, :-1])
        # causal: steering the last position cannot reach earlier positions
        torch.testing.assert_close(a[:, :-1], clean[n][:, :-1], atol=1e-6, rtol=0)
    assert any(not torch.allclose(after[n][:, -1], clean[n][:, -1]) for n in names)


@pytest.mark.parametrize("site", SITES)
def test_austeer_scales_selected_dims_at_every_position(model, masks, site: str) -> None:
    """AUSteer multiplies each selected coordinate by (1 + alpha * beta) at every position,
    and leaves all other coordinates as the hook received them."""
    mask, alpha = masks(f"austeer:{site}"), 3.0
    tokens = ids_of(model, PROMPTS[0])
    names = [hook_name(site, layer) for layer in range(model.cfg.n_layers)]
    before: dict[str, list[torch.Tensor]] = {}
    with capture(model, site, before), steer(model, mask, alpha):
        _, after = model.run_with_cache(tokens, names_filter=names)
    for n in names:
        factor = torch.ones(after[n].shape[2:], device=after[n].device).flatten()
        for (layer, idx), beta in zip(units(mask), mask.weights.tolist(), strict=True):
            if names[layer] == n:
                factor[idx] = 1 + alpha * beta
        b = before[n][0]
        torch.testing.assert_close(after[n], b * factor.reshape(b.shape[2:]), atol=1e-6, rtol=1e-6)
    assert bool((mask.weights.abs() > 0).all())


@pytest.mark.parametrize("name", ["fixed_vector:head", "fixed_vector:neuron", "caa", "iti"])
def test_add_masks_add_strength_times_vector(model, masks, name: str) -> None:
    """'add' masks add strength * weight * vector to the selected units (at their positions)."""
    mask, strength = masks(name), -0.75
    tokens = ids_of(model, PROMPTS[1])
    names = [hook_name(mask.site, layer) for layer in range(model.cfg.n_layers)]
    before: dict[str, list[torch.Tensor]] = {}
    with capture(model, mask.site, before), steer(model, mask, strength):
        _, after = model.run_with_cache(tokens, names_filter=names)
    cols = [-1] if mask.positions == "last" else list(range(tokens.shape[1]))
    for n in names:
        added = torch.zeros(after[n].shape[2:]).reshape(-1, mask.unit_width)
        for (layer, idx), w, v in zip(units(mask), mask.weights, mask.vectors, strict=True):
            if names[layer] == n:
                added[idx] = strength * w * v
        added = added.reshape(after[n].shape[2:]).to(after[n].device)
        b = before[n][0]
        expected = b.clone()
        expected[:, cols] = b[:, cols] + added
        torch.testing.assert_close(after[n], expected, atol=1e-6, rtol=1e-6)


# ---- hook hygiene ------------------------------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("exit_with", [None, Boom, KeyboardInterrupt])
@pytest.mark.parametrize("name", ["sadi:head", "austeer:mlp_out", "caa"])
def test_hooks_removed_on_every_exit(model, masks, name: str, exit_with) -> None:
    """Normal exit, an exception and KeyboardInterrupt all leave no hooks and the clean logits."""
    tokens = ids_of(model, PROMPTS[0])
    clean = model(tokens)
    assert no_hooks_left(model)
    raised = None
    try:
        with steer(model, masks(name), 2.0):
            assert not no_hooks_left(model)
            assert not torch.equal(model(tokens), clean)
            if exit_with is not None:
                raise exit_with()
    except (Boom, KeyboardInterrupt) as err:
        raised = err
    assert (raised is None) == (exit_with is None)
    assert no_hooks_left(model)
    assert torch.equal(model(tokens), clean)


def test_hook_raising_inside_forward_leaves_no_hooks(model, masks, monkeypatch) -> None:
    """A steering hook that fails mid-forward propagates its error and leaves no hooks."""
    steer_mod = importlib.import_module("steerlens.steer")  # `steerlens.steer` is the function

    def broken(delta):
        def fn(act):
            raise Boom("hook failed")

        return fn

    monkeypatch.setattr(steer_mod, "_scale_hook", broken)
    with pytest.raises(Boom), steer(model, masks("austeer:head"), 1.0):
        model(ids_of(model, PROMPTS[0]))
    assert no_hooks_left(model)


def test_nested_contexts_compose_like_the_list_form(model, masks) -> None:
    """Nested steer blocks == steer(model, [m1, m2], [s1, s2]); leaving the inner block
    removes only its own hooks."""
    m1, m2 = masks("fixed_vector:head"), masks("sadi:head")  # same hook point: order matters
    s1, s2 = 1.5, -0.5
    tokens = ids_of(model, PROMPTS[2])
    with steer(model, [m1, m2], [s1, s2]):
        listed = model(tokens)
    with steer(model, m1, s1):
        only_outer = model(tokens)
    with steer(model, m1, s1):
        with steer(model, m2, s2):
            nested = model(tokens)
        after_inner = model(tokens)
    assert torch.equal(nested, listed)
    assert torch.equal(after_inner, only_outer)
    assert not torch.allclose(nested, only_outer, atol=1e-4)
    assert no_hooks_left(model)


def test_single_strength_applies_to_every_mask(model, masks) -> None:
    """A scalar strength with a list of masks applies to each of them."""
    m1, m2 = masks("sadi:neuron"), masks("austeer:resid")
    tokens = ids_of(model, PROMPTS[1])
    with steer(model, [m1, m2], 0.7):
        a = model(tokens)
    with steer(model, [m1, m2], [0.7, 0.7]):
        b = model(tokens)
    assert torch.equal(a, b)


# ---- validation --------------------------------------------------------------------------------


def test_mask_from_other_model_raises(model, masks) -> None:
    """A mask built for another model shape or another model (fingerprint) is refused."""
    other = tiny_model(n_layers=3)
    other_diffs = collect_differences(other, ref.make_examples(4), "head", progress=False)
    with (
        pytest.raises(ValueError, match="does not fit"),
        steer(model, sadi_mask(other_diffs, 2), 1.0),
    ):
        pass
    renamed = dataclasses.replace(masks("sadi:head"), fingerprint="0123456789abcdef")
    with pytest.raises(ValueError, match="rebuild the mask"), steer(model, renamed, 1.0):
        pass
    assert no_hooks_left(model)


@pytest.mark.parametrize(
    ("strength", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        ("2", TypeError),
        (True, TypeError),
        (torch.tensor(1.0), TypeError),
    ],
)
def test_bad_strength_raises_before_registering(model, masks, strength, error) -> None:
    """Non-finite or non-numeric strengths raise, and nothing stays registered."""
    with pytest.raises(error), steer(model, [masks("sadi:head"), masks("caa")], [1.0, strength]):
        pass
    assert no_hooks_left(model)


def test_other_steer_argument_errors(model, masks) -> None:
    """Mismatched strengths, non-mask objects and a bad positions override raise."""
    with (
        pytest.raises(ValueError, match="strengths"),
        steer(model, [masks("sadi:head"), masks("caa")], [1.0]),
    ):
        pass
    with pytest.raises(TypeError), steer(model, ["not a mask"], 1.0):
        pass
    with (
        pytest.raises(ValueError, match="positions"),
        steer(model, masks("sadi:head"), 1.0, positions="first"),
    ):
        pass
    assert no_hooks_left(model)


@pytest.mark.parametrize(("name", "strength"), [("sadi:resid", -3.0), ("austeer:head", 50.0)])
def test_sign_flip_warns(model, masks, name: str, strength: float) -> None:
    """A factor 1 + strength * weight < 0 warns (it is allowed, as in AUSteer's code)."""
    mask = masks(name)
    assert bool((1 + strength * mask.weights < 0).any())
    with pytest.warns(UserWarning, match="flips the sign"), steer(model, mask, strength):
        pass


def test_no_warning_without_sign_flip(model, masks) -> None:
    """Ordinary strengths do not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with steer(model, masks("austeer:neuron"), 0.5):
            pass


def test_steering_hooks_is_pure(model, masks) -> None:
    """steering_hooks registers nothing; it returns (hook name, fn) pairs on the mask's layers."""
    mask = masks("austeer:head")
    hooks = steering_hooks(mask, 2.0)
    assert no_hooks_left(model)
    assert {n for n, _ in hooks} == {
        hook_name("head", layer) for layer in set(mask.layers.tolist())
    }
    assert all(n in model.hook_dict for n, _ in steering_hooks(masks("sadi:mlp_out"), 1.0))


# ---- positions, batches, caches, generation ----------------------------------------------------


@pytest.mark.parametrize("name", ["sadi:head", "sadi:neuron", "austeer:mlp_out", "caa"])
def test_batched_left_padded_input(model, masks, name: str) -> None:
    """Left-padded batches are steered like one unpadded prompt at a time."""
    mask, strength = masks(name), 2.5
    seqs = [prompt_ids(model, p) for p in PROMPTS]
    tokens, attn = left_pad(seqs, model.tokenizer.pad_token_id, "cpu")
    with steer(model, mask, strength):
        batched = model(tokens, attention_mask=attn)[:, -1]
    for row, seq in enumerate(seqs):
        column = len(seq) - 1 if mask.positions == "last" else None
        single = model.run_with_hooks(
            torch.tensor([seq]), fwd_hooks=ref_hooks(mask, strength, column)
        )
        torch.testing.assert_close(batched[row], single[0, -1], atol=1e-4, rtol=1e-4)


def test_positions_override(model, masks) -> None:
    """positions='all' makes a SADI mask steer every position (as the reference does)."""
    mask, tokens = masks("sadi:mlp_out"), ids_of(model, PROMPTS[0])
    with steer(model, mask, 1.0, positions="all"):
        got = model(tokens)
    expected = model.run_with_hooks(tokens, fwd_hooks=ref_hooks(mask, 1.0, None))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_prompt_end_steers_that_column(model, masks) -> None:
    """In a teacher-forced pass over prompt + answer, prompt_end(t) steers column t only."""
    mask, delta = masks("sadi:head"), 3.0
    p = prompt_ids(model, PROMPTS[0])
    tokens = torch.tensor([p + answer_ids(model, " yes")])
    t = len(p) - 1
    expected = model.run_with_hooks(tokens, fwd_hooks=ref_hooks(mask, delta, t))
    with steer(model, mask, delta), prompt_end(t):
        got = model(tokens)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with steer(model, mask, delta):
        default = model(tokens)  # without prompt_end the last column (an answer token) is steered
    assert not torch.allclose(default, got, atol=1e-4)


def _greedy_reference(
    model, prompt: list[int], n_new: int, hooks_at
) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding without a KV cache; `hooks_at(length)` gives the hooks for each pass."""
    ids, logits = list(prompt), []
    for _ in range(n_new):
        out = model.run_with_hooks(torch.tensor([ids]), fwd_hooks=hooks_at(len(ids)))[0, -1]
        logits.append(out)
        ids.append(int(out.argmax()))
    return ids, torch.stack(logits)


def _generate(model, prompt: list[int], n_new: int):
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=n_new,
        do_sample=False,
        stop_at_eos=False,
        verbose=False,
        output_logits=True,
    )
    return out.sequences[0].tolist(), torch.stack([lg[0] for lg in out.logits])


@pytest.mark.parametrize(
    ("name", "every_generated"),
    [
        ("sadi:head", False),
        ("sadi:mlp_out", False),
        ("sadi:head", True),
        ("sadi:neuron", True),
        ("austeer:head", False),
        ("austeer:resid", False),
    ],
)
def test_generate_matches_uncached_reference(
    model, masks, name: str, every_generated: bool
) -> None:
    """model.generate (KV cache) under steer equals greedy decoding without a cache where the
    reference hooks steer: the last prompt token (SADI), also every generated token
    (every_generated=True), or every position (AUSteer)."""
    mask, strength, n_new = masks(name), 4.0, 5
    prompt = prompt_ids(model, PROMPTS[0])
    t = len(prompt) - 1

    def hooks_at(length: int):
        if mask.positions == "all":
            return ref_hooks(mask, strength, None)
        return ref_hooks(mask, strength, list(range(t, length)) if every_generated else t)

    want_ids, want_logits = _greedy_reference(model, prompt, n_new, hooks_at)
    with steer(model, mask, strength, every_generated=every_generated):
        got_ids, got_logits = _generate(model, prompt, n_new)
    assert got_ids == want_ids
    torch.testing.assert_close(got_logits, want_logits, atol=1e-4, rtol=1e-4)
    plain_ids, plain_logits = _generate(model, prompt, n_new)
    assert not torch.allclose(plain_logits, got_logits, atol=1e-3)
    assert no_hooks_left(model)


@pytest.mark.parametrize(
    ("name", "every_generated"),
    [("sadi:head", False), ("sadi:resid", True), ("austeer:neuron", False)],
)
def test_batched_generate_equals_single_prompts(
    model, masks, name: str, every_generated: bool
) -> None:
    """Steered generation of a left-padded batch of prompts equals generating each alone."""
    mask = masks(name)
    kwargs = dict(
        max_new_tokens=4, do_sample=False, stop_at_eos=False, verbose=False, output_logits=True
    )
    with steer(model, mask, 3.0, every_generated=every_generated):
        batched = model.generate(PROMPTS, **kwargs)
        singles = [model.generate(p, **kwargs) for p in PROMPTS]
    for row, single in enumerate(singles):
        got = torch.stack([step[row] for step in batched.logits])
        want = torch.stack([step[0] for step in single.logits])
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        assert batched.sequences[row, -4:].tolist() == single.sequences[0, -4:].tolist()


@pytest.mark.parametrize(
    ("name", "every_generated", "expected"),
    [
        ("sadi:mlp_out", False, [True, False, False, False]),
        ("sadi:mlp_out", True, [True, True, True, True]),
        ("austeer:mlp_out", False, [True, True, True, True]),
    ],
)
def test_generate_steers_the_right_passes(model, masks, name, every_generated, expected) -> None:
    """Counting modified forward passes during generation: SADI steers only the prefill unless
    every_generated=True; AUSteer steers every pass."""
    mask, strength = masks(name), 2.0
    site = mask.site
    before: dict[str, list[torch.Tensor]] = {}
    after: dict[str, list[torch.Tensor]] = {}
    prompt = prompt_ids(model, PROMPTS[1])
    with (
        capture(model, site, before),
        steer(model, mask, strength, every_generated=every_generated),
        capture(model, site, after),
    ):
        model.generate(
            torch.tensor([prompt]),
            max_new_tokens=len(expected),
            do_sample=False,
            stop_at_eos=False,
            verbose=False,
        )
    layer = int(mask.layers[0])
    n = hook_name(site, layer)
    assert len(before[n]) == len(after[n]) == len(expected)
    modified = [not torch.equal(b, a) for b, a in zip(before[n], after[n], strict=True)]
    assert modified == expected
    # inside a modified pass only the last position changes for SADI (prefill: last prompt token)
    if mask.positions == "last":
        assert torch.equal(before[n][0][:, :-1], after[n][0][:, :-1])
