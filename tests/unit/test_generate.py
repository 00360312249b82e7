"""Steered generation, answers read from text, side effects on the text, math tasks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from steerlens import austeer_mask, collect_differences, sadi_mask
from steerlens.baselines import caa_mask
from steerlens.evaluate_generation import evaluate_generation, gold_of, read_answer
from steerlens.experiments.generation_job import GenerationConfig, run_generation
from steerlens.generate import generate
from steerlens.numbers import extract_number, same_number
from steerlens.tasks import Example
from steerlens.tasks.math import load_math_task
from steerlens.tasks.negatives import nearest_other
from steerlens.text_effects import continuation_perplexity, distinct_n, repetition_rate
from steerlens.tokens import prompt_ids
from tests.checking import OFF_TYPE
from tests.reference import make_examples

pytestmark = pytest.mark.filterwarnings("ignore:.*flips the sign", "ignore:.*truncated")
PROMPTS = ["hello there:", "a", "the quick brown fox", "xy z:"]


@pytest.fixture
def masks(model):
    head = collect_differences(model, make_examples(12), site=["head", "resid"], progress=False)
    return {
        "none": (None, 0.0),
        "sadi": (sadi_mask(head["head"], 2), 4.0),
        "sadi-clamp": (sadi_mask(head["head"], 2, mode="released"), 9.0),
        "austeer": (austeer_mask(head["head"], 5), 8.0),
        "caa-released": (caa_mask(head["resid"], 1, positions="from"), 2.0),
    }


@pytest.mark.parametrize("name", ["none", "sadi", "sadi-clamp", "austeer", "caa-released"])
def test_batched_equals_one_at_a_time_and_cache_equals_no_cache(model, masks, name) -> None:
    mask, strength = masks[name]
    kw = {"mask": mask, "strength": strength, "max_new_tokens": 6, "progress": False}
    batched = generate(model, PROMPTS, batch_size=3, **kw)
    alone = [generate(model, [p], **kw) for p in PROMPTS]
    assert batched.tokens == [a.tokens[0] for a in alone]
    for b, a in zip(batched.logprobs, alone, strict=True):
        assert b == pytest.approx(a.logprobs[0], abs=1e-4)
    uncached = generate(model, PROMPTS, batch_size=4, use_cache=False, **kw)
    assert uncached.tokens == batched.tokens
    assert "forward" not in vars(model) and not any(hp.fwd_hooks for hp in model.hook_dict.values())


def test_steering_changes_the_text_and_sadi_steers_only_the_prefill(model, masks) -> None:
    """SADI steers the prompt's last token unless `every_generated`; AUSteer every position."""
    plain = generate(model, PROMPTS, max_new_tokens=6, progress=False)
    mask, _ = masks["austeer"]
    strong = generate(model, PROMPTS, mask=mask, strength=60.0, max_new_tokens=6, progress=False)
    assert strong.tokens != plain.tokens
    sadi, _ = masks["sadi"]
    once = generate(model, PROMPTS, mask=sadi, strength=30.0, max_new_tokens=6, progress=False)
    every = generate(
        model,
        PROMPTS,
        mask=sadi,
        strength=30.0,
        every_generated=True,
        max_new_tokens=6,
        progress=False,
    )
    assert [t[0] for t in once.tokens] == [t[0] for t in every.tokens]  # the same prefill
    assert once.tokens != every.tokens
    # re-running whole sequences steers the prompt's last token and every generated one alike
    kw = {"mask": sadi, "strength": 30.0, "max_new_tokens": 6, "progress": False}
    whole = generate(model, PROMPTS, every_generated=True, use_cache=False, **kw)
    assert whole.tokens == every.tokens


def test_sampling_is_seeded_per_prompt(model) -> None:
    kw = {"temperature": 1.0, "max_new_tokens": 5, "progress": False}
    a = generate(model, PROMPTS, seed=3, batch_size=1, **kw)
    b = generate(model, PROMPTS, seed=3, batch_size=4, **kw)
    c = generate(model, PROMPTS, seed=4, batch_size=4, **kw)
    assert a.tokens == b.tokens and a.tokens != c.tokens


