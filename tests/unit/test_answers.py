"""The papers' string metric (`paper`) and the answer-tokenization checks, on the byte-level BPE
tokenizer of the tiny model and on a LLaMA-style SentencePiece tokenizer built offline."""

from __future__ import annotations

import pytest
import torch

from steerlens import encode_items, evaluate
from steerlens.answers import check_answers, matches, normalize, respace, spelling_ids
from steerlens.tasks import Example
from steerlens.tokens import answer_ids, prompt_ids
from tests.checking import OFF_TYPE
from tests.tiny import sentencepiece_tokenizer, tiny_model


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" Yes", "yes"),  # leading space
        ("YES", "yes"),  # case
        ("yes.", "yes"),  # punctuation SADI strips
        ("no!?;,", "no"),
        ("A\n", "a"),  # newline
        ("yes</s>", "yes"),  # end of sequence
        ("<pad>No", "no"),
        ("</s>", ""),  # an end-of-sequence token alone spells nothing
        ("don't", "don't"),  # other characters stay
    ],
)
def test_normalize_as_the_released_codes(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_every_token_that_spells_the_gold_counts(model) -> None:
    tok = model.tokenizer
    ids = set(spelling_ids(tok, " Y"))
    spelled = {tok.decode([i]) for i in ids}
    assert {"Y", "y", " Y", " y"} <= spelled and not any(len(s.strip()) != 1 for s in spelled)
    assert spelling_ids(tok, "yes") == ()  # no single byte-level token spells "yes"
    assert matches(tok, tok.encode(" Yes.", add_special_tokens=False), "yes")
    assert not matches(tok, tok.encode(" Yep", add_special_tokens=False), "yes")


@pytest.fixture
def toward_space_a(model):
    """The tiny model made to answer " A" (its byte-level token "ĠA") after every prompt."""
    with torch.no_grad():
        model.unembed.b_U[answer_ids(model, " A")[0]] += 50.0
    return model


def letter_examples(n: int = 8) -> list[Example]:
    """Prompts ending in "Answer:" with answers "A"/"B" lacking the leading space."""
    return [
        Example(f"item {i} Answer:", "A" if i % 2 == 0 else "B", ("B" if i % 2 == 0 else "A",))
        for i in range(n)
    ]


def test_the_silent_zero_of_answers_without_their_space_warns_and_auto_fixes_it(
    toward_space_a,
) -> None:
    examples = letter_examples()
    with pytest.warns(UserWarning, match="top next token spells the answer.*answer_space='auto'"):
        plain = evaluate(toward_space_a, examples, progress=False)
    assert plain.accuracy == 0.0  # "ĠA" is not the token "A"
    assert plain.paper == 0.5  # ... but it spells it: the papers' metric counts it
    assert plain.correct_paper is not None
    assert plain.correct_paper.tolist() == [i % 2 == 0 for i in range(8)]
    fixed = evaluate(toward_space_a, encode_items(toward_space_a, examples, answer_space="auto"))
    assert fixed.accuracy == 0.5 and fixed.paper == 0.5
    assert respace(toward_space_a.tokenizer, examples)[0].answer == " A"


def test_paper_metric_of_multi_token_golds_uses_teacher_forced_argmaxes(
    model, multi_examples
) -> None:
    result = evaluate(model, multi_examples, batch_size=3, progress=False)
    assert result.correct_paper is not None
    tok = model.tokenizer
    for flag, ex in zip(result.correct_paper.tolist(), multi_examples, strict=True):
        ids = prompt_ids(model, ex.prompt) + answer_ids(model, ex.answer)
        n = len(answer_ids(model, ex.answer))
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0]
        argmax = logits[-n - 1 : -1].argmax(-1).tolist()  # the argmax at each answer position
        assert flag == (normalize(tok.decode(argmax)) == normalize(ex.answer))


def test_items_without_texts_have_no_paper_score(model, examples) -> None:
    items = encode_items(model, examples)
    bare = type(items)(items.prompts, items.options)
    result = evaluate(model, bare, progress=False)
    assert result.correct_paper is None and result.paper != result.paper  # NaN
    assert all(x != x for x in result.ci("paper"))


@pytest.fixture(scope="module")
def llama_like():
    """A tiny model with the LLaMA-style SentencePiece tokenizer."""
    return tiny_model(tokenizer=sentencepiece_tokenizer())


def test_sentencepiece_leading_space_answers_share_a_first_token_and_are_refused(
    llama_like,
) -> None:
    assert llama_like.tokenizer.convert_ids_to_tokens(answer_ids(llama_like, " Yes")) == [
        "▁",
        "▁Yes",
    ]
    examples = [Example("Is it? Answer:", " Yes", (" No",))]
    with pytest.raises(ValueError, match="' Yes' and ' No' share their first token"):
        check_answers(llama_like, examples)
    fixed = check_answers(llama_like, examples, answer_space="auto")
    assert (fixed[0].answer, fixed[0].wrong) == ("Yes", ("No",))  # "▁Yes", as in context
    assert answer_ids(llama_like, "Yes") != answer_ids(llama_like, "No")


def test_sentencepiece_letter_after_a_newline_warns(llama_like) -> None:
    examples = [Example("Pick one. Answer:\n", "A", ("B",))]
    with pytest.warns(UserWarning, match=r"'A' after .*\['A'\] in context but \['▁A'\] alone"):
        check_answers(llama_like, examples)


def test_byte_level_answers_that_continue_their_prompt_pass_silently(model, recwarn) -> None:
    check_answers(model, [Example("q: Answer:", " A", (" B",)), Example("x\n", "A", ("B",))])
    assert not [w for w in recwarn if "tokenize differently" in str(w.message)]
    with pytest.raises(OFF_TYPE, match="answer_space must be|parameter 'answer_space'"):
        check_answers(model, letter_examples(2), answer_space="spaces")  # type: ignore[arg-type]
