"""Every architecture family researchers use, as a tiny random model saved to a local directory
and loaded by `load_model(path)`: the logits equal Hugging Face's, every site's hook exists with
its documented shape, SADI and AUSteer masks steer it as the formulas say, and evaluation, sweeps,
tuning and generation give the numbers of plain forward passes. Runs on both TransformerLens
backends (`scripts/check.sh`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import steerlens
from steerlens import (
    Grid,
    austeer_mask,
    collect_differences,
    encode_items,
    evaluate,
    sadi_mask,
    steer,
    sweep,
    tune,
)
from steerlens._backend import HookedTransformer
from steerlens.architectures import FAMILIES as SUPPORTED
from steerlens.architectures import tl_config
from steerlens.sites import has_post_mlp_norm, hook_name, read_hook_name, unit_shape
from tests.families import FAMILIES, build_family, hf_model
from tests.reference import evaluate_one, make_examples, mask_hooks, next_token_logprobs

TEXTS = ["the quick brown fox jumps:", "a b c d e f g h i j k l m n:"]  # longer than the window


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("families")
    return {family: build_family(family, where) for family in FAMILIES}


@pytest.fixture(scope="module")
def loaded(saved) -> dict[str, HookedTransformer]:
    return {family: steerlens.load_model(str(path), device="cpu") for family, path in saved.items()}


def _tokens(model) -> torch.Tensor:
    rows = [model.to_tokens(t, prepend_bos=True)[0] for t in TEXTS]
    n = min(len(r) for r in rows)
    return torch.stack([r[:n] for r in rows])  # no padding: HF and TL see the same tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_equal_hugging_face(saved, loaded, family: str) -> None:
    model = loaded[family]
    tokens = _tokens(model)
    assert tokens.shape[1] > 4  # past Gemma's sliding window of 4
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf_model(saved[family])(tokens).logits
    assert model.cfg.original_architecture == hf_model(saved[family]).config.architectures[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


SITES = ("head", "neuron", "mlp_out", "resid", "gate", "mlp_pre_norm")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_site_hook_exists_with_its_shape(loaded, family: str) -> None:
    model = loaded[family]
    tokens = _tokens(model)
    sites = [s for s in SITES if s != "mlp_pre_norm" or has_post_mlp_norm(model)]
    assert has_post_mlp_norm(model) == family.startswith("gemma")
    names = {read_hook_name(s, layer) for s in sites for layer in range(model.cfg.n_layers)}
    names |= {hook_name(s, layer) for s in sites for layer in range(model.cfg.n_layers)}
    _, cache = model.run_with_cache(tokens, names_filter=sorted(names))
    assert names <= set(cache.keys())  # every hook fired (a bridge also keys its own names)
    for site in sites:
        if site == "gate":  # read before act_fn, d_mlp wide
            assert cache[read_hook_name(site, 0)].shape[2:] == (model.cfg.d_mlp,)
            continue
        for layer in range(model.cfg.n_layers):
            assert cache[hook_name(site, layer)].shape == (
                *tokens.shape,
                *unit_shape(site, model.cfg),
            )


@pytest.mark.parametrize("family", FAMILIES)
def test_sadi_and_austeer_masks_steer_by_their_formulas(loaded, family: str) -> None:
    """SADI: a -> a + delta * (m * a) at the last position; AUSteer: each unit scaled by
    1 + alpha * beta at every position. Checked on the input each hook receives."""
    model = loaded[family]
    examples = make_examples(6)
    ffn = "mlp_pre_norm" if has_post_mlp_norm(model) else "mlp_out"
    tokens = _tokens(model)[:1]
    cases = [
        ("head", lambda d: sadi_mask(d, 2), 2.0, "last"),
        ("neuron", lambda d: sadi_mask(d, 5), 2.0, "last"),
        (ffn, lambda d: austeer_mask(d, 6), 3.0, "all"),
    ]
    for site, make, strength, where in cases:
        mask = make(collect_differences(model, examples, site, progress=False))
        names = [hook_name(site, layer) for layer in range(model.cfg.n_layers)]
        seen: dict[str, torch.Tensor] = {}

        def record(name: str, seen=seen):  # a bridge's `hook.name` may be its own alias
            return lambda act, hook: seen.__setitem__(name, act.detach().clone())

        hooks = [(n, record(n)) for n in names]
        with model.hooks(fwd_hooks=hooks), steer(model, mask, strength):
            _, after = model.run_with_cache(tokens, names_filter=names)
        for name in names:
            factor = torch.ones(seen[name].shape[2:])  # a head's row, or one coordinate
            for layer, index, beta in zip(mask.layers, mask.indices, mask.weights, strict=True):
                if names[int(layer)] == name:
                    factor[int(index)] = 1 + (strength if where == "last" else strength * beta)
            expected = seen[name] * factor
            if where == "last":
                expected[:, :-1] = seen[name][:, :-1]
            torch.testing.assert_close(after[name], expected, atol=1e-6, rtol=1e-6)
        assert any(not torch.equal(after[n], seen[n]) for n in names), site


def test_tl_config_refuses_an_unsupported_architecture() -> None:
    from transformers import BloomConfig

    config = BloomConfig(architectures=["BloomForCausalLM"])
    with pytest.raises(ValueError, match="BloomForCausalLM.*LlamaForCausalLM") as err:
        tl_config(config, name="b", device="cpu", dtype=torch.float32)
    assert all(arch in str(err.value) for arch in SUPPORTED)


def test_a_local_directory_named_like_an_official_model_reads_its_own_config(saved, tmp_path):
    """TransformerLens 3.9 picks Llama/Gemma configs by substrings of a local path; a renamed
    copy of the tiny Llama must still load with its own shape."""
    renamed = tmp_path / "Llama-2-7b-hf"
    renamed.symlink_to(saved["llama"], target_is_directory=True)
    model = steerlens.load_model(str(renamed), device="cpu")
    assert (model.cfg.d_model, model.cfg.n_layers, model.cfg.model_name) == (32, 2, renamed.name)


def test_bad_model_names_say_what_to_give(tmp_path) -> None:
    with pytest.raises(ValueError, match="local Hugging Face model directory"):
        steerlens.load_model("no-such-model-xyz", device="cpu")
    with pytest.raises(FileNotFoundError, match="No model directory or file"):
        steerlens.load_model(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(FileNotFoundError, match="config.json"):
        steerlens.load_model(str(tmp_path), device="cpu")
    with pytest.raises(FileNotFoundError, match="No GGUF file"):
        steerlens.load_model(str(tmp_path / "x.gguf"), device="cpu")


def test_a_gguf_of_an_unsupported_architecture_names_the_supported_ones(tmp_path) -> None:
    from gguf import GGUFWriter

    path = tmp_path / "tiny-mamba.gguf"
    writer = GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="'mamba' model.*gemma3.*llama"):
        steerlens.load_model(str(path), device="cpu")


# The pipeline on each backend: TransformerLens 3 runs it over its KV cache and shared passes,
# the 4.x bridge runs every text in full; both must give the numbers of plain, unpadded forward
# passes with hand-written hooks (`tests.reference`).
PIPELINE = ("llama", "gemma2", "gpt2")  # gated + GQA; soft caps and extra norms; plain MLP


def _assert_matches_reference(model, examples, result, hooks_for) -> None:
    for i, ex in enumerate(examples):
        ref = evaluate_one(model, ex.prompt, [ex.answer, *ex.wrong], hooks_for)
        assert bool(result.correct[i]) == ref["hit"], i
        assert bool(result.correct_restricted[i]) == ref["win"], i
        assert float(result.answer_logprob[i]) == pytest.approx(ref["gold_lp"], abs=1e-4), i


def _hooks(mask, strength: float):
    """Reference hooks of `mask` at `strength`, given the last prompt token's column."""
    return lambda column: mask_hooks(mask, strength, None if mask.positions == "all" else column)


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluate_equals_unpadded_forward_passes_steered_or_not(
    loaded, multi_examples, family: str
) -> None:
    """Batched, left-padded evaluation (options continuing their prompts' cache on TL3, whole
    texts on the bridge) equals one plain forward pass per (item, option), logit caps included;
    likewise under a SADI head mask at the last prompt token."""
    model = loaded[family]
    examples = multi_examples
    plain = evaluate(model, examples, batch_size=4, progress=False)
    _assert_matches_reference(model, examples, plain, None)
    mask = sadi_mask(collect_differences(model, examples, "head", progress=False), 3)
    with steer(model, mask, 4.0):
        steered = evaluate(model, examples, batch_size=4, progress=False)
    _assert_matches_reference(model, examples, steered, _hooks(mask, 4.0))
    assert not torch.equal(steered.answer_logprob, plain.answer_logprob)


