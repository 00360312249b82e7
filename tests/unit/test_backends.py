"""The two TransformerLens backends (3.x `HookedTransformer`, 4.x `TransformerBridge`): what
steerlens relies on is asserted, not assumed. This module and `test_architectures.py` run on both
(`scripts/check.sh` runs them a second time in a TransformerLens 4 environment)."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import torch

import steerlens
from steerlens import _backend, collect_activations, collect_differences
from steerlens.sites import hook_name
from tests.families import build_family
from tests.reference import make_examples

SITES = ("head", "neuron", "mlp_out", "resid")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    where = tmp_path_factory.mktemp("backends")
    return {
        f: steerlens.load_model(str(build_family(f, where)), device="cpu")
        for f in ("llama", "qwen2")
    }


def test_the_backend_follows_the_installed_release(models) -> None:
    major = int(version("transformer-lens").split(".")[0])
    assert ("TransformerBridge" if major >= 4 else "HookedTransformer") == _backend.BACKEND
    assert (major < 4) == _backend.KV_CACHE
    assert isinstance(models["llama"], _backend.HookedTransformer)
    assert _backend.is_bridge(models["llama"]) == (major >= 4)


def test_hook_z_is_per_head_inside_hooks_and_in_the_cache(models) -> None:
    model = models["llama"]
    tokens = model.to_tokens(["abc:", "de:"], padding_side="left")
    shapes = []

    def hook(act, hook):
        shapes.append(tuple(act.shape))

    with model.hooks(fwd_hooks=[(hook_name("head", 0), hook)]):
        _, cache = model.run_with_cache(tokens, names_filter=[hook_name("head", 0)])
    per_head = (*tokens.shape, model.cfg.n_heads, model.cfg.d_head)
    assert shapes == [per_head] and tuple(cache[hook_name("head", 0)].shape) == per_head


def test_every_site_hook_fires_once_per_forward(models) -> None:
    model = models["llama"]
    names = [hook_name(s, layer) for s in SITES for layer in range(model.cfg.n_layers)]
    fired: dict[str, int] = {}

    def count(act, hook, name):
        fired[name] = fired.get(name, 0) + 1

    hooks = [(n, lambda act, hook, n=n: count(act, hook, n)) for n in names]
    with model.hooks(fwd_hooks=hooks):
        model(model.to_tokens("hello:"))
    assert fired == dict.fromkeys(names, 1)


@pytest.mark.parametrize(("family", "bos"), [("llama", True), ("qwen2", False)])
def test_bos_is_prepended_as_the_config_says_also_by_generate(models, family, bos) -> None:
    model = models[family]
    assert model.cfg.default_prepend_bos == bos
    bos_id = model.tokenizer.bos_token_id
    assert (model.to_tokens("abc")[0, 0].item() == bos_id) == bos
    out = model.generate(
        "abc", max_new_tokens=2, do_sample=False, verbose=False, return_type="tokens"
    )
    assert (out[0, 0].item() == bos_id) == bos
    assert out.shape[1] == model.to_tokens("abc").shape[1] + 2


def test_left_padding_without_a_mask_and_steerlens_batches(models) -> None:
    """3.x infers the attention mask of a left-padded tensor; 4.x does not (the short row's
    logits change). steerlens always passes the mask, so a padded batch equals one item at a
    time on both."""
    model = models["llama"]
    texts = ["a much longer prompt:", "ab:"]
    padded = model.to_tokens(texts, padding_side="left")
    alone = model(model.to_tokens(texts[1]))[0, -1]
    unmasked = model(padded)[1, -1]
    assert torch.allclose(unmasked, alone, atol=1e-5) == _backend.KV_CACHE
    prompts = [e.prompt for e in make_examples(6)]  # 3 to 15 tokens
    for site in SITES:
        batched = collect_activations(model, prompts, site, batch_size=6, progress=False)
        single = collect_activations(model, prompts, site, batch_size=1, progress=False)
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_a_hook_is_told_the_bridges_own_name_for_an_alias(models) -> None:
    """4.x passes hooks on `blocks.L.hook_resid_post` its own name (`blocks.L.hook_out`) as
    `hook.name`, so steerlens never identifies a hook by `hook.name`."""
    model = models["llama"]
    seen: list[str] = []
    with model.hooks(
        fwd_hooks=[("blocks.0.hook_resid_post", lambda a, hook: seen.append(hook.name))]
    ):
        model(model.to_tokens("abc"))
    assert seen == ["blocks.0.hook_out" if _backend.BRIDGE else "blocks.0.hook_resid_post"]


@pytest.mark.skipif(_backend.KV_CACHE, reason="the refusals are for TransformerLens 4")
def test_only_what_needs_transformer_lens_kv_cache_is_refused_on_the_bridge(models) -> None:
    """Evaluation, sweeps and generation run on the bridge (whole texts; their numbers are
    asserted in test_architectures.py); asking for TransformerLens' KV cache is refused."""
    model = models["llama"]
    examples = make_examples(4)
    with pytest.raises(ValueError, match="use_cache"):
        steerlens.generate(model, ["abc"], max_new_tokens=2, use_cache=True)
    with pytest.raises(ValueError, match="share_prompts"):
        collect_differences(model, examples, "head", share_prompts=True, progress=False)
