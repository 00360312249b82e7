"""ITI as its authors' code runs it (`iti-released`): a plain re-derivation of honest_llama's
probes, directions and steering, text by text, gives the same heads, vectors and logits; the
steering lands at the last position of each forward pass; bad input fails clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlens import METHODS, collect_differences, iti_released_mask, steer, sweep
from steerlens.iti import ITI_ALPHA, ITI_HEADS, iti_default_k, scaled_k
from steerlens.tokens import prompt_ids
from tests import reference as ref
from tests.reference import make_examples
from tests.tiny import tiny_model

N_PAIRS = 24  # 19 train the probes, 5 held out (10 texts): accuracies in steps of 0.1
ATOL = 1e-5


@pytest.fixture(params=["gated", "plain"])
def any_model(request, model):
    """The tiny Llama-shaped model (gated MLP), and one with a plain GELU MLP."""
    return model if request.param == "gated" else tiny_model(gated=False)


@pytest.fixture
def pairs():
    return make_examples(N_PAIRS, seed=3)


# ---- the re-derivation: honest_llama's steps in plain numpy, one text at a time -----------------


def _logistic_regression(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, float]:
    """sklearn's `LogisticRegression(C=c)` optimum: min 0.5 |w|^2 + c * sum(log-loss), the
    intercept unpenalised; Newton steps with step halving until the gradient vanishes."""
    a = np.c_[x, np.ones(len(x))]
    reg = np.eye(a.shape[1])
    reg[-1, -1] = 0.0

    def loss(th: np.ndarray) -> float:
        z = a @ th
        return 0.5 * th @ reg @ th + c * float(np.sum(np.logaddexp(0.0, z) - y * z))

    th = np.zeros(a.shape[1])
    for _ in range(200):
        p = 1.0 / (1.0 + np.exp(-(a @ th)))
        grad = reg @ th + c * a.T @ (p - y)
        if np.abs(grad).max() < 1e-11:
            break
        step = np.linalg.solve(reg + c * (a.T * (p * (1 - p))) @ a, grad)
        t = 1.0
        while loss(th - t * step) > loss(th) and t > 1e-12:
            t /= 2
        th = th - t * step
    return th[:-1], float(th[-1])


def _reference(model, examples, *, seed: int = 0, val_fraction: float = 0.2):
    """Per-head held-out accuracies `[layer][head]`, the heads ranked, and each head's
    `std * unit mass-mean shift`, derived from honest_llama's steps."""
    pos = np.stack(
        [
            ref.last_token_acts(model, ref.text_ids(model, e.prompt, e.answer), "head")
            .double()
            .numpy()
            for e in examples
        ]
    )
    neg = np.stack(
        [
            ref.last_token_acts(model, ref.text_ids(model, e.prompt, e.wrong[0]), "head")
            .double()
            .numpy()
            for e in examples
        ]
    )
    n, n_layers, n_heads = pos.shape[:3]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_train = int(n * (1 - val_fraction))
    train, held = order[:n_train], order[n_train:]
    y_train = np.r_[np.ones(len(train)), np.zeros(len(train))]
    y_held = np.r_[np.ones(len(held)), np.zeros(len(held))]
    acc = np.zeros((n_layers, n_heads))
    vectors = np.zeros(pos.shape[1:])
    for layer in range(n_layers):
        for head in range(n_heads):
            p, q = pos[:, layer, head], neg[:, layer, head]
            w, b = _logistic_regression(np.r_[p[train], q[train]], y_train)
            predicted = (np.r_[p[held], q[held]] @ w + b > 0).astype(float)
            acc[layer, head] = np.mean(predicted == y_held)
            shift = p.mean(0) - q.mean(0)
            unit = shift / np.linalg.norm(shift)
            std = np.std(np.r_[p, q] @ unit, ddof=1)  # torch.std in validate_2fold.py
            vectors[layer, head] = std * unit
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    heads.sort(key=lambda u: (-acc[u], u[0], u[1]))
    return acc, heads, vectors


# ---- parity -------------------------------------------------------------------------------------