@pytest.mark.parametrize("family", PIPELINE)
def test_sweep_and_tune_equal_unpadded_forward_passes(loaded, family: str) -> None:
    """Every sweep cell (a last-token SADI mask, an every-position AUSteer mask) and tune's test
    scores equal the reference evaluation under that cell's hooks."""
    model = loaded[family]
    dev, test = make_examples(8, seed=4), make_examples(6, seed=5)
    masks = {
        "sadi": sadi_mask(collect_differences(model, dev, "head", progress=False), 4),
        "austeer": austeer_mask(collect_differences(model, dev, "mlp_out", progress=False), 8),
    }
    for mask in masks.values():
        result = sweep(model, dev, mask, [1.0, 3.0], ks=[2, 4], progress=False)
        cells = [(k, a) for k in (2, 4) for a in (1.0, 3.0)]
        for (k, strength), scored in zip(cells, result.results, strict=True):
            _assert_matches_reference(model, dev, scored, _hooks(mask.top(k), strength))
    arms = {arm: Grid({4: mask}, (1.0, 3.0)) for arm, mask in masks.items()}
    tuned = tune(model, encode_items(model, dev), encode_items(model, test), arms)
    for arm, mask in masks.items():
        strength = tuned.arms[arm].choice.strength
        _assert_matches_reference(model, test, tuned.arms[arm].test, _hooks(mask, strength))


