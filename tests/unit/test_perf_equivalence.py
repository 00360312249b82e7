"""The speed-ups give the results of the plain computation, and really skip the work they claim to.

- `matmul_layout`: weights re-strided for TransformerLens' matmuls: bitwise-identical outputs,
  original layout restored on every exit.
- paired collection: each pair's shared prompt runs once (KV cache), then each answer alone; equals
  running both full texts, also with multi-token answers of different lengths.
- sweeps: each setting starts at its own lowest steered layer; equals evaluating from scratch, and
  layers below every setting's start run once per batch, not once per setting.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import steerlens.collect as collect_mod
from steerlens import (
    austeer_mask,
    caa_mask,
    collect_activations,
    collect_differences,
    evaluate,
    sadi_mask,
    steer,
    sweep,
)
from steerlens._passes import matmul_layout
from steerlens.collect import contrastive_ids
from steerlens.tokens import prompt_ids
from tests.reference import make_examples
from tests.tiny import byte_tokenizer, tiny_model

SITES = ["head", "neuron", "mlp_out", "resid"]
ATOL = 1e-5

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign")


def _texts(model, examples) -> tuple[list[list[int]], list[list[int]]]:
    """The positive and negative token ids that collect_differences pairs (same wrong answers)."""
    pairs = contrastive_ids(model, examples)
    return [p for p, _ in pairs], [n for _, n in pairs]


class _BlockCalls:
    """Counts (rows x positions) that each block processes, through plain PyTorch module hooks,
    which steerlens does not see as TransformerLens hooks."""

    def __init__(self, model) -> None:
        self.positions = [0] * model.cfg.n_layers
        self.handles = [
            block.register_forward_hook(self._hook(i)) for i, block in enumerate(model.blocks)
        ]

    def _hook(self, layer: int):
        def hook(module, args, out) -> None:
            self.positions[layer] += out.shape[0] * out.shape[1]

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@pytest.fixture
def gpt2_like():
    """A tiny GPT-2-shaped model: LayerNorm, learned absolute positions, plain GELU MLP, MHA."""
    tokenizer = byte_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=32,
        n_heads=4,
        d_head=8,
        d_mlp=64,
        d_vocab=len(tokenizer),
        n_ctx=64,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=True,
        model_name="tiny-gpt2",
        seed=0,
        device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    return model.eval()


# ---- matmul_layout ------------------------------------------------------------------------------


def test_matmul_layout_is_bitwise_identical_and_restores(model) -> None:
    tokens = torch.tensor(
        [prompt_ids(model, "hello_there,_general"), prompt_ids(model, "abcdefghijklmnopqrst")]
    )
    before = {n: (p.stride(), p.detach().clone()) for n, p in model.named_parameters()}
    with torch.inference_mode():
        plain = model(tokens)
        with matmul_layout(model):
            moved = [n for n, p in model.named_parameters() if p.stride() != before[n][0]]
            fast = model(tokens)
            with matmul_layout(model):  # nested: nothing more to do
                nested = model(tokens)
    assert {n.rsplit(".", 1)[-1] for n in moved} >= {
        "W_Q",
        "_W_K",
        "_W_V",
        "W_O",
        "W_in",
        "W_gate",
        "W_out",
        "W_U",
    }
    assert torch.equal(plain, fast) and torch.equal(plain, nested)
    for n, p in model.named_parameters():
        assert p.stride() == before[n][0], n
        assert torch.equal(p, before[n][1]), n
        assert not p.is_inference() and p.requires_grad, n  # still trainable parameters


def test_matmul_layout_gpt2_shaped(gpt2_like) -> None:
    """Also bitwise identical for LayerNorm, absolute positions, a plain MLP, full attention."""
    tokens = torch.tensor([prompt_ids(gpt2_like, "abc def"), prompt_ids(gpt2_like, "xyz uvw")])
    strides = {n: p.stride() for n, p in gpt2_like.named_parameters()}
    with torch.inference_mode():
        plain = gpt2_like(tokens)
        with matmul_layout(gpt2_like):
            fast = gpt2_like(tokens)
    assert torch.equal(plain, fast)
    assert {n: p.stride() for n, p in gpt2_like.named_parameters()} == strides


def test_matmul_layout_restores_after_an_exception(model) -> None:
    strides = {n: p.stride() for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"), matmul_layout(model):
        raise RuntimeError("boom")
    assert {n: p.stride() for n, p in model.named_parameters()} == strides


def test_evaluate_and_sweep_leave_the_layout_alone(model, examples) -> None:
    strides = {n: p.stride() for n, p in model.named_parameters()}
    diffs = collect_differences(model, examples, "head", progress=False)
    evaluate(model, examples, progress=False)
    sweep(model, examples, sadi_mask(diffs, 4), [1.0], ks=[2], progress=False)
    assert {n: p.stride() for n, p in model.named_parameters()} == strides


# ---- paired collection ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["one answer pass", "a pass per side", "whole texts"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_paired_collection_equals_full_texts(
    model, multi_examples, batch_size: int, how: str, monkeypatch
) -> None:
    """Shared prompt + each answer alone (answers of 1-3 tokens, left-padded after the cached
    prompt; both sides in one pass over a copied cache, or one pass per side as for long prompts)
    gives the last-token activations of the two full texts, at every site; so does running the
    whole texts (the default on accelerators)."""
    share_prompts = how != "whole texts"
    if how == "a pass per side":
        monkeypatch.setattr(collect_mod, "ONE_ANSWER_PASS_TOKENS", 0)
    diffs = collect_differences(
        model,
        multi_examples,
        SITES,
        batch_size=batch_size,
        keep_pairs=True,
        share_prompts=share_prompts,
        progress=False,
    )
    pos, neg = _texts(model, multi_examples)
    assert len({len(a) - len(p) for p, a in zip(pos, neg, strict=True)}) > 1  # ragged answers
    full_pos = collect_activations(model, pos, SITES, progress=False)
    full_neg = collect_activations(model, neg, SITES, progress=False)
    for s in SITES:
        torch.testing.assert_close(diffs[s].pairs, full_pos[s] - full_neg[s], atol=ATOL, rtol=0)


def test_paired_collection_gpt2_shaped(gpt2_like, multi_examples) -> None:
    """Learned absolute positions skip the padding between cached prompt and answer too."""
    diffs = collect_differences(gpt2_like, multi_examples, SITES, keep_pairs=True, progress=False)
    pos, neg = _texts(gpt2_like, multi_examples)
    full_pos = collect_activations(gpt2_like, pos, SITES, progress=False)
    full_neg = collect_activations(gpt2_like, neg, SITES, progress=False)
    for s in SITES:
        torch.testing.assert_close(diffs[s].pairs, full_pos[s] - full_neg[s], atol=ATOL, rtol=0)


def test_paired_collection_runs_each_prompt_once(model, examples) -> None:
    """Block 0 sees each prompt once plus each answer token, not both full texts (the default on
    a CPU); with share_prompts=False it sees both whole texts."""
    pos, neg = _texts(model, examples)
    calls = _BlockCalls(model)
    try:
        collect_differences(
            model, examples, "resid", batch_size=len(examples), share_prompts=True, progress=False
        )
        shared = calls.positions[0]
        collect_differences(
            model, examples, "resid", batch_size=len(examples), share_prompts=False, progress=False
        )
    finally:
        calls.remove()
    whole = max(len(t) for t in pos + neg)
    assert calls.positions[0] - shared == 2 * len(examples) * whole  # one padded batch of texts
    calls.positions[0] = shared
    prompts = [prompt_ids(model, ex.prompt) for ex in examples]
    longest = max(len(p) for p in prompts)
    # one padded prompt batch plus two one-token answer batches ("Y" / "N")
    assert calls.positions[0] == len(examples) * (longest + 2)
    assert calls.positions[0] < len(examples) * 2 * max(len(t) for t in pos + neg)


def test_collection_under_active_hooks_sees_whole_texts(model, examples) -> None:
    """Inside a `steer` block the texts run whole, as in a plain forward: a last-token mask
    steers the answer's last token, exactly as in collect_activations of the full texts."""
    mask = sadi_mask(collect_differences(model, examples, "head", progress=False), 3)
    pos, neg = _texts(model, examples)
    with steer(model, mask, 2.0):
        steered = collect_differences(model, examples, "mlp_out", keep_pairs=True, progress=False)
        full = collect_activations(model, pos, "mlp_out", progress=False) - collect_activations(
            model, neg, "mlp_out", progress=False
        )
    unsteered = collect_differences(model, examples, "mlp_out", keep_pairs=True, progress=False)
    torch.testing.assert_close(steered.pairs, full, atol=ATOL, rtol=0)
    assert not torch.allclose(steered.pairs, unsteered.pairs, atol=1e-3)


