"""The benchmark's peers (section 7) do the same work as steerlens before their times are compared:
on a tiny Llama built in Hugging Face and converted to TransformerLens, the Hugging Face forward
with hooks (and nnsight, where installed) gives steerlens' collected means and steered answer
log-probabilities."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks import _generation
from benchmarks import _peers as peers
from benchmarks._harness import Clock
from steerlens import caa_mask, collect_differences, encode_items, evaluate, steer
from steerlens._backend import HookedTransformer
from steerlens.architectures import tl_config
from steerlens.tokens import pad_id
from tests.reference import make_examples
from tests.tiny import byte_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore:.*pairs have identical", "ignore:.*flip.* sign")


@pytest.fixture(scope="module")
def pair():
    """(TransformerLens model, Hugging Face model) holding the same random weights."""
    tokenizer = byte_tokenizer()
    torch.manual_seed(0)
    hf_cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    hf = LlamaForCausalLM(hf_cfg).float().eval()
    cfg = tl_config(hf.config, name="tiny-llama", device="cpu", dtype=torch.float32)
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    model.load_state_dict(convert_llama_weights(hf, cfg), strict=False)
    return model.eval(), hf


def test_hugging_face_hooks_collect_steerlens_means(pair) -> None:
    model, hf = pair
    examples = make_examples(12, seed=3)
    texts = [t for p in peers.contrastive_ids(model, examples) for t in p]
    assert peers.check_same_model(model, hf, texts[:6]) < 1e-3
    ours = collect_differences(model, examples, "resid", batch_size=4, progress=False)
    theirs = peers.hf_collect(hf, texts, 8, pad_id(model))
    torch.testing.assert_close(ours.mean.float(), theirs, rtol=0, atol=1e-4)
    if peers.nnsight_available():
        wrapped = peers.wrap_nnsight(hf)
        torch.testing.assert_close(
            peers.nnsight_collect(wrapped, texts, 8, pad_id(model)), theirs, rtol=0, atol=1e-5
        )


def test_a_hooked_vector_scores_as_steerlens_steers(pair) -> None:
    model, hf = pair
    examples = make_examples(10, seed=4)
    items = encode_items(model, examples)
    diffs = collect_differences(model, examples, "resid", progress=False)
    layer, strength = 1, 3.0
    with steer(model, caa_mask(diffs, layer), strength):
        ours = evaluate(model, items, batch_size=4, progress=False).answer_logprob
    vector = strength * diffs.mean[layer].float()
    theirs = peers.hf_steered_eval(hf, items, layer, vector, 4, pad_id(model))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    plain = peers.hf_steered_eval(hf, items, layer, None, 4, pad_id(model))
    unsteered = evaluate(model, items, batch_size=4, progress=False).answer_logprob
    torch.testing.assert_close(unsteered, plain, rtol=0, atol=1e-4)
    assert not torch.allclose(ours, unsteered, atol=1e-3)  # the vector changes the scores
    if peers.nnsight_available():
        wrapped = peers.wrap_nnsight(hf)
        got = peers.nnsight_steered_eval(wrapped, items, layer, vector, 4, pad_id(model))
        torch.testing.assert_close(got, theirs, rtol=0, atol=1e-4)


def test_the_peer_section_runs_and_reports_ratios(pair) -> None:
    model, hf = pair
    examples = make_examples(8, seed=5)
    out = peers.bench_peers(
        model,
        hf,
        examples,
        encode_items(model, examples),
        [e.prompt for e in examples[:2]],
        Clock.wall("cpu"),
        rounds=1,
        batch_size=4,
        new_tokens=4,
    )
    assert out["collection"]["steerlens_vs_hf_hooks"] > 0
    assert out["steered_eval"]["steerlens_hooks_overhead"] > 0
    gen = out["generation"]
    assert set(gen["positions_decoded"]) == {"unsteered", "steered", "hf_generate"}
    for name, n in gen["positions_decoded"].items():
        assert gen["tokens"][name] <= n <= 2 * 4


def test_decoded_positions_count_the_rows_that_ride_along() -> None:
    assert _generation.decoded(3, [1, 4, 2], [True, False, True], limit=10) == 3 * 4
    assert _generation.decoded(2, [1, 1], [True, True], limit=10) == 2 * 2  # EOS is one more step
    assert _generation.decoded(2, [5, 0], [False, True], limit=5) == 2 * 5


def test_the_hugging_face_floor_reports_its_peak_memory(pair) -> None:
    model, hf = pair
    out = peers.hf_memory(model, hf, make_examples(6, seed=6), "short", batch_size=4)
    assert out["tool"] == "hf_hooks" and out["n_pairs"] == 6
    assert out["peak_rss_mb"] >= out["rss_before_mb"] > 0


def test_the_benchmark_command_line_imports_every_section() -> None:
    import benchmarks.run as bench

    assert {tool for tool, _, _ in bench.SIZES["full"]["memory"]} == {"steerlens", "hf"}
    commands = bench.memory_commands(bench.SIZES["quick"]["memory"], None)
    assert [c[c.index("--memory-child") + 1 :] for c in commands] == [
        ["steerlens", "short:20,short:60"],
        ["hf", "short:20"],
    ]
