"""Unit tests for the task layer: Example/Task validation, JSONL loading, formats, built-ins."""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steerlens.tasks import (
    BUILTIN_TASKS,
    PAPER_LABELS,
    PAPER_TASKS,
    TEMPLATES,
    Example,
    Task,
    format_task,
    load_builtin,
    load_jsonl,
    load_task,
    resolve_data_dir,
)
from tests.checking import OFF_TYPE

ROOT = Path(__file__).resolve().parents[2]


def _row(i: int, split: str | None = None, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"prompt": f"Q{i}: is it?\nAnswer:", "answer": " Yes", "wrong": " No"}
    if split is not None:
        row["split"] = split
    row.update(over)
    return row


def _write(tmp_path: Path, lines: list[Any], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def _small_task(n_train: int = 6, n_dev: int = 3, n_test: int = 3) -> Task:
    def make(prefix: str, n: int) -> tuple[Example, ...]:
        return tuple(
            Example(f"{prefix}{i}:", " A" if i % 2 else " B", (" B" if i % 2 else " A",))
            for i in range(n)
        )

    return Task("toy", make("tr", n_train), make("dv", n_dev), make("te", n_test))


# --- Example / Task -------------------------------------------------------------------------


def test_example_normalizes_wrong_to_tuple() -> None:
    assert Example("p:", " A", " B").wrong == (" B",)
    assert Example("p:", " A", [" B", " C"]).options == (" A", " B", " C")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"prompt": " ", "answer": " A", "wrong": " B"}, ValueError),
        ({"prompt": "p:", "answer": "  ", "wrong": " B"}, ValueError),
        ({"prompt": "p:", "answer": " A", "wrong": ()}, ValueError),
        ({"prompt": "p:", "answer": " A", "wrong": (" ",)}, ValueError),
        ({"prompt": "p:", "answer": " A", "wrong": " A"}, ValueError),
        ({"prompt": 3, "answer": " A", "wrong": " B"}, TypeError),
        ({"prompt": "p:", "answer": None, "wrong": " B"}, TypeError),
    ],
)
def test_example_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Example(**kwargs)


def test_with_limits_keeps_split_heads() -> None:
    task = _small_task()
    small = task.with_limits(train=2, test=1)
    assert small.train == task.train[:2] and small.test == task.test[:1]
    assert small.dev == task.dev
    assert small.info["limits"] == {"train": 2, "test": 1}
    with pytest.raises(ValueError, match="non-negative"):
        task.with_limits(dev=-1)


# --- JSONL loader: good paths ---------------------------------------------------------------


def test_load_jsonl_with_splits(tmp_path: Path) -> None:
    rows = [_row(0, "train"), "", _row(1, "dev", wrong=[" No", " Maybe"]), "   ", _row(2, "test")]
    task = load_jsonl(_write(tmp_path, rows), name="mine")
    assert (task.name, len(task.train), len(task.dev), len(task.test)) == ("mine", 1, 1, 1)
    assert task.dev[0].wrong == (" No", " Maybe")
    assert task.info["splits_from"] == "file"


def test_load_jsonl_seeded_split_is_deterministic(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row(i) for i in range(50)])
    a, b = load_jsonl(path, seed=3), load_jsonl(path, seed=3)
    c = load_jsonl(path, seed=4)
    assert a == b and a != c
    assert (len(a.train), len(a.dev), len(a.test)) == (30, 10, 10)
    everything = [e.prompt for e in a.train + a.dev + a.test]
    assert sorted(everything) == sorted(r["prompt"] for r in map(_row, range(50)))
    assert a.name == "t"


def test_load_jsonl_empty_dev_warns(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row(0, "train"), _row(1, "test")])
    with pytest.warns(UserWarning, match="dev split is empty"):
        task = load_jsonl(path)
    assert task.dev == ()


def test_load_jsonl_accepts_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    lines = [json.dumps(_row(i, s)) for i, s in enumerate(("train", "dev", "test"))]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())
    assert len(load_jsonl(path).train) == 1


# --- JSONL loader: every error names file and line ------------------------------------------