def test_stop_strings_eos_and_the_token_limit(model) -> None:
    free = generate(model, PROMPTS, max_new_tokens=8, progress=False)
    assert free.stopped == ["length"] * 4 and all(len(t) == 8 for t in free.tokens)
    stop = free.texts[0][2:4]  # a string the first continuation writes
    cut = generate(model, PROMPTS, max_new_tokens=8, stop=[stop], progress=False)
    assert cut.stopped[0] == "stop" and cut.texts[0] == free.texts[0][: free.texts[0].find(stop)]
    # make a token the continuations write (not first) the EOS token
    row, k = next(
        (r, k)
        for r, toks in enumerate(free.tokens)
        for k in range(1, len(toks))
        if toks[k] not in toks[:k]
    )
    eos = free.tokens[row][k]
    model.tokenizer.eos_token = model.tokenizer.convert_ids_to_tokens(eos)
    assert model.tokenizer.eos_token_id == eos
    ended = generate(model, PROMPTS[row : row + 1], max_new_tokens=8, progress=False)
    assert ended.stopped == ["eos"] and ended.tokens[0] == free.tokens[row][:k]


def test_generate_refuses_bad_input(model) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        generate(model, "a single string", progress=False)
    for bad in ({"max_new_tokens": 0}, {"temperature": -1.0}, {"batch_size": 0}, {"stop": [""]}):
        with pytest.raises(OFF_TYPE):
            generate(model, PROMPTS, progress=False, **bad)
    with pytest.raises(ValueError, match="no prompts"):
        generate(model, [], progress=False)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("The answer is 42.", 42.0),
        ("costs $1,250.50 in total", 1250.5),
        ("it fell to -3 degrees", -3.0),
        ("about .5 of it", 0.5),
        ("3 + 4 = 7\n#### 7", 7.0),
        ("#### 12 apples, then 5 more", 12.0),
        ("first 3 then 9", 9.0),
        ("no number here", None),
        ("", None),
    ],
)
def test_extract_number(text: str, number: float | None) -> None:
    assert extract_number(text) == number


def test_same_number_and_answers() -> None:
    assert same_number(51.0, 51) and not same_number(None, 51) and not same_number(50.9, 51)
    assert not same_number(float("nan"), 1.0)
    assert gold_of(Example("q", " 51.0", (" 3.0",)), "number") == 51.0
    assert gold_of(Example("q", " Paris", (" Rome",)), "exact") == "paris"
    with pytest.raises(ValueError, match="no number"):
        gold_of(Example("q", " Paris", (" Rome",)), "number")
    assert read_answer(" Paris.\nMore text", "exact") == "paris"
    assert read_answer("\n", "exact") is None
    assert nearest_other([5.0, 5.0, 7.0, 4.0], 0) == 3 and nearest_other([1.0, 1.0], 0) is None


def test_text_effects_on_hand_built_texts() -> None:
    assert distinct_n(["a b c d"], 2) == 1.0
    assert distinct_n(["a a a a"], 1) == 0.25 and math.isnan(distinct_n(["a"], 2))
    assert repetition_rate(["a b a b a b"], 2) == pytest.approx(1 - 2 / 5)
    assert repetition_rate(["a b c d e"], 4) == 0.0 and math.isnan(repetition_rate(["a b"], 4))


def test_continuation_perplexity_is_the_teacher_forced_likelihood(model) -> None:
    gen = generate(model, PROMPTS, max_new_tokens=5, progress=False)
    ppl = continuation_perplexity(model, PROMPTS, gen.tokens, batch_size=3)
    for i, p in enumerate(PROMPTS):  # greedy log-probs of its own tokens, one text at a time
        ids = prompt_ids(model, p) + gen.tokens[i]
        with torch.no_grad():
            logp = model(torch.tensor([ids]))[0].float().log_softmax(-1)
        n = len(gen.tokens[i])
        nll = -torch.stack(
            [logp[len(ids) - n - 1 + j, t] for j, t in enumerate(gen.tokens[i])]
        ).mean()
        assert float(ppl[i]) == pytest.approx(float(nll.exp()), rel=1e-4)
        assert float(nll) == pytest.approx(-sum(gen.logprobs[i]) / n, abs=1e-4)
    assert math.isnan(float(continuation_perplexity(model, ["a"], [[]])[0]))


