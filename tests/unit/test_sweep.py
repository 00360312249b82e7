"""Sweeps: the shared-computation fast paths equal evaluating every cell from scratch; best-cell
tie-break; argument errors; no hooks left behind, also when a sweep fails midway."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from steerlens import (
    SweepResult,
    austeer_mask,
    caa_mask,
    collect_differences,
    evaluate,
    fixed_vector_mask,
    iti_mask,
    random_mask,
    sadi_mask,
    steer,
    sweep,
)
from steerlens.evaluate import EvalResult
from tests.checking import OFF_TYPE, needs_kv_cache
from tests.reference import make_examples

sweep_mod = importlib.import_module("steerlens.sweep")  # `steerlens.sweep` is the function
paths_mod = importlib.import_module("steerlens._sweep_paths")
steer_mod = importlib.import_module("steerlens.steer")

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign")


def no_hooks_left(model) -> bool:
    return all(not hp.fwd_hooks and not hp._forward_hooks for hp in model.hook_dict.values())


@pytest.fixture
def dev():
    """Dev items with single-token options (the fast paths need them) and mixed prompt lengths."""
    return make_examples(9, seed=4)


@pytest.fixture
def grids(model, examples):
    """(masks, ks, strengths, expected fast path) per method."""
    d = {
        s: collect_differences(model, examples, s, progress=False)
        for s in ("head", "mlp_out", "resid")
    }
    sadi = sadi_mask(d["head"], 4)
    aus = austeer_mask(d["mlp_out"], 12)
    return {
        "sadi": (sadi, [1, 2, 4], [0.5, 3.0, -0.5], "prefix"),
        "sadi_neuron": (
            sadi_mask(collect_differences(model, examples, "neuron", progress=False), 5),
            [1, 5],
            [2.0, 8.0],
            "prefix",
        ),
        "austeer": (aus, [2, 6, 12], [1.0, 4.0], "layer"),
        "fixed_vector": (
            {k: fixed_vector_mask(sadi.top(k), d["head"]) for k in (1, 4)},
            None,
            [2.0, -3.0],
            "prefix",
        ),
        "random_last": ({s: random_mask(sadi, seed=s) for s in (0, 1)}, None, [3.0], "prefix"),
        "random_all": ({s: random_mask(aus, seed=s) for s in (0, 1)}, None, [3.0], "layer"),
        "caa": (
            {layer: caa_mask(d["resid"], layer) for layer in (0, 1)},
            None,
            [1.0, -2.0],
            "layer",
        ),
        "caa_upper": ({1: caa_mask(d["resid"], 1)}, None, [1.5], "layer"),
        "iti": (iti_mask(d["head"], 4), [1, 4], [2.0, 5.0], "layer"),
    }


def _spy(monkeypatch) -> list[str]:
    calls: list[str] = []
    for name, label in (("_sweep_prefix_cached", "prefix"), ("_sweep_from_layer", "layer")):
        original = getattr(paths_mod, name)

        def wrapped(*args, _original=original, _label=label, **kwargs):
            calls.append(_label)
            return _original(*args, **kwargs)

        monkeypatch.setattr(paths_mod, name, wrapped)
    return calls


def _assert_same(a: SweepResult, b: SweepResult) -> None:
    torch.testing.assert_close(
        a.baseline.answer_logprob, b.baseline.answer_logprob, atol=1e-4, rtol=0
    )
    assert len(a.results) == len(b.results)
    for ra, rb in zip(a.results, b.results, strict=True):
        torch.testing.assert_close(ra.answer_logprob, rb.answer_logprob, atol=1e-4, rtol=0)
        assert torch.equal(ra.correct, rb.correct)
        assert torch.equal(ra.correct_restricted, rb.correct_restricted)
    assert np.array_equal(a.accuracy, b.accuracy) and np.array_equal(a.restricted, b.restricted)


@needs_kv_cache
@pytest.mark.parametrize(
    "method",
    [
        "sadi",
        "sadi_neuron",
        "austeer",
        "fixed_vector",
        "random_last",
        "random_all",
        "caa",
        "caa_upper",
        "iti",
    ],
)
def test_fast_paths_equal_from_scratch(model, dev, grids, monkeypatch, method: str) -> None:
    """The prefix-cached ("last") and from-layer ("all") paths give the per-item answer
    log-probs of evaluating every cell from scratch."""
    masks, ks, strengths, path = grids[method]
    calls = _spy(monkeypatch)
    fast = sweep(model, dev, masks, strengths, ks=ks, batch_size=4, progress=False)
    assert calls == [path]  # the fast path under test really ran
    slow = sweep(model, dev, masks, strengths, ks=ks, batch_size=4, fast=False, progress=False)
    assert calls == [path]
    _assert_same(fast, slow)
    steered = [r.answer_logprob for r in slow.results]
    assert any(not torch.allclose(s, slow.baseline.answer_logprob, atol=1e-3) for s in steered)
    assert no_hooks_left(model)


@pytest.mark.parametrize("method", ["sadi", "austeer", "caa", "fixed_vector"])
@pytest.mark.parametrize("fast", [True, False])
def test_strength_zero_cell_equals_baseline(model, dev, grids, method: str, fast: bool) -> None:
    """A strength-0 cell reproduces the unsteered baseline exactly, on every path (on a GPU to
    float rounding: settings packed into one pass run kernels for another batch size)."""
    masks, ks, _, _ = grids[method]
    res = sweep(model, dev, masks, [0.0], ks=ks, fast=fast, progress=False)
    exact = torch.device(model.cfg.device).type == "cpu"
    for cell in res.results:
        if exact:
            assert torch.equal(cell.answer_logprob, res.baseline.answer_logprob)
        else:
            torch.testing.assert_close(
                cell.answer_logprob, res.baseline.answer_logprob, atol=1e-5, rtol=0
            )
        assert torch.equal(cell.correct, res.baseline.correct)


def test_slow_path_equals_steered_evaluate(model, dev, grids) -> None:
    """fast=False cells are exactly `with steer(mask.top(k), a): evaluate(...)`; the baseline is
    the unsteered evaluation; the grid is row-major over (k, strength)."""
    mask, ks, strengths, _ = grids["sadi"]
    res = sweep(model, dev, mask, strengths, ks=ks, fast=False, progress=False)
    assert res.settings == ks and res.strengths == strengths and res.method == "sadi"
    assert res.accuracy.shape == (len(ks), len(strengths))
    plain = evaluate(model, dev, progress=False)
    assert torch.equal(res.baseline.answer_logprob, plain.answer_logprob)
    for i, k in enumerate(ks):
        assert res.masks[k].k == k
        for j, a in enumerate(strengths):
            with steer(model, mask.top(k), a):
                direct = evaluate(model, dev, progress=False)
            cell = res.results[i * len(strengths) + j]
            assert torch.equal(cell.answer_logprob, direct.answer_logprob)
            assert (
                res.accuracy[i, j] == direct.accuracy and res.restricted[i, j] == direct.restricted
            )
    rows = res.rows()
    assert len(rows) == len(ks) * len(strengths) and rows[1]["strength"] == strengths[1]


def test_multi_token_options_fall_back_to_from_scratch(
    model, multi_examples, grids, monkeypatch
) -> None:
    """With multi-token options no fast path runs, and fast=True equals fast=False."""
    mask, ks, strengths, _ = grids["sadi"]
    calls = _spy(monkeypatch)
    a = sweep(model, multi_examples, mask, strengths[:2], ks=ks[:2], progress=False)
    b = sweep(model, multi_examples, mask, strengths[:2], ks=ks[:2], fast=False, progress=False)
    assert calls == []
    _assert_same(a, b)


def test_mixed_positions_fall_back(model, dev, grids, monkeypatch) -> None:
    """A grid mixing 'last' and 'all' masks is evaluated from scratch (and still correctly)."""
    sadi, aus = grids["sadi"][0], grids["austeer"][0]
    calls = _spy(monkeypatch)
    a = sweep(model, dev, {"sadi": sadi.top(2), "austeer": aus.top(3)}, [2.0], progress=False)
    assert calls == []
    b = sweep(
        model, dev, {"sadi": sadi.top(2), "austeer": aus.top(3)}, [2.0], fast=False, progress=False
    )
    _assert_same(a, b)


# ---- best cell -----------------------------------------------------------------------------------


def _result(acc: list[list[float]], restricted: list[list[float]] | None = None, metric="accuracy"):
    a = np.array(acc)
    r = np.array(restricted) if restricted is not None else np.zeros_like(a)
    dummy = EvalResult(
        torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool), torch.zeros(1)
    )
    settings = [f"s{i}" for i in range(a.shape[0])]
    return SweepResult(settings, [0.5 * (j + 1) for j in range(a.shape[1])], metric, a, r, dummy)


def test_best_cell_tie_break_picks_first() -> None:
    """Ties go to the earlier setting, then the earlier strength, in the order given."""
    assert _result([[0.5, 0.7], [0.7, 0.7]]).best == ("s0", 1.0, 0.7)
    assert _result([[0.1, 0.2], [0.9, 0.9], [0.9, 0.3]]).best == ("s1", 0.5, 0.9)
    assert _result([[0.4, 0.4, 0.4]]).best == ("s0", 0.5, 0.4)


def test_best_uses_the_chosen_metric() -> None:
    """metric='restricted' picks the best cell of the restricted grid."""
    res = _result([[0.9, 0.1]], [[0.2, 0.8]], metric="restricted")
    assert res.best == ("s0", 1.0, 0.8)
    assert np.array_equal(res.scores, res.restricted)


def test_best_mask_of_real_sweep(model, dev, grids) -> None:
    """best_mask is the mask of the best setting, and its score is the grid maximum."""
    mask, ks, strengths, _ = grids["sadi"]
    res = sweep(model, dev, mask, strengths, ks=ks, metric="restricted", progress=False)
    setting, strength, score = res.best
    assert score == res.restricted.max() and strength in strengths
    assert res.best_mask.k == setting


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(metric="f1"), OFF_TYPE, "metric"),
        (dict(strengths=[]), ValueError, "strength"),
        (dict(ks=None), ValueError, "ks"),
        (dict(ks=[]), ValueError, "ks"),
        (dict(ks=[100]), ValueError, "top"),
        (dict(ks=[0]), ValueError, "top"),
        (dict(masks="mapping", ks=[1]), ValueError, "ks"),
        (dict(masks={}, ks=None), ValueError, "no masks"),
    ],
)
def test_bad_arguments(model, dev, grids, kwargs, error, match) -> None:
    """Bad metrics, empty grids and ks with a mapping raise before any evaluation."""
    mask = grids["sadi"][0]
    args = dict(masks=mask, strengths=[1.0], ks=[1])
    args.update(kwargs)
    if args["masks"] == "mapping":
        args["masks"] = {"a": mask}
    with pytest.raises(error, match=match):
        sweep(model, dev, args.pop("masks"), args.pop("strengths"), progress=False, **args)
    assert no_hooks_left(model)


def test_numpy_grids_are_accepted(model, dev, grids) -> None:
    """Strength and k grids given as numpy arrays sweep like the equivalent lists."""
    mask = grids["sadi"][0]
    res = sweep(model, dev, mask, np.linspace(0.5, 2.0, 3), ks=np.array([1, 2]), progress=False)
    ref = sweep(model, dev, mask, [0.5, 1.25, 2.0], ks=[1, 2], progress=False)
    assert res.strengths == ref.strengths and np.array_equal(res.accuracy, ref.accuracy)


def test_sign_flip_warns_once(model, dev, grids) -> None:
    """A grid whose cells flip signs warns once (not once per cell)."""
    mask = grids["sadi"][0]
    with pytest.warns(UserWarning, match="flip the sign") as record:
        sweep(model, dev, mask, [-3.0, -4.0], ks=[1, 2], progress=False)
    assert len([w for w in record if "flip" in str(w.message)]) == 1


# ---- hooks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sadi", "austeer", "caa"])
@pytest.mark.parametrize("fast", [True, False])
def test_no_hooks_after_sweep(model, dev, grids, method: str, fast: bool) -> None:
    """A finished sweep leaves no hooks and the model's logits unchanged."""
    tokens = torch.tensor([[0, 70, 71, 72]])
    clean = model(tokens)
    masks, ks, strengths, _ = grids[method]
    sweep(model, dev, masks, strengths, ks=ks, fast=fast, progress=False)
    assert no_hooks_left(model)
    assert torch.equal(model(tokens), clean)