BAD_LINES: list[tuple[str, Any, str]] = [
    ("bad_json", '{"prompt": "x",', "not valid JSON"),
    ("not_object", [1, 2], "expected a JSON object"),
    ("missing", {"prompt": "p:", "answer": " A"}, "missing field"),
    ("prompt_type", _row(9, prompt=5), "'prompt' must be a string"),
    ("wrong_type", _row(9, wrong=7), "'wrong' must be a string or a list"),
    ("wrong_item_type", _row(9, wrong=[" No", 3]), "'wrong' must be"),
    ("wrong_empty_list", _row(9, wrong=[]), "empty list"),
    ("empty_prompt", _row(9, prompt="  "), "'prompt' is empty"),
    ("empty_answer", _row(9, answer=""), "'answer' is empty"),
    ("wrong_is_answer", _row(9, wrong=" Yes"), "equal to the correct one"),
    ("unknown_split", _row(9, split="validation"), "unknown split 'validation'"),
    ("null_split", {**_row(9), "split": None}, "unknown split None"),
    ("surrogate", '{"prompt": "\\ud800:", "answer": " A", "wrong": " B"}', "surrogate"),
]


@pytest.mark.parametrize(("case", "bad", "message"), BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_load_jsonl_errors_name_file_and_line(
    tmp_path: Path, case: str, bad: Any, message: str
) -> None:
    rows = [_row(0, "train"), "", _row(1, "test"), bad]  # the bad row is on line 4
    if isinstance(bad, dict) and "split" not in bad:
        bad = {**bad, "split": "dev"}
        rows[-1] = bad
    path = _write(tmp_path, rows, name=f"{case}.jsonl")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_jsonl(path)
    assert f"{case}.jsonl, line 4" in str(info.value)


def test_load_jsonl_bad_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(_row(0, "train")).encode()
    path.write_bytes(good + b"\n" + '{"prompt": "caf\xe9:"}'.encode("latin-1") + b"\n")
    with pytest.raises(ValueError, match=r"latin1\.jsonl, line 2: not valid UTF-8"):
        load_jsonl(path)


def test_load_jsonl_mixed_split_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row(0, "train"), _row(1)])
    with pytest.raises(ValueError, match=r"t\.jsonl, line 2: no 'split' field, but line 1"):
        load_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_load_jsonl_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"empty\.jsonl: no examples"):
        load_jsonl(path)


@pytest.mark.parametrize("missing", ["train", "test"])
def test_load_jsonl_empty_required_split(tmp_path: Path, missing: str) -> None:
    other = "test" if missing == "train" else "train"
    path = _write(tmp_path, [_row(0, other), _row(1, "dev")])
    with pytest.raises(ValueError, match=f"the {missing} split is empty"):
        load_jsonl(path)


def test_load_jsonl_too_few_rows_for_fractions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test split is empty"):
        load_jsonl(_write(tmp_path, [_row(0)]))


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_load_jsonl_bad_fractions(tmp_path: Path, fractions: tuple[float, ...]) -> None:
    path = _write(tmp_path, [_row(i) for i in range(10)])
    with pytest.raises(ValueError, match="fractions"):
        load_jsonl(path, fractions=fractions)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_field_value = st.one_of(st.text(max_size=6), st.lists(st.text(max_size=4), max_size=3), _json)