# ---- sweeps from each setting's own start layer -------------------------------------------


@pytest.fixture
def deep():
    """A 4-layer tiny model, so that masks start at different layers."""
    return tiny_model(n_layers=4)


def _same(fast, slow) -> None:
    torch.testing.assert_close(
        fast.baseline.answer_logprob, slow.baseline.answer_logprob, atol=1e-4, rtol=0
    )
    for a, b in zip(fast.results, slow.results, strict=True):
        torch.testing.assert_close(a.answer_logprob, b.answer_logprob, atol=1e-4, rtol=0)
        assert torch.equal(a.correct, b.correct) and torch.equal(
            a.correct_restricted, b.correct_restricted
        )


@pytest.mark.parametrize("positions", ["last", "all"])
def test_per_setting_start_layers_equal_from_scratch(deep, positions: str) -> None:
    """Settings starting at layers 3, 1 and 0 (CAA on the residual stream; SADI-style last-token
    masks when positions="last") give the from-scratch results."""
    examples = make_examples(9, seed=4)
    diffs = collect_differences(deep, examples, "resid", progress=False)
    masks = {}
    for layer in (3, 1, 0):
        m = caa_mask(diffs, layer)
        masks[layer] = m if positions == "all" else _with_positions(m, "last")
    fast = sweep(deep, examples, masks, [1.5, -2.0], batch_size=4, progress=False)
    slow = sweep(deep, examples, masks, [1.5, -2.0], batch_size=4, fast=False, progress=False)
    _same(fast, slow)
    assert any(
        not torch.allclose(r.answer_logprob, slow.baseline.answer_logprob, atol=1e-3)
        for r in slow.results
    )