def test_no_hooks_when_evaluate_fails_midway(model, dev, grids, monkeypatch) -> None:
    """An exception from evaluate inside a steered cell propagates and leaves no hooks."""
    real, calls = paths_mod.evaluate, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            assert not no_hooks_left(model)  # we are inside a steer block
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(paths_mod, "evaluate", flaky)
    mask, ks, strengths, _ = grids["sadi"]
    with pytest.raises(RuntimeError, match="injected"):
        sweep(model, dev, mask, strengths, ks=ks, fast=False, progress=False)
    assert len(calls) == 3 and no_hooks_left(model)


@pytest.mark.parametrize("method", ["sadi", "austeer"])
def test_no_hooks_when_a_hook_raises_in_fast_path(
    model, dev, grids, monkeypatch, method: str
) -> None:
    """A steering hook that raises mid-forward in a fast path leaves no hooks behind."""

    def broken(delta):
        def fn(act):
            raise RuntimeError("hook failed")

        return fn

    monkeypatch.setattr(steer_mod, "_scale_hook", broken)
    monkeypatch.setattr(
        steer_mod, "_packed_hook", lambda slot, n, rows: lambda act, hook: broken(0)(act)
    )
    masks, ks, strengths, _ = grids[method]
    for per_pass in (None, 1, 3):
        with pytest.raises(RuntimeError, match="hook failed"):
            sweep(model, dev, masks, strengths, ks=ks, settings_per_pass=per_pass, progress=False)
        assert no_hooks_left(model)


@needs_kv_cache
@pytest.mark.parametrize("method", ["sadi", "austeer"])
def test_no_hooks_when_scoring_fails_in_fast_path(
    model, dev, grids, monkeypatch, method: str
) -> None:
    """An exception after a steered pass (while scoring) also leaves no hooks."""
    real, calls = paths_mod.score_first_tokens, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("scoring failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(paths_mod, "score_first_tokens", flaky)
    masks, ks, strengths, _ = grids[method]
    with pytest.raises(RuntimeError, match="scoring failed"):
        sweep(model, dev, masks, strengths, ks=ks, progress=False)
    assert no_hooks_left(model)