_row_like = st.fixed_dictionaries(
    {"prompt": _field_value, "answer": _field_value, "wrong": _field_value},
    optional={"split": st.sampled_from(["train", "dev", "test", "val", ""]) | _json},
)
_line = st.one_of(
    _row_like.map(json.dumps).map(str.encode),
    _json.map(json.dumps).map(str.encode),
    st.binary(max_size=30),
    st.sampled_from([b"", b"   ", b'{"prompt": "a:", "answer": " A", "wrong": " B"}']),
)
_text = st.text(min_size=1, max_size=8)
_good_row = st.fixed_dictionaries(  # mostly valid rows, so that whole files often load
    {"prompt": _text, "answer": _text, "wrong": _text | st.lists(_text, min_size=1, max_size=2)}
)
_good_line = _good_row.map(lambda r: json.dumps(r, ensure_ascii=False).encode()) | st.just(b"")
_file = st.lists(_line, max_size=12) | st.lists(_good_line, min_size=2, max_size=12)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=_file)
def test_load_jsonl_fuzz_valid_task_or_value_error(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            task = load_jsonl(path)
        except ValueError as err:
            assert "fuzz.jsonl" in str(err)
            return
    assert isinstance(task, Task) and task.train and task.test
    for ex in task.train + task.dev + task.test:
        assert isinstance(ex, Example) and ex.answer not in ex.wrong


# --- format_task ----------------------------------------------------------------------------


class FakeChatTokenizer:
    """Renders messages as ``<role>content</role>`` and records each call."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, str]]] = []

    def apply_chat_template(
        self, messages: list[dict[str, str]], *, add_generation_prompt: bool, tokenize: bool
    ) -> str:
        assert add_generation_prompt and not tokenize
        self.calls.append(messages)
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return body + "<assistant>\n"


def test_format_raw_zero_shot_is_identity() -> None:
    task = _small_task()
    assert format_task(task) == task


@pytest.mark.parametrize("k", [1, 3])
def test_format_k_shot_demos_from_train_not_self(k: int) -> None:
    task = _small_task()
    shot = format_task(task, n_shot=k, seed=1, demos="per_item")
    assert (shot.style, shot.n_shot) == ("raw", k)
    train_texts = {e.prompt + e.answer for e in task.train}
    for split in ("train", "dev", "test"):
        for orig, new in zip(getattr(task, split), getattr(shot, split), strict=True):
            parts = new.prompt.split("\n\n")
            assert len(parts) == k + 1 and parts[-1] == orig.prompt
            assert set(parts[:-1]) <= train_texts and len(set(parts[:-1])) == k
            assert orig.prompt + orig.answer not in parts[:-1] or split != "train"
            assert (new.answer, new.wrong) == (orig.answer, orig.wrong)


def test_format_k_shot_deterministic_and_stable_under_limits() -> None:
    task = _small_task()
    for demos in ("per_item", "shared"):
        a = format_task(task, n_shot=2, seed=5, demos=demos)
        assert a == format_task(task, n_shot=2, seed=5, demos=demos)
        assert a != format_task(task, n_shot=2, seed=6, demos=demos)
        limited = format_task(task.with_limits(dev=2), n_shot=2, seed=5, demos=demos)
        assert limited.dev == a.dev[:2]


@pytest.mark.parametrize("k", [1, 3])
def test_shared_demos_precede_every_prompt_and_leave_train(k: int) -> None:
    task = _small_task()
    shot = format_task(task, n_shot=k, seed=1)  # shared is the default
    rows = shot.info["format"]["demo_rows"]
    assert shot.info["format"]["demos"] == "shared" and len(rows) == k
    demo_text = "\n\n".join(task.train[j].prompt + task.train[j].answer for j in rows)
    kept = [ex for j, ex in enumerate(task.train) if j not in rows]
    assert len(shot.train) == len(task.train) - k
    for orig, split in ((kept, "train"), (task.dev, "dev"), (task.test, "test")):
        new = getattr(shot, split)
        assert len(new) == len(orig)
        for o, n in zip(orig, new, strict=True):
            assert n.prompt == demo_text + "\n\n" + o.prompt and n.answer == o.answer
    with pytest.raises(OFF_TYPE):
        format_task(task, n_shot=1, demos="both")  # type: ignore[arg-type]


def test_format_k_shot_needs_enough_train() -> None:
    with pytest.raises(ValueError, match="n_shot=6 needs more than 6 train"):
        format_task(_small_task(n_train=6), n_shot=6)


def test_format_chat_zero_shot_strips_answer_space() -> None:
    tok = FakeChatTokenizer()
    chat = format_task(_small_task(), "chat", tokenizer=tok)
    ex = chat.test[0]
    assert ex.prompt == "<user>te0:</user><assistant>\n"
    assert (ex.answer, ex.wrong) == ("B", ("A",))
    assert (chat.style, chat.n_shot) == ("chat", 0)


def test_format_chat_k_shot_uses_turns() -> None:
    tok = FakeChatTokenizer()
    task = _small_task()
    chat = format_task(task, "chat", tokenizer=tok, n_shot=2, demos="per_item")
    messages = tok.calls[0]  # first train example
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == task.train[0].prompt
    assert all(not m["content"].startswith(" ") for m in messages if m["role"] == "assistant")
    assert task.train[0].prompt not in [m["content"] for m in messages[:-1]]
    assert "\n\n" not in chat.train[0].prompt


def test_format_chat_collapsing_options_is_value_error() -> None:
    task = Task("x", (Example("p:", " A", ("A",)),), (), (Example("q:", " A", ("A",)),))
    with pytest.raises(ValueError, match="made two options equal"):
        format_task(task, "chat", tokenizer=FakeChatTokenizer())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style": "chat"}, "needs a tokenizer"),
        ({"style": "fancy"}, "use one of raw, chat|parameter 'style'"),
        ({"n_shot": -1}, "non-negative"),
    ],
)
def test_format_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OFF_TYPE, match=message):
        format_task(_small_task(), **kwargs)


def test_format_twice_is_error() -> None:
    with pytest.raises(ValueError, match="already formatted"):
        format_task(format_task(_small_task(), n_shot=1), n_shot=1)


# --- load_task dispatch ---------------------------------------------------------------------


def test_load_task_builtin_and_path(tmp_path: Path) -> None:
    assert load_task("sentiment") == load_builtin("sentiment")
    path = _write(tmp_path, [_row(i) for i in range(10)])
    assert load_task(path, seed=2) == load_jsonl(path, seed=2)
    shot = load_task("larger", n_shot=2, seed=1)
    assert shot.n_shot == 2 and shot.test[0].prompt.count("Which number") == 3


def test_load_task_unknown_name_lists_valid() -> None:
    with pytest.raises(ValueError, match=r"sentiment.*copa.*jsonl"):
        load_task("nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task("missing.jsonl")


def test_paper_data_dir_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEERLENS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*STEERLENS_DATA.*copa/"):
        load_task("copa")
    with pytest.raises(FileNotFoundError, match="data_dir='/nowhere'"):
        resolve_data_dir("/nowhere")
    monkeypatch.setenv("STEERLENS_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"\$STEERLENS_DATA"):
        resolve_data_dir()
    monkeypatch.setenv("STEERLENS_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=r"copa/train\.jsonl not found"):
        load_task("COPA")


# --- paper label table ----------------------------------------------------------------------


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_paper_labels_match_template_ending(name: str) -> None:
    template, labels = TEMPLATES[name], PAPER_LABELS[name]
    assert len(set(labels)) == 2
    if template.endswith("Answer:\n"):
        assert all(not a[0].isspace() for a in labels)  # the answer starts the new line
    else:
        assert template.endswith("Answer:")
        assert all(a.startswith(" ") and not a[1].isspace() for a in labels)


def test_copa_template_is_sadi_verbatim() -> None:
    assert TEMPLATES["copa"].endswith("\nA:{choice1}\nB:{choice2}\n\nAnswer:\n")
    assert PAPER_LABELS["copa"] == ("A", "B")


# --- built-in tasks -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(BUILTIN_TASKS))
def builtin(request: pytest.FixtureRequest) -> Task:
    return load_builtin(request.param)


def test_builtin_sizes_and_disjoint_splits(builtin: Task) -> None:
    sizes = (len(builtin.train), len(builtin.dev), len(builtin.test))
    assert sum(sizes) >= 300 and sizes == (300, 150, 150)
    prompts = [{e.prompt for e in getattr(builtin, s)} for s in ("train", "dev", "test")]
    assert sum(map(len, prompts)) == sum(sizes)  # unique within splits
    assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])


def test_builtin_balanced_labels(builtin: Task) -> None:
    for split in ("train", "dev", "test"):
        counts = Counter(e.answer for e in getattr(builtin, split))
        assert len(counts) == 2 and len(set(counts.values())) == 1, (split, counts)


def test_builtin_answers_are_single_bpe_words(builtin: Task) -> None:
    """GPT-2/Llama BPE keeps ``" " + one short alphabetic word`` after ``":"`` as one piece."""
    options = {o for e in builtin.train + builtin.dev + builtin.test for o in e.options}
    assert len(options) == 2
    for option in options:
        assert re.fullmatch(r" [A-Z][a-z]{0,8}", option), option
    assert len({o.strip()[0] for o in options}) == 2  # distinct first characters
    assert all(e.prompt.endswith(":") for e in builtin.train + builtin.dev + builtin.test)


def test_builtin_files_are_small_and_reproducible() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make", ROOT / "scripts/make_builtin_tasks.py")
    assert spec and spec.loader
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    for name in BUILTIN_TASKS:
        path = ROOT / "steerlens" / "data" / f"{name}.jsonl"
        assert path.stat().st_size < 200_000
        assert path.read_text(encoding="utf-8") == make.render(make.make_task(name)), name


def test_unknown_builtin() -> None:
    with pytest.raises(ValueError, match="sentiment"):
        load_builtin("nope")
