"""NLI on XNLI as a `Task`, per language, with SADI's NLI template (its "unclusive" spelling).

Files: ``xnli/<lang>.test.jsonl`` (``premise``, ``hypothesis``, ``label``: 0 entailment, 1
neutral, 2 contradiction). shared/data/README.md splits train and dev from
``xnli/<lang>.train.jsonl``, but its 3000 rows are all entailment in every language: pairs from
it would all contrast ``" True"`` with the rest, and a dev split of one label tunes for "answer
True". steerlens therefore splits the balanced test file (1670 rows per label) instead, at
premise boundaries so no premise crosses splits: test = rows 0-3002, train = rows 3003-4007,
dev = rows 4008-5009 (``XNLI_SPLITS``).

SADI ``load_dataset.py`` answers entailment with ``True``, contradiction with ``False`` and
neutral with ``unclusive`` (sic, the template's own word), and reuses the English template for
every language, as here; ``info["language"]`` records the language. The template ends in
``"Answer:"``, so the answers carry one leading space (``" True"``, ``" unclusive"``,
``" False"``). Their first tokens differ, as the first-token metric needs: the tests' byte
tokenizer gives ``ĠT``, ``Ġu``, ``ĠF``; SmolLM2's gives ``ĠTrue`` (3635), ``ĠFalse`` (4178) and
``Ġun`` + ``clusive`` (551, 5560), so for SmolLM2 "neutral" is the first token ``" un"`` (which
also starts ``" unknown"``, ``" unclear"``) and the `paper` metric matches it over two tokens.
Appended alone or after the prompt, every label tokenizes the same for both tokenizers. The
wrong answers are the two other labels; `contrastive_ids` draws one per item, as SADI does.
"""

from __future__ import annotations

import os

from .core import Example, Task
from .files import Row, build, data_file, example, read_jsonl, strings, take
from .paper import resolve_data_dir

XNLI_LANGUAGES: tuple[str, ...] = ("en", "fr", "es", "zh")

NLI_TEMPLATE = (
    "Answer whether the hypothesis is more likely to be true, false, or unclusive based on the "
    "given premise.\nPremise: {premise}\nHypothesis: {hypothesis}\nAnswer:"
)
# indexed by XNLI's label: 0 entailment, 1 neutral, 2 contradiction
NLI_LABELS: tuple[str, ...] = (" True", " unclusive", " False")

# split -> (file pattern, first row, end row or None for "to the end")
XNLI_SPLITS: dict[str, tuple[str, int, int | None]] = {
    "train": ("xnli/{lang}.test.jsonl", 3003, 4008),
    "dev": ("xnli/{lang}.test.jsonl", 4008, 5010),
    "test": ("xnli/{lang}.test.jsonl", 0, 3003),
}

_LAYOUT = "xnli/<lang>.test.jsonl (see shared/data/README.md)"


def load_xnli(language: str, data_dir: str | os.PathLike[str] | None = None) -> Task:
    """XNLI in `language` (one of `XNLI_LANGUAGES`) as task ``"xnli-<language>"``."""
    if language not in XNLI_LANGUAGES:
        raise ValueError(
            f"unknown XNLI language {language!r}; use one of {', '.join(XNLI_LANGUAGES)}"
        )
    root = resolve_data_dir(data_dir)
    splits: dict[str, tuple[Example, ...]] = {}
    for split, (pattern, start, stop) in XNLI_SPLITS.items():
        path = data_file(root, pattern.format(lang=language), _LAYOUT)
        rows = take(read_jsonl(path), start, stop, path, f"xnli-{language}")
        splits[split] = build(rows, _nli_example, path, f"xnli-{language}")
    info = {
        "source": "xnli",
        "data_dir": str(root),
        "language": language,
        "template": NLI_TEMPLATE,
        "labels": NLI_LABELS,
    }
    return Task(f"xnli-{language}", splits["train"], splits["dev"], splits["test"], info=info)


def _nli_example(row: Row) -> Example:
    fields = strings(row, ("premise", "hypothesis"))
    label = row["label"]
    if not isinstance(label, int):
        raise ValueError(f"label must be 0, 1 or 2, got {label!r}")
    return example(NLI_TEMPLATE, NLI_LABELS, fields, label)
