"""Prompt formats: k-shot demonstrations and chat templates (`format_task`)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

from .core import PER_ITEM, PROMPT_STYLES, SPLITS, Example, PromptStyle, Task

DEMO_SEPARATOR = "\n\n"
DemoMode = Literal["shared", "per_item"]
DEMO_MODES: tuple[str, ...] = ("shared", "per_item")


def format_task(
    task: Task,
    style: PromptStyle = "raw",
    *,
    tokenizer: Any = None,
    n_shot: int = 0,
    seed: int = 0,
    demos: DemoMode = "shared",
) -> Task:
    """Return a new `Task` whose prompts are in `style` with `n_shot` train demonstrations.

    `demos="shared"` (the usual in-context protocol, and SADI's): one set of `n_shot` train
    examples, drawn with `seed`, precedes every prompt of every split; those examples leave the
    train split, so no contrastive pair repeats a demonstration, and the prefix every prompt
    shares runs once (`steerlens._prefix`). Vary `seed` for other demonstration sets.
    `demos="per_item"`: each example gets its own draw, seeded by (`seed`, split, index), never
    the example itself, unchanged when a split is truncated. ``"raw"`` joins ``prompt + answer``
    demos and the prompt with blank lines; ``"chat"`` passes them through
    ``tokenizer.apply_chat_template`` as earlier user/assistant turns and strips the answers'
    leading whitespace, because the assistant turn starts on a fresh line.
    """
    if demos not in DEMO_MODES:
        raise ValueError(f"demos must be one of {DEMO_MODES}, got {demos!r}")
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
    info = {**task.info, "format": {"style": style, "n_shot": n_shot, "seed": seed}}
    if n_shot and demos == "shared":
        rows = sorted(random.Random(f"{seed}/shared").sample(range(len(task.train)), n_shot))
        shared = [task.train[j] for j in rows]
        kept = [j for j in range(len(task.train)) if j not in set(rows)]
        source = {**{s: getattr(task, s) for s in SPLITS}, "train": [task.train[j] for j in kept]}
        splits = {
            split: tuple(_format(ex, shared, style, tokenizer) for ex in source[split])
            for split in SPLITS
        }
        info["format"].update(demos="shared", demo_rows=rows)
        if PER_ITEM in info:  # per-item fields of train lose the demonstrations' rows
            info[PER_ITEM] = {
                name: {**by, "train": tuple(by["train"][j] for j in kept)} if "train" in by else by
                for name, by in info[PER_ITEM].items()
            }
    else:
        splits = {
            split: tuple(
                _format(ex, _demos(split, i, task.train, n_shot, seed), style, tokenizer)
                for i, ex in enumerate(getattr(task, split))
            )
            for split in SPLITS
        }
        if n_shot:
            info["format"]["demos"] = "per_item"
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


def _format(ex: Example, demos: Sequence[Example], style: PromptStyle, tokenizer: Any) -> Example:
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
