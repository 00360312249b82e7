"""Answers as the papers score them, and checks that an answer's tokens mean what the user thinks.

The papers' own metric (`paper`): neither released code compares token ids. SADI's decodes the
argmax at each answer position, removes `. ; ! , ? \\n </s> <pad>`, lowercases and compares with the
gold string; AUSteer's compares the stripped, lowercased one-token greedy continuation with the
stripped, lowercased gold. steerlens counts the next-token argmax as correct when its decoded form,
normalised that way, equals the normalised gold answer: every vocabulary token that spells the
gold (" Yes", "Yes", " yes", ...) counts. A gold answer no single token spells is compared with the
decoded argmaxes at its teacher-forced answer positions (SADI's multi-token match).

Tokenization checks (`check_answers`): an answer is appended to its prompt as its own tokens, so a
file whose answers lack the leading space the model would write after `Answer:` scores 0 under the
first-token metric, silently. Two options that share their first token make that metric
meaningless.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Sequence
from typing import Literal

from transformers import PreTrainedTokenizerBase

from ._backend import HookedTransformer
from .normalize import normalize
from .tasks import Example
from .tokens import answer_ids, tokenizer_of

AnswerSpace = Literal["keep", "auto"]


@functools.lru_cache(maxsize=8)
def _vocab(tokenizer: PreTrainedTokenizerBase) -> dict[str, tuple[int, ...]]:
    """Normalised decoded string -> the token ids that decode to it (built once per tokenizer)."""
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    index: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        index.setdefault(normalize(text), []).append(i)
    return {k: tuple(v) for k, v in index.items()}


def spelling_ids(tokenizer: PreTrainedTokenizerBase, gold: str) -> tuple[int, ...]:
    """Every token id whose decoded, normalised form equals the normalised `gold` (may be empty:
    then no single token spells it)."""
    return _vocab(tokenizer).get(normalize(gold), ())


def matches(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], gold: str) -> bool:
    """SADI's multi-token match: the decoded `ids`, normalised, equal the normalised gold."""
    return normalize(str(tokenizer.decode(list(ids)))) == normalize(gold)


def spaced(prompt: str, answer: str) -> str:
    """The answer with the whitespace a model writes after `prompt`: a leading space after a
    prompt that ends in a visible character (`Answer:` -> `" A"`), none after whitespace
    (`Answer:\\n` -> `"A"`)."""
    bare = answer.lstrip(" ")
    return bare if not prompt or prompt[-1].isspace() else " " + bare


def check_answers(
    model: HookedTransformer, examples: Sequence[Example], *, answer_space: AnswerSpace = "keep"
) -> list[Example]:
    """The examples, checked (and with `answer_space="auto"`, re-spaced) for the first-token metric.

    - Options of one item that share their first token make "the argmax is the answer's first
      token" meaningless: a `ValueError` names them.
    - An answer whose own tokens differ from how the tokenizer splits `prompt + answer` (a
      SentencePiece tokenizer may split `" Yes"` alone as `▁ ▁Yes`, and writes `A` after
      `Answer:\n` but `▁A` alone): one warning with the fix. With `answer_space="auto"` the
      answers are first respelled (`respace`) and checked against the prompt followed by the
      model's usual whitespace.
    """
    return checked_options(model, examples, answer_space=answer_space)[0]