def test_heads_vectors_and_logits_match_a_re_derivation(any_model, pairs) -> None:
    model = any_model
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    diffs = collect_differences(model, pairs, "head", keep_sides=True, progress=False)
    acc, heads, vectors = _reference(model, pairs)
    assert len(np.unique(acc)) > 2, "the test data should give the probes different accuracies"
    mask = iti_released_mask(diffs, n_heads)
    units = list(zip(mask.layers.tolist(), mask.indices.tolist(), strict=True))
    assert units == heads
    expected = torch.tensor([acc[u] for u in heads], dtype=torch.float32)
    torch.testing.assert_close(mask.scores, expected, atol=1e-6, rtol=0)
    want = torch.tensor(np.stack([vectors[u] for u in heads]), dtype=torch.float32)
    torch.testing.assert_close(mask.vectors, want, atol=ATOL, rtol=0)
    assert (mask.operation, mask.positions, mask.unit, mask.site) == (
        "add",
        "each_last",
        "head",
        "head",
    )
    assert torch.equal(mask.weights, torch.ones(n_heads))

    k = 3
    top = iti_released_mask(diffs, k)
    tokens = torch.tensor([prompt_ids(model, "steer this prompt:")])
    hooks = ref.add_hooks(
        "head", heads[:k], [ITI_ALPHA * want[i] for i in range(k)], unit="head", column=-1
    )
    with torch.no_grad():
        expected_logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        clean = model(tokens)
        with steer(model, top, ITI_ALPHA):
            got = model(tokens)
    torch.testing.assert_close(got, expected_logits, atol=ATOL, rtol=0)
    assert float((got - clean)[0, -1].abs().max()) > 1e-3  # it steers ...
    torch.testing.assert_close(got[0, :-1], clean[0, :-1], atol=0, rtol=0)  # ... the last token