@pytest.mark.parametrize("family", PIPELINE)
def test_generate_equals_greedy_decoding_steered_or_not(saved, loaded, family: str) -> None:
    """Unsteered, batched greedy generation equals Hugging Face's `generate`; steered by a SADI
    mask it equals a greedy loop of whole-sequence passes steering the prompt's last token."""
    model = loaded[family]
    prompts = ["ab:", "the quick brown:"]
    ours = steerlens.generate(model, prompts, max_new_tokens=5, batch_size=2, progress=False)
    reference = hf_model(saved[family])
    for prompt, tokens in zip(ours.prompts, ours.tokens, strict=True):
        with torch.no_grad():
            theirs = reference.generate(
                torch.tensor([prompt]),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                max_new_tokens=5,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        assert tokens == theirs[0, len(prompt) :].tolist()
    mask = sadi_mask(collect_differences(model, make_examples(6), "head", progress=False), 3)
    steered = steerlens.generate(
        model, prompts, mask=mask, strength=6.0, max_new_tokens=5, batch_size=2, progress=False
    )
    for prompt, tokens in zip(steered.prompts, steered.tokens, strict=True):
        seq = list(prompt)
        for _ in range(5):
            hooks = mask_hooks(mask, 6.0, len(prompt) - 1)
            seq.append(int(next_token_logprobs(model, seq, hooks).argmax()))
        assert tokens == seq[len(prompt) :]
    assert steered.tokens != ours.tokens