def checked_options(
    model: HookedTransformer, examples: Sequence[Example], *, answer_space: AnswerSpace = "keep"
) -> tuple[list[Example], list[list[list[int]]]]:
    """`check_answers`, also returning each item's options as token ids (correct first), so that
    `encode_items` does not tokenize them a second time."""
    if answer_space not in ("keep", "auto"):
        raise ValueError(f"answer_space must be 'keep' or 'auto', got {answer_space!r}")
    tok = tokenizer_of(model)
    if answer_space == "auto":
        examples = respace(tok, examples)
    mismatch: list[tuple[str, str, list[str], list[str]]] = []
    options: list[list[list[int]]] = []
    for ex in examples:
        firsts: dict[int, str] = {}
        prompt = tok.encode(ex.prompt, add_special_tokens=False)
        options.append([])
        for option in ex.options:
            alone = answer_ids(model, option)
            options[-1].append(alone)
            if alone[0] in firsts:
                raise ValueError(
                    f"Options {firsts[alone[0]]!r} and {option!r} share their first token "
                    f"{tok.decode(alone[:1])!r} (prompt ...{ex.prompt[-40:]!r}): the first-token "
                    "metric cannot tell them apart; reword one option"
                )
            firsts[alone[0]] = option
            # in "auto" mode the spelling was chosen so that its own tokens are its tokens after
            # the prompt with the model's whitespace (`spaced`); check that context instead
            text = spaced(ex.prompt, option) if answer_space == "auto" else option
            joint = tok.encode(ex.prompt + text, add_special_tokens=False)
            if joint[: len(prompt)] != prompt or joint[len(prompt) :] != alone:
                tail = (
                    joint[len(prompt) :] if joint[: len(prompt)] == prompt else joint[-len(alone) :]
                )
                mismatch.append((ex.prompt, option, _pieces(tok, tail), _pieces(tok, alone)))
    if mismatch:
        prompt, option, joint_tail, alone_pieces = mismatch[0]
        warnings.warn(
            f"{len(mismatch)} answers tokenize differently after their prompt than on their own, "
            f"e.g. {option!r} after ...{prompt[-20:]!r}: {joint_tail} in context but "
            f"{alone_pieces} alone. steerlens appends an answer's own tokens, so its first-token "
            "metric and contrastive texts use the second split. Write the answers as they "
            "continue the prompt, or pass answer_space='auto'.",
            stacklevel=3,
        )
    return list(examples), options


def warn_near_misses(
    tokenizer: PreTrainedTokenizerBase,
    top: Sequence[int],
    gold_first: Sequence[int],
    golds: Sequence[str],
) -> None:
    """Warn when most items' top next token spells the answer (other case or whitespace) but is
    not the answer's own first token: the answers' whitespace is probably not the model's."""
    near = [
        (t, g, text)
        for t, g, text in zip(top, gold_first, golds, strict=True)
        if t != g and t in spelling_ids(tokenizer, text)
    ]
    if near and 2 * len(near) >= len(golds):
        t, g, text = near[0]
        warnings.warn(
            f"For {len(near)} of {len(golds)} items the model's top next token spells the answer "
            f"but is another token (e.g. {tokenizer.decode([t])!r} where the answer {text!r} "
            f"starts with {tokenizer.decode([g])!r}), so exact-token accuracy counts them wrong. "
            "Give the answers the whitespace the model writes after the prompt (or "
            "answer_space='auto'); the `paper` metric counts them right.",
            stacklevel=3,
        )


def _pieces(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    return [str(p) for p in tokenizer.convert_ids_to_tokens(list(ids))]


def respace(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]) -> list[Example]:
    """Every answer and wrong answer spelled as it continues its prompt (`answer_space="auto"`)."""
    return [
        dataclasses.replace(
            ex,
            answer=_auto(tokenizer, ex.prompt, ex.answer),
            wrong=[_auto(tokenizer, ex.prompt, w) for w in ex.wrong],
        )
        for ex in examples
    ]


def _auto(tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str) -> str:
    """The spelling of `answer` whose own tokens are the tokens it gets when it continues
    `prompt` with the model's usual whitespace (`spaced`): `" A"` for a byte-level BPE, `"Yes"`
    for a SentencePiece tokenizer that prepends its own word-start mark. Falls back to `spaced`."""
    text = spaced(prompt, answer)
    head = tokenizer.encode(prompt, add_special_tokens=False)
    joint = tokenizer.encode(prompt + text, add_special_tokens=False)
    tail = joint[len(head) :]
    for candidate in (text, text.lstrip(" ")):
        if tokenizer.encode(candidate, add_special_tokens=False) == tail:
            return candidate
    return text