def test_probes_reach_sklearns_optimum(model, pairs) -> None:
    """The probes minimise sklearn's objective: sklearn run to a tight tolerance gives the same
    held-out accuracies (its default tolerance stops near, not at, the optimum)."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    from steerlens.iti import fit_probes, probe_accuracies, split_pairs

    diffs = collect_differences(model, pairs, "head", keep_sides=True, progress=False)
    train, held = split_pairs(N_PAIRS)
    pos, neg = diffs.positive, diffs.negative
    x = torch.cat([pos[train], neg[train]]).flatten(1, 2).transpose(0, 1)
    y = torch.cat([torch.ones(len(train)), torch.zeros(len(train))])
    w, b = fit_probes(x, y)
    accs = probe_accuracies(diffs).flatten()
    x_held = torch.cat([pos[held], neg[held]]).flatten(1, 2).transpose(0, 1)
    y_held = np.r_[np.ones(len(held)), np.zeros(len(held))]
    for i in range(x.shape[0]):
        clf = sklearn.LogisticRegression(random_state=0, max_iter=100_000, tol=1e-12)
        clf.fit(x[i].double().numpy(), y.numpy())
        np.testing.assert_allclose(clf.coef_[0], w[i].numpy(), atol=1e-4)
        np.testing.assert_allclose(clf.intercept_[0], float(b[i]), atol=1e-4)
        score = np.mean(clf.predict(x_held[i].double().numpy()) == y_held)
        assert score == pytest.approx(float(accs[i]))


# ---- where it steers ----------------------------------------------------------------------------


def test_it_steers_the_last_position_of_a_fresh_pass_and_each_generated_token(model, pairs) -> None:
    diffs = collect_differences(model, pairs, "head", keep_sides=True, progress=False)
    mask = iti_released_mask(diffs, 2)
    layer = int(mask.layers[0])
    name = f"blocks.{layer}.attn.hook_z"
    rows = (mask.layers == layer).nonzero().flatten()
    added = torch.zeros(model.cfg.n_heads, model.cfg.d_head)
    added[mask.indices[rows]] = ITI_ALPHA * mask.vectors[rows]
    before, after = [], []

    def keep(store):
        def hook(act, hook):
            store.append(act[0].detach().clone())

        return hook

    prompt = torch.tensor([prompt_ids(model, "a prompt of some length:")])
    # hooks run in the order they were added: capture, steer, capture
    with (
        model.hooks(fwd_hooks=[(name, keep(before))]),
        steer(model, mask, ITI_ALPHA),
        model.hooks(fwd_hooks=[(name, keep(after))]),
    ):
        model(prompt)  # a fresh pass
        model.generate(prompt, max_new_tokens=3, do_sample=False, stop_at_eos=False, verbose=False)
    # the fresh pass, the prefill, then three generation steps (the last token needs no pass)
    assert [a.shape[0] for a in after] == [prompt.shape[1], prompt.shape[1], 1, 1]
    for pre, post in zip(before, after, strict=True):
        torch.testing.assert_close(post[-1], pre[-1] + added, atol=1e-6, rtol=0)
        torch.testing.assert_close(post[:-1], pre[:-1], atol=0, rtol=0)


def test_it_sweeps_fast_as_it_sweeps_slowly(model, pairs) -> None:
    diffs = collect_differences(model, pairs, "head", keep_sides=True, progress=False)
    grid = METHODS["iti-released"].grid(diffs, (256, 1024))  # 2 and 8 of the tiny model's 8 heads
    assert list(grid) == [2, 8]
    dev = make_examples(9, seed=4)
    fast = sweep(model, dev, grid, [5.0, 15.0], progress=False)
    slow = sweep(model, dev, grid, [5.0, 15.0], fast=False, progress=False)
    for a, b in zip(fast.results, slow.results, strict=True):
        torch.testing.assert_close(a.answer_logprob, b.answer_logprob, atol=1e-5, rtol=1e-5)
        assert torch.equal(a.correct, b.correct)


# ---- the registry entry, the sides, bad input ---------------------------------------------------


def test_the_registry_grid_holds_itis_scaled_default(model, pairs) -> None:
    method = METHODS["iti-released"]
    assert method.needs_sides and method.positions == "each_last" and method.unit == "head"
    settings, strengths = method.grid_spec("run", 32)
    assert ITI_HEADS in settings and ITI_ALPHA in strengths
    assert iti_default_k(1024) == 48 and iti_default_k(270) == 13 and iti_default_k(8) == 1
    for n_heads in (8, 270, 576, 1024, 5120):  # tiny, SmolLM2-135M, -360M, LLaMA-7B, -70B
        assert iti_default_k(n_heads) in [scaled_k(k, n_heads) for k in settings]
    diffs = collect_differences(model, pairs, "head", keep_sides=True, progress=False)
    grid = method.grid(diffs, settings)  # every setting scales to 1 of the tiny model's 8 heads
    assert list(grid) == [1]
    nested = method.grid(diffs, (256, 512))
    alone = iti_released_mask(diffs, 2)
    assert torch.equal(nested[2].layers, alone.layers) and torch.equal(
        nested[2].indices, alone.indices
    )
    torch.testing.assert_close(nested[2].vectors, alone.vectors, atol=0, rtol=0)


def test_sides_are_each_texts_activations_and_survive_subsets(model, pairs) -> None:
    diffs = collect_differences(
        model, pairs[:6], "head", keep_sides=True, batch_size=4, progress=False
    )
    assert diffs.pairs is None
    for i, e in enumerate(pairs[:6]):
        want_pos = ref.last_token_acts(model, ref.text_ids(model, e.prompt, e.answer), "head")
        want_neg = ref.last_token_acts(model, ref.text_ids(model, e.prompt, e.wrong[0]), "head")
        torch.testing.assert_close(diffs.positive[i], want_pos, atol=ATOL, rtol=0)
        torch.testing.assert_close(diffs.negative[i], want_neg, atol=ATOL, rtol=0)
    torch.testing.assert_close(
        diffs.mean, (diffs.positive - diffs.negative).mean(0), atol=1e-6, rtol=0
    )
    part = diffs.subset([4, 1])
    assert part.n_pairs == 2 and part.pairs is None
    assert torch.equal(part.positive, diffs.positive[[4, 1]])
    assert torch.equal(part.negative, diffs.negative[[4, 1]])
    torch.testing.assert_close(part.mean, (diffs.positive - diffs.negative)[[4, 1]].mean(0))
    both = collect_differences(
        model, pairs[:6], "head", keep_sides=True, keep_pairs=True, progress=False
    )
    sub = both.subset([0, 2])
    assert torch.equal(sub.pairs, both.pairs[[0, 2]]) and torch.equal(
        sub.positive, both.positive[[0, 2]]
    )
    plain = collect_differences(model, pairs[:6], "head", keep_pairs=True, progress=False)
    assert plain.positive is None and plain.subset([0]).positive is None


def test_bad_input_fails_clearly(model, pairs) -> None:
    plain = collect_differences(model, pairs, "head", progress=False)
    with pytest.raises(ValueError, match="keep_sides=True"):
        iti_released_mask(plain, 2)
    with pytest.raises(ValueError, match="keep_sides=True"):
        METHODS["iti-released"].grid(plain, (48,))
    diffs = collect_differences(model, pairs, "head", keep_sides=True, progress=False)
    for k in (0, 9, -1):
        with pytest.raises(ValueError, match="k must be an int between 1 and 8"):
            iti_released_mask(diffs, k)
    resid = collect_differences(model, pairs, "resid", keep_sides=True, progress=False)
    with pytest.raises(ValueError, match="site 'head'"):
        iti_released_mask(resid, 1)
    one = collect_differences(model, pairs[:1], "head", keep_sides=True, progress=False)
    with pytest.raises(ValueError, match="collect more pairs"):
        iti_released_mask(one, 1)
    with pytest.raises(ValueError, match="val_fraction"):
        iti_released_mask(diffs, 1, val_fraction=1.0)
