"""Prompt formats: k-shot demonstrations and chat templates (`format_task`)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .core import PROMPT_STYLES, SPLITS, Example, PromptStyle, Task

DEMO_SEPARATOR = "\n\n"


def format_task(
    task: Task,
    style: PromptStyle = "raw",
    *,
    tokenizer: Any = None,
    n_shot: int = 0,
    seed: int = 0,
) -> Task:
    """Return a new `Task` whose prompts are in `style` with `n_shot` train demonstrations.

    Demonstrations are drawn per example from the train split with a seed derived from
    (`seed`, split, index), so they never include the example itself and do not change when a
    split is truncated. ``"raw"`` joins ``prompt + answer`` demos and the prompt with blank
    lines; ``"chat"`` passes them through ``tokenizer.apply_chat_template`` as earlier
    user/assistant turns and strips the answers' leading whitespace, because the assistant
    turn starts on a fresh line.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {', '.join(PROMPT_STYLES)}")
    if isinstance(n_shot, bool) or not isinstance(n_shot, int) or n_shot < 0:
        raise ValueError(f"n_shot={n_shot!r}: give a non-negative int")
    if task.style != "raw" or task.n_shot != 0:
        raise ValueError(
            f"{task!r} is already formatted; call format_task on the raw, "
            "zero-shot task (for example from load_task(name))"
        )
    if style == "chat" and not callable(getattr(tokenizer, "apply_chat_template", None)):
        raise ValueError(
            "style='chat' needs a tokenizer with apply_chat_template, for example "
            "format_task(task, 'chat', tokenizer=model.tokenizer)"
        )
    if n_shot and len(task.train) <= n_shot:
        raise ValueError(
            f"n_shot={n_shot} needs more than {n_shot} train examples; "
            f"{task.name!r} has {len(task.train)}"
        )
    splits = {
        split: tuple(
            _format_example(ex, split, i, task.train, style, tokenizer, n_shot, seed)
            for i, ex in enumerate(getattr(task, split))
        )
        for split in SPLITS
    }
    info = {**task.info, "format": {"style": style, "n_shot": n_shot, "seed": seed}}
    return Task(task.name, splits["train"], splits["dev"], splits["test"], style, n_shot, info)


def _demos(
    split: str, index: int, train: Sequence[Example], n_shot: int, seed: int
) -> list[Example]:
    """`n_shot` train examples, fixed by (seed, split, index); never the train example itself."""
    if n_shot == 0:
        return []
    pool = [j for j in range(len(train)) if not (split == "train" and j == index)]
    rng = random.Random(f"{seed}/{split}/{index}")  # str seeds hash with SHA-512: stable
    return [train[j] for j in rng.sample(pool, n_shot)]


def _format_example(
    ex: Example,
    split: str,
    index: int,
    train: Sequence[Example],
    style: PromptStyle,
    tokenizer: Any,
    n_shot: int,
    seed: int,
) -> Example:
    demos = _demos(split, index, train, n_shot, seed)
    if style == "raw":
        prompt = DEMO_SEPARATOR.join([d.prompt + d.answer for d in demos] + [ex.prompt])
        return Example(prompt, ex.answer, ex.wrong)
    messages = []
    for d in demos:
        messages += [
            {"role": "user", "content": d.prompt},
            {"role": "assistant", "content": d.answer.lstrip()},
        ]
    messages.append({"role": "user", "content": ex.prompt})
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if not isinstance(prompt, str):
        raise ValueError(
            "tokenizer.apply_chat_template(..., tokenize=False) returned "
            f"{type(prompt).__name__}, not str; pass a tokenizer with a chat template"
        )
    try:
        return Example(prompt, ex.answer.lstrip(), tuple(w.lstrip() for w in ex.wrong))
    except ValueError as err:
        raise ValueError(
            f"chat style strips the answers' leading whitespace, which made two "
            f"options equal: {err}"
        ) from None