def _with_positions(mask, positions: str):
    import dataclasses

    return dataclasses.replace(mask, positions=positions)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_layers_below_every_start_run_once_per_batch(deep, positions: str) -> None:
    """With every setting steering layer 2 or above, blocks 0-1 run only in the shared passes
    (prompt prefix + unsteered last token, or the unsteered forward), however many settings."""
    examples = make_examples(8, seed=5)
    diffs = collect_differences(deep, examples, "resid", progress=False)
    masks = {layer: _with_positions(caa_mask(diffs, layer), positions) for layer in (2, 3)}
    calls = _BlockCalls(deep)
    try:
        sweep(
            deep,
            examples,
            masks,
            [1.0, 2.0, 3.0],
            batch_size=len(examples),
            settings_per_pass=1,
            progress=False,
        )
    finally:
        calls.remove()
    prompts = [prompt_ids(deep, ex.prompt) for ex in examples]
    n, width = len(prompts), max(len(p) for p in prompts)
    if (
        positions == "last"
    ):  # prefix pass + one unsteered token; each setting: one token from its layer
        assert calls.positions[:2] == [n * width, n * width]
        assert calls.positions[2] == n * width + 3 * n  # 3 settings start at layer 2
        assert calls.positions[3] == n * width + 6 * n
    else:  # one unsteered forward; each setting re-runs all positions from its layer
        assert calls.positions[:2] == [n * width, n * width]
        assert calls.positions[2] == 4 * n * width
        assert calls.positions[3] == 7 * n * width


@pytest.mark.parametrize("positions", ["last", "all"])
@pytest.mark.parametrize("per_pass", [2, 3, 50])
def test_packed_settings_equal_one_at_a_time(deep, per_pass: int, positions: str) -> None:
    """Settings stacked along the batch (scale masks at two sites, add masks, starting at
    different layers; steering every position, or the last prompt token through a repeated KV
    cache) give the results of running them one by one and from scratch."""
    examples = make_examples(9, seed=6)
    diffs = collect_differences(deep, examples, ["mlp_out", "head", "resid"], progress=False)
    masks = {
        "ffn": austeer_mask(diffs["mlp_out"], 12),
        "attn": austeer_mask(diffs["head"], 7),
        "caa3": caa_mask(diffs["resid"], 3),
        "caa1": caa_mask(diffs["resid"], 1),
    }
    if positions == "last":
        masks = {k: _with_positions(m, "last") for k, m in masks.items()}
        masks["sadi"] = sadi_mask(diffs["head"], 2)
    strengths = [0.5, -1.5, 4.0]
    kw = {"batch_size": 4, "progress": False}
    packed = sweep(deep, examples, masks, strengths, settings_per_pass=per_pass, **kw)
    single = sweep(deep, examples, masks, strengths, settings_per_pass=1, **kw)
    slow = sweep(deep, examples, masks, strengths, fast=False, **kw)
    _same(packed, single)
    _same(packed, slow)
    assert any(
        not torch.allclose(r.answer_logprob, slow.baseline.answer_logprob, atol=1e-3)
        for r in slow.results
    )


def test_packed_pass_runs_settings_in_one_batch(deep) -> None:
    """With 6 settings per pass, blocks above the shared start see 6 stacked copies of the batch
    in one call each, not 6 calls: the packing really happens."""
    examples = make_examples(8, seed=5)
    diffs = collect_differences(deep, examples, "resid", progress=False)
    masks = {layer: caa_mask(diffs, layer) for layer in (2, 3)}
    calls = _BlockCalls(deep)
    rows: list[int] = []
    handle = deep.blocks[3].register_forward_hook(lambda mod, args, out: rows.append(out.shape[0]))
    try:
        sweep(
            deep,
            examples,
            masks,
            [1.0, 2.0, 3.0],
            batch_size=len(examples),
            settings_per_pass=6,
            progress=False,
        )
    finally:
        calls.remove()
        handle.remove()
    n = len(examples)
    width = max(len(prompt_ids(deep, ex.prompt)) for ex in examples)
    assert rows == [n, 6 * n]  # the unsteered pass, then all six settings together
    assert calls.positions[2] == 7 * n * width  # settings starting at 3 pass through layer 2


def test_settings_per_pass_must_be_positive(model, examples) -> None:
    diffs = collect_differences(model, examples, "mlp_out", progress=False)
    with pytest.raises(ValueError, match="settings_per_pass"):
        sweep(model, examples, austeer_mask(diffs, 4), [1.0], ks=[2], settings_per_pass=0)
