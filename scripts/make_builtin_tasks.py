"""Generate the built-in task files `steerlens/data/<name>.jsonl` from our own word lists.

Every sentence and number is produced here from a fixed seed, so the committed files are
reproducible and contain no benchmark text. Run it after changing a generator:

    python scripts/make_builtin_tasks.py            # rewrite the files
    python scripts/make_builtin_tasks.py --check    # fail if the files differ from the generator

Each line is ``{"prompt", "answer", "wrong", "split"}``; prompts end in ``":"`` and answers carry
one leading space (``" Positive"``, ``" A"``, ``" Yes"``), a single token for Llama/GPT-2 style
BPE tokenizers. Labels are balanced within every split.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "steerlens" / "data"
SEED = 20250101
SPLIT_SIZES = {"train": 300, "dev": 150, "test": 150}  # per task; half of each split per label

Item = tuple[str, str, str]  # prompt, answer, wrong

# --- sentiment: short review sentences from our own vocabulary (no negation words) ----------

NOUNS = (
    "movie",
    "restaurant",
    "hotel",
    "book",
    "phone",
    "concert",
    "laptop",
    "museum",
    "game",
    "album",
    "cafe",
    "play",
    "jacket",
    "tour",
    "course",
    "podcast",
    "bakery",
    "show",
    "camera",
    "novel",
    "festival",
    "headset",
    "apartment",
    "flight",
)
POSITIVE_ADJ = (
    "wonderful",
    "excellent",
    "delightful",
    "superb",
    "fantastic",
    "brilliant",
    "charming",
    "impressive",
    "lovely",
    "outstanding",
    "enjoyable",
    "pleasant",
    "marvelous",
    "terrific",
    "great",
    "amazing",
)
NEGATIVE_ADJ = (
    "terrible",
    "awful",
    "dreadful",
    "boring",
    "disappointing",
    "horrible",
    "dull",
    "mediocre",
    "unpleasant",
    "poor",
    "miserable",
    "tedious",
    "frustrating",
    "lousy",
    "bland",
    "annoying",
)
ADVERBS = ("really", "truly", "remarkably", "quite", "genuinely", "absolutely", "simply")
POSITIVE_PHRASES = (
    "it was worth every penny",
    "I would recommend it to a friend",
    "it made my day",
    "I left with a smile",
    "I will gladly come back",
    "everyone in my family loved it",
    "it exceeded my expectations",
    "I enjoyed every minute",
    "it is a real gem",
)
NEGATIVE_PHRASES = (
    "it was a waste of money",
    "I regret choosing it",
    "it ruined my day",
    "I left annoyed",
    "I want my money back",
    "everyone in my family hated it",
    "it fell short of my expectations",
    "I suffered through every minute",
    "it is a total mess",
)
SENTIMENT_TEMPLATES = (
    "The {noun} was {adv} {adj}.",
    "This {noun} is {adj} and {adj2}.",
    "The {noun} was {adj}; {phrase}.",
    "{Phrase}: the {noun} was {adv} {adj}.",
    "What {a_adj} {noun}! {Phrase}.",
    "Honestly, this {noun} felt {adj}, and {phrase}.",
)


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _review(rng: random.Random, positive: bool) -> str:
    adjs = POSITIVE_ADJ if positive else NEGATIVE_ADJ
    phrases = POSITIVE_PHRASES if positive else NEGATIVE_PHRASES
    adj, adj2 = rng.sample(adjs, 2)
    phrase = rng.choice(phrases)
    return rng.choice(SENTIMENT_TEMPLATES).format(
        noun=rng.choice(NOUNS),
        adv=rng.choice(ADVERBS),
        adj=adj,
        adj2=adj2,
        a_adj=_article(adj),
        phrase=phrase,
        Phrase=phrase[0].upper() + phrase[1:],
    )


def sentiment(rng: random.Random, positive: bool) -> Item:
    prompt = f"Review: {_review(rng, positive)}\nSentiment (Positive or Negative):"
    return (prompt, " Positive", " Negative") if positive else (prompt, " Negative", " Positive")


# --- larger: which of two numbers is larger, as options A/B ---------------------------------


def larger(rng: random.Random, first_is_larger: bool) -> Item:
    digits = rng.choice((2, 3))
    low, high = sorted(rng.sample(range(10 ** (digits - 1), 10**digits), 2))
    a, b = (high, low) if first_is_larger else (low, high)
    prompt = f"Which number is larger?\nA: {a}\nB: {b}\nAnswer:"
    return (prompt, " A", " B") if first_is_larger else (prompt, " B", " A")


# --- arithmetic: is a stated sum or difference right? ----------------------------------------


def arithmetic(rng: random.Random, correct: bool) -> Item:
    a, b = rng.randint(2, 49), rng.randint(2, 49)
    op = rng.choice("+-")
    if op == "-" and b > a:
        a, b = b, a
    result = a + b if op == "+" else a - b
    shown = result if correct else result + rng.choice((-10, -2, -1, 1, 2, 10))
    if shown < 0:
        shown = result + rng.choice((1, 2, 10))
    prompt = f"Is {a} {op} {b} = {shown}?\nAnswer:"
    return (prompt, " Yes", " No") if correct else (prompt, " No", " Yes")


GENERATORS: dict[str, Callable[[random.Random, bool], Item]] = {
    "sentiment": sentiment,
    "larger": larger,
    "arithmetic": arithmetic,
}


def _unique(
    gen: Callable[[random.Random, bool], Item],
    rng: random.Random,
    label: bool,
    n: int,
    seen: set[str],
) -> list[Item]:
    """`n` items of one label whose prompts appear nowhere else in the task."""
    items: list[Item] = []
    for _ in range(100 * n):
        item = gen(rng, label)
        if item[0] not in seen:
            seen.add(item[0])
            items.append(item)
            if len(items) == n:
                return items
    raise RuntimeError(f"{gen.__name__}: vocabulary too small for {n} unique prompts")


def make_task(name: str, seed: int = SEED) -> list[dict[str, str]]:
    """Rows of one task: unique prompts, each split balanced between the two labels."""
    rng = random.Random(f"{seed}/{name}")
    gen, seen = GENERATORS[name], set[str]()
    rows: list[dict[str, str]] = []
    for split, size in SPLIT_SIZES.items():
        items = _unique(gen, rng, True, size // 2, seen) + _unique(gen, rng, False, size // 2, seen)
        rng.shuffle(items)
        rows += [{"prompt": p, "answer": a, "wrong": w, "split": split} for p, a, w in items]
    return rows


def render(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _files() -> Iterator[tuple[Path, str]]:
    for name in GENERATORS:
        yield DATA_DIR / f"{name}.jsonl", render(make_task(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the committed files instead of writing them",
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in _files():
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({len(text.encode())} bytes)")
    if stale:
        print(
            "out of date: "
            + ", ".join(map(str, stale))
            + "; run python scripts/make_builtin_tasks.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
