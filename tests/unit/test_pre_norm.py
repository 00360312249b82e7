"""The `mlp_pre_norm` site: a hook point at the input of the post-MLP norm (Gemma-2's
`post_feedforward_layernorm`, TransformerLens' `ln2_post`), where SADI-HIDDEN and AUSteer-FFN
read and steer; and `check_site`'s errors and warnings."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import steerlens
from steerlens.models import add_pre_norm_hooks
from steerlens.sites import SITES, check_site, hook_name, read_hook_name, site_reader, unit_shape
from tests.tiny import byte_tokenizer

TOKENS = torch.tensor([[0, 5, 9, 11, 3, 40], [0, 7, 7, 2, 1, 90]])
PRE_NORM = "blocks.{}.ln2_post.hook_in"


def tiny_gemma2(seed: int = 0) -> HookedTransformer:
    """A random Gemma-2-shaped model: RMS norms before and after attention and MLP, gated
    GELU-tanh MLP, soft caps, GQA; 2 layers, d_model 16, 2 heads of 8, d_mlp 32. No pre-norm
    hooks (tests add them). Norm weights are made non-trivial, as in `tests.tiny.tiny_model`."""
    tokenizer = byte_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        n_key_value_heads=1,
        d_head=8,
        d_mlp=32,
        d_vocab=len(tokenizer),
        n_ctx=64,
        act_fn="gelu_pytorch_tanh",
        normalization_type="RMS",
        use_normalization_before_and_after=True,
        positional_embedding_type="rotary",
        rotary_dim=8,
        gated_mlp=True,
        final_rms=True,
        attn_scores_soft_cap=50.0,
        output_logits_soft_cap=30.0,
        original_architecture="Gemma2ForCausalLM",
        default_prepend_bos=True,
        model_name="tiny-gemma2",
        seed=seed,
        device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".w"):
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def _gemma_session() -> HookedTransformer:
    return tiny_gemma2()


@pytest.fixture
def bare(_gemma_session) -> HookedTransformer:
    """A private copy of the Gemma-shaped model without pre-norm hooks."""
    return copy.deepcopy(_gemma_session)


@pytest.fixture
def gemma(bare) -> HookedTransformer:
    """A private copy of the Gemma-shaped model with pre-norm hooks."""
    return add_pre_norm_hooks(bare)


def edit(act: torch.Tensor) -> torch.Tensor:
    """A non-uniform edit (a uniform rescaling would be undone by the RMS norm after it)."""
    out = act.clone()
    out[..., 3] = out[..., 3] * 5.0 + 1.0
    out[..., 7] = -out[..., 7]
    return out


def test_hooks_are_added_per_block(bare) -> None:
    """One `hook_in` per block, named in hook_dict and mod_dict, child of `ln2_post`."""
    before = set(bare.hook_dict)
    add_pre_norm_hooks(bare)
    names = {PRE_NORM.format(layer) for layer in range(bare.cfg.n_layers)}
    assert set(bare.hook_dict) - before == names
    for layer in range(bare.cfg.n_layers):
        hp = bare.blocks[layer].ln2_post.hook_in
        assert bare.hook_dict[PRE_NORM.format(layer)] is hp
        assert bare.mod_dict[PRE_NORM.format(layer)] is hp
        assert hp.name == PRE_NORM.format(layer)


def test_hook_in_is_the_mlp_output_before_the_norm(gemma) -> None:
    """`hook_in` = `mlp(ln2(resid_mid))` computed by hand; `hook_mlp_out` = `ln2_post` of it."""
    _, cache = gemma.run_with_cache(
        TOKENS,
        names_filter=lambda n: n.endswith(("hook_resid_mid", "hook_mlp_out", "ln2_post.hook_in")),
    )
    assert len(cache) == 3 * gemma.cfg.n_layers
    with torch.no_grad():
        for layer, block in enumerate(gemma.blocks):
            pre = cache[PRE_NORM.format(layer)]
            by_hand = block.mlp(block.ln2(cache[f"blocks.{layer}.hook_resid_mid"]))
            torch.testing.assert_close(pre, by_hand, atol=1e-5, rtol=0)
            post = type(block.ln2_post).forward(block.ln2_post, pre)
            torch.testing.assert_close(
                cache[f"blocks.{layer}.hook_mlp_out"], post, atol=1e-6, rtol=0
            )
            # the norm changes it: the two sites really differ on this model
            assert not torch.allclose(pre, cache[f"blocks.{layer}.hook_mlp_out"], atol=1e-3)


def test_adding_hooks_changes_neither_logits_nor_parameters(bare) -> None:
    """Logits are bit-identical; state_dict keys and parameter names are unchanged."""
    keys = list(bare.state_dict())
    params = [n for n, _ in bare.named_parameters()]
    with torch.no_grad():
        before = bare(TOKENS)
        add_pre_norm_hooks(bare)
        after = bare(TOKENS)
    assert torch.equal(before, after)
    assert list(bare.state_dict()) == keys
    assert [n for n, _ in bare.named_parameters()] == params
    fresh = tiny_gemma2()  # a state_dict saved with hooks loads into a model without them
    fresh.load_state_dict(bare.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(TOKENS), after)


@pytest.mark.parametrize("layer", [0, 1])
def test_editing_hook_matches_the_same_edit_by_hand(bare, layer: int) -> None:
    """An editing hook at `hook_in` changes the output exactly as editing the MLP module's
    output by hand (a plain torch forward hook on `mlp`, on a model without pre-norm hooks)."""
    by_hand_model = copy.deepcopy(bare)
    gemma = add_pre_norm_hooks(bare)
    with torch.no_grad():
        clean = gemma(TOKENS)
        with gemma.hooks(fwd_hooks=[(PRE_NORM.format(layer), lambda a, hook: edit(a))]):
            steered = gemma(TOKENS)
        after_context = gemma(TOKENS)
        handle = by_hand_model.blocks[layer].mlp.register_forward_hook(lambda m, i, o: edit(o))
        by_hand = by_hand_model(TOKENS)
        handle.remove()
    assert (steered - clean).abs().max() > 1e-3
    torch.testing.assert_close(steered, by_hand, atol=1e-6, rtol=0)
    assert torch.equal(after_context, clean)  # the context removed its hook


def test_run_with_hooks_and_reset_hooks(gemma) -> None:
    """`run_with_hooks` and a permanent-until-reset `add_hook` work; `reset_hooks` removes it."""
    name = PRE_NORM.format(0)
    with torch.no_grad():
        clean = gemma(TOKENS)
        steered = gemma.run_with_hooks(TOKENS, fwd_hooks=[(name, lambda a, hook: edit(a))])
        assert torch.equal(gemma(TOKENS), clean)
        gemma.add_hook(name, lambda a, hook: edit(a))
        assert torch.equal(gemma(TOKENS), steered)
        gemma.reset_hooks()
        assert torch.equal(gemma(TOKENS), clean)
    assert not gemma.hook_dict[name].fwd_hooks


def test_copies_steer_their_own_hook(gemma) -> None:
    """deepcopy and pickle give the copy's norm its own `hook_in` (the wrapped forward holds
    the norm, not a closure over the original)."""
    with torch.no_grad():
        clean = gemma(TOKENS)
        for clone in (copy.deepcopy(gemma), pickle.loads(pickle.dumps(gemma))):
            norm = clone.blocks[0].ln2_post
            assert norm.forward.norm is norm
            with clone.hooks(fwd_hooks=[(PRE_NORM.format(0), lambda a, hook: edit(a))]):
                assert not torch.equal(clone(TOKENS), clean)
                assert torch.equal(gemma(TOKENS), clean)  # the original is untouched
            assert torch.equal(clone(TOKENS), clean)


def test_idempotent(gemma) -> None:
    """A second call adds no hook point and no second wrapper: a hook fires once per pass."""
    hooks, modules = list(gemma.hook_dict), list(gemma.mod_dict)
    keys = list(gemma.state_dict())
    assert add_pre_norm_hooks(gemma) is gemma
    assert list(gemma.hook_dict) == hooks and list(gemma.mod_dict) == modules
    assert list(gemma.state_dict()) == keys
    calls: list[str] = []
    with (
        torch.no_grad(),
        gemma.hooks(
            fwd_hooks=[
                (lambda n: n.endswith("ln2_post.hook_in"), lambda a, hook: calls.append(hook.name))
            ]
        ),
    ):
        gemma(TOKENS)
    assert calls == [PRE_NORM.format(layer) for layer in range(gemma.cfg.n_layers)]


def test_no_op_without_post_mlp_norm(model) -> None:
    """On a Llama-shaped model (no `ln2_post`) nothing is added and the model is unchanged."""
    hooks, modules = list(model.hook_dict), list(model.mod_dict)
    assert add_pre_norm_hooks(model) is model
    assert list(model.hook_dict) == hooks and list(model.mod_dict) == modules
    assert "forward" not in model.blocks[0].ln2.__dict__


def test_load_model_adds_the_hooks() -> None:
    """`load_model` ends with `add_pre_norm_hooks` (checked on the source: loading a real
    Gemma-2 needs the hub)."""
    import inspect

    source = inspect.getsource(steerlens.load_model)
    assert "add_pre_norm_hooks(model)" in source
    assert steerlens.add_pre_norm_hooks is add_pre_norm_hooks
    assert steerlens.check_site is check_site


@pytest.mark.parametrize("site", [*SITES, "ffn", "hidden"])
def test_every_site_exists_on_the_gemma_model(gemma, site: str) -> None:
    """With pre-norm hooks every site's hooks (steered and read) exist at every layer, and the
    value read there has the site's unit shape."""
    if site not in ("mlp_out", "ffn", "hidden"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_site(gemma, site)
    names = [read_hook_name(site, layer) for layer in range(gemma.cfg.n_layers)]
    for layer in range(gemma.cfg.n_layers):
        assert hook_name(site, layer) in gemma.hook_dict
    _, cache = gemma.run_with_cache(TOKENS, names_filter=names)
    for layer, n in enumerate(names):
        value = site_reader(gemma, site, layer)(cache[n])
        assert tuple(value.shape) == (*TOKENS.shape, *unit_shape(site, gemma.cfg))


def test_check_site_without_hooks_says_to_add_them(bare) -> None:
    """A model with post-MLP norms but no pre-norm hooks: the error names the fix."""
    with pytest.raises(ValueError, match=r"steerlens\.add_pre_norm_hooks\(model\)") as err:
        check_site(bare, "mlp_pre_norm")
    assert "blocks.0.ln2_post.hook_in" in str(err.value)
    add_pre_norm_hooks(bare)
    check_site(bare, "mlp_pre_norm")


def test_check_site_on_a_model_without_post_mlp_norm(model) -> None:
    """A Llama-shaped model: `mlp_pre_norm` is refused (hook_mlp_out already is the MLP
    output), even after `add_pre_norm_hooks`; every other site passes without warnings."""
    for _ in range(2):
        with pytest.raises(ValueError, match="no norm after the MLP") as err:
            check_site(model, "mlp_pre_norm")
        assert "hook_mlp_out (site 'mlp_out') is already the MLP output" in str(err.value)
        add_pre_norm_hooks(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for site in [s for s in SITES if s != "mlp_pre_norm"] + ["ffn", "hidden"]:
            check_site(model, site)


def test_check_site_warns_once_for_mlp_out_after_a_norm(gemma) -> None:
    """`mlp_out` (and its aliases) on a model with post-MLP norms warns once per model."""
    with pytest.warns(UserWarning, match="hook_mlp_out comes after ln2_post") as record:
        check_site(gemma, "ffn")
    assert len(record) == 1 and "'mlp_pre_norm'" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_site(gemma, "mlp_out")
        check_site(gemma, "hidden")
    with pytest.warns(UserWarning, match="mlp_pre_norm"):
        check_site(copy.deepcopy(gemma), "mlp_out")  # another model warns again


def test_check_site_names_a_missing_hook(model) -> None:
    """Any other missing hook is named; unknown sites are refused as by `resolve_site`."""
    model.blocks[1].attn.hook_z = torch.nn.Identity()  # no longer a HookPoint
    model.setup()
    with pytest.raises(ValueError, match=r"'blocks\.1\.attn\.hook_z', which is missing"):
        check_site(model, "head")
    with pytest.raises(ValueError, match="valid sites"):
        check_site(model, "heda")


@pytest.mark.filterwarnings("ignore:Site .mlp_out.:UserWarning")
def test_collect_activations_at_the_pre_norm_site(gemma) -> None:
    """`collect_activations(site="mlp_pre_norm")` gives each text's last-token MLP output before
    the norm, `[text, layer, d_model]`, as read by hand one text at a time."""
    texts = ["Review: great film. Answer:", "Bad.", "It is what it is, I suppose"]
    acts = steerlens.collect_activations(
        gemma, texts, site="mlp_pre_norm", batch_size=2, progress=False
    )
    assert tuple(acts.shape) == (3, gemma.cfg.n_layers, gemma.cfg.d_model)
    for i, text in enumerate(texts):
        _, cache = gemma.run_with_cache(
            gemma.to_tokens(text), names_filter=lambda n: n.endswith("ln2_post.hook_in")
        )
        for layer in range(gemma.cfg.n_layers):
            torch.testing.assert_close(
                acts[i, layer], cache[PRE_NORM.format(layer)][0, -1], atol=1e-5, rtol=0
            )
    mlp_out = steerlens.collect_activations(
        gemma, texts, site="mlp_out", batch_size=2, progress=False
    )
    assert not torch.allclose(acts, mlp_out, atol=1e-3)
