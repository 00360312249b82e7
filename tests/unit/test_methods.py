"""The method registry: every registered method builds masks at its site that steer the positions
it declares, its grids fit the model, and every driver offers it without further edits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from steerlens import METHODS, austeer_mask, cli, collect_differences, steer
from steerlens._backend import BRIDGE
from steerlens.experiments import ReproduceConfig, RunConfig
from steerlens.experiments.cells import ALL_METHODS, AUSTEER_TABLE3, released_config
from steerlens.experiments.main_job import CONTROLS
from steerlens.mean_difference import mean_difference_mask
from steerlens.methods import BASELINE, METHOD_NAMES, get_method, published
from steerlens.select import austeer_scores

SITES = ("head", "neuron", "mlp_out", "resid", "gate")
pytestmark = pytest.mark.filterwarnings("ignore:.*flips the sign")


@pytest.fixture
def diffs(model, examples):
    """Differences by `Method.differences_key`: every site, in every pair format."""
    out = {}
    for fmt in ("template", "sadi", "austeer"):
        got = collect_differences(
            model, examples, site=list(SITES), keep_sides=True, pair_format=fmt, progress=False
        )
        out.update({site if fmt == "template" else f"{site}@{fmt}": d for site, d in got.items()})
    return out


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_builds_masks_that_steer_the_positions_it_declares(name, model, diffs) -> None:
    method = METHODS[name]
    settings, strengths = method.grid_spec("run", model.cfg.n_layers)
    grid = method.grid(diffs[method.differences_key], settings)
    assert grid and len(grid) <= len(settings)
    assert all(m.info["pair_format"] == method.pair_format for m in grid.values())
    mask = grid[list(grid)[-1]]
    assert mask.site == method.site and mask.positions == method.positions
    assert mask.unit == method.unit
    tokens = model.to_tokens("the quick brown fox jumps")
    clean = model(tokens)
    with steer(model, mask, max(strengths) * 4):
        steered = model(tokens)
    changed = (steered - clean).abs().amax(-1)[0] > 1e-6
    assert bool(changed[-1]), f"{name} does not change the last position"
    # "from": the prompt's end on, "each_last": each pass's last position; here the last token
    if method.positions in ("last", "from", "each_last"):
        assert not bool(changed[:-1].any()), f"{name} changes earlier positions"
    else:
        assert bool(changed[:-1].any()), f"{name} leaves earlier positions alone"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_is_offered_by_every_driver(name) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["run", "--methods", name]).methods == [name]
    assert parser.parse_args(["reproduce", "--methods", name]).methods == [name]
    own = not METHODS[name].released
    assert (name in RunConfig().methods) == (own and not METHODS[name].control)
    assert (name in CONTROLS) == (own and METHODS[name].control)  # `run --controls` adds them
    released = released_config().methods
    if METHODS[name].released:  # `reproduce --released` runs it, or it is an AUSteer ablation
        assert name in released or name in AUSTEER_TABLE3
        assert name not in ReproduceConfig().methods
    else:
        assert name in ReproduceConfig().methods and name not in released
    assert name in ALL_METHODS and get_method(name) is METHODS[name]


def test_run_controls_adds_the_ablation_controls() -> None:
    from steerlens.cli.run import run_config

    parser = cli.build_parser()
    assert set(CONTROLS) == {"sadi-head-fixed-vector", "sadi-head-random", "austeer-ffn-mean-diff"}
    plain = run_config(parser.parse_args(["run"])).methods
    assert plain == RunConfig().methods and not set(plain) & set(CONTROLS)
    assert run_config(parser.parse_args(["run", "--controls"])).methods == plain + CONTROLS
    chosen = ["run", "--controls", "--methods", "sadi-head", "sadi-head-random"]
    assert run_config(parser.parse_args(chosen)).methods == (
        "sadi-head",
        "sadi-head-random",
        "sadi-head-fixed-vector",
        "austeer-ffn-mean-diff",
    )


def test_k_is_clamped_to_the_units_a_model_offers(model, diffs) -> None:
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    grid = METHODS["sadi-head"].grid(diffs["head"], (1, n_heads, 10 * n_heads))
    assert list(grid) == [1, n_heads] and grid[n_heads].k == n_heads
    caa = METHODS["caa"]
    assert caa.default_settings(30) == (10, 15, 20)
    assert caa.default_settings(2) == (1,)  # a 2-layer model has one layer at 1/3..2/3
    with pytest.raises(ValueError, match="reads site 'resid'"):
        caa.grid(diffs["head"], (1,))


def test_the_registry_is_read_only_and_names_unknown_methods() -> None:
    with pytest.raises(TypeError):
        METHODS["new"] = METHODS["caa"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["caa"].site = "head"  # type: ignore[misc]
    with pytest.raises(ValueError, match="valid: \\['sadi-head'"):
        get_method("sadi")
    assert published(BASELINE, "copa") is not None
    with pytest.raises(ValueError, match="grid must be"):
        METHODS["caa"].grid_spec("paper", 30)


def test_mean_difference_mask_ranks_by_mean_and_steers_like_austeer(diffs) -> None:
    d = diffs["mlp_out"]
    mask = mean_difference_mask(d, 5)
    flat = d.mean.flatten(1).abs()
    expected = torch.topk(flat.flatten(), 5).indices
    assert sorted((mask.layers * flat.shape[1] + mask.indices).tolist()) == sorted(
        expected.tolist()
    )
    _, beta = austeer_scores(d)
    assert torch.equal(mask.weights, beta[mask.layers, mask.indices].float())
    au = austeer_mask(d, 5)
    assert (mask.positions, mask.operation, mask.unit) == (au.positions, au.operation, au.unit)
    assert mask.info["n_pairs"] == d.n_pairs and mask.method == "mean-difference"


def test_caa_as_released_adds_from_the_end_of_the_prompt_on(model, diffs) -> None:
    """`positions="from"`: the last column of a fresh pass and every answer column after
    `prompt_end`."""
    from steerlens import prompt_end
    from steerlens.baselines import caa_mask

    mask = caa_mask(diffs["resid"], 0, positions="from")
    name = "blocks.0.hook_resid_post"
    vector = mask.vectors[:, 0]

    def resid(tokens, **kwargs):
        _, cache = model.run_with_cache(tokens, names_filter=name, **kwargs)
        return cache[name][0]

    tokens = model.to_tokens("the quick brown fox jumps")
    clean = resid(tokens)
    with steer(model, mask, 2.0):
        last_only = resid(tokens)
        with prompt_end(3):
            tail = resid(tokens)
    torch.testing.assert_close(last_only[-1], clean[-1] + 2.0 * vector)
    torch.testing.assert_close(last_only[:-1], clean[:-1])
    torch.testing.assert_close(tail[3:], clean[3:] + 2.0 * vector)
    torch.testing.assert_close(tail[:3], clean[:3])


@pytest.mark.skipif(BRIDGE, reason="TransformerLens 4 has no TransformerLens KV cache")
def test_caa_as_released_adds_at_every_position_of_a_cached_step(model, diffs) -> None:
    """`positions="from"`: every position of a pass that extends a KV cache (a generation step)."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    from steerlens.baselines import caa_mask

    mask = caa_mask(diffs["resid"], 0, positions="from")
    name = "blocks.0.hook_resid_post"
    vector = mask.vectors[:, 0]
    tokens = model.to_tokens("the quick brown fox jumps")
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)
    model(tokens, past_kv_cache=cache)
    step = model.to_tokens(" over the", prepend_bos=False)
    with steer(model, mask, 2.0):  # a generation step: every new position is after the prompt
        _, cached = model.run_with_cache(step, names_filter=name, past_kv_cache=cache)
    plain = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)
    model(tokens, past_kv_cache=plain)
    _, unsteered = model.run_with_cache(step, names_filter=name, past_kv_cache=plain)
    torch.testing.assert_close(cached[name][0], unsteered[name][0] + 2.0 * vector)


def test_released_caa_sweeps_fast_as_it_sweeps_slowly(model, diffs, examples) -> None:
    from steerlens import sweep

    grid = METHODS["caa-released"].grid(diffs["resid"], (0, 1))
    fast = sweep(model, examples, grid, [-1.0, 2.0], progress=False)
    slow = sweep(model, examples, grid, [-1.0, 2.0], fast=False, progress=False)
    for a, b in zip(fast.results, slow.results, strict=True):
        torch.testing.assert_close(a.answer_logprob, b.answer_logprob, atol=1e-5, rtol=1e-5)
        assert torch.equal(a.correct, b.correct)