def test_evaluate_generation_scores_what_the_model_writes(model) -> None:
    gen = generate(model, PROMPTS, max_new_tokens=4, progress=False)
    items = [
        Example(p, t if t.strip() else "x", ("other answer",))
        for p, t in zip(PROMPTS, gen.texts, strict=False)
    ]
    res = evaluate_generation(model, items, match="exact", max_new_tokens=4, progress=False)
    expected = [bool(t.strip().split("\n")[0].strip()) for t in gen.texts]
    assert res.correct.tolist() == [
        e and read_answer(t, "exact") == gold_of(x, "exact")
        for e, t, x in zip(expected, gen.texts, items, strict=True)
    ]
    assert res.generation.texts == gen.texts and res.perplexity.shape == (4,)
    rescored = continuation_perplexity(model, res.generation.prompts, res.generation.tokens)
    assert torch.allclose(res.perplexity, rescored, rtol=1e-4, equal_nan=True)
    numbers = [Example(p, " 7", (" 8",)) for p in PROMPTS]
    res = evaluate_generation(model, numbers, max_new_tokens=4, progress=False)
    assert res.accuracy == 0.0 and res.no_answer == sum(
        extract_number(t) is None for t in res.generation.texts
    )
    assert set(res.summary()) >= {"accuracy", "median_perplexity", "distinct_2", "repetition_4"}


def _math_data(root) -> None:
    """A SVAMP-shaped file of 1000 rows written by the test (answers 1..9, bodies of digits)."""
    rows = [
        {
            "ID": f"r{i}",
            "Body": f"There are {i % 7} apples and {i % 5} pears.",
            "Question": "How many fruits?",
            "Equation": "x",
            "Answer": float(i % 9 + 1),
            "Type": "Addition",
        }
        for i in range(1000)
    ]
    (root / "svamp").mkdir(parents=True)
    (root / "svamp" / "SVAMP.json").write_text(json.dumps(rows))


def test_math_task_and_driver_on_a_written_file(model, tmp_path) -> None:
    _math_data(tmp_path)
    task = load_math_task("svamp", tmp_path, negatives="nearest")
    assert (len(task.train), len(task.dev), len(task.test)) == (600, 100, 300)
    ex = task.train[0]
    assert ex.prompt.endswith("How many fruits?\nAnswer:") and ex.answer == " 1.0"
    assert ex.wrong == (" 2.0",)  # the nearest other gold
    config = GenerationConfig(
        data_dir=str(tmp_path),
        negatives="nearest",
        n_train=12,
        n_dev=4,
        n_test=4,
        max_new_tokens=4,
        grids={"sadi-head": ((1,), (2.0,)), "austeer-attention": ((4,), (8.0,))},
        methods=("sadi-head", "austeer-attention"),
        batch_size=4,
        out=str(tmp_path / "out"),
    )
    result = run_generation(config, model=model, progress=False)
    assert [r.method for r in result.rows] == ["none", "sadi-head", "austeer-attention"]
    text = (tmp_path / "out" / "results.md").read_text()
    assert "| sadi-head | K=1, s=2 |" in text and "First test generations" in text
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["rows"][1]["dev_grid"][0]["setting"] == 1
    with pytest.raises(ValueError, match="Unknown generation task"):
        GenerationConfig(task="mmlu")
    with pytest.raises(ValueError, match="Unknown methods"):
        GenerationConfig(methods=("sadi",))
    with pytest.raises(OFF_TYPE):
        GenerationConfig(negatives="closest")  # type: ignore[arg-type]
