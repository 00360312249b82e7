"""Sites: alias resolution, error messages, hook names and unit shapes against the real model."""

from __future__ import annotations

import pytest
import torch

from steerlens.sites import (
    ALIASES,
    SITES,
    check_site,
    hook_name,
    read_hook_name,
    resolve_site,
    site_reader,
    unit_shape,
)

CANONICAL = tuple(SITES)
# The tiny model is Llama-shaped: no norm after the MLP, so no `mlp_pre_norm` hook (that site is
# tested on a Gemma-2-shaped model in test_pre_norm.py).
ON_TINY = tuple(s for s in CANONICAL if s != "mlp_pre_norm")


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("attention", "head"),
        ("attn", "head"),
        ("heads", "head"),
        ("neurons", "neuron"),
        ("ffn", "mlp_out"),
        ("hidden", "mlp_out"),
        ("mlp", "mlp_out"),
        ("residual", "resid"),
        ("resid_post", "resid"),
    ]
    + [(s, s) for s in CANONICAL],
)
def test_resolve_site_aliases(alias: str, canonical: str) -> None:
    """Paper aliases and canonical names resolve to the canonical site."""
    assert resolve_site(alias) == canonical


def test_every_alias_points_to_a_site() -> None:
    """The alias table never names a site that does not exist."""
    assert set(ALIASES.values()) <= set(SITES)


@pytest.mark.parametrize("bad", ["heda", "MLP", "", "hook_z"])
def test_unknown_site_lists_valid_ones(bad: str) -> None:
    """An unknown site raises ValueError naming every valid site and alias."""
    with pytest.raises(ValueError, match="valid sites") as err:
        resolve_site(bad)
    for valid in [*SITES, *ALIASES]:
        assert valid in str(err.value)


def test_non_string_site_is_a_type_error() -> None:
    """A non-string site raises TypeError rather than a confusing lookup error."""
    with pytest.raises(TypeError):
        resolve_site(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("site", [*ON_TINY, "attention", "ffn"])
def test_hook_names_exist(model, site: str) -> None:
    """Every layer's hook names (steered and read) are real HookPoints of the model."""
    check_site(model, site)
    for layer in range(model.cfg.n_layers):
        for name in (hook_name(site, layer), read_hook_name(site, layer)):
            assert name in model.hook_dict
            assert name.startswith(f"blocks.{layer}.")


def test_mlp_pre_norm_hook_is_absent_without_a_post_mlp_norm(model) -> None:
    """A model without a norm after the MLP has no `mlp_pre_norm` hook; `check_site` says so."""
    assert not hasattr(model.blocks[0], "ln2_post")
    assert hook_name("mlp_pre_norm", 0) not in model.hook_dict
    with pytest.raises(ValueError, match="no norm after the MLP"):
        check_site(model, "mlp_pre_norm")


@pytest.mark.parametrize("site", ON_TINY)
def test_unit_shape_matches_activations(model, site: str) -> None:
    """`unit_shape` is the per-token shape of the site's value (read at `read_hook_name`,
    through `site_reader`) and of the activation at the hook it is steered at."""
    tokens = torch.tensor([[0, 5, 9, 11, 3], [0, 7, 7, 2, 1]])
    layers = range(model.cfg.n_layers)
    names = [hook_name(site, layer) for layer in layers]
    reads = [read_hook_name(site, layer) for layer in layers]
    _, cache = model.run_with_cache(tokens, names_filter=[*names, *reads])
    for layer in layers:
        value = site_reader(model, site, layer)(cache[reads[layer]])
        assert tuple(value.shape) == (2, 5, *unit_shape(site, model.cfg))
        assert tuple(cache[names[layer]].shape) == (2, 5, *unit_shape(site, model.cfg))


def test_unit_shapes_follow_config(model) -> None:
    """Shapes come from the config: heads use query heads (not KV heads) with GQA."""
    cfg = model.cfg
    assert cfg.n_key_value_heads is not None and cfg.n_key_value_heads < cfg.n_heads
    assert unit_shape("head", cfg) == (cfg.n_heads, cfg.d_head)
    assert unit_shape("neuron", cfg) == (cfg.d_mlp,)
    assert unit_shape("ffn", cfg) == unit_shape("resid", cfg) == (cfg.d_model,)
